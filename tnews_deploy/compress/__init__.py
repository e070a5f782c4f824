"""Making a trained checkpoint smaller before export (needs the `train` extra).

* `trim.py`: vocabulary trimming — keep only the tokens a corpus needs (plus
  specials and single-character fallbacks) and the embedding rows behind them.

Imports are lazy: `import tnews_deploy.compress` loads neither torch nor
transformers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["TrimConfig", "TrimRefused", "TrimReport", "TrimResult", "trim_vocab"]

if TYPE_CHECKING:
    from .trim import TrimConfig, TrimRefused, TrimReport, TrimResult, trim_vocab


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import trim

        return getattr(trim, name)
    raise AttributeError(f"module 'tnews_deploy.compress' has no attribute {name!r}")

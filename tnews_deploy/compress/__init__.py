"""Making a trained checkpoint smaller before export (needs the `train` extra).

* `trim.py`: vocabulary trimming — keep only the tokens a corpus needs (plus
  specials and single-character fallbacks) and the embedding rows behind them.
* `distill.py`: knowledge distillation — an N-layer student initialised from the
  teacher's layers, trained on the teacher's logits (`distill_trainer.py`: the
  loss and the Trainer that applies it).

Imports are lazy: `import tnews_deploy.compress` loads neither torch nor
transformers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

__all__ = [
    "DistillConfig",
    "DistillResult",
    "TrimConfig",
    "TrimRefused",
    "TrimReport",
    "TrimResult",
    "distill_model",
    "trim_vocab",
]
_TRIM = ("TrimConfig", "TrimRefused", "TrimReport", "TrimResult", "trim_vocab")
_DISTILL = ("DistillConfig", "DistillResult", "distill_model")

if TYPE_CHECKING:
    from .distill import DistillConfig, DistillResult, distill_model
    from .trim import TrimConfig, TrimRefused, TrimReport, TrimResult, trim_vocab

__getattr__ = lazy_exports(__name__, {**dict.fromkeys(_TRIM, "trim"), **dict.fromkeys(_DISTILL, "distill")})

"""Making a trained checkpoint smaller before export (needs the `train` extra).

* `distill.py`: knowledge distillation — an N-layer student initialised from the
  teacher's layers, trained on the teacher's logits (`distill_trainer.py`: the
  loss and the Trainer that applies it).

Imports are lazy: `import tnews_deploy.compress` loads neither torch nor
transformers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["DistillConfig", "DistillResult", "distill_model"]

if TYPE_CHECKING:
    from .distill import DistillConfig, DistillResult, distill_model


def __getattr__(name: str) -> Any:
    if name in ("DistillConfig", "DistillResult", "distill_model"):
        from . import distill as module

        return getattr(module, name)
    raise AttributeError(f"module 'tnews_deploy.compress' has no attribute {name!r}")

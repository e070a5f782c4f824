"""tnews-deploy: a Chinese BERT classifier for CLUE TNEWS, from fine-tuning to a verified ONNX model.

`from tnews_deploy import Predictor` is the runtime (onnxruntime + tokenizers +
numpy). Training and export need the `train` extra. Importing this package
imports neither torch nor transformers; the predictor module itself is loaded
on first use, so the CLI starts fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .lazy import lazy_exports

__version__ = "0.1.0"
__all__ = ["ModelLoadError", "Prediction", "Predictor", "__version__"]

if TYPE_CHECKING:
    from .predictor import ModelLoadError, Prediction, Predictor

__getattr__ = lazy_exports(__name__, dict.fromkeys(("ModelLoadError", "Prediction", "Predictor"), "predictor"))

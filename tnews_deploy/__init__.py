"""tnews-deploy: a Chinese BERT classifier for CLUE TNEWS, from fine-tuning to a verified ONNX model.

The base install is the runtime; training and export need the `train` extra.
Importing this package imports neither torch nor transformers.
"""

__version__ = "0.1.0"

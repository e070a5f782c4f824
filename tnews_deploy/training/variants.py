"""Which parameters train in each variant.

* `full`: everything.
* `freeze-embeddings`: the embedding layer (word, position, type embeddings and
  their LayerNorm) is frozen; encoder, pooler and classifier train.
* `freeze-encoder`: the whole pretrained model is frozen except its pooler; the
  pooler and the classifier train.
"""

from __future__ import annotations

from torch import nn

from ..errors import ConfigError
from .config import VARIANTS


def _base_model(model: nn.Module) -> nn.Module:
    base = getattr(model, getattr(model, "base_model_prefix", ""), None)
    if not isinstance(base, nn.Module):
        raise ConfigError(f"{type(model).__name__} has no pretrained base model to freeze.")
    return base


def apply_variant(model: nn.Module, variant: str) -> nn.Module:
    """Set `requires_grad` on `model`'s parameters for `variant`; returns the model."""
    if variant not in VARIANTS:
        raise ConfigError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}.")
    for param in model.parameters():
        param.requires_grad = True
    if variant == "full":
        return model
    base = _base_model(model)
    if variant == "freeze-embeddings":
        embeddings = getattr(base, "embeddings", None)
        if embeddings is None:
            raise ConfigError(f"{type(base).__name__} has no 'embeddings' module to freeze.")
        embeddings.requires_grad_(False)
    elif variant == "freeze-encoder":
        base.requires_grad_(False)
        pooler = getattr(base, "pooler", None)
        if pooler is not None:
            pooler.requires_grad_(True)
    return model


def trainable_parameter_names(model: nn.Module) -> list[str]:
    return [name for name, p in model.named_parameters() if p.requires_grad]


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total

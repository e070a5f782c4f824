"""Class-weighted cross-entropy (`--class-weight balanced`) and the Trainer that applies it.

With `balanced` weights, class c weighs n / (k · n_c) for a training set of n
sentences, k classes present and n_c sentences of class c (scikit-learn's
`compute_class_weight("balanced")`): every class then contributes the same total
weight to the loss, so that a rare class such as `news_stock` (~0.5 % of TNEWS)
is not simply never predicted. The loss of a batch is the weighted mean
Σ w_{y_i} · CE_i / Σ w_{y_i} (`torch.nn.functional.cross_entropy(weight=...)`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .trainer import Trainer


def balanced_class_weights(labels: Sequence[int], num_classes: int) -> list[float]:
    """n / (k · n_c) per class id; 1.0 for a class absent from `labels` (it never occurs as a target).

    Args:
        labels: the training labels (class ids).
        num_classes: the number of classes of the model.
    """
    from sklearn.utils.class_weight import compute_class_weight

    y = np.asarray(labels)
    present = np.unique(y)
    weights = np.ones(num_classes, dtype=np.float64)
    weights[present] = compute_class_weight("balanced", classes=present, y=y)
    return [float(w) for w in weights]


def weighted_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """Mean cross-entropy of a batch, each example weighted by its class's weight (None: unweighted)."""
    if weights is not None:
        weights = weights.to(device=logits.device, dtype=torch.float32)
    return F.cross_entropy(logits.float(), labels, weight=weights)


class WeightedLossTrainer(Trainer):
    """`Trainer` whose loss is the class-weighted cross-entropy.

    Args:
        class_weights: one weight per class id.
        *args, **kwargs: as for `transformers.Trainer`.
    """

    def __init__(self, *args, class_weights: Sequence[float], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.class_weights = torch.tensor(list(class_weights), dtype=torch.float32)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)  # do not change the caller's batch
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        loss = weighted_cross_entropy(outputs.logits, labels, self.class_weights)
        return (loss, outputs) if return_outputs else loss

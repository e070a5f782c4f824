"""Classification metrics (scikit-learn) for selection during training and for reports."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, f1_score


def f1_scores(labels: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
    """Macro-F1, micro-F1 and accuracy. Micro-F1 equals accuracy for single-label data."""
    return {
        "macro_f1": float(f1_score(labels, predictions, average="macro", zero_division=0)),
        "micro_f1": float(f1_score(labels, predictions, average="micro", zero_division=0)),
        "accuracy": float(accuracy_score(labels, predictions)),
    }


def selection_metrics(eval_prediction) -> dict[str, float]:
    """`Trainer.compute_metrics` hook."""
    logits, labels = eval_prediction.predictions, eval_prediction.label_ids
    if isinstance(logits, tuple):
        logits = logits[0]
    return f1_scores(np.asarray(labels), np.asarray(logits).argmax(-1))


def classification_metrics(labels: np.ndarray, predictions: np.ndarray, label_names: Sequence[str]) -> dict[str, Any]:
    """F1 scores plus per-class precision/recall/F1/support and the confusion matrix."""
    ids = list(range(len(label_names)))
    report = classification_report(
        labels,
        predictions,
        labels=ids,
        target_names=list(label_names),
        output_dict=True,
        zero_division=0,
    )
    per_class = {
        name: {k: (int(v) if k == "support" else float(v)) for k, v in report[name].items()} for name in label_names
    }
    scores = f1_scores(labels, predictions)
    return {
        **scores,
        "per_class": per_class,
        "confusion_matrix": confusion_matrix(labels, predictions, labels=ids).tolist(),
        "label_names": list(label_names),
    }

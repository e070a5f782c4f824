"""Error bars for grid cells: mean ± std over seeds and bootstrap intervals over the evaluation set.

numpy only. A *cell* is one variant × training-set size trained with several seeds;
every seed's run is scored on the same evaluation sentences and saved its predictions.

`EvalBootstrap` draws `draws` resamples of the evaluation sentences once (n indices
with replacement each); every cell is scored on the same resamples, so the
difference of two cells is a *paired* bootstrap. A cell's value in one resample is
the mean over its seeds of the metric on the resampled sentences, the seeds
themselves resampled with replacement (when there are several), so the interval
covers the evaluation-set sampling and the seed-to-seed spread. Macro-F1 follows
scikit-learn's `f1_score(average="macro", zero_division=0)`: the mean of the per-class
F1 over the classes that occur in the gold labels or the predictions of that resample.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; 0.0 for a single value)."""
    a = np.asarray(values, dtype=np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


def percentile_interval(samples: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The central `confidence` interval of bootstrap samples (percentile method)."""
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(np.asarray(samples, dtype=np.float64), [tail, 100 - tail])
    return float(low), float(high)


def macro_f1_from_counts(tp: np.ndarray, gold: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Macro-F1 per row from per-class counts (rows × classes): true positives, gold and predicted totals."""
    support = gold + predicted
    present = support > 0
    f1 = np.divide(2 * tp, support, out=np.zeros_like(support, dtype=np.float64), where=present)
    return f1.sum(axis=-1) / np.maximum(present.sum(axis=-1), 1)


@dataclass
class Interval:
    """A point estimate with its bootstrap interval."""

    value: float
    low: float
    high: float

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def to_json(self) -> dict[str, float]:
        return {"value": round(self.value, 4), "low": round(self.low, 4), "high": round(self.high, 4)}


class EvalBootstrap:
    """Seeded resamples of one evaluation set, shared by every cell scored on it.

    Args:
        labels: the gold labels of the evaluation set (class ids), in the order of every run's predictions.
        num_classes: the number of classes.
        draws: bootstrap resamples.
        seed: seeds the resampling: the sentences of each draw, and which of a cell's seeds each draw takes
            (derived from `seed` and the cell's number of seeds, so a cell's samples do not depend on which
            other cells were scored before it: the grid's results and the report give it one interval).
    """

    def __init__(self, labels: Sequence[int], num_classes: int, draws: int = 1000, seed: int = 0) -> None:
        self.labels = np.asarray(labels, dtype=np.int64)
        self.num_classes = num_classes
        self.draws = draws
        self.seed = seed
        n = len(self.labels)
        self.indices = np.random.default_rng(seed).integers(0, n, size=(draws, n))  # each draw's sentences
        self.counts = np.zeros((draws, n), dtype=np.float64)  # how often each sentence is drawn
        np.add.at(self.counts, (np.repeat(np.arange(draws), n), self.indices.ravel()), 1.0)
        self.gold = self.counts @ self._one_hot(self.labels)

    def _one_hot(self, ids: np.ndarray) -> np.ndarray:
        return np.eye(self.num_classes, dtype=np.float64)[ids]

    def _check(self, predictions: np.ndarray) -> np.ndarray:
        predictions = np.asarray(predictions, dtype=np.int64)
        if predictions.shape != self.labels.shape:
            raise ValueError(
                f"predictions of {predictions.shape[0]} sentences for an evaluation set of "
                f"{len(self.labels)}: the runs were not scored on the same sentences."
            )
        return predictions

    def run_samples(self, predictions: Sequence[int], metric: str = "macro_f1") -> np.ndarray:
        """One run's metric (`macro_f1` or `accuracy`, = micro-F1) in every resample: shape (draws,)."""
        p = self._check(predictions)
        correct = (p == self.labels).astype(np.float64)
        if metric == "accuracy":
            return self.counts @ correct / len(self.labels)
        tp = self.counts @ (self._one_hot(self.labels) * correct[:, None])
        return macro_f1_from_counts(tp, self.gold, self.counts @ self._one_hot(p))

    def cell_samples(self, predictions: Sequence[Sequence[int]], metric: str = "macro_f1") -> np.ndarray:
        """A cell's seed-mean metric in every resample, its seeds resampled with replacement: (draws,)."""
        per_run = np.stack([self.run_samples(p, metric) for p in predictions])  # (seeds, draws)
        k = len(per_run)
        if k == 1:
            return per_run[0]
        # Which seeds each draw takes: the same for every cell of k seeds (runs sorted by seed, so two cells
        # that share their training seeds are paired seed by seed) and for both metrics.
        picks = np.random.default_rng([self.seed, k]).integers(0, k, size=(self.draws, k))
        return per_run[picks, np.arange(self.draws)[:, None]].mean(axis=1)


def point_metric(labels: Sequence[int], predictions: Sequence[int], num_classes: int, metric: str) -> float:
    """`macro_f1` or `accuracy` of one run on the whole evaluation set (the same formulas as the bootstrap)."""
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    if metric == "accuracy":
        return float(np.mean(labels == predictions))
    eye = np.eye(num_classes)
    tp = (eye[labels] * (labels == predictions)[:, None]).sum(axis=0)
    return float(macro_f1_from_counts(tp, eye[labels].sum(axis=0), eye[predictions].sum(axis=0)))


def interval(value: float, samples: np.ndarray, confidence: float = CONFIDENCE) -> Interval:
    """`value` with the percentile interval of `samples`."""
    low, high = percentile_interval(samples, confidence)
    return Interval(float(value), low, high)

"""Finished runs grouped into cells (the same settings, several seeds), summarised with error bars.

Reads run folders as `train_run` leaves them (`run_config.json`, `metrics.json`,
`predictions.json`); no torch. A *cell* holds the runs whose settings differ only in
their training seed. Its summary: mean ± std over seeds of macro-F1, micro-F1,
accuracy and training time, and 95 % bootstrap intervals (`stats.EvalBootstrap`) of
the seed-mean macro- and micro-F1 on the evaluation set. Runs scored on the same
evaluation sentences share one bootstrap, so any two of their cells can be compared
pairwise (`Cells.difference`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..runfiles import METRICS_FILE, PREDICTIONS_FILE, RUN_CONFIG_FILE, read_json
from .config import OPERATIONAL_SETTINGS
from .stats import EvalBootstrap, Interval, interval, mean_std

# Settings that do not make another cell: the training seed, where things were, and what is derived.
NOT_CELL_SETTINGS = {
    "train_seed",
    "model",
    "data",
    "train_examples",
    "effective_epochs",
    "total_steps",
    "eval_every",
    *OPERATIONAL_SETTINGS,
}
DRAWS = 1000


@dataclass
class Run:
    """One finished run folder."""

    folder: Path
    config: dict[str, Any]
    metrics: dict[str, Any]
    predictions: dict[str, Any] | None

    @property
    def seed(self) -> int:
        return int(self.metrics.get("seed", self.config.get("train_seed") or self.config.get("seed", 42)))

    @property
    def eval_key(self) -> str | None:
        """A hash of the evaluation set (sentence ids + gold labels), or None without predictions."""
        if not self.predictions:
            return None
        text = json.dumps([self.predictions.get("ids"), self.predictions["labels"]])
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_run(folder: Path) -> Run:
    folder = Path(folder)
    return Run(
        folder,
        read_json(folder / RUN_CONFIG_FILE) or {},
        read_json(folder / METRICS_FILE) or {},
        read_json(folder / PREDICTIONS_FILE),
    )


def cell_settings(run: Run) -> dict[str, Any]:
    """The settings that make a cell: the run config without seeds, paths, derived schedule and operational
    settings. A run recorded before launches were (one process) gets world size 1 and its own batch as the
    effective one, so that it shares a cell with the same run recorded later."""
    settings = {k: v for k, v in run.config.items() if k not in NOT_CELL_SETTINGS}
    settings.setdefault("world_size", 1)
    settings.setdefault("effective_batch_size", settings.get("batch_size"))
    return dict(sorted(settings.items()))


def cell_label(settings: dict[str, Any], distinct: dict[str, Any] | None = None) -> str:
    """`variant × size`, plus the settings in which this cell differs from the usual ones (`distinct`)."""
    size = settings.get("train_size")
    label = f"{settings.get('variant')} × {size:,}" if isinstance(size, int) else f"{settings.get('variant')} × {size}"
    extras = [f"{k} {v}" for k, v in (distinct or {}).items()]
    return label + (f" ({', '.join(extras)})" if extras else "")


@dataclass
class Cell:
    """Runs of one setting over several seeds."""

    settings: dict[str, Any]
    runs: list[Run] = field(default_factory=list)
    label: str = ""

    @property
    def variant(self) -> str:
        return str(self.settings.get("variant"))

    @property
    def train_size(self) -> int | str:
        return self.settings.get("train_size")

    def values(self, key: str) -> list[float]:
        return [float(r.metrics[key]) for r in self.runs if r.metrics.get(key) is not None]

    @property
    def eval_key(self) -> str | None:
        keys = {r.eval_key for r in self.runs}
        return keys.pop() if len(keys) == 1 else None


class Cells:
    """The cells of a set of runs, and paired bootstrap comparisons between them.

    Args:
        runs: finished runs (any grids).
        draws: bootstrap resamples.
        seed: seeds the bootstrap.
        defaults: settings that are the usual ones; a cell whose settings differ from them in anything but
            variant and size gets those settings in its label (e.g. `preset paper`, `class_weight balanced`).
    """

    def __init__(
        self, runs: list[Run], draws: int = DRAWS, seed: int = 0, defaults: dict[str, Any] | None = None
    ) -> None:
        groups: dict[str, Cell] = {}
        for run in runs:
            settings = cell_settings(run)
            key = json.dumps(settings, sort_keys=True, default=str)
            groups.setdefault(key, Cell(settings)).runs.append(run)
        self.cells = list(groups.values())
        for cell in self.cells:
            cell.runs.sort(key=lambda r: r.seed)
            distinct = {
                k: v
                for k, v in cell.settings.items()
                if defaults is not None and k not in ("variant", "train_size") and k in defaults and defaults[k] != v
            }
            cell.label = cell_label(cell.settings, distinct)
        self.draws, self.seed = draws, seed
        self._boots: dict[str, EvalBootstrap] = {}
        self._samples: dict[tuple[int, str], np.ndarray] = {}

    def __iter__(self):
        return iter(self.cells)

    def find(self, variant: str, size: int | str, **settings: Any) -> Cell | None:
        """The cell of `variant` × `size` whose settings include `settings` (the first one)."""
        for cell in self.cells:
            if (
                cell.variant == variant
                and cell.train_size == size
                and all(cell.settings.get(k) == v for k, v in settings.items())
            ):
                return cell
        return None

    def bootstrap(self, cell: Cell) -> EvalBootstrap | None:
        key = cell.eval_key
        if key is None:
            return None
        if key not in self._boots:
            labels = cell.runs[0].predictions["labels"]
            names = cell.runs[0].metrics.get("label_names") or []
            classes = max(
                len(names), int(max(labels)) + 1, *(int(max(r.predictions["predictions"])) + 1 for r in cell.runs)
            )
            self._boots[key] = EvalBootstrap(labels, classes, self.draws, self.seed)
        return self._boots[key]

    def samples(self, cell: Cell, metric: str = "macro_f1") -> np.ndarray | None:
        """The cell's seed-mean `metric` (`macro_f1` / `accuracy`) in every bootstrap resample, or None."""
        key = (id(cell), metric)
        if key not in self._samples:
            boot = self.bootstrap(cell)
            if boot is None:
                return None
            self._samples[key] = boot.cell_samples([r.predictions["predictions"] for r in cell.runs], metric)
        return self._samples[key]

    def interval(self, cell: Cell, metric: str = "macro_f1") -> Interval | None:
        """Mean over seeds of `metric` with its bootstrap interval (None: no predictions saved)."""
        samples = self.samples(cell, metric)
        key = "macro_f1" if metric == "macro_f1" else "accuracy"
        return None if samples is None else interval(float(np.mean(cell.values(key))), samples)

    def difference(self, a: Cell, b: Cell, metric: str = "macro_f1") -> Interval | None:
        """a − b in mean `metric`, with its paired bootstrap interval (None: not on one evaluation set)."""
        if a.eval_key is None or a.eval_key != b.eval_key:
            return None
        sa, sb = self.samples(a, metric), self.samples(b, metric)
        key = "macro_f1" if metric == "macro_f1" else "accuracy"
        return interval(float(np.mean(a.values(key)) - np.mean(b.values(key))), sa - sb)

    def summary(self, cell: Cell) -> dict[str, Any]:
        """What results.json keeps of a cell."""
        out: dict[str, Any] = {
            "cell": cell.label,
            "variant": cell.variant,
            "train_size": cell.train_size,
            "seeds": [r.seed for r in cell.runs],
            "runs": [r.folder.name for r in cell.runs],
        }
        for key in ("macro_f1", "micro_f1", "accuracy", "train_seconds"):
            values = cell.values(key)
            if values:
                mean, std = mean_std(values)
                # 6 places: the tables round to 3, and a value rounded twice could differ from the report's
                out[f"{key}_mean"], out[f"{key}_std"] = round(mean, 6), round(std, 6)
        for metric, name in (("macro_f1", "macro_f1_ci"), ("accuracy", "micro_f1_ci")):
            ci = self.interval(cell, metric)
            out[name] = [round(ci.low, 6), round(ci.high, 6)] if ci else None
        out["trainable_parameters"] = cell.runs[0].metrics.get("trainable_parameters")
        out["train_examples"] = cell.runs[0].metrics.get("train_examples", cell.train_size)
        return out

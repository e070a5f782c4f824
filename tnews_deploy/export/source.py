"""What `tnews-deploy export SOURCE` points at: a checkpoint, a run, or a grid.

Resolves SOURCE to a checkpoint folder plus what is known about how it was
evaluated (data source, evaluation-set size, seed), so that verification can
reuse the very evaluation set the grid scored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..training.run import CHECKPOINT_DIR, CONFIG_FILE, METRICS_FILE, WEIGHT_FILES

GRID_RESULTS = "results.json"


@dataclass(frozen=True)
class ExportSource:
    checkpoint: Path
    kind: str  # "checkpoint", "run" or "grid"
    run_config: dict[str, Any] | None = None  # the resolved TrainConfig of the run, if known
    run_metrics: dict[str, Any] | None = None
    grid_best: dict[str, Any] | None = None

    def describe(self) -> str:
        if self.kind == "grid" and self.grid_best:
            b = self.grid_best
            return (f"best grid run {b['variant']} × {b['train_size']:,} "
                    f"(macro-F1 {b['macro_f1']:.4f}): {self.checkpoint}")
        return f"{self.kind} {self.checkpoint}"

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind, "checkpoint": str(self.checkpoint.resolve())}
        if self.run_config:
            data["run"] = {k: self.run_config.get(k) for k in
                           ("model", "data", "variant", "train_size", "preset", "seed", "lr", "max_length")}
        if self.run_metrics:
            data["run_metrics"] = {k: self.run_metrics.get(k) for k in ("macro_f1", "micro_f1", "accuracy")}
        if self.grid_best:
            data["grid_best"] = self.grid_best
        return data


def _is_checkpoint(folder: Path) -> bool:
    return (folder / "config.json").is_file() and any((folder / w).is_file() for w in WEIGHT_FILES)


def _read(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def resolve_source(source: str | Path) -> ExportSource:
    """Find the checkpoint behind SOURCE; raises `UserError` when there is none."""
    path = Path(source).expanduser()
    if not path.is_dir():
        raise UserError(f"{path}: no such folder. SOURCE is a checkpoint, a training-run or a grid folder.")
    if (path / GRID_RESULTS).is_file():
        results = _read(path / GRID_RESULTS) or {}
        best = results.get("best")
        if not best:
            raise UserError(f"{path / GRID_RESULTS}: no finished run yet; run or resume the grid first.")
        run_dir = path / Path(best["checkpoint"]).parent
        checkpoint = path / best["checkpoint"]
        if not _is_checkpoint(checkpoint):
            raise UserError(
                f"{checkpoint}: the grid's best run has no checkpoint with weights here "
                "(was the grid copied without its weights?)."
            )
        return ExportSource(checkpoint, "grid", _read(run_dir / CONFIG_FILE), _read(run_dir / METRICS_FILE), best)
    if _is_checkpoint(path / CHECKPOINT_DIR):
        if not (path / METRICS_FILE).is_file():
            raise UserError(f"{path}: the run is not finished (no {METRICS_FILE}); finish it before exporting.")
        return ExportSource(path / CHECKPOINT_DIR, "run", _read(path / CONFIG_FILE), _read(path / METRICS_FILE))
    if _is_checkpoint(path):
        parent = path.parent
        return ExportSource(path, "checkpoint", _read(parent / CONFIG_FILE), _read(parent / METRICS_FILE))
    raise UserError(
        f"{path}: neither a checkpoint (config.json + model weights), a training-run folder "
        f"(with {CHECKPOINT_DIR}/) nor a grid folder (with {GRID_RESULTS})."
    )

"""What `tnews-deploy export SOURCE` points at: a checkpoint, a run, or a grid.

Resolves SOURCE to a checkpoint folder plus what is known about how it was
evaluated (data source, evaluation-set size, seed), so that verification can
reuse the very evaluation set the grid scored. Stdlib only (no torch).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..runfiles import CHECKPOINT_DIR, GRID_RESULTS_JSON, METRICS_FILE, RUN_CONFIG_FILE, is_checkpoint, read_json


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
            size = f"{b['train_size']:,}" if isinstance(b["train_size"], int) else b["train_size"]
            seed = f", seed {b['seed']}" if "seed" in b else ""
            return f"best grid run {b['variant']} × {size}{seed} (macro-F1 {b['macro_f1']:.4f}): {self.checkpoint}"
        return f"{self.kind} {self.checkpoint}"

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind, "checkpoint": str(self.checkpoint.resolve())}
        if self.run_config:
            data["run"] = {
                k: self.run_config.get(k)
                for k in ("model", "data", "variant", "train_size", "preset", "seed", "lr", "max_length")
            }
        if self.run_metrics:
            data["run_metrics"] = {k: self.run_metrics.get(k) for k in ("macro_f1", "micro_f1", "accuracy")}
        if self.grid_best:
            data["grid_best"] = self.grid_best
        return data


def resolve_source(source: str | Path) -> ExportSource:
    """Find the checkpoint behind SOURCE; raises `UserError` when there is none."""
    path = Path(source).expanduser()
    if not path.is_dir():
        raise UserError(f"{path}: no such folder. SOURCE is a checkpoint, a training-run or a grid folder.")
    if (path / GRID_RESULTS_JSON).is_file():
        results = read_json(path / GRID_RESULTS_JSON) or {}
        best = results.get("best")
        if not best:
            raise UserError(f"{path / GRID_RESULTS_JSON}: no finished run yet; run or resume the grid first.")
        run_dir = path / Path(best["checkpoint"]).parent
        checkpoint = path / best["checkpoint"]
        if not is_checkpoint(checkpoint):
            raise UserError(
                f"{checkpoint}: the grid's best run has no checkpoint with weights here "
                "(was the grid copied without its weights?)."
            )
        return ExportSource(
            checkpoint, "grid", read_json(run_dir / RUN_CONFIG_FILE), read_json(run_dir / METRICS_FILE), best
        )
    if is_checkpoint(path / CHECKPOINT_DIR):
        if not (path / METRICS_FILE).is_file():
            raise UserError(f"{path}: the run is not finished (no {METRICS_FILE}); finish it before exporting.")
        return ExportSource(
            path / CHECKPOINT_DIR, "run", read_json(path / RUN_CONFIG_FILE), read_json(path / METRICS_FILE)
        )
    if is_checkpoint(path):
        parent = path.parent
        return ExportSource(path, "checkpoint", read_json(parent / RUN_CONFIG_FILE), read_json(parent / METRICS_FILE))
    raise UserError(
        f"{path}: neither a checkpoint (config.json + model weights), a training-run folder "
        f"(with {CHECKPOINT_DIR}/) nor a grid folder (with {GRID_RESULTS_JSON})."
    )

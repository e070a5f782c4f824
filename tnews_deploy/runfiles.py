"""The files of run and grid folders: their names, and the stdlib helpers that read and write them.

Stdlib only, so that resolving an export source, resuming a grid or writing
`data-stats` output never needs the training extra. A run folder holds
`checkpoint/` (model + tokenizer), `run_config.json` (the resolved `TrainConfig`)
and `metrics.json`, written last; a grid folder holds one run folder per run and
`results.json` (+ `.md`, `.png`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

CHECKPOINT_DIR = "checkpoint"
METRICS_FILE = "metrics.json"
RUN_CONFIG_FILE = "run_config.json"  # the resolved TrainConfig of a run
LOG_HISTORY_FILE = "log_history.json"
MODEL_CONFIG_FILE = "config.json"  # transformers' model config in a checkpoint (labels in id2label)
WEIGHT_FILES = (
    "model.safetensors",
    "pytorch_model.bin",
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
)
GRID_RESULTS_JSON = "results.json"
GRID_RESULTS_MD = "results.md"
GRID_RESULTS_PNG = "results.png"


def write_json_atomic(path: Path, data: Any) -> None:
    """Write `data` as indented UTF-8 JSON; readers see the old file or the new one, never half of one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in `path`, or None when there is no such file."""
    path = Path(path)
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def is_checkpoint(folder: Path) -> bool:
    """A folder saved with `save_pretrained`: a model config and weights."""
    folder = Path(folder)
    return (folder / MODEL_CONFIG_FILE).is_file() and any((folder / name).is_file() for name in WEIGHT_FILES)


def is_finished(run_dir: Path) -> bool:
    """A run is finished when its metrics and a complete checkpoint are both there."""
    run_dir = Path(run_dir)
    return (run_dir / METRICS_FILE).is_file() and is_checkpoint(run_dir / CHECKPOINT_DIR)

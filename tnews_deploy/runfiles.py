"""The files of run and grid folders: their names, and the stdlib helpers that read and write them.

Stdlib only, so that resolving an export source, resuming a grid or writing
`data-stats` output never needs the training extra. A run folder holds
`checkpoint/` (model + tokenizer), `run_config.json` (the resolved `TrainConfig`)
and `metrics.json`, written last; a grid folder holds one run folder per run and
`results.json` (+ `.md`, `.png`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHECKPOINT_DIR = "checkpoint"
METRICS_FILE = "metrics.json"
RUN_CONFIG_FILE = "run_config.json"  # the resolved TrainConfig of a run
LOG_HISTORY_FILE = "log_history.json"
PREDICTIONS_FILE = "predictions.json"  # evaluation-set ids, gold labels and the run's predictions
RUN_LOG_FILE = "train.log"  # a run's log lines, transformers' loading warnings included
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


def write_json_atomic(path: Path, data: Any, indent: int | None = 2) -> None:
    """Write `data` as UTF-8 JSON (`indent` None: one line); readers see the old file or the new one, never half."""
    write_text_atomic(path, json.dumps(data, indent=indent, ensure_ascii=False) + "\n")


def partial_path(path: Path, suffix: str = ".tmp") -> Path:
    """Where to write `path` before `os.replace` puts it in place: hidden and per process, so that several
    writers of one file (grid workers) never clash. `suffix`: `path.suffix` for writers that go by it
    (matplotlib)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}{suffix}")


@contextmanager
def replaced_whole(path: Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yields where to write `path` (`partial_path`); when the block ends, what was written there replaces
    `path` in one step, so readers see the old file or the new one, never half. Nothing written: `path` is
    left as it was; an error: the partial file is removed."""
    tmp = partial_path(path, suffix)
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if tmp.exists():
        os.replace(tmp, path)


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` (UTF-8) so that readers see the old file or the new one, never half (`replaced_whole`)."""
    with replaced_whole(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


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


def has_results(run_dir: Path) -> bool:
    """A run's results are there: its config and its metrics (written last), with or without the checkpoint.

    What reports read. A run kept for its results only (the study's folders in `docs/`, a grid whose
    checkpoints were deleted to free the disk) has them; a grid would train it again (`is_finished`).
    """
    run_dir = Path(run_dir)
    return (run_dir / METRICS_FILE).is_file() and (run_dir / RUN_CONFIG_FILE).is_file()


GENERIC_FOLDER_NAMES = {"hf", "clue", "data", "checkpoint", "model", "models"}


def source_identity(source: str | Path) -> dict[str, str | None]:
    """What a `--model`/`--data` source is, without the machine's paths: a name and a content hash.

    A local folder is named by its last folder name (two, for generic ones such as `tnews/hf`) and hashed
    (sha256 over the names and bytes of its top-level files, hidden ones skipped); a hub id keeps its id,
    with no hash (the hub names a moving revision).
    """
    path = Path(source).expanduser()
    if not path.exists():
        return {"name": str(source), "sha256": None}
    path = path.resolve()
    name = path.name if path.name.lower() not in GENERIC_FOLDER_NAMES else "/".join(path.parts[-2:])
    files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")) if path.is_dir() else [path]
    return {"name": name, "sha256": _hash_files(tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files))}


@functools.lru_cache(maxsize=16)
def _hash_files(files: tuple[tuple[str, int, int], ...]) -> str:
    digest = hashlib.sha256()
    for name, _, _ in files:
        digest.update(Path(name).name.encode("utf-8") + b"\0")
        with open(name, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()

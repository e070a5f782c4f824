"""Mid-run resume: find the latest complete Trainer checkpoint, record resumes, keep training time.

Runs that save Trainer checkpoints (`distill`, and `train`/`grid` with `--save-every` or
`--train-size all`) keep only the latest one (`save_total_limit=1`). Rerunning the same
command after a kill continues from it (`Trainer.train(resume_from_checkpoint=...)`) instead
of from step 0:

* `resume_point(work_dir)`: the newest checkpoint written to the end (a checkpoint cut short
  by a kill lacks `trainer_state.json`, written last, and is removed);
* `start_or_resume(work_dir, total_steps)`: that checkpoint, the step it holds, and the
  list of steps the run was resumed from so far (kept in `resumes.json`);
* `ElapsedCallback`: training seconds summed over the invocations of one run.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

from transformers import TrainerCallback

from ..runfiles import read_json, write_json_atomic
from . import distributed

logger = logging.getLogger(__name__)

RESUMES_FILE = "resumes.json"
ELAPSED_FILE = "elapsed.json"


def complete_checkpoints(work_dir: Path) -> list[Path]:
    """Trainer checkpoints that were written to the end (trainer_state.json is written last), oldest first."""
    found = []
    for path in Path(work_dir).glob("checkpoint-*"):
        step = path.name.rsplit("-", 1)[-1]
        if step.isdigit() and (path / "trainer_state.json").is_file():
            found.append((int(step), path))
    return [p for _, p in sorted(found)]


def resume_point(work_dir: Path) -> Path | None:
    """The newest complete checkpoint; incomplete ones (a kill while saving) are removed."""
    complete = complete_checkpoints(work_dir)
    for path in Path(work_dir).glob("checkpoint-*"):
        if path not in complete:
            shutil.rmtree(path, ignore_errors=True)
    return complete[-1] if complete else None


def start_or_resume(work_dir: Path, total_steps: int) -> tuple[Path | None, int, list[int]]:
    """Where training starts: (checkpoint to resume from or None, its step, every step resumed from so far).

    Args:
        work_dir: the Trainer's output_dir.
        total_steps: the run's planned steps (for the log line).
    """
    resume = resume_point(work_dir)
    resumes = (read_json(Path(work_dir) / RESUMES_FILE) or {}).get("resumed_from_steps", [])
    start_step = 0
    if resume is not None:
        start_step = int(json.loads((resume / "trainer_state.json").read_text())["global_step"])
        resumes = [*resumes, start_step]
        if distributed.is_main():  # (torchrun) every rank resumes; rank 0 keeps the record
            write_json_atomic(Path(work_dir) / RESUMES_FILE, {"resumed_from_steps": resumes})
        logger.info("resuming from %s (step %d of %d)", resume.name, start_step, total_steps)
    return resume, start_step, resumes


class ElapsedCallback(TrainerCallback):
    """Training seconds summed over invocations, saved beside the Trainer checkpoints.

    At every checkpoint it writes `{"step", "train_seconds"}` to `path`; a resumed run
    starts its clock from the last value written (the time after the last checkpoint of a
    killed invocation is lost work and is not counted).

    Args:
        path: the JSON file (in the Trainer's work folder).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.base = 0.0
        self.started = time.perf_counter()

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = time.perf_counter()
        saved = json.loads(self.path.read_text(encoding="utf-8")) if self.path.is_file() else {}
        self.base = float(saved.get("train_seconds", 0.0)) if state.global_step else 0.0
        return control

    @property
    def seconds(self) -> float:
        return self.base + time.perf_counter() - self.started

    def on_save(self, args, state, control, **kwargs):
        if not distributed.is_main():  # (torchrun) rank 0 writes beside the checkpoint it saved
            return control
        write_json_atomic(self.path, {"step": state.global_step, "train_seconds": round(self.seconds, 1)}, indent=None)
        return control

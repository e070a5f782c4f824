"""What a person sees while a run trains: a progress bar and readable log lines, not raw dicts.

Transformers' console callbacks print every log dict as is (`ProgressCallback`
writes `{'loss': …, 'grad_norm': …}` between the bars; `PrinterCallback`, used
when the bars are off, prints it). `use_readable_progress` swaps them for
callbacks that put the training loss on the progress bar and log each
selection evaluation as one line on this module's logger (DEBUG for the raw
training-loss entries). With the bars off (output to a file or a pipe), a line
every 30 s says the step, the rate and the ETA (`ProgressLinesCallback`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from transformers import PrinterCallback, ProgressCallback, TrainerCallback

from ..progress_log import INTERVAL_S, ProgressLog

logger = logging.getLogger(__name__)


def _with(line: str, logs: dict[str, Any], fields: tuple[tuple[str, str, str], ...]) -> str:
    """`line` followed by ", <name> <value>" for each (key, name, format) of `fields` that `logs` has."""
    return line + "".join(f", {name} {logs[key]:{fmt}}" for key, name, fmt in fields if key in logs)


def describe(logs: dict[str, Any], step: int, max_steps: int) -> tuple[int, str] | None:
    """A log level and a readable line for one Trainer log entry (None: nothing worth a line)."""
    where = f"step {step:,}/{max_steps:,}"
    if "epoch" in logs:
        where += f" (epoch {logs['epoch']:.2f})"
    if "eval_macro_f1" in logs:
        return logging.INFO, _with(
            f"{where}: selection macro-F1 {logs['eval_macro_f1']:.4f}",
            logs,
            (("eval_micro_f1", "micro-F1", ".4f"), ("eval_loss", "loss", ".4f")),
        )
    if "train_runtime" in logs:
        return logging.DEBUG, (
            f"{where}: training done in {logs['train_runtime']:.1f} s, "
            f"mean loss {logs.get('train_loss', float('nan')):.4f}"
        )
    if "loss" in logs:
        return logging.DEBUG, _with(
            f"{where}: loss {logs['loss']:.4f}",
            logs,
            (("learning_rate", "lr", ".3g"), ("grad_norm", "grad norm", ".3g")),
        )
    return None


class LogLinesCallback(TrainerCallback):
    """Each Trainer log entry as one line on this module's logger (see `describe`)."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            described = describe(logs, state.global_step, state.max_steps)
            if described:
                logger.log(*described)


class ProgressLinesCallback(TrainerCallback):
    """Without a progress bar: one line every `interval_s` seconds while training (step, rate, ETA).

    Steps are counted from where this process started (a resumed run's ETA counts its own pace); selection
    evaluations advance no step but keep the lines coming.

    Args:
        interval_s: seconds between lines.
        clock: seconds on a monotonic clock; default: `progress_log.monotonic`.
    """

    def __init__(self, interval_s: float = INTERVAL_S, clock: Callable[[], float] | None = None) -> None:
        self.interval_s, self.clock = interval_s, clock
        self.progress: ProgressLog | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.progress = ProgressLog(
                logger,
                "training",
                "step",
                total=state.max_steps,
                start=state.global_step,
                interval_s=self.interval_s,
                clock=self.clock,
            )

    def on_step_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.update(state.global_step)

    on_prediction_step = on_step_end

    def on_train_end(self, args, state, control, **kwargs):
        self.progress = None


class ProgressBarCallback(ProgressCallback):
    """Transformers' progress bars, with the latest training loss on the bar instead of printed dicts."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and self.training_bar is not None and logs and "loss" in logs:
            self.training_bar.set_postfix(loss=f"{logs['loss']:.4f}", refresh=False)


def use_readable_progress(trainer: Any, bar: type[ProgressCallback] | None = None) -> None:
    """Replace `trainer`'s console callbacks (bar or printer) with a progress bar + `LogLinesCallback`.

    Args:
        trainer: a `transformers.Trainer`; its bars stay off when `args.disable_tqdm` is set (the log
            lines remain, and `ProgressLinesCallback` adds a line every 30 s: a run whose output goes to a
            file still says how it goes).
        bar: the progress-bar callback class; default `ProgressBarCallback`.
    """
    bars = any(type(cb) is ProgressCallback for cb in trainer.callback_handler.callbacks)
    trainer.remove_callback(PrinterCallback)
    if bars:
        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(bar or ProgressBarCallback)
    else:
        trainer.add_callback(ProgressLinesCallback)
    trainer.add_callback(LogLinesCallback)

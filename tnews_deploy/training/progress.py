"""A Trainer progress bar that shows the losses on the bar instead of printing log dicts.

Transformers' `ProgressCallback` writes every log entry as a raw dict under the
bar (`{'loss': 1.33, 'grad_norm': 0.87, ...}`), which buries the bar in a log
file. `CompactProgressCallback` puts the latest training loss (and any extra
loss terms), the last selection macro-F1 and the best one on the bar's postfix
instead, and starts the bar at the resumed step, so its rate and ETA are right
after a resume.
"""

from __future__ import annotations

from transformers.trainer_callback import ProgressCallback

# Log keys shown on the bar, and their short names.
SHOWN = {"loss": "loss", "kl": "kl", "ce": "ce", "eval_macro_f1": "sel-F1"}


class CompactProgressCallback(ProgressCallback):
    """`ProgressCallback` with a postfix instead of printed dicts, resume-aware."""

    def __init__(self) -> None:
        super().__init__()
        self.postfix: dict[str, str] = {}
        self.best_selection: float | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            from tqdm.auto import tqdm as auto_tqdm

            self.training_bar = auto_tqdm(total=state.max_steps, initial=state.global_step, dynamic_ncols=True,
                                          desc="training")
        self.current_step = state.global_step

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or self.training_bar is None:
            return
        for key, short in SHOWN.items():
            value = (logs or {}).get(key)
            if isinstance(value, (int, float)):
                self.postfix[short] = f"{value:.4f}"
                if key == "eval_macro_f1" and (self.best_selection is None or value > self.best_selection):
                    self.best_selection = float(value)
        if self.best_selection is not None:
            self.postfix["best"] = f"{self.best_selection:.4f}"
        self.training_bar.set_postfix(self.postfix, refresh=False)

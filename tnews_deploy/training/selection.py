"""Model selection during training: keep the best weights in memory, stop early.

Transformers' own route (`load_best_model_at_end` + `EarlyStoppingCallback`)
writes a full checkpoint to disk at every evaluation; for a 118M-parameter
encoder that is ~0.5 GB a time. This callback keeps a CPU copy of only the
parameters that train (a few hundred KB for the frozen-encoder variant) and
restores it when training ends.
"""

from __future__ import annotations

import torch
from transformers import TrainerCallback

SELECTION_METRIC = "eval_macro_f1"


class SelectBestCallback(TrainerCallback):
    """Track the best selection macro-F1, keep its weights, stop after `patience` misses."""

    def __init__(self, patience: int = 0, keep_best: bool = True, metric: str = SELECTION_METRIC) -> None:
        self.patience = patience
        self.keep_best = keep_best
        self.metric = metric
        self.best_metric: float | None = None
        self.best_step: int | None = None
        self.misses = 0
        self.stopped_early = False
        self._best_weights: dict[str, torch.Tensor] | None = None

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
        value = (metrics or {}).get(self.metric)
        if value is None:
            return control
        if self.best_metric is None or value > self.best_metric:
            self.best_metric, self.best_step, self.misses = float(value), state.global_step, 0
            if self.keep_best and model is not None:
                self._best_weights = {
                    name: p.detach().to("cpu", copy=True)
                    for name, p in model.named_parameters()
                    if p.requires_grad
                }
        else:
            self.misses += 1
            if self.patience and self.misses >= self.patience:
                self.stopped_early = True
                control.should_training_stop = True
        return control

    def restore_best(self, model: torch.nn.Module) -> bool:
        """Load the kept weights into `model`; False when nothing was kept."""
        if not self.keep_best or self._best_weights is None:
            return False
        with torch.no_grad():
            for name, param in model.named_parameters():
                if name in self._best_weights:
                    param.copy_(self._best_weights[name].to(param.device))
        return True

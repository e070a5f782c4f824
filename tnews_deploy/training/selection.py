"""Model selection during training: keep the best weights in memory, stop early.

Transformers' own route (`load_best_model_at_end` + `EarlyStoppingCallback`)
writes a full checkpoint to disk at every evaluation; for a 118M-parameter
encoder that is ~0.5 GB a time. This callback keeps a CPU copy of only the
parameters that train (a few hundred KB for the frozen-encoder variant) and
restores it when training ends.

For runs that checkpoint to resume after a kill (`distill`), give it a
`persist_dir`: each new best is also written there (`best-step-N.safetensors`),
and the selection state (best metric and step, misses) travels in the Trainer's
checkpoints (`ExportableState`), so a resumed run keeps the best weights it
had found before it was killed.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

from . import distributed

SELECTION_METRIC = "eval_macro_f1"
BEST_FILE = "best-step-{step}.safetensors"


class SelectBestCallback(TrainerCallback, ExportableState):
    """Track the best selection macro-F1, keep its weights, stop after `patience` misses.

    Args:
        patience: evaluations without a better metric before training stops; 0 = never.
        keep_best: keep (and restore at the end) the weights of the best evaluation.
        metric: the key of the evaluation metric to maximise.
        persist_dir: when set, also write each new best's weights there, so that a run resumed
            from a Trainer checkpoint can restore them.
    """

    def __init__(
        self,
        patience: int = 0,
        keep_best: bool = True,
        metric: str = SELECTION_METRIC,
        persist_dir: str | None = None,
    ) -> None:
        self.patience = patience
        self.keep_best = keep_best
        self.metric = metric
        self.persist_dir = persist_dir
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
                    name: p.detach().to("cpu", copy=True) for name, p in model.named_parameters() if p.requires_grad
                }
                if self.persist_dir:
                    self._persist()
        else:
            self.misses += 1
            if self.patience and self.misses >= self.patience:
                self.stopped_early = True
                control.should_training_stop = True
        return control

    def on_save(self, args, state, control, **kwargs):
        # The checkpoint just written records `best_step`: older best files are no longer needed.
        # (A best found after the last checkpoint stays too, for the run that resumes before it.)
        if self.persist_dir and self.best_step is not None and distributed.is_main():
            for path in Path(self.persist_dir).glob(BEST_FILE.format(step="*")):
                step = path.name[len("best-step-") : -len(".safetensors")]
                if step.isdigit() and int(step) < self.best_step:
                    path.unlink(missing_ok=True)
        return control

    def _best_path(self) -> Path:
        return Path(str(self.persist_dir)) / BEST_FILE.format(step=self.best_step)

    def _persist(self) -> None:
        from safetensors.torch import save_file

        if not distributed.is_main():  # (torchrun) every rank keeps the best weights in memory; rank 0 saves them
            return
        path = self._best_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        save_file({k: v.contiguous() for k, v in (self._best_weights or {}).items()}, str(tmp))
        os.replace(tmp, path)

    def state(self) -> dict:
        """What a Trainer checkpoint keeps of this callback (JSON; no weights)."""
        return {
            "args": {
                "patience": self.patience,
                "keep_best": self.keep_best,
                "metric": self.metric,
                "persist_dir": self.persist_dir,
            },
            "attributes": {
                "best_metric": self.best_metric,
                "best_step": self.best_step,
                "misses": self.misses,
                "stopped_early": self.stopped_early,
            },
        }

    def restore_best(self, model: torch.nn.Module) -> bool:
        """Load the kept weights into `model`; False when nothing was kept."""
        if not self.keep_best:
            return False
        weights = self._best_weights
        if weights is None and self.persist_dir and self.best_step is not None and self._best_path().is_file():
            from safetensors.torch import load_file

            weights = load_file(str(self._best_path()))
        if weights is None:
            return False
        with torch.no_grad():
            for name, param in model.named_parameters():
                if name in weights:
                    param.copy_(weights[name].to(param.device))
        return True

"""The `Trainer` that `train`, `grid` and `distill` run: 🤗 `transformers.Trainer` with one fix for CPU ranks.

Under `torchrun` on CPUs (gloo), `TrainingArguments.device` is `cpu:0`, and the Trainer resumes the optimizer
with `torch.load(..., map_location=args.device)`; torch knows no storage location `cpu:0`, so every resume of a
multi-process CPU run fails ("don't know how to restore data location ... (tagged with cpu:0)"). Here a CPU
rank loads the optimizer and scheduler state onto `cpu`; everything else (GPUs, one process) is the Trainer's.
"""

from __future__ import annotations

import os

import torch
import transformers
from transformers.trainer import OPTIMIZER_NAME, SCHEDULER_NAME


class Trainer(transformers.Trainer):
    """`transformers.Trainer` that also resumes multi-process CPU runs (see the module docstring)."""

    def _load_optimizer_and_scheduler(self, checkpoint):
        cpu_ranks = self.args.world_size > 1 and self.args.device.type == "cpu"
        if checkpoint is None or not cpu_ranks or self.is_fsdp_enabled or self.is_deepspeed_enabled:
            return super()._load_optimizer_and_scheduler(checkpoint)
        optimizer, scheduler = (os.path.join(checkpoint, name) for name in (OPTIMIZER_NAME, SCHEDULER_NAME))
        if os.path.isfile(optimizer) and os.path.isfile(scheduler):
            self.optimizer.load_state_dict(torch.load(optimizer, map_location="cpu", weights_only=True))
            self.lr_scheduler.load_state_dict(torch.load(scheduler, map_location="cpu", weights_only=True))

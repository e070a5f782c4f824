"""Multi-process training (`torchrun` / `accelerate launch`): one rank writes, the others wait for it.

The HF Trainer already runs DDP when a launcher sets `WORLD_SIZE` > 1 (gloo on CPUs, NCCL on GPUs): every rank
builds the same splits from the same seed and trains on its shard of each global batch. What is ours is the
run folder: only the main rank prepares it (a fresh start or a resume), writes its files and saves the
checkpoint; the other ranks wait at `wait_for_everyone` so that none reads a half-prepared folder. The process
group is started here, through Accelerate's `PartialState` (the state the Trainer then uses), before the
folder is touched. Single-process runs never import torch.distributed's machinery through this module.
"""

from __future__ import annotations

import os


def world_size() -> int:
    """Processes in this run (the launcher's WORLD_SIZE; 1 without a launcher)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def is_main() -> bool:
    """Whether this process writes: rank 0, or the only process."""
    return int(os.environ.get("RANK", "0") or 0) == 0


def start() -> None:
    """Join the process group of a multi-process launch (no-op for a single process)."""
    if world_size() > 1:
        from accelerate import PartialState

        PartialState()


def wait_for_everyone() -> None:
    """Barrier across the ranks of a multi-process launch (no-op for a single process)."""
    if world_size() > 1:
        from accelerate import PartialState

        PartialState().wait_for_everyone()


def agree(value: bool) -> bool:
    """The main rank's `value`, on every rank of a multi-process launch (`value` itself for a single process)."""
    if world_size() == 1:
        return value
    import torch.distributed as dist

    start()  # the process group, if this is the launch's first collective call
    shared = [value]
    dist.broadcast_object_list(shared, src=0)
    return bool(shared[0])

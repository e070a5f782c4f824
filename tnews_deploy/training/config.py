"""Training configuration: the `TrainConfig` dataclass, variants and presets.

A preset fills every hyperparameter; flags given by the user override single
fields. `resolve_config` is the one place where that merge happens, so the
resolved config saved next to each checkpoint is exactly what ran.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from ..errors import ConfigError

VARIANTS: tuple[str, ...] = ("full", "freeze-embeddings", "freeze-encoder")
DEFAULT_MODEL = "bert-base-chinese"
DEFAULT_DATA = "clue/tnews"


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs; saved as `run_config.json`."""

    model: str = DEFAULT_MODEL
    data: str = DEFAULT_DATA
    variant: str = "full"
    train_size: int = 1000
    eval_size: int = 2000
    selection_size: int = 1000
    seed: int = 42
    stratify: bool = True
    preset: str = "default"
    # Optimisation. `epochs` is a floor: runs on small sets get more epochs so
    # that they take at least `min_steps` optimiser steps.
    epochs: float = 8.0
    min_steps: int = 800
    lr: float = 5e-5
    batch_size: int = 32
    max_length: int = 64
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    # Model selection on the selection slice (never on the evaluation set).
    evaluations: int = 16  # how many times a run is scored on the selection slice
    early_stopping_patience: int = 5  # evaluations without a better macro-F1; 0 = off
    select_best: bool = True  # keep the checkpoint with the best selection macro-F1
    eval_batch_size: int = 64

    def steps_per_epoch(self) -> int:
        return max(1, math.ceil(self.train_size / self.batch_size))

    def effective_epochs(self) -> float:
        """`epochs`, raised so that training takes at least `min_steps` steps."""
        floor = self.min_steps / self.steps_per_epoch()
        return float(max(self.epochs, math.ceil(floor)))

    def total_steps(self) -> int:
        return int(math.ceil(self.effective_epochs() * self.steps_per_epoch()))

    def eval_every(self) -> int:
        return max(1, math.ceil(self.total_steps() / max(1, self.evaluations)))

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(
            effective_epochs=self.effective_epochs(),
            total_steps=self.total_steps(),
            eval_every=self.eval_every(),
        )
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


# Per preset: shared settings, then per-variant overrides.
PRESETS: dict[str, dict[str, Any]] = {
    # A recipe that works at every size: enough steps for few-shot sets (step
    # floor), warmup + linear decay, early stopping on the selection slice.
    # The frozen-encoder variant trains only pooler + classifier, which needs a
    # learning rate suited to a freshly initialised head.
    "default": {
        "common": dict(
            epochs=8.0, min_steps=800, batch_size=32, max_length=64, warmup_ratio=0.1,
            weight_decay=0.01, evaluations=16, early_stopping_patience=5, select_best=True,
        ),
        "full": dict(lr=5e-5),
        "freeze-embeddings": dict(lr=5e-5),
        # Head-only steps are cheap (no backward through the encoder) and a fresh
        # head needs many of them: a higher step floor and more epochs.
        "freeze-encoder": dict(lr=2e-3, min_steps=1500, epochs=10.0),
    },
    # The study's settings: batch 8, AdamW lr 1e-5, 30 epochs, max_length 40,
    # no step floor, no early stopping, the last model is the one scored.
    "paper": {
        "common": dict(
            epochs=30.0, min_steps=0, batch_size=8, max_length=40, lr=1e-5, warmup_ratio=0.0,
            weight_decay=0.0, evaluations=30, early_stopping_patience=0, select_best=False,
        ),
    },
}


def resolve_config(
    preset: str = "default", variant: str = "full", **overrides: Any
) -> TrainConfig:
    """A `TrainConfig` from a preset, a variant and user overrides (None = not given)."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}.")
    if variant not in VARIANTS:
        raise ConfigError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}.")
    values: dict[str, Any] = {}
    values.update(PRESETS[preset].get("common", {}))
    values.update(PRESETS[preset].get(variant, {}))
    values.update({k: v for k, v in overrides.items() if v is not None})
    names = {f.name for f in fields(TrainConfig)}
    unknown = set(values) - names
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(sorted(unknown))}.")
    config = replace(TrainConfig(), preset=preset, variant=variant, **values)
    validate_config(config)
    return config


def validate_config(config: TrainConfig) -> None:
    checks = [
        (config.train_size > 0, f"--train-size must be positive (got {config.train_size})"),
        (config.eval_size > 0, f"--eval-size must be positive (got {config.eval_size})"),
        (config.batch_size > 0, f"--batch-size must be positive (got {config.batch_size})"),
        (config.lr > 0, f"--lr must be positive (got {config.lr})"),
        (config.epochs > 0, f"--epochs must be positive (got {config.epochs})"),
        (config.max_length >= 8, f"--max-length must be at least 8 (got {config.max_length})"),
        (config.selection_size >= 0, "--selection-size must be >= 0"),
        (
            config.selection_size > 0 or not config.select_best,
            "model selection needs a selection slice: set --selection-size > 0",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message + ".")

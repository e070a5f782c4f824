"""Training configuration: `TrainConfig` and `GridConfig`, variants and presets.

A preset fills every hyperparameter; flags given by the user override single
fields. `resolve_config` is the one place where that merge happens, so the
resolved config saved next to each checkpoint is exactly what ran. The
dataclasses own their defaults (the CLI reads them from here) and validate
themselves, naming the CLI flag of a bad value.

Stdlib only: importing it (or the CLI, which does) never loads torch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .. import defaults
from ..datasource import DEFAULT_DATA, DataSource  # noqa: F401  (DEFAULT_DATA: re-exported, its old home)
from ..errors import ConfigError
from ..validation import require
from .distributed import world_size

VARIANTS: tuple[str, ...] = ("full", "freeze-embeddings", "freeze-encoder")
CLASS_WEIGHTS: tuple[str, ...] = ("none", "balanced")
# Embedding rows in the optimizer: only the data's tokens (same results, less work), or every row.
TRAIN_VOCABS: tuple[str, ...] = ("data", "all")
ALL_TRAIN = "all"  # --train-size all: the whole train split (as `tnews_deploy.data.ALL_TRAIN`)
DEFAULT_MODEL = "bert-base-chinese"
# How a run is carried out, not what it trains: a finished run is the same run whatever these were (and runs that
# differ only in them are one grid cell); an unfinished one resumes under new values (e.g. `--save-every` added
# to a grid whose first runs are done). `train_vocab` changes the work per step, not the result
# (`training.vocab`); a run still resumes in the mode it started in (`run._resumable`), since its Trainer
# checkpoint's shape depends on it.
OPERATIONAL_SETTINGS = frozenset({"save_every", "train_vocab"})


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs; saved as `run_config.json`.

    `data` is a `DataSource` (a path or hub id string, or its recorded dict, is read into one); once the
    run has loaded it, it records the class names too (`data.label_names`).
    """

    model: str = DEFAULT_MODEL
    data: DataSource = field(default_factory=DataSource)
    variant: str = "full"
    train_size: int | str = 1000  # or ALL_TRAIN
    # Evaluation set and selection slice, drawn from validation. None (not given): `defaults.EVAL_SIZE` and
    # `SELECTION_SIZE`, or what fits a smaller validation split (`data.fit_split_sizes`); the run records the sizes
    # it drew.
    eval_size: int | None = None
    selection_size: int | None = None
    # `seed` draws the evaluation set and selection slice; `train_seed` (None = `seed`) draws the
    # training subset and seeds initialisation and data order. Runs with several seeds share `seed`,
    # so that they are scored on the same sentences.
    seed: int = defaults.SEED
    train_seed: int | None = None
    stratify: bool = defaults.STRATIFY
    preset: str = "default"
    # Optimisation. `epochs` is a floor: runs on small sets get more epochs so
    # that they take at least `min_steps` optimiser steps.
    epochs: float = 8.0
    min_steps: int = 800
    lr: float = 5e-5
    batch_size: int = 32
    max_length: int = defaults.MAX_LENGTH
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    # Model selection on the selection slice (never on the evaluation set).
    evaluations: int = 16  # how many times a run is scored on the selection slice
    early_stopping_patience: int = 5  # evaluations without a better macro-F1; 0 = off
    select_best: bool = True  # keep the checkpoint with the best selection macro-F1
    eval_batch_size: int = 64
    # "balanced": cross-entropy weighted by n / (classes · count) of the training subset.
    class_weight: str = "none"
    # Trainer checkpoints (the latest one kept) every N steps, so that a killed run resumes from it;
    # 0 = never, None = every `eval_every` steps (1/`evaluations` of the run) for `--train-size all`, never for
    # sized runs.
    save_every: int | None = None
    # "data": while training, the word-embedding matrix holds only the rows of tokens that occur in the
    # run's sentences; the others get zero gradients anyway, and the saved checkpoint has them all again
    # (`training.vocab`). The same results, up to rounding; fewer rows to update (e5-small on CPU: 1.15× per
    # step, ~1.1 GB less gradient and optimizer state). "all": every row, as before the setting existed;
    # a run recorded without the setting is read as "all".
    train_vocab: str = "data"

    def __post_init__(self) -> None:
        object.__setattr__(self, "data", DataSource.coerce(self.data))
        if self.train_seed == self.seed:  # the same run as one without train_seed
            object.__setattr__(self, "train_seed", None)
        require(
            [
                (
                    self.train_size == ALL_TRAIN or (isinstance(self.train_size, int) and self.train_size > 0),
                    f"--train-size must be positive or {ALL_TRAIN!r} (got {self.train_size!r})",
                ),
                (self.train_seed is None or self.train_seed >= 0, f"--seeds must be >= 0 (got {self.train_seed})"),
                (
                    self.class_weight in CLASS_WEIGHTS,
                    f"unknown --class-weight {self.class_weight!r}; choose one of {', '.join(CLASS_WEIGHTS)}",
                ),
                (self.save_every is None or self.save_every >= 0, f"--save-every must be >= 0 (got {self.save_every})"),
                (
                    self.train_vocab in TRAIN_VOCABS,
                    f"unknown --train-vocab {self.train_vocab!r}; choose one of {', '.join(TRAIN_VOCABS)}",
                ),
                (self.variant in VARIANTS, f"unknown variant {self.variant!r}; choose one of {', '.join(VARIANTS)}"),
                (self.preset in PRESETS, f"unknown preset {self.preset!r}; choose one of {', '.join(PRESETS)}"),
                (self.eval_size is None or self.eval_size > 0, f"--eval-size must be positive (got {self.eval_size})"),
                (
                    self.selection_size is None or self.selection_size >= 0,
                    f"--selection-size must be >= 0 (got {self.selection_size})",
                ),
                (self.seed >= 0, f"--seed must be >= 0 (got {self.seed})"),
                (self.epochs > 0, f"--epochs must be positive (got {self.epochs})"),
                (self.min_steps >= 0, f"--min-steps must be >= 0 (got {self.min_steps})"),
                (self.lr > 0, f"--lr must be positive (got {self.lr})"),
                (self.batch_size > 0, f"--batch-size must be positive (got {self.batch_size})"),
                (self.max_length >= 8, f"--max-length must be at least 8 (got {self.max_length})"),
                (0 <= self.warmup_ratio < 1, f"warmup_ratio must be in [0, 1) (got {self.warmup_ratio})"),
                (self.weight_decay >= 0, f"weight_decay must be >= 0 (got {self.weight_decay})"),
                (self.evaluations > 0, f"evaluations must be positive (got {self.evaluations})"),
                (self.early_stopping_patience >= 0, f"--patience must be >= 0 (got {self.early_stopping_patience})"),
                (self.eval_batch_size > 0, f"eval_batch_size must be positive (got {self.eval_batch_size})"),
                (
                    self.selection_size != 0 or not self.select_best,
                    "model selection needs a selection slice: set --selection-size > 0",
                ),
            ]
        )

    @property
    def effective_seed(self) -> int:
        """The seed of the training subset, initialisation and data order."""
        return self.seed if self.train_seed is None else self.train_seed

    def examples(self, n: int | None = None) -> int:
        """Training sentences: `train_size`, or `n` (the size of the drawn set) for `--train-size all`."""
        if isinstance(self.train_size, int):
            return self.train_size
        if n is None:
            raise ConfigError("--train-size all: the number of training sentences is known once the data is loaded.")
        return n

    def steps_per_epoch(self, n: int | None = None) -> int:
        """Optimiser steps per pass: over the global batch, `batch_size` × the processes of a torchrun launch."""
        return max(1, math.ceil(self.examples(n) / (self.batch_size * world_size())))

    def effective_epochs(self, n: int | None = None) -> float:
        """`epochs`, raised so that training takes at least `min_steps` steps (`n`: see `examples`)."""
        floor = self.min_steps / self.steps_per_epoch(n)
        return float(max(self.epochs, math.ceil(floor)))

    def total_steps(self, n: int | None = None) -> int:
        return int(math.ceil(self.effective_epochs(n) * self.steps_per_epoch(n)))

    def eval_every(self, n: int | None = None) -> int:
        return max(1, math.ceil(self.total_steps(n) / max(1, self.evaluations)))

    def save_steps(self, n: int | None = None) -> int:
        """Steps between resumable Trainer checkpoints; 0 = none (see `save_every`)."""
        if self.save_every is not None:
            return self.save_every
        return self.eval_every(n) if self.train_size == ALL_TRAIN else 0

    def to_json(self, n: int | None = None) -> dict[str, Any]:
        """The settings, plus the derived schedule (for `--train-size all`, only when `n` is given)."""
        data = asdict(self)
        data["data"] = self.data.to_json()
        if isinstance(self.train_size, int) or n is not None:
            data.update(
                train_examples=self.examples(n),
                effective_epochs=self.effective_epochs(n),
                total_steps=self.total_steps(n),
                eval_every=self.eval_every(n),
            )
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        values.setdefault("train_vocab", "all")  # recorded before the setting existed: every row trained
        return cls(**values)


# Per preset: shared settings, then per-variant overrides.
PRESETS: dict[str, dict[str, Any]] = {
    # A recipe that works at every size: enough steps for few-shot sets (step
    # floor), warmup + linear decay, early stopping on the selection slice.
    # The frozen-encoder variant trains only pooler + classifier, which needs a
    # learning rate suited to a freshly initialised head.
    "default": {
        "common": dict(
            epochs=8.0,
            min_steps=800,
            batch_size=32,
            max_length=64,
            warmup_ratio=0.1,
            weight_decay=0.01,
            evaluations=16,
            early_stopping_patience=5,
            select_best=True,
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
            epochs=30.0,
            min_steps=0,
            batch_size=8,
            max_length=40,
            lr=1e-5,
            warmup_ratio=0.0,
            weight_decay=0.0,
            evaluations=30,
            early_stopping_patience=0,
            select_best=False,
        ),
    },
}


def resolve_config(preset: str = "default", variant: str = "full", **overrides: Any) -> TrainConfig:
    """A `TrainConfig` from a preset, a variant and user overrides (None = not given).

    Raises `ConfigError` for an unknown preset, variant or setting, or a value that cannot work.
    """
    values: dict[str, Any] = {}
    values.update(PRESETS.get(preset, {}).get("common", {}))
    values.update(PRESETS.get(preset, {}).get(variant, {}))
    values.update({k: v for k, v in overrides.items() if v is not None})
    names = {f.name for f in fields(TrainConfig)}
    unknown = set(values) - names
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(sorted(unknown))}.")
    return replace(TrainConfig(), preset=preset, variant=variant, **values)


@dataclass(frozen=True)
class GridConfig:
    """A grid of runs: every variant × every training-set size × every seed, with shared settings.

    `overrides` maps `TrainConfig` fields to values (None = the preset's); every
    run's config is resolved (and so validated) when the grid config is made.
    `seeds` are training seeds (`TrainConfig.train_seed`): each draws its own
    training subsets and initialisation, while every run keeps the evaluation set
    and selection slice of `seed` (the override, default 42). None = just `seed`.
    """

    model: str
    data: DataSource
    output: Path
    variants: tuple[str, ...] = VARIANTS
    train_sizes: tuple[int | str, ...] = (500, 1000, 5000)
    preset: str = "default"
    overrides: dict[str, Any] = field(default_factory=dict)  # field -> value, None = not given
    seeds: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "output", Path(self.output))
        object.__setattr__(self, "data", DataSource.coerce(self.data))
        object.__setattr__(self, "variants", tuple(self.variants))
        object.__setattr__(self, "train_sizes", tuple(self.train_sizes))
        if self.seeds is not None:
            object.__setattr__(self, "seeds", tuple(self.seeds))
        unknown = [v for v in self.variants if v not in VARIANTS]
        require(
            [
                (bool(self.variants), "--variants names no variant"),
                (not unknown, f"unknown variant(s) {', '.join(map(str, unknown))}; choose from {', '.join(VARIANTS)}"),
                (bool(self.train_sizes), "--train-sizes names no size"),
                (
                    all(n == ALL_TRAIN or (isinstance(n, int) and n > 0) for n in self.train_sizes),
                    f"--train-sizes must be positive or {ALL_TRAIN!r} (got {', '.join(map(str, self.train_sizes))})",
                ),
                (
                    self.seeds is None or (bool(self.seeds) and all(s >= 0 for s in self.seeds)),
                    f"--seeds must name seeds >= 0 (got {', '.join(map(str, self.seeds or ()))})",
                ),
                (self.seeds is None or len(set(self.seeds)) == len(self.seeds), "--seeds names a seed twice"),
            ]
        )
        for variant in self.variants:  # the preset and every override, checked before any run starts
            for size in self.train_sizes:
                for seed in self.run_seeds():
                    self.run_config(variant, size, seed)

    @property
    def split_seed(self) -> int:
        """The seed of the evaluation set and selection slice every run shares."""
        return int(self.overrides.get("seed") if self.overrides.get("seed") is not None else TrainConfig.seed)

    def run_seeds(self) -> tuple[int, ...]:
        return self.seeds if self.seeds is not None else (self.split_seed,)

    def run_name(self, variant: str, size: int | str, seed: int | None = None) -> str:
        """`variant-size` for the run of the split seed (as before seeds existed), `variant-size-seedN` else."""
        if seed is None or seed == self.split_seed:
            return f"{variant}-{size}"
        return f"{variant}-{size}-seed{seed}"

    def run_config(self, variant: str, size: int | str, seed: int | None = None) -> TrainConfig:
        return resolve_config(
            self.preset,
            variant,
            model=self.model,
            data=self.data,
            train_size=size,
            **self.overrides,
            train_seed=seed,
        )

    def planned(self) -> list[tuple[str, int | str, int]]:
        """(variant, size, seed) of every run, variants outermost, seeds innermost."""
        return [(v, n, s) for v in self.variants for n in self.train_sizes for s in self.run_seeds()]

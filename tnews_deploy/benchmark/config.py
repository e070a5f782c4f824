"""`BenchmarkConfig`: what a benchmark run measures and how, validated on construction.

Standard library only, so the CLI can read its defaults without loading anything
heavy. Error messages name each setting as the CLI spells it (`eval_size` ->
`--eval-size`); `to_command()` spells a config back as the equivalent
`tnews-deploy benchmark` command line.
"""

from __future__ import annotations

import numbers
import os
import shlex
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any

from ..datasource import DataSource
from ..errors import ConfigError

QUICK_SETTINGS: dict[str, Any] = dict(max_sentences=64, latency_sentences=24, warmup=3, rounds=1, batch_sizes=(8,))


def flag(name: str) -> str:
    """The CLI flag of a config field: `eval_size` -> `--eval-size`."""
    return "--" + name.replace("_", "-")


@dataclass(frozen=True)
class BenchmarkConfig:
    """Settings of one benchmark run (`run_benchmark`).

    Settings left at None are taken from what the models record: the
    evaluation set (`data`, `eval_size`, `seed`, `stratify`) from the ONNX
    manifests' verification and source run, else the PyTorch run's
    `run_config.json`, so that the benchmark scores the very sentences the run
    was evaluated on (never its model-selection slice); `max_length` from the
    manifests; `threads` from the usable CPUs.
    """

    pytorch: Path | None  # checkpoint, run or grid folder; None: the first ONNX manifest's source checkpoint
    onnx: tuple[Path, ...]  # exported folders, one backend each
    output: Path  # folder for results.json, results.md, latency.png, throughput.png
    data: DataSource | str | None = None  # a DataSource, or its path / hub id
    eval_size: int | None = None
    seed: int | None = None
    stratify: bool | None = None
    max_sentences: int | None = None  # measure a seeded subset of this many evaluation sentences; None: all
    threads: int | None = None
    latency_sentences: int = 300  # timed batch-1 calls per backend, over all rounds
    warmup: int = 20  # untimed batch-1 calls per backend first
    rounds: int = 3  # alternating rounds (A B A B ...)
    batch_sizes: tuple[int, ...] = (8, 32)  # throughput batch sizes
    pytorch_sorted: bool = False  # also run PyTorch with the Predictor's length bucketing
    cold_start: bool = True  # import + load + first prediction and peak RSS in a fresh process
    max_length: int | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalise in place once
        set_(self, "onnx", tuple(Path(p) for p in self.onnx))
        set_(self, "output", Path(self.output))
        if self.pytorch is not None:
            set_(self, "pytorch", Path(self.pytorch))
        set_(self, "batch_sizes", tuple(self.batch_sizes))
        if self.data is not None:
            set_(self, "data", DataSource.coerce(self.data))
        if not self.onnx:
            raise ConfigError(f"{flag('onnx')}: give at least one exported folder.")
        for name in ("eval_size", "max_sentences", "threads", "max_length"):
            self._check_int(name, getattr(self, name), minimum=1, optional=True)
        self._check_int("seed", self.seed, minimum=0, optional=True)
        self._check_int("latency_sentences", self.latency_sentences, minimum=1)
        self._check_int("warmup", self.warmup, minimum=0)
        self._check_int("rounds", self.rounds, minimum=1)
        if not self.batch_sizes:
            raise ConfigError(f"{flag('batch_sizes')}: give at least one batch size.")
        for size in self.batch_sizes:
            self._check_int("batch_sizes", size, minimum=1)
        if self.rounds > self.latency_sentences:
            raise ConfigError(
                f"{flag('rounds')} ({self.rounds}) must not exceed {flag('latency_sentences')} "
                f"({self.latency_sentences}): every round times at least one sentence."
            )

    @staticmethod
    def _check_int(name: str, value: Any, minimum: int, optional: bool = False) -> None:
        if value is None and optional:
            return
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ConfigError(f"{flag(name)} must be an integer, got {value!r}.")
        if value < minimum:
            raise ConfigError(f"{flag(name)} must be ≥ {minimum}, got {value}.")

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """The default of every field that has one."""
        return {f.name: f.default for f in fields(cls) if f.default is not MISSING}

    @classmethod
    def quick_config(cls, **kwargs: Any) -> BenchmarkConfig:
        """A smoke run in seconds: 64 sentences, 24 timed calls, 1 round, batch 8; `kwargs` override."""
        return cls(**{**QUICK_SETTINGS, **kwargs})

    def to_command(self, relative_to: Path | None = None) -> str:
        """The `tnews-deploy benchmark` command line that runs this config (settings at their default left out).

        Args:
            relative_to: write the paths (folders, a local --data) relative to this folder, so that the command
                runs in it (results.md records it so, without machine-specific prefixes); None: as given.
        """

        def path(value: Path) -> str:
            if relative_to is None:
                return str(value)
            return os.path.relpath(os.path.realpath(value.expanduser()), os.path.realpath(relative_to))

        args = ["tnews-deploy", "benchmark"]
        if self.pytorch is not None:
            args += [flag("pytorch"), path(self.pytorch)]
        for folder in self.onnx:  # a model's name (`default`, a model package) stays a name
            named = len(folder.parts) == 1 and not folder.expanduser().exists()
            args += [flag("onnx"), str(folder) if named else path(folder)]
        args += [flag("output"), path(self.output)]
        defaults = self.defaults()
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("pytorch", "onnx", "output") or value == defaults[f.name]:
                continue
            if isinstance(value, DataSource) and relative_to is not None:
                value = value.relative_to(relative_to)
            if isinstance(value, bool):
                args.append(flag(f.name) if value else "--no-" + f.name.replace("_", "-"))
            elif isinstance(value, tuple):
                args += [flag(f.name), ",".join(str(v) for v in value)]
            else:
                args += [flag(f.name), str(value)]
        return shlex.join(args)

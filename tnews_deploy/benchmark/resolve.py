"""What a benchmark measures: the checkpoint, the ONNX folders, threads, max_length and the evaluation set.

`resolve_plan(config)` turns a `BenchmarkConfig` into a `BenchmarkPlan` before
anything is loaded into a backend. The evaluation set is the one the models were
scored on: each setting (data, size, seed, stratify) comes from, in order,

1. the config (an explicit CLI flag),
2. the ONNX manifests' `verification.evaluation` (the set the export was verified on),
3. the ONNX manifests' `source.run` (the training run's settings),
4. the PyTorch run's `run_config.json`,
5. the defaults every run uses (2,000 sentences, seed 42, stratified).

A set drawn with other settings than the run's own may contain sentences the
run used for model selection; that is logged as a warning.

An `--onnx` value is an exported folder, or a model's name: `default` (the bundled model) or an installed model
package's (`tnews_deploy.models`). Without `--pytorch`, the PyTorch baseline is the first manifest's source
checkpoint; when there is none on this machine (the bundled model's, say), only the ONNX models are measured,
the first of them the reference.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import defaults
from ..datasource import DataSource, describe_data
from ..errors import UserError
from ..machine import usable_cpus
from ..models import is_known_model, resolve_model
from ..predictor import MANIFEST_FILE
from .config import BenchmarkConfig, flag

logger = logging.getLogger(__name__)

EVALUATION_KEYS = ("data", "eval_size", "seed", "stratify")
EVALUATION_DEFAULTS: dict[str, Any] = {
    "eval_size": defaults.EVAL_SIZE,
    "seed": defaults.SEED,
    "stratify": defaults.STRATIFY,
}  # a training run's
DEFAULT_MAX_LENGTH = 128


@dataclass(frozen=True)
class EvaluationSettings:
    """How the evaluation set is drawn (`tnews_deploy.data.evaluation_split`) and where each setting came from."""

    data: DataSource
    eval_size: int
    seed: int
    stratify: bool
    origin: dict[str, str] = field(default_factory=dict)  # setting -> its source, e.g. "fp32/manifest.json"

    def draw(self) -> dict[str, Any]:
        return {**{k: getattr(self, k) for k in EVALUATION_KEYS}, "data": self.data.to_json()}


@dataclass
class BenchmarkPlan:
    """Everything resolved: what to load and which sentences to measure."""

    checkpoint: Path | None  # None: no PyTorch baseline (ONNX models only)
    onnx: tuple[Path, ...]
    threads: int
    max_length: int
    evaluation: EvaluationSettings
    texts: list[str]
    labels: np.ndarray
    run_config: dict[str, Any] | None = None

    def evaluation_json(self) -> dict[str, Any]:
        return {**self.evaluation.draw(), "sentences": len(self.texts), "origin": self.evaluation.origin}


def read_manifests(folders: tuple[Path, ...]) -> dict[Path, dict[str, Any]]:
    """Each ONNX folder's manifest ({} when it has none).

    Args:
        folders: exported folders; each must exist.
    """
    manifests = {}
    for folder in folders:
        if not folder.is_dir():
            raise UserError(
                f"{folder}: no such ONNX folder; pass folders written by `tnews-deploy export`, `default` (the "
                "bundled model) or an installed model package's name."
            )
        path = folder / MANIFEST_FILE
        try:
            manifests[folder] = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise UserError(f"{path}: not valid JSON ({exc}); re-export the folder.") from exc
    return manifests


def evaluation_settings(
    config: BenchmarkConfig,
    manifests: dict[Path, dict[str, Any]],
    run_config: dict[str, Any] | None,
    run_config_name: str = "run_config.json",
) -> EvaluationSettings:
    """Each evaluation-set setting from the first source that records it (see the module docstring).

    Args:
        config: the benchmark config; its non-None `data`, `eval_size`, `seed`, `stratify` win.
        manifests: ONNX folder -> its manifest, in the order given.
        run_config: the PyTorch run's `run_config.json`, or None when the checkpoint has none beside it.
        run_config_name: how to name the run config in `origin`.
    """
    sources: list[tuple[str, dict[str, Any]]] = [
        ("flag " + " / ".join(flag(k) for k in EVALUATION_KEYS), {k: getattr(config, k) for k in EVALUATION_KEYS})
    ]
    for folder, manifest in manifests.items():
        verified = (manifest.get("verification") or {}).get("evaluation") or {}
        sources.append((f"{folder.name}/{MANIFEST_FILE} verification", verified))
    for folder, manifest in manifests.items():
        sources.append((f"{folder.name}/{MANIFEST_FILE} source run", (manifest.get("source") or {}).get("run") or {}))
    sources.append((run_config_name, run_config or {}))
    sources.append(("default", EVALUATION_DEFAULTS))

    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for key in EVALUATION_KEYS:
        for name, source in sources:
            if source.get(key) is not None:
                values[key], origin[key] = source[key], (flag(key) if name.startswith("flag") else name)
                break
    if "data" not in values:
        raise UserError(
            "no --data given, and neither the ONNX manifests nor the PyTorch run record the "
            "evaluation data; pass --data."
        )
    data = DataSource.coerce(values["data"])
    recorded_path = Path(data.path).expanduser()
    if origin["data"] != flag("data") and recorded_path.is_absolute() and not recorded_path.parent.exists():
        raise UserError(
            f"{data.path}: the evaluation data that {origin['data']} records is not on this machine (the "
            "model was made elsewhere). Pass --data: the same data set, e.g. --data clue/tnews (TNEWS from the "
            "Hugging Face hub) or a local copy."
        )
    recorded = next(
        (
            DataSource.coerce(source["data"])
            for _, source in sources[1:]
            if source.get("data") and DataSource.coerce(source["data"]).label_names
        ),
        None,
    )
    if data.label_names is None and recorded is not None:
        data = data.with_label_names(recorded.label_names)  # label ids as the model was trained on them
    settings = EvaluationSettings(
        data=data,
        eval_size=int(values["eval_size"]),
        seed=int(values["seed"]),
        stratify=bool(values["stratify"]),
        origin=origin,
    )
    if run_config:
        differs = [
            k
            for k in EVALUATION_KEYS
            if run_config.get(k) is not None
            and (
                not settings.data.same_data(run_config[k])
                if k == "data"
                else str(run_config[k]) != str(getattr(settings, k))
            )
        ]
        if differs:
            logger.warning(
                "the benchmark's evaluation set differs from the run's in %s (%s vs the run's %s): it may "
                "contain sentences the run used for model selection, so its F1 is not the run's held-out F1.",
                ", ".join(differs),
                ", ".join(f"{k}={getattr(settings, k)}" for k in differs),
                ", ".join(f"{k}={describe_data(run_config[k]) if k == 'data' else run_config[k]}" for k in differs),
            )
    return settings


def load_evaluation(settings: EvaluationSettings, max_sentences: int | None = None) -> tuple[list[str], np.ndarray]:
    """The evaluation sentences and labels, optionally a seeded subset of `max_sentences` of them.

    Args:
        settings: how the set is drawn.
        max_sentences: keep this many (a seeded draw, in the set's order); None: all.
    """
    from ..data import evaluation_split, load_tnews

    evaluation = evaluation_split(load_tnews(settings.data), settings.eval_size, settings.seed, settings.stratify)
    texts, labels = list(evaluation["sentence"]), np.asarray(evaluation["label"])
    if max_sentences is not None and max_sentences < len(texts):
        keep = np.sort(np.random.default_rng(settings.seed).permutation(len(texts))[:max_sentences])
        texts, labels = [texts[i] for i in keep], labels[keep]
    return texts, labels


def resolve_plan(config: BenchmarkConfig) -> BenchmarkPlan:
    """Resolve the checkpoint, threads, max_length and the evaluation set, and load the sentences.

    Args:
        config: the benchmark config.

    Raises:
        UserError: an ONNX folder is missing, or no evaluation data can be found (or the recorded data is not on
            this machine).
    """
    onnx = tuple(onnx_folder(folder) for folder in config.onnx)
    manifests = read_manifests(onnx)
    pytorch_path = config.pytorch
    if pytorch_path is None:
        sources = [m["source"]["checkpoint"] for m in manifests.values() if (m.get("source") or {}).get("checkpoint")]
        pytorch_path = Path(sources[0]) if sources and Path(sources[0]).exists() else None
        if pytorch_path is None:
            if config.pytorch_sorted:
                raise UserError(
                    f"{flag('pytorch_sorted')} needs a PyTorch baseline, and no ONNX manifest names a source "
                    f"checkpoint on this machine; pass {flag('pytorch')}."
                )
            logger.warning(
                "no --pytorch given and %s: measuring the ONNX model(s) only, the first as the reference (pass "
                "--pytorch CHECKPOINT for the PyTorch baseline).",
                f"the source checkpoint {sources[0]} is not on this machine" if sources else "no manifest names one",
            )
    checkpoint, run_config, run_config_name = None, None, "run_config.json"
    if pytorch_path is not None:
        from ..export.source import resolve_source

        source = resolve_source(pytorch_path)
        checkpoint, run_config = source.checkpoint, source.run_config
        run_config_name = f"{source.checkpoint.parent.name}/run_config.json"
    settings = evaluation_settings(config, manifests, run_config, run_config_name)
    max_length = config.max_length or next(
        (int(m["max_length"]) for m in manifests.values() if m.get("max_length")),
        int((run_config or {}).get("max_length") or DEFAULT_MAX_LENGTH),
    )
    sentences = f"{config.max_sentences:,} of " if config.max_sentences else ""
    logger.info(
        "loading the evaluation set (%s%s sentences of %s, seed %s) ...",
        sentences,
        f"{settings.eval_size:,}",
        settings.data.describe(),
        settings.seed,
    )
    texts, labels = load_evaluation(settings, config.max_sentences)
    return BenchmarkPlan(
        checkpoint=checkpoint,
        onnx=onnx,
        threads=config.threads or usable_cpus(),
        max_length=max_length,
        evaluation=settings,
        texts=texts,
        labels=labels,
        run_config=run_config,
    )


def onnx_folder(value: Path) -> Path:
    """An `--onnx` value as a folder: an existing path as given; `default` / `tnews-compact` (the bundled model) or
    an installed model package's name as its folder; anything else as given (`read_manifests` says it is missing).

    Args:
        value: the value as given.
    """
    if value.exists() or not is_known_model(str(value)):
        return value
    return resolve_model(value)

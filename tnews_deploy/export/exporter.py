"""Verified ONNX export through Hugging Face Optimum.

`export_model(source, output, config)`:

1. resolves SOURCE (checkpoint, run or grid -> best run) and the evaluation set;
2. exports with Optimum (`ORTModelForSequenceClassification(export=True)`),
   optionally graph-optimises it (Optimum's `ORTOptimizer`) and int8-quantises
   it: `int8` is the batch-invariant per-token scheme of `quantize.py`;
   `int8-dynamic` is Optimum's `ORTQuantizer` (dynamic, one activation scale per
   tensor per call, with the config for this CPU), whose answers depend on the
   batch neighbours;
3. verifies the result against PyTorch through the runtime `Predictor` and
   applies the gate; measures batch invariance (one at a time vs batches of 32);
4. writes `manifest.json` and the model card `README.md` (`card.py`), caps the tokenizer config's
   `model_max_length` at the export's max_length, and moves the folder into place atomically.

Everything is built in a hidden sibling folder that is renamed to OUTPUT only
when the export is accepted; a refused or interrupted export leaves no folder
that could pass for a finished one.

With both, the graph is optimised first and quantised after. `int8` rewrites the
optimised graph directly (a fused `Attention` becomes int8 Q/K/V products and a
`MultiHeadAttention`). For `int8-dynamic`, Optimum's quantizer fails on an
optimised graph as is under onnxruntime 1.32 ("Unable to find data type for
weight_name"), so the optimised graph is typed with onnxruntime's symbolic shape
inference before it is quantised; the fused attention survives (as `QAttention`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .. import defaults
from ..choices import (
    DEFAULT_QUANTIZE_TARGET,
    EXACT_OPTIMIZE_LEVELS,
    OPTIMIZE_LEVELS,
    PREFERENCES,
    QUANTIZE_MODES,
    QUANTIZE_SCHEMES,
    QUANTIZE_TARGETS,
    S8_TARGETS,
)
from ..datasource import DataSource
from ..errors import ConfigError, UserError, disk_full_error
from ..int8_weights import U8S8, U8U8, cpu_description, u8s8_is_exact
from ..machine import library_versions
from ..noise import silence_known_noise
from ..predictor import CHECKSUMMED_FILES, MANIFEST_FILE, MODEL_CONFIG_FILE, MODEL_FILE, Predictor, sha256_of
from .card import write_card
from .quantize import SCHEME as PER_TOKEN_SCHEME
from .quantize import quantize_per_token
from .source import ExportSource, resolve_source
from .verify import GatePolicy, ParityReport, apply_gate, batch_invariance, compare, pytorch_logits

# OPTIMIZE_LEVELS, QUANTIZE_MODES, QUANTIZE_TARGETS, PREFERENCES ...: listed once in `tnews_deploy.choices`.
MANIFEST_VERSION = 1
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
BATCH_INVARIANCE_SENTENCES = 500  # evaluation sentences predicted again one at a time ...
INVARIANCE_BATCH_SIZE = 32  # ... and compared with their predictions in batches of this size

logger = logging.getLogger(__name__)


class ExportRefused(UserError):
    """The export did not pass verification; nothing was written."""

    def __init__(self, message: str, report: ParityReport) -> None:
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class ExportConfig:
    optimize: str = "none"
    quantize: str = "none"
    quantize_for: str | None = None  # None: DEFAULT_QUANTIZE_TARGET (portable uint8 weights)
    per_channel: bool = True  # int8-dynamic weights; int8 (per-token) weights are always per channel
    data: DataSource | str | None = None  # None: the data the run was evaluated on (a DataSource, or its path)
    eval_size: int | None = None  # None: the run's evaluation-set size
    max_length: int | None = None  # None: the run's max_length
    policy: GatePolicy = GatePolicy()
    force: bool = False  # replace an existing OUTPUT
    prefer: str = "throughput"  # --quantize auto: keep the best "throughput" (batch 32) or "latency" (batch 1)
    threads: int | None = None  # --quantize auto: onnxruntime threads the candidates are timed with; None: all usable

    @property
    def exact(self) -> bool:
        """fp32, O1 and O2 are exact rewrites; O3 (approximate GELU) and int8 are not."""
        return self.quantize == "none" and self.optimize in EXACT_OPTIMIZE_LEVELS

    def __post_init__(self) -> None:
        if self.data is not None:
            object.__setattr__(self, "data", DataSource.coerce(self.data))
        if self.optimize not in OPTIMIZE_LEVELS:
            raise ConfigError(f"--optimize must be one of {', '.join(OPTIMIZE_LEVELS)}, got {self.optimize!r}.")
        if self.quantize not in QUANTIZE_MODES:
            raise ConfigError(f"--quantize must be one of {', '.join(QUANTIZE_MODES)}, got {self.quantize!r}.")
        if self.quantize_for is not None and self.quantize_for not in QUANTIZE_TARGETS:
            raise ConfigError(f"--quantize-for must be one of {', '.join(QUANTIZE_TARGETS)}.")
        if self.eval_size is not None and self.eval_size <= 0:
            raise ConfigError(f"--eval-size must be positive (got {self.eval_size}).")
        if self.max_length is not None and self.max_length < 8:
            raise ConfigError(f"--max-length must be at least 8 (got {self.max_length}).")
        if self.prefer not in PREFERENCES:
            raise ConfigError(f"--prefer must be one of {', '.join(PREFERENCES)}, got {self.prefer!r}.")
        if self.threads is not None and (
            isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1
        ):
            raise ConfigError(f"--threads must be an integer ≥ 1 (got {self.threads!r}).")
        if self.quantize == "auto" and self.optimize != "none":
            raise ConfigError(
                f"--quantize auto chooses the graph optimisation itself (none or O2); leave out "
                f"--optimize (got {self.optimize})."
            )
        if self.quantize == "int8" and not self.per_channel:
            raise ConfigError(
                "--per-tensor applies to --quantize int8-dynamic only; --quantize int8 always uses "
                "per-channel weight scales (and per-token activation scales)."
            )


@dataclass
class ExportResult:
    output: Path
    source: ExportSource
    manifest: dict[str, Any]
    report: ParityReport


# --------------------------------------------------------------------------- data


def evaluation_set(
    source: ExportSource, config: ExportConfig, dataset: Any = None
) -> tuple[list[str], np.ndarray, dict[str, Any]]:
    """The evaluation sentences and labels the export is verified on, and where they came from.

    Args:
        source: the resolved checkpoint and its run files.
        config: `data` / `eval_size` overrides (None: the run's).
        dataset: that data already loaded by the caller (`load_tnews`), so that it is not read twice.
    """
    from ..data import check_label_names, evaluation_split

    run = source.run_config or {}
    data = verification_data(source, config)
    eval_size = config.eval_size or run.get("eval_size")  # None (no run record): the size that fits the data
    seed, stratify = int(run.get("seed", defaults.SEED)), bool(run.get("stratify", defaults.STRATIFY))
    dataset = dataset if dataset is not None else load_verification_data(source, config)
    check_label_names(source.checkpoint, list(dataset["validation"].features["label"].names), data)
    evaluation = evaluation_split(dataset, eval_size, seed, stratify)
    origin = {
        "data": data.to_json(),
        "eval_size": len(evaluation),
        "seed": seed,
        "same_as_training_run": config.data is None and config.eval_size is None and bool(run),
    }
    return list(evaluation["sentence"]), np.asarray(evaluation["label"]), origin


def verification_data(source: ExportSource, config: ExportConfig) -> DataSource:
    """The data the export is verified on: `config.data`, else the data the run was evaluated on.

    Args:
        source: the resolved checkpoint and its run files.
        config: its `data` override (None: the run's).
    """
    run = source.run_config or {}
    recorded = DataSource.coerce(run["data"]) if run.get("data") else None
    data = config.data or recorded
    if data is None:
        raise UserError(
            f"{source.checkpoint}: no training-run config beside it says which data it was evaluated on; pass --data."
        )
    if data.label_names is None and recorded is not None and recorded.label_names:
        data = data.with_label_names(recorded.label_names)  # label ids as the model was trained on them
    return data


def load_verification_data(source: ExportSource, config: ExportConfig) -> Any:
    """`verification_data` loaded (`load_tnews`), for `evaluation_set` and `export_model`'s `dataset`.

    Args:
        source: the resolved checkpoint and its run files.
        config: its `data` override (None: the run's).
    """
    from ..data import load_tnews

    data = verification_data(source, config)
    try:
        return load_tnews(data)
    except UserError as exc:
        if config.data is None:
            raise UserError(
                f"the run was evaluated on {str(data)!r}, which cannot be loaded here ({exc}); pass --data."
            ) from exc
        raise


# --------------------------------------------------------------------------- build


def _onnx_opset(path: Path) -> int | None:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def export_fp32_onnx(checkpoint: Path, folder: Path) -> None:
    """Optimum's fp32 ONNX export of `checkpoint` (model.onnx, config.json) into `folder`."""
    from optimum.onnxruntime import ORTModelForSequenceClassification

    logger.info("exporting to ONNX with Optimum ...")
    ort_model = ORTModelForSequenceClassification.from_pretrained(checkpoint, export=True)
    ort_model.save_pretrained(folder)


def build_onnx(checkpoint: Path, folder: Path, config: ExportConfig) -> dict[str, Any]:
    """Export (+ graph-optimise, + quantise) into `folder`; returns what was done, for the manifest.

    Args:
        checkpoint: the PyTorch checkpoint folder.
        folder: the staging folder to build in. An fp32 export of the checkpoint already in its `_work/fp32`
            (`export_model(fp32_onnx=...)`) is built from instead of exporting again.
        config: optimisation and quantisation.
    """
    from optimum.onnxruntime import ORTOptimizer, ORTQuantizer
    from optimum.onnxruntime.configuration import AutoOptimizationConfig, AutoQuantizationConfig
    from transformers import AutoTokenizer

    work = folder / "_work"
    steps: dict[str, Any] = {}
    if not (work / "fp32" / MODEL_FILE).is_file():
        export_fp32_onnx(checkpoint, work / "fp32")
    current = work / "fp32" / MODEL_FILE
    if list((work / "fp32").glob("*.onnx_data")):
        raise UserError("the model is over 2 GB and was exported with external data; not supported yet.")
    steps["opset"] = _onnx_opset(current)

    if config.optimize != "none":
        logger.info("graph-optimising (%s) ...", config.optimize)
        optimizer = ORTOptimizer.from_pretrained(current.parent, file_names=[current.name])
        opt_config = AutoOptimizationConfig.with_optimization_level(config.optimize, for_gpu=False)
        optimizer.optimize(optimization_config=opt_config, save_dir=work / "optimized")
        current = next((work / "optimized").glob("*.onnx"))
        steps["optimization"] = {"level": config.optimize}
    else:
        steps["optimization"] = None

    if config.quantize == "int8":
        target = config.quantize_for or DEFAULT_QUANTIZE_TARGET
        weight_type = "int8" if target in S8_TARGETS else "uint8"
        logger.info(
            "quantising to int8 (per-token symmetric activations, per-channel %s weights, %s) ...", weight_type, target
        )
        (work / "int8").mkdir()
        quantized = work / "int8" / MODEL_FILE
        summary = quantize_per_token(current, quantized, weight_type=weight_type)
        current = quantized
        if steps["optimization"]:
            steps["optimization"]["order"] = "before quantisation"
        steps["quantization"] = {
            "mode": "int8",
            "scheme": PER_TOKEN_SCHEME,
            "batch_invariant": True,
            "target": target,
            "activations": "uint8 per token: symmetric scale max|x|/127 per row, zero point 128",
            "weights": f"{weight_type} per output channel, symmetric",
            **summary.to_json(),
            "exact_on": exact_on(weight_type),
        }
    elif config.quantize == "int8-dynamic":
        target = config.quantize_for or DEFAULT_QUANTIZE_TARGET
        target = "avx2" if target == "portable" else target  # Optimum's config with uint8 weights
        logger.info(
            "quantising to int8-dynamic (per-tensor activations, %s%s) ...",
            target,
            ", per-channel weights" if config.per_channel else "",
        )
        if steps["optimization"]:
            # The fused graph's contrib ops (Attention, SkipLayerNormalization ...) carry no type
            # information, and the quantizer stops on them ("Unable to find data type for
            # weight_name"). onnxruntime's symbolic shape inference knows those ops: typed, the
            # optimised graph quantises, and keeps its fused attention.
            current = _typed_copy(current, work / "typed")
            steps["optimization"]["order"] = "before quantisation (graph typed by symbolic shape inference)"
        qconfig = getattr(AutoQuantizationConfig, target)(is_static=False, per_channel=config.per_channel)
        quantizer = ORTQuantizer.from_pretrained(current.parent, file_name=current.name)
        quantizer.quantize(quantization_config=qconfig, save_dir=work / "int8")
        current = work / "int8" / f"{current.stem}_quantized.onnx"
        steps["quantization"] = {
            "mode": "int8-dynamic",
            "scheme": QUANTIZE_SCHEMES["int8-dynamic"],
            "batch_invariant": False,
            "dynamic": True,
            "target": target,
            "per_channel": config.per_channel,
            "weights": str(qconfig.weights_dtype),
            "activations": str(qconfig.activations_dtype),
            "exact_on": exact_on("int8" if target in S8_TARGETS + ("avx512",) else "uint8"),
        }
    else:
        steps["quantization"] = None

    os.replace(current, folder / MODEL_FILE)
    shutil.copy2(work / "fp32" / MODEL_CONFIG_FILE, folder / MODEL_CONFIG_FILE)
    AutoTokenizer.from_pretrained(checkpoint).save_pretrained(folder)
    shutil.rmtree(work)
    if not (folder / "tokenizer.json").is_file():
        raise UserError(f"{checkpoint}: its tokenizer has no fast (Rust) version; the runtime needs tokenizer.json.")
    return steps


def kernel_parity(folder: Path, predictor: Predictor, texts: list[str], logits: np.ndarray) -> dict[str, Any] | None:
    """For an int8 export: the kernels it was verified with here, and the same texts run in the other weight form.

    The two forms give the same integer products, so their answers must agree; this measures it on the
    evaluation set. The other form is run where this CPU computes it exactly (u8 x u8 everywhere, u8 x s8
    only with VNNI or on ARM64). None for a model without integer products.
    """
    plan = predictor.kernel_plan
    if plan.used is None:
        return None
    record: dict[str, Any] = {"verified_with": plan.used, "file": plan.exported}
    other = U8U8 if plan.used == U8S8 else (U8S8 if u8s8_is_exact() else None)
    if other is None:
        record["not_run_here"] = f"{U8S8} (this CPU has no VNNI: its u8 x s8 kernels are not exact)"
        return record
    logger.info("int8 kernels: the evaluation set again in the %s form ...", other)
    alt = Predictor(folder, verify_checksum=False, threads=predictor.threads, int8_kernels=other)
    alt_logits = alt.logits(texts, batch_size=INVARIANCE_BATCH_SIZE)
    record[other] = {
        "label_changes": int(np.sum(alt_logits.argmax(-1) != logits.argmax(-1))),
        "max_abs_logit_diff": float(np.abs(alt_logits - logits).max()),
        "sentences": len(texts),
    }
    logger.info(
        "int8 kernels %s vs %s: %d label change(s), max |Δlogit| %.2e",
        plan.used,
        other,
        record[other]["label_changes"],
        record[other]["max_abs_logit_diff"],
    )
    return record


def exact_on(weight_type: str) -> str:
    """Which CPUs compute an int8 export's weight form exactly as written (for the manifest and the card)."""
    if weight_type == "uint8":
        return "every CPU (u8 x u8)"
    return "CPUs with AVX512-VNNI or AVX-VNNI, and ARM64 (u8 x s8); the runtime converts to u8 x u8 at load elsewhere"


def _typed_copy(model_path: Path, folder: Path) -> Path:
    """`model_path` with value types and shapes inferred by onnxruntime's symbolic shape inference."""
    import onnx
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    folder.mkdir(parents=True, exist_ok=True)
    typed = SymbolicShapeInference.infer_shapes(onnx.load(str(model_path)), auto_merge=True)
    target = folder / MODEL_FILE
    onnx.save(typed, str(target))
    shutil.copy2(model_path.parent / MODEL_CONFIG_FILE, folder / MODEL_CONFIG_FILE)
    return target


# --------------------------------------------------------------------------- main entry


def export_model(
    source: str | Path,
    output: str | Path,
    config: ExportConfig = ExportConfig(),
    *,
    dataset: Any = None,
    fp32_onnx: Path | None = None,
) -> ExportResult:
    """Export, verify and (only if accepted) write OUTPUT atomically; progress goes to this module's logger.

    Args:
        source: a checkpoint folder, a training-run folder or a grid folder (then the grid's best run by
            macro-F1).
        output: the folder to create; it appears only when the export is accepted.
        config: optimisation, quantisation, verification data and the gate (defaults: plain fp32,
            verified on the run's own evaluation set).
        dataset: the verification data (`config.data`, else the run's) already loaded by the caller
            (`load_tnews`), so that it is not read twice.
        fp32_onnx: the checkpoint's fp32 ONNX export already made (`export_fp32_onnx`), to build from.

    With `config.quantize == "auto"`, `tnews_deploy.export.auto.export_auto` builds, verifies and times
    each candidate variant and writes the fastest that passes the gate.

    Returns:
        The folder, the resolved source, the manifest written and the parity report.

    Raises:
        ExportRefused: the export failed the gate; nothing was written.
        UserError: a bad source, an existing OUTPUT without `config.force`, unreadable data.
    """
    if config.quantize == "auto":
        from .auto import export_auto

        return export_auto(source, output, config, dataset=dataset)
    silence_known_noise()
    output = Path(output)
    resolved = resolve_source(source)
    if output.exists() and not config.force:
        raise UserError(f"{output}: already exists. Choose another --output or pass --force to replace it.")
    logger.info("source: %s", resolved.describe())
    texts, labels, origin = evaluation_set(resolved, config, dataset)
    run = resolved.run_config or {}
    max_length = int(config.max_length or run.get("max_length") or defaults.MAX_LENGTH)

    output.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(output)
    staging = output.parent / f".{output.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    started = time.perf_counter()
    try:
        if fp32_onnx is not None:
            shutil.copytree(fp32_onnx, staging / "_work" / "fp32")
        steps = build_onnx(resolved.checkpoint, staging, config)
        # A provisional manifest lets the Predictor read max_length while verifying.
        (staging / MANIFEST_FILE).write_text(json.dumps({"max_length": max_length}), encoding="utf-8")
        logger.info("verifying on %s evaluation sentences (PyTorch vs ONNX) ...", f"{len(texts):,}")
        reference = pytorch_logits(resolved.checkpoint, texts, max_length)
        predictor = Predictor(staging, verify_checksum=False)
        candidate = predictor.logits(texts, batch_size=INVARIANCE_BATCH_SIZE)
        report = apply_gate(compare(labels, reference, candidate, exact=config.exact), config.policy)
        logger.info("%s", report.summary())
        if not report.passed:
            raise ExportRefused("export refused: " + "; ".join(report.reasons) + ". Nothing was written.", report)
        logger.info(
            "batch invariance: %s sentences one at a time vs batches of %d ...",
            f"{min(BATCH_INVARIANCE_SENTENCES, len(texts)):,}",
            INVARIANCE_BATCH_SIZE,
        )
        invariance = batch_invariance(predictor, texts, candidate, BATCH_INVARIANCE_SENTENCES, INVARIANCE_BATCH_SIZE)
        logger.info(
            "batch invariance: %d label change(s), max |Δp| %.2e on %s sentences",
            invariance["label_changes"],
            invariance["max_abs_prob_diff"],
            f"{invariance['sentences']:,}",
        )
        kernels = kernel_parity(staging, predictor, texts, candidate)

        model_path = staging / MODEL_FILE
        manifest = {
            "format_version": MANIFEST_VERSION,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "source": resolved.to_json(),
            "model": {"file": MODEL_FILE, "sha256": sha256_of(model_path), "bytes": model_path.stat().st_size},
            "files": file_checksums(staging),
            "opset": steps["opset"],
            "optimization": steps["optimization"],
            "quantization": steps["quantization"],
            "max_length": max_length,
            "labels": json.loads((staging / MODEL_CONFIG_FILE).read_text(encoding="utf-8")).get("id2label"),
            "verification": {
                **report.to_json(),
                "evaluation": origin,
                "policy": asdict(config.policy),
                "batch_invariance": invariance,
                "machine": cpu_description(),
                "int8_kernels": kernels,
            },
            "export_seconds": round(time.perf_counter() - started, 1),
            "versions": library_versions(),
        }
        (staging / MANIFEST_FILE).write_text(
            json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        cap_tokenizer_length(staging, max_length)
        write_card(staging, manifest, name=output.name)
        _move_into_place(staging, output)
    except BaseException as exc:  # refused, failed or interrupted: leave nothing behind
        shutil.rmtree(staging, ignore_errors=True)
        full = _disk_full(exc, output, resolved.checkpoint, config)
        if full is not None:
            raise full from exc
        raise
    logger.info("accepted: %s (%.1f MB)", output, manifest["model"]["bytes"] / 1e6)
    return ExportResult(output=output, source=resolved, manifest=manifest, report=report)


def file_checksums(folder: Path) -> dict[str, dict[str, Any]]:
    """sha256 and size of each file the runtime reads besides model.onnx (`CHECKSUMMED_FILES`), for the manifest's
    `files`: `Predictor` refuses a folder where one of them changed after export."""
    return {
        name: {"sha256": sha256_of(folder / name), "bytes": (folder / name).stat().st_size}
        for name in CHECKSUMMED_FILES
    }


def _disk_full(exc: BaseException, output: Path, checkpoint: Path, config: ExportConfig) -> UserError | None:
    """A one-line `DiskFullError` when `exc` says a disk (or quota) is full, else None.

    It names where the write failed: OUTPUT's folder, which holds the staging folder, or the temporary folder
    Optimum writes its first copy of the model to.
    """
    failed = getattr(exc, "filename", None) or getattr(exc.__cause__ or exc.__context__, "filename", None)
    temp = Path(tempfile.gettempdir()).resolve()
    if failed and temp in Path(failed).resolve().parents and temp not in output.resolve().parents:
        return disk_full_error(
            exc,
            temp,
            "while Optimum exported the model to ONNX",
            advice="set TMPDIR to a folder on a disk with room, or free some space there",
        )
    # The staging folder holds the fp32 graph and, at most, an optimised, a typed and a quantised copy.
    weights = sum(f.stat().st_size for pattern in ("*.safetensors", "*.bin") for f in Path(checkpoint).glob(pattern))
    copies = (
        1
        + (config.optimize != "none")
        + (config.optimize != "none" and config.quantize == "int8-dynamic")
        + 0.3 * (config.quantize != "none")
    )
    return disk_full_error(
        exc,
        output.parent,
        "while writing the export",
        needed=int(weights * copies * 1.1),
        advice="free some space there, or choose an --output on another disk",
    )


def cap_tokenizer_length(folder: Path, max_length: int) -> None:
    """Set `model_max_length` in tokenizer_config.json to the export's `max_length`.

    Hugging Face loaders of the folder (transformers with `truncation=True`, transformers.js) then cut texts
    at the length `Predictor` cuts them, not at the pretrained model's 512.
    """
    path = folder / TOKENIZER_CONFIG_FILE
    if path.is_file():
        config = json.loads(path.read_text(encoding="utf-8"))
        config["model_max_length"] = max_length
        path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def remove_stale_staging(output: Path) -> list[Path]:
    """Delete hidden staging folders of exports to `output` whose process is gone (killed mid-export)."""
    removed = []
    for folder in output.parent.glob(f".{output.name}.partial-*"):
        pid = folder.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _move_into_place(staging: Path, output: Path) -> None:
    """Rename `staging` to `output`; an existing `output` (with --force) is replaced."""
    if output.exists():
        backup = output.parent / f".{output.name}.old-{os.getpid()}"
        os.replace(output, backup)
        os.replace(staging, output)
        shutil.rmtree(backup, ignore_errors=True)
    else:
        os.replace(staging, output)

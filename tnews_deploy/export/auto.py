"""`export --quantize auto`: build each candidate variant, verify it with the export gate, time it here, keep the
fastest that passes.

Which variant is fastest depends on the model and on the CPU (per-token int8 is slower than fp32 on some Intel
CPUs with AMX, faster on others: docs/export.md), so it is measured rather than assumed:

1. the checkpoint is exported to fp32 ONNX once (`export_fp32_onnx`); each candidate (`CANDIDATES`: fp32,
   fp32 + O2, per-token int8, per-token int8 + O2) is built from it by `export_model` into a hidden sibling
   folder of OUTPUT, verified against PyTorch and gated exactly as an explicit export is. A candidate the gate
   refuses is recorded with its reasons and never timed nor kept;
2. the accepted candidates are timed through the runtime `Predictor` (int8 weights in the form this CPU runs
   fastest and exactly), with the same threads, in alternating rounds (A B C D A B C D ...): batch-1 p50
   latency and length-bucketed throughput at batch 32 on the evaluation texts (the benchmark's
   `measure_rounds`);
3. the fastest by `prefer` ("throughput", the default, or "latency") is kept: its manifest gets an `auto`
   record (every candidate's gate figures and timings, the CPU and the settings they were measured with), its
   card the table, and it is moved into OUTPUT atomically; the other candidates are deleted. When no candidate
   passes, the export is refused as an explicit one is (`ExportRefused`), and nothing is written.

The timing function is a parameter of `export_auto` (`Timer`), so that a test can inject timings.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..int8_weights import cpu_description
from ..machine import usable_cpus
from ..noise import silence_known_noise
from ..predictor import MANIFEST_FILE
from .card import selection_table, write_card
from .exporter import (
    ExportConfig,
    ExportRefused,
    ExportResult,
    _disk_full,
    _move_into_place,
    evaluation_set,
    export_fp32_onnx,
    export_model,
    load_verification_data,
    remove_stale_staging,
)
from .source import resolve_source

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Candidate:
    """One variant `--quantize auto` builds: a name and the explicit flags it stands for."""

    name: str
    optimize: str  # --optimize
    quantize: str  # --quantize

    def config(self, base: ExportConfig) -> ExportConfig:
        """`base` (data, gate, quantize-for ...) with this candidate's optimisation and quantisation."""
        return replace(base, optimize=self.optimize, quantize=self.quantize, force=False)


CANDIDATES: tuple[Candidate, ...] = (
    Candidate("fp32", "none", "none"),
    Candidate("fp32-O2", "O2", "none"),
    Candidate("int8", "none", "int8"),
    Candidate("int8-O2", "O2", "int8"),
)


@dataclass(frozen=True)
class TimingSettings:
    """How the candidates are timed (as `tnews-deploy benchmark` times backends: same threads, alternating)."""

    threads: int
    rounds: int = 3  # alternating rounds
    latency_calls: int = 300  # timed batch-1 calls per candidate, over all rounds
    warmup: int = 20  # untimed batch-1 calls per candidate first
    batch_size: int = 32  # throughput: every evaluation text per round, length-bucketed batches of this size
    seed: int = 0  # which evaluation texts the batch-1 calls take (a seeded shuffle)


# folders (candidate name -> built folder), the evaluation texts, the settings -> per candidate name at least
# {"latency_p50_ms": float, "throughput": float (texts/s at settings.batch_size)}; other keys are recorded as is.
Timer = Callable[[Mapping[str, Path], Sequence[str], TimingSettings], Mapping[str, Mapping[str, Any]]]
REQUIRED_TIMINGS = ("latency_p50_ms", "throughput")


def time_candidates(
    folders: Mapping[str, Path], texts: Sequence[str], settings: TimingSettings
) -> dict[str, dict[str, Any]]:
    """Time each folder through the runtime `Predictor`, in alternating rounds (the benchmark's `measure_rounds`).

    Args:
        folders: candidate name -> export folder.
        texts: the evaluation texts (each throughput pass runs them all).
        settings: threads, rounds, batch-1 calls, batch size.

    Returns:
        Per candidate: `latency_p50_ms` (median of every timed batch-1 call), `throughput` (median over the
        rounds, texts/s), and the per-round figures `latency_round_p50_ms`, `throughput_rounds`.
    """
    from ..benchmark.backends import OnnxBackend
    from ..benchmark.measure import latency_schedule, measure_rounds

    backends = [OnnxBackend(folder, settings.threads, name=name) for name, folder in folders.items()]
    warm, timed = latency_schedule(texts, settings.warmup, settings.latency_calls, settings.seed)
    timings = measure_rounds(backends, texts, (settings.batch_size,), settings.rounds, warm, timed)
    results = {}
    for name, t in timings.items():
        rounds = t.throughput[str(settings.batch_size)]
        results[name] = {
            "latency_p50_ms": round(statistics.median(t.latency_ms), 4),
            "throughput": round(statistics.median(rounds), 2),
            "latency_round_p50_ms": [round(v, 4) for v in t.latency_round_p50],
            "throughput_rounds": [round(v, 2) for v in rounds],
        }
    return results


def choose(records: Sequence[dict[str, Any]], prefer: str) -> str:
    """The name of the fastest passing candidate: most texts/s ("throughput"), or lowest batch-1 p50 ("latency");
    the other measure breaks a tie.

    Args:
        records: the candidate records (`passed`, `timing`).
        prefer: "throughput" or "latency".
    """
    timed = [r for r in records if r["passed"] and r["timing"] is not None]
    if prefer == "latency":
        best = min(timed, key=lambda r: (r["timing"]["latency_p50_ms"], -r["timing"]["throughput"]))
    else:
        best = min(timed, key=lambda r: (-r["timing"]["throughput"], r["timing"]["latency_p50_ms"]))
    return str(best["name"])


def export_auto(
    source: str | Path,
    output: str | Path,
    config: ExportConfig = ExportConfig(quantize="auto"),
    *,
    timer: Timer = time_candidates,
    candidates: Sequence[Candidate] = CANDIDATES,
    dataset: Any = None,
) -> ExportResult:
    """Build every candidate, verify each with the export gate, time the accepted ones here, write the fastest.

    Args:
        source: a checkpoint, training-run or grid folder (as `export_model` takes).
        output: the folder to create; it appears only when a candidate is accepted.
        config: data, gate, `quantize_for`, `prefer` ("throughput" or "latency"), `threads` (timing threads;
            None: every usable CPU) and `force`; its `optimize` / `quantize` are the candidates'.
        timer: times the accepted candidates (`Timer`); default: `time_candidates`.
        candidates: the variants to build (default: `CANDIDATES`).
        dataset: the verification data already loaded by the caller (`load_tnews`).

    Returns:
        The chosen candidate's export, its manifest with the `auto` record.

    Raises:
        ExportRefused: no candidate passed the gate; nothing was written.
        UserError: a bad source, an existing OUTPUT without `config.force`, unreadable data.
    """
    silence_known_noise()
    output = Path(output)
    resolved = resolve_source(source)
    if output.exists() and not config.force:
        raise UserError(f"{output}: already exists. Choose another --output or pass --force to replace it.")
    dataset = dataset if dataset is not None else load_verification_data(resolved, config)
    texts, _, origin = evaluation_set(resolved, config, dataset)
    settings = TimingSettings(threads=config.threads or usable_cpus())

    output.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(output)  # also removes the candidates of a killed `auto` run (same name pattern)
    work = output.parent / f".{output.name}.partial-auto-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        fp32_onnx = work / "_fp32"
        export_fp32_onnx(resolved.checkpoint, fp32_onnx)
        records, built = [], {}
        for cand in candidates:
            logger.info("candidate %s (--optimize %s --quantize %s) ...", cand.name, cand.optimize, cand.quantize)
            try:
                result = export_model(
                    source, work / cand.name, cand.config(config), dataset=dataset, fp32_onnx=fp32_onnx
                )
            except ExportRefused as refused:
                logger.info("candidate %s refused: %s", cand.name, "; ".join(refused.report.reasons))
                records.append(_record(cand, refused.report.to_json(), None))
                continue
            built[cand.name] = result
            records.append(_record(cand, result.report.to_json(), result.manifest))
        if not built:
            reasons = "; ".join(f"{r['name']}: {', '.join(r['reasons'])}" for r in records)
            raise ExportRefused(
                f"export refused: no candidate passed the gate ({reasons}). Nothing was written.",
                _refused_report(records),
            )

        logger.info(
            "timing %d candidate(s) through the Predictor: %d thread(s), %d alternating round(s), "
            "%s evaluation texts ...",
            len(built),
            settings.threads,
            settings.rounds,
            f"{len(texts):,}",
        )
        timings = timer({name: r.output for name, r in built.items()}, texts, settings)
        for record in records:
            if record["name"] in built:
                record["timing"] = _checked_timing(record["name"], timings)
        chosen = choose(records, config.prefer)
        winner = built[chosen]

        manifest = {
            **winner.manifest,
            "auto": {
                "chosen": chosen,
                "prefer": config.prefer,
                "machine": cpu_description(),
                "timing": {
                    **asdict(settings),
                    "texts": len(texts),
                    "evaluation": origin,
                    "through": "tnews_deploy.Predictor (int8 weights in this CPU's exact and fastest form)",
                    "order": "alternating rounds over the candidates (A B C D A B C D ...)",
                },
                "candidates": records,
            },
        }
        (winner.output / MANIFEST_FILE).write_text(
            json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        write_card(winner.output, manifest, name=output.name)
        logger.info("candidates (prefer %s):\n%s", config.prefer, selection_table(manifest["auto"]))
        _move_into_place(winner.output, output)
    except BaseException as exc:  # refused, failed or interrupted: leave nothing behind
        # (a candidate's own export already names a full disk: DiskFullError is a UserError)
        full = None if isinstance(exc, UserError) else _disk_full(exc, output, resolved.checkpoint, config)
        if full is not None:
            raise full from exc
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    logger.info("kept %s: %s", chosen, output)
    return ExportResult(output=output, source=winner.source, manifest=manifest, report=winner.report)


def _record(cand: Candidate, gate: dict[str, Any], manifest: dict[str, Any] | None) -> dict[str, Any]:
    """What the `auto` record keeps of one candidate (timing filled in once timed)."""
    verification = (manifest or {}).get("verification") or {}
    return {
        "name": cand.name,
        "optimize": cand.optimize,
        "quantize": cand.quantize,
        "passed": bool(gate.get("passed")),
        "reasons": list(gate.get("reasons") or []),
        "gate": {
            k: gate.get(k)
            for k in (
                "exact",
                "sentences",
                "agreement",
                "macro_f1_drop",
                "max_abs_logit_diff",
                "mean_abs_logit_diff",
                "pytorch",
                "onnx",
            )
        },
        "batch_invariance": verification.get("batch_invariance"),
        "int8_kernels": verification.get("int8_kernels"),
        "bytes": ((manifest or {}).get("model") or {}).get("bytes"),
        "timing": None,
    }


def _checked_timing(name: str, timings: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    timing = timings.get(name)
    if timing is None or any(not isinstance(timing.get(k), (int, float)) for k in REQUIRED_TIMINGS):
        raise ValueError(f"the timer returned no {' / '.join(REQUIRED_TIMINGS)} for candidate {name!r}: {timing!r}")
    return dict(timing)


def _refused_report(records: Sequence[dict[str, Any]]) -> Any:
    """The last refused candidate's parity report (for `ExportRefused.report`)."""
    from .verify import ParityReport

    gate = records[-1]["gate"]
    return ParityReport(
        sentences=gate["sentences"],
        pytorch=gate["pytorch"],
        onnx=gate["onnx"],
        agreement=gate["agreement"],
        max_abs_logit_diff=gate["max_abs_logit_diff"],
        mean_abs_logit_diff=gate["mean_abs_logit_diff"],
        exact=gate["exact"],
        passed=False,
        reasons=records[-1]["reasons"],
    )

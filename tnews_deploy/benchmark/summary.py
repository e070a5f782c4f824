"""From raw timings to the report: F1 and agreement, latency percentiles, throughput, GFLOP/s, speed-ups.

Each backend's GFLOP/s and share of the fp32 peak count its own model's FLOPs (`ModelWork`: the shape in its
config.json and its own token counts), so a 4-layer student is not credited with its 12-layer teacher's work.

`summarise(...)` builds the report dict that `report` renders and
`results.json` stores; it measures nothing itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..int8_weights import best_kernels
from ..machine import machine_info
from .backends import Backend
from .config import BenchmarkConfig
from .flops import ModelShape, ModelWork
from .measure import Timings
from .resolve import BenchmarkPlan


def stats(values: Sequence[float]) -> dict[str, float]:
    """Median, min and max."""
    arr = np.asarray(values, dtype=float)
    return {"median": float(np.median(arr)), "min": float(arr.min()), "max": float(arr.max())}


def significant(value: float, digits: int = 4) -> float:
    """`value` rounded to `digits` significant digits (a tiny model's GFLOP/s must not round to 0)."""
    return float(f"{value:.{digits}g}")


def model_work(backend: Backend, texts: Sequence[str]) -> ModelWork:
    """A backend's useful work on `texts`: its own model's shape (`backend.config`, e.g. an ONNX folder's
    config.json) and its own tokenization (a distilled student has fewer layers than its teacher).

    Args:
        backend: the backend.
        texts: the evaluation sentences.
    """
    return ModelWork(ModelShape.from_config(backend.config), tuple(backend.token_counts(texts)))


def work_json(work: ModelWork) -> dict[str, Any]:
    """The report's fields for a model's work: its shape, mean tokens and GFLOP per sentence."""
    return {
        "model_shape": asdict(work.shape),
        "mean_tokens": round(float(np.mean(work.token_counts)), 2),
        "gflop_per_sentence": significant(work.flops_per_sentence / 1e9),
    }


def backend_row(
    backend: Backend,
    timings: Timings,
    labels: np.ndarray,
    reference_pred: np.ndarray,
    work: ModelWork,
    peak_gflops: float,
) -> dict[str, Any]:
    """One backend's line of the report (without speed-ups and cold start).

    Args:
        backend: the backend.
        timings: its raw measurements.
        labels: gold labels of the evaluation sentences.
        reference_pred: the reference's predictions (PyTorch's; the first ONNX model's without PyTorch).
        work: its model's shape and token counts (its GFLOP/s count its own model's FLOPs).
        peak_gflops: this machine's fp32 GEMM peak.
    """
    from ..training.metrics import f1_scores

    pred = timings.logits.argmax(-1)
    lat = np.asarray(timings.latency_ms)
    throughput = {bs: stats(v) for bs, v in timings.throughput.items()}
    gflops = {bs: work.flops_per_sentence * t["median"] / 1e9 for bs, t in throughput.items()}
    return {
        "backend": backend.name,
        "kind": backend.kind,
        "variant": backend.variant,
        "path": str(backend.path),
        "model_mb": round(backend.size_bytes() / 1e6, 1),
        **work_json(work),
        **{k: round(v, 4) for k, v in f1_scores(labels, pred).items()},
        "agreement_with_pytorch": round(float(np.mean(pred == reference_pred)), 4),  # with the reference
        "latency_ms": {
            "p50": float(np.percentile(lat, 50)),
            "p95": float(np.percentile(lat, 95)),
            "p99": float(np.percentile(lat, 99)),
            "mean": float(lat.mean()),
            "samples": int(lat.size),
            "round_p50": stats(timings.latency_round_p50),
        },
        "throughput": throughput,
        "padding_efficiency": {bs: round(v, 3) for bs, v in timings.padding_efficiency.items()},
        "gflops": {bs: significant(v) for bs, v in gflops.items()},
        "share_of_fp32_peak": {bs: round(v / peak_gflops, 3) for bs, v in gflops.items()},
        "verified_on": backend.verified_on,
        "int8_kernels": backend.int8_kernels,
    }


def summarise(
    config: BenchmarkConfig,
    plan: BenchmarkPlan,
    backends: Sequence[Backend],
    timings: dict[str, Timings],
    peak: dict[str, Any],
    cold: dict[str, dict[str, Any]],
    command: str,
) -> dict[str, Any]:
    """The report: settings, machine, evaluation set, one row per backend (the reference first: PyTorch, or the
    first ONNX model when there is no PyTorch baseline; `reference` names it, speed-ups and agreement are to it).

    Args:
        config: the benchmark config (its settings are recorded).
        plan: what was resolved (checkpoint, evaluation set, threads, max_length).
        backends: the backends measured, the reference first.
        timings: backend name -> raw measurements.
        peak: `peak.measure_fp32_peak`'s result.
        cold: backend name -> cold-start figures (empty when not measured).
        command: the command line recorded in the report.
    """
    work = {b.name: model_work(b, plan.texts) for b in backends}
    reference_pred = timings[backends[0].name].logits.argmax(-1)
    rows = [
        backend_row(b, timings[b.name], plan.labels, reference_pred, work[b.name], peak["gflops"]) for b in backends
    ]
    for row in rows:
        if row["backend"] in cold:
            row["cold_start"] = cold[row["backend"]]
    base = rows[0]
    for row in rows:
        row["speedup"] = {
            "latency_p50": round(base["latency_ms"]["p50"] / row["latency_ms"]["p50"], 2),
            **{
                f"throughput_{bs}": round(row["throughput"][bs]["median"] / base["throughput"][bs]["median"], 2)
                for bs in row["throughput"]
            },
        }
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "machine": {**machine_info(plan.threads), "int8_kernels": best_kernels()},
        "fp32_peak": peak,
        "settings": {
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in asdict(config).items()
            if k not in ("onnx", "pytorch", "output")
        },
        "data": plan.evaluation.data.to_json(),
        "evaluation": plan.evaluation_json(),
        "pytorch_checkpoint": str(plan.checkpoint) if plan.checkpoint is not None else None,
        "reference": backends[0].name,
        "max_length": plan.max_length,
        "eval_sentences": len(plan.texts),
        **work_json(work[backends[0].name]),  # the reference model's; each row has its own model's
        "backends": rows,
    }

"""`run_benchmark`: resolve -> load backends -> measure -> summarise -> write, one step per module."""

from __future__ import annotations

import logging
from typing import Any

from .backends import load_backends
from .config import BenchmarkConfig
from .measure import cold_starts, latency_schedule, measure_rounds
from .peak import measure_fp32_peak
from .report import write_report
from .resolve import resolve_plan
from .summary import summarise

logger = logging.getLogger(__name__)

COLD_START_TEXTS = 64


def run_benchmark(config: BenchmarkConfig, command: str | None = None) -> dict[str, Any]:
    """Measure every backend side by side; write results.json, results.md, latency.png, throughput.png.

    Progress goes to the `tnews_deploy.benchmark` loggers (INFO) and a tqdm bar on a terminal.

    Args:
        config: what to measure and how (`BenchmarkConfig`, validated on construction).
        command: the command line to record in the report; default: `config.to_command(config.output)`, the
            `tnews-deploy benchmark` call with these settings, its paths relative to the results folder (it
            runs there, and results.md names no machine-specific path).

    Returns:
        The report dict, as written to `config.output / "results.json"`.

    Raises:
        UserError: a folder is missing, or no checkpoint or evaluation data can be found.
    """
    plan = resolve_plan(config)
    logger.info("loading backends (threads = %d) ...", plan.threads)
    backends = load_backends(plan.checkpoint, plan.onnx, plan.threads, plan.max_length, config.pytorch_sorted)
    warm, timed = latency_schedule(plan.texts, config.warmup, config.latency_sentences, plan.evaluation.seed)
    logger.info(
        "measuring %d backend(s) on %s sentences, %d round(s) ...", len(backends), f"{len(plan.texts):,}", config.rounds
    )
    timings = measure_rounds(backends, plan.texts, config.batch_sizes, config.rounds, warm, timed)
    logger.info("measuring this machine's fp32 GEMM peak ...")
    peak = measure_fp32_peak(plan.threads)
    cold = cold_starts(backends, plan.texts[:COLD_START_TEXTS]) if config.cold_start else {}
    command = command or config.to_command(relative_to=config.output)
    report = summarise(config, plan, backends, timings, peak, cold, command)
    write_report(report, config.output)
    logger.info("wrote %s", config.output)
    return report

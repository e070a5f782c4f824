"""Side-by-side benchmark: PyTorch eager vs each ONNX export, on the same sentences and threads.

For every backend it measures, on the evaluation set the models were scored on:

* accuracy: macro/micro-F1 and agreement with PyTorch's predictions;
* latency at batch size 1 (p50/p95/p99/mean over >= 300 sentences after warm-up);
* throughput at each batch size over the whole evaluation set, with the padding
  efficiency (real tokens / padded tokens) of the batches actually run;
* cold start (import + load + first prediction in a fresh process) and the
  peak RSS of that process, and the model file size;
* effective GFLOP/s (useful FLOPs from each backend's own model shape and its
  real token counts) and its share of this machine's measured fp32 GEMM peak.

Backends are measured in alternation (A B A B ...) round by round, so drift of
the machine hits all of them alike; medians and min-max over rounds are reported.
Needs the `train` extra (PyTorch is one of the backends).

Modules, in the order a run uses them:

* `config`: `BenchmarkConfig`, validated on construction (stdlib only);
* `resolve`: what to measure: checkpoint, threads, max_length, the evaluation set;
* `backends`: the PyTorch and ONNX backends;
* `measure`: warm-up, alternating rounds, cold starts (raw timings);
* `peak`: this machine's fp32 GEMM peak;
* `flops`: the FLOP counter;
* `summary`: raw timings -> the report dict;
* `report`: results.json, results.md and the plots (no torch, no onnxruntime);
* `run`: `run_benchmark`, the steps in order.

Machine facts (CPU, flags, versions) live in `tnews_deploy.machine`. The names
below are loaded on first use, so importing this package (or `report`) is cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

if TYPE_CHECKING:
    from .config import BenchmarkConfig
    from .flops import ModelShape, ModelWork, encoder_flops
    from .report import render_markdown, write_report
    from .run import run_benchmark

_EXPORTS = {
    "BenchmarkConfig": "config",
    "ModelShape": "flops",
    "ModelWork": "flops",
    "encoder_flops": "flops",
    "render_markdown": "report",
    "write_report": "report",
    "run_benchmark": "run",
}
__all__ = [
    "BenchmarkConfig",
    "ModelShape",
    "ModelWork",
    "encoder_flops",
    "render_markdown",
    "run_benchmark",
    "write_report",
]

__getattr__ = lazy_exports(__name__, _EXPORTS)

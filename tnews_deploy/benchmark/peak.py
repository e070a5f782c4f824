"""This machine's fp32 GEMM peak: the yardstick for the report's "% fp32 peak" column.

A single GEMM size is not a peak. One 1024² torch matmul (what the benchmark
measured before) can fall out of the cache sweet spot of a small CPU and run at
a fraction of what the cores do on 256²–512² blocks, while onnxruntime's
kernels work on such blocks; fp32 ONNX then showed as 136 % of "peak". So the
peak is the best rate over several square sizes and two BLAS stacks (numpy's
and torch's), each limited to the benchmark's thread count, best of a few
repeats: the most fp32 multiply-adds per second this machine was seen to do.
fp32 backends stay below it; int8 kernels do up to 4× the operations per
instruction and can exceed it (the report says so).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

PEAK_SIZES = (256, 512, 1024, 2048)


def _best_seconds(matmul: Callable[[], Any], repeats: int, budget_s: float) -> float:
    """Best wall time of `matmul` after a warm-up call: `repeats` runs, fewer (≥ 2) past `budget_s`."""
    matmul()
    best, spent = float("inf"), 0.0
    for i in range(repeats):
        start = time.perf_counter()
        matmul()
        elapsed = time.perf_counter() - start
        best, spent = min(best, elapsed), spent + elapsed
        if i >= 1 and spent > budget_s:
            break
    return best


def _torch_rates(threads: int, sizes: Sequence[int], repeats: int, budget_s: float) -> dict[str, float]:
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        rates = {}
        for n in sizes:
            a, b = torch.randn(n, n), torch.randn(n, n)
            rates[str(n)] = 2 * n**3 / _best_seconds(lambda a=a, b=b: a @ b, repeats, budget_s) / 1e9
        return rates
    finally:
        torch.set_num_threads(previous)


def _numpy_rates(threads: int, sizes: Sequence[int], repeats: int, budget_s: float) -> dict[str, float]:
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    rates = {}
    with threadpool_limits(limits=threads, user_api="blas"):
        for n in sizes:
            a, b = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)
            rates[str(n)] = 2 * n**3 / _best_seconds(lambda a=a, b=b: a @ b, repeats, budget_s) / 1e9
    return rates


LIBRARIES: dict[str, Callable[[int, Sequence[int], int, float], dict[str, float]]] = {
    "numpy": _numpy_rates,
    "torch": _torch_rates,
}


def measure_fp32_peak(
    threads: int, sizes: Sequence[int] = PEAK_SIZES, repeats: int = 5, budget_s: float = 0.5
) -> dict[str, Any]:
    """The best fp32 GEMM rate (GFLOP/s) of numpy and torch over square `sizes` with `threads` threads.

    Args:
        threads: BLAS / intra-op threads, the same as the backends used.
        sizes: square matrix sizes n (one n×n @ n×n GEMM is 2n³ FLOPs).
        repeats: timed runs per size and library (after a warm-up); the best counts.
        budget_s: stop repeating a size once its timed runs took this long (at least two run).

    Returns:
        `gflops` (the peak), `library` and `size` where it was reached, `method` (one line for the
        report) and `gflops_by_size` (every library and size measured). A library that is not
        installed is left out.
    """
    by_library: dict[str, dict[str, float]] = {}
    for name, rates in LIBRARIES.items():
        try:
            by_library[name] = {n: round(r, 1) for n, r in rates(threads, sizes, repeats, budget_s).items()}
        except ImportError as exc:
            logger.info("fp32 peak: %s is not available (%s); measured without it", name, exc)
    library, size = max(((lib, n) for lib, r in by_library.items() for n in r), key=lambda k: by_library[k[0]][k[1]])
    sizes_text = "/".join(str(n) for n in sizes)
    return {
        "gflops": by_library[library][size],
        "library": library,
        "size": int(size),
        "method": f"best fp32 GEMM of {' and '.join(by_library)} over n = {sizes_text} (n×n @ n×n), "
        f"best of {repeats}, {threads} thread(s); reached by {library} at n = {size}",
        "gflops_by_size": by_library,
    }

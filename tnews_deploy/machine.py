"""Facts about this machine: CPU model and flags, usable cores, library versions.

The one place that reads them, shared by the exporter (which versions built an
export), `int8_weights` (the kernel flags, beside CPUID), the grid (which versions
trained it) and the benchmark (what machine the figures come from). Standard library
only: importing it loads neither torch nor onnxruntime, and `library_versions`
reads installed package metadata without importing the packages.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

CPUINFO = Path("/proc/cpuinfo")

# CPU flags that decide which GEMM kernels run (fp32 AVX/FMA, int8 VNNI, AMX, Arm dot product).
KERNEL_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx512_bf16",
    "avx_vnni",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
    "asimd",
    "asimddp",
)

# Distributions whose versions say how a model was trained, exported or run (pip names).
LIBRARIES = ("torch", "transformers", "optimum", "optimum-onnx", "onnx", "onnxruntime", "tokenizers", "numpy")


def _cpuinfo_field(prefixes: tuple[str, ...]) -> str:
    """The value of the first /proc/cpuinfo line starting with one of `prefixes` ("" if none or no file)."""
    try:
        for line in CPUINFO.read_text().splitlines():
            if line.startswith(prefixes):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def cpu_model() -> str:
    """The CPU's model name (e.g. "Intel(R) Xeon(R) Processor"), or the architecture when unknown."""
    return _cpuinfo_field(("model name",)) or platform.machine()


def cpu_flags() -> set[str]:
    """All CPU feature flags the kernel reports (x86 "flags", Arm "Features"); empty when unknown."""
    return set(_cpuinfo_field(("flags", "Features")).split())


def kernel_flags() -> list[str]:
    """The flags of `KERNEL_FLAGS` this CPU has, in that order."""
    flags = cpu_flags()
    return [f for f in KERNEL_FLAGS if f in flags]


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def library_versions(libraries: tuple[str, ...] = LIBRARIES) -> dict[str, str]:
    """Versions of tnews_deploy, Python and the installed `libraries`; ones not installed are left out.

    Args:
        libraries: pip distribution names to look up (package metadata, nothing is imported).
    """
    from importlib import metadata

    from . import __version__

    versions = {"tnews_deploy": __version__, "python": platform.python_version()}
    for name in libraries:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def machine_info(threads: int) -> dict[str, Any]:
    """What a measurement ran on: CPU, cores, the thread count used, kernel flags, library versions.

    Args:
        threads: the thread count the measurement used, recorded as is.
    """
    return {
        "cpu": cpu_model(),
        "arch": platform.machine(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable_cpus(),
        "threads": threads,
        "flags": kernel_flags(),
        "versions": library_versions(),
        "platform": platform.platform(),
    }

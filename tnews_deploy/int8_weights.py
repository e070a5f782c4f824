"""int8 weight forms: which one this CPU multiplies exactly and fastest, and the exact switch between them.

onnxruntime's integer matrix products (`MatMulIntegerToFloat`, `MatMulInteger`, `DynamicQuantizeMatMul`,
`QAttention`) take uint8 activations and either int8 weights (``u8 x s8``) or uint8 weights (``u8 x u8``).
The two forms hold the same numbers: an int8 weight ``w`` with zero point ``z`` is the uint8 weight
``w + 128`` with zero point ``z + 128``, and the integer sums ``Σ (a - za)(w - z)`` are the same.

What differs is the kernel, chosen by onnxruntime (MLAS) from the CPU's CPUID:

* ``u8 x s8`` on x86 *without* VNNI (AVX2, and AVX-512 without VNNI) multiplies with `vpmaddubsw`, whose
  16-bit pair sums saturate: ``255 * 127 * 2`` does not fit. Answers are silently wrong;
* ``u8 x s8`` with AVX512-VNNI / AVX-VNNI (`vpdpbusd`, and AMX CPUs, which have VNNI too) and on ARM64 is
  exact, and on VNNI CPUs it is the fastest form;
* ``u8 x u8`` is exact on every CPU (it widens to 16 bits before multiplying), but slower than ``u8 x s8``
  where VNNI exists (figures: docs/export.md).

So an export is written in the portable ``u8 x u8`` form by default (a file any runtime, Node.js included,
computes exactly on any CPU), and `Predictor` rewrites the weights in memory at load into the form that is
exact and fastest on the CPU it runs on (`plan` / `convert`): to ``u8 x s8`` on VNNI CPUs; to ``u8 x u8``
when an export in the ``u8 x s8`` form (`--quantize-for avx512_vnni`, or an older export) is served on a
CPU without VNNI. The integer products are unchanged, so the answers are the ones the export was verified
with. The file on disk is never changed, and its sha256 is checked before.

The CPU is read through CPUID (numpy's feature table, the same source onnxruntime's dispatch uses) where
numpy reports it, else from /proc/cpuinfo (`machine.cpu_flags`). Importing this module loads numpy only;
`onnx` is imported when a model is converted.
"""

from __future__ import annotations

import logging
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .machine import cpu_flags

logger = logging.getLogger(__name__)

U8S8 = "u8s8"  # uint8 activations x int8 weights
U8U8 = "u8u8"  # uint8 activations x uint8 weights
# What `Predictor(int8_kernels=...)` accepts: "auto" picks the exact and fastest form for this CPU.
INT8_KERNEL_CHOICES = ("auto", U8U8, U8S8)

# op type (com.microsoft or ai.onnx) -> (index of the weight input, index of the weight's zero point input)
WEIGHT_INPUTS: dict[str, tuple[int, int]] = {
    "MatMulIntegerToFloat": (1, 5),
    "MatMulInteger": (1, 3),
    "DynamicQuantizeMatMul": (1, 3),
    "QAttention": (1, 7),
}


def _cpuid_features() -> dict[str, bool] | None:
    """numpy's CPUID feature table (None when this numpy does not expose it)."""
    for module in ("numpy._core._multiarray_umath", "numpy.core._multiarray_umath"):
        try:
            features = __import__(module, fromlist=["__cpu_features__"]).__cpu_features__
        except (ImportError, AttributeError):
            continue
        return dict(features)
    return None


def is_arm64() -> bool:
    return platform.machine().lower() in ("arm64", "aarch64")


def u8s8_is_exact() -> bool:
    """Whether onnxruntime's ``u8 x s8`` kernels are exact on this CPU (VNNI on x86, or ARM64)."""
    if is_arm64():
        return True
    flags = cpu_flags()
    cpuid = _cpuid_features()
    avx512_vnni = cpuid["AVX512VNNI"] if cpuid and "AVX512VNNI" in cpuid else "avx512_vnni" in flags
    # AVX-VNNI (no AVX-512) is not in numpy's table: the kernel's word, with CPUID's AVX2 as a sanity check.
    avx_vnni = "avx_vnni" in flags and (cpuid is None or cpuid.get("AVX2", True))
    return bool(avx512_vnni or avx_vnni)


def best_kernels() -> str:
    """The exact and fastest int8 weight form on this CPU: ``u8s8`` where VNNI (or ARM64), else ``u8u8``."""
    return U8S8 if u8s8_is_exact() else U8U8


def cpu_description() -> dict[str, Any]:
    """What decides the int8 kernels here, for manifests, `/v1/model` and benchmark records."""
    from .machine import cpu_model, kernel_flags

    return {
        "cpu": cpu_model(),
        "arch": platform.machine(),
        "flags": kernel_flags(),
        "u8s8_exact": u8s8_is_exact(),
        "int8_kernels": best_kernels(),
    }


@dataclass(frozen=True)
class WeightForm:
    """The int8 weight form of a model's integer matrix products, as found in its graph."""

    form: str | None  # U8S8, U8U8, or None when the model has no integer matrix product
    weights: int  # how many weight tensors


def read_form(model: Any) -> WeightForm:
    """The weight form of an `onnx.ModelProto` (the first integer product's weight decides; they agree)."""
    from onnx import TensorProto

    inits = {init.name: init for init in model.graph.initializer}
    forms = [
        inits[node.input[WEIGHT_INPUTS[node.op_type][0]]].data_type
        for node in model.graph.node
        if node.op_type in WEIGHT_INPUTS and len(node.input) > 1 and node.input[1] in inits
    ]
    if not forms:
        return WeightForm(None, 0)
    return WeightForm(U8S8 if forms[0] == TensorProto.INT8 else U8U8, len(forms))


def convert(model: Any, to: str) -> int:
    """Rewrite `model`'s integer-product weights in place into the form `to` (``u8s8`` or ``u8u8``).

    int8 -> uint8 adds 128 to the weight and its zero point (a scalar 128 when it had none); uint8 ->
    int8 subtracts 128 and is done only where every zero point is 128 (symmetric weights, as this
    project's exporter writes), since an int8 zero point must stay in range. The integer sums, and so
    the outputs, are exactly the same. A weight also read by another op (not an integer product) is left
    as it is.

    Args:
        model: an `onnx.ModelProto`, changed in place.
        to: the weight form wanted, ``u8s8`` or ``u8u8``.

    Returns:
        How many weight tensors were converted.
    """
    from onnx import TensorProto, numpy_helper

    if to not in (U8S8, U8U8):
        raise ValueError(f"to must be {U8S8!r} or {U8U8!r}, got {to!r}.")
    graph = model.graph
    inits = {init.name: init for init in graph.initializer}
    source_type = TensorProto.INT8 if to == U8U8 else TensorProto.UINT8
    readers: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1

    def replace(name: str, array: np.ndarray) -> None:
        inits[name].CopyFrom(numpy_helper.from_array(array, name))

    converted: set[str] = set()
    for node in graph.node:
        if node.op_type not in WEIGHT_INPUTS:
            continue
        w_at, zp_at = WEIGHT_INPUTS[node.op_type]
        if len(node.input) <= w_at or node.input[w_at] not in inits:
            continue
        weight_name = node.input[w_at]
        if inits[weight_name].data_type != source_type or readers[weight_name] != 1:
            continue
        zp_name = node.input[zp_at] if len(node.input) > zp_at and node.input[zp_at] else None
        if zp_name is not None and (zp_name not in inits or readers[zp_name] != 1):
            continue
        weight = numpy_helper.to_array(inits[weight_name]).astype(np.int16)
        if to == U8U8:
            replace(weight_name, (weight + 128).astype(np.uint8))
            if zp_name is None:
                zp_name = f"{weight_name}/zero_point_u8"
                graph.initializer.append(numpy_helper.from_array(np.array(128, np.uint8), zp_name))
                while len(node.input) < zp_at:
                    node.input.append("")
                node.input.append(zp_name)
            else:
                zp = numpy_helper.to_array(inits[zp_name]).astype(np.int16)
                replace(zp_name, (zp + 128).astype(np.uint8))
        else:
            zp = numpy_helper.to_array(inits[zp_name]) if zp_name is not None else np.array(0)
            if zp_name is None or not np.all(zp == 128):
                continue  # asymmetric uint8 weights have no int8 form with an in-range zero point
            replace(weight_name, (weight - 128).astype(np.int8))
            replace(zp_name, np.zeros(zp.shape, np.int8))
        converted.add(weight_name)
    return len(converted)


@dataclass(frozen=True)
class KernelPlan:
    """What `Predictor` does with a model's int8 weights at load."""

    exported: str | None  # the form in the file (None: no integer products, nothing to do)
    used: str | None  # the form the session runs
    converted: int  # weight tensors rewritten in memory
    exact: bool  # False only when the user forced u8s8 on a CPU without VNNI

    @property
    def changed(self) -> bool:
        return self.converted > 0

    def to_json(self) -> dict[str, Any]:
        return {"exported": self.exported, "used": self.used, "converted_at_load": self.converted, "exact": self.exact}


def prepare(model_path: Path, manifest: dict[str, Any], kernels: str = "auto") -> tuple[KernelPlan, bytes | None]:
    """The weight form to run `model_path` in on this CPU, and the converted model (None: load the file).

    The graph is read unless the manifest says the model is not quantised: an fp32 export costs nothing here.

    Args:
        model_path: the exported `model.onnx`.
        manifest: the export's manifest (may be empty).
        kernels: "auto" (exact and fastest here), or force "u8u8" / "u8s8" (u8s8 on a CPU without VNNI
            gives inexact answers: a warning is logged).
    """
    if kernels not in INT8_KERNEL_CHOICES:
        raise ValueError(f"int8_kernels must be one of {', '.join(INT8_KERNEL_CHOICES)}, got {kernels!r}.")
    if "quantization" in manifest and not manifest["quantization"]:  # an fp32 export (the key is always written)
        return KernelPlan(None, None, 0, True), None
    import onnx

    model = onnx.load(str(model_path))
    found = read_form(model)
    if found.form is None:
        return KernelPlan(None, None, 0, True), None
    want = best_kernels() if kernels == "auto" else kernels
    exact = want == U8U8 or u8s8_is_exact()
    if not exact:
        logger.warning(
            "%s: running u8 x s8 int8 kernels on a CPU without VNNI (int8_kernels=%r): their 16-bit "
            "sums can saturate and answers can differ from the verified ones.",
            model_path,
            kernels,
        )
    converted = convert(model, want) if want != found.form else 0
    if not converted:
        return KernelPlan(found.form, found.form, 0, exact), None
    used = read_form(model).form
    logger.debug(  # on every load: not news to a user; /v1/model, the benchmark and verbose logs say it
        "%s: int8 weights %s -> %s in memory (%d tensors) for this CPU (%s)",
        model_path.name,
        found.form,
        used,
        converted,
        "VNNI" if u8s8_is_exact() else "no VNNI",
    )
    return KernelPlan(found.form, used, converted, exact), model.SerializeToString()

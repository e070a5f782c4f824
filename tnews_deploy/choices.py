"""The export choices, each listed once: graph optimisation levels, quantisation modes, int8 weight targets.

`ExportConfig` validates against these lists, the exporter dispatches on them, the CLI's `--optimize`,
`--quantize` and `--quantize-for` offer them (`tests/test_choices.py` pins the CLI to them), and the
benchmark names a manifest's mode with them. Adding a mode: its name here, its branch in
`export.exporter.build_onnx` (recording `quantization.mode` and `scheme` in the manifest), its help text in
the CLI. Stdlib only: importing it (the CLI does, for `--help`) loads neither torch nor onnxruntime.
"""

from __future__ import annotations

# Optimum's graph optimisation levels; "none" exports the graph as traced.
OPTIMIZE_LEVELS: tuple[str, ...] = ("none", "O1", "O2", "O3")
# The levels that rewrite the graph exactly (O3 approximates GELU).
EXACT_OPTIMIZE_LEVELS: tuple[str, ...] = ("none", "O1", "O2")

# "int8": the batch-invariant per-token scheme (`export.quantize`); "int8-dynamic": Optimum's ORTQuantizer;
# "auto": build fp32, fp32 + O2, int8 and int8 + O2, verify each, time each here, keep the fastest that passes
# (`export.auto`; the manifest records the mode of the variant kept).
QUANTIZE_MODES: tuple[str, ...] = ("none", "int8", "int8-dynamic", "auto")
# What `--quantize auto` keeps: the best titles/s at batch 32, or the best batch-1 p50 latency.
PREFERENCES: tuple[str, ...] = ("throughput", "latency")
# The `quantization.scheme` each mode records in a manifest. Manifests written before "int8-dynamic" existed
# record mode "int8" with no scheme: they are Optimum's per-tensor dynamic int8, today's "int8-dynamic".
QUANTIZE_SCHEMES: dict[str, str] = {"int8": "per-token-symmetric", "int8-dynamic": "per-tensor-dynamic"}

# "portable": uint8 weights (u8 x u8), exact on every CPU and in every runtime; the others are Optimum's CPU configs
# (int8 weights for avx512_vnni and arm64: exact only on CPUs with VNNI, or ARM64). See `tnews_deploy.int8_weights`.
QUANTIZE_TARGETS: tuple[str, ...] = ("portable", "avx512_vnni", "avx512", "avx2", "arm64")
DEFAULT_QUANTIZE_TARGET = "portable"
# The targets whose weights are int8 (u8 x s8 kernels); the others are written as uint8 (u8 x u8).
S8_TARGETS: tuple[str, ...] = ("avx512_vnni", "arm64")


def recorded_quantize_mode(quantization: dict | None) -> str:
    """The quantisation mode a manifest's `quantization` section records: "none" for none, else its `mode`
    (a mode "int8" without a scheme is an old manifest's per-tensor dynamic int8: "int8-dynamic").

    Args:
        quantization: the manifest's `quantization` value (None or a dict).
    """
    if not quantization:
        return "none"
    mode = str(quantization.get("mode") or "int8")
    if mode == "int8" and quantization.get("scheme") is None:
        return "int8-dynamic"
    return mode

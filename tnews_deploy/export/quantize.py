"""Per-token symmetric dynamic int8: an ONNX graph rewrite whose answers do not depend on the batch.

Why: dynamic int8 as onnxruntime/Optimum do it (`DynamicQuantizeLinear`) picks *one* activation scale and
zero point per tensor per call, from the min/max of the whole batch. A text's activations are then rounded
on a grid set by its batch neighbours (and their padding), so the same text can get another answer in
another batch; behind a micro-batching server, another answer depending on other users' requests.

The scheme here, built from standard ONNX ops plus onnxruntime's `MatMulIntegerToFloat`:

* weights (every `MatMul`/`Gemm` whose B is an initializer): symmetric int8, one scale per output column,
  ``w_scale[j] = max_k |W[k, j]| / 127``;
* activations, per token (per row of the flattened ``(tokens, K)`` input): symmetric,
  ``x_scale[i] = max_k |x[i, k]| / 127`` (`ReduceMax`, `ReduceMin`), quantised by `QuantizeLinear` per axis 0 to
  uint8 with zero point 128 (``q = round(x / x_scale) + 128`` in 1..255);
* ``y = (Σ_k (q[i, k] - 128) · Wq[k, j]) · w_scale[j] · x_scale[i]``: the integer product and the
  per-column scale in one `MatMulIntegerToFloat` (scalar A scale 1, per-column B scale, as documented),
  then one broadcast `Mul` by the row scale; the graph's own bias `Add` follows unchanged;
* the embedding tables indexed by a model input (word and token-type embeddings): int8 with one scale per
  row, gathered as int8 and scaled after the lookup (weight-only; the word embeddings are most of the
  file, so this is what makes it ~4× smaller). Position embeddings stay fp32.

Why batch-invariant: every quantity a token's result depends on is computed from that token's row alone
(its own scale, its own rounding), the integer matrix product is exact (int32 accumulation, no rounding
order), and the scales are applied element-wise. Nothing reduces across rows, so neither the other texts of
a batch nor the padding they add can reach a text's answer. The rest of the encoder is fp32 as exported:
padding positions are masked out of attention, and onnxruntime's CPU kernels compute a row the same way
whatever the batch (measured: the fp32 and per-token exports give bit-identical logits one at a time and
in batches of 32; the export records this check in its manifest).

Inputs that feed several quantised MatMuls (the Q/K/V projections share one) are quantised once; with
`fuse_shared=True` their weights are also concatenated into one wider int8 GEMM whose output is split.
On an O2-optimised graph, onnxruntime's fused `Attention` (which projects Q/K/V in fp32 inside) becomes
int8 Q/K/V products feeding a `MultiHeadAttention` with the same bias, mask and heads.

Weights are uint8 by default (int8 + 128, zero point 128: ``u8 x u8`` kernels, exact on every CPU), or
int8 with `weight_type="int8"` (``u8 x s8``): without AVX512-VNNI/AVX-VNNI the x86 ``u8 x s8`` kernels
saturate 16-bit intermediate sums. Both give the same integer products, and `tnews_deploy.int8_weights`
converts one into the other; the runtime runs the form that is exact and fastest on its CPU.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..choices import QUANTIZE_SCHEMES
from ..errors import disk_full_error

logger = logging.getLogger(__name__)

SCHEME = QUANTIZE_SCHEMES["int8"]  # "per-token-symmetric", as manifests record it
WEIGHT_TYPES = ("int8", "uint8")
MS_DOMAIN = "com.microsoft"
_QMAX = 127.0
_TINY = 1e-12  # row scale floor: an all-zero row quantises to 0 (q = 128) instead of 0/0


@dataclass
class PerTokenSummary:
    """What the rewrite did, for the export manifest."""

    matmuls: int = 0  # MatMul/Gemm nodes now computed in int8
    embeddings: int = 0  # Gather tables stored as int8
    shared_inputs: int = 0  # activations quantised once for several MatMuls
    fused_groups: int = 0  # groups of MatMuls merged into one int8 GEMM (Q/K/V)
    kept_fp32: list[str] = field(default_factory=list)  # candidates left in fp32, by name

    def to_json(self) -> dict[str, Any]:
        return {
            "matmuls_int8": self.matmuls,
            "embeddings_int8": self.embeddings,
            "shared_activation_quantisers": self.shared_inputs,
            "fused_matmul_groups": self.fused_groups,
            "kept_fp32": self.kept_fp32,
        }


@dataclass
class _Target:
    """One matrix product to quantise: ``output = activation @ weight (+ bias)``."""

    index: int  # position of the node it replaces
    name: str
    weight: np.ndarray  # (K, M) float32
    bias: str | None  # initializer to add (Gemm's C); a MatMul's own bias Add stays in the graph
    output: str
    after: list[Any] = field(default_factory=list)  # nodes that consume it (an Attention's MultiHeadAttention)


def quantize_weight_per_column(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 for a (K, M) weight, one scale per output column: (int8 weight, float32 scales)."""
    amax = np.abs(weight).max(axis=0)
    scale = np.where(amax > 0, amax / _QMAX, 1.0).astype(np.float32)
    q = np.clip(np.rint(weight / scale), -_QMAX, _QMAX).astype(np.int8)
    return q, scale


def quantize_rows(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 for an embedding table, one scale per row: (int8 table, float32 scales)."""
    q, scale = quantize_weight_per_column(table.T)
    return np.ascontiguousarray(q.T), scale


class _Rewriter:
    def __init__(
        self, model: Any, weight_type: str, fuse_shared: bool, exclude: set[str], quantize_embeddings: bool
    ) -> None:
        from onnx import numpy_helper

        self.onnx_model = model
        self.graph = model.graph
        self.weight_type = weight_type
        self.fuse_shared = fuse_shared
        self.exclude = exclude
        self.quantize_embeddings = quantize_embeddings
        self.inits = {init.name: init for init in self.graph.initializer}
        self.np = lambda name: numpy_helper.to_array(self.inits[name])
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
        self.new_inits: list[Any] = []
        self.names: set[str] = {n.name for n in self.graph.node} | set(self.inits)
        self.summary = PerTokenSummary()
        consumers: dict[str, int] = defaultdict(int)
        for node in self.graph.node:
            for name in node.input:
                consumers[name] += 1
        for out in self.graph.output:
            consumers[out.name] += 1
        self.consumers = consumers

    # ------------------------------------------------------------------ helpers

    def unique(self, base: str) -> str:
        name, i = base, 0
        while name in self.names:
            i += 1
            name = f"{base}_{i}"
        self.names.add(name)
        return name

    def const(self, base: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        name = self.unique(base)
        self.new_inits.append(numpy_helper.from_array(value, name))
        return name

    def node(self, op: str, inputs: list[str], base: str, outputs: int = 1, domain: str = "", **attrs: Any):
        from onnx import helper

        name = self.unique(base)
        outs = [self.unique(f"{name}_out{i}" if outputs > 1 else f"{name}_out") for i in range(outputs)]
        return helper.make_node(op, inputs, outs, name=name, domain=domain, **attrs), outs

    def weight_of(self, node: Any) -> tuple[np.ndarray, str | None] | None:
        """(W as (K, M), bias initializer or None) for a MatMul/Gemm with a constant 2-D B, else None."""
        if node.op_type == "MatMul" and len(node.input) == 2 and node.input[1] in self.inits:
            w = self.np(node.input[1])
            return (w, None) if w.ndim == 2 and w.dtype == np.float32 else None
        if node.op_type == "Gemm" and node.input[1] in self.inits:
            from onnx import helper

            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            if attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0:
                return None
            w = self.np(node.input[1])
            if w.ndim != 2 or w.dtype != np.float32:
                return None
            bias = node.input[2] if len(node.input) > 2 and node.input[2] else None
            if bias is not None and (bias not in self.inits or self.np(bias).ndim != 1):
                return None
            return (w.T if attrs.get("transB", 0) else w), bias
        return None

    # ------------------------------------------------------------------ the rewrite

    def quantize_activation(self, x: str, k: int, base: str) -> tuple[list[Any], str, str]:
        """Nodes quantising `x` (..., k) per token: (nodes, uint8 x with x's shape, row scale shaped (..., 1)).

        max|x| per row is max(ReduceMax(x), -ReduceMin(x)): two reads of x and no |x| tensor written.
        `QuantizeLinear` quantises along one axis only, so x is seen as (rows, k) for it (free reshapes).
        """
        if self.opset >= 18:
            axes = [self.const(base + "/axes_last", np.array([-1], np.int64))]
            attrs: dict[str, Any] = {"keepdims": 1}
        else:
            axes, attrs = [], {"axes": [-1], "keepdims": 1}
        n_max, (x_max,) = self.node("ReduceMax", [x, *axes], base + "/ReduceMax", **attrs)
        n_min, (x_min,) = self.node("ReduceMin", [x, *axes], base + "/ReduceMin", **attrs)
        n_neg, (neg_min,) = self.node("Neg", [x_min], base + "/Neg")
        n_amax, (amax,) = self.node("Max", [x_max, neg_min], base + "/AbsMax")
        tiny = self.const(base + "/tiny", np.array(_TINY, np.float32))
        qmax = self.const(base + "/qmax", np.array(_QMAX, np.float32))
        n_floor, (floored,) = self.node("Max", [amax, tiny], base + "/Max")
        n_scale, (scale,) = self.node("Div", [floored, qmax], base + "/Div")  # (..., 1): the row scale
        flat_shape = self.const(base + "/flat", np.array([-1], np.int64))
        rows_shape = self.const(base + "/rows", np.array([-1, k], np.int64))
        zp_value = self.const(base + "/zp128", np.array([128], np.uint8))
        n_s1, (scale1,) = self.node("Reshape", [scale, flat_shape], base + "/scale_1d")
        n_shape, (shape_x,) = self.node("Shape", [x], base + "/Shape")
        n_x2, (x2,) = self.node("Reshape", [x, rows_shape], base + "/x_2d")
        n_zp_shape, (zp_shape,) = self.node("Shape", [scale1], base + "/zp_shape")
        n_zp, (zp,) = self.node("Expand", [zp_value, zp_shape], base + "/zp")  # one 128 per row
        n_q, (xq2,) = self.node("QuantizeLinear", [x2, scale1, zp], base + "/QuantizeLinear", axis=0)
        n_xq, (xq,) = self.node("Reshape", [xq2, shape_x], base + "/x_q")
        nodes = [n_max, n_min, n_neg, n_amax, n_floor, n_scale, n_s1, n_shape, n_x2, n_zp_shape, n_zp, n_q, n_xq]
        return nodes, xq, scale

    def int8_matmul(self, xq: str, scale: str, w: np.ndarray, base: str) -> tuple[list[Any], str]:
        """Nodes for ``(xq - 128) @ Wq * w_scale * scale``: (nodes, float output)."""
        wq, w_scale = quantize_weight_per_column(w)
        inputs_b = []
        if self.weight_type == "uint8":
            wq = (wq.astype(np.int16) + 128).astype(np.uint8)
        b_name = self.const(base + "/W_quantized", wq)
        a_scale = self.const(base + "/one", np.array(1.0, np.float32))
        b_scale = self.const(base + "/W_scale", w_scale)
        a_zp = self.const(base + "/x_zero_point", np.array(128, np.uint8))
        if self.weight_type == "uint8":
            inputs_b = [self.const(base + "/W_zero_point", np.array(128, np.uint8))]
        n_mm, (y,) = self.node(
            "MatMulIntegerToFloat",
            [xq, b_name, a_scale, b_scale, a_zp, *inputs_b],
            base + "/MatMulIntegerToFloat",
            domain=MS_DOMAIN,
        )
        n_mul, (out,) = self.node("Mul", [y, scale], base + "/row_scale")
        return [n_mm, n_mul], out

    def targets(self) -> dict[str, list[_Target]]:
        """The MatMuls to quantise, grouped by the activation they read."""
        groups: dict[str, list[_Target]] = defaultdict(list)
        for idx, node in enumerate(self.graph.node):
            excluded = node.name in self.exclude or any(
                node.name.startswith(p) for p in self.exclude if p.endswith("/")
            )
            if node.op_type in ("MatMul", "Gemm"):
                found = self.weight_of(node)
                if found is None:
                    continue
                if excluded:
                    self.summary.kept_fp32.append(node.name)
                    continue
                groups[node.input[0]].append(_Target(idx, node.name, found[0], found[1], node.output[0]))
            elif node.op_type == "Attention" and node.domain == MS_DOMAIN:
                parts = self.attention_weights(node)
                if parts is None or excluded:
                    self.summary.kept_fp32.append(node.name)
                    continue
                names = [self.unique(f"{node.name}/{p}") for p in "QKV"]
                for part, name in zip(parts, names):
                    groups[node.input[0]].append(_Target(idx, node.name, part, None, name))
                mha = self.multi_head_attention(node, names)
                groups[node.input[0]][-1].after = [mha]
        return groups

    def run(self) -> None:
        graph = self.graph
        replaced: dict[int, list[Any]] = {}  # node index -> nodes taking its place (first of a group)
        dropped: set[int] = set()

        for x, members in self.targets().items():
            first = members[0].index
            base = (members[0].name or f"node{first}").rsplit("/", 1)[0] + "/per_token"
            nodes, xq, scale = self.quantize_activation(x, members[0].weight.shape[0], base)
            if len(members) > 1:
                self.summary.shared_inputs += 1
            fusable = self.fuse_shared and len(members) > 1 and len({m.weight.shape[0] for m in members}) == 1
            if fusable:
                w = np.concatenate([m.weight for m in members], axis=1)
                mm_nodes, out = self.int8_matmul(xq, scale, w, base + "/fused")
                nodes += mm_nodes
                sizes = self.const(base + "/split_sizes", np.array([m.weight.shape[1] for m in members], np.int64))
                n_split, parts = self.node("Split", [out, sizes], base + "/Split", outputs=len(members), axis=-1)
                nodes.append(n_split)
                self.summary.fused_groups += 1
            else:
                parts = []
                for member in members:
                    mm_nodes, out = self.int8_matmul(xq, scale, member.weight, member.name or base)
                    nodes += mm_nodes
                    parts.append(out)
            for member, part in zip(members, parts):
                result = part
                if member.bias is not None:
                    n_bias, (result,) = self.node("Add", [part, member.bias], (member.name or base) + "/bias")
                    nodes.append(n_bias)
                _rename(nodes, result, member.output)
                nodes += member.after
                dropped.add(member.index)
                self.summary.matmuls += 1
            replaced[first] = nodes

        if self.quantize_embeddings:
            for idx, node in enumerate(graph.node):
                if self.embedding_candidate(node):
                    replaced[idx] = self.int8_gather(node)
                    dropped.add(idx)

        new_nodes = []
        for idx, node in enumerate(graph.node):
            if idx in replaced:
                new_nodes.extend(replaced[idx])
            if idx not in dropped:
                new_nodes.append(node)
        del graph.node[:]
        graph.node.extend(new_nodes)
        graph.initializer.extend(self.new_inits)
        used = {name for n in graph.node for name in n.input}
        keep = [init for init in graph.initializer if init.name in used]
        del graph.initializer[:]
        graph.initializer.extend(keep)
        if not any(o.domain == MS_DOMAIN for o in self.onnx_model.opset_import):
            from onnx import helper

            self.onnx_model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))

    # ------------------------------------------------------------------ fused attention (O2 graphs)

    def attention_weights(self, node: Any) -> list[np.ndarray] | None:
        """The Q, K, V weights of an onnxruntime `Attention` node we can rewrite, else None.

        `Attention` computes its Q/K/V projection inside, in fp32. It becomes int8 Q/K/V products feeding a
        `MultiHeadAttention` (same softmax/mask code, with the bias added inside) when it is plain
        self-attention: weight and bias initializers, equal Q/K/V sizes, no past state, no extra bias.
        """
        from onnx import helper

        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if set(attrs) - {"num_heads", "mask_filter_value", "scale"} or len(node.input) > 4:
            return None
        if len([o for o in node.output if o]) != 1:  # a `present` output: not a plain encoder
            return None
        if len(node.input) < 3 or node.input[1] not in self.inits or node.input[2] not in self.inits:
            return None
        w = self.np(node.input[1])
        if w.ndim != 2 or w.dtype != np.float32 or w.shape[1] % 3:
            return None
        return list(np.split(w, 3, axis=1))

    def multi_head_attention(self, node: Any, qkv: list[str]) -> Any:
        mask = node.input[3] if len(node.input) > 3 else ""
        inputs = [*qkv, node.input[2], mask] if mask else [*qkv, node.input[2]]
        mha, _ = self.node("MultiHeadAttention", inputs, node.name + "/MultiHeadAttention", domain=MS_DOMAIN)
        mha.attribute.extend(node.attribute)
        mha.output[0] = node.output[0]
        return mha

    # ------------------------------------------------------------------ embeddings

    def embedding_candidate(self, node: Any) -> bool:
        """A Gather of rows from a 2-D float initializer by a model input (token ids, token types)."""
        if node.op_type != "Gather" or node.input[0] not in self.inits or node.name in self.exclude:
            return False
        from onnx import helper

        axis = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "axis"), 0)
        table = self.inits[node.input[0]]
        graph_inputs = {i.name for i in self.graph.input}
        return axis == 0 and len(table.dims) == 2 and table.data_type == 1 and node.input[1] in graph_inputs

    def int8_gather(self, node: Any) -> list[Any]:
        table = self.np(node.input[0])
        q, scale = quantize_rows(table)
        base = node.name or "embedding"
        q_name = self.const(base + "/table_quantized", q)
        s_name = self.const(base + "/row_scale", scale)
        ids = node.input[1]
        n_gq, (gq,) = self.node("Gather", [q_name, ids], base + "/Gather_int8", axis=0)
        n_gs, (gs,) = self.node("Gather", [s_name, ids], base + "/Gather_scale", axis=0)
        axes = self.const(base + "/axes_last", np.array([-1], np.int64))
        n_un, (gs1,) = self.node("Unsqueeze", [gs, axes], base + "/scale_last")
        n_cast, (gf,) = self.node("Cast", [gq], base + "/Cast", to=1)
        n_mul, _ = self.node("Mul", [gf, gs1], base + "/dequantize")
        n_mul.output[0] = node.output[0]
        self.summary.embeddings += 1
        return [n_gq, n_gs, n_un, n_cast, n_mul]


def _rename(nodes: list[Any], old: str, new: str) -> None:
    """Give tensor `old` (made by one of `nodes`) the name `new`, which the rest of the graph reads."""
    for node in nodes:
        for i, name in enumerate(node.output):
            if name == old:
                node.output[i] = new
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new


def quantize_per_token(
    model_input: str | Path,
    model_output: str | Path,
    weight_type: str = "uint8",
    fuse_shared: bool = True,
    exclude: Iterable[str] = (),
    quantize_embeddings: bool = True,
) -> PerTokenSummary:
    """Rewrite an fp32 ONNX model into per-token symmetric dynamic int8 (batch-invariant).

    Every `MatMul` (and `Gemm` without transA/alpha/beta) whose weight is a 2-D float initializer becomes an
    int8 matrix product with per-token activation scales and per-output-column weight scales; the large
    embedding `Gather` tables become int8 with per-row scales. Everything else stays as it is.

    Args:
        model_input: the fp32 `.onnx` file (plain Optimum export, or O1/O2-optimised: the fused contrib ops
            are left alone, and whatever MatMuls remain are quantised).
        model_output: where to write the rewritten model (one file, no external data).
        weight_type: "uint8" (default: int8 + 128, zero point 128; u8 x u8 kernels, exact on every CPU) or
            "int8" (u8 x s8 kernels: exact with VNNI or on ARM64 only; faster there).
        fuse_shared: MatMuls that read the same activation (Q/K/V) share one quantiser anyway; with True their
            weights are also concatenated into one int8 GEMM and the result split.
        exclude: node names to keep in fp32 (a name ending in "/" excludes every node under that prefix).
        quantize_embeddings: store the word-embedding table(s) as int8 with per-row scales.

    Returns:
        A `PerTokenSummary` (counts of rewritten nodes, and the candidates kept in fp32).

    Raises:
        DiskFullError: no room (or quota) to write `model_output`; nothing is left there.
    """
    import onnx

    if weight_type not in WEIGHT_TYPES:
        raise ValueError(f"weight_type must be one of {', '.join(WEIGHT_TYPES)}, got {weight_type!r}.")
    model = onnx.load(str(model_input))
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 15:
        raise ValueError(
            f"{model_input}: opset {opset}; the per-token rewrite needs opset 15 or later "
            "(Shape with start/end). Export with a newer opset."
        )
    rewriter = _Rewriter(model, weight_type, fuse_shared, set(exclude), quantize_embeddings)
    rewriter.run()
    try:
        onnx.save(model, str(model_output))
    except OSError as exc:
        full = disk_full_error(
            exc, Path(model_output).parent, "while writing the quantised model", needed=model.ByteSize()
        )
        if full is None:
            raise
        Path(model_output).unlink(missing_ok=True)  # no partial model left behind
        raise full from exc
    logger.info("per-token int8: %s", rewriter.summary.to_json())
    return rewriter.summary

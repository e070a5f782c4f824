"""int8 exports: per-token int8 is batch-invariant, the legacy per-tensor mode is not; the rewrite itself."""

from __future__ import annotations

import json
import random
import shutil

import numpy as np
import pytest

from synthetic import class_keywords, make_sentence
from tnews_deploy.errors import UserError
from tnews_deploy.export import ExportConfig, GatePolicy, export_model
from tnews_deploy.export.quantize import quantize_per_token, quantize_weight_per_column
from tnews_deploy.int8_weights import U8S8, U8U8, convert, read_form, u8s8_is_exact
from tnews_deploy.predictor import Predictor

# The tiny model's F1 on 150 sentences moves by a few points either way; the gate is not what is tested here.
LOOSE = GatePolicy(max_f1_drop=0.2)


def _softmax(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)


def mixed_texts(n: int = 160, seed: int = 7) -> list[str]:
    """Synthetic titles of very different lengths: 1-3 characters up to past max_length (truncated)."""
    rng = random.Random(seed)
    texts = []
    for i in range(n):
        sentence = make_sentence(rng, i % 15)
        kind = i % 4
        if kind == 0:
            sentence = sentence[: rng.randint(1, 3)]
        elif kind == 1:
            sentence = sentence * rng.randint(3, 6)  # longer than the tiny run's max_length (32 tokens)
        texts.append(sentence)
    return texts


def crafted_pairs(count: int = 20) -> list[tuple[str, str]]:
    """(short text, long text of one class's keywords repeated): the long one pads the short one and
    moves a per-tensor activation range."""
    rng = random.Random(0)
    return [(make_sentence(rng, t % 15)[:6], "".join(class_keywords()[(t + 3) % 15]) * 12) for t in range(count)]


@pytest.fixture(scope="module")
def int8_export(trained_run, tmp_path_factory):
    return export_model(
        trained_run.run_dir, tmp_path_factory.mktemp("int8") / "int8", ExportConfig(quantize="int8", policy=LOOSE)
    )


@pytest.fixture(scope="module")
def int8_dynamic_export(trained_run, tmp_path_factory):
    return export_model(
        trained_run.run_dir,
        tmp_path_factory.mktemp("int8-dynamic") / "int8-dynamic",
        ExportConfig(quantize="int8-dynamic", policy=LOOSE),
    )


# --------------------------------------------------------------------------- batch invariance


def test_per_token_int8_answers_do_not_depend_on_the_batch(int8_export):
    predictor = Predictor(int8_export.output)
    texts = mixed_texts()
    alone = predictor.logits(texts, batch_size=1)
    batched = predictor.logits(texts, batch_size=32)
    assert int(np.sum(alone.argmax(-1) != batched.argmax(-1))) == 0
    assert np.abs(_softmax(alone) - _softmax(batched)).max() <= 1e-5
    for short, long_ in crafted_pairs():
        together = predictor.logits([short, long_], batch_size=2)[0]
        assert np.abs(predictor.logits([short]) - together).max() <= 1e-6


def test_legacy_per_tensor_int8_answers_depend_on_the_batch(int8_dynamic_export):
    """The documented caveat of --quantize int8-dynamic: one activation scale per tensor per call, so a
    text's logits move when a long text (and its padding) joins its batch."""
    predictor = Predictor(int8_dynamic_export.output)
    moved = [
        np.abs(predictor.logits([short]) - predictor.logits([short, long_], batch_size=2)[0]).max()
        for short, long_ in crafted_pairs()
    ]
    assert max(moved) > 1e-3
    recorded = int8_dynamic_export.manifest["verification"]["batch_invariance"]
    assert recorded["max_abs_logit_diff"] > 0


# --------------------------------------------------------------------------- manifest


def test_manifests_record_the_scheme_and_batch_invariance(int8_export, int8_dynamic_export, exported):
    q = int8_export.manifest["quantization"]
    assert q["mode"] == "int8" and q["scheme"] == "per-token-symmetric" and q["batch_invariant"] is True
    assert q["matmuls_int8"] >= 12 and q["embeddings_int8"] >= 1 and q["kept_fp32"] == []
    assert q["target"] == "portable"
    legacy = int8_dynamic_export.manifest["quantization"]
    assert legacy["mode"] == "int8-dynamic" and legacy["batch_invariant"] is False
    for export in (int8_export, exported):  # every export records it; int8 and fp32 are invariant
        check = export.manifest["verification"]["batch_invariance"]
        assert check["batch_sizes"] == [1, 32]
        assert check["sentences"] == export.report.sentences  # the tiny run's 150 (capped at 500)
        assert check["label_changes"] == 0 and check["max_abs_prob_diff"] <= 1e-5
    on_disk = json.loads((int8_export.output / "manifest.json").read_text())
    assert on_disk["quantization"] == q


def test_per_tensor_weights_are_refused_for_per_token_int8():
    with pytest.raises(UserError, match="int8-dynamic only"):
        ExportConfig(quantize="int8", per_channel=False)
    ExportConfig(quantize="int8-dynamic", per_channel=False)


def test_legacy_int8_still_works_on_an_o2_graph(trained_run, tmp_path):
    # (per-token int8 + O2: tests/test_export.py::test_int8_and_optimised_exports_pass_with_tolerances)
    legacy = export_model(
        trained_run.run_dir,
        tmp_path / "int8-dynamic-o2",
        ExportConfig(quantize="int8-dynamic", optimize="O2", policy=LOOSE),
    )
    assert legacy.manifest["quantization"]["mode"] == "int8-dynamic"
    assert legacy.manifest["optimization"]["level"] == "O2"


# --------------------------------------------------------------------------- the rewrite


def _initializer_fed(model) -> list[str]:
    inits = {i.name for i in model.graph.initializer}
    return [
        n.name for n in model.graph.node if n.op_type in ("MatMul", "Gemm") and len(n.input) > 1 and n.input[1] in inits
    ]


def test_rewritten_graph_has_no_fp32_weight_matmul_and_stays_close_to_fp32(exported, tmp_path):
    import onnx

    fp32_dir = exported.output
    before = onnx.load(str(fp32_dir / "model.onnx"))
    weight_matmuls = _initializer_fed(before)
    assert len(weight_matmuls) >= 12  # 2 layers x 6, + pooler and classifier

    shutil.copytree(fp32_dir, tmp_path / "int8")
    (tmp_path / "int8" / "manifest.json").write_text(json.dumps({"max_length": exported.manifest["max_length"]}))
    summary = quantize_per_token(fp32_dir / "model.onnx", tmp_path / "int8" / "model.onnx")
    after = onnx.load(str(tmp_path / "int8" / "model.onnx"))
    assert _initializer_fed(after) == []
    assert summary.matmuls == len(weight_matmuls)
    tables = {i.name: i for i in after.graph.initializer}
    token_tables = [
        tables[n.input[0]]
        for n in after.graph.node
        if n.op_type == "Gather"
        and n.input[1] == "input_ids"
        and n.input[0] in tables
        and len(tables[n.input[0]].dims) == 2
    ]
    assert token_tables and all(t.data_type == onnx.TensorProto.INT8 for t in token_tables)  # + 1-D row scales

    texts = mixed_texts()
    reference = Predictor(fp32_dir).logits(texts)
    candidate = Predictor(tmp_path / "int8").logits(texts)
    # Symmetric int8 keeps ~1/254 of each row's (or column's) range per value; errors of the two operands
    # add per product and mostly average out over K. Through 2 layers that is ~1 % of the logit range
    # (0.6 % measured); 5 % of the largest |logit| is the bound, with the labels nearly all kept.
    assert np.abs(candidate - reference).max() <= 0.05 * np.abs(reference).max()
    assert np.mean(candidate.argmax(-1) == reference.argmax(-1)) >= 0.95


def test_excluded_nodes_stay_fp32(exported, tmp_path):
    import onnx

    head = [n for n in _initializer_fed(onnx.load(str(exported.output / "model.onnx"))) if "classifier" in n]
    summary = quantize_per_token(exported.output / "model.onnx", tmp_path / "model.onnx", exclude=head)
    assert summary.kept_fp32 == head
    assert _initializer_fed(onnx.load(str(tmp_path / "model.onnx"))) == head


def _tiny_graph(path):
    """x (batch, seq, 8) -> MatMul W1 (8, 6) + bias -> Gemm transB (pooled row 0) -> y."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((8, 6)).astype(np.float32)
    b1 = rng.standard_normal(6).astype(np.float32)
    w2 = rng.standard_normal((5, 6)).astype(np.float32)  # transB: (out, in)
    b2 = rng.standard_normal(5).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h0"], name="/dense/MatMul"),
        helper.make_node("Add", ["h0", "b1"], ["h"], name="/dense/Add"),
        helper.make_node("Gather", ["h", "zero"], ["pooled"], name="/pool/Gather", axis=1),
        helper.make_node("Gemm", ["pooled", "w2", "b2"], ["y"], name="/head/Gemm", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", 8])],
        [
            helper.make_tensor_value_info("h", TensorProto.FLOAT, ["batch", "seq", 6]),
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 5]),
        ],
        [
            numpy_helper.from_array(w1, "w1"),
            numpy_helper.from_array(b1, "b1"),
            numpy_helper.from_array(w2, "w2"),
            numpy_helper.from_array(b2, "b2"),
            numpy_helper.from_array(np.array(0, np.int64), "zero"),
        ],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return w1, b1, w2.T.copy(), b2


def _per_token_reference(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The scheme written out in numpy: per-row activation scales, per-column weight scales."""
    wq, w_scale = quantize_weight_per_column(w)
    amax = np.abs(x).max(axis=-1, keepdims=True)
    x_scale = np.maximum(amax, 1e-12).astype(np.float32) / np.float32(127)
    xq = np.clip(np.rint(x / x_scale), -127, 127)
    return (xq @ wq.astype(np.float64)) * w_scale * x_scale + b


def _session_in_form(path, kernels: str):
    """An onnxruntime session of the int8 model at `path`, its weights converted to `kernels` in memory."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(path))
    convert(model, kernels)
    assert read_form(model).form == kernels
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _exact_forms() -> list:
    """u8 x u8 everywhere; u8 x s8 only where this CPU computes it exactly (a skip says why elsewhere)."""
    reason = "this CPU has no VNNI: its u8 x s8 kernels saturate (see test_u8s8_kernels_saturate_exactly_where...)"
    return [U8U8, pytest.param(U8S8, marks=pytest.mark.skipif(not u8s8_is_exact(), reason=reason))]


@pytest.mark.parametrize("kernels", _exact_forms())
@pytest.mark.parametrize("weight_type", ["int8", "uint8"])
def test_per_token_arithmetic_matches_a_numpy_reference(tmp_path, weight_type, kernels):
    """Either weight form as written, run in each form this CPU computes exactly, is the scheme's arithmetic."""
    w1, b1, w2, b2 = _tiny_graph(tmp_path / "fp32.onnx")
    quantize_per_token(tmp_path / "fp32.onnx", tmp_path / "int8.onnx", weight_type=weight_type)
    session = _session_in_form(tmp_path / "int8.onnx", kernels)
    x = np.random.default_rng(1).standard_normal((3, 4, 8)).astype(np.float32)
    x[1, 2] *= 50.0  # one loud token: it must not change its neighbours' scales
    x[2, 3] = 0.0  # an all-zero row quantises to zeros, not NaN
    h, y = session.run(None, {"x": x})
    expected_h = _per_token_reference(x, w1, b1)
    np.testing.assert_allclose(h, expected_h, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(y, _per_token_reference(h[:, 0], w2, b2), rtol=1e-4, atol=1e-4)
    assert np.isfinite(h).all() and np.allclose(h[2, 3], b1)
    # each row depends on itself only: the rows computed alone give the same numbers
    for b in range(3):
        alone_h, _ = session.run(None, {"x": x[b : b + 1, 1:3]})
        np.testing.assert_array_equal(alone_h[0], h[b, 1:3])


def _saturating_graph(path, weight_type: str):
    """x (rows, 64) @ W (64, 4) per-token int8 where every activation and weight is at full scale: with
    u8 activations near 255 and int8 weights of 127, the pair sums of a non-VNNI u8 x s8 kernel (vpmaddubsw)
    exceed int16 and saturate."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.ones((64, 4), np.float32)
    w[:, 1] = -1.0
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="/dense/MatMul")],
        "saturating",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["rows", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["rows", 4])],
        [numpy_helper.from_array(w, "w")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path / "fp32.onnx"))
    quantize_per_token(path / "fp32.onnx", path / "int8.onnx", weight_type=weight_type)
    return w


def test_u8s8_kernels_saturate_exactly_where_the_cpu_check_says_so(tmp_path):
    """The CPU check that decides the runtime's weight form (`u8s8_is_exact`) agrees with what onnxruntime's
    kernels do here: u8 x s8 is exact on this CPU if and only if the check says so; u8 x u8 always is."""
    import onnxruntime as ort

    w = _saturating_graph(tmp_path, "int8")
    x = np.full((3, 64), 1.0, np.float32)
    x[1] = -1.0
    expected = x @ w
    raw = ort.InferenceSession(str(tmp_path / "int8.onnx"), providers=["CPUExecutionProvider"])
    assert read_form(__import__("onnx").load(str(tmp_path / "int8.onnx"))).form == U8S8
    as_written = raw.run(None, {"x": x})[0]
    portable = _session_in_form(tmp_path / "int8.onnx", U8U8).run(None, {"x": x})[0]
    np.testing.assert_allclose(portable, expected, rtol=1e-5)
    if u8s8_is_exact():
        np.testing.assert_allclose(as_written, expected, rtol=1e-5)
    else:  # what a CPU without VNNI does with int8 weights: the predictor must not run them as written
        assert np.abs(as_written - expected).max() > 1.0


def test_weight_forms_convert_both_ways_without_changing_a_number(tmp_path):
    import onnx
    from onnx import numpy_helper

    _tiny_graph(tmp_path / "fp32.onnx")
    quantize_per_token(tmp_path / "fp32.onnx", tmp_path / "s8.onnx", weight_type="int8")
    quantize_per_token(tmp_path / "fp32.onnx", tmp_path / "u8.onnx", weight_type="uint8")
    s8, u8 = onnx.load(str(tmp_path / "s8.onnx")), onnx.load(str(tmp_path / "u8.onnx"))
    assert read_form(s8).form == U8S8 and read_form(u8).form == U8U8
    assert convert(s8, U8U8) == 2 and read_form(s8).form == U8U8
    assert convert(s8, U8U8) == 0  # already in that form
    weights = {i.name: numpy_helper.to_array(i) for i in u8.graph.initializer if i.name.endswith("W_quantized")}
    converted = {i.name: numpy_helper.to_array(i) for i in s8.graph.initializer if i.name.endswith("W_quantized")}
    assert weights.keys() == converted.keys()
    for name, value in weights.items():
        assert converted[name].dtype == np.uint8 and np.array_equal(converted[name], value)
    assert convert(u8, U8S8) == 2 and read_form(u8).form == U8S8
    with pytest.raises(ValueError, match="u8s8"):
        convert(u8, "int4")


def test_the_predictor_runs_either_file_in_the_form_this_cpu_computes_exactly(trained_run, int8_export, tmp_path):
    """The exported file is portable (uint8 weights); an int8-weight file made for a VNNI fleet is converted at
    load on a CPU without VNNI. Forcing the other exact form gives the same answers (the manifest's record)."""
    q = int8_export.manifest["quantization"]
    assert q["target"] == "portable" and q["weights"].startswith("uint8") and q["exact_on"].startswith("every CPU")
    kernels = int8_export.manifest["verification"]["int8_kernels"]
    assert kernels["file"] == U8U8 and kernels["verified_with"] == ("u8s8" if u8s8_is_exact() else "u8u8")
    assert kernels["u8u8" if u8s8_is_exact() else "not_run_here"]
    machine = int8_export.manifest["verification"]["machine"]
    assert machine["u8s8_exact"] == u8s8_is_exact() and isinstance(machine["flags"], list)

    texts = mixed_texts()
    auto = Predictor(int8_export.output)
    assert auto.kernel_plan.used == (U8S8 if u8s8_is_exact() else U8U8) and auto.kernel_plan.exact
    portable = Predictor(int8_export.output, int8_kernels=U8U8)
    assert portable.kernel_plan.used == U8U8 and not portable.kernel_plan.changed
    reference = portable.logits(texts)
    np.testing.assert_allclose(auto.logits(texts), reference, atol=1e-5)

    vnni = export_model(
        trained_run.run_dir, tmp_path / "vnni", ExportConfig(quantize="int8", quantize_for="avx512_vnni", policy=LOOSE)
    )
    assert vnni.manifest["quantization"]["weights"].startswith("int8")
    served = Predictor(vnni.output)
    assert served.kernel_plan.exported == U8S8 and served.kernel_plan.exact
    assert served.kernel_plan.changed == (not u8s8_is_exact())
    as_portable = Predictor(vnni.output, int8_kernels=U8U8)
    assert as_portable.kernel_plan.changed
    np.testing.assert_allclose(served.logits(texts), as_portable.logits(texts), atol=1e-5)
    with pytest.raises(ValueError, match="int8_kernels"):
        Predictor(int8_export.output, int8_kernels="fast")


def test_fp32_exports_are_not_read_for_int8_weights(exported):
    plan = Predictor(exported.output).kernel_plan
    assert plan.used is None and not plan.changed
    assert exported.manifest["verification"]["int8_kernels"] is None

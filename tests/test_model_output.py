"""`Predictor.run`: every output of the model by name, rows in input order, with the encodings (`ModelOutput`)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from tnews_deploy.predictor import ModelOutput, Predictor

TEXTS = ["今天新闻", "国足备战世界杯预选赛，主教练公布了新一期的集训名单", "股市", "北京大学举行毕业典礼", "足球"]


@pytest.fixture(scope="module")
def two_more_outputs(exported, tmp_path_factory):
    """The export with two more outputs: the token ids (a token axis) and each text's token count (one value)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    folder = tmp_path_factory.mktemp("outputs") / "model"
    shutil.copytree(exported.output, folder)
    model = onnx.load(folder / "model.onnx")
    graph = model.graph
    graph.initializer.append(helper.make_tensor("token_axis", TensorProto.INT64, [1], [1]))
    graph.node.extend(
        [
            helper.make_node("Identity", ["input_ids"], ["token_ids"]),
            helper.make_node("ReduceSum", ["attention_mask", "token_axis"], ["token_count"], keepdims=0),
        ]
    )
    graph.output.extend(
        [
            helper.make_tensor_value_info("token_ids", TensorProto.INT64, ["batch_size", "sequence_length"]),
            helper.make_tensor_value_info("token_count", TensorProto.INT64, ["batch_size"]),
        ]
    )
    onnx.save(model, folder / "model.onnx")
    return Predictor(folder, threads=1, verify_checksum=False)  # the file changed on purpose


def test_run_gives_the_logits_and_the_encodings_in_input_order(exported):
    predictor = Predictor(exported.output, threads=1, batch_size=2)
    output = predictor.run(TEXTS)

    assert isinstance(output, ModelOutput)
    assert list(output.outputs) == [o.name for o in predictor.session.get_outputs()]
    np.testing.assert_array_equal(output.logits, predictor.logits(TEXTS))
    np.testing.assert_allclose(output.logits, predictor.logits(TEXTS, batch_size=len(TEXTS)), atol=1e-5)
    assert [e.ids for e in output.encodings] == [e.ids for e in predictor.encode(TEXTS)]
    assert predictor.run(TEXTS[1]).logits.shape == (1, len(predictor.labels))  # a str is one text
    with pytest.raises(ValueError, match="batch_size"):
        predictor.run(TEXTS, batch_size=0)


def test_every_output_comes_back_in_input_order_token_axes_padded(two_more_outputs):
    predictor = two_more_outputs
    output = predictor.run(TEXTS, batch_size=2)  # length buckets: the texts run out of order, in 3 calls

    assert list(output.outputs) == ["logits", "token_ids", "token_count"]
    lengths = [len(e.ids) for e in output.encodings]
    assert output.outputs["token_count"].tolist() == lengths
    token_ids = output.outputs["token_ids"]
    assert token_ids.shape == (len(TEXTS), max(lengths))
    for row, encoding in zip(token_ids, output.encodings):
        assert row[: len(encoding.ids)].tolist() == encoding.ids
        assert not row[len(encoding.ids) :].any()  # padding beyond the text: zeros
    np.testing.assert_array_equal(output.logits, predictor.logits(TEXTS, batch_size=2))
    assert [p.label for p in predictor.predict(TEXTS)] == [predictor.labels[i] for i in output.logits.argmax(-1)]


def test_a_call_without_texts_gives_every_output_with_no_rows(two_more_outputs):
    output = two_more_outputs.run([])

    assert output.encodings == ()
    assert {name: (a.shape, a.dtype) for name, a in output.outputs.items()} == {
        "logits": ((0, len(two_more_outputs.labels)), np.float32),
        "token_ids": ((0, 0), np.int64),
        "token_count": ((0,), np.int64),
    }
    assert two_more_outputs.predict_proba([]).shape == (0, len(two_more_outputs.labels))

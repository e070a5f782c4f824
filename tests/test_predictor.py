"""The runtime predictor: parity with PyTorch, no-torch import, input contract, load errors, threads."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from synthetic import make_rows
from tnews_deploy import ModelLoadError, Prediction, Predictor


@pytest.fixture(scope="module")
def predictor(exported):
    return Predictor(exported.output)


@pytest.fixture(scope="module")
def texts():
    return [r["sentence"] for r in make_rows(8, seed=11)]  # 120 sentences of mixed lengths


def test_predictions_equal_pytorch_argmax(predictor, trained_run, texts):
    from tnews_deploy.export.verify import pytorch_logits

    reference = pytorch_logits(trained_run.checkpoint, texts, predictor.max_length)
    predicted = [p.label_id for p in predictor.predict(texts)]
    assert predicted == reference.argmax(-1).tolist()
    np.testing.assert_allclose(predictor.logits(texts), reference, atol=1e-4)


def test_bucketing_keeps_input_order(exported, texts):
    bucketed = Predictor(exported.output, batch_size=16).logits(texts)
    one_by_one = np.stack([Predictor(exported.output, batch_size=1).logits(t) for t in texts[:20]])
    np.testing.assert_allclose(bucketed[:20], one_by_one, atol=1e-4)
    reversed_logits = Predictor(exported.output, batch_size=16).logits(texts[::-1])
    np.testing.assert_allclose(reversed_logits[::-1], bucketed, atol=1e-5)


def test_result_shapes(predictor, texts):
    single = predictor.predict(texts[0])
    assert isinstance(single, Prediction) and single.label in predictor.labels
    assert predictor.labels[single.label_id] == single.label and 0 < single.score <= 1
    top3 = predictor.predict(texts[:4], top_k=3)
    assert len(top3) == 4 and all(len(r) == 3 for r in top3)
    assert all(r[0].score >= r[1].score >= r[2].score for r in top3)
    assert [r[0] for r in top3] == predictor.predict(texts[:4])
    proba = predictor.predict_proba(texts[:5])
    assert proba.shape == (5, 15)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    assert predictor.predict_proba(texts[0]).shape == (15,)
    assert predictor.predict([]) == [] and predictor.predict_proba([]).shape == (0, 15)
    assert predictor.predict(tuple(texts[:2])) == predictor.predict(texts[:2])


def test_no_torch_or_transformers_imported(exported):
    code = textwrap.dedent(f"""
        import sys
        from tnews_deploy import Predictor
        p = Predictor({str(exported.output)!r})
        print(p.predict(["\\u9f00的人", "今天"])[0].label)
        heavy = [m for m in ("torch", "transformers", "datasets", "optimum") if m in sys.modules]
        assert not heavy, heavy
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith("news_")


@pytest.mark.parametrize(
    "bad, message",
    [
        (None, "got NoneType"),
        (42, "got int"),
        ({"text": "a"}, "got dict"),
        (["ok", None, "fine", 3], r"position\(s\) 1 \(NoneType\), 3 \(int\)"),
        (["ok", ["nested"]], r"position\(s\) 1 \(list\)"),
        ([b"bytes"], r"position\(s\) 0 \(bytes\)"),
    ],
)
def test_type_errors_name_positions(predictor, bad, message):
    with pytest.raises(TypeError, match=message):
        predictor.predict(bad)


def test_empty_texts_name_positions(predictor):
    with pytest.raises(ValueError, match=r"position\(s\) 1, 2"):
        predictor.predict(["新闻", "", " \t\n"])
    with pytest.raises(ValueError, match=r"position\(s\) 0"):
        predictor.predict_proba("   ")
    with pytest.raises(ValueError, match="top_k"):
        predictor.predict("新闻", top_k=0)


def test_lone_surrogate_is_an_invalid_text_not_a_tokenizer_crash(predictor):
    with pytest.raises(ValueError, match=r"surrogate.*position\(s\) 1"):
        predictor.predict(["新闻", "\ud800abc"])
    with pytest.raises(ValueError, match="surrogate"):
        predictor.logits("\udfff")


def test_training_folder_is_named_as_such(trained_run):
    with pytest.raises(ModelLoadError, match=r"training run.*not an exported model.*tnews-deploy export"):
        Predictor(trained_run.run_dir)
    with pytest.raises(ModelLoadError, match="training run"):
        Predictor(trained_run.checkpoint)


@pytest.mark.parametrize("size", [0, -1, 2.5, True])
def test_bad_batch_size_is_a_value_error(exported, size):
    with pytest.raises(ValueError, match="batch_size"):
        Predictor(exported.output, batch_size=size)


def test_overlong_and_unusual_texts_are_predicted(predictor):
    texts = ["长" * 100_000, "emoji 😀🚀 mixed English 和中文", "繁體中文新聞標題", "tab\tand\x00control\x07chars"]
    results = predictor.predict(texts)
    assert len(results) == 4 and all(isinstance(r, Prediction) for r in results)
    assert predictor.tokenizer.encode(texts[0]).ids.__len__() == predictor.max_length  # truncated


def _copy(exported, tmp_path) -> Path:
    target = tmp_path / "model"
    shutil.copytree(exported.output, target)
    return target


def test_load_errors_name_the_file(exported, tmp_path):
    with pytest.raises(ModelLoadError, match="no such model folder"):
        Predictor(tmp_path / "nothing")

    folder = _copy(exported, tmp_path)
    (folder / "model.onnx").unlink()
    with pytest.raises(ModelLoadError, match=r"model.onnx: missing"):
        Predictor(folder)


def test_truncated_model_is_refused(exported, tmp_path):
    folder = _copy(exported, tmp_path)
    data = (folder / "model.onnx").read_bytes()
    (folder / "model.onnx").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="sha256 differs"):
        Predictor(folder)
    with pytest.raises(ModelLoadError, match="corrupt or truncated"):
        Predictor(folder, verify_checksum=False)


def test_corrupt_model_without_manifest_is_refused(exported, tmp_path):
    folder = _copy(exported, tmp_path)
    (folder / "manifest.json").unlink()
    (folder / "model.onnx").write_bytes(b"\x00garbage" * 100)
    with pytest.raises(ModelLoadError, match="model.onnx: onnxruntime cannot load it"):
        Predictor(folder)


def test_missing_tokenizer_and_label_mismatch(exported, tmp_path):
    folder = _copy(exported, tmp_path)
    (folder / "tokenizer.json").unlink()
    with pytest.raises(ModelLoadError, match=r"tokenizer.json: missing"):
        Predictor(folder)

    folder = _copy(exported, tmp_path / "labels")
    config = json.loads((folder / "config.json").read_text())
    config["id2label"] = {str(i): f"c{i}" for i in range(14)}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="14 labels, but model.onnx outputs 15"):
        Predictor(folder, verify_checksum=False)  # with it, config.json's sha256 already refuses the edit

    folder = _copy(exported, tmp_path / "vocab")
    config = json.loads((folder / "config.json").read_text())
    config["vocab_size"] = 10
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="do not belong together"):
        Predictor(folder, verify_checksum=False)  # with it, config.json's sha256 already refuses the edit


def test_concurrent_calls_match_serial(predictor, texts):
    batches = [texts[i % 7 : i % 7 + 1 + (i % 13)] for i in range(60)]
    serial = [predictor.predict(b) for b in batches]
    with ThreadPoolExecutor(max_workers=8) as pool:
        for _ in range(8):
            concurrent = list(pool.map(predictor.predict, batches))
            assert concurrent == serial

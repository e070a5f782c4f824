"""The model in the box (#22): the export shipped in `tnews_deploy/default_model/` is a real TNEWS classifier.

What a user gets from `pip install tnews-deploy` and `Predictor()` with no model folder: the three titles of the
README land in their classes, the shipped files match their manifest, and (with ../shared) the model scores what
docs/model.md says on validation titles it never saw in training or selection (the student was distilled on the
train split only; no validation title chose its tokens or stopped its training).
"""

from __future__ import annotations

import json

import pytest

from conftest import SHARED_TNEWS, requires_shared_tnews
from tnews_deploy.models import BUNDLED_MODEL_DIR, BUNDLED_MODEL_NAME
from tnews_deploy.predictor import Predictor

MAX_FOLDER_BYTES = 20_000_000  # the "≤ 20 MB" for the folder shipped in the wheel


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    assert BUNDLED_MODEL_DIR.is_dir(), f"{BUNDLED_MODEL_DIR}: the bundled model is missing from this checkout"
    return Predictor("default", threads=2)


def test_the_bundled_model_is_a_small_released_tnews_export(predictor):
    size = sum(p.stat().st_size for p in BUNDLED_MODEL_DIR.iterdir() if p.is_file())
    assert size <= MAX_FOLDER_BYTES, f"{size:,} bytes"
    assert predictor.model_name == BUNDLED_MODEL_NAME
    assert predictor.model_version
    assert len(predictor.labels) == 15 and "news_edu" in predictor.labels


@pytest.mark.parametrize(
    "title, label",
    [
        ("北京大学举行毕业典礼", "news_edu"),
        ("国足备战世界杯预选赛", "news_sports"),
        ("特斯拉发布新款电动车", "news_car"),
    ],
)
def test_readme_titles_land_in_their_classes(predictor, title, label):
    assert predictor.predict(title).label == label


def test_batch_one_and_batch_32_give_the_same_answers(predictor):
    titles = [
        "北京大学举行毕业典礼",
        "国足备战世界杯预选赛",
        "特斯拉发布新款电动车",
        "央行宣布降准0.5个百分点，释放长期资金约1万亿元",
        "这部电影上映三天票房破十亿，观众怎么看？",
        "新款手机发布：骁龙芯片，售价2999元",
        "美国总统访问日本，双方讨论贸易问题",
        "如何评价今年的高考作文题目？",
    ] * 5
    one = predictor.logits(titles, batch_size=1)
    many = predictor.logits(titles, batch_size=32)
    assert (one.argmax(axis=1) == many.argmax(axis=1)).all()
    assert (one == many).all()  # per-token int8: not one bit depends on the batch


@requires_shared_tnews()
@pytest.mark.shared
def test_accuracy_on_the_10000_validation_titles(predictor):
    """All of them (none chose a token, a checkpoint or a stopping step): a 2,000-title draw has a 95 % interval
    of about ±0.022, wider than the distance between this model and the bar."""
    lines = (SHARED_TNEWS / "hf" / "validation.jsonl").read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines]
    assert len(rows) == 10_000
    predicted = predictor.predict([r["sentence"] for r in rows])
    accuracy = sum(p.label_id == int(r["label"]) for p, r in zip(predicted, rows)) / len(rows)
    assert accuracy >= 0.54, f"accuracy {accuracy:.4f} on the 10,000 validation titles"

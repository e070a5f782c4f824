"""Loading, subsets and length statistics."""

from __future__ import annotations

import pytest

from conftest import SHARED_TNEWS, requires_shared_tnews
from tnews_deploy.data import SplitConfig, load_tnews, make_splits, suggest_max_length
from tnews_deploy.datasource import DataSource
from tnews_deploy.errors import ConfigError, DataError
from tnews_deploy.labels import TNEWS_LABEL_NAMES


def _as_rows(dsd, split):
    return list(zip(list(dsd[split]["sentence"]), list(dsd[split]["label"])))


def test_three_local_layouts_agree(hf_data, clue_data, clue_tsv_data, synthetic_rows):
    hf, clue, tsv = load_tnews(hf_data), load_tnews(clue_data), load_tnews(clue_tsv_data)
    for dsd in (hf, clue, tsv):
        assert list(dsd["train"].features["label"].names) == list(TNEWS_LABEL_NAMES)
        assert set(dsd) == {"train", "validation", "test"}
    for split in ("train", "validation"):
        expected = [(r["sentence"], r["label"]) for r in synthetic_rows[split]]
        assert _as_rows(hf, split) == expected
        assert _as_rows(clue, split) == expected
        assert _as_rows(tsv, split) == expected
    assert set(hf["test"]["label"]) == {-1} == set(clue["test"]["label"])
    assert list(hf["test"]["sentence"]) == list(clue["test"]["sentence"])


def test_missing_or_unknown_data_path_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="no such file or folder"):
        load_tnews(tmp_path / "nope")
    (tmp_path / "readme.txt").write_text("hi")
    with pytest.raises(DataError, match="no data files"):
        load_tnews(tmp_path)


def test_bad_jsonl_line_names_file_and_line(tmp_path):
    (tmp_path / "train.jsonl").write_text('{"idx": 0, "label": 1, "sentence": "a"}\n{oops\n')
    (tmp_path / "validation.jsonl").write_text('{"idx": 0, "label": 1, "sentence": "a"}\n')
    with pytest.raises(DataError, match=r"train.jsonl:2: invalid JSON"):
        load_tnews(tmp_path)


def test_label_out_of_range_is_rejected(tmp_path):
    (tmp_path / "train.jsonl").write_text(
        '{"idx": 0, "label": 1, "sentence": "a"}\n{"idx": 1, "label": 15, "sentence": "b"}\n'
    )
    (tmp_path / "validation.jsonl").write_text('{"idx": 0, "label": 1, "sentence": "a"}\n')
    (tmp_path / "names.txt").write_text("\n".join(TNEWS_LABEL_NAMES) + "\n")
    with pytest.raises(DataError, match=r"train.jsonl:2: label 15 is not in the names file .*names.txt.*0\.\.14"):
        load_tnews(DataSource(str(tmp_path), labels=str(tmp_path / "names.txt")))


def test_subsets_are_seeded_sized_and_disjoint(hf_data):
    dsd = load_tnews(hf_data)
    config = SplitConfig(train_sizes=(30, 60, 150), eval_size=120, selection_size=90, seed=7)
    a, b = make_splits(dsd, config), make_splits(dsd, config)
    other = make_splits(dsd, SplitConfig(train_sizes=(30, 60, 150), eval_size=120, selection_size=90, seed=8))
    assert {n: len(ds) for n, ds in a.train.items()} == {30: 30, 60: 60, 150: 150}
    assert len(a.evaluation) == 120 and len(a.selection) == 90
    assert list(a.train[60]["idx"]) == list(b.train[60]["idx"])
    assert list(a.evaluation["idx"]) == list(b.evaluation["idx"])
    assert list(a.train[60]["idx"]) != list(other.train[60]["idx"])
    assert not set(list(a.evaluation["idx"])) & set(list(a.selection["idx"]))
    # no training sentence is also an evaluation sentence
    assert not set(list(a.train[150]["sentence"])) & set(list(a.evaluation["sentence"]))


def test_stratified_subset_keeps_class_balance(hf_data):
    dsd = load_tnews(hf_data)
    splits = make_splits(dsd, SplitConfig(train_sizes=(150,), eval_size=150, selection_size=60))
    counts = {label: list(splits.train[150]["label"]).count(label) for label in range(15)}
    assert set(counts.values()) == {10}  # 40 per class in train -> exactly 10 each
    assert {list(splits.evaluation["label"]).count(label) for label in range(15)} == {10}


def test_sizes_that_do_not_fit_are_rejected(hf_data):
    dsd = load_tnews(hf_data)
    with pytest.raises(ConfigError, match="larger than the"):
        make_splits(dsd, SplitConfig(train_sizes=(10_000,), eval_size=100, selection_size=50))
    with pytest.raises(ConfigError, match="exceed the 300 validation"):
        make_splits(dsd, SplitConfig(train_sizes=(10,), eval_size=250, selection_size=100))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(train_sizes=(100, 0)), "--train-size must be positive (got 0)"),
        (dict(eval_size=0), "--eval-size must be positive (got 0)"),
        (dict(selection_size=-1), "--selection-size must be >= 0 (got -1)"),
    ],
)
def test_split_config_validates_itself(kwargs, message):
    with pytest.raises(ConfigError) as info:
        SplitConfig(**kwargs)
    assert message in str(info.value)


def test_suggest_max_length_covers_percentile_in_multiples_of_8():
    lengths = list(range(1, 101))  # p99 = 99.01
    assert suggest_max_length(lengths) == 104
    assert suggest_max_length([3, 4, 5]) == 8


def test_length_stats_and_histogram(hf_data, tiny_model, tmp_path):
    from transformers import AutoTokenizer

    from tnews_deploy.data import length_stats, plot_length_histograms

    dsd = load_tnews(hf_data)
    stats = length_stats(dsd, AutoTokenizer.from_pretrained(tiny_model))
    # one token per character plus [CLS] and [SEP]
    assert [t - 2 for t in stats.token_lengths] == stats.char_lengths
    assert stats.suggested_max_length >= stats.token_percentiles["p99"]
    assert sum(stats.class_counts["train"].values()) == len(dsd["train"])
    assert stats.class_counts["test"]["(unlabelled)"] == len(dsd["test"])
    png = plot_length_histograms(stats, tmp_path / "lengths.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@requires_shared_tnews()
def test_real_tnews_hf_and_clue_folders_agree():
    hf, clue = load_tnews(SHARED_TNEWS / "hf"), load_tnews(SHARED_TNEWS / "clue")
    assert {k: len(v) for k, v in hf.items()} == {"train": 53360, "validation": 10000, "test": 10000}
    assert {k: len(v) for k, v in clue.items()} == {k: len(v) for k, v in hf.items()}
    assert list(clue["train"].features["label"].names) == list(TNEWS_LABEL_NAMES)
    for split in ("train", "validation"):
        assert list(hf[split]["label"]) == list(clue[split]["label"])
        assert list(hf[split]["sentence"]) == list(clue[split]["sentence"])
    assert list(hf["test"]["sentence"]) == list(clue["test"]["sentence"])
    splits = make_splits(hf)
    assert {n: len(d) for n, d in splits.train.items()} == {500: 500, 1000: 1000, 5000: 5000}
    assert len(splits.evaluation) == 2000
    assert not set(list(splits.evaluation["idx"])) & set(list(splits.selection["idx"]))

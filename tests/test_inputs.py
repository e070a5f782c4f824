"""The input contract in isolation: text validation, file reading, length bucketing (no model needed)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from tnews_deploy.errors import DataError
from tnews_deploy.inputs import guess_format, invalid_positions, read_records, records_from_texts, validate_texts
from tnews_deploy.predictor import length_batches

LONE_SURROGATE = "\ud800abc"


def _records(text: str, name: str = "in.jsonl", fmt: str = "auto"):
    return list(read_records(io.BytesIO(text.encode("utf-8", "surrogatepass")), name, fmt))


def test_validate_texts_accepts_str_list_tuple():
    assert validate_texts("新闻") == (["新闻"], True)
    assert validate_texts(["a", "b"]) == (["a", "b"], False)
    assert validate_texts(("a",)) == (["a"], False)
    assert validate_texts([]) == ([], False)


def test_lone_surrogates_are_invalid_texts_with_positions():
    with pytest.raises(ValueError, match=r"surrogate.*position\(s\) 1, 3"):
        validate_texts(["ok", LONE_SURROGATE, "fine", "x\udfffy"])
    with pytest.raises(ValueError, match=r"position\(s\) 0"):
        validate_texts(LONE_SURROGATE)
    # a proper surrogate *pair* written as one code point is fine
    assert validate_texts(["😀 emoji"])[0] == ["😀 emoji"]


def test_invalid_positions_by_reason():
    bad = invalid_positions(["ok", "", None, LONE_SURROGATE, " \t", 3])
    assert (bad.not_strings, bad.empty, bad.surrogates) == ([2, 5], [1, 4], [3])
    assert not invalid_positions(["a", "b"])


def test_jsonl_lines_with_surrogates_and_deep_nesting_are_error_records():
    lines = [
        json.dumps({"sentence": "好的新闻"}),
        '{"sentence": "\\ud800abc"}',  # valid JSON, not valid Unicode text
        "[" * 100_000 + "]" * 100_000,
        json.dumps({"text": "另一条"}),
    ]
    records = _records("\n".join(lines) + "\n")
    assert [r.line for r in records] == [1, 2, 3, 4]
    assert records[0].text == "好的新闻" and records[3].text == "另一条"
    assert "surrogate" in records[1].error and records[1].text is None
    assert "nested too deeply" in records[2].error


def test_arguments_with_undecodable_bytes_are_error_records():
    # click/Python hand arguments that were not UTF-8 over as lone surrogates (surrogateescape)
    records = records_from_texts(["新闻", b"\xff\xfe".decode("utf-8", "surrogateescape"), " "])
    assert records[0].text == "新闻"
    assert "argument 2" in records[1].error and "surrogate" in records[1].error
    assert "argument 3: empty text" == records[2].error


def test_format_from_name_and_unsupported_suffix():
    assert guess_format("a.jsonl", None) == "jsonl" and guess_format("A.TXT", None) == "txt"
    assert guess_format("-", b'{"text": "x"}') == "jsonl" and guess_format("-", "新闻".encode()) == "txt"
    assert guess_format("notes", b"plain") == "txt"
    with pytest.raises(DataError, match=r"\.csv.*--input-format"):
        guess_format("titles.csv", b"id,text")
    with pytest.raises(DataError):
        _records("id,text\n1,新闻\n", name="titles.csv")
    assert [r.text for r in _records("id,text\n", name="titles.csv", fmt="txt")] == ["id,text"]


def test_txt_lines_keep_their_numbers_and_errors():
    records = _records("第一\n\n第三\r\n", name="in.txt")
    assert [(r.line, r.text, r.error is not None) for r in records] == [
        (1, "第一", False),
        (2, None, True),
        (3, "第三", False),
    ]


@pytest.mark.parametrize("size", [1, 3, 32])
def test_length_batches_sort_cover_and_keep_ties_in_order(size):
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 10, size=50)
    batches = length_batches(lengths, size)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(50))  # every text exactly once
    assert all(len(b) == size for b in batches[:-1]) and 1 <= len(batches[-1]) <= size
    assert np.all(np.diff(lengths[flat]) >= 0)  # non-decreasing length
    for length in set(lengths.tolist()):  # stable: equal lengths stay in input order
        same = [i for i in flat.tolist() if lengths[i] == length]
        assert same == sorted(same)
    assert length_batches(np.array([], dtype=np.int64), 4) == []

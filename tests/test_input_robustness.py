"""Inputs that once broke `predict --input`/stdin and `score`: a JSON integer past Python's digit limit, very long
texts (tokenised only as far as the kept tokens need, with the same predictions; a CSV cell longer than the
parser's block), files that start with a UTF-8 byte-order mark, and the staging folder a killed `score` left."""

from __future__ import annotations

import json
import random
import signal
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from scoring_inputs import scoring_job
from synthetic import FILLER, make_sentence
from tnews_deploy.cli import main
from tnews_deploy.predictor import Predictor
from tnews_deploy.scoring.io import InputFile, read_chunks

ROOT = Path(__file__).resolve().parents[1]
BOM = "\ufeff"
HUGE_INT = "9" * 5000  # past Python's 4,300-digit limit for int("...")


@pytest.fixture(scope="module")
def model_dir(exported) -> Path:
    return exported.output


@pytest.fixture(scope="module")
def predictor(model_dir) -> Predictor:
    return Predictor(model_dir, threads=1)


def sentences(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [make_sentence(rng, rng.randrange(15)) for _ in range(n)]


def invoke(*args: str, input: bytes | None = None):
    return CliRunner().invoke(main, list(args), input=input)


def predicted_lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


# --------------------------------------------------------------------------- a JSON integer of 5,000 digits


def huge_int_jsonl() -> bytes:
    good = sentences(2)
    return (
        "\n".join(
            [
                json.dumps({"text": good[0]}, ensure_ascii=False),
                '{"idx": ' + HUGE_INT + ', "text": "数字太长的一行"}',
                json.dumps({"text": good[1]}, ensure_ascii=False),
            ]
        ).encode()
        + b"\n"
    )


def test_predict_reports_a_huge_json_integer_as_that_lines_error(model_dir, tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_bytes(huge_int_jsonl())
    for args, stdin in ((["--input", str(source)], None), (["--input", "-"], huge_int_jsonl()), ([], huge_int_jsonl())):
        result = invoke("predict", str(model_dir), *args, "--format", "jsonl", input=stdin)
        assert result.exit_code == 1, result.output
        rows = predicted_lines(result.output)
        assert [r["line"] for r in rows] == [1, 2, 3]
        assert "label" in rows[0] and "label" in rows[2]
        assert "digits" in rows[1]["error"] and rows[1]["error"].startswith("line 2:")
        assert "1 of 3 input(s) failed" in result.output


def test_score_reports_a_huge_json_integer_as_that_rows_error(model_dir, tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_bytes(huge_int_jsonl())
    out = tmp_path / "out"
    result = invoke("score", str(model_dir), str(source), "--output", str(out), "--threads", "1")
    assert result.exit_code == 1, result.output
    rows = pq.read_table(out).to_pylist()
    assert [r["id"] for r in rows] == ["1", "2", "3"]
    assert rows[0]["label"] and rows[2]["label"] and rows[1]["label"] is None
    assert "digits" in rows[1]["error"]


# --------------------------------------------------------------------------- very long texts


class RecordingTokenizer:
    """The predictor's real tokenizer, noting how many characters each text handed to it had."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.lengths: list[int] = []

    def encode_batch(self, texts, **kwargs):
        self.lengths.extend(len(t) for t in texts)
        return self.inner.encode_batch(texts, **kwargs)

    def encode(self, text, **kwargs):
        self.lengths.append(len(text))
        return self.inner.encode(text, **kwargs)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def long_texts(chars: int) -> list[str]:
    """Long texts of several shapes: Chinese news text, spaced text with punctuation, one with a long word."""
    rng = random.Random(7)
    chinese = "，".join(sentences(chars // 10 + 1, 3))[:chars]
    words = ["新闻", "abc", "国足!", "世界杯", "x" * 30, "第三"]
    spaced = " ".join(rng.choice(words) for _ in range(chars // 4))[:chars]
    word = "体育" + "y" * 150 + "新闻" * (chars // 2)
    return [chinese, spaced, word[:chars]]


def test_long_texts_are_tokenised_only_as_far_as_the_kept_tokens_need(model_dir):
    predictor = Predictor(model_dir, threads=1)
    texts = long_texts(200_000)
    full = predictor.tokenizer.encode_batch(texts, add_special_tokens=True)  # the whole texts, truncated
    spy = predictor.tokenizer = RecordingTokenizer(predictor.tokenizer)
    probabilities = predictor.predict_proba(texts)

    assert spy.lengths and max(spy.lengths) <= predictor.max_length * 64  # never the 200,000 characters
    assert [e.ids for e in predictor.encode(texts)] == [e.ids for e in full]
    np.testing.assert_array_equal(probabilities, predictor._softmax(predictor._run(full).logits))


def unigram_tokenizer(max_length: int):
    """A small SentencePiece-style (Unigram, Metaspace, NFKC) tokenizer trained here, like XLM-R/e5's."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import Unigram
    from tokenizers.trainers import UnigramTrainer

    tokenizer = Tokenizer(Unigram())
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    corpus = sentences(400, 11) + ["the classifier reads news titles", "国足备战世界杯预选赛 football"]
    tokenizer.train_from_iterator(corpus, UnigramTrainer(vocab_size=1000, unk_token="<unk>", special_tokens=["<unk>"]))
    tokenizer.enable_truncation(max_length=max_length)
    return tokenizer


def tricky_texts(rng: random.Random, count: int, low: int, high: int) -> list[str]:
    """Random texts mixing the things a cut could break: spaces, punctuation, combining and expanding
    characters (NFKC), zero-width and unknown characters, long runs of one letter."""
    pieces = list(FILLER[:40]) + [
        " ",
        "  ",
        "，",
        "!",
        "e\u0301",
        "\u0301",
        "ﬁ",
        "㍻",
        "\u200b",
        "\t",
        "☃",
        "abc",
        "x" * 20,
        "新闻 ",
    ]
    alphabets = [pieces, list(FILLER[:40]), list(FILLER[:40]) + [" "], ["x", "y"], ["x", "y", " "]]
    texts = []
    for _ in range(count):
        alphabet = rng.choice(alphabets)
        size = rng.randint(low, high)
        text = ""
        while len(text) < size:
            text += rng.choice(alphabet)
        texts.append(text)
    return texts


@pytest.mark.parametrize("kind", ["wordpiece", "unigram"])
def test_cut_texts_keep_exactly_the_tokens_of_the_whole_texts(model_dir, kind):
    from tokenizers import Tokenizer

    from tnews_deploy.longtext import LongTextEncoder

    rng = random.Random(5)
    for max_length in (8, 32):
        if kind == "wordpiece":  # the exported tiny BERT's own tokenizer
            tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
            tokenizer.no_padding()
            tokenizer.enable_truncation(max_length=max_length)
        else:
            tokenizer = unigram_tokenizer(max_length)
        for chars_per_token in (1, 2, 4):  # small cuts: they fall next to every kind of boundary
            spy = RecordingTokenizer(tokenizer)
            encoder = LongTextEncoder(spy, max_length, chars_per_token)
            texts = tricky_texts(rng, 150, max_length * chars_per_token + 1, max_length * chars_per_token * 4)
            got = encoder.encode(texts)
            want = tokenizer.encode_batch(texts, add_special_tokens=True)
            for text, g, w in zip(texts, got, want):
                assert (g.ids, g.offsets) == (w.ids, w.offsets), (max_length, chars_per_token, text)
            if chars_per_token > 1:  # (one character per token rarely holds more than max_length tokens)
                assert sum(1 for t in texts if len(t) in spy.lengths) < len(texts)  # some were settled by the cut
        spy = RecordingTokenizer(tokenizer)
        real = ["，".join(sentences(2000, max_length)), " ".join(sentences(2000, max_length + 1))]
        assert [e.ids for e in LongTextEncoder(spy, max_length).encode(real)] == [
            e.ids for e in tokenizer.encode_batch(real, add_special_tokens=True)
        ]
        assert max(spy.lengths) < min(map(len, real))  # real text: never tokenised whole


def test_a_csv_cell_longer_than_the_parsers_block_is_read(tmp_path):
    from tnews_deploy.scoring import io as scoring_io

    block = getattr(scoring_io, "CSV_BLOCK_SIZE", 1 << 20)
    small = sentences(3000, 2)  # more than one block before the long cell, so reading has started
    long_text = "长" * (block // 2)  # 1.5 blocks of UTF-8
    while sum(len(s.encode()) + 8 for s in small) < 1.5 * block:
        small += small
    rows = [(str(i), s) for i, s in enumerate(small, 1)]
    rows.insert(len(rows) - 3, ("long", long_text))
    path = tmp_path / "titles.csv"
    path.write_text("id,text\n" + "".join(f'{i},"{t}"\n' for i, t in rows), encoding="utf-8")

    read = [table for table in read_chunks(InputFile(path, "csv"), None, 1000)]
    ids = [i for table in read for i in table.column("id").to_pylist()]
    texts = [t for table in read for t in table.column("text").to_pylist()]
    assert ids == [i for i, _ in rows]  # every row once, in order, after the re-read
    assert texts[ids.index("long")] == long_text
    assert all(e is None for table in read for e in table.column("error").to_pylist())


def test_score_scores_a_csv_with_a_long_cell_like_the_predictor(model_dir, predictor, tmp_path):
    long_text = "，".join(sentences(200_000, 4))  # several MB
    short = sentences(2, 5)
    path = tmp_path / "titles.csv"
    path.write_text(f'id,text\na,{short[0]}\nb,"{long_text}"\nc,{short[1]}\n', encoding="utf-8")
    out = tmp_path / "out"
    result = invoke("score", str(model_dir), str(path), "--output", str(out), "--threads", "1")
    assert result.exit_code == 0, result.output
    rows = pq.read_table(out).to_pylist()
    assert [r["id"] for r in rows] == ["a", "b", "c"] and all(r["error"] is None for r in rows)
    expected = predictor.predict([short[0], long_text, short[1]])
    assert [r["label"] for r in rows] == [p.label for p in expected]


# --------------------------------------------------------------------------- a UTF-8 byte-order mark


@pytest.mark.parametrize("columns", ["text,id", "id,text"])
def test_score_reads_a_csv_saved_by_excel(model_dir, tmp_path, columns):
    texts = sentences(3, 6)
    lines = [columns] + [",".join([t, f"r{i}"] if columns == "text,id" else [f"r{i}", t]) for i, t in enumerate(texts)]
    path = tmp_path / "excel.csv"
    path.write_text(BOM + "\r\n".join(lines) + "\r\n", encoding="utf-8")
    for extra in ([], ["--text-field", "text"]):
        out = tmp_path / f"out{len(extra)}"
        result = invoke("score", str(model_dir), str(path), "--output", str(out), "--threads", "1", *extra)
        assert result.exit_code == 0, result.output
        rows = pq.read_table(out).to_pylist()
        assert [r["id"] for r in rows] == ["r0", "r1", "r2"] and all(r["error"] is None for r in rows)


@pytest.mark.parametrize("suffix", [".jsonl", ".txt", ".csv"])
def test_reading_drops_the_byte_order_mark(tmp_path, suffix):
    texts = sentences(3, 8)
    body = {
        ".jsonl": "".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts),
        ".txt": "".join(t + "\n" for t in texts),
        ".csv": "text\n" + "".join(t + "\n" for t in texts),
    }[suffix]
    path = tmp_path / f"in{suffix}"
    path.write_text(BOM + body, encoding="utf-8")
    tables = list(read_chunks(InputFile(path, suffix[1:]), None, 100))
    assert [t for table in tables for t in table.column("text").to_pylist()] == texts


@pytest.mark.parametrize("suffix", [".jsonl", ".txt"])
def test_predict_drops_the_byte_order_mark_of_a_file_and_of_stdin(model_dir, tmp_path, suffix):
    texts = sentences(3, 9)
    body = (
        "".join(json.dumps({"sentence": t}, ensure_ascii=False) + "\n" for t in texts)
        if suffix == ".jsonl"
        else "".join(t + "\n" for t in texts)
    )
    path = tmp_path / f"in{suffix}"
    path.write_text(BOM + body, encoding="utf-8")
    for args, stdin in ((["--input", str(path)], None), ([], (BOM + body).encode())):
        result = invoke("predict", str(model_dir), *args, "--format", "jsonl", input=stdin)
        assert result.exit_code == 0, result.output
        assert [r["text"] for r in predicted_lines(result.output)] == texts


def test_own_data_files_with_a_byte_order_mark_load(tmp_path):
    """CLUE's layout (train.json, dev.json, labels.json, train.tsv) as Notepad saves it, and .csv/.jsonl files."""
    from tnews_deploy.data import load_data
    from tnews_deploy.labels import TNEWS_LABELS

    rng = random.Random(3)
    rows = [(make_sentence(rng, label), label) for label in range(15) for _ in range(6)]
    clue = tmp_path / "clue"
    clue.mkdir()

    def json_lines(part):
        return BOM + "".join(
            json.dumps(
                {"sentence": t, "label": TNEWS_LABELS[y][0], "label_desc": TNEWS_LABELS[y][1]}, ensure_ascii=False
            )
            + "\n"
            for t, y in part
        )

    (clue / "train.json").write_text(json_lines(rows[:60]), encoding="utf-8")
    (clue / "dev.json").write_text(json_lines(rows[60:]), encoding="utf-8")
    (clue / "labels.json").write_text(
        BOM + "".join(json.dumps({"label": code, "label_desc": desc}) + "\n" for code, desc in TNEWS_LABELS),
        encoding="utf-8",
    )
    data = load_data(str(clue))
    assert list(data["train"]["sentence"]) == [t for t, _ in rows[:60]]
    assert data["train"].features["label"].names == [desc for _, desc in TNEWS_LABELS]

    (clue / "train.json").unlink()
    (clue / "train.tsv").write_text(
        BOM + "".join(f"{t}\t{TNEWS_LABELS[y][1]}\n" for t, y in rows[:60]), encoding="utf-8"
    )
    assert list(load_data(str(clue))["train"]["sentence"]) == [t for t, _ in rows[:60]]

    own = tmp_path / "own"
    own.mkdir()
    names = [desc for _, desc in TNEWS_LABELS]
    (own / "train.csv").write_text(
        BOM + "label,sentence\n" + "".join(f"{names[y]},{t}\n" for t, y in rows), encoding="utf-8"
    )
    (own / "train.jsonl").write_text(
        BOM + "".join(json.dumps({"sentence": t, "label": names[y]}, ensure_ascii=False) + "\n" for t, y in rows),
        encoding="utf-8",
    )
    for name in ("train.csv", "train.jsonl"):
        loaded = load_data(str(own / name))
        assert sorted([*loaded["train"]["sentence"], *loaded["validation"]["sentence"]]) == sorted(t for t, _ in rows)


# --------------------------------------------------------------------------- a killed `score`


def test_the_next_score_removes_a_killed_jobs_staging_folder_but_never_a_running_ones(model_dir, tmp_path):
    source = tmp_path / "many.txt"
    source.write_text("".join(f"第{i}条新闻标题，内容是一些文字\n" for i in range(60_000)), encoding="utf-8")
    small = tmp_path / "small.txt"
    small.write_text("".join(s + "\n" for s in sentences(5, 10)), encoding="utf-8")
    out = tmp_path / "out"
    with scoring_job(model_dir, source, out) as job:
        running = list(tmp_path.glob(".out.partial-*"))

        meanwhile = invoke("score", str(model_dir), str(small), "--output", str(out), "--threads", "1")
        assert meanwhile.exit_code == 0, meanwhile.output
        assert all(p.is_dir() for p in running), "a running job's staging folder was removed"

        job.send_signal(signal.SIGKILL)
        job.wait(30)
    rerun = invoke("score", str(model_dir), str(small), "--output", str(out), "--threads", "1", "--force")
    assert rerun.exit_code == 0, rerun.output
    assert not any(tmp_path.glob(".out.*")), sorted(p.name for p in tmp_path.iterdir())
    assert f"removed {running[0]}" in rerun.output and "no longer running" in rerun.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["many.txt", "out", "small.txt"]

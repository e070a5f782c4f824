"""Synthetic scoring inputs in all four formats, with bad rows, and the checks both engines must pass."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from synthetic import make_sentence


@dataclass(frozen=True)
class Expected:
    """One input row: where it comes from, its id, and its text (None: a bad row whose error says `error`)."""

    source: str
    id: str
    text: str | None
    error: str | None = None


def _sentences(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [make_sentence(rng, rng.randrange(15)) for _ in range(n)]


def write_inputs(folder: Path, n: int = 40) -> list[Expected]:
    """A .jsonl, .parquet, .csv and .txt file of `n` good rows each plus bad rows; what each row must become."""
    folder.mkdir(parents=True, exist_ok=True)
    expected: list[Expected] = []

    # JSONL: idx kept (from 1000, so it never collides with a line number); bad lines get their line number.
    path = folder / "a.jsonl"
    lines: list[bytes] = []
    for i, text in enumerate(_sentences(n, 1)):
        if i == 5:  # a line without idx: its id is its line number
            lines.append(json.dumps({"sentence": "没有编号的新闻"}, ensure_ascii=False).encode())
            expected.append(Expected(str(path), str(len(lines)), "没有编号的新闻"))
        lines.append(json.dumps({"idx": 1000 + i, "sentence": text}, ensure_ascii=False).encode())
        expected.append(Expected(str(path), str(1000 + i), text))
    bad = [
        (b'{"idx": 2000, "sentence": ""}', "2000", "empty text"),
        (b"{not json", None, "invalid JSON"),
        (b'{"idx": 2001, "sentence": 5}', "2001", "not a string"),
        (b'{"idx": 2002, "sentence": "\\ud800x"}', "2002", "surrogate"),
        (b'{"idx": 2003, "title": "no text field"}', "2003", "no 'sentence' or 'text' field"),
        ('{"idx": 2004, "sentence": "caf\u00e9"}'.encode("latin-1"), None, "not valid UTF-8"),
    ]
    for raw, row_id, error in bad:
        lines.append(raw)
        expected.append(Expected(str(path), row_id or str(len(lines)), None, error))
    path.write_bytes(b"\n".join(lines) + b"\n")

    # Parquet: an `id` column and a binary `text` column (so it can hold bad bytes), nulls and empties.
    path = folder / "b.parquet"
    texts: list[bytes | None] = [t.encode() for t in _sentences(n, 2)] + [None, b"   ", b"\xff\xfe bad"]
    ids = [f"p-{i}" for i in range(len(texts))]
    pq.write_table(pa.table({"id": ids, "text": pa.array(texts, pa.binary())}), path, row_group_size=16)
    errors = {n: "no text", n + 1: "empty text", n + 2: "not valid UTF-8"}
    for i, raw in enumerate(texts):
        expected.append(Expected(str(path), ids[i], None if i in errors else raw.decode(), errors.get(i)))

    # CSV: a 'sentence' column, no id column (row numbers), an empty field and invalid UTF-8.
    path = folder / "c.csv"
    texts_csv = _sentences(n, 3)
    body = "label,sentence\n" + "".join(f'x,"{t}"\n' for t in texts_csv)
    path.write_bytes(body.encode() + b'x,""\n' + b"x,\xc3\x28oops\n")
    for i, text in enumerate(texts_csv, 1):
        expected.append(Expected(str(path), str(i), text))
    expected.append(Expected(str(path), str(n + 1), None, "empty text"))
    expected.append(Expected(str(path), str(n + 2), None, "not valid UTF-8"))

    # TXT: one text a line; a blank line and a bad-UTF-8 line.
    path = folder / "d.txt"
    texts_txt = _sentences(n, 4)
    path.write_bytes("\n".join(texts_txt[:3]).encode() + b"\n\n\xe4\xb8\n" + "\n".join(texts_txt[3:]).encode() + b"\n")
    for i, text in enumerate(texts_txt[:3], 1):
        expected.append(Expected(str(path), str(i), text))
    expected.append(Expected(str(path), "4", None, "empty text"))
    expected.append(Expected(str(path), "5", None, "not valid UTF-8"))
    for i, text in enumerate(texts_txt[3:], 6):
        expected.append(Expected(str(path), str(i), text))
    return expected


def read_output(folder: Path) -> pa.Table:
    """Every shard of an output folder (the `_SUCCESS` summary is skipped by the dataset reader)."""
    return pq.read_table(folder)


def check_scores(table: pa.Table, expected: list[Expected], predictor, top_k: int = 1) -> None:
    """Rows out = rows in; good rows equal the `Predictor`'s answer; bad rows carry their error."""
    rows = {(r["source"], r["id"]): r for r in table.to_pylist()}
    assert len(rows) == table.num_rows == len(expected)
    good = [e for e in expected if e.text is not None]
    predictions = predictor.predict([e.text for e in good], top_k=top_k)
    for item, prediction in zip(good, predictions):
        row = rows[(item.source, item.id)]
        best = prediction[0] if top_k > 1 else prediction
        assert row["error"] is None, (item, row["error"])
        assert (row["label"], row["label_id"]) == (best.label, best.label_id), item
        assert row["score"] == pytest.approx(best.score, abs=1e-5)
        if top_k > 1:
            assert [p["label_id"] for p in row["top_k"]] == [p.label_id for p in prediction]
            assert [p["score"] for p in row["top_k"]] == pytest.approx([p.score for p in prediction], abs=1e-5)
    for item in expected:
        if item.text is None:
            row = rows[(item.source, item.id)]
            assert row["label"] is None and row["score"] is None, item
            assert item.error in row["error"], (item, row["error"])


def bad_rows(expected: list[Expected]) -> int:
    return sum(e.text is None for e in expected)


@contextmanager
def scoring_job(model_dir: Path, source: Path, out: Path) -> Iterator[subprocess.Popen]:
    """A `tnews-deploy score` process (one thread, chunks of 64 rows), yielded once it has written a part into its
    staging folder; killed on the way out if it still runs."""
    root = Path(__file__).resolve().parents[1]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])),
        "OMP_NUM_THREADS": "1",
    }
    command = [sys.executable, "-m", "tnews_deploy.cli", "score", str(model_dir), str(source), "--output", str(out)]
    job = subprocess.Popen(
        [*command, "--chunk-rows", "64", "--threads", "1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not any(out.parent.glob(f".{out.name}.partial-*/part-*.parquet")):  # the job is scoring
            assert job.poll() is None, "the job ended before it could be killed"
            assert time.monotonic() < deadline, "the job never started writing"
            time.sleep(0.01)
        yield job
    finally:
        if job.poll() is None:
            job.kill()

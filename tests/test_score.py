"""`tnews-deploy score` with the local engine: all four input formats, equality with the `Predictor`, the bad-row
contract, ids, top-k/probabilities, and output that appears only when complete."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from scoring_inputs import bad_rows, check_scores, read_output, scoring_job, write_inputs
from tnews_deploy.cli import main
from tnews_deploy.errors import ConfigError, DataError
from tnews_deploy.predictor import Predictor
from tnews_deploy.scoring import ScoreConfig, score_local
from tnews_deploy.scoring.io import InputFile, find_inputs, names_text_files, read_chunks, read_texts

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model_dir(exported) -> Path:
    return exported.output


@pytest.fixture(scope="module")
def predictor(model_dir) -> Predictor:
    return Predictor(model_dir, threads=1)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("score-inputs")
    return folder, write_inputs(folder)


def score_cli(*args: str) -> object:
    return CliRunner().invoke(main, ["score", *args])


def test_all_formats_scored_like_the_predictor_and_bad_rows_reported(model_dir, predictor, inputs, tmp_path):
    folder, expected = inputs
    out = tmp_path / "out"
    result = score_cli(
        str(model_dir),
        str(folder / "a.jsonl"),
        str(folder / "b.parquet"),
        str(folder / "c.csv"),
        str(folder / "d.txt"),
        "--output",
        str(out),
        "--threads",
        "1",
        "--chunk-rows",
        "16",
    )
    assert result.exit_code == 1, result.output
    assert f"{bad_rows(expected)} of {len(expected)} row(s) failed" in result.output
    check_scores(read_output(out), expected, predictor)

    summary = json.loads((out / "_SUCCESS").read_text())
    assert summary["rows"] == len(expected) and summary["errors"] == bad_rows(expected)
    assert summary["model_sha256"] == json.loads((model_dir / "manifest.json").read_text())["model"]["sha256"]
    assert summary["seconds"] > 0 and summary["rows_per_second"] > 0
    assert summary["engine"] == "local" and len(summary["shards"]) == 4
    printed = json.loads(result.stdout.splitlines()[0])
    assert printed["rows"] == len(expected)


def test_rows_keep_their_file_order_whatever_the_chunk_size(model_dir, inputs, tmp_path):
    folder, expected = inputs
    tables = []
    for chunk_rows in (1, 7, 10_000):
        out = tmp_path / f"out-{chunk_rows}"
        score_local(ScoreConfig(model_dir, (str(folder),), out, chunk_rows=chunk_rows, threads=1))
        tables.append(read_output(out))
    in_order = [(e.source, e.id) for e in sorted(expected, key=lambda e: e.source)]
    for table in tables:
        assert list(zip(table.column("source").to_pylist(), table.column("id").to_pylist())) == in_order
        assert table.column("label").to_pylist() == tables[0].column("label").to_pylist()
        np.testing.assert_allclose(
            table.column("score").to_numpy(zero_copy_only=False),
            tables[0].column("score").to_numpy(zero_copy_only=False),
            atol=1e-5,
        )


def test_top_k_and_probabilities(model_dir, predictor, inputs, tmp_path):
    folder, expected = inputs
    out = tmp_path / "out"
    result = score_cli(
        str(model_dir),
        str(folder / "*.jsonl"),
        "--output",
        str(out),
        "--top-k",
        "3",
        "--probabilities",
        "--threads",
        "1",
    )
    assert result.exit_code == 1, result.output
    table = read_output(out)
    jsonl = [e for e in expected if e.source.endswith("a.jsonl")]
    check_scores(table, jsonl, predictor, top_k=3)
    good = [r for r in table.to_pylist() if r["error"] is None]
    probs = predictor.predict_proba([e.text for e in jsonl if e.text is not None])
    np.testing.assert_allclose(np.array([r["probabilities"] for r in good]), probs, atol=1e-5)
    assert all(r["probabilities"] is None and r["top_k"] is None for r in table.to_pylist() if r["error"])


def test_clean_input_exits_zero_and_text_field_option(model_dir, predictor, tmp_path):
    source = tmp_path / "titles.csv"
    source.write_text("title,id\n北京大学举行毕业典礼,a1\n国足备战世界杯预选赛,a2\n", encoding="utf-8")
    refused = score_cli(str(model_dir), str(source), "--output", str(tmp_path / "refused"))
    assert refused.exit_code == 2 and "--text-field" in refused.output
    assert not (tmp_path / "refused").exists()
    result = score_cli(str(model_dir), str(source), "--text-field", "title", "--output", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    rows = read_output(tmp_path / "out").to_pylist()
    assert [r["id"] for r in rows] == ["a1", "a2"]
    titles = ["北京大学举行毕业典礼", "国足备战世界杯预选赛"]
    assert [r["label"] for r in rows] == [p.label for p in predictor.predict(titles)]


def test_existing_output_needs_force_and_a_failed_job_keeps_the_old_one(model_dir, inputs, tmp_path):
    folder, _ = inputs
    out = tmp_path / "out"
    assert score_cli(str(model_dir), str(folder / "d.txt"), "--output", str(out)).exit_code == 1
    before = (out / "_SUCCESS").read_text()
    again = score_cli(str(model_dir), str(folder / "d.txt"), "--output", str(out))
    assert again.exit_code == 2 and "--force" in again.output

    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"this is not parquet at all")
    failed = score_cli(str(model_dir), str(folder / "a.jsonl"), str(broken), "--output", str(out), "--force")
    assert failed.exit_code == 2 and "cannot be read as Parquet" in failed.output
    assert (out / "_SUCCESS").read_text() == before  # the old output is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.parquet", "out"]  # no staging folder left

    replaced = score_cli(str(model_dir), str(folder / "a.jsonl"), "--output", str(out), "--force")
    assert replaced.exit_code == 1
    assert json.loads((out / "_SUCCESS").read_text())["inputs"] == [str(folder / "a.jsonl")]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.parquet", "out"]


def test_a_killed_job_leaves_no_output_that_looks_finished(model_dir, tmp_path):
    source = tmp_path / "many.txt"
    source.write_text("".join(f"第{i}条新闻标题，内容是一些文字\n" for i in range(60_000)), encoding="utf-8")
    out = tmp_path / "out"
    with scoring_job(model_dir, source, out) as job:
        job.send_signal(signal.SIGKILL)
        job.wait(30)
    assert not out.exists()
    leftovers = list(tmp_path.glob(".out.partial-*"))
    assert leftovers and not any((p / "_SUCCESS").exists() for p in leftovers)


def test_find_inputs_folders_globs_and_refusals(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("b.jsonl", "a.txt", "sub/c.parquet", "sub/d.CSV", "notes.md", ".hidden.txt", "_SUCCESS"):
        (tmp_path / name).write_text("x\n")
    previous = tmp_path / "_old"
    previous.mkdir()
    (previous / "e.txt").write_text("x\n")
    found = find_inputs([str(tmp_path), str(tmp_path / "a.txt")])  # the repeat is read once
    assert [(f.path.relative_to(tmp_path).as_posix(), f.fmt) for f in found] == [
        ("a.txt", "txt"),
        ("b.jsonl", "jsonl"),
        ("sub/c.parquet", "parquet"),
        ("sub/d.CSV", "csv"),
    ]
    assert [f.path.name for f in find_inputs([str(tmp_path / "**" / "*.parquet")])] == ["c.parquet"]
    with pytest.raises(DataError, match="no such file"):
        find_inputs([str(tmp_path / "missing.jsonl")])
    with pytest.raises(DataError, match="cannot read a '.md' file"):
        find_inputs([str(tmp_path / "notes.md")])
    with pytest.raises(DataError, match="matches no"):
        find_inputs([str(tmp_path / "*.tsv")])


def test_read_texts_keeps_usable_texts_in_order_and_names_its_flag(tmp_path, caplog):
    """The reader of `trim-vocab --corpus` and `distill --unlabeled`: texts only, bad rows skipped with one
    warning, a missing column or a file of nothing usable named with the flag that fixes it."""
    table = tmp_path / "more.csv"
    table.write_text('id,body,label\n1,国足备战,x\n2,,y\n3,"股市, 收盘",z\n', encoding="utf-8")
    with caplog.at_level("WARNING"):
        assert read_texts(str(table), "body", "--corpus-field") == ["国足备战", "股市, 收盘"]
    assert "skipped 1 unusable row" in caplog.text and "row 2" in caplog.text
    with pytest.raises(DataError, match="pass --corpus-field NAME"):
        read_texts(str(table), None, "--corpus-field")
    (tmp_path / "blank.txt").write_text("\n  \n", encoding="utf-8")
    with pytest.raises(DataError, match="no usable text.*--unlabeled-field"):
        read_texts(str(tmp_path / "blank.txt"), None, "--unlabeled-field")
    (tmp_path / "labelled.tsv").write_text("sentence\tlabel\n", encoding="utf-8")
    assert names_text_files(str(table)) and names_text_files(str(tmp_path / "*.csv"))
    assert names_text_files(str(tmp_path / "missing.parquet"))  # read as texts, so the error is "no such file"
    assert not names_text_files(str(tmp_path)) and not names_text_files(str(tmp_path / "labelled.tsv"))
    assert not names_text_files("clue/tnews")


@pytest.mark.parametrize("name", ["a.jsonl", "b.parquet", "c.csv", "d.txt"])
def test_reading_streams_in_bounded_chunks(inputs, name):
    folder, expected = inputs
    item = find_inputs([str(folder / name)])[0]
    chunks = read_chunks(item, None, 8)
    first = next(chunks)  # a generator: nothing is read ahead of what is asked for
    sizes = [first.num_rows] + [c.num_rows for c in chunks]
    assert max(sizes) <= 8
    assert sum(sizes) == sum(e.source == str(folder / name) for e in expected)


def test_bad_settings_are_config_errors(model_dir, tmp_path):
    with pytest.raises(ConfigError, match="--top-k"):
        ScoreConfig(model_dir, ("x.txt",), tmp_path / "o", top_k=0)
    with pytest.raises(ConfigError, match="--engine"):
        ScoreConfig(model_dir, ("x.txt",), tmp_path / "o", engine="spark")
    source = tmp_path / "x.txt"
    source.write_text("今天新闻\n", encoding="utf-8")
    result = score_cli(str(model_dir), str(source), "--output", str(tmp_path / "o"), "--top-k", "99")
    assert result.exit_code == 2 and "--top-k must be in 1..15" in result.output
    assert not (tmp_path / "o").exists()
    assert InputFile(source, "txt") in find_inputs([str(source)])


def test_shards_read_back_as_one_dataset(model_dir, inputs, tmp_path):
    folder, expected = inputs
    out = tmp_path / "out"
    score_local(ScoreConfig(model_dir, (str(folder),), out, threads=1))
    assert pq.read_table(out).num_rows == len(expected)


def test_score_imports_nothing_heavy_until_it_runs():
    code = (
        "import sys, tnews_deploy.cli, tnews_deploy.scoring; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'pyarrow', 'onnxruntime', 'ray', 'torch'}))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_ray_engine_without_ray_names_the_extra(monkeypatch):
    from tnews_deploy.errors import UserError
    from tnews_deploy.scoring.ray_engine import import_ray

    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.setitem(sys.modules, "ray.data", None)
    with pytest.raises(UserError, match=r'pip install "tnews-deploy\[scale\]"'):
        import_ray()

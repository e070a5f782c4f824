"""The command line as a user runs it: output, files, and one-line errors for bad input."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from tnews_deploy.cli import main


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_help_lists_commands():
    result = run("--help")
    assert result.exit_code == 0
    for command in ("data-stats", "train", "grid"):
        assert command in result.output


def test_data_stats_writes_png_and_json(hf_data, tiny_model, tmp_path):
    result = run("data-stats", "--data", str(hf_data), "--model", str(tiny_model), "--output", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert "suggested max_length" in result.output and "news_edu" in result.output
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["suggested_max_length"] % 8 == 0 and stats["sentences"] == 600
    assert (tmp_path / "lengths.png").is_file()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--data", "/no/such/folder"], "no such folder"),
        (["--train-size", "100000"], "larger than the"),
        (["--lr", "0"], "--lr must be positive"),
    ],
)
def test_train_bad_input_is_one_clear_line(args, message, hf_data, tiny_model, tmp_path):
    result = CliRunner().invoke(
        main, ["train", "--model", str(tiny_model), "--data", str(hf_data), "--output", str(tmp_path / "r"),
               "--eval-size", "100", "--selection-size", "60", *args]
    )
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_unknown_variant_is_rejected_by_click(hf_data, tiny_model, tmp_path):
    result = CliRunner().invoke(main, ["train", "--variant", "freeze-all", "--output", str(tmp_path)])
    assert result.exit_code == 2 and "freeze-all" in result.output
    result = CliRunner().invoke(main, ["grid", "--variants", "full,bogus", "--output", str(tmp_path)])
    assert result.exit_code == 2 and "unknown variant(s) bogus" in result.output


def test_model_folder_without_weights(hf_data, tiny_model, tmp_path):
    folder = tmp_path / "no-weights"
    folder.mkdir()
    shutil.copy(tiny_model / "config.json", folder / "config.json")
    result = CliRunner().invoke(
        main, ["train", "--model", str(folder), "--data", str(hf_data), "--output", str(tmp_path / "r")]
    )
    assert result.exit_code == 2 and "has no weights" in result.output


def test_train_command_end_to_end(hf_data, tiny_model, tmp_path):
    result = run(
        "train", "--model", str(tiny_model), "--data", str(hf_data), "--variant", "freeze-embeddings",
        "--train-size", "150", "--eval-size", "100", "--selection-size", "60", "--epochs", "1",
        "--min-steps", "20", "--lr", "3e-3", "--batch-size", "16", "--max-length", "32", "--quiet",
        "--output", str(tmp_path / "run"),
    )
    assert result.exit_code == 0, result.output
    assert "macro-F1" in result.output
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["variant"] == "freeze-embeddings" and metrics["eval_size"] == 100


def test_export_command_and_refusal(trained_run, tmp_path):
    result = run("export", str(trained_run.run_dir), "--output", str(tmp_path / "fp32"))
    assert result.exit_code == 0, result.output
    assert "agreement 100.00%" in result.output
    refused = CliRunner().invoke(main, ["export", str(trained_run.run_dir), "--quantize", "int8",
                                        "--max-f1-drop", "-1", "--output", str(tmp_path / "int8")])
    assert refused.exit_code == 2 and "export refused" in refused.output
    assert not (tmp_path / "int8").exists()


def test_predict_arguments_jsonl(exported):
    result = run("predict", str(exported.output), "\u9f00的人", "今天新闻", "--format", "jsonl")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert [r["line"] for r in rows] == [1, 2] and all(r["label"].startswith("news_") for r in rows)


def test_predict_table_and_top_k(exported):
    result = run("predict", str(exported.output), "\u9f00的人", "--format", "table", "--top-k", "3")
    assert result.exit_code == 0 and result.output.count("news_") == 3


def test_predict_file_with_bad_lines_keeps_the_good_ones(exported, tmp_path):
    lines = [
        json.dumps({"sentence": "\u9f00的人"}, ensure_ascii=False).encode(),
        b"",
        b"{not json",
        json.dumps({"title": "no text field"}).encode(),
        b'{"text": "\xff\xfe bad utf-8"}',
        json.dumps({"text": "今天新闻"}, ensure_ascii=False).encode(),
        json.dumps({"text": 5}).encode(),
    ]
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"\n".join(lines) + b"\n")
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(main, ["predict", str(exported.output), "--input", str(source), "--output", str(out)])
    assert result.exit_code == 1
    assert "5 of 7 input(s) failed" in result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["line"] for r in rows] == list(range(1, 8))
    assert "label" in rows[0] and "label" in rows[5]
    errors = {r["line"]: r["error"] for r in rows if "error" in r}
    assert "empty" in errors[2] and "invalid JSON" in errors[3] and "no 'sentence' or 'text'" in errors[4]
    assert "UTF-8" in errors[5] and "not a string" in errors[7]


def test_predict_file_with_a_lone_surrogate_writes_every_other_line(exported, tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text('{"sentence": "今天新闻"}\n{"sentence": "\\ud800abc"}\n{"text": "\u9f00的人"}\n',
                      encoding="utf-8")
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(main, ["predict", str(exported.output), "--input", str(source), "--output", str(out)])
    assert result.exit_code == 1 and "1 of 3 input(s) failed" in result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [("label" in r, r["line"]) for r in rows] == [(True, 1), (False, 2), (True, 3)]
    assert "surrogate" in rows[1]["error"]


def test_predict_refuses_a_csv_instead_of_reading_it_as_text(exported, tmp_path):
    source = tmp_path / "titles.csv"
    source.write_text("id,text\n1,今天新闻\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["predict", str(exported.output), "--input", str(source)])
    assert result.exit_code == 2 and ".csv" in result.output and "--input-format" in result.output
    forced = CliRunner().invoke(main, ["predict", str(exported.output), "--input", str(source),
                                       "--input-format", "txt", "--format", "jsonl"])
    assert forced.exit_code == 0 and len(forced.stdout.splitlines()) == 2


def test_predict_on_a_training_run_says_how_to_export_it(trained_run):
    result = CliRunner().invoke(main, ["predict", str(trained_run.run_dir), "今天新闻"])
    assert result.exit_code == 2 and "training run" in result.output and "tnews-deploy export" in result.output


def test_predict_txt_from_stdin(exported):
    result = CliRunner().invoke(main, ["predict", str(exported.output), "--input", "-"],
                                input="\u9f00的人\n\n今天新闻\n".encode())
    assert result.exit_code == 1
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [("label" in r, r["line"]) for r in rows] == [(True, 1), (False, 2), (True, 3)]


def test_predict_bad_model_dir_is_one_line(tmp_path):
    result = CliRunner().invoke(main, ["predict", str(tmp_path / "none"), "x"])
    assert result.exit_code == 2 and "no such model folder" in result.output

"""The command line as a user runs it: output, files, and one-line errors for bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tnews_deploy.cli import main

ROOT = Path(__file__).resolve().parents[1]


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
    # The unlabelled test split gets a line, not a column of zeros.
    header = next(line for line in result.output.splitlines() if line.startswith("  class "))
    assert header.split() == ["class", "train", "validation"]
    assert "test: unlabelled (45 sentences)" in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--data", "/no/such/folder"], "no such file or folder"),
        (["--train-size", "100000"], "larger than the"),
        (["--lr", "0"], "--lr must be positive"),
    ],
)
def test_train_bad_input_is_one_clear_line(args, message, hf_data, tiny_model, tmp_path):
    result = CliRunner().invoke(
        main,
        [
            "train",
            "--model",
            str(tiny_model),
            "--data",
            str(hf_data),
            "--output",
            str(tmp_path / "r"),
            "--eval-size",
            "100",
            "--selection-size",
            "60",
            *args,
        ],
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


@pytest.mark.slow
def test_train_command_end_to_end(hf_data, tiny_model, tmp_path):
    result = run(
        "train",
        "--model",
        str(tiny_model),
        "--data",
        str(hf_data),
        "--variant",
        "freeze-embeddings",
        "--train-size",
        "150",
        "--eval-size",
        "100",
        "--selection-size",
        "60",
        "--epochs",
        "1",
        "--min-steps",
        "20",
        "--lr",
        "3e-3",
        "--batch-size",
        "16",
        "--max-length",
        "32",
        "--quiet",
        "--output",
        str(tmp_path / "run"),
    )
    assert result.exit_code == 0, result.output
    assert "macro-F1" in result.output
    assert "selection macro-F1" in result.stderr  # each selection evaluation, as a log line
    for raw in ("{'loss'", "'grad_norm'", "{'eval_loss'", "{'train_runtime'"):  # Trainer's dicts
        assert raw not in result.output
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["variant"] == "freeze-embeddings" and metrics["eval_size"] == 100


def test_export_command_and_refusal(trained_run, tmp_path):
    result = run("export", str(trained_run.run_dir), "--output", str(tmp_path / "fp32"))
    assert result.exit_code == 0, result.output
    assert "agreement 100.00%" in result.output
    refused = CliRunner().invoke(
        main,
        [
            "export",
            str(trained_run.run_dir),
            "--quantize",
            "int8",
            "--max-f1-drop",
            "-1",
            "--output",
            str(tmp_path / "int8"),
        ],
    )
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
    source.write_text(
        '{"sentence": "今天新闻"}\n{"sentence": "\\ud800abc"}\n{"text": "\u9f00的人"}\n', encoding="utf-8"
    )
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
    assert "tnews-deploy score" in result.output  # where a table of texts goes instead
    forced = CliRunner().invoke(
        main, ["predict", str(exported.output), "--input", str(source), "--input-format", "txt", "--format", "jsonl"]
    )
    assert forced.exit_code == 0 and len(forced.stdout.splitlines()) == 2


def test_predict_on_a_training_run_says_how_to_export_it(trained_run):
    result = CliRunner().invoke(main, ["predict", str(trained_run.run_dir), "今天新闻"])
    assert result.exit_code == 2 and "training run" in result.output and "tnews-deploy export" in result.output


def test_predict_txt_from_stdin(exported):
    result = CliRunner().invoke(
        main, ["predict", str(exported.output), "--input", "-"], input="\u9f00的人\n\n今天新闻\n".encode()
    )
    assert result.exit_code == 1
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [("label" in r, r["line"]) for r in rows] == [(True, 1), (False, 2), (True, 3)]


@pytest.mark.parametrize("args", [[], ["-"]])
def test_predict_reads_piped_texts_without_input_flag(exported, args):
    """`cat titles.txt | tnews-deploy predict MODEL` and a lone `-` read standard input, as `--input -` does."""
    result = CliRunner().invoke(
        main, ["predict", str(exported.output), *args, "--format", "jsonl"], input="今天新闻\n国足备战\n".encode()
    )
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["line"] for line in result.stdout.splitlines()] == [1, 2]
    empty = CliRunner().invoke(main, ["predict", str(exported.output), *args], input=b"")
    if args:  # asked for standard input: an empty one is an empty answer, as with --input -
        assert empty.exit_code == 0 and empty.stdout == ""
    else:  # read only because nothing else was given: say so
        assert empty.exit_code == 2 and "nothing to classify" in empty.output


def test_predict_bad_model_dir_is_one_line(tmp_path):
    result = CliRunner().invoke(main, ["predict", str(tmp_path / "none"), "x"])
    assert result.exit_code == 2 and "no such model folder" in result.output


def test_predict_batch_size_zero_is_a_usage_error(exported):
    result = CliRunner().invoke(main, ["predict", str(exported.output), "--batch-size", "0", "今天新闻"])
    assert result.exit_code == 2 and "--batch-size" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_export_options_are_validated_by_the_config(trained_run, tmp_path):
    for args, message in [
        (["--min-agreement", "1.5"], "--min-agreement must be between 0 and 1 (got 1.5)"),
        (["--eval-size", "0"], "--eval-size must be positive (got 0)"),
    ]:
        result = CliRunner().invoke(main, ["export", str(trained_run.run_dir), "--output", str(tmp_path / "x"), *args])
        assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "x").exists()


def test_export_help_shows_the_config_defaults():
    from tnews_deploy.export import ExportConfig, GatePolicy

    text = " ".join(run("export", "--help").output.split())
    assert f"[default: {GatePolicy.min_agreement}]" in text and f"[default: {GatePolicy.max_f1_drop}]" in text
    assert f"[default: {ExportConfig.optimize}]" in text


TRAIN_ARGS = ["--model", "m", "--data", "d", "--train-size", "100"]


@pytest.mark.parametrize(
    "error, extra",
    [
        (ModuleNotFoundError("No module named 'transformers'", name="transformers"), "train"),
        (ModuleNotFoundError("No module named 'optimum.onnxruntime'", name="optimum.onnxruntime"), "train"),
        (ModuleNotFoundError("No module named 'fastapi'", name="fastapi"), "serve"),
    ],
)
def test_missing_optional_dependency_names_its_extra(error, extra, monkeypatch, tmp_path):
    import tnews_deploy.training

    def train_run(*args, **kwargs):
        raise error

    monkeypatch.setattr(tnews_deploy.training, "train_run", train_run)
    result = CliRunner().invoke(main, ["train", *TRAIN_ARGS, "--output", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert f'pip install "tnews-deploy[{extra}]"' in result.output


def test_missing_torch_reads_as_the_train_extra(monkeypatch, tmp_path):
    import tnews_deploy.training.run  # noqa: F401  (loaded before torch goes missing)

    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now fails as if not installed
    result = CliRunner().invoke(main, ["train", *TRAIN_ARGS, "--output", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert "torch" in result.output and 'pip install "tnews-deploy[train]"' in result.output


@pytest.mark.parametrize(
    "error",
    [
        ImportError("cannot import name 'helper' from 'tnews_deploy.training.run'"),
        ModuleNotFoundError("No module named 'tnews_deploy.nope'", name="tnews_deploy.nope"),
    ],
)
def test_an_import_error_inside_the_package_is_not_called_a_missing_extra(error, monkeypatch, tmp_path):
    import tnews_deploy.training

    def train_run(*args, **kwargs):
        raise error

    monkeypatch.setattr(tnews_deploy.training, "train_run", train_run)
    result = CliRunner().invoke(main, ["train", *TRAIN_ARGS, "--output", str(tmp_path / "r")])
    assert result.exception is error  # propagates, with its traceback
    assert "extra" not in result.output


# Messages that are false alarms for these models, or raw Trainer log dicts: a user must not see them.
KNOWN_NOISE = (
    "incorrect regex pattern",
    "fix_mistral_regex",
    "torch_dtype",
    "TracerWarning",
    "{'loss'",
    "'grad_norm'",
    "{'eval_loss'",
    "{'train_runtime'",
)


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run(
        [sys.executable, "-m", "tnews_deploy.cli", *args], capture_output=True, text=True, env=env, timeout=600
    )


@pytest.mark.slow
def test_train_and_export_show_progress_not_false_alarms(big_vocab_model, hf_data, tmp_path):
    """In a fresh interpreter, as a user runs them, with a >100k-token tokenizer like e5's."""
    train = _cli(
        "train",
        "--model",
        str(big_vocab_model),
        "--data",
        str(hf_data),
        "--train-size",
        "150",
        "--eval-size",
        "100",
        "--selection-size",
        "60",
        "--epochs",
        "1",
        "--min-steps",
        "12",
        "--batch-size",
        "16",
        "--max-length",
        "32",
        "--output",
        str(tmp_path / "run"),
    )
    assert train.returncode == 0, train.stderr[-3000:]
    export = _cli("export", str(tmp_path / "run"), "--output", str(tmp_path / "onnx"))
    assert export.returncode == 0, export.stderr[-3000:]
    for command in (train, export):
        for noise in KNOWN_NOISE:
            assert noise not in command.stdout + command.stderr, (noise, command.args[3])
    assert "selection macro-F1" in train.stderr and "macro-F1" in train.stdout
    # stderr is a pipe, not a terminal: log lines only, no redrawn bars (carriage returns, cursor-up codes)
    for command in (train, export):
        assert "\r" not in command.stderr and "\x1b[" not in command.stderr and "it/s" not in command.stderr
    assert "verifying on 100 evaluation sentences" in export.stderr and "accepted:" in export.stderr
    assert "agreement 100.00%" in export.stdout

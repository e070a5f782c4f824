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

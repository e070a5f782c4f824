"""Faults in training data and while exporting: labels outside TNEWS's classes, a non-integer label named by
its own line, and a disk that fills up during the ONNX export or the quantisation."""

from __future__ import annotations

import copy
import csv
import errno
import json
import logging
import re

import pytest
from click.testing import CliRunner

from synthetic import write_hf_jsonl
from tnews_deploy.cli import main
from tnews_deploy.data import load_data
from tnews_deploy.datasource import DataSource
from tnews_deploy.errors import DataError, UserError

# --------------------------------------------------------------------------- labels of TNEWS-shaped data


def _tnews_folder(folder, synthetic_rows, row: int, label: int, split: str = "train"):
    rows = copy.deepcopy(synthetic_rows)
    rows[split][row]["label"] = label
    return write_hf_jsonl(folder, rows)


@pytest.mark.parametrize("label", [99, 15])
def test_a_label_outside_tnews_classes_in_a_tnews_folder_is_refused_with_its_line(tmp_path, synthetic_rows, label):
    """One stray label in clue/tnews's layout must not turn the 15 named classes into 16 or 100 numbered ones."""
    folder = _tnews_folder(tmp_path, synthetic_rows, row=6, label=label)
    with pytest.raises(DataError, match=rf"train.jsonl:7: label {label} is outside the TNEWS classes 0\.\.14") as exc:
        load_data(str(folder))
    assert "--labels" in str(exc.value)  # what to do when the data really has more classes


def test_train_refuses_a_stray_tnews_label_in_one_line(tmp_path, synthetic_rows, tiny_model):
    folder = _tnews_folder(tmp_path / "data", synthetic_rows, row=0, label=99)
    result = CliRunner().invoke(
        main,
        [
            "--quiet",
            "train",
            "--model",
            str(tiny_model),
            "--data",
            str(folder),
            "--output",
            str(tmp_path / "run"),
            "--train-size",
            "300",
            "--eval-size",
            "100",
            "--selection-size",
            "60",
            "--min-steps",
            "1",
        ],
    )
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "train.jsonl:1: label 99" in errors[0] and "0..14" in errors[0]
    assert "Traceback" not in result.output
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_own_integer_labels_with_a_stray_far_outside_the_rest_load_with_a_warning(tmp_path, caplog):
    """Own data may number its classes freely; a label that leaves most ids without an example is named."""
    rows = [(f"文本{i}", i % 3) for i in range(30)]
    rows[11] = ("文本11", 99)
    for name, part in (("train.csv", rows), ("validation.csv", [(f"验证{i}", i % 3) for i in range(9)])):
        with (tmp_path / name).open("w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(("text", "label"))
            writer.writerows(part)
    with caplog.at_level(logging.WARNING, logger="tnews_deploy"):
        dsd = load_data(DataSource(str(tmp_path)))
    assert len(dsd["train"].features["label"].names) == 100  # allowed: own data numbers its classes
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("train.csv:13: label 99" in w and "96 of the 100" in w and "--labels" in w for w in warnings), warnings


# --------------------------------------------------------------------------- a non-integer label's line


def test_a_float_label_among_integers_is_named_by_its_own_line_in_jsonl(tmp_path):
    lines = [json.dumps({"text": f"新闻{i}", "label": 3.0 if i == 4 else 7}) for i in range(8)]
    (tmp_path / "data.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"data.jsonl:5: label 3\.0 is neither an integer nor a string"):
        load_data(str(tmp_path / "data.jsonl"))


def test_a_float_label_among_integers_is_named_by_its_own_line_in_csv(tmp_path):
    body = "".join(f"新闻{i},{'3.0' if i == 3 else i % 2}\n" for i in range(8))
    (tmp_path / "data.csv").write_text("text,label\n" + body, encoding="utf-8")
    with pytest.raises(DataError, match=r"data.csv:5: label 3\.0 is neither an integer nor a string"):
        load_data(str(tmp_path / "data.csv"))


# --------------------------------------------------------------------------- a full disk while exporting


def _fill_disk_at(monkeypatch, module, name: str, when, code: int = errno.ENOSPC) -> list[str]:
    """Make `module.name(src/model, dst, ...)` write part of `dst`, then fail as a full disk does, when `when(dst)`."""
    real = getattr(module, name)
    hits: list[str] = []

    def full(first, dst, *args, **kwargs):
        if not when(str(dst)):
            return real(first, dst, *args, **kwargs)
        hits.append(str(dst))
        with open(dst, "wb") as fh:
            fh.write(b"\0" * 1024)
        raise OSError(code, "No space left on device" if code == errno.ENOSPC else "Disk quota exceeded")

    monkeypatch.setattr(module, name, full)
    return hits


def _export_cli(trained_run, output, *extra):
    return CliRunner().invoke(main, ["--quiet", "export", str(trained_run.run_dir), "--output", str(output), *extra])


def _one_disk_full_line(result, output) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    assert "disk is full" in errors[0] and str(output.parent) in errors[0] and "free" in errors[0], errors[0]
    return errors[0]


def test_a_full_disk_during_the_onnx_export_is_one_line_and_leaves_nothing(trained_run, tmp_path, monkeypatch):
    import shutil

    output = tmp_path / "exports" / "fp32"
    hits = _fill_disk_at(monkeypatch, shutil, "copyfile", lambda dst: dst.endswith(".onnx") and "exports" in dst)
    result = _export_cli(trained_run, output)
    assert hits, "the ONNX model was never copied into the export folder"
    _one_disk_full_line(result, output)
    assert list(output.parent.iterdir()) == []  # no output, no staging folder


def test_a_full_disk_during_quantisation_is_one_line_and_leaves_nothing(trained_run, tmp_path, monkeypatch):
    import onnx

    output = tmp_path / "exports" / "int8"
    hits = _fill_disk_at(monkeypatch, onnx, "save", lambda dst: "int8" in dst and "exports" in dst)
    result = _export_cli(trained_run, output, "--quantize", "int8", "--max-f1-drop", "1")
    assert hits, "the quantised model was never saved"
    _one_disk_full_line(result, output)
    assert list(output.parent.iterdir()) == []


def test_the_quantiser_reports_a_full_quota_and_removes_its_partial_file(exported, tmp_path, monkeypatch):
    import onnx

    from tnews_deploy.export.quantize import quantize_per_token

    target = tmp_path / "int8.onnx"
    _fill_disk_at(monkeypatch, onnx, "save", lambda dst: dst == str(target), code=errno.EDQUOT)
    with pytest.raises(UserError, match=rf"{re.escape(str(tmp_path))}: .*disk is full.*quota") as exc:
        quantize_per_token(exported.output / "model.onnx", target)
    assert isinstance(exc.value, OSError) and exc.value.errno == errno.EDQUOT  # still an OSError to callers
    assert not target.exists()


def test_an_unknown_label_in_clue_files_names_its_line_past_blank_lines_and_the_expected_codes(tmp_path, clue_data):
    import shutil

    folder = shutil.copytree(clue_data, tmp_path / "clue")
    lines = (folder / "dev.json").read_text(encoding="utf-8").splitlines()
    row = json.loads(lines[2])
    row["label"], row["label_desc"] = "99", "news_unknown"
    lines[2] = json.dumps(row, ensure_ascii=False)
    (folder / "dev.json").write_text("\n" + "\n".join(lines) + "\n", encoding="utf-8")  # a blank first line
    with pytest.raises(
        DataError,
        match=r"dev.json:4: unknown label '99'; expected one of the 15 classes, by code "
        r"\(100, 101, .*news_story.*Fix or remove the row",
    ):
        load_data(str(folder))

"""Damaged or malformed export folders and bad call arguments: one clear error naming the file, never a crash.

Each folder case is a copy of the verified tiny export with one file broken the way a disk, a hand edit or
a bad copy breaks it; the `Predictor` must refuse it with a `ModelLoadError` naming that file, and the CLI
(`predict`, `serve`) must say so in one line and exit 2.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tnews_deploy import ModelLoadError, Predictor
from tnews_deploy.predictor import sha256_of

CLI = [sys.executable, "-m", "tnews_deploy.cli"]


def _copy(exported, tmp_path: Path) -> Path:
    target = tmp_path / "model"
    shutil.copytree(exported.output, target)
    return target


def _edit_json(path: Path, change: Callable[[dict], object]) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    result = change(data)
    path.write_text(json.dumps(data if result is None else result), encoding="utf-8")


def _symlink_loop(path: Path) -> None:
    path.unlink()
    other = path.with_name(path.name + ".loop")
    path.symlink_to(other.name)
    other.symlink_to(path.name)


def _directory(path: Path) -> None:
    path.unlink()
    path.mkdir()


def _text(content: str) -> Callable[[Path], None]:
    return lambda path: path.write_text(content, encoding="utf-8")


def _set(key: str, value: object) -> Callable[[Path], None]:
    return lambda path: _edit_json(path, lambda data: data.__setitem__(key, value))


def _set_in_model(key: str, value: object) -> Callable[[Path], None]:
    return lambda path: _edit_json(path, lambda data: data["model"].__setitem__(key, value))


def _labels(id2label: object) -> Callable[[Path], None]:
    return _set("id2label", id2label)


# (case id, file broken, how (given the file's path), what the message must say besides the file's name)
FOLDER_CASES = [
    ("config-symlink-loop", "config.json", _symlink_loop, "cannot be read"),
    ("config-directory", "config.json", _directory, "cannot be read"),
    ("config-not-object", "config.json", _text("[1]"), "JSON object"),
    ("id2label-list", "config.json", _labels([f"c{i}" for i in range(15)]), "id2label"),
    ("id2label-gap", "config.json", _labels({str(i): f"c{i}" for i in [*range(14), 15]}), "0..14"),
    ("id2label-key-not-number", "config.json", _labels({**{str(i): f"c{i}" for i in range(14)}, "x": "c"}), "id2label"),
    ("id2label-label-not-string", "config.json", _labels({str(i): i for i in range(15)}), "string"),
    ("id2label-label-empty", "config.json", _labels({str(i): f"c{i}" if i else " " for i in range(15)}), "string"),
    ("id2label-duplicate", "config.json", _labels({str(i): f"c{min(i, 13)}" for i in range(15)}), "more than once"),
    ("pad-token-id-text", "config.json", _set("pad_token_id", "x"), "pad_token_id"),
    ("pad-token-id-negative", "config.json", _set("pad_token_id", -1), "pad_token_id"),
    ("pad-token-id-past-vocab", "config.json", _set("pad_token_id", 10_000_000), "pad_token_id"),
    ("vocab-size-text", "config.json", _set("vocab_size", "abc"), "vocab_size"),
    ("positions-text", "config.json", _set("max_position_embeddings", "abc"), "max_position_embeddings"),
    ("manifest-list", "manifest.json", _text("[1]"), "JSON object"),
    ("manifest-symlink-loop", "manifest.json", _symlink_loop, "cannot be read"),
    ("manifest-directory", "manifest.json", _directory, "cannot be read"),
    ("max-length-text", "manifest.json", _set("max_length", "abc"), "max_length"),
    ("max-length-negative", "manifest.json", _set("max_length", -5), "max_length"),
    ("max-length-zero", "manifest.json", _set("max_length", 0), "max_length"),
    ("max-length-bool", "manifest.json", _set("max_length", True), "max_length"),
    ("max-length-float", "manifest.json", _set("max_length", 64.5), "max_length"),
    ("max-length-past-positions", "manifest.json", _set("max_length", 100_000), "max_position_embeddings"),
    ("manifest-model-text", "manifest.json", _set("model", "model.onnx"), "model"),
    ("manifest-model-sha-number", "manifest.json", _set_in_model("sha256", 5), "sha256"),
    ("manifest-files-list", "manifest.json", _set("files", ["tokenizer.json"]), "files"),
    ("manifest-files-entry-text", "manifest.json", _set("files", {"tokenizer.json": "abc"}), "files"),
    ("manifest-files-path", "manifest.json", _set("files", {"../config.json": {"sha256": "0" * 64}}), "files"),
]


def _break(folder: Path, case: str) -> str:
    """Break `folder` as FOLDER_CASES says for `case`; returns the broken file's name.

    A file other than the manifest is broken in a folder whose manifest has no checksum for it (an export
    made before the manifest listed them): the file's own checks are what must catch it.
    """
    _, filename, how, _ = next(c for c in FOLDER_CASES if c[0] == case)
    if filename != "manifest.json":
        _edit_json(folder / "manifest.json", lambda m: m.pop("files", None))
    how(folder / filename)
    return filename


@pytest.mark.parametrize("case, filename, how, message", FOLDER_CASES, ids=[c[0] for c in FOLDER_CASES])
def test_malformed_file_is_a_model_load_error_naming_it(exported, tmp_path, case, filename, how, message):
    folder = _copy(exported, tmp_path)
    _break(folder, case)
    with pytest.raises(ModelLoadError, match=message) as info:
        Predictor(folder)
    assert f"{filename}:" in str(info.value)
    assert "\n" not in str(info.value)


CLI_CASES = [
    "config-symlink-loop",
    "manifest-list",
    "id2label-list",
    "max-length-text",
    "max-length-negative",
    "pad-token-id-text",
]


@pytest.mark.parametrize("command", ["predict", "serve"])
@pytest.mark.parametrize("case", CLI_CASES)
def test_cli_refuses_a_malformed_folder_in_one_line(exported, tmp_path, command, case):
    folder = _copy(exported, tmp_path)
    filename = _break(folder, case)
    args = [str(folder), "北京大学举行毕业典礼"] if command == "predict" else [str(folder), "--port", "1"]
    result = subprocess.run(CLI + [command, *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and filename in lines[0], result.stderr


# --------------------------------------------------------------------------- checksums of every file read


def _shuffle_vocabulary(path: Path) -> None:
    """Same tokens, same vocabulary size, ids of the ordinary (non-special) tokens permuted."""
    data = json.loads(path.read_text(encoding="utf-8"))
    vocab = data["model"]["vocab"]
    special = {t["content"] for t in data.get("added_tokens", [])}
    tokens = [t for t in vocab if t not in special]
    ids = [vocab[t] for t in tokens]
    shuffled = ids[:]
    random.Random(0).shuffle(shuffled)
    assert shuffled != ids
    vocab.update(zip(tokens, shuffled))
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


def test_export_manifest_records_every_file_the_runtime_reads(exported):
    files = exported.manifest["files"]
    assert set(files) >= {"tokenizer.json", "config.json"}
    for name, entry in files.items():
        path = exported.output / name
        assert entry == {"sha256": sha256_of(path), "bytes": path.stat().st_size}
    on_disk = json.loads((exported.output / "manifest.json").read_text(encoding="utf-8"))
    assert on_disk["files"] == files


def test_shuffled_tokenizer_is_refused(exported, tmp_path):
    folder = _copy(exported, tmp_path)
    _shuffle_vocabulary(folder / "tokenizer.json")
    with pytest.raises(ModelLoadError, match=r"tokenizer.json: sha256 differs from manifest.json"):
        Predictor(folder)
    assert Predictor(folder, verify_checksum=False).labels  # the flag covers it, as for model.onnx


def test_edited_config_is_refused(exported, tmp_path):
    folder = _copy(exported, tmp_path)
    _edit_json(folder / "config.json", lambda c: c["id2label"].update({"0": "renamed"}))
    with pytest.raises(ModelLoadError, match=r"config.json: sha256 differs from manifest.json"):
        Predictor(folder)


def test_shuffled_tokenizer_is_refused_by_the_cli(exported, tmp_path):
    folder = _copy(exported, tmp_path)
    _shuffle_vocabulary(folder / "tokenizer.json")
    result = subprocess.run(
        CLI + ["predict", str(folder), "北京大学举行毕业典礼"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2 and "tokenizer.json: sha256 differs" in result.stderr
    assert "Traceback" not in result.stderr


def test_manifest_without_file_checksums_still_loads(exported, tmp_path):
    """Exports made before the manifest listed tokenizer.json and config.json load as they did."""
    folder = _copy(exported, tmp_path)
    _edit_json(folder / "manifest.json", lambda m: m.pop("files"))
    reference = Predictor(exported.output).logits(["北京大学举行毕业典礼"])
    np.testing.assert_array_equal(Predictor(folder).logits(["北京大学举行毕业典礼"]), reference)


# --------------------------------------------------------------------------- call arguments


@pytest.fixture(scope="module")
def predictor(exported):
    return Predictor(exported.output)


@pytest.mark.parametrize("size", [-5, 0, 2.5, True, "8"])
@pytest.mark.parametrize("texts", [["北京大学举行毕业典礼", "新股发行"], []], ids=["texts", "empty"])
def test_bad_batch_size_in_logits_is_a_value_error(predictor, texts, size):
    with pytest.raises(ValueError, match="batch_size"):
        predictor.logits(texts, batch_size=size)


@pytest.mark.parametrize("size", [-5, 0, 2.5, True])
def test_bad_batch_size_in_batches_is_a_value_error(predictor, size):
    with pytest.raises(ValueError, match="batch_size"):
        predictor.batches(np.array([3, 1, 2]), size)

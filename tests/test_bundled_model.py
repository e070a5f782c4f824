"""The bundled model (#22 §3): `Predictor()`, `predict TEXT`, `score FILE`, `serve` and `benchmark --onnx default`
use the model shipped in `tnews_deploy/default_model/` (or `$TNEWS_DEPLOY_MODEL`); an explicit model always wins;
the model's name and version are reported; `scripts/bundle_model.py` puts a verified export in place.

The tiny export of the conftest fixtures stands in for the bundled model: copied, given a `release`, and put where
the package looks for it (`tnews_deploy.models.BUNDLED_MODEL_DIR`, patched).
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from tnews_deploy import models
from tnews_deploy.cli import main
from tnews_deploy.errors import ModelLoadError
from tnews_deploy.models import MODEL_ENV, split_predict_arguments, split_score_arguments
from tnews_deploy.predictor import Predictor

ROOT = Path(__file__).resolve().parents[1]
TITLE = "北京大学举行毕业典礼"


def _copy_export(exported, folder: Path, release: dict | None = None) -> Path:
    shutil.copytree(exported.output, folder)
    if release is not None:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        (folder / "manifest.json").write_text(json.dumps({**manifest, "release": release}), encoding="utf-8")
    return folder


@pytest.fixture
def bundled(exported, tmp_path, monkeypatch) -> Path:
    """The tiny export as the bundled model tnews-compact 1.0.0; TNEWS_DEPLOY_MODEL unset."""
    folder = _copy_export(exported, tmp_path / "site" / "default_model", {"name": "tnews-compact", "version": "1.0.0"})
    monkeypatch.setattr(models, "BUNDLED_MODEL_DIR", folder)
    monkeypatch.delenv(MODEL_ENV, raising=False)
    return folder


@pytest.fixture
def no_bundled(tmp_path, monkeypatch) -> Path:
    """No bundled model in this installation (a checkout before the model landed)."""
    missing = tmp_path / "site" / "default_model"
    monkeypatch.setattr(models, "BUNDLED_MODEL_DIR", missing)
    monkeypatch.delenv(MODEL_ENV, raising=False)
    return missing


def test_predictor_without_a_model_loads_the_bundled_one_by_its_release(bundled, exported):
    predictor = Predictor(threads=1)
    assert predictor.model_dir == bundled
    assert (predictor.model_name, predictor.model_version) == ("tnews-compact", "1.0.0")
    assert predictor.model_label == "tnews-compact 1.0.0 (bundled)"
    assert predictor.predict(TITLE) == Predictor(exported.output, threads=1).predict(TITLE)
    for name in ("default", "tnews-compact", "TNEWS_Compact"):  # the bundled model's names, compared like packages
        assert Predictor(name, threads=1).model_dir == bundled


def test_name_and_version_without_a_release(exported, tmp_path, monkeypatch):
    plain = Predictor(exported.output, threads=1)
    assert (plain.model_name, plain.model_version) == (exported.output.name, None)
    assert plain.model_label == f"{exported.output.name} (folder {exported.output})"
    # a bundled folder whose manifest names no release is still the bundled model, of unknown version
    folder = _copy_export(exported, tmp_path / "default_model")
    monkeypatch.setattr(models, "BUNDLED_MODEL_DIR", folder)
    monkeypatch.delenv(MODEL_ENV, raising=False)
    unreleased = Predictor(threads=1)
    assert (unreleased.model_name, unreleased.model_version) == ("tnews-compact", None)


def test_an_explicit_folder_wins_over_the_bundled_model(bundled, exported, tmp_path, monkeypatch):
    explicit = Predictor(exported.output, threads=1)
    assert explicit.model_dir == exported.output and explicit.model_name == exported.output.name
    # an existing folder named like the bundled model wins over it
    monkeypatch.chdir(tmp_path)
    own = _copy_export(exported, tmp_path / "default", {"name": "mine", "version": "2.0"})
    predictor = Predictor("default", threads=1)
    assert predictor.model_dir == Path("default") and predictor.model_dir.resolve() == own.resolve()
    assert (predictor.model_name, predictor.model_version) == ("mine", "2.0")


def test_env_variable_replaces_the_default_but_not_an_explicit_model(bundled, exported, tmp_path, monkeypatch):
    other = _copy_export(exported, tmp_path / "other", {"name": "other-model", "version": "0.3"})
    monkeypatch.setenv(MODEL_ENV, str(other))
    default = Predictor(threads=1)
    assert default.model_dir == other and default.model_name == "other-model"
    assert default.model_label == f"other-model 0.3 (folder {other}, from {MODEL_ENV})"
    assert Predictor(exported.output, threads=1).model_dir == exported.output  # an explicit one wins
    assert Predictor("default", threads=1).model_dir == bundled  # and "default" is the bundled model
    monkeypatch.setenv(MODEL_ENV, "default")
    assert Predictor(threads=1).model_dir == bundled
    monkeypatch.setenv(MODEL_ENV, str(tmp_path / "gone"))
    with pytest.raises(ModelLoadError, match=f"^{MODEL_ENV}=.*gone: no such model folder"):
        Predictor(threads=1)


def test_missing_bundled_model_is_a_clear_error(no_bundled, exported):
    with pytest.raises(ModelLoadError) as caught:
        Predictor()
    message = str(caught.value)
    assert "bundled model (tnews-compact)" in message and str(no_bundled) in message and "missing" in message
    assert MODEL_ENV in message and "export folder" in message and "reinstall" in message
    with pytest.raises(ModelLoadError, match="bundled model"):
        Predictor("default")
    assert Predictor(exported.output, threads=1).model_dir == exported.output  # a folder needs no bundled model
    result = CliRunner().invoke(main, ["predict", TITLE])
    assert result.exit_code == 2 and result.output.startswith("error: the bundled model (tnews-compact)")
    assert len(result.output.strip().splitlines()) == 1
    served = CliRunner().invoke(main, ["serve"])
    assert served.exit_code == 2 and "error: the bundled model (tnews-compact)" in served.output


def test_which_predict_argument_is_the_model(bundled, exported, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = str(exported.output)
    assert split_predict_arguments([]) == (None, ())
    assert split_predict_arguments([TITLE, "国足备战"]) == (None, (TITLE, "国足备战"))
    assert split_predict_arguments(["-"]) == (None, ("-",))
    assert split_predict_arguments([folder, TITLE]) == (folder, (TITLE,))
    assert split_predict_arguments(["default", TITLE]) == ("default", (TITLE,))
    assert split_predict_arguments(["tnews-compact"]) == ("tnews-compact", ())
    for path_like in ("exports/nope", "./nope", "~/nope", ".nope", "nope.onnx", "C:\\models\\x"):
        assert split_predict_arguments([path_like, "x"]) == (path_like, ("x",)), path_like
    for text in ("hello", "nope", "hello world/x", "北京/上海", "Beijing"):
        assert split_predict_arguments([text, "x"]) == (None, (text, "x")), text


def test_predict_without_a_model_uses_the_bundled_one(bundled, exported):
    expected = Predictor(exported.output, threads=1).predict([TITLE, "nope"])
    result = CliRunner().invoke(main, ["predict", TITLE, "nope", "--format", "jsonl"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]  # JSONL: one record a line, nothing else
    assert [(r["text"], r["label"]) for r in rows] == [(TITLE, expected[0].label), ("nope", expected[1].label)]
    table = CliRunner().invoke(main, ["predict", TITLE, "--format", "table"])
    assert table.exit_code == 0, table.output
    assert table.stdout.splitlines()[0] == "tnews-compact 1.0.0 (bundled)"
    assert expected[0].label in table.stdout.splitlines()[1]
    piped = CliRunner().invoke(main, ["predict", "--format", "jsonl"], input=f"{TITLE}\n".encode())
    assert piped.exit_code == 0 and json.loads(piped.stdout)["label"] == expected[0].label


def test_predict_with_a_path_like_missing_model_is_an_error_not_a_text(bundled, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for missing in ("exports/nope", "./nope", "model.onnx"):
        result = CliRunner().invoke(main, ["predict", missing, "x"])
        assert result.exit_code == 2 and "no such model folder" in result.output, (missing, result.output)
    # a plain word that names no folder or model is a text, classified by the bundled model
    words = CliRunner().invoke(main, ["predict", "nope", "x", "--format", "jsonl"])
    assert words.exit_code == 0, words.output
    assert [json.loads(line)["text"] for line in words.stdout.splitlines()] == ["nope", "x"]


def test_predict_with_a_folder_uses_the_folder(bundled, exported):
    result = CliRunner().invoke(main, ["predict", str(exported.output), TITLE, "--format", "table"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == f"{exported.output.name} (folder {exported.output})"
    jsonl = CliRunner().invoke(main, ["predict", str(exported.output), TITLE, "--format", "jsonl"])
    assert [json.loads(line)["text"] for line in jsonl.stdout.splitlines()] == [TITLE]  # the folder is no text


def test_which_score_argument_is_the_model(bundled, exported, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "inputs").mkdir()
    (tmp_path / "titles.jsonl").write_text("{}\n")
    folder = str(exported.output)
    assert split_score_arguments([folder, "titles.jsonl"]) == (folder, ("titles.jsonl",))
    assert split_score_arguments(["default", "titles.jsonl"]) == ("default", ("titles.jsonl",))
    assert split_score_arguments(["titles.jsonl"]) == (None, ("titles.jsonl",))
    assert split_score_arguments(["inputs", "titles.jsonl"]) == (None, ("inputs", "titles.jsonl"))  # no model.onnx
    assert split_score_arguments(["data/*.jsonl"]) == (None, ("data/*.jsonl",))


def test_score_without_a_model_uses_the_bundled_one(bundled, exported, tmp_path):
    titles = tmp_path / "titles.jsonl"
    rows = [{"idx": i, "sentence": text} for i, text in enumerate([TITLE, "国足备战世界杯预选赛"])]
    titles.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    result = CliRunner().invoke(main, ["score", str(titles), "--output", str(tmp_path / "scores")])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["rows"], summary["errors"]) == (2, 0) and summary["model_dir"] == str(bundled)
    assert summary["model_sha256"] == exported.manifest["model"]["sha256"]
    explicit = CliRunner().invoke(main, ["score", str(exported.output), str(titles), "--output", str(tmp_path / "s2")])
    assert explicit.exit_code == 0 and json.loads(explicit.stdout)["model_dir"] == str(exported.output)
    no_input = CliRunner().invoke(main, ["score", str(exported.output), "--output", str(tmp_path / "s3")])
    assert no_input.exit_code == 2 and "no INPUT given" in no_input.output


def test_service_names_the_model_and_its_version(bundled, exported):
    from fastapi.testclient import TestClient

    from tnews_deploy.service import ServiceConfig, create_app

    with TestClient(create_app(ServiceConfig(threads=1))) as client:
        info = client.get("/v1/model").json()
        assert (info["name"], info["version"]) == ("tnews-compact", "1.0.0")
        answer = client.post("/v1/classify", json={"texts": [TITLE]}).json()
        assert answer["model"]["name"] == "tnews-compact" and answer["model"]["version"] == "1.0.0"
        metrics = client.get("/metrics").text
        assert 'name="tnews-compact"' in metrics and 'version="1.0.0"' in metrics
        schema = client.get("/openapi.json").json()["components"]["schemas"]["ModelSummary"]
        assert "version" in schema["properties"] and "version" in schema["required"]
    with TestClient(create_app(ServiceConfig(model_dir=exported.output, threads=1))) as client:
        info = client.get("/v1/model").json()
        assert (info["name"], info["version"]) == (exported.output.name, None)


def test_service_config_without_a_model_round_trips_through_the_environment(bundled, monkeypatch):
    from tnews_deploy.service import ServiceConfig

    env = ServiceConfig(threads=1).to_env()
    assert env["TNEWS_DEPLOY_MODEL_DIR"] == ""  # set (a stale value from an earlier config cannot leak through)
    monkeypatch.setenv("TNEWS_DEPLOY_MODEL_DIR", "/stale")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert ServiceConfig.from_env().model_dir is None


def test_benchmark_resolves_the_bundled_model_and_runs_onnx_only(bundled, exported, tmp_path, hf_data):
    from tnews_deploy.benchmark import run_benchmark
    from tnews_deploy.benchmark.config import BenchmarkConfig
    from tnews_deploy.benchmark.resolve import resolve_plan
    from tnews_deploy.errors import UserError

    # made elsewhere: the manifest's source checkpoint is not on this machine
    manifest_path = bundled / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["source"]["checkpoint"] = str(tmp_path / "elsewhere" / "checkpoint")
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
    settings = dict(onnx=(Path("default"),), output=tmp_path / "bench", max_sentences=16)
    plan = resolve_plan(BenchmarkConfig(pytorch=None, **settings))
    assert plan.checkpoint is None and plan.onnx == (bundled,) and len(plan.texts) == 16

    report = run_benchmark(
        BenchmarkConfig(
            pytorch=None, latency_sentences=4, warmup=1, rounds=1, batch_sizes=(8,), cold_start=False, **settings
        )
    )
    assert [b["backend"] for b in report["backends"]] == ["tnews-compact"]
    assert report["pytorch_checkpoint"] is None and report["reference"] == "tnews-compact"
    assert report["backends"][0]["speedup"]["latency_p50"] == 1.0
    markdown = (tmp_path / "bench" / "results.md").read_text(encoding="utf-8")
    assert markdown.startswith("# Benchmark: `tnews-compact`") and "×ref p50" in markdown

    # the data the manifest records is not on this machine: a clear error naming --data
    elsewhere = "/nonexistent-machine/tnews/hf"
    for block in (manifest["verification"]["evaluation"], manifest["source"]["run"]):
        recorded = block["data"]
        block["data"] = {**recorded, "path": elsewhere} if isinstance(recorded, dict) else elsewhere
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(UserError, match="not on this machine.*Pass --data"):
        resolve_plan(BenchmarkConfig(pytorch=None, **settings))
    plan = resolve_plan(BenchmarkConfig(pytorch=None, data=hf_data, **settings))
    assert plan.evaluation.data.path == str(hf_data)


def _bundle_script():
    spec = importlib.util.spec_from_file_location("bundle_model", ROOT / "scripts" / "bundle_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bundle_script_writes_the_release_and_replaces_an_older_model(exported, tmp_path, monkeypatch, caplog):
    script = _bundle_script()
    target = tmp_path / "pkg" / "default_model"
    target.parent.mkdir()
    assert script.main([str(exported.output), "--version", "1.0.0", "--target", str(target)]) == 0
    manifest = json.loads((target / "manifest.json").read_text(encoding="utf-8"))
    release = manifest["release"]
    assert (release["name"], release["version"]) == ("tnews-compact", "1.0.0")
    assert release["source_model_sha256"] == exported.manifest["model"]["sha256"] and release["date"]
    assert release["source_export"] == exported.output.name
    assert {p.name for p in target.iterdir()} == {p.name for p in exported.output.iterdir()}
    monkeypatch.setattr(models, "BUNDLED_MODEL_DIR", target)
    monkeypatch.delenv(MODEL_ENV, raising=False)
    assert Predictor(threads=1).model_label == "tnews-compact 1.0.0 (bundled)"

    assert script.main([str(exported.output), "--version", "1.1", "--target", str(target)]) == 0
    assert Predictor(threads=1).model_version == "1.1"
    assert sorted(p.name for p in target.parent.iterdir()) == ["default_model"]  # no partial or old copy left


def test_bundle_script_refuses_a_folder_over_20_mb(exported, tmp_path, capsys):
    script = _bundle_script()
    big = _copy_export(exported, tmp_path / "big")
    with (big / "padding.bin").open("wb") as fh:
        fh.truncate(21_000_000)  # sparse: 21 MB on paper, nothing on disk
    target = tmp_path / "pkg" / "default_model"
    target.parent.mkdir()
    assert script.main([str(big), "--version", "1.0.0", "--target", str(target)]) == 2
    err = capsys.readouterr().err
    assert re.search(r"big: 21\.\d MB, more than the bundled model's 20 MB", err), err
    assert not target.exists() and list(target.parent.iterdir()) == []
    # and one that does not load (a damaged file) is refused too, leaving the previous bundled model as it was
    assert script.main([str(exported.output), "--version", "1.0.0", "--target", str(target)]) == 0
    broken = _copy_export(exported, tmp_path / "broken")
    (broken / "tokenizer.json").write_text("{}", encoding="utf-8")
    assert script.main([str(broken), "--version", "2.0.0", "--target", str(target)]) == 2
    assert "sha256 differs" in capsys.readouterr().err
    assert json.loads((target / "manifest.json").read_text())["release"]["version"] == "1.0.0"


def test_a_benchmark_of_the_bundled_model_records_its_name_in_the_command(tmp_path):
    """`benchmark --onnx default`: results.md's command says `default`, not a path made relative to the output
    folder (`../../default`), which would name no model when run again."""
    from tnews_deploy.benchmark.config import BenchmarkConfig

    (tmp_path / "export").mkdir()
    config = BenchmarkConfig(pytorch=None, onnx=(Path("default"), tmp_path / "export"), output=tmp_path / "bench")
    command = config.to_command(relative_to=tmp_path / "bench")
    assert "--onnx default --onnx ../export" in command

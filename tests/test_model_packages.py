"""Models as pip packages: `tnews-deploy package` writes a wheel of a verified export; installed, the model is
found by name (`tnews_deploy.models` entry points) by `Predictor`, `predict`, `score` and `serve`."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import site
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from synthetic import make_rows
from tnews_deploy import ModelLoadError, Predictor, __version__
from tnews_deploy.cli import main

NAME = "Tiny_TNews.Model"  # normalised: tiny-tnews-model; in file names: tiny_tnews_model
KEY, MODULE = "tiny-tnews-model", "tiny_tnews_model"
ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str):
    return CliRunner().invoke(main, list(args))


def package(model_dir: Path, output: Path, *extra: str, name: str = NAME, version: str = "v1.0"):
    return cli("package", str(model_dir), "--name", name, "--version", version, "--output", str(output), *extra)


@pytest.fixture(scope="module")
def wheel(exported, tmp_path_factory) -> Path:
    result = package(exported.output, tmp_path_factory.mktemp("dist"))
    assert result.exit_code == 0, result.output
    path = Path(result.stdout.strip())
    assert path.name == f"{MODULE}-1.0-py3-none-any.whl"  # PEP 427 name, PEP 440 normal form of v1.0
    return path


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return [r["sentence"] for r in make_rows(2, seed=5)]


@pytest.fixture()
def installed(wheel, tmp_path, monkeypatch):
    """The wheel unpacked into a folder on sys.path: installed in this process as pip would (purelib)."""
    site_dir = tmp_path / "site-packages"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site_dir)
    monkeypatch.syspath_prepend(str(site_dir))
    yield site_dir / MODULE / KEY
    sys.modules.pop(MODULE, None)  # "uninstalled": the package's module (imported by its entry point) goes too


def test_wheel_follows_the_wheel_spec_and_carries_the_card(wheel, exported):
    from packaging.metadata import Metadata

    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        dist_info = f"{MODULE}-1.0.dist-info"
        record = archive.read(f"{dist_info}/RECORD").decode().splitlines()
        assert f"{dist_info}/RECORD,," in record
        listed = {}
        for line in record:
            path, digest, size = line.rsplit(",", 2)
            listed[path] = (digest, size)
        assert set(listed) == set(names)
        for path in names:
            if path.endswith("/RECORD"):
                continue
            data = archive.read(path)
            expected = "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            assert listed[path] == (expected, str(len(data))), path
        # the export folder, byte for byte
        for file in sorted(p for p in exported.output.iterdir() if p.is_file()):
            assert archive.read(f"{MODULE}/{KEY}/{file.name}") == file.read_bytes()
        wheel_file = archive.read(f"{dist_info}/WHEEL").decode()
        assert "Wheel-Version: 1.0" in wheel_file and "Root-Is-Purelib: true" in wheel_file
        assert "Tag: py3-none-any" in wheel_file
        assert archive.read(f"{dist_info}/entry_points.txt").decode().split() == [
            "[tnews_deploy.models]",
            KEY,
            "=",
            f"{MODULE}:MODEL_DIR",
        ]
        metadata = Metadata.from_email(archive.read(f"{dist_info}/METADATA"), validate=True)
    assert (metadata.name, str(metadata.version)) == (NAME, "1.0")
    assert [str(r) for r in metadata.requires_dist] == [f"tnews-deploy>={__version__}"]
    card = (exported.output / "README.md").read_text(encoding="utf-8")
    assert metadata.description_content_type.startswith("text/markdown")
    assert card.startswith("---\n") and not metadata.description.startswith("---")  # hub front matter left out
    assert metadata.description.strip() in card


def test_same_folder_name_and_version_give_the_same_wheel(exported, wheel, tmp_path):
    again = package(exported.output, tmp_path)
    assert again.exit_code == 0, again.output
    assert (tmp_path / wheel.name).read_bytes() == wheel.read_bytes()
    refused = package(exported.output, tmp_path)
    assert refused.exit_code == 2 and "exists" in refused.output and "--force" in refused.output
    assert package(exported.output, tmp_path, "--force").exit_code == 0


def test_installed_package_is_found_by_name_and_still_checked(installed, exported, texts, tmp_path, monkeypatch):
    reference = Predictor(exported.output, threads=1)
    for spelling in (NAME, KEY, "TINY-tnews_model"):  # compared like pip compares names
        by_name = Predictor(spelling, threads=1)
        assert by_name.model_dir == installed
        np.testing.assert_array_equal(by_name.predict_proba(texts), reference.predict_proba(texts))

    here = Path.cwd()
    monkeypatch.chdir(tmp_path)  # a folder of that name in the working folder wins over the package
    (tmp_path / KEY).mkdir()
    with pytest.raises(ModelLoadError, match=f"{KEY}/model.onnx: missing"):
        Predictor(KEY)
    monkeypatch.chdir(here)

    scores = tmp_path / "scores"
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"sentence": t}) + "\n" for t in texts), encoding="utf-8")
    result = cli("score", NAME, str(tmp_path / "in.jsonl"), "--output", str(scores), "--threads", "1")
    assert result.exit_code == 0, result.output
    assert json.loads((scores / "_SUCCESS").read_text())["model_sha256"] == reference.manifest["model"]["sha256"]

    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from tnews_deploy.service import ServiceConfig, create_app

    with TestClient(create_app(ServiceConfig(model_dir=Path(NAME), threads=1))) as client:
        assert client.get("/v1/model").json()["name"] == KEY
        answer = client.post("/v1/classify", json={"texts": texts[:2]}).json()["predictions"]
    assert [p["label_id"] for p in answer] == [p.label_id for p in reference.predict(texts[:2])]

    model = installed / "model.onnx"  # the load-time sha256 check runs on the installed copy
    data = model.read_bytes()
    model.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(ModelLoadError, match=r"model\.onnx: sha256 differs"):
        Predictor(NAME)


def test_unknown_name_lists_the_installed_packages_and_says_how_to_make_one(installed):
    with pytest.raises(ModelLoadError) as error:
        Predictor("no-such-model")
    message = str(error.value)
    assert "no such model folder" in message and "no installed model package" in message
    assert f"installed model packages: {KEY} 1.0" in message
    assert "tnews-deploy package" in message and "pip install" in message
    # (`predict no-such-model TEXT` reads an unknown word as a text for the bundled model; `serve` takes a model)
    result = cli("serve", "no-such-model")
    assert result.exit_code == 2 and result.output.startswith("error: no-such-model: no such model folder")
    with pytest.raises(ModelLoadError, match="no such model folder. Pass a folder"):
        Predictor("exports/no-such-folder")  # a path, not a name: the folder message alone


def test_package_refuses_bad_names_versions_and_folders(exported, trained_run, tmp_path):
    cases = [
        (package(exported.output, tmp_path, name="-tiny"), "not a valid package name"),
        (package(exported.output, tmp_path, name="tiny model"), "not a valid package name"),
        (package(exported.output, tmp_path, name="1tiny"), "must start with a letter"),
        (package(exported.output, tmp_path, version="one"), "not a valid version (PEP 440)"),
        (package(exported.output, tmp_path, name="numpy"), "already a module here"),
        (package(trained_run.run_dir, tmp_path), "training run"),
        (package(tmp_path / "nothing", tmp_path), "no such model folder"),
    ]
    unverified = tmp_path / "unverified"
    unverified.mkdir()
    for file in exported.output.iterdir():
        (unverified / file.name).write_bytes(file.read_bytes())
    manifest = json.loads((unverified / "manifest.json").read_text())
    manifest["verification"]["passed"] = False
    (unverified / "manifest.json").write_text(json.dumps(manifest))
    cases.append((package(unverified, tmp_path), "records no passed verification"))
    for result, words in cases:
        assert result.exit_code == 2, result.output
        assert result.output.startswith("error: ") and words in result.output and "Traceback" not in result.output
    assert not list(tmp_path.glob("*.whl")) and not list(tmp_path.glob(".*partial*"))


def _fresh_venv(folder: Path) -> Path:
    """A venv that sees this environment's packages (tnews-deploy, onnxruntime, pip) but installs into its own
    site-packages. `--system-site-packages` alone reaches the base interpreter's, not this venv's."""
    venv.EnvBuilder(system_site_packages=True, with_pip=False, symlinks=os.name != "nt").create(folder)
    python = folder / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    ours = [p for p in [*site.getsitepackages(), site.getusersitepackages()] if Path(p).is_dir()]
    (Path(purelib) / "_tnews_deploy_test_parent.pth").write_text(
        f"import site; list(map(site.addsitedir, {ours!r}))\n", encoding="utf-8"
    )
    return python


def test_wheel_installs_with_pip_predicts_by_name_and_uninstalls(wheel, exported, texts, tmp_path):
    python = _fresh_venv(tmp_path / "venv")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "OMP_NUM_THREADS": "1",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(python), *args], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)

    installed = run("-m", "pip", "install", "--no-deps", "--no-index", str(wheel))
    assert installed.returncode == 0, installed.stderr
    code = (
        "import json, sys; from tnews_deploy import Predictor; p = Predictor(sys.argv[1], threads=1); "
        "print(json.dumps({'dir': str(p.model_dir), 'probs': p.predict_proba(sys.argv[2:]).tolist()}))"
    )
    api = run("-c", code, NAME, *texts)
    assert api.returncode == 0, api.stderr
    answer = json.loads(api.stdout)
    assert Path(answer["dir"]).is_relative_to((tmp_path / "venv").resolve())
    reference = Predictor(exported.output, threads=1)
    np.testing.assert_allclose(answer["probs"], reference.predict_proba(texts), rtol=0, atol=1e-6)

    predicted = run("-m", "tnews_deploy", "predict", KEY, *texts, "--format", "jsonl", "--threads", "1")
    assert predicted.returncode == 0, predicted.stderr
    assert [json.loads(line)["label_id"] for line in predicted.stdout.splitlines()] == [
        p.label_id for p in reference.predict(texts)
    ]

    removed = run("-m", "pip", "uninstall", "-y", NAME)
    assert removed.returncode == 0, removed.stderr
    gone = run("-m", "tnews_deploy", "serve", NAME)  # (predict would read the unknown word as a text)
    assert gone.returncode == 2 and "no installed model package" in gone.stderr
    assert not list((tmp_path / "venv").rglob(MODULE))


def test_packaging_and_name_resolution_load_no_training_library():
    code = (
        "import sys, tnews_deploy.model_package, tnews_deploy.models; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'transformers', 'datasets'}))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"

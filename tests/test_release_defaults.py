"""Release-grade behaviour (issue 23): what the built package declares, one version everywhere, size defaults
that fit the user's data, and a failed `train` start that is quick and leaves nothing behind."""

from __future__ import annotations

import email
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from tnews_deploy import __version__
from tnews_deploy.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def built_wheel(tmp_path_factory) -> Path:
    """The wheel setuptools builds from a copy of the source tree (the tree itself gets no build files)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "tnews_deploy", src / "tnews_deploy", ignore=shutil.ignore_patterns("__pycache__"))
    out = subprocess.run([sys.executable, "-c", "from setuptools import build_meta as b; print(b.build_wheel('dist'))"],
                         cwd=src, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "deprecated" not in out.stderr.lower(), out.stderr[-3000:]  # e.g. project.license as a table
    return src / "dist" / out.stdout.strip().splitlines()[-1]


def test_wheel_declares_licence_version_types_and_ranges(built_wheel):
    with zipfile.ZipFile(built_wheel) as wheel:
        names = wheel.namelist()
        meta = email.message_from_bytes(wheel.read(next(n for n in names if n.endswith(".dist-info/METADATA"))))
        licence = wheel.read(next(n for n in names if n.endswith("licenses/LICENSE"))).decode()
    assert meta["Version"] == __version__
    assert meta["License-Expression"] == "Apache-2.0" and meta["License-File"] == "LICENSE"
    assert "Apache License" in licence and "Version 2.0, January 2004" in licence
    assert "tnews_deploy/py.typed" in names
    requires = meta.get_all("Requires-Dist")
    torch = [r.split(";")[0] for r in requires if r.startswith("torch") and "extra == \"train\"" in r]
    assert torch and "==" not in torch[0] and "<3" in torch[0], torch  # a range: an installed torch 2.x is kept
    assert not [r for r in requires if "==" in r.split(";")[0]], requires  # no pins in any extra


def test_cli_service_and_card_report_one_version(exported):
    from importlib.metadata import version

    from fastapi.testclient import TestClient

    from tnews_deploy.service import ServiceConfig, create_app

    assert version("tnews-deploy") == __version__  # the installed metadata reads the same number
    result = CliRunner().invoke(main, ["--version"], prog_name="tnews-deploy")
    assert result.exit_code == 0 and result.output.strip() == f"tnews-deploy, version {__version__}"
    with TestClient(create_app(ServiceConfig(model_dir=exported.output))) as client:
        info = client.get("/v1/model").json()
    assert info["tnews_deploy_version"] == __version__
    assert info["manifest"]["versions"]["tnews_deploy"] == __version__  # the exporting version
    card = (exported.output / "README.md").read_text(encoding="utf-8")
    assert f"tnews-deploy {__version__}" in card

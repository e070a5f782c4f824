"""Importing configs, constants and the CLI never loads the training libraries (fresh interpreters)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "datasets", "sklearn")


@pytest.mark.parametrize(
    "module",
    [
        "tnews_deploy.training.config",
        "tnews_deploy.export.source",
        "tnews_deploy.cli",
        "tnews_deploy.runfiles",
        "tnews_deploy.training",
        "tnews_deploy.export",
        "tnews_deploy.datasource",
        "tnews_deploy.export.card",
    ],
)
def test_import_loads_no_training_library(module):
    code = f"import sys, {module}; print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"importing {module} loaded {result.stdout.strip()}"


def test_lazy_packages_still_export_their_names():
    import tnews_deploy.export as export
    import tnews_deploy.training as training

    for package in (training, export):
        for name in package.__all__:
            assert getattr(package, name) is not None
    with pytest.raises(AttributeError):
        training.no_such_name  # noqa: B018


# The runtime modules (a runtime-only install: onnxruntime, tokenizers, numpy, pyarrow, fastapi) load neither the
# training libraries nor the training/export layers; the constant and config modules load no third-party package.
RUNTIME_FORBIDDEN = (
    *HEAVY,
    "optimum",
    "ray",
    "tnews_deploy.training",
    "tnews_deploy.export",
    "tnews_deploy.compress",
    "tnews_deploy.data",
)
STDLIB_ONLY_FORBIDDEN = (*RUNTIME_FORBIDDEN, "numpy", "onnxruntime", "onnx", "tokenizers", "pyarrow", "fastapi")


def _loaded(module: str, candidates: tuple[str, ...]) -> list[str]:
    """Which of `candidates` (packages or modules) a fresh interpreter has loaded after importing `module`."""
    code = (
        f"import json, sys, {module}; print(json.dumps(sorted(c for c in {candidates!r} "
        "if any(m == c or m.startswith(c + '.') for m in sys.modules))))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "module, forbidden",
    [
        ("tnews_deploy.predictor", RUNTIME_FORBIDDEN),
        ("tnews_deploy.service.app", RUNTIME_FORBIDDEN),
        ("tnews_deploy.scoring", RUNTIME_FORBIDDEN),
        ("tnews_deploy.scoring.io", RUNTIME_FORBIDDEN),
        ("tnews_deploy.scoring.local", RUNTIME_FORBIDDEN),
        ("tnews_deploy.scoring.ray_engine", RUNTIME_FORBIDDEN),
        ("tnews_deploy.scoring.config", STDLIB_ONLY_FORBIDDEN),
        ("tnews_deploy.inputs", STDLIB_ONLY_FORBIDDEN),
        ("tnews_deploy.choices", STDLIB_ONLY_FORBIDDEN),
        ("tnews_deploy.formats", STDLIB_ONLY_FORBIDDEN),
        ("tnews_deploy.defaults", STDLIB_ONLY_FORBIDDEN),
        # the export layer sits below training: its defaults come from `tnews_deploy.defaults`, not `training.config`
        ("tnews_deploy.export.exporter", (*HEAVY, "tnews_deploy.training")),
    ],
)
def test_module_loads_only_what_its_layer_may(module, forbidden):
    assert _loaded(module, forbidden) == [], f"importing {module} loaded what its layer must not"

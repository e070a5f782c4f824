"""Importing configs, constants and the CLI never loads the training libraries (fresh interpreters)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "datasets", "sklearn")


@pytest.mark.parametrize(
    "module",
    ["tnews_deploy.training.config", "tnews_deploy.export.source", "tnews_deploy.cli", "tnews_deploy.runfiles",
     "tnews_deploy.training", "tnews_deploy.export", "tnews_deploy.datasource", "tnews_deploy.export.card"],
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

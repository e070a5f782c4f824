"""benchmarks/load_test.py compares several models in one run: a row per model and level, each model identified."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

LOAD_TEST = Path(__file__).resolve().parents[1] / "benchmarks" / "load_test.py"


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (apt-get install wrk)")
def test_two_models_each_get_their_rows_and_identity(exported, hf_data, tmp_path):
    folders = [tmp_path / "first", tmp_path / "second"]
    for folder in folders:
        shutil.copytree(exported.output, folder)
    stem = tmp_path / "load-test"
    result = subprocess.run(
        [
            sys.executable,
            str(LOAD_TEST),
            *map(str, folders),
            "--data",
            str(hf_data),
            "--concurrency",
            "1",
            "--duration",
            "1",
            "--server-threads",
            "1",
            "--results",
            str(stem),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]

    report = json.loads(stem.with_suffix(".json").read_text(encoding="utf-8"))
    manifest_sha256 = hashlib.sha256((exported.output / "manifest.json").read_bytes()).hexdigest()
    assert [(m["name"], m["folder"], m["manifest_sha256"]) for m in report["models"]] == [
        ("first", str(folders[0]), manifest_sha256),
        ("second", str(folders[1]), manifest_sha256),
    ]
    assert all("version" in m for m in report["models"])
    assert sorted(row["model"] for row in report["summary"]) == ["first", "second"]
    assert all(row["requests_per_s"] > 0 and row["non_2xx"] == 0 for row in report["summary"])
    assert sorted(run["model"] for run in report["runs"]) == ["first", "second"]

    table = [line for line in stem.with_suffix(".md").read_text(encoding="utf-8").splitlines() if line.startswith("|")]
    assert "| model |" in table[0]
    assert any("| first |" in line for line in table[2:]) and any("| second |" in line for line in table[2:])

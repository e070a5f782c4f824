"""A quick loop exists: `pytest -m "not slow"` leaves out the tests that train, kill, launch or install."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FILES = ["tests/test_hardening.py", "tests/test_distill.py"]


def test_slow_tests_are_marked_and_the_rest_is_the_quick_loop():
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-q",
            "-p",
            "no:cacheprovider",
            "--strict-markers",
            "-m",
            "slow",
            *FILES,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )  # --strict-markers: `slow` is a registered marker
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    slow = {line.split("[")[0] for line in result.stdout.splitlines() if "::" in line}

    assert "tests/test_hardening.py::test_kill_9_during_grid_then_resume_finishes_only_the_rest" in slow
    assert "tests/test_hardening.py::test_bad_input_battery_over_http" not in slow
    # a test is slow through a fixture that trains its own model (test_distill's SLOW_FIXTURES) ...
    assert "tests/test_distill.py::test_killed_run_resumes_from_its_checkpoint" in slow
    # ... and one that does not use it stays in the quick loop
    assert "tests/test_distill.py::test_distillation_loss_terms" not in slow

"""Several `grid` workers on one folder: every run is trained once, by one worker, and a dead worker's run is
taken over."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

fcntl = pytest.importorskip("fcntl")  # claims need flock (not on Windows)


def test_a_claimed_run_is_refused_to_others_until_released(tmp_path):
    from tnews_deploy.training.claims import RunClaim

    first, second = RunClaim(tmp_path, "full-500"), RunClaim(tmp_path, "full-500")
    assert first.acquire()
    assert not second.acquire()
    assert second.holder() == f"pid {os.getpid()} on {os.uname().nodename}"
    assert RunClaim(tmp_path, "full-1000").acquire()  # another run is free
    first.release()
    assert second.acquire()
    second.release()


def test_a_killed_workers_claim_is_free(tmp_path):
    """kill -9 leaves the lock file behind, but not the lock: the kernel drops it with the process."""
    from tnews_deploy.training.claims import RunClaim

    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import sys, time; from tnews_deploy.training.claims import RunClaim; "
                f"claim = RunClaim({str(tmp_path)!r}, 'full-500'); assert claim.acquire(); print('held', flush=True); "
                "time.sleep(60)"
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        assert not RunClaim(tmp_path, "full-500").acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (tmp_path / ".claims" / "full-500.lock").is_file()
    assert RunClaim(tmp_path, "full-500").acquire()


def _grid_command(model: Path, data: Path, output: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "tnews_deploy.cli",
        "grid",
        "--model",
        str(model),
        "--data",
        str(data),
        "--variants",
        "full,freeze-encoder",
        "--train-sizes",
        "60,120",
        "--eval-size",
        "150",
        "--selection-size",
        "90",
        "--epochs",
        "1",
        "--min-steps",
        "30",
        "--lr",
        "3e-3",
        "--batch-size",
        "16",
        "--max-length",
        "32",
        "--patience",
        "2",
        "--output",
        str(output),
        "--quiet",
    ]


@pytest.mark.slow
def test_two_workers_share_a_grid_and_train_each_run_once(tiny_model, hf_data, tmp_path):
    output = tmp_path / "grid"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    workers = [
        subprocess.Popen(
            _grid_command(tiny_model, hf_data, output),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    outputs = [w.communicate(timeout=600) for w in workers]
    for worker, (_out, err) in zip(workers, outputs):
        assert worker.returncode == 0, err[-3000:]
    trained = [set(re.findall(r"\(training\) -> \S+/([\w-]+)", err)) for _, err in outputs]
    assert trained[0] | trained[1] == {"full-60", "full-120", "freeze-encoder-60", "freeze-encoder-120"}
    assert not trained[0] & trained[1]  # no run trained twice
    assert trained[0] and trained[1]  # both worked
    skipped = [
        set(re.findall(r"\] (?:[\w-]+ × \d+) \(trained by pid \d+ on \S+, skipped\)", err)) for _, err in outputs
    ]
    assert skipped[0] or skipped[1]
    results = json.loads((output / "results.json").read_text())
    assert results["finished_runs"] == results["planned_runs"] == 4
    assert results["best"] is not None
    assert not list(output.glob(".*.tmp"))  # every atomic write completed


@pytest.mark.slow
def test_a_worker_takes_over_a_run_left_by_a_dead_worker(tiny_model, hf_data, tmp_path):
    """A run whose worker died unfinished (its lock gone with it) is trained by the next worker to reach it."""
    from tnews_deploy.training.claims import RunClaim
    from tnews_deploy.training.grid import GridConfig, run_grid

    overrides = dict(
        eval_size=150,
        selection_size=90,
        epochs=1.0,
        min_steps=10,
        lr=3e-3,
        batch_size=16,
        max_length=32,
        early_stopping_patience=0,
    )
    grid = GridConfig(
        model=str(tiny_model),
        data=str(hf_data),
        output=tmp_path / "grid",
        variants=("freeze-encoder",),
        train_sizes=(60, 120),
        overrides=overrides,
    )
    blocker = RunClaim(tmp_path / "grid", "freeze-encoder-60")
    assert blocker.acquire()  # another worker holds the first run ...

    import tnews_deploy.training.grid as grid_module

    real_train_run = grid_module.train_run

    def train_then_let_go(config, run_dir, *args, **kwargs):
        result = real_train_run(config, run_dir, *args, **kwargs)
        blocker.release()  # ... and dies while this worker trains the second one
        return result

    grid_module.train_run = train_then_let_go
    try:
        results = run_grid(grid, quiet=True)
    finally:
        grid_module.train_run = real_train_run
    assert results["finished_runs"] == 2

"""`torchrun` / `accelerate launch` of `train`: one DDP run (gloo, 2 CPU processes), one run folder.

The comparison with a single process is exact in what can be exact. DDP on 2 ranks × batch 8 sees the same
global batches as 1 process × batch 16 (Accelerate shards the same seeded sampler's batches over the ranks),
and averaging two half-batch gradients equals the full-batch gradient when the halves are equal in size. Two
things break that, and the test removes both: dropout (each rank draws its own masks; the test's model has
none) and a short last batch (ranks of unequal size weigh their halves equally; the training set is a
multiple of 16). What remains is floating-point order in the gradient all-reduce, so the losses are compared
to 1e-3 and the predictions must agree on ≥ 98 % of the evaluation set with macro-F1 within 0.02 (they were
identical on this machine).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tnews_deploy.runfiles import is_finished

pytestmark = pytest.mark.slow  # torchrun launches of 2-process training runs

pytest.importorskip("torch")
ROOT = Path(__file__).resolve().parents[1]
SETTINGS = [
    "--train-size",
    "320",
    "--eval-size",
    "150",
    "--selection-size",
    "90",
    "--epochs",
    "1",
    "--min-steps",
    "100",
    "--lr",
    "3e-3",
    "--max-length",
    "32",
    "--patience",
    "0",
]
TORCHRUN = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]


def _env(**extra: str) -> dict[str, str]:
    """This checkout importable in the launched processes, one thread each."""
    return {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        **extra,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }


def _launch(prefix: list[str], args: list[str], **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *prefix, "-m", "tnews_deploy", *args],
        capture_output=True,
        text=True,
        env=_env(**env),
        timeout=600,
        cwd=ROOT,
    )


def _read(run: Path, name: str):
    return json.loads((run / name).read_text(encoding="utf-8"))


def _losses(run: Path) -> dict[int, float]:
    return {e["step"]: e["loss"] for e in _read(run, "log_history.json") if "loss" in e}


@pytest.fixture(scope="module")
def no_dropout_model(tiny_model, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-no-dropout") / "model"
    shutil.copytree(tiny_model, folder)
    config = _read(folder, "config.json")
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder


@pytest.mark.parametrize("variant", ["full", "freeze-embeddings"])
def test_two_process_ddp_train_matches_one_process_with_the_same_global_batch(
    no_dropout_model, hf_data, tmp_path, variant
):
    common = ["train", "--variant", variant, "--model", str(no_dropout_model), "--data", str(hf_data), *SETTINGS]
    ddp = _launch(TORCHRUN, [*common, "--batch-size", "8", "--output", str(tmp_path / "ddp")])
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    single = _launch([], [*common, "--batch-size", "16", "--output", str(tmp_path / "single")])
    assert single.returncode == 0, single.stderr[-3000:]
    run, one = tmp_path / "ddp", tmp_path / "single"

    # one coherent folder, written by the main rank: the same files as a one-process run, finished
    assert is_finished(run)
    assert sorted(p.name for p in run.iterdir()) == sorted(p.name for p in one.iterdir())
    config, metrics = _read(run, "run_config.json"), _read(run, "metrics.json")
    assert (config["world_size"], config["effective_batch_size"], metrics["world_size"]) == (2, 16, 2)
    one_config = _read(one, "run_config.json")
    assert (one_config["world_size"], one_config["effective_batch_size"]) == (1, 16)
    # the schedule counts optimiser steps over the global batch (2 × 8), as one process with batch 16 does
    assert config["total_steps"] == one_config["total_steps"]
    ddp_loss, one_loss = _losses(run), _losses(one)
    assert ddp_loss.keys() == one_loss.keys()
    assert all(abs(ddp_loss[s] - one_loss[s]) < 1e-3 for s in ddp_loss), (ddp_loss, one_loss)
    # the same model: predictions and metrics (floating-point order in the all-reduce is all that differs)
    a, b = _read(run, "predictions.json"), _read(one, "predictions.json")
    assert a["ids"] == b["ids"] and a["labels"] == b["labels"]
    agreement = sum(x == y for x, y in zip(a["predictions"], b["predictions"])) / len(a["predictions"])
    assert agreement >= 0.98
    assert abs(metrics["macro_f1"] - _read(one, "metrics.json")["macro_f1"]) <= 0.02
    if variant == "full":  # equality could hold for a model that does not learn; this one does
        history = [e for e in _read(run, "log_history.json") if "eval_loss" in e]
        assert history[-1]["eval_loss"] < history[0]["eval_loss"] - 0.2
    # the main rank speaks, once
    assert ddp.stdout.count("macro-F1") == 1 and ddp.stdout.count(f"training {variant}") == 1
    assert "× 2 processes" in ddp.stdout


def test_grid_under_torchrun_trains_each_cell_with_ddp_and_rank_0_writes_the_results(
    no_dropout_model, hf_data, tmp_path
):
    grid = tmp_path / "grid"
    result = _launch(
        TORCHRUN,
        [
            "grid",
            "--variants",
            "full,freeze-encoder",
            "--train-sizes",
            "320",
            "--model",
            str(no_dropout_model),
            "--data",
            str(hf_data),
            *SETTINGS[2:],
            "--batch-size",
            "8",
            "--output",
            str(grid),
            "--quiet",
        ],
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = _read(grid, "results.json")
    assert sorted(r["run"] for r in results["runs"]) == ["freeze-encoder-320", "full-320"]
    for run in ("full-320", "freeze-encoder-320"):
        assert is_finished(grid / run) and _read(grid / run, "run_config.json")["effective_batch_size"] == 16
    assert result.stdout.count("best run: full-320 ->") == 1  # the main rank alone prints the table
    assert results["command"].startswith("tnews-deploy grid")


def test_a_killed_ddp_run_resumes_from_its_saved_step(no_dropout_model, hf_data, tmp_path):
    """kill -9 of the whole launch once a checkpoint is saved, then the same command: it continues from there."""
    import time

    import psutil  # (accelerate's dependency)

    run = tmp_path / "run"
    args = [
        *TORCHRUN,
        "-m",
        "tnews_deploy",
        "train",
        "--model",
        str(no_dropout_model),
        "--data",
        str(hf_data),
        *SETTINGS,
        "--min-steps",
        "600",
        "--save-every",
        "50",
        "--batch-size",
        "8",
        "--output",
        str(run),
        "--quiet",
    ]
    env = _env()
    launch = subprocess.Popen(
        [sys.executable, *args],
        env=env,
        cwd=ROOT,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while not list((run / "trainer").glob("checkpoint-*/trainer_state.json")) and launch.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint within 300 s"
        time.sleep(0.05)
    # the agent and its workers (which run in their own process groups: killing the agent alone leaves them on)
    for process in [psutil.Process(launch.pid), *psutil.Process(launch.pid).children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    launch.wait()
    assert not is_finished(run), "the run finished before it could be killed"

    resumed = subprocess.run([sys.executable, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    metrics = _read(run, "metrics.json")
    assert len(metrics["resumed_from_steps"]) == 1, resumed.stderr[-3000:] and metrics["resumed_from_steps"][0] >= 50
    assert metrics["steps_this_invocation"] == metrics["steps"] - metrics["resumed_from_steps"][0]
    assert metrics["world_size"] == 2 and not (run / "trainer").exists()

"""Release-grade behaviour (issue 23): what the built package declares, one version everywhere, size defaults
that fit the user's data, and a failed `train` start that is quick and leaves nothing behind."""

from __future__ import annotations

import email
import json
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
    out = subprocess.run(
        [sys.executable, "-c", "from setuptools import build_meta as b; print(b.build_wheel('dist'))"],
        cwd=src,
        capture_output=True,
        text=True,
        timeout=300,
    )
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
    torch = [r.split(";")[0] for r in requires if r.startswith("torch") and 'extra == "train"' in r]
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


# --------------------------------------------------------------------------- sizes that fit the user's data

TOPICS = ("culture", "finance", "sports", "tech")


@pytest.fixture(scope="module")
def news_csv(tmp_path_factory) -> Path:
    """The issue's own-data set: 4,000 rows of string topics, its own column names, no validation file."""
    import csv
    import random

    from synthetic import make_sentence

    rng = random.Random(23)
    rows = [(make_sentence(rng, i), topic) for i, topic in enumerate(TOPICS) for _ in range(1000)]
    rng.shuffle(rows)
    path = tmp_path_factory.mktemp("own") / "news.csv"
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(("headline", "category"))
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def news(news_csv):
    from tnews_deploy.data import load_data
    from tnews_deploy.datasource import DataSource

    return load_data(DataSource(str(news_csv), text_field="headline", label_field="category"))


NEWS_FLAGS = ["--text-field", "headline", "--label-field", "category", "--train-size", "1000"]
QUICK = ["--epochs", "1", "--min-steps", "8", "--lr", "3e-3", "--batch-size", "64", "--max-length", "32", "--quiet"]


def test_a_holdout_smaller_than_the_defaults_gets_sizes_that_fit_and_says_so(news, tmp_path, caplog):
    from synthetic import make_rows, write_hf_jsonl
    from tnews_deploy.data import SplitConfig, evaluation_split, load_data, make_splits

    held_out = len(news["validation"])
    assert held_out < 3000  # the defaults, 2,000 + 1,000, do not fit it
    with caplog.at_level("INFO", logger="tnews_deploy.data"):
        splits = make_splits(news, SplitConfig(train_sizes=(1000,)))
    evaluation, selection = len(splits.evaluation), len(splits.selection)
    assert evaluation + selection == held_out and abs(evaluation - 2 * selection) <= 2  # shared like the defaults
    assert not set(splits.evaluation["idx"]) & set(splits.selection["idx"])
    said = [r.getMessage() for r in caplog.records if f"{held_out:,}" in r.getMessage()]
    assert len(said) == 1 and f"{evaluation:,}" in said[0] and f"{selection:,}" in said[0], said
    assert evaluation_split(news)["idx"] == splits.evaluation["idx"]  # what export draws without a run record

    caplog.clear()  # a validation split that holds the defaults keeps them, quietly
    dsd = load_data(str(write_hf_jsonl(tmp_path, {"train": make_rows(20, 1), "validation": make_rows(210, 2)})))
    with caplog.at_level("INFO", logger="tnews_deploy.data"):
        splits = make_splits(dsd, SplitConfig(train_sizes=()))
    assert (len(splits.evaluation), len(splits.selection)) == (2000, 1000)
    assert not [r for r in caplog.records if "fewer than the default" in r.getMessage()]


def test_sizes_given_are_kept_the_other_fits_beside_them_and_impossible_ones_fail_as_before(news):
    from tnews_deploy.data import SplitConfig, make_splits
    from tnews_deploy.errors import ConfigError

    assert len(news["validation"]) == 800
    for asked, drawn in [
        (dict(eval_size=300), (300, 500)),  # the selection slice takes the rest
        (dict(selection_size=100), (700, 100)),
        (dict(eval_size=300, selection_size=100), (300, 100)),
    ]:
        splits = make_splits(news, SplitConfig(train_sizes=(), **asked))
        assert (len(splits.evaluation), len(splits.selection)) == drawn, asked
    for asked in [
        dict(eval_size=2000),
        dict(eval_size=2000, selection_size=1000),
        dict(eval_size=600, selection_size=300),
    ]:
        sizes = (asked["eval_size"], asked.get("selection_size", 1000))
        with pytest.raises(
            ConfigError,
            match=rf"eval size {sizes[0]} \+ selection size {sizes[1]} exceed the "
            r"800 validation sentences; lower --eval-size or --selection-size",
        ):
            make_splits(news, SplitConfig(train_sizes=(), **asked))


@pytest.mark.slow
def test_the_issues_own_csv_trains_with_no_size_flags(tmp_path, tiny_model, news_csv, news):
    """`train --data news.csv --train-size 1000` with no --eval-size/--selection-size: trains, records the sizes it
    drew (export and benchmark draw the same evaluation set from them), and the same command reuses the run."""
    from tnews_deploy.data import evaluation_split

    run = tmp_path / "run"
    command = ["train", "--model", str(tiny_model), "--data", str(news_csv), *NEWS_FLAGS, *QUICK, "--output", str(run)]
    first = CliRunner().invoke(main, command)
    assert first.exit_code == 0, first.output
    recorded = json.loads((run / "run_config.json").read_text(encoding="utf-8"))
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    assert recorded["eval_size"] + recorded["selection_size"] == len(news["validation"])
    assert (metrics["eval_size"], metrics["selection_size"]) == (recorded["eval_size"], recorded["selection_size"])
    scored = json.loads((run / "predictions.json").read_text(encoding="utf-8"))["ids"]
    assert evaluation_split(news, recorded["eval_size"], recorded["seed"])["idx"] == scored

    again = CliRunner().invoke(main, command)  # finished: reused, not refused as a run of other settings
    assert again.exit_code == 0, again.output
    assert json.loads((run / "metrics.json").read_text(encoding="utf-8")) == metrics

    refused = CliRunner().invoke(main, [*command[:-1], str(tmp_path / "explicit"), "--eval-size", "2000"])
    assert refused.exit_code == 2
    assert "eval size 2000 + selection size 1000 exceed the 800 validation sentences" in refused.output


@pytest.mark.slow
def test_a_grid_on_the_own_csv_needs_no_size_flags(tmp_path, tiny_model, news_csv, news):
    out = tmp_path / "grid"
    result = CliRunner().invoke(
        main,
        [
            "grid",
            "--model",
            str(tiny_model),
            "--data",
            str(news_csv),
            "--text-field",
            "headline",
            "--label-field",
            "category",
            "--variants",
            "freeze-encoder",
            "--train-sizes",
            "200",
            *QUICK,
            "--output",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert results["eval_size"] + results["selection_size"] == len(news["validation"])
    assert f"evaluation set {results['eval_size']:,} validation sentences" in (out / "results.md").read_text()


# --------------------------------------------------------------------------- a failed start is quick and clean


def _train_process(tmp_path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """`python -m tnews_deploy train` in a process of its own, whose hub settings come from `env` alone."""
    import os

    environment = {**os.environ, "HF_HOME": str(tmp_path / "hf-home"), **env}  # an empty hub cache
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_ENDPOINT"):
        if name not in env:
            environment.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "tnews_deploy", "train", *args],
        capture_output=True,
        text=True,
        env=environment,
        cwd=tmp_path,
        timeout=600,
    )


def test_offline_without_the_sources_fails_naming_both_and_leaves_no_run_folder(tmp_path):
    """HF_HUB_OFFLINE=1 and hub ids that no cache holds: one error line for the model and the data, no
    'training ...' announcement, no run folder (no network is touched: offline, nothing cached)."""
    run = tmp_path / "runs" / "r"
    done = _train_process(
        tmp_path,
        {"HF_HUB_OFFLINE": "1"},
        "--model",
        "no-such-org/no-such-model",
        "--data",
        "no-such-org/no-such-data",
        "--output",
        str(run),
    )
    assert done.returncode == 2, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "no-such-org/no-such-model" in errors[0] and "no-such-org/no-such-data" in errors[0]
    assert "HF_HUB_OFFLINE" in errors[0] and "Traceback" not in done.stderr
    assert not done.stdout.startswith("training ")
    assert not (tmp_path / "runs").exists()


def test_an_unreachable_hub_gets_one_try_and_the_way_out(tmp_path):
    """Not offline, the hub endpoint refusing connections (a closed port on this machine): no retries, one line
    that names both sources and HF_HUB_OFFLINE, nothing left behind."""
    import socket

    with socket.socket() as s:  # a port nothing listens on once this closes
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = tmp_path / "runs" / "r"
    done = _train_process(
        tmp_path,
        {"HF_ENDPOINT": f"http://127.0.0.1:{port}"},
        "--model",
        "no-such-org/model",
        "--data",
        "no-such-org/data",
        "--output",
        str(run),
    )
    assert done.returncode == 2, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "no-such-org/model" in errors[0] and "no-such-org/data" in errors[0], errors
    assert errors[0].count("cannot be reached") == 2 and "set HF_HUB_OFFLINE=1" in errors[0]
    assert "Retrying" not in done.stderr and not done.stdout.startswith("training ")
    assert not (tmp_path / "runs").exists()


def test_local_sources_that_cannot_work_are_named_before_any_announcement_or_folder(
    tmp_path, tiny_model, hf_data, news_csv
):
    runner = CliRunner()
    run = tmp_path / "runs" / "r"
    both = runner.invoke(
        main,
        ["train", "--model", str(tmp_path / "no-model"), "--data", str(tmp_path / "no-data"), "--output", str(run)],
    )
    assert both.exit_code == 2
    assert "no-model: no such model folder" in both.output and "no-data: no such file or folder" in both.output
    model_only = runner.invoke(main, ["train", "--model", str(hf_data), "--data", str(hf_data), "--output", str(run)])
    assert model_only.exit_code == 2 and "not a transformers model folder" in model_only.output
    too_big = runner.invoke(
        main,
        [
            "train",
            "--model",
            str(tiny_model),
            "--data",
            str(news_csv),
            *NEWS_FLAGS,
            "--selection-size",
            "900",
            "--output",
            str(run),
        ],
    )
    assert too_big.exit_code == 2 and "exceed the 800 validation sentences" in too_big.output
    grid = runner.invoke(
        main,
        [
            "grid",
            "--model",
            str(tmp_path / "no-model"),
            "--data",
            str(tmp_path / "no-data"),
            "--output",
            str(tmp_path / "runs" / "grid"),
        ],
    )
    assert grid.exit_code == 2 and "no-model" in grid.output and "no-data" in grid.output
    for result in (both, model_only, too_big, grid):
        assert not [line for line in result.output.splitlines() if line.startswith("training ")]
        assert "Traceback" not in result.output
    assert not (tmp_path / "runs").exists()


def test_offline_a_hub_model_is_found_in_the_local_cache_or_refused_at_once(tmp_path, tiny_model, monkeypatch):
    """HF_HUB_OFFLINE=1: a hub id whose files the local cache holds passes the check; one it does not hold is
    refused, naming HF_HUB_OFFLINE (no network call either way)."""
    from huggingface_hub import constants

    from tnews_deploy.errors import ModelError
    from tnews_deploy.training.run import check_model_source

    snapshot = tmp_path / "hub" / "models--someone--tiny-bert" / "snapshots" / ("0" * 40)
    shutil.copytree(tiny_model, snapshot)
    (tmp_path / "hub" / "models--someone--tiny-bert" / "refs").mkdir()
    (tmp_path / "hub" / "models--someone--tiny-bert" / "refs" / "main").write_text("0" * 40)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    check_model_source("someone/tiny-bert")
    with pytest.raises(ModelError, match=r"someone/other-bert: .*HF_HUB_OFFLINE is set.*not in the local"):
        check_model_source("someone/other-bert")

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
    for asked, drawn in [(dict(eval_size=300), (300, 500)),  # the selection slice takes the rest
                         (dict(selection_size=100), (700, 100)),
                         (dict(eval_size=300, selection_size=100), (300, 100))]:
        splits = make_splits(news, SplitConfig(train_sizes=(), **asked))
        assert (len(splits.evaluation), len(splits.selection)) == drawn, asked
    for asked in [dict(eval_size=2000), dict(eval_size=2000, selection_size=1000),
                  dict(eval_size=600, selection_size=300)]:
        sizes = (asked["eval_size"], asked.get("selection_size", 1000))
        with pytest.raises(ConfigError, match=rf"eval size {sizes[0]} \+ selection size {sizes[1]} exceed the "
                                              r"800 validation sentences; lower --eval-size or --selection-size"):
            make_splits(news, SplitConfig(train_sizes=(), **asked))


def test_the_issues_own_csv_trains_with_no_size_flags(tmp_path, tiny_model, news_csv, news):
    """`train --data news.csv --train-size 1000` with no --eval-size/--selection-size: trains, records the sizes it
    drew (export and benchmark draw the same evaluation set from them), and the same command reuses the run."""
    from tnews_deploy.data import evaluation_split

    run = tmp_path / "run"
    command = ["train", "--model", str(tiny_model), "--data", str(news_csv), *NEWS_FLAGS, *QUICK,
               "--output", str(run)]
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


def test_a_grid_on_the_own_csv_needs_no_size_flags(tmp_path, tiny_model, news_csv, news):
    out = tmp_path / "grid"
    result = CliRunner().invoke(main, [
        "grid", "--model", str(tiny_model), "--data", str(news_csv), "--text-field", "headline", "--label-field",
        "category", "--variants", "freeze-encoder", "--train-sizes", "200", *QUICK, "--output", str(out)])
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert results["eval_size"] + results["selection_size"] == len(news["validation"])
    assert f"evaluation set {results['eval_size']:,} validation sentences" in (out / "results.md").read_text()


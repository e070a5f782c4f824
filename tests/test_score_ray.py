"""`tnews-deploy score --engine ray` on a local Ray with 2 CPUs: the same rows, ids, errors and scores as the
`Predictor` (and so as the local engine), through the CLI, and the CPU check of the actor pool."""

from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner

from scoring_inputs import bad_rows, check_scores, read_output, write_inputs
from tnews_deploy.cli import main
from tnews_deploy.errors import ConfigError, DataError
from tnews_deploy.predictor import Predictor
from tnews_deploy.scoring import ScoreConfig, score_ray

ray = pytest.importorskip("ray", reason="the scale extra (ray[data]) is not installed")

pytestmark = pytest.mark.slow  # starts a local Ray


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    os.environ.setdefault("RAY_worker_niceness", "0")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("score-ray-inputs")
    return folder, write_inputs(folder)


def test_ray_scores_every_format_like_the_predictor(exported, inputs, tmp_path):
    folder, expected = inputs
    out = tmp_path / "out"
    summary = score_ray(
        ScoreConfig(
            exported.output, (str(folder),), out, engine="ray", actors=2, threads_per_actor=1, chunk_rows=16, top_k=2
        )
    )
    assert (summary.rows, summary.errors) == (len(expected), bad_rows(expected))
    check_scores(read_output(out), expected, Predictor(exported.output, threads=1), top_k=2)
    saved = json.loads((out / "_SUCCESS").read_text())
    assert saved["engine"] == "ray" and saved["settings"]["actors"] == 2
    assert saved["model_sha256"] == exported.manifest["model"]["sha256"]


def test_ray_through_the_cli_reports_bad_rows(exported, inputs, tmp_path):
    folder, expected = inputs
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main,
        [
            "score",
            str(exported.output),
            str(folder / "*.txt"),
            str(folder / "*.csv"),
            "--output",
            str(out),
            "--engine",
            "ray",
            "--actors",
            "1",
        ],
    )
    assert result.exit_code == 1, result.output
    wanted = [e for e in expected if e.source.endswith((".txt", ".csv"))]
    assert f"{bad_rows(wanted)} of {len(wanted)} row(s) failed" in result.output
    assert read_output(out).num_rows == len(wanted)


def test_an_actor_pool_larger_than_the_cluster_is_refused(exported, inputs, tmp_path):
    folder, _ = inputs
    with pytest.raises(ConfigError, match="needs 4 CPUs; the Ray cluster has 2"):
        score_ray(
            ScoreConfig(
                exported.output, (str(folder / "d.txt"),), tmp_path / "out", engine="ray", actors=2, threads_per_actor=2
            )
        )
    assert not (tmp_path / "out").exists() and not list(tmp_path.iterdir())


def test_relative_inputs_and_a_missing_text_column(exported, inputs, tmp_path, monkeypatch):
    folder, expected = inputs
    monkeypatch.chdir(folder)
    summary = score_ray(ScoreConfig(exported.output, ("d.txt",), tmp_path / "out", engine="ray", actors=1))
    assert set(read_output(tmp_path / "out").column("source").to_pylist()) == {"d.txt"}
    assert summary.rows == sum(e.source.endswith("d.txt") for e in expected)
    (tmp_path / "titles.csv").write_text("title\n今天新闻\n", encoding="utf-8")
    with pytest.raises(DataError, match="--text-field"):
        score_ray(ScoreConfig(exported.output, (str(tmp_path / "titles.csv"),), tmp_path / "out2", engine="ray"))
    assert not (tmp_path / "out2").exists()

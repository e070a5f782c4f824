"""Variants, configs, a short real training run, the grid and its resumption."""

from __future__ import annotations

import json
import shutil

import pytest

from conftest import tiny_train_config
from tnews_deploy.errors import ConfigError, ModelError
from tnews_deploy.labels import TNEWS_LABEL_NAMES
from tnews_deploy.training import resolve_config
from tnews_deploy.training.config import VARIANTS, GridConfig, TrainConfig


@pytest.fixture()
def tiny_classifier(tiny_model):
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=15)


def test_full_variant_trains_everything(tiny_classifier):
    from tnews_deploy.training.variants import apply_variant, trainable_parameter_names

    apply_variant(tiny_classifier, "full")
    assert trainable_parameter_names(tiny_classifier) == [n for n, _ in tiny_classifier.named_parameters()]


def test_freeze_embeddings_freezes_exactly_the_embedding_layer(tiny_classifier):
    from tnews_deploy.training.variants import apply_variant

    apply_variant(tiny_classifier, "freeze-embeddings")
    for name, param in tiny_classifier.named_parameters():
        assert param.requires_grad == (not name.startswith("bert.embeddings.")), name


def test_freeze_encoder_trains_only_pooler_and_classifier(tiny_classifier):
    from tnews_deploy.training.variants import apply_variant, trainable_parameter_names

    apply_variant(tiny_classifier, "freeze-encoder")
    trainable = trainable_parameter_names(tiny_classifier)
    assert trainable and all(n.startswith(("bert.pooler.", "classifier.")) for n in trainable)
    assert {"classifier.weight", "classifier.bias", "bert.pooler.dense.weight"} <= set(trainable)


def test_variant_switch_resets_previous_freezing(tiny_classifier):
    from tnews_deploy.training.variants import apply_variant, count_parameters

    apply_variant(tiny_classifier, "freeze-encoder")
    apply_variant(tiny_classifier, "full")
    trainable, total = count_parameters(tiny_classifier)
    assert trainable == total


def test_presets_and_overrides():
    paper = resolve_config("paper", "full", train_size=1000)
    assert (paper.batch_size, paper.lr, paper.epochs, paper.max_length) == (8, 1e-5, 30.0, 40)
    assert paper.total_steps() == 30 * 125
    default = resolve_config("default", "full", train_size=500)
    assert default.total_steps() >= default.min_steps  # the step floor lifts small sets
    assert default.effective_epochs() > default.epochs
    big = resolve_config("default", "full", train_size=5000)
    assert big.effective_epochs() == big.epochs
    assert resolve_config("default", "freeze-encoder").lr > default.lr  # a head needs a larger lr
    assert resolve_config("default", "full", lr=1e-4, batch_size=8).lr == 1e-4


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(variant="freeze-all"), "unknown variant"),
        (dict(preset="fast"), "unknown preset"),
        (dict(train_size=0), "--train-size must be positive"),
        (dict(lr=-1.0), "--lr must be positive"),
    ],
)
def test_bad_config_values_are_clear_errors(kwargs, message):
    preset = kwargs.pop("preset", "default")
    variant = kwargs.pop("variant", "full")
    with pytest.raises(ConfigError, match=message):
        resolve_config(preset, variant, **kwargs)


def test_short_run_learns_and_writes_documented_files(trained_run):
    m = trained_run.metrics
    assert m["last_loss"] < m["first_loss"] * 0.8
    assert m["macro_f1"] > 0.5 and m["accuracy"] > 0.5  # chance is 1/15
    assert set(m) >= {"macro_f1", "micro_f1", "accuracy", "per_class", "confusion_matrix", "train_seconds"}
    assert len(m["confusion_matrix"]) == 15 and sum(map(sum, m["confusion_matrix"])) == 150
    assert set(m["per_class"]) == set(m["label_names"])
    run_dir = trained_run.run_dir
    saved = json.loads((run_dir / "run_config.json").read_text())
    assert saved["variant"] == "full" and saved["total_steps"] >= 200
    config = json.loads((trained_run.checkpoint / "config.json").read_text())
    assert config["id2label"]["7"] == "news_edu"
    assert (trained_run.checkpoint / "tokenizer.json").is_file()
    assert not list(trained_run.checkpoint.glob("*.bin"))  # no pickles in the checkpoint
    assert not (run_dir / "trainer").exists()  # intermediate checkpoints are cleaned up


def test_finished_run_is_reused(trained_run):
    from tnews_deploy.training import train_run

    again = train_run(trained_run.config, trained_run.run_dir, quiet=True)
    assert again.metrics == trained_run.metrics


def test_finished_run_of_another_config_is_refused(trained_run):
    from dataclasses import replace

    from tnews_deploy.errors import ConfigError
    from tnews_deploy.training import train_run

    for change in (dict(variant="freeze-encoder"), dict(train_size=200), dict(lr=1e-4)):
        with pytest.raises(ConfigError, match=rf"already holds a finished run.*{next(iter(change))}"):
            train_run(replace(trained_run.config, **change), trained_run.run_dir, quiet=True)
    assert (trained_run.run_dir / "metrics.json").is_file()  # the finished run is left as it was


def test_cli_train_on_a_finished_run_of_another_size_exits_2(trained_run):
    from click.testing import CliRunner

    from tnews_deploy.cli import main

    c = trained_run.config
    result = CliRunner().invoke(
        main,
        [
            "train",
            "--model",
            c.model,
            "--data",
            c.data,
            "--variant",
            c.variant,
            "--train-size",
            "123",
            "--output",
            str(trained_run.run_dir),
        ],
    )
    assert result.exit_code == 2 and "already holds a finished run" in result.output
    assert "macro-F1" not in result.output


def test_run_config_stores_paths_that_resolve_from_anywhere(trained_run, tiny_model, hf_data, tmp_path, monkeypatch):
    import json
    import os

    from tnews_deploy.training import train_run

    saved = json.loads((trained_run.run_dir / "run_config.json").read_text())
    assert os.path.isabs(saved["data"]["path"]) and os.path.isabs(saved["model"])
    assert saved["data"]["label_names"] == list(TNEWS_LABEL_NAMES)  # the class names, in id order
    # the same run named with relative paths from another directory is the same run, not another config
    monkeypatch.chdir(hf_data.parent)
    relative = train_run(
        trained_run.config.__class__(
            **{**trained_run.config.__dict__, "data": os.path.relpath(hf_data), "model": os.path.relpath(tiny_model)}
        ),
        trained_run.run_dir,
        quiet=True,
    )
    assert relative.metrics == trained_run.metrics


def test_frozen_encoder_run_updates_only_the_head(tiny_model, hf_data, tmp_path):
    import torch
    from safetensors.torch import load_file

    from tnews_deploy.training import train_run

    config = tiny_train_config(tiny_model, hf_data, variant="freeze-encoder", min_steps=20, lr=1e-2)
    result = train_run(config, tmp_path / "run", quiet=True)
    before = load_file(tiny_model / "model.safetensors")
    after = load_file(result.checkpoint / "model.safetensors")
    for name, tensor in before.items():
        if name.startswith("pooler."):
            continue
        assert torch.equal(tensor, after[f"bert.{name}"]), name
    assert not torch.equal(before["pooler.dense.weight"], after["bert.pooler.dense.weight"])


def test_model_folder_without_weights_is_a_clear_error(tmp_path, tiny_model, hf_data):
    from tnews_deploy.training import train_run

    folder = tmp_path / "tokenizer-only"
    folder.mkdir()
    for name in ("config.json", "vocab.txt", "tokenizer_config.json"):
        shutil.copy(tiny_model / name, folder / name)
    with pytest.raises(ModelError, match="has no weights"):
        train_run(tiny_train_config(folder, hf_data), tmp_path / "run", quiet=True)


@pytest.mark.slow
def test_grid_writes_results_and_resumes(tiny_model, hf_data, tmp_path):
    from tnews_deploy.training.grid import GridConfig, run_grid

    overrides = dict(
        eval_size=150,
        selection_size=90,
        epochs=1.0,
        min_steps=30,
        lr=3e-3,
        batch_size=16,
        max_length=32,
        early_stopping_patience=2,
    )
    grid = GridConfig(
        model=str(tiny_model),
        data=str(hf_data),
        output=tmp_path / "grid",
        variants=("full", "freeze-encoder"),
        train_sizes=(60, 120),
        overrides=overrides,
    )
    results = run_grid(grid, quiet=True)
    assert results["finished_runs"] == results["planned_runs"] == 4
    assert {(r["variant"], r["train_size"]) for r in results["runs"]} == {
        ("full", 60),
        ("full", 120),
        ("freeze-encoder", 60),
        ("freeze-encoder", 120),
    }
    for row in results["runs"]:
        assert set(row) >= {"variant", "train_size", "macro_f1", "micro_f1", "accuracy", "train_seconds", "checkpoint"}
        assert 0 <= row["macro_f1"] <= 1 and (tmp_path / "grid" / row["checkpoint"] / "config.json").is_file()
    assert results["best"]["macro_f1"] == max(r["macro_f1"] for r in results["runs"])
    md = (tmp_path / "grid" / "results.md").read_text()
    assert "| full |" in md and "Best cell" in md
    assert "(1 seed)" in md and "± 0.000" not in md  # one seed: no spread is claimed
    assert (tmp_path / "grid" / "results.png").read_bytes()[:4] == b"\x89PNG"

    # Simulate a kill: one run loses its metrics (half-written), another is untouched.
    half = tmp_path / "grid" / "freeze-encoder-120"
    (half / "metrics.json").unlink()
    untouched = (tmp_path / "grid" / "full-60" / "metrics.json").stat().st_mtime_ns
    resumed = run_grid(grid, quiet=True)
    assert resumed["finished_runs"] == 4
    assert (half / "metrics.json").is_file()
    assert (tmp_path / "grid" / "full-60" / "metrics.json").stat().st_mtime_ns == untouched


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(train_size=0), "--train-size must be positive or 'all' (got 0)"),
        (dict(eval_size=-5), "--eval-size must be positive (got -5)"),
        (dict(max_length=4), "--max-length must be at least 8 (got 4)"),
        (dict(early_stopping_patience=-1), "--patience must be >= 0 (got -1)"),
        (dict(variant="freeze-all"), "unknown variant 'freeze-all'"),
        (dict(selection_size=0), "model selection needs a selection slice"),
    ],
)
def test_train_config_validates_itself(kwargs, message):
    with pytest.raises(ConfigError) as info:
        TrainConfig(**kwargs)
    assert message in str(info.value)


def test_grid_config_validates_every_run_before_any_starts(tmp_path):
    base = dict(model="m", data="d", output=tmp_path / "grid")
    assert GridConfig(**base).variants == VARIANTS
    for kwargs, message in [
        (dict(variants=("full", "bogus")), "unknown variant(s) bogus"),
        (dict(train_sizes=(100, 0)), "--train-sizes must be positive"),
        (dict(overrides={"lr": 0.0}), "--lr must be positive (got 0.0)"),
        (dict(overrides={"learning_rate": 1e-3}), "unknown setting(s): learning_rate"),
    ]:
        with pytest.raises(ConfigError) as info:
            GridConfig(**base, **kwargs)
        assert message in str(info.value)
    assert not (tmp_path / "grid").exists()


def test_grid_plot_draws_macro_and_micro_f1_with_error_bars(tmp_path, monkeypatch):
    from matplotlib.axes import Axes

    from tnews_deploy.training.grid import plot_results

    drawn = []
    real_bar = Axes.bar

    def spy(self, x, height, *args, **kwargs):
        drawn.append((list(height), kwargs.get("hatch"), kwargs.get("yerr")))
        return real_bar(self, x, height, *args, **kwargs)

    monkeypatch.setattr(Axes, "bar", spy)
    cells = [
        {
            "variant": v,
            "train_size": n,
            "macro_f1_mean": 0.1 + i / 10,
            "micro_f1_mean": 0.15 + i / 10,
            "macro_f1_std": 0.01,
            "micro_f1_std": 0.02,
            "macro_f1_ci": [0.05 + i / 10, 0.2 + i / 10],
            "micro_f1_ci": None,
        }
        for i, (v, n) in enumerate([("full", 60), ("full", 120), ("freeze-encoder", 60), ("freeze-encoder", 120)])
    ]
    results = {
        "train_sizes": [60, 120],
        "variants": ["full", "freeze-encoder"],
        "cells": cells,
        "model": "m",
        "preset": "default",
        "seeds": [1, 2],
    }
    assert plot_results(results, tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"
    solid = sorted(h for heights, hatch, _ in drawn if not hatch for h in heights)
    hatched = sorted(h for heights, hatch, _ in drawn if hatch for h in heights)
    assert solid == pytest.approx(sorted(c["macro_f1_mean"] for c in cells))
    assert hatched == pytest.approx(sorted(c["micro_f1_mean"] for c in cells))
    # macro-F1: the bootstrap interval (0.05 below, 0.10 above the mean); micro-F1 without one: ± std
    macro_errors = [e for heights, hatch, e in drawn if not hatch]
    assert all(lo == pytest.approx(0.05) for e in macro_errors for lo in e[0])
    assert all(hi == pytest.approx(0.10) for e in macro_errors for hi in e[1])
    assert all(v == pytest.approx(0.02) for heights, hatch, e in drawn if hatch for side in e for v in side)

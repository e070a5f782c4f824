"""The study with error bars: seeds, aggregation and bootstrap, the report, --train-size all, class weights, resume."""

from __future__ import annotations

import json
import statistics

import numpy as np
import pytest

from conftest import tiny_train_config, train_killed_at
from tnews_deploy.errors import ConfigError
from tnews_deploy.training.config import GridConfig, TrainConfig

# ------------------------------------------------------------------ seeds


def test_seeds_draw_distinct_subsets_and_the_same_evaluation_set(hf_data):
    from tnews_deploy.data import SplitConfig, load_tnews, make_splits

    dsd = load_tnews(hf_data)
    draws = {
        seed: make_splits(
            dsd, SplitConfig(train_sizes=(100,), eval_size=150, selection_size=90, seed=42, train_seed=seed)
        )
        for seed in (42, 7, 13)
    }
    subsets = {seed: tuple(s.train[100]["idx"]) for seed, s in draws.items()}
    assert len(set(subsets.values())) == 3  # each seed its own training subset
    for s in draws.values():
        assert s.evaluation["idx"] == draws[42].evaluation["idx"]  # one evaluation set for every seed
        assert s.selection["idx"] == draws[42].selection["idx"]
    # train_seed = seed is the run without train_seed: the subset drawn before seeds existed
    plain = make_splits(dsd, SplitConfig(train_sizes=(100,), eval_size=150, selection_size=90, seed=42))
    assert tuple(plain.train[100]["idx"]) == subsets[42]


def test_grid_config_plans_one_run_per_seed(tmp_path):
    grid = GridConfig(model="m", data="d", output=tmp_path, variants=("full",), train_sizes=(500, "all"), seeds=(42, 7))
    assert grid.planned() == [("full", 500, 42), ("full", 500, 7), ("full", "all", 42), ("full", "all", 7)]
    assert [grid.run_name(*p) for p in grid.planned()] == ["full-500", "full-500-seed7", "full-all", "full-all-seed7"]
    assert grid.run_config("full", 500, 7).train_seed == 7 and grid.run_config("full", 500, 7).seed == 42
    assert grid.run_config("full", 500, 42).train_seed is None  # the split seed's run is the seedless run
    with pytest.raises(ConfigError, match="--seeds names a seed twice"):
        GridConfig(model="m", data="d", output=tmp_path, seeds=(1, 1))


# ------------------------------------------------------------------ aggregation and bootstrap


def test_mean_std_and_intervals_against_hand_computation():
    from tnews_deploy.training.stats import mean_std, percentile_interval

    values = [0.41, 0.45, 0.47]
    mean, std = mean_std(values)
    assert mean == pytest.approx((0.41 + 0.45 + 0.47) / 3)
    assert std == pytest.approx(statistics.stdev(values))  # sample std, ddof 1
    assert mean_std([0.5]) == (0.5, 0.0)
    samples = np.arange(1, 1001) / 1000  # 0.001 .. 1.000
    low, high = percentile_interval(samples)
    assert low == pytest.approx(np.percentile(samples, 2.5)) and high == pytest.approx(np.percentile(samples, 97.5))


def test_bootstrap_matches_a_hand_computation_per_resample():
    from sklearn.metrics import f1_score

    from tnews_deploy.training.stats import EvalBootstrap

    rng = np.random.default_rng(3)
    labels = rng.integers(0, 5, 200)
    seeds_predictions = [np.where(rng.random(200) < p, labels, rng.integers(0, 5, 200)) for p in (0.5, 0.7)]
    boot = EvalBootstrap(labels, 5, draws=50, seed=11)
    cell = boot.cell_samples(seeds_predictions)

    # By hand, following the documented procedure: sentences from the seed, seed picks from (seed, seeds in cell)
    indices = np.random.default_rng(11).integers(0, 200, size=(50, 200))
    picks = np.random.default_rng([11, 2]).integers(0, 2, size=(50, 2))
    for b in range(50):
        per_seed = [
            f1_score(labels[indices[b]], p[indices[b]], average="macro", zero_division=0) for p in seeds_predictions
        ]
        assert cell[b] == pytest.approx(np.mean([per_seed[k] for k in picks[b]]))
    # a cell's samples do not depend on what was scored before it (the grid's results and the report agree)
    other = EvalBootstrap(labels, 5, draws=50, seed=11)
    other.cell_samples(seeds_predictions[::-1], "accuracy")
    other.cell_samples([seeds_predictions[0]] * 3)
    assert np.array_equal(other.cell_samples(seeds_predictions), cell)
    accuracy = boot.run_samples(seeds_predictions[0], "accuracy")
    assert accuracy[7] == pytest.approx(np.mean(labels[indices[7]] == seeds_predictions[0][indices[7]]))


def test_bootstrap_interval_of_perfect_predictions_is_a_point_and_a_noisy_one_has_the_textbook_width():
    from tnews_deploy.training.stats import EvalBootstrap, percentile_interval

    labels = np.random.default_rng(0).integers(0, 15, 2000)
    boot = EvalBootstrap(labels, 15, draws=1000, seed=0)
    assert percentile_interval(boot.run_samples(labels)) == (1.0, 1.0)
    half = np.where(np.arange(2000) % 2 == 0, labels, (labels + 1) % 15)  # accuracy 0.5
    low, high = percentile_interval(boot.run_samples(half, "accuracy"))
    textbook = 1.96 * np.sqrt(0.25 / 2000)  # ±0.022, the figure of the issue
    assert (high - low) / 2 == pytest.approx(textbook, rel=0.15)


def test_paired_difference_of_a_cell_with_itself_is_exactly_zero(tmp_path):
    from tnews_deploy.training.cells import Cells, Run

    labels = list(np.random.default_rng(1).integers(0, 3, 60))
    preds = [int(x) for x in np.random.default_rng(2).integers(0, 3, 60)]
    runs = []
    for i, seed in enumerate((1, 2)):
        metrics = {
            "macro_f1": 0.3 + i / 10,
            "micro_f1": 0.4,
            "accuracy": 0.4,
            "train_seconds": 10.0 * (i + 1),
            "seed": seed,
            "label_names": ["a", "b", "c"],
        }
        runs.append(
            Run(
                tmp_path / f"r{seed}",
                {"variant": "full", "train_size": 50, "train_seed": seed},
                metrics,
                {"ids": list(range(60)), "labels": [int(x) for x in labels], "predictions": preds},
            )
        )
    cells = Cells(runs, draws=200)
    (cell,) = list(cells)
    summary = cells.summary(cell)
    assert summary["seeds"] == [1, 2]
    assert summary["macro_f1_mean"] == pytest.approx(0.35) and summary["macro_f1_std"] == pytest.approx(
        statistics.stdev([0.3, 0.4]), abs=1e-4
    )
    assert summary["train_seconds_mean"] == 15.0
    d = cells.difference(cell, cell)
    assert d.value == 0 and d.low == 0 and d.high == 0 and not d.excludes_zero()


def test_runs_that_differ_only_in_how_they_ran_share_a_cell(tmp_path):
    """Operational settings (`--save-every`, `--train-vocab`) and a record from before launches existed (no
    world size) do not split a cell: the study's first run and its later seeds are one cell."""
    from tnews_deploy.training.cells import Cells, Run

    base = {"variant": "full", "train_size": 500, "batch_size": 32, "lr": 5e-5}
    configs = [
        dict(base),  # recorded before --save-every, --train-vocab and world_size existed
        {
            **base,
            "train_seed": 7,
            "save_every": 200,
            "train_vocab": "data",
            "world_size": 1,
            "effective_batch_size": 32,
        },
        {
            **base,
            "train_seed": 13,
            "save_every": 200,
            "train_vocab": "all",
            "world_size": 1,
            "effective_batch_size": 32,
        },
    ]
    runs = [
        Run(tmp_path / f"r{i}", c, {"macro_f1": 0.4, "micro_f1": 0.5, "accuracy": 0.5, "seed": seed}, None)
        for i, (c, seed) in enumerate(zip(configs, (42, 7, 13)))
    ]
    assert [sorted(c.seed for c in cell.runs) for cell in Cells(runs, draws=10)] == [[7, 13, 42]]
    other = Run(tmp_path / "r3", {**base, "lr": 1e-4}, {"macro_f1": 0.4, "micro_f1": 0.5, "accuracy": 0.5}, None)
    assert len(list(Cells([*runs, other], draws=10))) == 2  # a setting that changes training does split


# ------------------------------------------------------------------ the report on a tiny grid


# Runs three small grids: every test using it is slow (conftest).
SLOW_FIXTURES = ("tiny_study",)


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory, tiny_model, hf_data):
    """A 2-seed tiny grid, plus the study's settings on the frozen variant and a class-weighted grid."""
    from tnews_deploy.training.grid import run_grid

    root = tmp_path_factory.mktemp("study")
    overrides = dict(
        eval_size=150,
        selection_size=90,
        epochs=1.0,
        min_steps=30,
        lr=3e-3,
        batch_size=16,
        max_length=32,
        early_stopping_patience=0,
    )
    base = dict(model=str(tiny_model), data=str(hf_data), seeds=(42, 7))
    main = GridConfig(
        **base, output=root / "grid", variants=("full", "freeze-encoder"), train_sizes=(60, 120), overrides=overrides
    )
    results = run_grid(main, quiet=True)
    paper = GridConfig(
        **base,
        output=root / "paper",
        variants=("freeze-encoder",),
        train_sizes=(120,),
        preset="paper",
        overrides=dict(eval_size=150, selection_size=90, epochs=2.0, max_length=32),
    )
    run_grid(paper, quiet=True)
    weighted = GridConfig(
        **base,
        output=root / "weighted",
        variants=("full",),
        train_sizes=(120,),
        overrides={**overrides, "class_weight": "balanced"},
    )
    run_grid(weighted, quiet=True)
    from tnews_deploy.training import train_run

    train_run(
        tiny_train_config(tiny_model, hf_data, train_size="all", min_steps=0, epochs=1.0), root / "all", quiet=True
    )
    return root, results


def test_report_of_a_partial_grid_says_what_is_missing(tiny_study, tmp_path):
    """Half-way through a grid no variant may have both sizes yet: the report says so, with no empty table."""
    import shutil

    from tnews_deploy.training.study import write_study_report

    root, _ = tiny_study
    grid = tmp_path / "grid"
    shutil.copytree(root / "grid", grid)
    for unfinished in [*grid.glob("full-120*"), *grid.glob("freeze-encoder-60*")]:
        (unfinished / "metrics.json").unlink()
    text = write_study_report(grid, tmp_path / "report.md", (), draws=100).read_text()
    section = text[text.index("## 4.") : text.index("## 5.")]
    assert "no variant has both yet" in section and "| variant |" not in section


def test_grid_with_seeds_keeps_every_run_and_aggregates_cells(tiny_study):
    root, results = tiny_study
    assert results["finished_runs"] == results["planned_runs"] == 8
    assert sorted({r["seed"] for r in results["runs"]}) == [7, 42]
    assert len(results["cells"]) == 4
    for cell in results["cells"]:
        runs = [r for r in results["runs"] if r["run"] in cell["runs"]]
        assert cell["seeds"] == [7, 42] and len(runs) == 2
        assert cell["macro_f1_mean"] == pytest.approx(np.mean([r["macro_f1"] for r in runs]), abs=1e-4)
        low, high = cell["macro_f1_ci"]
        assert 0 <= low <= high <= 1
    for run in results["runs"]:
        saved = json.loads((root / "grid" / run["run"] / "predictions.json").read_text())
        assert len(saved["predictions"]) == len(saved["labels"]) == 150
    ids = {
        tuple(json.loads((root / "grid" / r["run"] / "predictions.json").read_text())["ids"]) for r in results["runs"]
    }
    assert len(ids) == 1  # every seed scored on the same sentences
    md = (root / "grid" / "results.md").read_text()
    assert " ± " in md and "95 % bootstrap interval" in md
    # no paths of this machine in the result files: the model and data by name and hash
    text = (root / "grid" / "results.json").read_text() + md
    assert str(root) not in text and str(root.parent) not in text and "/tmp" not in text
    assert results["model"]["name"] and len(results["model"]["sha256"]) == 64
    assert (root / "grid" / "results.png").read_bytes()[:4] == b"\x89PNG"


def test_report_builds_from_a_tiny_grid_and_answers_the_five_questions(tiny_study):
    from click.testing import CliRunner

    from tnews_deploy.cli import main

    root, _ = tiny_study
    out = root / "report" / "report.md"
    result = CliRunner().invoke(
        main,
        [
            "report",
            str(root / "grid"),
            "--output",
            str(out),
            "--extra",
            str(root / "paper"),
            "--extra",
            str(root / "weighted"),
            "--extra",
            str(root / "all"),
            "--draws",
            "200",
        ],
    )
    assert result.exit_code == 0, result.output
    text = out.read_text()
    for heading in (
        "## Table 2",
        "## 1.",
        "## 2.",
        "## 3.",
        "## 4.",
        "## 5.",
        "## Class weighting",
        "## Full training split",
    ):
        assert heading in text
    assert "n/r" in text  # the study's micro-F1 is not in the repository: marked, not invented
    assert "`classifier.weight`" in text and "newly initialized" in text  # the captured warning, by name
    assert "Statistically indistinguishable" in text or "No other cell is statistically indistinguishable" in text
    assert "largest |micro-F1 − accuracy|" in text
    assert "preset paper" in text and "class_weight balanced" in text
    freeze = text[text.index("## 5.") : text.index("**The study's frozen result")]
    steps = [
        np.mean(
            [json.loads((root / "grid" / f"{v}-120{s}" / "metrics.json").read_text())["steps"] for s in ("", "-seed7")]
        )
        for v in ("full", "freeze-encoder")
    ]
    row = next(line for line in freeze.splitlines() if line.startswith("| 120 |"))
    assert "steps full / frozen" in freeze and f"| {steps[0]:.0f} / {steps[1]:.0f} |" in row  # the cost that
    # does not depend on what else the machine ran, beside the seconds that do
    full_data = text[text.index("## Full training split") :].split("\n## ")[0]
    assert full_data.count("[") >= 2  # intervals of accuracy (the target's metric) and of macro-F1
    assert (root / "report" / "report-learning-curve.png").read_bytes()[:4] == b"\x89PNG"
    assert str(root) not in text
    again = root / "report" / "again.md"
    CliRunner().invoke(
        main,
        [
            "report",
            str(root / "grid"),
            "--output",
            str(again),
            "--extra",
            str(root / "paper"),
            "--extra",
            str(root / "weighted"),
            "--extra",
            str(root / "all"),
            "--draws",
            "200",
        ],
    )
    assert again.read_text().replace("again-learning", "report-learning") == text  # regenerated: the same


def test_report_regenerates_from_results_kept_without_checkpoints(tiny_study, tmp_path):
    """What `docs/` keeps of a study (configs, metrics, predictions; no weights) gives the same report."""
    import shutil

    from tnews_deploy.training.study import write_study_report

    root, _ = tiny_study
    kept = tmp_path / "kept"
    for name in ("grid", "paper"):
        shutil.copytree(root / name, kept / name, ignore=shutil.ignore_patterns("checkpoint", "trainer"))
    assert not list(kept.rglob("*.safetensors"))
    original = write_study_report(root / "grid", tmp_path / "a" / "report.md", (root / "paper",), draws=100)
    copy = write_study_report(kept / "grid", tmp_path / "b" / "report.md", (kept / "paper",), draws=100)
    assert copy.read_text() == original.read_text()


def test_report_of_a_folder_without_runs_is_a_clear_error(tmp_path):
    from click.testing import CliRunner

    from tnews_deploy.cli import main

    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(main, ["report", str(tmp_path / "empty"), "--output", str(tmp_path / "r.md")])
    assert result.exit_code == 2 and "holds no finished run" in result.output


# ------------------------------------------------------------------ --train-size all


def test_train_size_all_is_the_train_split_minus_evaluation_and_selection(hf_data):
    from tnews_deploy.data import SplitConfig, load_tnews, make_splits

    dsd = load_tnews(hf_data)
    splits = make_splits(dsd, SplitConfig(train_sizes=("all",), eval_size=150, selection_size=90))
    held_out = set(splits.evaluation["sentence"]) | set(splits.selection["sentence"])
    expected = [s for s in dsd["train"]["sentence"] if s not in held_out]
    assert splits.train["all"]["sentence"] == expected and len(expected) > 0

    config = TrainConfig(train_size="all", batch_size=10, epochs=2.0, min_steps=0)
    with pytest.raises(ConfigError, match="known once the data is loaded"):
        config.total_steps()
    assert config.total_steps(95) == 20 and config.to_json(95)["train_examples"] == 95
    assert config.save_steps(95) == config.eval_every(95)  # long runs checkpoint for resume by default
    assert TrainConfig(train_size=100).save_steps() == 0
    with pytest.raises(ConfigError, match="--train-size must be positive or 'all'"):
        TrainConfig(train_size="most")


def test_cli_train_size_accepts_all(tmp_path):
    from click.testing import CliRunner

    from tnews_deploy.cli import main

    result = CliRunner().invoke(main, ["grid", "--train-sizes", "500,everything", "--output", str(tmp_path / "g")])
    assert result.exit_code == 2 and "positive integer or 'all'" in result.output


@pytest.mark.slow
def test_a_tiny_full_split_run(tiny_model, hf_data, tmp_path):
    from tnews_deploy.training import train_run

    config = tiny_train_config(tiny_model, hf_data, train_size="all", min_steps=0, epochs=1.0, save_every=0)
    result = train_run(config, tmp_path / "all", quiet=True)
    saved = json.loads((tmp_path / "all" / "run_config.json").read_text())
    assert result.metrics["train_size"] == "all" and result.metrics["train_examples"] == saved["train_examples"]
    assert saved["train_examples"] > 300 and result.metrics["eval_size"] == 150


# ------------------------------------------------------------------ class weights


def test_balanced_weights_and_the_weighted_loss_by_hand(tiny_model):
    import torch
    from transformers import AutoModelForSequenceClassification, TrainingArguments

    from tnews_deploy.training.losses import WeightedLossTrainer, balanced_class_weights

    labels = [0, 0, 0, 1, 2, 2]
    weights = balanced_class_weights(labels, 4)
    assert weights == pytest.approx([6 / (3 * 3), 6 / (3 * 1), 6 / (3 * 2), 1.0])  # n / (k · n_c); absent: 1

    model = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=4)
    trainer = WeightedLossTrainer(
        model=model,
        args=TrainingArguments(output_dir="/nonexistent", use_cpu=True, report_to=[]),
        class_weights=weights,
    )
    batch = {
        "input_ids": torch.tensor([[2, 10, 11, 3], [2, 12, 3, 0], [2, 13, 14, 3]]),
        "attention_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 1, 1]]),
        "labels": torch.tensor([0, 1, 1]),
    }
    model.eval()
    with torch.no_grad():
        loss = trainer.compute_loss(model, batch)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    log_p = torch.log_softmax(logits.float(), -1)
    w = torch.tensor([weights[y] for y in (0, 1, 1)])
    hand = -(w * log_p[torch.arange(3), batch["labels"]]).sum() / w.sum()
    unweighted = -log_p[torch.arange(3), batch["labels"]].mean()
    assert float(loss) == pytest.approx(float(hand), rel=1e-5)
    assert abs(float(loss) - float(unweighted)) > 1e-4  # the weights change the loss


def test_class_weighted_run_records_its_weights(tiny_model, hf_data, tmp_path):
    from tnews_deploy.training import train_run

    config = tiny_train_config(tiny_model, hf_data, class_weight="balanced", train_size=100, min_steps=10)
    m = train_run(config, tmp_path / "w", quiet=True).metrics
    counts = np.array([m["train_class_counts"][n] for n in m["label_names"]])
    expected = counts.sum() / ((counts > 0).sum() * counts.clip(min=1))
    expected[counts == 0] = 1.0
    assert m["class_weight"] == "balanced" and m["class_weights"] == pytest.approx(list(expected))


# ------------------------------------------------------------------ mid-run resume


@pytest.mark.slow
def test_a_killed_run_resumes_from_its_saved_step(tiny_model, hf_data, tmp_path):
    from tnews_deploy.training import train_run

    config = tiny_train_config(tiny_model, hf_data, train_size=120, min_steps=24, evaluations=4, save_every=5)
    run_dir = tmp_path / "run"
    train_killed_at(12, config, run_dir)
    saved = sorted(p.name for p in (run_dir / "trainer").glob("checkpoint-*"))
    assert saved == ["checkpoint-10"]  # only the latest checkpoint is kept
    assert not (run_dir / "metrics.json").exists()

    result = train_run(config, run_dir, quiet=True)
    m = result.metrics
    assert m["resumed_from_steps"] == [10]
    assert m["steps"] == config.total_steps() and m["steps_this_invocation"] == config.total_steps() - 10
    assert not (run_dir / "trainer").exists()  # cleaned up once finished


def test_an_unfinished_run_of_other_settings_starts_from_scratch(tiny_model, hf_data, tmp_path):
    from tnews_deploy.training import train_run

    config = tiny_train_config(tiny_model, hf_data, train_size=120, min_steps=24, evaluations=4, save_every=5)
    train_killed_at(7, config, tmp_path / "run")
    other = tiny_train_config(tiny_model, hf_data, train_size=120, min_steps=24, evaluations=4, save_every=5, lr=1e-3)
    assert train_run(other, tmp_path / "run", quiet=True).metrics["resumed_from_steps"] == []


def test_save_every_is_not_a_difference_between_runs(trained_run, tiny_model, hf_data, tmp_path):
    """`--save-every` says how a run is carried out: a grid may add it once its first runs are finished."""
    import shutil

    from tnews_deploy.training import train_run
    from tnews_deploy.training.run import config_differences

    config = tiny_train_config(tiny_model, hf_data)
    assert config_differences(config, tiny_train_config(tiny_model, hf_data, save_every=7)) == []
    assert [d[0] for d in config_differences(config, tiny_train_config(tiny_model, hf_data, lr=1e-3))] == ["lr"]
    shutil.copytree(trained_run.run_dir, tmp_path / "run")
    again = train_run(tiny_train_config(tiny_model, hf_data, save_every=7), tmp_path / "run", quiet=True)
    assert again.metrics == trained_run.metrics  # reused as finished, not trained again

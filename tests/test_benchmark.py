"""The benchmark: FLOP counter, config validation, evaluation set, peak, report, and runs end to end."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from dataclasses import fields

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import tiny_train_config
from tnews_deploy.benchmark.config import BenchmarkConfig
from tnews_deploy.benchmark.flops import ModelShape, encoder_flops
from tnews_deploy.cli import main
from tnews_deploy.errors import ConfigError

RUN_SEED = 7  # not the default 42


def test_encoder_flops_by_hand():
    # 1 layer, hidden 4, intermediate 8, 3 tokens, 2 labels:
    # projections 4 * (2*3*4*4) = 384; attention 2 * (2*3*3*4) = 144; FFN 2 * (2*3*4*8) = 384;
    # pooler 2*4*4 = 32; classifier 2*4*2 = 16  -> 960
    assert encoder_flops(3, hidden=4, layers=1, intermediate=8, num_labels=2) == 960
    assert encoder_flops(3, 4, 2, 8, 2) == 2 * (384 + 144 + 384) + 32 + 16


def test_bert_base_flops_are_in_the_known_range():
    shape = ModelShape(hidden=768, layers=12, intermediate=3072, num_labels=15)
    # ~2 * 85M encoder weights per token, plus attention: about 21.7 GFLOP for 128 tokens
    assert shape.flops([128]) / 1e9 == pytest.approx(22.3, rel=0.03)
    assert shape.flops([10, 20]) == shape.flops([10]) + shape.flops([20])


@pytest.mark.slow
def test_quick_benchmark_writes_well_formed_results(trained_run, exported, hf_data, tmp_path):
    out = tmp_path / "bench"
    result = CliRunner().invoke(
        main,
        [
            "benchmark",
            "--pytorch",
            str(trained_run.run_dir),
            "--onnx",
            str(exported.output),
            "--data",
            str(hf_data),
            "--output",
            str(out),
            "--quick",
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    report = json.loads((out / "results.json").read_text())
    assert [b["backend"] for b in report["backends"]] == ["pytorch", exported.output.name]
    assert set(report["machine"]) >= {"cpu", "threads", "flags", "versions"}
    assert report["fp32_peak"]["gflops"] > 0
    for b in report["backends"]:
        assert 0 <= b["macro_f1"] <= 1 and 0 <= b["micro_f1"] <= 1
        assert b["latency_ms"]["p50"] > 0 and b["latency_ms"]["p99"] >= b["latency_ms"]["p50"]
        assert b["latency_ms"]["samples"] == 24
        assert b["throughput"]["8"]["median"] > 0
        assert 0 < b["padding_efficiency"]["8"] <= 1
        assert b["gflops"]["8"] > 0 and b["model_mb"] > 0
        assert b["cold_start"]["seconds"] > 0 and b["cold_start"]["peak_rss_mb"] > 0
    onnx = report["backends"][1]
    assert onnx["agreement_with_pytorch"] == 1.0
    # bucketing pads less than PyTorch's input-order batches
    assert onnx["padding_efficiency"]["8"] >= report["backends"][0]["padding_efficiency"]["8"]
    assert "| pytorch |" in (out / "results.md").read_text()
    assert (out / "latency.png").is_file() and (out / "throughput.png").is_file()
    # --quick measures a subset of the run's own evaluation set
    assert report["eval_sentences"] == 64
    assert report["evaluation"]["eval_size"] == trained_run.config.eval_size
    assert report["evaluation"]["seed"] == trained_run.config.seed


def test_missing_backend_folder_is_a_clear_error(trained_run, tmp_path):
    result = CliRunner().invoke(
        main,
        [
            "benchmark",
            "--pytorch",
            str(trained_run.run_dir),
            "--onnx",
            str(tmp_path / "nope"),
            "--output",
            str(tmp_path / "b"),
            "--quick",
        ],
    )
    assert result.exit_code == 2 and "no such ONNX folder" in result.output


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(rounds=0), "--rounds must be ≥ 1"),
        (dict(latency_sentences=0), "--latency-sentences must be ≥ 1"),
        (dict(warmup=-1), "--warmup must be ≥ 0"),
        (dict(eval_size=0), "--eval-size must be ≥ 1"),
        (dict(max_sentences=0), "--max-sentences must be ≥ 1"),
        (dict(threads=0), "--threads must be ≥ 1"),
        (dict(seed=-3), "--seed must be ≥ 0"),
        (dict(max_length=0), "--max-length must be ≥ 1"),
        (dict(batch_sizes=()), "--batch-sizes"),
        (dict(batch_sizes=(8, 0)), "--batch-sizes must be ≥ 1"),
        (dict(rounds=2.5), "--rounds must be an integer"),
        (dict(rounds=5, latency_sentences=4), "--rounds (5) must not exceed --latency-sentences (4)"),
        (dict(onnx=()), "--onnx"),
    ],
)
def test_config_validates_itself_naming_the_flag(overrides, message, tmp_path):
    settings = dict(pytorch=None, onnx=(tmp_path,), output=tmp_path / "out")
    with pytest.raises(ConfigError) as info:
        BenchmarkConfig(**{**settings, **overrides})
    assert message in str(info.value)


def test_config_normalises_and_has_no_dead_quick_field(tmp_path):
    config = BenchmarkConfig(pytorch=str(tmp_path), onnx=[str(tmp_path)], output=str(tmp_path), batch_sizes=[4])
    assert config.onnx == (tmp_path,) and config.output == tmp_path and config.pytorch == tmp_path
    assert config.batch_sizes == (4,)
    assert "quick" not in {f.name for f in fields(BenchmarkConfig)}
    quick = BenchmarkConfig.quick_config(pytorch=None, onnx=(tmp_path,), output=tmp_path, rounds=1, warmup=0)
    assert (quick.max_sentences, quick.rounds, quick.warmup, quick.batch_sizes) == (64, 1, 0, (8,))


def test_bad_cli_values_are_one_line_errors_from_the_config(tmp_path):
    result = CliRunner().invoke(
        main, ["benchmark", "--onnx", str(tmp_path), "--output", str(tmp_path / "b"), "--rounds", "0"]
    )
    assert result.exit_code == 2
    assert "--rounds must be ≥ 1" in result.output and "Traceback" not in result.output
    # flags given with --quick override its settings (and are validated the same way)
    result = CliRunner().invoke(
        main,
        ["benchmark", "--onnx", str(tmp_path), "--output", str(tmp_path / "b"), "--quick", "--latency-sentences", "0"],
    )
    assert result.exit_code == 2 and "--latency-sentences must be ≥ 1" in result.output


def test_cli_defaults_are_the_config_defaults():
    defaults = BenchmarkConfig.defaults()
    params = {p.name: p for p in main.commands["benchmark"].params}
    assert set(defaults) <= set(params)  # every setting has a flag
    for name, default in defaults.items():
        cli_default = params[name].default
        if default is None:  # not given: the config resolves it; the CLI must not invent a value
            assert cli_default is None or not isinstance(cli_default, (int, str, tuple)), name
        elif name == "batch_sizes":
            assert tuple(int(v) for v in cli_default.split(",")) == default
        else:
            assert cli_default == default, name


def test_config_spells_itself_as_a_command(tmp_path):
    config = BenchmarkConfig(
        pytorch=tmp_path / "run",
        onnx=(tmp_path / "a", tmp_path / "b"),
        output=tmp_path / "o",
        seed=3,
        stratify=False,
        rounds=2,
        batch_sizes=(4, 16),
        cold_start=False,
    )
    command = config.to_command()
    assert command.startswith("tnews-deploy benchmark --pytorch ")
    for part in (
        f"--onnx {tmp_path / 'a'} --onnx {tmp_path / 'b'}",
        "--seed 3",
        "--no-stratify",
        "--rounds 2",
        "--batch-sizes 4,16",
        "--no-cold-start",
    ):
        assert part in command
    assert "--warmup" not in command  # defaults are left out


# --------------------------------------------------------------------------- evaluation set (bug 1)


def _manifest(data, eval_size, seed):
    return {
        "verification": {"evaluation": {"data": data, "eval_size": eval_size, "seed": seed}},
        "source": {"run": {"data": data, "seed": seed}},
    }


def test_evaluation_settings_precedence(tmp_path, caplog):
    from tnews_deploy.benchmark.resolve import evaluation_settings

    base = dict(pytorch=None, onnx=(tmp_path / "fp32",), output=tmp_path)
    manifests = {tmp_path / "fp32": _manifest("d-manifest", 300, 7)}
    run_config = {"data": "d-manifest", "eval_size": 300, "seed": 7, "stratify": False}

    s = evaluation_settings(BenchmarkConfig(**base), manifests, run_config)
    assert (s.data.path, s.eval_size, s.seed, s.stratify) == ("d-manifest", 300, 7, False)
    assert s.origin["seed"].endswith("manifest.json verification") and s.origin["stratify"] == "run_config.json"

    s = evaluation_settings(BenchmarkConfig(**base), {tmp_path / "fp32": {}}, run_config)
    assert (s.data.path, s.eval_size, s.seed, s.stratify) == ("d-manifest", 300, 7, False)

    s = evaluation_settings(BenchmarkConfig(**base), {tmp_path / "fp32": {}}, {"data": "d"})
    assert (s.eval_size, s.seed, s.stratify) == (2000, 42, True) and s.origin["seed"] == "default"

    with caplog.at_level(logging.WARNING, logger="tnews_deploy.benchmark"):
        s = evaluation_settings(BenchmarkConfig(**base, seed=3, data="other"), manifests, run_config)
    assert (s.data.path, s.seed) == ("other", 3) and s.origin["seed"] == "--seed"
    assert "model selection" in caplog.text

    from tnews_deploy.errors import UserError

    with pytest.raises(UserError, match="--data"):
        evaluation_settings(BenchmarkConfig(**base), {tmp_path / "fp32": {}}, None)


# Trains and exports a run of its own (and `seed7_report` benchmarks it): every test using it is
# slow (conftest).
SLOW_FIXTURES = ("seed7_export",)


@pytest.fixture(scope="module")
def seed7_export(tmp_path_factory, tiny_model, hf_data):
    """A tiny run trained with seed 7 (briefly: only its splits matter) and its fp32 export."""
    from tnews_deploy.export import export_model
    from tnews_deploy.training import train_run

    folder = tmp_path_factory.mktemp("seed7")
    config = tiny_train_config(tiny_model, hf_data, seed=RUN_SEED, min_steps=60, evaluations=2)
    run = train_run(config, folder / "run", quiet=True)
    exported = export_model(run.run_dir, folder / "fp32")
    return run, exported


def _run_sets(hf_data, run):
    from tnews_deploy.data import SplitConfig, load_tnews, make_splits

    c = run.config
    splits = make_splits(
        load_tnews(hf_data),
        SplitConfig(
            train_sizes=(), eval_size=c.eval_size, selection_size=c.selection_size, seed=c.seed, stratify=c.stratify
        ),
    )
    return list(splits.evaluation["sentence"]), set(splits.selection["sentence"])


@pytest.mark.parametrize("with_pytorch", [False, True], ids=["onnx-manifest", "pytorch-run"])
def test_evaluation_set_is_the_runs_not_its_selection_slice(seed7_export, hf_data, tmp_path, with_pytorch):
    from tnews_deploy.benchmark.resolve import resolve_plan
    from tnews_deploy.data import evaluation_split, load_tnews

    run, exported = seed7_export
    config = BenchmarkConfig(pytorch=run.run_dir if with_pytorch else None, onnx=(exported.output,), output=tmp_path)
    plan = resolve_plan(config)
    evaluation, selection = _run_sets(hf_data, run)
    expected = evaluation_split(load_tnews(hf_data), run.config.eval_size, RUN_SEED, run.config.stratify)
    assert plan.texts == list(expected["sentence"]) == evaluation
    assert not set(plan.texts) & selection
    assert plan.labels.tolist() == list(expected["label"])
    assert plan.evaluation.seed == RUN_SEED and plan.checkpoint == run.checkpoint


def test_explicit_flags_override_the_recorded_evaluation_set(seed7_export, hf_data, tmp_path):
    from tnews_deploy.benchmark.resolve import resolve_plan
    from tnews_deploy.data import evaluation_split, load_tnews

    run, exported = seed7_export
    plan = resolve_plan(
        BenchmarkConfig(pytorch=None, onnx=(exported.output,), output=tmp_path, seed=3, eval_size=60, max_sentences=20)
    )
    drawn = list(evaluation_split(load_tnews(hf_data), 60, 3)["sentence"])
    assert len(plan.texts) == 20 and set(plan.texts) <= set(drawn)
    assert plan.evaluation.origin["seed"] == "--seed" and plan.evaluation.origin["eval_size"] == "--eval-size"


# --------------------------------------------------------------------------- a run through the API (bugs 1, 2)


@pytest.fixture(scope="module")
def seed7_report(seed7_export, tmp_path_factory):
    """A short benchmark of the seed-7 export, run while the host process has unrelated command-line args."""
    from tnews_deploy.benchmark import run_benchmark

    run, exported = seed7_export
    config = BenchmarkConfig(
        pytorch=None,
        onnx=(exported.output,),
        output=tmp_path_factory.mktemp("bench7"),
        latency_sentences=6,
        warmup=1,
        rounds=2,
        batch_sizes=(4, 16),
        cold_start=False,
    )
    saved = sys.argv
    sys.argv = ["host-program", "--unrelated-host-flag"]
    try:
        return config, run_benchmark(config)
    finally:
        sys.argv = saved


def test_benchmark_run_scores_the_runs_evaluation_set(seed7_report, seed7_export):
    config, report = seed7_report
    run, _ = seed7_export
    assert report["evaluation"]["seed"] == RUN_SEED
    assert report["eval_sentences"] == report["evaluation"]["eval_size"] == run.config.eval_size
    # the same sentences as the run's scoring: PyTorch's macro-F1 here is the run's recorded one
    assert report["backends"][0]["macro_f1"] == pytest.approx(run.metrics["macro_f1"], abs=1e-4)
    assert [b["backend"] for b in report["backends"]] == ["pytorch", "fp32"]
    assert "cold_start" not in report["backends"][0]


def test_benchmark_records_its_own_settings_not_the_host_argv(seed7_report):
    config, report = seed7_report
    assert "--unrelated-host-flag" not in json.dumps(report)
    assert report["command"] == config.to_command(relative_to=config.output)  # it runs in the results folder
    assert "--rounds 2" in report["command"] and "--batch-sizes 4,16" in report["command"]
    assert report["settings"]["rounds"] == 2 and "quick" not in report["settings"]
    markdown = (config.output / "results.md").read_text()
    assert report["command"] in markdown and "host-program" not in markdown


def test_explicit_command_is_recorded(seed7_export, tmp_path):
    from tnews_deploy.benchmark import run_benchmark

    _, exported = seed7_export
    config = BenchmarkConfig.quick_config(
        pytorch=None, onnx=(exported.output,), output=tmp_path, latency_sentences=2, cold_start=False, max_sentences=16
    )
    report = run_benchmark(config, command="python my_script.py --x 1")
    assert report["command"] == "python my_script.py --x 1"
    assert "python my_script.py --x 1" in (tmp_path / "results.md").read_text()


# --------------------------------------------------------------------------- shared PyTorch logits


def test_pytorch_backend_and_verification_share_one_logits_path(trained_run, hf_data):
    from tnews_deploy.benchmark.backends import PyTorchBackend
    from tnews_deploy.data import evaluation_split, load_tnews
    from tnews_deploy.export.verify import pytorch_logits

    texts = list(evaluation_split(load_tnews(hf_data), 40, 1)["sentence"])
    max_length = trained_run.config.max_length
    reference = pytorch_logits(trained_run.checkpoint, texts, max_length)
    unsorted = PyTorchBackend(trained_run.checkpoint, 1, max_length).run(texts, 8)
    bucketed = PyTorchBackend(trained_run.checkpoint, 1, max_length, sort_by_length=True).run(texts, 8)
    np.testing.assert_allclose(bucketed.logits, reference, atol=1e-5)
    np.testing.assert_allclose(unsorted.logits, reference, atol=1e-4)  # other padding, same logits
    real = sum(PyTorchBackend(trained_run.checkpoint, 1, max_length).token_counts(texts))
    assert unsorted.real_tokens == bucketed.real_tokens == real
    assert real <= bucketed.padded_tokens <= unsorted.padded_tokens


# --------------------------------------------------------------------------- fp32 peak (bug 3)


def test_fp32_peak_is_the_best_of_several_sizes_and_libraries():
    from tnews_deploy.benchmark.peak import PEAK_SIZES, measure_fp32_peak

    assert len(PEAK_SIZES) >= 3
    peak = measure_fp32_peak(threads=1, sizes=(64, 128, 256), repeats=2, budget_s=0.2)
    by_size = peak["gflops_by_size"]
    assert set(by_size) == {"numpy", "torch"}
    assert all(set(rates) == {"64", "128", "256"} for rates in by_size.values())
    best = max(r for rates in by_size.values() for r in rates.values())
    assert peak["gflops"] == best == by_size[peak["library"]][str(peak["size"])]
    assert "1 thread(s)" in peak["method"]


# --------------------------------------------------------------------------- report and machine facts


def _synthetic_report():
    def row(name, kind, variant, p50, thr, share, cold):
        return {
            "backend": name,
            "kind": kind,
            "variant": variant,
            "path": f"/x/{name}",
            "model_mb": 117.6,
            "macro_f1": 0.49181,
            "micro_f1": 0.5285,
            "accuracy": 0.5285,
            "agreement_with_pytorch": 0.931,
            "latency_ms": {
                "p50": p50,
                "p95": p50 * 1.5,
                "p99": p50 * 2,
                "mean": p50 * 1.1,
                "samples": 300,
                "round_p50": {"median": p50, "min": p50, "max": p50},
            },
            "throughput": {
                "8": {"median": thr, "min": thr - 5, "max": thr + 5},
                "32": {"median": 2 * thr, "min": 2 * thr - 5, "max": 2 * thr + 5},
            },
            "padding_efficiency": {"8": 0.97, "32": 0.62},
            "gflops": {"8": 100.0, "32": 123.4},
            "share_of_fp32_peak": {"8": share / 2, "32": share},
            "cold_start": cold,
            "speedup": {
                "latency_p50": round(15.0 / p50, 2),
                "throughput_8": round(thr / 150, 2),
                "throughput_32": round(thr / 150, 2),
            },
        }

    rows = [
        row("pytorch", "pytorch", "fp32 eager", 15.0, 150.0, 0.44, {"seconds": 5.24, "peak_rss_mb": 935.2}),
        row("int8", "onnx", "int8", 3.0, 600.0, 1.68, None),
    ]
    rows[1].pop("cold_start")
    return {
        "created": "2026-01-01T00:00:00+00:00",
        "command": "tnews-deploy benchmark --onnx e/int8 --output b",
        "machine": {
            "cpu": "Test CPU",
            "arch": "x86_64",
            "usable_cpus": 2,
            "threads": 2,
            "flags": ["avx2"],
            "versions": {"python": "3.11", "onnxruntime": "1.32.0"},
        },
        "fp32_peak": {"gflops": 204.3, "method": "best fp32 GEMM of numpy and torch"},
        "settings": {"warmup": 20, "rounds": 3},
        "data": "data/hf",
        "evaluation": {
            "data": "data/hf",
            "eval_size": 2000,
            "seed": 7,
            "stratify": True,
            "sentences": 2000,
            "origin": {"data": "int8/manifest.json verification"},
        },
        "pytorch_checkpoint": "/runs/grid/freeze-encoder-5000/checkpoint",
        "max_length": 64,
        "eval_sentences": 2000,
        "mean_tokens": 18.76,
        "gflop_per_sentence": 0.8039,
        "backends": rows,
    }


def test_markdown_report_from_a_report_dict(tmp_path):
    from tnews_deploy.benchmark.report import render_markdown, write_report

    report = _synthetic_report()
    md = render_markdown(report)
    lines = md.splitlines()
    assert lines[0] == "# Benchmark: `freeze-encoder-5000/checkpoint` on 2,000 sentences"
    assert "Test CPU (x86_64), 2 usable CPUs, **2 threads for every backend**" in md
    assert "2,000 sentences of `data/hf` (seed 7, stratified; settings from int8/manifest.json verification)" in md
    assert "fp32 peak 204.3 GFLOP/s" in md
    header = next(line for line in lines if line.startswith("| backend"))
    table = [line for line in lines if line.startswith("| pytorch") or line.startswith("| int8")]
    cells = [dict(zip(header.strip("| ").split(" | "), line.strip("| ").split(" | "))) for line in table]
    assert cells[0]["p50 ms"] == "15.00" and cells[1]["p50 ms"] == "3.00"
    assert cells[1]["sent/s @32 (min–max)"] == "1200.0 (1195.0–1205.0)"
    assert cells[1]["% fp32 peak"] == "168%" and cells[0]["% fp32 peak"] == "44%"
    assert cells[1]["×PT p50"] == "5.00" and cells[1]["agree"] == "93.10%"
    assert cells[0]["cold s"] == "5.24" and cells[1]["cold s"] == "—"
    assert md.rstrip().endswith("```") and report["command"] in md

    write_report(report, tmp_path / "out")
    assert {p.name for p in (tmp_path / "out").iterdir()} == {
        "results.json",
        "results.md",
        "latency.png",
        "throughput.png",
    }
    assert json.loads((tmp_path / "out" / "results.json").read_text()) == report


def test_machine_facts_and_report_load_without_torch():
    code = textwrap.dedent("""
        import sys
        import tnews_deploy.machine as machine
        import tnews_deploy.benchmark.report
        info = machine.machine_info(1)
        assert info["threads"] == 1 and info["usable_cpus"] >= 1 and info["cpu"]
        assert {"tnews_deploy", "python", "numpy"} <= set(info["versions"])
        heavy = [m for m in ("torch", "transformers", "onnxruntime", "datasets", "optimum") if m in sys.modules]
        assert not heavy, heavy
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_export_and_benchmark_record_the_same_machine_facts(exported):
    from tnews_deploy import machine

    manifest = json.loads((exported.output / "manifest.json").read_text())
    versions = machine.library_versions()
    assert manifest["versions"] == versions

"""The benchmark counts each backend's FLOPs from its own model (a 1-layer export is not credited with a 2-layer
model's work), and its results.md names no absolute path."""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

import pytest

from tnews_deploy.benchmark.config import BenchmarkConfig
from tnews_deploy.benchmark.flops import ModelShape


@pytest.fixture(scope="module")
def one_layer_export(trained_run, hf_data, tmp_path_factory):
    """The trained 2-layer run cut to its first layer (same head, tokenizer and labels), exported in fp32."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from tnews_deploy.export import ExportConfig, export_model

    model = AutoModelForSequenceClassification.from_pretrained(trained_run.checkpoint)
    model.bert.encoder.layer = model.bert.encoder.layer[:1]
    model.config.num_hidden_layers = 1
    checkpoint = tmp_path_factory.mktemp("one-layer") / "checkpoint"
    model.save_pretrained(checkpoint)
    AutoTokenizer.from_pretrained(trained_run.checkpoint).save_pretrained(checkpoint)
    return export_model(
        checkpoint,
        tmp_path_factory.mktemp("one-layer-export") / "L1-fp32",
        ExportConfig(
            data=str(hf_data), eval_size=trained_run.config.eval_size, max_length=trained_run.config.max_length
        ),
    )


@pytest.fixture(scope="module")
def flops_report(trained_run, exported, one_layer_export, tmp_path_factory):
    from tnews_deploy.benchmark import run_benchmark

    config = BenchmarkConfig.quick_config(
        pytorch=trained_run.run_dir,
        onnx=(exported.output, one_layer_export.output),
        output=tmp_path_factory.mktemp("bench") / "results",
        max_sentences=32,
        latency_sentences=2,
        warmup=0,
        cold_start=False,
    )
    return config, run_benchmark(config)


def test_each_backend_counts_its_own_models_flops(flops_report, exported, one_layer_export):
    _, report = flops_report
    rows = {row["backend"]: row for row in report["backends"]}
    teacher, two, one = rows["pytorch"], rows[exported.output.name], rows[one_layer_export.output.name]
    for row, folder in ((two, exported.output), (one, one_layer_export.output)):
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        assert row["model_shape"] == ModelShape.from_config(config).__dict__
    assert teacher["model_shape"]["layers"] == two["model_shape"]["layers"] == 2
    assert one["model_shape"]["layers"] == 1
    # the same tokens, half the encoder: fewer FLOPs per sentence than the 2-layer model, more than none
    assert one["mean_tokens"] == two["mean_tokens"] == teacher["mean_tokens"]
    assert two["gflop_per_sentence"] == teacher["gflop_per_sentence"] == report["gflop_per_sentence"]
    assert 0 < one["gflop_per_sentence"] < two["gflop_per_sentence"]
    for row in rows.values():  # GFLOP/s and the share of the peak count the backend's own FLOPs
        for size, rate in row["gflops"].items():
            expected = row["gflop_per_sentence"] * row["throughput"][size]["median"]
            assert rate == pytest.approx(expected, rel=1e-3)
            assert row["share_of_fp32_peak"][size] == pytest.approx(rate / report["fp32_peak"]["gflops"], abs=1e-3)


def test_results_md_shows_each_backends_flops_and_no_absolute_path(flops_report, exported, one_layer_export, hf_data):
    config, report = flops_report
    markdown = (config.output / "results.md").read_text(encoding="utf-8")
    for folder in (config.output, exported.output, one_layer_export.output, hf_data):
        for form in {str(folder), os.path.realpath(folder)}:
            assert form not in markdown
    header = next(line for line in markdown.splitlines() if line.startswith("| backend"))
    assert "GFLOP/sent" in header.split(" | ")
    one = next(line for line in markdown.splitlines() if line.startswith(f"| {one_layer_export.output.name} "))
    cells = dict(zip(header.strip("| ").split(" | "), one.strip("| ").split(" | ")))
    assert float(cells["GFLOP/sent"]) == pytest.approx(
        next(r for r in report["backends"] if r["backend"] == one_layer_export.output.name)["gflop_per_sentence"],
        rel=1e-3,
    )
    # the recorded command runs in the results folder: its paths lead from there to the same folders
    args = shlex.split(report["command"])
    assert report["command"] in markdown
    assert (config.output / args[args.index("--output") + 1]).resolve() == config.output.resolve()
    onnx = [(config.output / args[i + 1]).resolve() for i, a in enumerate(args) if a == "--onnx"]
    assert onnx == [exported.output.resolve(), one_layer_export.output.resolve()]
    assert (config.output / args[args.index("--pytorch") + 1]).resolve() == Path(config.pytorch).resolve()
    # the evaluation data is named relative to the results folder as well
    relative_data = os.path.relpath(os.path.realpath(hf_data), os.path.realpath(config.output))
    assert f"sentences of `{relative_data}`" in markdown

"""The benchmark: FLOP counter against a hand computation, and a quick run end to end."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from tnews_deploy.benchmark import ModelShape, encoder_flops
from tnews_deploy.cli import main


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


def test_quick_benchmark_writes_well_formed_results(trained_run, exported, hf_data, tmp_path):
    out = tmp_path / "bench"
    result = CliRunner().invoke(main, ["benchmark", "--pytorch", str(trained_run.run_dir), "--onnx",
                                       str(exported.output), "--data", str(hf_data), "--output", str(out),
                                       "--quick"], catch_exceptions=False)
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


def test_missing_backend_folder_is_a_clear_error(trained_run, tmp_path):
    result = CliRunner().invoke(main, ["benchmark", "--pytorch", str(trained_run.run_dir), "--onnx",
                                       str(tmp_path / "nope"), "--output", str(tmp_path / "b"), "--quick"])
    assert result.exit_code == 2 and "no such ONNX folder" in result.output

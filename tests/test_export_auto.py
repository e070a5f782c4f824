"""`export --quantize auto`: every candidate built and verified with the export gate, timed, the fastest that passes
kept; timings are injected (no timed assertions)."""

from __future__ import annotations

import json

import pytest

from tnews_deploy.export import ExportConfig, ExportRefused, GatePolicy

LOOSE = GatePolicy(max_f1_drop=1.0)  # the tiny model's int8 F1 moves by points: let every candidate pass
NO_INT8 = GatePolicy(max_f1_drop=-1.0)  # approximate exports must gain a whole macro-F1: the int8 ones are refused
NAMES = {"fp32", "fp32-O2", "int8", "int8-O2"}


class FakeTimer:
    """Timings from a table; records which candidates it was asked to time."""

    def __init__(self, figures: dict[str, tuple[float, float]]) -> None:
        self.figures = figures  # name -> (batch-1 p50 ms, titles/s)
        self.asked: list[str] = []
        self.texts = 0

    def __call__(self, folders, texts, settings):
        self.asked = list(folders)
        self.texts = len(texts)
        for folder in folders.values():
            assert (folder / "model.onnx").is_file()  # a built, verified folder
        return {
            name: {"latency_p50_ms": self.figures[name][0], "throughput": self.figures[name][1]} for name in folders
        }


# int8-O2 has the best throughput, fp32-O2 the best batch-1 latency.
FIGURES = {"fp32": (3.0, 100.0), "fp32-O2": (1.0, 150.0), "int8": (2.0, 180.0), "int8-O2": (2.5, 300.0)}


def _auto(trained_run, output, timer, **config):
    from tnews_deploy.export.auto import export_auto

    return export_auto(trained_run.run_dir, output, ExportConfig(quantize="auto", **config), timer=timer)


@pytest.fixture(scope="module")
def by_throughput(trained_run, tmp_path_factory):
    timer = FakeTimer(FIGURES)
    return _auto(trained_run, tmp_path_factory.mktemp("auto") / "model", timer, policy=LOOSE), timer


@pytest.mark.parametrize("prefer, chosen", [("throughput", "int8-O2"), ("latency", "fp32-O2")])
def test_auto_keeps_the_fastest_candidate(trained_run, tmp_path, by_throughput, prefer, chosen):
    if prefer == "throughput":
        result, timer = by_throughput
    else:
        timer = FakeTimer(FIGURES)
        result = _auto(trained_run, tmp_path / "model", timer, policy=LOOSE, prefer="latency")
    assert set(timer.asked) == NAMES  # every candidate passed the gate and was timed
    assert timer.texts == trained_run.config.eval_size  # on the evaluation texts
    manifest = json.loads((result.output / "manifest.json").read_text())
    assert manifest == result.manifest
    auto = manifest["auto"]
    assert auto["chosen"] == chosen and auto["prefer"] == prefer
    # The folder is the chosen variant, verified as such.
    level = {"fp32": None, "fp32-O2": "O2", "int8": None, "int8-O2": "O2"}[chosen]
    assert (manifest["optimization"] or {}).get("level") == level
    assert bool(manifest["quantization"]) == chosen.startswith("int8")
    from tnews_deploy import Predictor

    assert Predictor(result.output).predict("北京大学举行毕业典礼").label  # loads, checksums included
    # Only OUTPUT is left: no candidate or staging folder beside it.
    assert [p.name for p in result.output.parent.iterdir()] == [result.output.name]


def test_auto_records_every_candidate(by_throughput):
    result, _ = by_throughput
    auto = result.manifest["auto"]
    assert [c["name"] for c in auto["candidates"]] == ["fp32", "fp32-O2", "int8", "int8-O2"]
    for cand in auto["candidates"]:
        assert cand["passed"] is True and cand["reasons"] == []
        gate = cand["gate"]
        assert set(gate) >= {"agreement", "macro_f1_drop", "max_abs_logit_diff", "exact", "onnx", "pytorch"}
        assert gate["exact"] is (not cand["name"].startswith("int8"))
        assert cand["batch_invariance"]["label_changes"] == 0
        assert cand["bytes"] > 0
        assert (cand["timing"]["latency_p50_ms"], cand["timing"]["throughput"]) == FIGURES[cand["name"]]
    from tnews_deploy.int8_weights import cpu_description

    assert auto["machine"] == cpu_description()
    assert auto["timing"]["batch_size"] == 32 and auto["timing"]["threads"] >= 1
    card = (result.output / "README.md").read_text()
    assert "## Variant chosen on this machine" in card
    assert "| **int8-O2** (chosen) | passed |" in card
    for name in NAMES - {"int8-O2"}:
        assert f"| {name} | passed |" in card


@pytest.mark.parametrize("prefer", ["throughput", "latency"])
def test_a_candidate_refused_by_the_gate_is_never_picked(trained_run, tmp_path, prefer):
    # The int8 candidates are the fastest by both measures, and refused by the gate.
    figures = {"fp32": (3.0, 100.0), "fp32-O2": (2.0, 150.0), "int8": (0.5, 900.0), "int8-O2": (0.4, 1000.0)}
    timer = FakeTimer(figures)
    result = _auto(trained_run, tmp_path / "model", timer, policy=NO_INT8, prefer=prefer)
    auto = result.manifest["auto"]
    assert auto["chosen"] == "fp32-O2"
    assert set(timer.asked) == {"fp32", "fp32-O2"}
    refused = {c["name"]: c for c in auto["candidates"] if not c["passed"]}
    assert set(refused) == {"int8", "int8-O2"}
    for cand in refused.values():
        assert any("macro-F1 drops" in reason for reason in cand["reasons"])
        assert cand["timing"] is None and cand["gate"]["macro_f1_drop"] is not None
    assert result.manifest["quantization"] is None
    assert [p.name for p in result.output.parent.iterdir()] == ["model"]


def test_auto_fails_like_a_refused_export_when_no_candidate_passes(trained_run, tmp_path, monkeypatch):
    from tnews_deploy.export import exporter

    real_gate = exporter.apply_gate

    def refuse_exact(report, policy):  # the exact candidates fail too
        report = real_gate(report, policy)
        if report.exact:
            report.passed, report.reasons = False, ["refused by the test"]
        return report

    monkeypatch.setattr(exporter, "apply_gate", refuse_exact)
    timer = FakeTimer(FIGURES)
    with pytest.raises(ExportRefused, match="no candidate passed") as info:
        _auto(trained_run, tmp_path / "model", timer, policy=NO_INT8)
    for name in NAMES:
        assert name in str(info.value)
    assert timer.asked == []
    assert list(tmp_path.iterdir()) == []  # nothing written, nothing left behind


def test_auto_config_is_checked():
    from tnews_deploy.errors import ConfigError

    with pytest.raises(ConfigError, match="--prefer"):
        ExportConfig(quantize="auto", prefer="size")
    with pytest.raises(ConfigError, match="--optimize"):
        ExportConfig(quantize="auto", optimize="O3")


def test_cli_export_auto_times_for_real_and_records_it(trained_run, tmp_path):
    """Through the CLI with the real timer (Predictor, alternating rounds): the choice matches the recorded
    figures; the figures themselves are not asserted."""
    from click.testing import CliRunner

    from tnews_deploy.cli import main

    out = tmp_path / "auto"
    result = CliRunner().invoke(
        main,
        [
            "export",
            str(trained_run.run_dir),
            "--output",
            str(out),
            "--quantize",
            "auto",
            "--prefer",
            "latency",
            "--threads",
            "1",
            "--max-f1-drop",
            "1.0",
        ],
    )
    assert result.exit_code == 0, result.output
    auto = json.loads((out / "manifest.json").read_text())["auto"]
    timed = {c["name"]: c["timing"] for c in auto["candidates"]}
    assert set(timed) == NAMES and auto["timing"]["threads"] == 1
    assert auto["chosen"] == min(timed, key=lambda n: timed[n]["latency_p50_ms"])
    for timing in timed.values():
        assert timing["latency_p50_ms"] > 0 and timing["throughput"] > 0
        assert len(timing["latency_round_p50_ms"]) == len(timing["throughput_rounds"]) == auto["timing"]["rounds"]
    assert "chosen" in result.output and "int8-O2" in result.output  # the table is printed


def test_cli_prefer_needs_auto(trained_run, tmp_path):
    from click.testing import CliRunner

    from tnews_deploy.cli import main

    result = CliRunner().invoke(
        main, ["export", str(trained_run.run_dir), "--output", str(tmp_path / "x"), "--prefer", "latency"]
    )
    assert result.exit_code == 2 and "--quantize auto" in result.output
    assert not (tmp_path / "x").exists()

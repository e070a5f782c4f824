"""Verified export through Optimum: manifest, parity, gate, atomicity, Optimum loading."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tnews_deploy.errors import UserError
from tnews_deploy.export import ExportConfig, ExportRefused, GatePolicy, export_model, resolve_source


@pytest.fixture(scope="session")
def fp32_export(exported):
    return exported


def test_fp32_export_folder_and_manifest(fp32_export, trained_run):
    out = fp32_export.output
    assert {"model.onnx", "tokenizer.json", "config.json", "manifest.json"} <= {p.name for p in out.iterdir()}
    manifest = json.loads((out / "manifest.json").read_text())
    from tnews_deploy.predictor import sha256_of

    assert manifest["model"]["sha256"] == sha256_of(out / "model.onnx")
    assert manifest["max_length"] == trained_run.config.max_length
    assert manifest["opset"] >= 14
    assert manifest["optimization"] is None and manifest["quantization"] is None
    assert manifest["labels"]["7"] == "news_edu"
    assert set(manifest["versions"]) >= {"torch", "transformers", "optimum", "onnxruntime"}
    v = manifest["verification"]
    assert v["passed"] is True and v["exact"] is True
    assert v["evaluation"]["same_as_training_run"] is True
    assert v["sentences"] == trained_run.config.eval_size


def test_fp32_parity_with_pytorch(fp32_export, trained_run):
    report = fp32_export.report
    assert report.agreement == 1.0
    assert report.max_abs_logit_diff < 1e-3
    # same evaluation set as the run: PyTorch F1 here equals the run's recorded F1
    assert report.pytorch["macro_f1"] == pytest.approx(trained_run.metrics["macro_f1"], abs=1e-6)
    assert report.onnx["macro_f1"] == pytest.approx(report.pytorch["macro_f1"], abs=1e-9)


def test_optimum_loads_the_exported_folder(fp32_export):
    from optimum.onnxruntime import ORTModelForSequenceClassification
    from transformers import AutoTokenizer

    model = ORTModelForSequenceClassification.from_pretrained(fp32_export.output)
    tokenizer = AutoTokenizer.from_pretrained(fp32_export.output)
    logits = model(**tokenizer(["\u9f00\u9f01的人"], return_tensors="pt")).logits
    assert tuple(logits.shape) == (1, 15)


def test_grid_source_picks_the_best_run(trained_run, tmp_path):
    grid = tmp_path / "grid"
    grid.mkdir()
    best = {"variant": "full", "train_size": 300, "macro_f1": 0.9, "checkpoint": "r/checkpoint"}
    (grid / "results.json").write_text(json.dumps({"best": best}))
    (grid / "r").symlink_to(trained_run.run_dir, target_is_directory=True)
    source = resolve_source(grid)
    assert source.kind == "grid" and source.checkpoint == grid / "r" / "checkpoint"
    assert source.run_config["variant"] == "full"
    assert "best grid run full × 300" in source.describe()


def test_bad_sources_are_clear_errors(tmp_path, trained_run):
    with pytest.raises(UserError, match="no such folder"):
        resolve_source(tmp_path / "missing")
    with pytest.raises(UserError, match="neither a checkpoint"):
        resolve_source(tmp_path)
    with pytest.raises(UserError, match="already exists"):
        export_model(trained_run.run_dir, tmp_path)


def test_int8_and_optimised_exports_pass_with_tolerances(trained_run, tmp_path):
    int8 = export_model(
        trained_run.run_dir,
        tmp_path / "int8-o2",
        ExportConfig(quantize="int8", optimize="O2", policy=GatePolicy(max_f1_drop=0.2)),
    )
    m = int8.manifest
    assert m["quantization"]["mode"] == "int8" and m["quantization"]["target"] == "portable"
    # the O2 graph's weight products, fused Q/K/V included, are uint8 in the file and agree in the other form
    kernels = m["verification"]["int8_kernels"]
    assert kernels["file"] == "u8u8"
    other = kernels.get("u8u8") or kernels.get("u8s8")
    if other:
        assert other["label_changes"] == 0
    assert m["optimization"]["level"] == "O2" and m["verification"]["exact"] is False
    assert int8.report.macro_f1_drop <= 0.2
    # per-token int8 on the O2 graph: the fused attention's Q/K/V are int8 too, still batch-invariant
    import onnx

    ops = {n.op_type for n in onnx.load(str(int8.output / "model.onnx")).graph.node}
    assert "MultiHeadAttention" in ops and "Attention" not in ops
    assert m["quantization"]["scheme"] == "per-token-symmetric" and m["quantization"]["kept_fp32"] == []
    assert m["verification"]["batch_invariance"]["label_changes"] == 0
    assert m["verification"]["batch_invariance"]["max_abs_prob_diff"] <= 1e-5
    o2 = export_model(trained_run.run_dir, tmp_path / "o2", ExportConfig(optimize="O2"))
    assert o2.report.agreement >= 0.999


def test_gate_refuses_a_broken_model_and_leaves_nothing(trained_run, tmp_path, monkeypatch):
    """An ONNX model that does not match its checkpoint must be refused, with no folder left behind."""
    import tnews_deploy.export.exporter as exporter

    real_build = exporter.build_onnx

    def build_then_break(checkpoint, folder, config):
        steps = real_build(checkpoint, folder, config)
        import onnx
        from onnx import numpy_helper

        model = onnx.load(str(folder / "model.onnx"))
        for init in model.graph.initializer:  # scramble the classifier: a wrong model
            if "classifier" in init.name and "weight" in init.name:
                w = numpy_helper.to_array(init)
                init.CopyFrom(numpy_helper.from_array(np.random.default_rng(0).permutation(w.T).T.copy(), init.name))
        onnx.save(model, str(folder / "model.onnx"))
        return steps

    monkeypatch.setattr(exporter, "build_onnx", build_then_break)
    with pytest.raises(ExportRefused, match="agreement with PyTorch") as info:
        export_model(trained_run.run_dir, tmp_path / "broken")
    assert info.value.report.agreement < 0.999
    assert list(tmp_path.iterdir()) == []  # neither the output nor a staging folder


def test_impossible_f1_gate_refuses_int8(trained_run, tmp_path):
    with pytest.raises(ExportRefused, match="macro-F1 drops"):
        export_model(
            trained_run.run_dir, tmp_path / "int8", ExportConfig(quantize="int8", policy=GatePolicy(max_f1_drop=-1.0))
        )
    assert list(tmp_path.iterdir()) == []


def test_interrupted_export_leaves_no_folder(trained_run, tmp_path, monkeypatch):
    import tnews_deploy.export.exporter as exporter

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(exporter, "pytorch_logits", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export_model(trained_run.run_dir, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_force_replaces_an_existing_export(trained_run, fp32_export, tmp_path):
    import shutil

    target = tmp_path / "target"
    shutil.copytree(fp32_export.output, target)
    (target / "stale.txt").write_text("old")
    export_model(trained_run.run_dir, target, ExportConfig(force=True))
    assert not (target / "stale.txt").exists() and (target / "manifest.json").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["target"]


def test_bare_checkpoint_falls_back_to_the_training_defaults(trained_run, hf_data, tmp_path):
    """No run_config.json beside the checkpoint: max_length and seed are TrainConfig's defaults."""
    import shutil

    from tnews_deploy.training.config import TrainConfig

    bare = tmp_path / "bare"
    shutil.copytree(trained_run.checkpoint, bare)
    result = export_model(bare, tmp_path / "out", ExportConfig(data=str(hf_data), eval_size=60))
    assert result.source.kind == "checkpoint" and result.source.run_config is None
    assert result.manifest["max_length"] == TrainConfig.max_length
    assert result.manifest["verification"]["evaluation"]["seed"] == TrainConfig.seed


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: ExportConfig(optimize="O4"), "--optimize must be one of"),
        (lambda: ExportConfig(quantize="int4"), "--quantize must be one of"),
        (lambda: ExportConfig(max_length=4), "--max-length must be at least 8 (got 4)"),
        (lambda: GatePolicy(min_agreement=-0.1), "--min-agreement must be between 0 and 1 (got -0.1)"),
        (lambda: GatePolicy(max_f1_drop=2.0), "--max-f1-drop must be between -1 and 1 (got 2.0)"),
    ],
)
def test_export_configs_validate_themselves(make, message):
    from tnews_deploy.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        make()
    assert message in str(info.value)

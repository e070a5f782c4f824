"""Distillation: student construction, the loss, the run folder, unlabeled labels, resuming, bad options."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import tiny_train_config
from synthetic import build_tiny_bert, make_rows
from tnews_deploy.compress.distill import DistillConfig, distill_model, evenly_spaced_layers
from tnews_deploy.errors import ConfigError
from tnews_deploy.training.run import is_finished

CLI = [sys.executable, "-m", "tnews_deploy.cli"]


def fast_config(teacher: Path, **overrides) -> DistillConfig:
    """A few-second distillation of the tiny teacher that still learns the synthetic task."""
    settings = dict(
        teacher=str(teacher),
        layers=2,
        epochs=1.0,
        min_steps=120,
        lr=3e-3,
        batch_size=16,
        evaluations=4,
        early_stopping_patience=0,
    )
    settings.update(overrides)
    return DistillConfig(**settings)


# Trains a teacher (and `distilled` a student from it): every test using it is slow (conftest).
SLOW_FIXTURES = ("teacher",)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, hf_data):
    """A trained 4-layer tiny teacher run."""
    from tnews_deploy.training import train_run

    model = build_tiny_bert(tmp_path_factory.mktemp("tiny-bert-4"), layers=4)
    return train_run(
        tiny_train_config(model, hf_data, min_steps=120), tmp_path_factory.mktemp("teacher") / "full-300", quiet=True
    )


@pytest.fixture(scope="module")
def distilled(teacher, tmp_path_factory):
    return distill_model(fast_config(teacher.run_dir), tmp_path_factory.mktemp("distill") / "L2", quiet=True)


def _weights(checkpoint: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(checkpoint / "model.safetensors"))


# --------------------------------------------------------------------------- layers and the student


def test_evenly_spaced_layers_span_first_to_last():
    assert evenly_spaced_layers(12, 6) == (0, 2, 4, 7, 9, 11)  # DistilBERT's choice
    assert evenly_spaced_layers(12, 4) == (0, 4, 7, 11)
    assert evenly_spaced_layers(4, 2) == (0, 3)
    assert evenly_spaced_layers(12, 12) == tuple(range(12))
    assert evenly_spaced_layers(12, 1) == (0,)
    with pytest.raises(ConfigError, match="--layers"):
        evenly_spaced_layers(4, 5)


@pytest.mark.parametrize("indices", [(0, 3), (1, 2), (2,)])
def test_student_is_a_copy_of_the_chosen_teacher_layers(teacher, indices):
    import torch

    from tnews_deploy.compress.distill import build_student

    student, source = build_student(teacher.checkpoint, indices)
    assert student.config.num_hidden_layers == len(indices) and len(student.bert.encoder.layer) == len(indices)
    teacher_state, student_state = source.state_dict(), student.state_dict()
    for key, value in student_state.items():
        if ".encoder.layer." in key:
            head, rest = key.split(".encoder.layer.", 1)
            index, tail = rest.split(".", 1)
            key = f"{head}.encoder.layer.{indices[int(index)]}.{tail}"
        assert torch.equal(value, teacher_state[key]), key
    # Embeddings, pooler and classifier head are the teacher's.
    for name in ("bert.embeddings.word_embeddings.weight", "bert.pooler.dense.weight", "classifier.weight"):
        assert torch.equal(student_state[name], teacher_state[name])


# --------------------------------------------------------------------------- the loss


def test_distillation_loss_terms():
    import torch

    from tnews_deploy.compress.distill_trainer import distillation_loss

    torch.manual_seed(0)
    student, teacher = torch.randn(6, 15), torch.randn(6, 15)
    labels = torch.tensor([3, -100, -100, 7, -100, -100])
    loss, kl, ce = distillation_loss(student, teacher, labels, temperature=2.0, alpha=0.5)
    p_teacher = torch.softmax(teacher / 2, -1)
    expected_kl = (p_teacher * (p_teacher.log() - torch.log_softmax(student / 2, -1))).sum(-1).mean() * 4
    expected_ce = torch.nn.functional.cross_entropy(student[[0, 3]], labels[[0, 3]])
    assert torch.allclose(kl, expected_kl, atol=1e-5) and torch.allclose(ce, expected_ce, atol=1e-5)
    assert torch.allclose(loss, expected_kl + 0.5 * expected_ce, atol=1e-5)
    # A batch without gold labels: the soft term only, and no NaN.
    loss, kl, ce = distillation_loss(student, teacher, torch.full((6,), -100), 2.0, 0.5)
    assert float(ce) == 0.0 and torch.allclose(loss, kl)
    # The student matching the teacher has no soft loss.
    assert float(distillation_loss(teacher, teacher, None, 3.0, 1.0)[0]) == pytest.approx(0.0, abs=1e-6)


# --------------------------------------------------------------------------- the run folder


def test_distilled_run_folder(distilled, teacher):
    import numpy as np

    run = distilled.run_dir
    assert is_finished(run) and not (run / "trainer").exists() and not (run / "teacher-fp32").exists()
    config = json.loads((run / "run_config.json").read_text())
    assert config["layers"] == 2 and config["layer_indices"] == [0, 3] and config["teacher_layers"] == 4
    assert (config["temperature"], config["alpha"]) == (2.0, 0.5)
    teacher_config = teacher.config
    # What `export` needs to verify on the teacher's evaluation set, as the teacher had it.
    assert config["data"] == teacher_config.data.to_json() and config["seed"] == teacher_config.seed
    assert (config["eval_size"], config["max_length"]) == (teacher_config.eval_size, teacher_config.max_length)
    assert config["train_size"] == teacher_config.train_size
    assert config["transfer_size"] > config["labeled_in_transfer"] > 0
    student_config = json.loads((distilled.checkpoint / "config.json").read_text())
    assert student_config["num_hidden_layers"] == 2
    logits = np.load(run / config["teacher_logits"])
    assert logits.shape == (config["transfer_size"], 15)
    metrics = distilled.metrics
    assert metrics["layers"] == 2 and metrics["total_parameters"] < metrics["teacher_parameters"]
    assert metrics["steps"] == config["total_steps"] and metrics["resumed_from_steps"] == []


def test_student_beats_a_random_head(distilled):
    import numpy as np
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from tnews_deploy.data import evaluation_split, load_tnews
    from tnews_deploy.export.verify import pytorch_logits
    from tnews_deploy.training.metrics import f1_scores

    config = distilled.run_config
    evaluation = evaluation_split(load_tnews(config["data"]), config["eval_size"], config["seed"])
    texts, labels = list(evaluation["sentence"]), np.asarray(evaluation["label"])
    random_head = AutoModelForSequenceClassification.from_pretrained(distilled.checkpoint)
    torch.manual_seed(0)
    random_head.classifier.reset_parameters()
    random_dir = distilled.run_dir.parent / "random-head"
    random_head.save_pretrained(random_dir)
    AutoTokenizer.from_pretrained(distilled.checkpoint).save_pretrained(random_dir)
    baseline = f1_scores(labels, pytorch_logits(random_dir, texts, config["max_length"]).argmax(-1))["macro_f1"]
    student = f1_scores(labels, pytorch_logits(distilled.checkpoint, texts, config["max_length"]).argmax(-1))
    assert student["macro_f1"] == pytest.approx(distilled.metrics["macro_f1"], abs=1e-6)
    assert student["macro_f1"] > baseline + 0.15


def test_distilled_run_exports_and_serves(distilled, tmp_path):
    from tnews_deploy import Predictor
    from tnews_deploy.export import export_model

    result = export_model(distilled.run_dir, tmp_path / "fp32")
    evaluation = result.manifest["verification"]["evaluation"]
    assert evaluation["same_as_training_run"] and evaluation["eval_size"] == distilled.run_config["eval_size"]
    assert result.report.pytorch["macro_f1"] == pytest.approx(distilled.metrics["macro_f1"], abs=1e-6)
    predictor = Predictor(tmp_path / "fp32")
    prediction = predictor.predict(make_rows(1, seed=9)[0]["sentence"])
    assert prediction.label in predictor.labels


def test_finished_run_is_reused_and_other_settings_refused(distilled):
    before = (distilled.run_dir / "metrics.json").stat().st_mtime_ns
    config = fast_config(Path(distilled.run_config["teacher"]))
    again = distill_model(config, distilled.run_dir, quiet=True)
    assert again.metrics == distilled.metrics
    assert (distilled.run_dir / "metrics.json").stat().st_mtime_ns == before
    with pytest.raises(ConfigError, match="alpha"):
        distill_model(replace(config, alpha=0.9), distilled.run_dir, quiet=True)


# --------------------------------------------------------------------------- unlabeled texts


def test_labels_of_the_unlabeled_set_are_never_read(teacher, tmp_path):
    """Shuffled or corrupt labels on the transfer texts give bit-identical students."""
    rows = make_rows(12, seed=31)
    texts = [r["sentence"] for r in rows]
    shuffled = [r["label"] for r in rows]
    random.Random(0).shuffle(shuffled)
    variants = {
        "true": [{"sentence": t, "label": r["label"]} for t, r in zip(texts, rows)],
        "shuffled": [{"sentence": t, "label": label} for t, label in zip(texts, shuffled)],
        "corrupt": [{"sentence": t, "label": ["not", "a", "label"], "label_desc": None} for t in texts],
    }
    students = {}
    for name, lines in variants.items():
        source = tmp_path / f"{name}.jsonl"
        source.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines), encoding="utf-8")
        config = fast_config(teacher.run_dir, unlabeled=str(source), min_steps=30, evaluations=2)
        result = distill_model(config, tmp_path / name, quiet=True)
        students[name] = _weights(result.checkpoint)
    reference = students.pop("true")
    for name, weights in students.items():
        assert weights.keys() == reference.keys()
        assert all(bool((weights[k] == reference[k]).all()) for k in reference), name


# --------------------------------------------------------------------------- resuming


def test_killed_run_resumes_from_its_checkpoint(teacher, tmp_path):
    out = tmp_path / "killed"
    options = [
        "--layers",
        "2",
        "--epochs",
        "1",
        "--min-steps",
        "200",
        "--lr",
        "3e-3",
        "--batch-size",
        "16",
        "--evaluations",
        "4",
        "--patience",
        "0",
        "--save-every",
        "20",
        "--quiet",
    ]
    proc = subprocess.Popen(
        CLI + ["distill", str(teacher.run_dir), "--output", str(out), *options],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not list((out / "trainer").glob("checkpoint-*/trainer_state.json")):
            assert proc.poll() is None, "the run ended before its first checkpoint"
            assert time.monotonic() < deadline, "timed out waiting for the first checkpoint"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert not is_finished(out)
    saved = max(int(p.parent.name.split("-")[1]) for p in (out / "trainer").glob("checkpoint-*/trainer_state.json"))
    state = json.loads((out / "trainer" / f"checkpoint-{saved}" / "trainer_state.json").read_text())
    best_before = state["stateful_callbacks"]["SelectBestCallback"]["attributes"]["best_metric"]

    config = fast_config(teacher.run_dir, min_steps=200, evaluations=4, save_every=20)
    result = distill_model(config, out, quiet=True)
    metrics = result.metrics
    assert metrics["resumed_from_steps"] == [saved] and saved >= 20
    assert metrics["steps_this_invocation"] == metrics["steps"] - saved < metrics["steps"]
    assert metrics["teacher_logits_cached"] is True
    # the resumed run remembers the best selection score found before the kill (callback state restored)
    if best_before is not None:
        assert metrics["best_selection_macro_f1"] >= best_before
    assert is_finished(out) and not (out / "trainer").exists()


def test_interrupted_teacher_logits_resume_at_the_last_chunk(teacher, tmp_path, monkeypatch):
    import numpy as np

    from tnews_deploy.compress import distill as module
    from tnews_deploy.predictor import Predictor

    texts = [r["sentence"] for r in make_rows(10, seed=41)]  # 150 texts, chunks of 40
    monkeypatch.setattr(module, "LOGITS_CHUNK", 40)
    calls = []
    real = Predictor.logits

    class Killed(Exception):
        pass

    def counting(self, batch, *args, **kwargs):
        if self.model_dir.name == module.TEACHER_EXPORT_DIR:  # not the export's own verification
            calls.append(len(batch))
            if len(calls) == 3:
                raise Killed  # killed during the third chunk
        return real(self, batch, *args, **kwargs)

    monkeypatch.setattr(Predictor, "logits", counting)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with pytest.raises(Killed):
        module.teacher_logits(teacher.run_dir, teacher.checkpoint, texts, 32, run_dir, quiet=True)
    calls.clear()
    logits, info = module.teacher_logits(teacher.run_dir, teacher.checkpoint, texts, 32, run_dir, quiet=True)
    assert calls == [40, 30] and info["cached"] is False  # chunks 3 and 4 only
    monkeypatch.setattr(Predictor, "logits", real)
    (tmp_path / "fresh").mkdir()
    fresh, _ = module.teacher_logits(teacher.run_dir, teacher.checkpoint, texts, 32, tmp_path / "fresh", quiet=True)
    np.testing.assert_allclose(logits, fresh, atol=1e-5)
    again, info = module.teacher_logits(teacher.run_dir, teacher.checkpoint, texts, 32, run_dir, quiet=True)
    assert info["cached"] is True and np.array_equal(again, logits)
    assert sorted(p.name for p in run_dir.iterdir()) == [info["file"]]  # no partial files, no export left


def test_a_second_student_reuses_the_teachers_logits_from_the_user_cache(teacher, tmp_path, monkeypatch):
    """Logits computed for one run folder serve another run on the same texts without exporting the teacher
    again; a teacher whose weights file changes (retrained in place) gets a new key."""
    import os

    import numpy as np

    from tnews_deploy.compress import distill as module

    monkeypatch.setenv(module.CACHE_ENV, str(tmp_path / "cache"))
    texts = [r["sentence"] for r in make_rows(4, seed=43)]
    (tmp_path / "a").mkdir()
    first, info = module.teacher_logits(teacher.run_dir, teacher.checkpoint, texts, 32, tmp_path / "a", quiet=True)
    assert info["cached"] is False and (module.logits_cache_dir() / info["file"]).is_file()

    def no_export(*args, **kwargs):
        raise AssertionError("the teacher was exported again")

    monkeypatch.setattr("tnews_deploy.export.export_model", no_export)
    (tmp_path / "b").mkdir()
    second, again = module.teacher_logits(teacher.run_dir, teacher.checkpoint, texts, 32, tmp_path / "b", quiet=True)
    assert (again["file"], again["cached"]) == (info["file"], True) and np.array_equal(first, second)
    assert (tmp_path / "b" / info["file"]).is_file()  # the run folder holds its own copy

    weights = next(teacher.checkpoint / w for w in module.WEIGHT_FILES if (teacher.checkpoint / w).is_file())
    stat = weights.stat()
    try:
        os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
        assert module.transfer_key(texts, teacher.checkpoint, 32) != info["file"].split("-")[-1].split(".")[0]
    finally:
        os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_resumed_selection_keeps_the_best_weights_found_before_the_kill(tmp_path):
    import torch
    from transformers import TrainerControl, TrainerState

    from tnews_deploy.training.selection import SelectBestCallback

    model = torch.nn.Linear(3, 2)
    callback = SelectBestCallback(patience=3, persist_dir=str(tmp_path / "best"))
    state = TrainerState(global_step=10)
    callback.on_evaluate(None, state, TrainerControl(), metrics={"eval_macro_f1": 0.7}, model=model)
    best = {k: v.clone() for k, v in model.state_dict().items()}
    saved = callback.state()  # what a Trainer checkpoint keeps (JSON)
    json.dumps(saved)

    restored = SelectBestCallback(**saved["args"])  # as Trainer rebuilds it on resume
    for key, value in saved["attributes"].items():
        setattr(restored, key, value)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    restored.on_evaluate(
        None, TrainerState(global_step=20), TrainerControl(), metrics={"eval_macro_f1": 0.5}, model=model
    )
    assert restored.best_step == 10 and restored.misses == 1
    assert restored.restore_best(model)
    assert all(torch.equal(model.state_dict()[k], best[k]) for k in best)


# --------------------------------------------------------------------------- bad options


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(layers=0), "--layers"),
        (dict(layers=2.5), "--layers"),
        (dict(temperature=0.0), "--temperature"),
        (dict(temperature=float("nan")), "--temperature"),
        (dict(alpha=-0.1), "--alpha"),
        (dict(epochs=0), "--epochs"),
        (dict(lr=0), "--lr"),
        (dict(batch_size=0), "--batch-size"),
        (dict(max_length=4), "--max-length"),
        (dict(layer_indices=(0,)), "--layer-indices"),
        (dict(layer_indices=(3, 1)), "--layer-indices"),
        (dict(save_every=0), "--save-every"),
        (dict(unlabeled_field="body"), "--unlabeled-field"),  # without --unlabeled
        (dict(unlabeled="more.csv", unlabeled_field=" "), "--unlabeled-field"),
    ],
)
def test_bad_options_are_config_errors(overrides, message):
    settings = dict(teacher="runs/x", layers=2)
    settings.update(overrides)
    with pytest.raises(ConfigError, match=message):
        DistillConfig(**settings)


def test_options_that_do_not_fit_the_teacher(teacher, tmp_path):
    with pytest.raises(ConfigError, match="between 1 and the teacher's 4 layers"):
        distill_model(fast_config(teacher.run_dir, layers=5), tmp_path / "a")
    with pytest.raises(ConfigError, match="layers 0..3"):
        distill_model(fast_config(teacher.run_dir, layers=2, layer_indices=(0, 4)), tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_cli_bad_options_exit_2_with_one_line(teacher, tmp_path):
    from click.testing import CliRunner

    from tnews_deploy.cli import main

    for args, message in (
        (["--layers", "0"], "--layers must be an integer >= 1"),
        (["--layers", "2", "--temperature", "-1"], "--temperature must be a number > 0"),
        (["--layers", "9"], "the teacher's 4 layers"),
    ):
        result = CliRunner().invoke(main, ["distill", str(teacher.run_dir), "--output", str(tmp_path / "x"), *args])
        assert result.exit_code == 2, result.output
        assert message in result.output and result.output.count("error:") == 1
    assert not (tmp_path / "x").exists()


def test_importing_the_config_loads_no_torch():
    code = (
        "import sys; from tnews_deploy.compress.distill import DistillConfig; DistillConfig('t', 2); "
        "import tnews_deploy.compress; sys.exit('torch' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0

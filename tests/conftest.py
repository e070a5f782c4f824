"""Fixtures: synthetic TNEWS data in every supported layout, a tiny BERT, a trained tiny run."""

from __future__ import annotations

from pathlib import Path

import pytest

from synthetic import build_tiny_bert, synthetic_splits, write_clue, write_hf_jsonl

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SHARED_TNEWS = SHARED / "data" / "tnews"


@pytest.fixture(scope="session", autouse=True)
def user_cache(tmp_path_factory) -> Path:
    """The user-wide cache (teacher logits) in a temporary folder: tests never write to ~/.cache."""
    folder = tmp_path_factory.mktemp("user-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TNEWS_DEPLOY_CACHE", str(folder))
        yield folder


@pytest.fixture(scope="session")
def synthetic_rows():
    return synthetic_splits()


@pytest.fixture(scope="session")
def hf_data(tmp_path_factory, synthetic_rows) -> Path:
    return write_hf_jsonl(tmp_path_factory.mktemp("hf"), synthetic_rows)


@pytest.fixture(scope="session")
def clue_data(tmp_path_factory, synthetic_rows) -> Path:
    return write_clue(tmp_path_factory.mktemp("clue"), synthetic_rows)


@pytest.fixture(scope="session")
def clue_tsv_data(tmp_path_factory, synthetic_rows) -> Path:
    return write_clue(tmp_path_factory.mktemp("clue_tsv"), synthetic_rows, train_as_tsv=True)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def big_vocab_model(tmp_path_factory) -> Path:
    """A tiny BERT whose tokenizer has e5/XLM-R's trait that matters to transformers: over 100k tokens."""
    return build_tiny_bert(tmp_path_factory.mktemp("big-vocab-bert"), hidden=16, layers=1, min_vocab=100_001)


def tiny_train_config(tiny_model: Path, hf_data: Path, **overrides):
    """A few-second run that learns the synthetic task."""
    from tnews_deploy.training import resolve_config

    settings = dict(
        model=str(tiny_model),
        data=str(hf_data),
        train_size=300,
        eval_size=150,
        selection_size=90,
        epochs=1.0,
        min_steps=200,
        lr=3e-3,
        batch_size=16,
        max_length=32,
        evaluations=4,
        early_stopping_patience=0,
    )
    settings.update(overrides)
    variant = settings.pop("variant", "full")
    return resolve_config("default", variant, **settings)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, tiny_model, hf_data):
    """One finished tiny run, shared by tests that need a checkpoint."""
    from tnews_deploy.training import train_run

    return train_run(tiny_train_config(tiny_model, hf_data), tmp_path_factory.mktemp("run") / "full-300", quiet=True)


def train_killed_at(step: int, config, run_dir: Path) -> None:
    """Start `train_run(config, run_dir)` and kill it (an exception out of the training loop) once `step`
    optimiser steps are done, as a kill -9 would leave it: the checkpoints saved so far, no metrics.json."""
    from tnews_deploy.training import train_run
    from tnews_deploy.training.resume import ElapsedCallback

    class Killed(Exception):
        pass

    def kill(self, args, state, control, **kwargs):
        if state.global_step == step:
            raise Killed()
        return control

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ElapsedCallback, "on_step_end", kill, raising=False)
        with pytest.raises(Killed):
            train_run(config, run_dir, quiet=True)


def pytest_collection_modifyitems(items):
    """Mark slow every test that uses a fixture its module names in `SLOW_FIXTURES` (one that trains, distils or
    runs a grid of its own), so that `pytest -m "not slow"` skips the fixture too."""
    for item in items:
        slow = set(getattr(getattr(item, "module", None), "SLOW_FIXTURES", ()))
        if slow & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


def requires_shared_tnews():
    return pytest.mark.skipif(
        not (SHARED_TNEWS / "hf" / "train.jsonl").is_file(), reason="../shared/data/tnews is not present"
    )


@pytest.fixture(scope="session")
def exported(trained_run, tmp_path_factory):
    """An fp32 export of the trained tiny run (verified)."""
    from tnews_deploy.export import export_model

    return export_model(trained_run.run_dir, tmp_path_factory.mktemp("exported") / "fp32")


@pytest.fixture(scope="session")
def int8_exported(trained_run, tmp_path_factory):
    """A per-token int8 export of the trained tiny run (gate loosened: the tiny model's F1 moves by points)."""
    from tnews_deploy.export import ExportConfig, GatePolicy, export_model

    return export_model(
        trained_run.run_dir,
        tmp_path_factory.mktemp("int8-exported") / "int8",
        ExportConfig(quantize="int8", policy=GatePolicy(max_f1_drop=0.2)),
    )

"""`--train-vocab data`: training only the data's embedding rows gives the run that trains them all.

The model is a tiny BERT with a 100k-token vocabulary, of which the synthetic data uses a few dozen tokens, so
the cut is real: most rows leave the optimizer, and come back (decayed) in the saved checkpoint.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import tiny_train_config, train_killed_at


def _weights(run_dir):
    from safetensors.torch import load_file

    return load_file(str(run_dir / "checkpoint" / "model.safetensors"))


def _losses(run_dir):
    history = json.loads((run_dir / "log_history.json").read_text())
    return [entry["loss"] for entry in history if "loss" in entry]


@pytest.fixture(scope="module")
def both_ways(big_vocab_model, hf_data, tmp_path_factory):
    """The same full fine-tuning run, with the data's rows only and with every row."""
    from tnews_deploy.training import train_run

    root = tmp_path_factory.mktemp("train-vocab")
    runs = {}
    for mode in ("data", "all"):
        config = tiny_train_config(
            big_vocab_model, hf_data, train_size=120, min_steps=40, evaluations=4, train_vocab=mode
        )
        runs[mode] = train_run(config, root / mode, quiet=True)
    return runs


def test_data_rows_train_like_all_rows(both_ways, big_vocab_model):
    data, every = both_ways["data"], both_ways["all"]
    rows = data.metrics["embedding_rows_trained"]
    vocab = json.loads((big_vocab_model / "config.json").read_text())["vocab_size"]
    assert 0 < rows < vocab / 100 and every.metrics["embedding_rows_trained"] is None

    assert _losses(data.run_dir) == pytest.approx(_losses(every.run_dir), rel=1e-4)
    predictions = [json.loads((r.run_dir / "predictions.json").read_text())["predictions"] for r in (data, every)]
    assert predictions[0] == predictions[1]
    assert data.metrics["macro_f1"] == every.metrics["macro_f1"]
    assert data.metrics["best_step"] == every.metrics["best_step"]


def test_the_checkpoint_has_every_row_as_if_all_had_trained(both_ways, big_vocab_model):
    from safetensors.torch import load_file

    data, every = (_weights(both_ways[m].run_dir) for m in ("data", "all"))
    assert data.keys() == every.keys()
    for name in every:
        assert data[name].shape == every[name].shape, name
        torch.testing.assert_close(data[name], every[name], rtol=1e-4, atol=1e-5, msg=name)
    # The rows no sentence uses were decayed by AdamW's weight decay alone, not left as they were loaded.
    name = next(n for n in every if n.endswith("word_embeddings.weight"))
    pretrained = next(
        t
        for n, t in load_file(str(big_vocab_model / "model.safetensors")).items()
        if n.endswith("word_embeddings.weight")
    )
    last = -1  # an [unused] token of the padded vocabulary
    assert float(every[name][last].norm()) < float(pretrained[last].norm())
    torch.testing.assert_close(data[name][last], every[name][last], rtol=1e-5, atol=1e-7)


def test_the_checkpoint_config_names_the_whole_vocabulary(both_ways, big_vocab_model):
    saved = json.loads((both_ways["data"].run_dir / "checkpoint" / "config.json").read_text())
    assert saved["vocab_size"] == json.loads((big_vocab_model / "config.json").read_text())["vocab_size"]


def test_frozen_embeddings_train_no_rows_to_cut(big_vocab_model, hf_data, tmp_path):
    from tnews_deploy.training import train_run

    config = tiny_train_config(
        big_vocab_model, hf_data, variant="freeze-embeddings", train_size=60, min_steps=4, evaluations=2
    )
    assert train_run(config, tmp_path / "run", quiet=True).metrics["embedding_rows_trained"] is None


def test_train_vocab_is_not_a_difference_between_finished_runs(both_ways, big_vocab_model, hf_data):
    from tnews_deploy.training import train_run

    config = tiny_train_config(big_vocab_model, hf_data, train_size=120, min_steps=40, evaluations=4, train_vocab="all")
    reused = train_run(config, both_ways["data"].run_dir, quiet=True)  # finished: loaded, not retrained
    assert reused.metrics == both_ways["data"].metrics


def test_a_run_resumes_in_the_mode_it_started_in(big_vocab_model, hf_data, tmp_path):
    """A run killed while training every row goes on training every row when asked for `data`: its saved
    Trainer checkpoint holds the whole matrix."""
    from tnews_deploy.training import train_run

    def settings(mode):
        return tiny_train_config(
            big_vocab_model, hf_data, train_size=120, min_steps=24, evaluations=4, save_every=5, train_vocab=mode
        )

    train_killed_at(12, settings("all"), tmp_path / "run")
    result = train_run(settings("data"), tmp_path / "run", quiet=True)
    assert result.metrics["resumed_from_steps"] == [10]
    assert result.config.train_vocab == "all" and result.metrics["embedding_rows_trained"] is None
    assert json.loads((tmp_path / "run" / "run_config.json").read_text())["train_vocab"] == "all"


@pytest.mark.slow
def test_a_run_that_cut_the_rows_resumes_cut(big_vocab_model, hf_data, tmp_path):
    from tnews_deploy.training import train_run

    config = tiny_train_config(big_vocab_model, hf_data, train_size=120, min_steps=24, evaluations=4, save_every=5)
    train_killed_at(12, config, tmp_path / "run")
    m = train_run(config, tmp_path / "run", quiet=True).metrics
    assert m["resumed_from_steps"] == [10] and m["embedding_rows_trained"] > 0


def test_ids_outside_the_kept_rows_are_refused():
    from transformers import BertConfig, BertForSequenceClassification

    from tnews_deploy.training.vocab import DataVocabulary

    model = BertForSequenceClassification(
        BertConfig(
            vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8, num_labels=3
        )
    )
    vocabulary = DataVocabulary(model, [0, 3, 7])
    before = model.get_input_embeddings().weight.detach().clone()
    vocabulary.shrink()
    assert model.get_input_embeddings().weight.shape == (3, 8)
    assert vocabulary.map_ids(torch.tensor([[7, 0, 3]])).tolist() == [[2, 0, 1]]
    with pytest.raises(ValueError, match=r"\[5\]"):
        vocabulary.map_ids(torch.tensor([[7, 5]]))
    vocabulary.restore(decay=0.5)
    after = model.get_input_embeddings().weight.detach()
    assert after.shape == (50, 8) and model.config.vocab_size == 50
    assert torch.equal(after[[0, 3, 7]], before[[0, 3, 7]])
    assert torch.equal(after[1], before[1] * 0.5)
    assert np.isclose(float(after[1].norm()), 0.5 * float(before[1].norm()))

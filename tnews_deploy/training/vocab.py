"""Train only the embedding rows the data uses (`--train-vocab data`): the same run, less work per step.

A multilingual encoder's word embeddings dominate its size. multilingual-e5-small has 250,037 rows × 384, which
is 96 M of its 118 M parameters, while all of TNEWS uses 15,334 of those tokens. In full fine-tuning every row
is in AdamW's update and in the gradient buffers at each step, although a row whose token never occurs gets a
gradient of exactly zero. Measured on e5-small, one thread of a 2-core AMD EPYC, batch 32, fused AdamW and
gradient clipping as the Trainer runs them: 1.84 → 1.60 s per step (1.15×). Gradients and AdamW state shrink
by about 1.1 GB, and so do the resumable Trainer checkpoints.

Cutting them changes nothing the run computes, apart from floating-point rounding:

* Every token of the training, selection and evaluation sentences keeps its row, so every forward pass
  and every nonzero gradient is the same. The rows that are cut only ever receive zero gradients, and
  they add nothing to the clipped gradient norm.
* For such a row, AdamW's moments stay 0, so its update is 0. All it gets is the decoupled weight decay
  `w ← w·(1 − lr_t·wd)` of each step.
* `restore` puts the full matrix back before the checkpoint is saved: the cut rows get their pretrained
  values times the product of those factors over the steps that the saved weights had. The checkpoint
  has the model's whole vocabulary, as if every row had been trained.

So a finished run is the same run whichever `train_vocab` it used (`OPERATIONAL_SETTINGS` in
`training.config`). A run resumes in the mode that it started in, because the shape of its Trainer checkpoint
depends on it. The test (`tests/test_train_vocab.py`) trains both ways and compares losses, predictions and
weights.

The ids are mapped in the data collator, after padding, so datasets and tokenizer stay as they are.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def data_token_ids(datasets: list[Any], tokenizer: Any) -> list[int]:
    """Sorted ids of every token in `datasets` (tokenized, `input_ids`), plus the tokenizer's special tokens."""
    used: set[int] = set(int(i) for i in tokenizer.all_special_ids)
    for dataset in datasets:
        if dataset is None:
            continue
        for ids in dataset["input_ids"]:
            used.update(ids)
    return sorted(used)


class DataVocabulary:
    """A model's word embeddings cut to `keep` (old ids) while it trains, and put back after.

    Args:
        model: a 🤗 model whose `get_input_embeddings()` is an `nn.Embedding` and that has no output
            embeddings tied to it (a sequence classifier).
        keep: the token ids to keep (see `data_token_ids`).
    """

    def __init__(self, model: nn.Module, keep: list[int]) -> None:
        embedding = model.get_input_embeddings()
        self.model = model
        self.full_rows = int(embedding.num_embeddings)
        self.full_padding_idx = embedding.padding_idx
        self.keep = torch.as_tensor(keep, dtype=torch.long)
        if len(self.keep) and (int(self.keep.min()) < 0 or int(self.keep.max()) >= self.full_rows):
            raise ValueError(f"token ids outside the embedding matrix of {self.full_rows} rows")
        self.lookup = torch.full((self.full_rows,), -1, dtype=torch.long)
        self.lookup[self.keep] = torch.arange(len(self.keep))
        self.pretrained = embedding.weight.detach()  # `shrink` replaces the parameter: this stays as it is

    @staticmethod
    def applies(model: nn.Module) -> bool:
        """Whether cutting rows is exact for `model`: trainable input embeddings, no tied output embeddings."""
        embedding = model.get_input_embeddings()
        return (
            isinstance(embedding, nn.Embedding)
            and embedding.weight.requires_grad
            and model.get_output_embeddings() is None
        )

    @property
    def rows(self) -> int:
        return len(self.keep)

    def shrink(self) -> None:
        """Replace the embedding matrix by its `keep` rows (model config and padding row to match)."""
        embedding = self.model.get_input_embeddings()
        with torch.no_grad():
            embedding.weight = nn.Parameter(
                self.pretrained[self.keep].clone(), requires_grad=embedding.weight.requires_grad
            )
        embedding.num_embeddings = self.rows
        if self.full_padding_idx is not None:
            embedding.padding_idx = int(self.lookup[self.full_padding_idx])
        self.model.config.vocab_size = self.rows

    def map_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Old token ids → rows of the cut matrix; an id that was cut is an error (it would read another row)."""
        mapped = self.lookup[input_ids]
        if bool((mapped < 0).any()):
            missing = sorted(set(input_ids[mapped < 0].tolist()))[:5]
            raise ValueError(f"token ids {missing} are not among the {self.rows} kept rows")
        return mapped

    def restore(self, decay: float) -> None:
        """Put the full matrix back: trained rows where kept, pretrained rows × `decay` elsewhere."""
        embedding = self.model.get_input_embeddings()
        trained = embedding.weight.detach()
        full = self.pretrained.to(trained.device, trained.dtype) * decay
        full[self.keep.to(trained.device)] = trained
        embedding.weight = nn.Parameter(full, requires_grad=embedding.weight.requires_grad)
        embedding.num_embeddings = self.full_rows
        embedding.padding_idx = self.full_padding_idx
        self.model.config.vocab_size = self.full_rows


class MappedCollator:
    """A data collator whose `input_ids` are mapped to the rows of a `DataVocabulary` after padding."""

    def __init__(self, collator: Any, vocabulary: DataVocabulary) -> None:
        self.collator = collator
        self.vocabulary = vocabulary

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.collator(features)
        batch["input_ids"] = self.vocabulary.map_ids(batch["input_ids"])
        return batch


def weight_decay_factor(trainer: Any, parameter: nn.Parameter, steps: int) -> float:
    """∏ (1 − lr_t · wd) over the first `steps` optimizer steps of `trainer`, for the group of `parameter`.

    The learning rate of step t is read from the Trainer's schedule (`LambdaLR`: base lr × λ(t)); 1.0 when
    the parameter's group has no weight decay.
    """
    optimizer = trainer.optimizer
    optimizer = getattr(optimizer, "optimizer", optimizer)  # accelerate's wrapper
    index, group = next(
        ((i, g) for i, g in enumerate(optimizer.param_groups) if any(p is parameter for p in g["params"])), (None, None)
    )
    if group is None or not group.get("weight_decay"):
        return 1.0
    scheduler = trainer.lr_scheduler
    scheduler = getattr(scheduler, "scheduler", scheduler)
    lambdas = getattr(scheduler, "lr_lambdas", None)
    if lambdas is None:
        raise TypeError(f"cannot read the learning rates of a {type(scheduler).__name__} schedule")
    base, wd = float(scheduler.base_lrs[index]), float(group["weight_decay"])
    factor = 1.0
    for step in range(steps):
        factor *= 1.0 - base * float(lambdas[index](step)) * wd
    return factor

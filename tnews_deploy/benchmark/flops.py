"""The FLOP counter: useful multiply-add FLOPs of a BERT-style classifier, from its shape and token counts.

`ModelShape.from_config` reads the shape from a model's own config.json, so each benchmark backend is counted
by its own layers and sizes (`ModelWork`), never by another model's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


def encoder_flops(tokens: int, hidden: int, layers: int, intermediate: int, num_labels: int) -> int:
    """Multiply-add FLOPs (2 per MAC) of one BERT-style sentence of `tokens` tokens.

    Per layer: Q, K, V and output projections 4 * 2*n*H^2, attention scores and
    the weighted sum 2 * 2*n^2*H, feed-forward 2 * 2*n*H*I. Then the pooler on
    [CLS] (2*H^2) and the classifier (2*H*C). Embedding lookups, LayerNorm,
    softmax and GELU are elementwise and left out (under 1 % here).

    Args:
        tokens: the sentence's token count (special tokens included, no padding).
        hidden: hidden size H.
        layers: encoder layers.
        intermediate: feed-forward size I.
        num_labels: classes C.
    """
    n, h = tokens, hidden
    per_layer = 8 * n * h * h + 4 * n * n * h + 4 * n * h * intermediate
    return layers * per_layer + 2 * h * h + 2 * h * num_labels


@dataclass(frozen=True)
class ModelShape:
    """The sizes of a BERT-style classifier that its FLOPs depend on."""

    hidden: int
    layers: int
    intermediate: int
    num_labels: int

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ModelShape:
        """From a transformers `config.json` (as a dict)."""
        return cls(
            hidden=int(config["hidden_size"]),
            layers=int(config["num_hidden_layers"]),
            intermediate=int(config["intermediate_size"]),
            num_labels=len(config.get("id2label") or {}) or int(config.get("num_labels", 2)),
        )

    def flops(self, token_counts: Sequence[int]) -> int:
        """Useful FLOPs of sentences with these token counts (padding excluded)."""
        return sum(
            encoder_flops(int(t), self.hidden, self.layers, self.intermediate, self.num_labels) for t in token_counts
        )


@dataclass(frozen=True)
class ModelWork:
    """One model's useful work on a set of sentences: its own shape and its own token counts.

    Each backend of a benchmark has its own (a distilled student has fewer layers than its teacher, a
    trimmed tokenizer may split a text differently), so its GFLOP/s count the FLOPs it actually did.
    """

    shape: ModelShape
    token_counts: tuple[int, ...]

    @property
    def flops(self) -> int:
        """Useful FLOPs of all the sentences (padding excluded)."""
        return self.shape.flops(self.token_counts)

    @property
    def flops_per_sentence(self) -> float:
        """Mean useful FLOPs per sentence."""
        return self.flops / len(self.token_counts)

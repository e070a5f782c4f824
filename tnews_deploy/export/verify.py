"""Parity between a PyTorch checkpoint and its ONNX export, the gate on it, and batch invariance.

The ONNX side runs through the runtime `Predictor`, so what is verified is the
exact path production uses (tokenizer, bucketing, session settings). The PyTorch
side runs `classifier_logits`, the same function the benchmark's PyTorch
backends time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..validation import is_number, require


@dataclass(frozen=True)
class GatePolicy:
    """When an export is accepted.

    Exact variants (fp32, O1, O2) must predict like PyTorch on at least
    `min_agreement` of the evaluation set; approximate ones (O3's GELU
    approximation, int8) may lose at most `max_f1_drop` macro-F1 (a negative
    value demands a gain: a gate nothing passes).
    """

    min_agreement: float = 0.999
    max_f1_drop: float = 0.01

    def __post_init__(self) -> None:
        require(
            [
                (
                    is_number(self.min_agreement) and 0 <= self.min_agreement <= 1,
                    f"--min-agreement must be between 0 and 1 (got {self.min_agreement!r})",
                ),
                (
                    is_number(self.max_f1_drop) and -1 <= self.max_f1_drop <= 1,
                    f"--max-f1-drop must be between -1 and 1 (got {self.max_f1_drop!r})",
                ),
            ]
        )


@dataclass
class ParityReport:
    sentences: int
    pytorch: dict[str, float]
    onnx: dict[str, float]
    agreement: float
    max_abs_logit_diff: float
    mean_abs_logit_diff: float
    exact: bool = True
    passed: bool | None = None
    reasons: list[str] = field(default_factory=list)

    @property
    def macro_f1_drop(self) -> float:
        return self.pytorch["macro_f1"] - self.onnx["macro_f1"]

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["macro_f1_drop"] = round(self.macro_f1_drop, 6)
        return data

    def summary(self) -> str:
        return (
            f"PyTorch macro-F1 {self.pytorch['macro_f1']:.4f} micro-F1 {self.pytorch['micro_f1']:.4f} | "
            f"ONNX macro-F1 {self.onnx['macro_f1']:.4f} micro-F1 {self.onnx['micro_f1']:.4f} | "
            f"agreement {self.agreement:.2%} | max |Δlogit| {self.max_abs_logit_diff:.2e} "
            f"on {self.sentences:,} sentences"
        )


@dataclass
class TorchPass:
    """One pass of texts through a PyTorch classifier: logits in input order, tokens run."""

    logits: np.ndarray
    real_tokens: int  # tokens of the texts themselves (special tokens included)
    padded_tokens: int  # tokens in the padded batches actually run


def load_pytorch_classifier(checkpoint: Path) -> tuple[Any, Any]:
    """The checkpoint's tokenizer and sequence classifier (eval mode).

    Args:
        checkpoint: a folder saved with `save_pretrained` (model + tokenizer).
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    return AutoTokenizer.from_pretrained(checkpoint), AutoModelForSequenceClassification.from_pretrained(
        checkpoint
    ).eval()


def classifier_logits(
    tokenizer: Any,
    model: Any,
    texts: Sequence[str],
    max_length: int,
    batch_size: int = 64,
    sort_by_length: bool = True,
    progress: str | None = None,
) -> TorchPass:
    """Logits of `texts` through a loaded PyTorch classifier, each batch padded to its own longest text.

    The one PyTorch inference path: export verification and the benchmark's
    PyTorch backends both run it (the benchmark times the call).

    Args:
        tokenizer: the checkpoint's tokenizer (`load_pytorch_classifier`).
        model: the checkpoint's classifier in eval mode.
        texts: the texts, in the order the logits are returned.
        max_length: token cap; longer texts are truncated.
        batch_size: texts per forward pass.
        sort_by_length: batch texts sorted by token length (as the runtime `Predictor` does, the sort
            included in the work) rather than in input order.
        progress: a label for a tqdm progress bar over the batches; None: no bar.
    """
    import torch
    from tqdm.auto import tqdm

    if sort_by_length:
        lengths = [len(ids) for ids in tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]]
        order = np.argsort(lengths, kind="stable")
    else:
        order = np.arange(len(texts))
    out = np.empty((len(texts), model.config.num_labels), dtype=np.float32)
    real = padded = 0
    with torch.inference_mode():
        for start in tqdm(
            range(0, len(texts), batch_size), desc=progress, unit="batch", disable=True if progress is None else None
        ):  # None: only on a terminal
            idx = order[start : start + batch_size]
            batch = tokenizer(
                [texts[i] for i in idx], truncation=True, max_length=max_length, padding=True, return_tensors="pt"
            )
            out[idx] = model(**batch).logits.float().numpy()
            real += int(batch["attention_mask"].sum())
            padded += int(batch["input_ids"].numel())
    return TorchPass(out, real, padded)


def pytorch_logits(
    checkpoint: Path, texts: Sequence[str], max_length: int, batch_size: int = 64, progress: str | None = None
) -> np.ndarray:
    """Logits of the PyTorch checkpoint in eval mode (batches sorted by length).

    Args:
        progress: a label for a tqdm progress bar over the batches; None: no bar.
    """
    tokenizer, model = load_pytorch_classifier(checkpoint)
    return classifier_logits(tokenizer, model, texts, max_length, batch_size, progress=progress).logits


def compare(labels: np.ndarray, reference: np.ndarray, candidate: np.ndarray, exact: bool) -> ParityReport:
    from ..training.metrics import f1_scores

    ref_pred, cand_pred = reference.argmax(-1), candidate.argmax(-1)
    diff = np.abs(reference - candidate)
    return ParityReport(
        sentences=len(labels),
        pytorch={k: round(v, 6) for k, v in f1_scores(labels, ref_pred).items()},
        onnx={k: round(v, 6) for k, v in f1_scores(labels, cand_pred).items()},
        agreement=float(np.mean(ref_pred == cand_pred)),
        max_abs_logit_diff=float(diff.max()) if diff.size else 0.0,
        mean_abs_logit_diff=float(diff.mean()) if diff.size else 0.0,
        exact=exact,
    )


def softmax(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)


def batch_invariance(
    predictor: Any, texts: Sequence[str], batched: np.ndarray, limit: int, batch_size: int = 32
) -> dict[str, Any]:
    """Whether a text's answer depends on the texts it is batched with.

    Args:
        predictor: a runtime `Predictor` (anything with `logits(texts, batch_size=...)`).
        texts: the evaluation sentences.
        batched: their logits predicted in (length-bucketed) batches of `batch_size`.
        limit: how many of the sentences (the first ones) to predict again one at a time.
        batch_size: the batch size `batched` was predicted with, for the record.

    Returns:
        `sentences`, `batch_sizes`, `label_changes`, `max_abs_prob_diff`, `max_abs_logit_diff`.
    """
    n = min(limit, len(texts))
    single = predictor.logits(list(texts[:n]), batch_size=1) if n else np.zeros((0, batched.shape[1]), np.float32)
    batched = batched[:n]
    return {
        "sentences": n,
        "batch_sizes": [1, batch_size],
        "label_changes": int(np.sum(single.argmax(-1) != batched.argmax(-1))),
        "max_abs_prob_diff": float(np.abs(softmax(single) - softmax(batched)).max()) if n else 0.0,
        "max_abs_logit_diff": float(np.abs(single - batched).max()) if n else 0.0,
    }


def apply_gate(report: ParityReport, policy: GatePolicy) -> ParityReport:
    """Set `passed` and `reasons` on the report, by the policy for its kind of export."""
    reasons = []
    if report.exact:
        if report.agreement < policy.min_agreement:
            reasons.append(
                f"prediction agreement with PyTorch {report.agreement:.2%} is below {policy.min_agreement:.1%}"
            )
    elif report.macro_f1_drop > policy.max_f1_drop:
        reasons.append(
            f"macro-F1 drops by {report.macro_f1_drop:.4f} (PyTorch {report.pytorch['macro_f1']:.4f} -> "
            f"ONNX {report.onnx['macro_f1']:.4f}), more than --max-f1-drop {policy.max_f1_drop}"
        )
    report.passed = not reasons
    report.reasons = reasons
    return report

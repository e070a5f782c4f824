"""Parity between a PyTorch checkpoint and its ONNX export, and the gate on it.

The ONNX side runs through the runtime `Predictor`, so what is verified is the
exact path production uses (tokenizer, bucketing, session settings).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..training.metrics import f1_scores


@dataclass(frozen=True)
class GatePolicy:
    """When an export is accepted.

    Exact variants (fp32, O1, O2) must predict like PyTorch on at least
    `min_agreement` of the evaluation set; approximate ones (O3's GELU
    approximation, int8) may lose at most `max_f1_drop` macro-F1.
    """

    min_agreement: float = 0.999
    max_f1_drop: float = 0.01


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


def pytorch_logits(
    checkpoint: Path, texts: Sequence[str], max_length: int, batch_size: int = 64, progress: str | None = None
) -> np.ndarray:
    """Logits of the PyTorch checkpoint in eval mode (batches sorted by length).

    Args:
        progress: a label for a tqdm progress bar over the batches; None: no bar.
    """
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    model = AutoModelForSequenceClassification.from_pretrained(checkpoint).eval()
    lengths = [len(ids) for ids in tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]]
    order = np.argsort(lengths, kind="stable")
    out = np.empty((len(texts), model.config.num_labels), dtype=np.float32)
    with torch.inference_mode():
        for start in tqdm(range(0, len(texts), batch_size), desc=progress, unit="batch",
                          disable=progress is None):
            idx = order[start:start + batch_size]
            batch = tokenizer([texts[i] for i in idx], truncation=True, max_length=max_length,
                              padding=True, return_tensors="pt")
            out[idx] = model(**batch).logits.float().numpy()
    return out


def compare(labels: np.ndarray, reference: np.ndarray, candidate: np.ndarray, exact: bool) -> ParityReport:
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

"""The backends a benchmark compares: PyTorch eager and exported ONNX folders.

Each backend runs a list of texts at a batch size and says how long it took,
how many real and padded tokens it ran, how big its model file is, and what a
fresh process must do to load it (for the cold-start measurement). The PyTorch
backend runs `export.verify.classifier_logits`, the same code path as export
verification; the ONNX backend runs the runtime `Predictor`, as production does.
"""

from __future__ import annotations

import json
import textwrap
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..choices import QUANTIZE_SCHEMES, recorded_quantize_mode


@dataclass
class PassResult:
    """One timed pass of texts through a backend."""

    logits: np.ndarray
    seconds: float
    real_tokens: int
    padded_tokens: int


class Backend:
    """What the measuring code needs of a backend."""

    name: str
    kind: str  # "pytorch" or "onnx"
    variant: str  # "fp32 eager", "int8 O2", ...
    path: Path
    config: dict[str, Any]  # the model's transformers config
    verified_on: dict[str, Any] | None = None  # an export's verification machine: CPU, flags (manifest)
    int8_kernels: dict[str, Any] | None = None  # an int8 export: the weight form in the file and the one run here

    def run(self, texts: Sequence[str], batch_size: int) -> PassResult:
        """Logits of `texts` at `batch_size`, timed.

        Args:
            texts: the texts, in the order the logits are returned.
            batch_size: texts per model call.
        """
        raise NotImplementedError

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        """Tokens per text after truncation (special tokens included)."""
        raise NotImplementedError

    def size_bytes(self) -> int:
        """Bytes of the model's weight file(s)."""
        raise NotImplementedError

    def cold_start_code(self) -> str:
        """Python for a fresh process: import, load, predict TEXTS[0], call `mark_first()`, then a batch pass."""
        raise NotImplementedError


class PyTorchBackend(Backend):
    """The checkpoint in eager PyTorch; batches in input order padded to their longest text, or sorted by length."""

    kind = "pytorch"
    variant = "fp32 eager"

    def __init__(self, checkpoint: Path, threads: int, max_length: int, sort_by_length: bool = False) -> None:
        """Load the checkpoint.

        Args:
            checkpoint: a checkpoint folder (model + tokenizer).
            threads: torch intra-op threads.
            max_length: token cap.
            sort_by_length: batch by token length like the `Predictor` (backend "pytorch-sorted").
        """
        import torch

        from ..export.verify import load_pytorch_classifier

        torch.set_num_threads(threads)
        self.path, self.threads, self.max_length, self.sort = Path(checkpoint), threads, max_length, sort_by_length
        self.name = "pytorch-sorted" if sort_by_length else "pytorch"
        self.tokenizer, self.model = load_pytorch_classifier(checkpoint)
        self.config = self.model.config.to_dict()

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        return [len(i) for i in self.tokenizer(list(texts), truncation=True, max_length=self.max_length)["input_ids"]]

    def run(self, texts: Sequence[str], batch_size: int) -> PassResult:
        from ..export.verify import classifier_logits

        start = time.perf_counter()
        result = classifier_logits(
            self.tokenizer, self.model, texts, self.max_length, batch_size, sort_by_length=self.sort
        )
        seconds = time.perf_counter() - start
        return PassResult(result.logits, seconds, result.real_tokens, result.padded_tokens)

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.path.glob("*.safetensors")) or sum(
            p.stat().st_size for p in self.path.glob("pytorch_model*.bin")
        )

    def cold_start_code(self) -> str:
        # Plain transformers, as an application without this package would load it.
        return textwrap.dedent(f"""
            import torch
            from transformers import AutoModelForSequenceClassification, AutoTokenizer
            torch.set_num_threads({self.threads})
            tok = AutoTokenizer.from_pretrained({str(self.path)!r})
            model = AutoModelForSequenceClassification.from_pretrained({str(self.path)!r}).eval()
            with torch.inference_mode():
                model(**tok([TEXTS[0]], truncation=True, max_length={self.max_length}, return_tensors="pt"))
                mark_first()
                for i in range(0, len(TEXTS), 32):
                    model(**tok(TEXTS[i:i + 32], truncation=True, max_length={self.max_length},
                                padding=True, return_tensors="pt"))
        """)


class OnnxBackend(Backend):
    """An exported folder through the project's runtime `Predictor`."""

    kind = "onnx"

    def __init__(self, folder: Path, threads: int, name: str | None = None) -> None:
        """Load the exported folder.

        Args:
            folder: a folder written by `tnews-deploy export`.
            threads: onnxruntime intra-op threads.
            name: the backend's name in the report; default: the model's name (`Predictor.model_name`: the
                folder's, or the bundled model's or package's name).
        """
        from ..predictor import MODEL_CONFIG_FILE, Predictor

        self.path, self.threads = Path(folder), threads
        self.predictor = Predictor(folder, threads=threads)
        self.name = name or self.predictor.model_name
        self.variant = describe_variant(self.predictor.manifest)
        self.verified_on = (self.predictor.manifest.get("verification") or {}).get("machine")
        plan = self.predictor.kernel_plan
        self.int8_kernels = plan.to_json() if plan.used else None
        self.config = json.loads((self.path / MODEL_CONFIG_FILE).read_text(encoding="utf-8"))

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        return [len(e.ids) for e in self.predictor.encode(texts)]

    def run(self, texts: Sequence[str], batch_size: int) -> PassResult:
        predictor = self.predictor
        start = time.perf_counter()
        logits = predictor.logits(list(texts), batch_size=batch_size)
        seconds = time.perf_counter() - start
        lengths = np.asarray(self.token_counts(texts), dtype=np.int64)
        padded = sum(int(lengths[b[-1]]) * len(b) for b in predictor.batches(lengths, batch_size))
        return PassResult(logits, seconds, int(lengths.sum()), padded)

    def size_bytes(self) -> int:
        from ..predictor import MODEL_FILE

        return (self.path / MODEL_FILE).stat().st_size

    def cold_start_code(self) -> str:
        return textwrap.dedent(f"""
            from tnews_deploy import Predictor
            p = Predictor({str(self.path)!r}, threads={self.threads})
            p.predict(TEXTS[0])
            mark_first()
            p.predict(TEXTS)
        """)


def describe_variant(manifest: dict[str, Any]) -> str:
    """ "fp32", "int8", "int8-dynamic O2" ... from an export manifest: its `quantization.mode` (with the
    `scheme` when it is not the one that mode writes) and its optimisation level.

    Args:
        manifest: the export's `manifest.json`.
    """
    opt, quant = manifest.get("optimization"), manifest.get("quantization")
    mode = recorded_quantize_mode(quant)
    if mode == "none":
        parts = ["fp32"]
    else:
        scheme = quant.get("scheme") if quant else None
        parts = [mode if scheme in (None, QUANTIZE_SCHEMES.get(mode)) else f"{mode} ({scheme})"]
    if opt:
        parts.append(opt.get("level", "?"))
    return " ".join(parts)


def load_backends(
    checkpoint: Path | None, onnx: Sequence[Path], threads: int, max_length: int, pytorch_sorted: bool = False
) -> list[Backend]:
    """PyTorch first (the reference), optionally PyTorch with length bucketing, then each ONNX folder.

    Args:
        checkpoint: the PyTorch checkpoint folder; None: no PyTorch backend (the first ONNX folder is the reference).
        onnx: exported folders; two with the same folder name get distinct backend names.
        threads: threads for every backend.
        max_length: token cap for PyTorch (the ONNX folders carry their own).
        pytorch_sorted: add the "pytorch-sorted" backend.
    """
    backends: list[Backend] = []
    if checkpoint is not None:
        backends.append(PyTorchBackend(checkpoint, threads, max_length))
        if pytorch_sorted:
            backends.append(PyTorchBackend(checkpoint, threads, max_length, sort_by_length=True))
    names: set[str] = set()
    for folder in onnx:
        backend = OnnxBackend(Path(folder), threads)
        if backend.name in names:
            backend.name = f"{backend.name}-{len(names)}"
        names.add(backend.name)
        backends.append(backend)
    return backends

"""The runtime predictor that production apps embed.

Depends on onnxruntime, tokenizers and numpy only (plus the stdlib): importing
this module or predicting never imports torch or transformers.

An exported folder (see `tnews_deploy.export`) holds `model.onnx`,
`tokenizer.json`, `config.json` (labels) and `manifest.json` (checksums,
max_length, verification). `Predictor` loads it once and then:

* tokenises a whole call at once with the Rust tokenizer;
* sorts texts by token length and runs them in batches that pad only to their
  own longest text (length bucketing), then restores the input order;
* reuses one `InferenceSession` with intra-op threads set explicitly;
* is safe to call from many threads at once: it holds no mutable state after
  loading, and both the tokenizer and the session support concurrent calls.

Input contract: a `str` or a list/tuple of `str`. Anything else raises
`TypeError` naming the offending positions; empty or whitespace-only texts raise
`ValueError` naming the positions (nothing is guessed). Texts longer than the
model's `max_length` tokens are truncated to it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from .errors import ModelError

MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
MODEL_CONFIG_FILE = "config.json"
MANIFEST_FILE = "manifest.json"
DEFAULT_BATCH_SIZE = 32
_HASH_CHUNK = 1 << 22


class ModelLoadError(ModelError):
    """An exported folder that cannot be served; the message names the file."""


@dataclass(frozen=True)
class Prediction:
    label: str
    label_id: int
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "label_id": self.label_id, "score": self.score}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(_HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def default_threads() -> int:
    """Physical-ish core count: ORT gains nothing from hyper-threads for GEMMs."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelLoadError(f"{path}: missing ({what}). Re-export the model with `tnews-deploy export`.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{path}: not valid JSON ({exc}). Re-export the model.") from exc


def format_positions(indices: Sequence[int], limit: int = 10) -> str:
    """'1, 4, 7' or '1, 4, 7 and 12 more': positions for an error message."""
    shown = ", ".join(map(str, indices[:limit]))
    return shown + (f" and {len(indices) - limit} more" if len(indices) > limit else "")


def invalid_positions(items: Sequence[Any]) -> tuple[list[int], list[int]]:
    """(positions that are not strings, positions of empty or whitespace-only strings)."""
    not_strings = [i for i, t in enumerate(items) if not isinstance(t, str)]
    empty = [i for i, t in enumerate(items) if isinstance(t, str) and not t.strip()]
    return not_strings, empty


def validate_texts(texts: Any) -> tuple[list[str], bool]:
    """(texts as a list, whether a single string was given); raises on bad input."""
    if isinstance(texts, str):
        items, single = [texts], True
    elif isinstance(texts, (list, tuple)):
        items, single = list(texts), False
    else:
        raise TypeError(f"texts must be a str or a list/tuple of str, got {type(texts).__name__}.")
    not_strings, empty = invalid_positions(items)
    if not_strings:
        named = [f"{i} ({type(items[i]).__name__})" for i in not_strings]
        raise TypeError(f"texts must be strings; not a str at position(s) {format_positions(named)}.")
    if empty:
        raise ValueError(f"empty or whitespace-only text at position(s) {format_positions(empty)}; "
                         "remove or fill them.")
    return items, single


class Predictor:
    """Classify texts with an exported ONNX model folder.

    >>> predictor = Predictor("exports/tnews-int8")
    >>> predictor.predict("北京大学举行毕业典礼")
    Prediction(label='news_edu', label_id=7, score=0.93)
    """

    def __init__(
        self,
        model_dir: str | os.PathLike,
        threads: int | None = None,
        providers: Sequence[str] | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        verify_checksum: bool = True,
    ) -> None:
        self.model_dir = Path(model_dir)
        if not self.model_dir.is_dir():
            raise ModelLoadError(
                f"{self.model_dir}: no such model folder. Pass a folder written by `tnews-deploy export`."
            )
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        self.batch_size = batch_size
        model_path = self.model_dir / MODEL_FILE
        if not model_path.is_file():
            raise ModelLoadError(f"{model_path}: missing. Re-export the model with `tnews-deploy export`.")

        self.manifest: dict[str, Any] = {}
        manifest_path = self.model_dir / MANIFEST_FILE
        if manifest_path.is_file():
            self.manifest = _read_json(manifest_path, "export manifest")
            expected = self.manifest.get("model", {}).get("sha256")
            if verify_checksum and expected and sha256_of(model_path) != expected:
                raise ModelLoadError(
                    f"{model_path}: sha256 differs from {manifest_path.name}; the file was changed or "
                    "damaged after export. Re-export it, or copy the whole folder again."
                )

        config = _read_json(self.model_dir / MODEL_CONFIG_FILE, "model config with the labels")
        id2label = config.get("id2label")
        if not id2label:
            raise ModelLoadError(f"{self.model_dir / MODEL_CONFIG_FILE}: has no id2label; re-export the model.")
        self.labels: tuple[str, ...] = tuple(id2label[k] for k in sorted(id2label, key=int))
        self.pad_token_id = int(config.get("pad_token_id") or 0)

        tokenizer_path = self.model_dir / TOKENIZER_FILE
        if not tokenizer_path.is_file():
            raise ModelLoadError(f"{tokenizer_path}: missing (the fast tokenizer). Re-export the model.")
        try:
            self.tokenizer = Tokenizer.from_file(str(tokenizer_path))
        except Exception as exc:  # the Rust side raises plain Exception
            raise ModelLoadError(f"{tokenizer_path}: cannot be read as a tokenizer ({exc}).") from exc
        vocab_limit = config.get("vocab_size")
        if vocab_limit and self.tokenizer.get_vocab_size() > int(vocab_limit):
            raise ModelLoadError(
                f"{tokenizer_path}: {self.tokenizer.get_vocab_size():,} tokens, but the model in "
                f"{MODEL_CONFIG_FILE} has {int(vocab_limit):,} embeddings: tokenizer and model do not belong together."
            )
        self.max_length = int(
            self.manifest.get("max_length")
            or min(int(config.get("max_position_embeddings", 512)), 512)
        )
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=self.max_length)

        self.threads = threads or default_threads()
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.providers = list(providers or ["CPUExecutionProvider"])
        try:
            self.session = ort.InferenceSession(str(model_path), sess_options=options, providers=self.providers)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf/... types
            raise ModelLoadError(
                f"{model_path}: onnxruntime cannot load it ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:300]}). The file is corrupt or truncated: re-export it."
            ) from exc
        self.input_names = {i.name for i in self.session.get_inputs()}
        missing = {"input_ids", "attention_mask"} - self.input_names
        if missing:
            raise ModelLoadError(f"{model_path}: model has no input(s) {', '.join(sorted(missing))}.")
        logits_shape = self.session.get_outputs()[0].shape
        n_out = logits_shape[-1] if logits_shape else None
        if isinstance(n_out, int) and n_out != len(self.labels):
            raise ModelLoadError(
                f"{self.model_dir / MODEL_CONFIG_FILE}: {len(self.labels)} labels, but {MODEL_FILE} outputs {n_out} "
                "classes: labels and model do not belong together. Re-export the model."
            )

    # ------------------------------------------------------------------ inference

    def _run(self, encodings: list, batch_size: int | None = None) -> np.ndarray:
        """Logits for already-encoded texts, in their order, with length bucketing."""
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))
        logits = np.empty((len(encodings), len(self.labels)), dtype=np.float32)
        want_types = "token_type_ids" in self.input_names
        for idx in self.batches(lengths, batch_size):
            width = int(lengths[idx[-1]])  # sorted: the last is the longest of the batch
            ids = np.full((len(idx), width), self.pad_token_id, dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            types = np.zeros((len(idx), width), dtype=np.int64) if want_types else None
            for row, i in enumerate(idx):
                enc = encodings[i]
                k = len(enc.ids)
                ids[row, :k] = enc.ids
                mask[row, :k] = 1
                if types is not None:
                    types[row, :k] = enc.type_ids
            feeds = {"input_ids": ids, "attention_mask": mask}
            if types is not None:
                feeds["token_type_ids"] = types
            logits[idx] = self.session.run(None, feeds)[0]
        return logits

    def batches(self, lengths: np.ndarray, batch_size: int | None = None) -> list[np.ndarray]:
        """Length bucketing: indices sorted by token length, cut into batches.

        Each batch then pads only to its own longest text.
        """
        size = batch_size or self.batch_size
        order = np.argsort(lengths, kind="stable")
        return [order[i:i + size] for i in range(0, len(order), size)]

    def encode(self, texts: Sequence[str]) -> list:
        return self.tokenizer.encode_batch(list(texts), add_special_tokens=True)

    def _logits(self, items: list[str], batch_size: int | None = None) -> np.ndarray:
        if not items:
            return np.zeros((0, len(self.labels)), np.float32)
        return self._run(self.encode(items), batch_size)

    @staticmethod
    def _softmax(logits: np.ndarray) -> np.ndarray:
        exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
        return exp / exp.sum(axis=-1, keepdims=True)

    def logits(self, texts: str | Sequence[str], batch_size: int | None = None) -> np.ndarray:
        """Raw logits, shape (n, num_labels) (or (num_labels,) for one string)."""
        items, single = validate_texts(texts)
        out = self._logits(items, batch_size)
        return out[0] if single else out

    def predict_proba(self, texts: str | Sequence[str]) -> np.ndarray:
        """Class probabilities, shape (n, num_labels) (or (num_labels,) for one string)."""
        items, single = validate_texts(texts)
        probs = self._softmax(self._logits(items))
        return probs[0] if single else probs

    def predict(
        self, texts: str | Sequence[str], top_k: int = 1
    ) -> Prediction | list[Prediction] | list[list[Prediction]]:
        """Best class per text, or the `top_k` best (a list per text) when `top_k` > 1.

        A single string gives a single result; a list gives a list in input order.
        """
        if not isinstance(top_k, int) or isinstance(top_k, bool) or not 1 <= top_k <= len(self.labels):
            raise ValueError(f"top_k must be an int in 1..{len(self.labels)}, got {top_k!r}.")
        items, single = validate_texts(texts)
        results = self.rank(self._softmax(self._logits(items)), top_k)
        return results[0] if single else results

    def rank(self, probs: np.ndarray, top_k: int = 1) -> list:
        """Per row of probabilities: the best `Prediction`, or a list of the `top_k` best."""
        results: list = []
        for row in probs:
            best = np.argsort(-row, kind="stable")[:top_k]
            ranked = [Prediction(self.labels[j], int(j), float(row[j])) for j in best]
            results.append(ranked[0] if top_k == 1 else ranked)
        return results

    def info(self) -> dict[str, Any]:
        """What is loaded: labels, max_length, threads, and the export manifest."""
        return {
            "model_dir": str(self.model_dir),
            "labels": list(self.labels),
            "max_length": self.max_length,
            "threads": self.threads,
            "providers": self.providers,
            "manifest": self.manifest,
        }

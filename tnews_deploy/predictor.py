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

Input contract (`tnews_deploy.inputs`): a `str` or a list/tuple of `str`.
Anything else raises `TypeError` naming the offending positions; empty or
whitespace-only texts, and texts with lone UTF-16 surrogates, raise `ValueError`
naming the positions (nothing is guessed). Texts longer than the model's
`max_length` tokens are truncated to it.
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
from .inputs import validate_texts
from .machine import usable_cpus

MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
MODEL_CONFIG_FILE = "config.json"  # the transformers config: labels, vocab size, pad id
MANIFEST_FILE = "manifest.json"
DEFAULT_BATCH_SIZE = 32
# How onnxruntime's CPU memory is managed (see `Predictor`); measured in benchmarks/soak.py.
MEMORY_MODES = ("ort-default", "arena", "shrink", "no-arena")
DEFAULT_MEMORY = "arena"
_HASH_CHUNK = 1 << 22
# Files that mark a training-run, checkpoint or grid folder (not an export).
_TRAINING_MARKERS = ("run_config.json", "checkpoint", "results.json", "model.safetensors", "pytorch_model.bin")


class ModelLoadError(ModelError):
    """An exported folder that cannot be served; the message names the file."""


@dataclass(frozen=True)
class Prediction:
    """One ranked class for one text."""

    label: str
    label_id: int
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "label_id": self.label_id, "score": self.score}


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in 4 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(_HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def default_threads() -> int:
    """The logical CPUs this process may run on (its affinity mask; all CPUs where there is none)."""
    return usable_cpus()


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelLoadError(f"{path}: missing ({what}). Re-export the model with `tnews-deploy export`.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{path}: not valid JSON ({exc}). Re-export the model.") from exc


def length_batches(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Length bucketing: indices sorted by token length (stable), cut into batches of `batch_size`.

    Each batch then pads only to its own longest text (its last index), and equal
    lengths keep their input order.

    Args:
        lengths: token count per text, in input order.
        batch_size: texts per batch (the last batch may be smaller).
    """
    order = np.argsort(np.asarray(lengths), kind="stable")
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


class Predictor:
    """Classify texts with an exported ONNX model folder.

    Args:
        model_dir: a folder written by `tnews-deploy export` (model.onnx, tokenizer.json, config.json,
            manifest.json).
        threads: onnxruntime intra-op threads; default: every CPU this process may use.
        providers: onnxruntime execution providers; default: CPU.
        batch_size: texts per model call (after sorting by length); at least 1.
        verify_checksum: check model.onnx against the manifest's sha256 before loading.
        memory: how onnxruntime manages CPU memory across calls of varying shapes. "ort-default":
            onnxruntime's defaults (arena + memory patterns); "arena" (default): the arena, which grows
            to the largest batch seen (bounded: batches are at most `batch_size` texts of at most
            `max_length` tokens) and reuses it; "shrink": the arena, handed back to the system after
            every call; "no-arena": plain malloc/free. Except in "ort-default", the per-shape
            memory-pattern cache is off (with a new shape per batch it only grows). Figures:
            docs/operations.md.

    Raises:
        ModelLoadError: the folder or one of its files is missing, damaged or inconsistent (the message
            names the file and what to do).
        ValueError: `batch_size` < 1.

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
        memory: str = DEFAULT_MEMORY,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}.")
        if memory not in MEMORY_MODES:
            raise ValueError(f"memory must be one of {', '.join(MEMORY_MODES)}, got {memory!r}.")
        self.memory = memory
        self.model_dir = Path(model_dir)
        self.batch_size = batch_size
        model_path = self._check_folder()
        self.manifest = self._load_manifest(model_path, verify_checksum)
        config = _read_json(self.model_dir / MODEL_CONFIG_FILE, "model config with the labels")
        self.labels: tuple[str, ...] = self._load_labels(config)
        self.pad_token_id = int(config.get("pad_token_id") or 0)
        self.max_length = int(
            self.manifest.get("max_length") or min(int(config.get("max_position_embeddings", 512)), 512)
        )
        self.tokenizer = self._load_tokenizer(config)
        self.threads = threads or default_threads()
        self.providers = list(providers or ["CPUExecutionProvider"])
        self.session = self._load_session(model_path)

    # ------------------------------------------------------------------ loading steps

    def _check_folder(self) -> Path:
        """The model file's path, after checking that this is an export folder."""
        if not self.model_dir.is_dir():
            raise ModelLoadError(
                f"{self.model_dir}: no such model folder. Pass a folder written by `tnews-deploy export`."
            )
        model_path = self.model_dir / MODEL_FILE
        if model_path.is_file():
            return model_path
        if any((self.model_dir / marker).exists() for marker in _TRAINING_MARKERS):
            raise ModelLoadError(
                f"{self.model_dir}: this is a training run, checkpoint or grid folder, not an exported model "
                f"(no {MODEL_FILE}). Export it first: tnews-deploy export {self.model_dir} --output "
                f"exports/{self.model_dir.name or 'model'} [--quantize int8], then use that folder."
            )
        raise ModelLoadError(f"{model_path}: missing. Re-export the model with `tnews-deploy export`.")

    def _load_manifest(self, model_path: Path, verify_checksum: bool) -> dict[str, Any]:
        """The export manifest (empty when absent), with model.onnx checked against its sha256."""
        manifest_path = self.model_dir / MANIFEST_FILE
        if not manifest_path.is_file():
            return {}
        manifest = _read_json(manifest_path, "export manifest")
        expected = (manifest.get("model") or {}).get("sha256")
        if verify_checksum and expected and sha256_of(model_path) != expected:
            raise ModelLoadError(
                f"{model_path}: sha256 differs from {manifest_path.name}; the file was changed or "
                "damaged after export. Re-export it, or copy the whole folder again."
            )
        return manifest

    def _load_labels(self, config: dict[str, Any]) -> tuple[str, ...]:
        id2label = config.get("id2label")
        if not id2label:
            raise ModelLoadError(f"{self.model_dir / MODEL_CONFIG_FILE}: has no id2label; re-export the model.")
        return tuple(id2label[k] for k in sorted(id2label, key=int))

    def _load_tokenizer(self, config: dict[str, Any]) -> Tokenizer:
        """The fast tokenizer, checked against the model's vocabulary, truncating to `max_length`."""
        tokenizer_path = self.model_dir / TOKENIZER_FILE
        if not tokenizer_path.is_file():
            raise ModelLoadError(f"{tokenizer_path}: missing (the fast tokenizer). Re-export the model.")
        try:
            tokenizer = Tokenizer.from_file(str(tokenizer_path))
        except Exception as exc:  # the Rust side raises plain Exception
            raise ModelLoadError(f"{tokenizer_path}: cannot be read as a tokenizer ({exc}).") from exc
        vocab_limit = config.get("vocab_size")
        if vocab_limit and tokenizer.get_vocab_size() > int(vocab_limit):
            raise ModelLoadError(
                f"{tokenizer_path}: {tokenizer.get_vocab_size():,} tokens, but the model in "
                f"{MODEL_CONFIG_FILE} has {int(vocab_limit):,} embeddings: tokenizer and model do not belong "
                "together."
            )
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=self.max_length)
        return tokenizer

    def _load_session(self, model_path: Path) -> ort.InferenceSession:
        """One onnxruntime session with explicit threads, checked against the labels."""
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # A cached allocation plan per input shape: with a new shape per batch it only grows.
        options.enable_mem_pattern = self.memory == "ort-default"
        options.enable_cpu_mem_arena = self.memory != "no-arena"
        self._run_options = ort.RunOptions()
        if self.memory == "shrink":
            self._run_options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        try:
            session = ort.InferenceSession(str(model_path), sess_options=options, providers=self.providers)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf/... types
            raise ModelLoadError(
                f"{model_path}: onnxruntime cannot load it ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:300]}). The file is corrupt or truncated: re-export it."
            ) from exc
        self.input_names = {i.name for i in session.get_inputs()}
        missing = {"input_ids", "attention_mask"} - self.input_names
        if missing:
            raise ModelLoadError(f"{model_path}: model has no input(s) {', '.join(sorted(missing))}.")
        logits_shape = session.get_outputs()[0].shape
        n_out = logits_shape[-1] if logits_shape else None
        if isinstance(n_out, int) and n_out != len(self.labels):
            raise ModelLoadError(
                f"{self.model_dir / MODEL_CONFIG_FILE}: {len(self.labels)} labels, but {MODEL_FILE} outputs "
                f"{n_out} classes: labels and model do not belong together. Re-export the model."
            )
        return session

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
            logits[idx] = self.session.run(None, feeds, self._run_options)[0]
        return logits

    def batches(self, lengths: np.ndarray, batch_size: int | None = None) -> list[np.ndarray]:
        """`length_batches` with this predictor's batch size unless `batch_size` is given."""
        return length_batches(lengths, batch_size or self.batch_size)

    def encode(self, texts: Sequence[str]) -> list:
        """Token encodings (with special tokens, truncated to `max_length`) in one Rust call."""
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
        """Raw logits, shape (n, num_labels) (or (num_labels,) for one string).

        Args:
            texts: a str or a list/tuple of str (see the module's input contract).
            batch_size: texts per model call; default: the predictor's `batch_size`.
        """
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

        Args:
            texts: a str or a list/tuple of str (see the module's input contract).
            top_k: how many classes per text, best first (1..number of labels).

        Raises:
            TypeError: not a str/list/tuple, or items that are not strings (positions named).
            ValueError: empty texts or texts with lone surrogates (positions named), or a bad `top_k`.
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

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
* gives every output of the model, not only the logits, with the encodings
  (`Predictor.run` -> `ModelOutput`): `logits`, `predict_proba` and `predict`
  are built on it;
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
import numbers
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from .errors import ModelLoadError
from .inputs import validate_texts
from .int8_weights import INT8_KERNEL_CHOICES
from .int8_weights import prepare as prepare_int8
from .machine import usable_cpus
from .models import ResolvedModel, locate_model, model_identity

MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
MODEL_CONFIG_FILE = "config.json"  # the transformers config: labels, vocab size, pad id
MANIFEST_FILE = "manifest.json"
# The files the runtime reads besides model.onnx (the manifest's `model`) and the manifest itself: the
# exporter records their sha256 under the manifest's `files`, and `Predictor` checks them at load.
CHECKSUMMED_FILES = (TOKENIZER_FILE, MODEL_CONFIG_FILE)
DEFAULT_BATCH_SIZE = 32
# How onnxruntime's CPU memory is managed (see `Predictor`); measured in benchmarks/soak.py.
MEMORY_MODES = ("ort-default", "arena", "shrink", "no-arena")
DEFAULT_MEMORY = "arena"
_HASH_CHUNK = 1 << 22
# Files that mark a training-run, checkpoint or grid folder (not an export).
_TRAINING_MARKERS = ("run_config.json", "checkpoint", "results.json", "model.safetensors", "pytorch_model.bin")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_JSON_TYPES = {
    dict: "an object",
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "true/false",
    type(None): "null",
}
_REEXPORT = "Re-export the model, or copy the whole folder again."
# numpy types of onnxruntime's output types (for the empty outputs of a call without texts).
_ORT_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
}


@dataclass(frozen=True)
class Prediction:
    """One ranked class for one text."""

    label: str
    label_id: int
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "label_id": self.label_id, "score": self.score}


@dataclass(frozen=True)
class ModelOutput:
    """What one run of the model gives for a list of texts, rows in the texts' order (`Predictor.run`).

    Args:
        outputs: every output of the ONNX model by its name, in the model's order; each has one row per text
            (axis 0). The classifier's logits are the first (`logits`). An output with a token axis (axis 1,
            e.g. hidden states) is padded with zeros to the longest text of the call; `encodings` say how many
            of its positions are real.
        encodings: the texts' `tokenizers.Encoding`s (special tokens included, truncated to `max_length`).
    """

    outputs: Mapping[str, np.ndarray]
    encodings: tuple[Any, ...]

    @property
    def logits(self) -> np.ndarray:
        """The classifier's logits, shape (n, num_labels): the model's first output."""
        return next(iter(self.outputs.values()))


def _assemble(parts: list[tuple[np.ndarray, np.ndarray]], n: int) -> np.ndarray:
    """One output's rows for all `n` texts from (text indices, that batch's rows) pairs, each batch written at
    its texts' positions; axes beyond the first are zero-padded to the widest batch (token axes differ)."""
    shape = tuple(max(rows.shape[axis] for _, rows in parts) for axis in range(1, parts[0][1].ndim))
    out = np.zeros((n, *shape), dtype=parts[0][1].dtype)
    for idx, rows in parts:
        region: tuple[Any, ...] = (idx, *[slice(0, size) for size in rows.shape[1:]])
        out[region] = rows
    return out


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
    """The JSON object in `path`; `ModelLoadError` naming the file when it is missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelLoadError(f"{path}: missing ({what}). Re-export the model with `tnews-deploy export`.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{path}: not valid JSON ({exc}). Re-export the model.") from exc
    except OSError as exc:  # a directory, a symlink loop, no permission, an I/O error
        raise ModelLoadError(f"{path}: cannot be read ({exc.strerror or exc}). {_REEXPORT}") from exc
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path}: must hold a JSON object ({what}), but holds {_json_type(data)}. {_REEXPORT}")
    return data


def _json_type(value: Any) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _short(value: Any, limit: int = 80) -> str:
    """`repr(value)`, cut to `limit` characters (a message stays one readable line)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_sha256(value: Any) -> bool:
    return isinstance(value, str) and _SHA256.fullmatch(value) is not None


def _manifest_checksums(manifest_path: Path, manifest: dict[str, Any]) -> dict[Path, str]:
    """File -> expected sha256, from the manifest's `model` (model.onnx) and `files` (the other files the
    runtime reads, see `CHECKSUMMED_FILES`); `ModelLoadError` naming the manifest when either is malformed."""
    folder = manifest_path.parent
    checksums: dict[Path, str] = {}
    model = manifest.get("model")
    if model is not None:
        if not isinstance(model, dict):
            raise ModelLoadError(
                f"{manifest_path}: model must be an object (file, sha256, bytes), but is "
                f"{_json_type(model)}. {_REEXPORT}"
            )
        if model.get("sha256") is not None:
            if not _is_sha256(model["sha256"]):
                raise ModelLoadError(
                    f"{manifest_path}: model.sha256 must be 64 lowercase hex digits, got "
                    f"{_short(model['sha256'])}. {_REEXPORT}"
                )
            checksums[folder / MODEL_FILE] = model["sha256"]
    files = manifest.get("files")
    if files is not None:
        if not isinstance(files, dict):
            raise ModelLoadError(
                f"{manifest_path}: files must be an object of file name -> {{sha256, bytes}}, but "
                f"is {_json_type(files)}. {_REEXPORT}"
            )
        for name, entry in files.items():
            if name in ("", ".", "..") or "/" in name or "\\" in name:
                raise ModelLoadError(
                    f"{manifest_path}: files lists {_short(name)}, which is not a file name in the folder. {_REEXPORT}"
                )
            if not isinstance(entry, dict) or not _is_sha256(entry.get("sha256")):
                raise ModelLoadError(
                    f"{manifest_path}: files[{name!r}] must be an object with the file's sha256 "
                    f"(64 lowercase hex digits), got {_short(entry)}. {_REEXPORT}"
                )
            checksums[folder / name] = entry["sha256"]
    return checksums


def _file_sha256(path: Path) -> str:
    """`sha256_of(path)`, or `ModelLoadError` naming the file when it is missing or cannot be read."""
    try:
        return sha256_of(path)
    except FileNotFoundError:
        raise ModelLoadError(f"{path}: missing, but {MANIFEST_FILE} lists its sha256. {_REEXPORT}") from None
    except OSError as exc:  # a directory, a symlink loop, no permission, an I/O error
        raise ModelLoadError(f"{path}: cannot be read ({exc.strerror or exc}). {_REEXPORT}") from exc


def check_batch_size(batch_size: Any) -> int:
    """`batch_size` as an int, or `ValueError` unless it is an integer >= 1 (bools refused).

    Args:
        batch_size: texts per model call, as a caller passed it.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}.")
    return int(batch_size)


def length_batches(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Length bucketing: indices sorted by token length (stable), cut into batches of `batch_size`.

    Each batch then pads only to its own longest text (its last index), and equal
    lengths keep their input order.

    Args:
        lengths: token count per text, in input order.
        batch_size: texts per batch (the last batch may be smaller); an int >= 1, else `ValueError`.
    """
    batch_size = check_batch_size(batch_size)
    order = np.argsort(np.asarray(lengths), kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


class Predictor:
    """Classify texts with an exported ONNX model folder.

    Args:
        model_dir: a folder written by `tnews-deploy export` (model.onnx, tokenizer.json, config.json,
            manifest.json), `default` / `tnews-compact` (the model bundled with this package), or the name of an
            installed model package (`tnews-deploy package`, then `pip install` the wheel; found through the
            `tnews_deploy.models` entry points). An existing folder wins over a name. None (default): the default
            model, the one `$TNEWS_DEPLOY_MODEL` names (a folder or a name) when set, else the bundled one (see
            `tnews_deploy.models.locate_model`).
        threads: onnxruntime intra-op threads; default: every CPU this process may use.
        providers: onnxruntime execution providers; default: CPU.
        batch_size: texts per model call (after sorting by length); at least 1.
        verify_checksum: check model.onnx, and the other files the manifest lists (tokenizer.json,
            config.json), against the manifest's sha256 before loading.
        memory: how onnxruntime manages CPU memory across calls of varying shapes. "ort-default":
            onnxruntime's defaults (arena + memory patterns); "arena" (default): the arena, which grows
            to the largest batch seen (bounded: batches are at most `batch_size` texts of at most
            `max_length` tokens) and reuses it; "shrink": the arena, handed back to the system after
            every call; "no-arena": plain malloc/free. Except in "ort-default", the per-shape
            memory-pattern cache is off (with a new shape per batch it only grows). Figures:
            docs/operations.md.
        int8_kernels: the int8 weight form an int8 export runs in. "auto" (default): the form that is exact
            and fastest on this CPU (u8 x s8 with VNNI or on ARM64, else u8 x u8), converted in memory at load
            when the file holds the other one (same integer products, so the verified answers; see
            `tnews_deploy.int8_weights`); "u8u8" or "u8s8" force one (u8s8 on x86 without VNNI saturates).

    Raises:
        ModelLoadError: the folder or one of its files is missing, damaged or inconsistent (the message
            names the file and what to do).
        ValueError: `batch_size` < 1.

    Attributes (besides the arguments): `model_dir` (the folder loaded), `resolved_model` (how it was found),
    `model_name` and `model_version` (see those), `manifest`, `labels`, `max_length`.

    >>> predictor = Predictor()                          # the bundled model (tnews-compact)
    >>> predictor = Predictor("exports/tnews-int8")      # or an installed model package: Predictor("tnews-int8")
    >>> predictor.predict("北京大学举行毕业典礼")
    Prediction(label='news_edu', label_id=7, score=0.93)
    """

    def __init__(
        self,
        model_dir: str | os.PathLike | None = None,
        threads: int | None = None,
        providers: Sequence[str] | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        verify_checksum: bool = True,
        memory: str = DEFAULT_MEMORY,
        int8_kernels: str = "auto",
    ) -> None:
        batch_size = check_batch_size(batch_size)
        if memory not in MEMORY_MODES:
            raise ValueError(f"memory must be one of {', '.join(MEMORY_MODES)}, got {memory!r}.")
        if int8_kernels not in INT8_KERNEL_CHOICES:
            raise ValueError(f"int8_kernels must be one of {', '.join(INT8_KERNEL_CHOICES)}, got {int8_kernels!r}.")
        self.memory = memory
        self.int8_kernels = int8_kernels
        self.resolved_model: ResolvedModel = locate_model(model_dir)
        self.model_dir = self.resolved_model.folder
        self.batch_size = batch_size
        model_path = self._check_folder()
        self.manifest = self._load_manifest(model_path, verify_checksum)
        config = self._load_config()
        self.labels: tuple[str, ...] = self._load_labels(config)
        self.pad_token_id: int = config.get("pad_token_id") or 0
        self.max_length = self._max_length(config)
        self.tokenizer = self._load_tokenizer(config)
        self.threads = threads or default_threads()
        self.providers = list(providers or ["CPUExecutionProvider"])
        self.session = self._load_session(model_path)

    # ------------------------------------------------------------------ identity

    @property
    def model_name(self) -> str:
        """The model's name: its manifest's `release.name` (the bundled model: tnews-compact), else the installed
        model package's or the bundled model's name it was found by, else the folder's name."""
        return model_identity(self.resolved_model, self.manifest)[0]

    @property
    def model_version(self) -> str | None:
        """The model's version: its manifest's `release.version`, else the installed model package's version;
        None when neither says (a plain export folder)."""
        return model_identity(self.resolved_model, self.manifest)[1]

    @property
    def model_label(self) -> str:
        """One line naming the model for people, e.g. `tnews-compact 1.0.0 (bundled)`."""
        return self.resolved_model.label(self.model_name, self.model_version)

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
        """The export manifest (empty when absent), checked, with model.onnx and the files it lists checked
        against their sha256 (manifests written before `files` existed check model.onnx only)."""
        manifest_path = self.model_dir / MANIFEST_FILE
        if not (manifest_path.exists() or manifest_path.is_symlink()):  # a symlink loop "exists" as neither
            return {}
        manifest = _read_json(manifest_path, "export manifest")
        max_length = manifest.get("max_length")
        if max_length is not None and not _positive_int(max_length):
            raise ModelLoadError(
                f"{manifest_path}: max_length must be an integer >= 1, got {_short(max_length)}. {_REEXPORT}"
            )
        checksums = _manifest_checksums(manifest_path, manifest)
        for path, expected in checksums.items() if verify_checksum else ():
            if _file_sha256(path) != expected:
                raise ModelLoadError(
                    f"{path}: sha256 differs from {manifest_path.name}; the file was changed or "
                    "damaged after export. Re-export it, or copy the whole folder again."
                )
        return manifest

    def _load_config(self) -> dict[str, Any]:
        """config.json, with the sizes and the pad id the runtime uses checked (the labels: `_load_labels`)."""
        path = self.model_dir / MODEL_CONFIG_FILE
        config = _read_json(path, "model config with the labels")
        for key in ("vocab_size", "max_position_embeddings"):
            if config.get(key) is not None and not _positive_int(config[key]):
                raise ModelLoadError(f"{path}: {key} must be an integer >= 1, got {_short(config[key])}. {_REEXPORT}")
        pad, vocab = config.get("pad_token_id"), config.get("vocab_size")
        pad_ok = isinstance(pad, int) and not isinstance(pad, bool) and 0 <= pad and (vocab is None or pad < vocab)
        if pad is not None and not pad_ok:
            allowed = f"0..{vocab - 1} (the model's vocabulary)" if vocab else ">= 0"
            raise ModelLoadError(
                f"{path}: pad_token_id must be an integer in {allowed}, got {_short(pad)}. {_REEXPORT}"
            )
        return config

    def _load_labels(self, config: dict[str, Any]) -> tuple[str, ...]:
        """The label names by id, from config.json's id2label: ids 0..n-1, each a distinct non-empty string."""
        path = self.model_dir / MODEL_CONFIG_FILE
        id2label = config.get("id2label")
        if not id2label:
            raise ModelLoadError(f"{path}: has no id2label; re-export the model.")
        if not isinstance(id2label, dict):
            raise ModelLoadError(
                f"{path}: id2label must be an object of label id -> name, but is {_json_type(id2label)}. {_REEXPORT}"
            )
        by_id: dict[int, str] = {}
        for key, label in id2label.items():
            if not (key.isascii() and key.isdigit() and str(int(key)) == key):
                raise ModelLoadError(
                    f"{path}: id2label has the key {_short(key)}, which is not a label id (0, 1, 2, ...). {_REEXPORT}"
                )
            if not isinstance(label, str) or not label.strip():
                raise ModelLoadError(
                    f"{path}: id2label[{key!r}] must be a label name (a non-empty string), got "
                    f"{_short(label)}. {_REEXPORT}"
                )
            by_id[int(key)] = label
        if sorted(by_id) != list(range(len(by_id))):
            missing = sorted(set(range(len(by_id))) - set(by_id))
            raise ModelLoadError(
                f"{path}: id2label must number its {len(by_id)} labels 0..{len(by_id) - 1}, one "
                f"each; {', '.join(map(str, missing[:5]))} missing. {_REEXPORT}"
            )
        labels = tuple(by_id[i] for i in range(len(by_id)))
        repeated = next((label for i, label in enumerate(labels) if label in labels[:i]), None)
        if repeated is not None:
            ids = [str(i) for i, label in enumerate(labels) if label == repeated]
            raise ModelLoadError(
                f"{path}: id2label names {repeated!r} more than once (ids {', '.join(ids)}); each "
                f"label needs its own name. {_REEXPORT}"
            )
        return labels

    def _max_length(self, config: dict[str, Any]) -> int:
        """The manifest's max_length (checked against the model's positions), else min(positions, 512)."""
        positions = config.get("max_position_embeddings")
        max_length = self.manifest.get("max_length")
        if max_length is None:
            return min(positions or 512, 512)
        if positions is not None and max_length > positions:
            raise ModelLoadError(
                f"{self.model_dir / MANIFEST_FILE}: max_length {max_length} is more than the model's "
                f"{positions} positions (max_position_embeddings in {MODEL_CONFIG_FILE}). {_REEXPORT}"
            )
        return max_length

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
            self.kernel_plan, converted = prepare_int8(model_path, self.manifest, self.int8_kernels)
            model: str | bytes = converted if converted is not None else str(model_path)
            session = ort.InferenceSession(model, sess_options=options, providers=self.providers)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf/... types; onnx DecodeError
            raise ModelLoadError(
                f"{model_path}: onnxruntime cannot load it ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:300]}). The file is corrupt or truncated: re-export it."
            ) from exc
        self.input_names = {i.name for i in session.get_inputs()}
        self.output_names = tuple(o.name for o in session.get_outputs())  # the logits first
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

    def _run(self, encodings: list, batch_size: int | None = None) -> ModelOutput:
        """Every output for already-encoded texts, in their order, with length bucketing."""
        if not encodings:
            return self._empty_output()
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))
        parts: list[tuple[np.ndarray, list[np.ndarray]]] = []
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
            parts.append((idx, self.session.run(None, feeds, self._run_options)))
        outputs = {
            name: _assemble([(idx, rows[k]) for idx, rows in parts], len(encodings))
            for k, name in enumerate(self.output_names)
        }
        return ModelOutput(outputs=outputs, encodings=tuple(encodings))

    def _empty_output(self) -> ModelOutput:
        """The outputs of a call without texts: each with 0 rows (unknown sizes of other axes: 0)."""
        outputs: dict[str, np.ndarray] = {}
        for k, meta in enumerate(self.session.get_outputs()):
            dims = (len(self.labels),) if k == 0 else tuple(d if isinstance(d, int) else 0 for d in meta.shape[1:])
            outputs[meta.name] = np.zeros((0, *dims), _ORT_DTYPES.get(meta.type, np.float32))
        return ModelOutput(outputs=outputs, encodings=())

    def batches(self, lengths: np.ndarray, batch_size: int | None = None) -> list[np.ndarray]:
        """`length_batches` with this predictor's batch size unless `batch_size` is given (ValueError if < 1)."""
        return length_batches(lengths, self.batch_size if batch_size is None else batch_size)

    def encode(self, texts: Sequence[str]) -> list:
        """Token encodings (with special tokens, truncated to `max_length`) in one Rust call.

        A text longer than `max_length * longtext.CHARS_PER_TOKEN` characters is tokenised only as far as its
        kept tokens need, with the same result (`tnews_deploy.longtext`): a 10 MB line costs what a page does.
        """
        long_texts = self.__dict__.get("_long_texts")  # made on first use, for this tokenizer and max_length
        if long_texts is None or long_texts.tokenizer is not self.tokenizer or long_texts.max_length != self.max_length:
            from .longtext import LongTextEncoder

            long_texts = self._long_texts = LongTextEncoder(self.tokenizer, self.max_length)
        return long_texts.encode(list(texts))

    def _logits(self, items: list[str], batch_size: int | None = None) -> np.ndarray:
        return self._run(self.encode(items), batch_size).logits

    @staticmethod
    def _checked(texts: str | Sequence[str], batch_size: int | None) -> tuple[list[str], bool, int | None]:
        """The public calls' input contract: (texts as a list, whether one str was given, the batch size)."""
        if batch_size is not None:
            batch_size = check_batch_size(batch_size)
        items, single = validate_texts(texts)
        return items, single, batch_size

    def run(self, texts: str | Sequence[str], batch_size: int | None = None) -> ModelOutput:
        """Every output of the model and the encodings, one row per text in input order (a str is one text).

        What `logits`, `predict_proba` and `predict` are built on, for callers that need more than the
        logits (the encodings, other outputs of the model). Same length bucketing and batches as they use.

        Args:
            texts: a str or a list/tuple of str (see the module's input contract).
            batch_size: texts per model call, an int >= 1; default: the predictor's `batch_size`.

        Raises:
            TypeError / ValueError: bad texts (see `predict`), or a `batch_size` that is not an int >= 1.
        """
        items, _, batch_size = self._checked(texts, batch_size)
        return self._run(self.encode(items), batch_size)

    @staticmethod
    def _softmax(logits: np.ndarray) -> np.ndarray:
        exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
        return exp / exp.sum(axis=-1, keepdims=True)

    def logits(self, texts: str | Sequence[str], batch_size: int | None = None) -> np.ndarray:
        """Raw logits, shape (n, num_labels) (or (num_labels,) for one string).

        Args:
            texts: a str or a list/tuple of str (see the module's input contract).
            batch_size: texts per model call, an int >= 1; default: the predictor's `batch_size`.

        Raises:
            TypeError / ValueError: bad texts (see `predict`), or a `batch_size` that is not an int >= 1.
        """
        items, single, batch_size = self._checked(texts, batch_size)
        out = self._logits(items, batch_size)
        return out[0] if single else out

    def predict_proba(self, texts: str | Sequence[str], batch_size: int | None = None) -> np.ndarray:
        """Class probabilities, shape (n, num_labels) (or (num_labels,) for one string).

        Args:
            texts: a str or a list/tuple of str (see the module's input contract).
            batch_size: texts per model call, an int >= 1; default: the predictor's `batch_size`.
        """
        items, single, batch_size = self._checked(texts, batch_size)
        probs = self._softmax(self._logits(items, batch_size))
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

"""Vocabulary trimming: keep the tokens a corpus needs and the embedding rows behind them.

A multilingual encoder carries a vocabulary for a hundred languages; TNEWS uses
a few percent of it, yet every row of the embedding table is shipped. Trimming
keeps, in their old relative order:

* every special and added token, and every id the model config names (pad, ...);
* every token the corpus uses (by default the training split of the run's data,
  minus any sentence that also occurs in a validation split: the sentences a
  run is evaluated and selected on never choose tokens);
* every single-character piece for CJK ideographs, ASCII letters, digits and
  punctuation that the tokenizer can produce, in its word-initial and
  word-internal forms (`▁x` / `##x`), so unseen text falls back to characters
  rather than to the unknown token (plus the byte pieces of a byte-fallback
  Unigram, and the Metaspace `▁` itself).

The tokenizer is rebuilt through the `tokenizers` model classes (`Unigram` with
the kept pieces and their scores, or `WordPiece` with the kept vocabulary),
keeping its normalizer, pre-tokenizer and decoder, with the post-processor
rebuilt as a `TemplateProcessing` on the new special ids, and saved through the
transformers fast-tokenizer class it came as. The model keeps the matching
embedding rows; `config.vocab_size` and the config's special ids follow.

A text whose pieces are unchanged has the same ids after re-numbering and the
same embeddings, so the same logits. Like an export, a trim is verified before
anything is written, on validation texts that were not used to choose tokens:
the share of texts whose pieces are unchanged, prediction agreement with the
untrimmed model, max |Δlogit| where the pieces are unchanged. Below
`min_agreement` it is refused; the output is built in a hidden sibling folder
and renamed into place only when accepted.

The output is a run-like folder that `export`, `benchmark` (and `distill`) take
as they take a training run:

* `checkpoint/`: model + tokenizer + labels;
* `run_config.json`: the source run's, unchanged (data, eval_size, seed,
  max_length: export verifies on the same evaluation set);
* `metrics.json`: the trimmed model on that evaluation set (the source's run
  metrics otherwise kept, the source's figures under `trimmed_from`);
* `trim.json`: what was kept and why, sizes before and after, the verification;
* `trim_kept_ids.json`: the old id of every new id.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import unicodedata
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..datasource import DataSource
from ..errors import ConfigError, UserError
from ..export.exporter import ExportConfig, _move_into_place, evaluation_set, remove_stale_staging
from ..export.source import ExportSource, resolve_source
from ..runfiles import CHECKPOINT_DIR, METRICS_FILE, RUN_CONFIG_FILE, write_json_atomic

logger = logging.getLogger(__name__)

TRIM_FILE = "trim.json"
KEPT_IDS_FILE = "trim_kept_ids.json"
TRIM_FORMAT_VERSION = 1
FAMILIES = ("unigram", "wordpiece")
# Config attributes that hold token ids; they must survive the re-numbering.
CONFIG_TOKEN_IDS = (
    "pad_token_id",
    "bos_token_id",
    "eos_token_id",
    "sep_token_id",
    "cls_token_id",
    "unk_token_id",
    "mask_token_id",
    "decoder_start_token_id",
)
# init kwargs of a transformers tokenizer that point at files or at the old ids.
_STALE_INIT_KWARGS = (
    "vocab_file",
    "tokenizer_file",
    "merges_file",
    "name_or_path",
    "added_tokens_decoder",
    "tokenizer_object",
    "special_tokens_map_file",
    "auto_map",
)


class TrimRefused(UserError):
    """The trimmed model did not pass verification; nothing was written."""

    def __init__(self, message: str, report: TrimReport) -> None:
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class TrimConfig:
    """How a vocabulary is trimmed and verified.

    Args:
        corpus: texts whose tokens are kept: a data source (`load_tnews`; its train
            split: a folder or hub id) or a `.txt`/`.jsonl`/`.csv`/`.parquet` file or
            glob of texts (labels, if any, are not read). None: the run's data.
        corpus_field: the text column/field of the `corpus` (files, or a data source);
            None: 'sentence', else 'text'.
        data: verification data (its validation split; a path or a `DataSource`);
            None: the run's data.
        verify_size: validation texts to verify on (a seeded, stratified draw);
            None: all of the validation split.
        min_agreement: refuse below this share of predictions equal to the untrimmed model's.
        unchanged_tolerance: refuse when a text whose pieces did not change moves a
            logit by more than this (it would mean rows and tokens do not match).
        max_length: token cap for verification; None: the run's max_length (else 128).
        batch_size: verification batch size.
        force: replace an existing output folder.
        progress: show progress bars.
    """

    corpus: str | None = None
    corpus_field: str | None = None
    data: str | DataSource | None = None
    verify_size: int | None = None
    min_agreement: float = 0.995
    unchanged_tolerance: float = 1e-3
    max_length: int | None = None
    batch_size: int = 64
    force: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_agreement <= 1.0:
            raise ConfigError(f"--min-agreement must be between 0 and 1 (a share), got {self.min_agreement}.")
        if not self.unchanged_tolerance >= 0:
            raise ConfigError(f"unchanged_tolerance must be >= 0, got {self.unchanged_tolerance}.")
        if self.verify_size is not None and self.verify_size < 1:
            raise ConfigError(f"--verify-size must be positive (or left out for all), got {self.verify_size}.")
        if self.max_length is not None and self.max_length < 8:
            raise ConfigError(f"--max-length must be at least 8, got {self.max_length}.")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be positive, got {self.batch_size}.")
        for name in ("corpus", "data"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, DataSource) and not str(value).strip():
                raise ConfigError(f"--{name} must not be empty; leave it out to use the run's data.")
        if self.corpus_field is not None and (self.corpus is None or not self.corpus_field.strip()):
            raise ConfigError(
                "--corpus-field names the text column of --corpus: pass --corpus too, and a "
                f"non-empty name (got {self.corpus_field!r})."
            )


@dataclass
class TrimReport:
    """Trimmed vs untrimmed on the verification texts."""

    texts: int
    pieces_unchanged: float  # share of texts tokenised into the same pieces (vocabulary strings)
    agreement: float  # share of texts with the same predicted class
    max_abs_logit_diff_unchanged: float  # over texts whose pieces are unchanged
    max_abs_logit_diff: float  # over all texts
    texts_with_unk_before: int
    texts_with_unk_after: int
    source: dict[str, float]  # macro/micro-F1, accuracy of the untrimmed model on these texts
    trimmed: dict[str, float]
    passed: bool | None = None
    reasons: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        return (
            f"{self.texts:,} verification texts: pieces unchanged {self.pieces_unchanged:.2%}, "
            f"agreement {self.agreement:.2%}, max |Δlogit| {self.max_abs_logit_diff_unchanged:.1e} where "
            f"pieces are unchanged ({self.max_abs_logit_diff:.2f} overall); texts with unknown tokens "
            f"{self.texts_with_unk_before} -> {self.texts_with_unk_after}; macro-F1 "
            f"{self.source['macro_f1']:.4f} -> {self.trimmed['macro_f1']:.4f}"
        )


@dataclass
class TrimResult:
    output: Path
    source: ExportSource
    record: dict[str, Any]  # the content of trim.json
    report: TrimReport


# --------------------------------------------------------------------------- characters


def _is_cjk(char: str) -> bool:
    """A CJK ideograph (the ranges BERT's tokenizer treats as Chinese characters)."""
    cp = ord(char)
    return (
        0x4E00 <= cp <= 0x9FFF
        or 0x3400 <= cp <= 0x4DBF
        or 0x20000 <= cp <= 0x2A6DF
        or 0x2A700 <= cp <= 0x2CEAF
        or 0xF900 <= cp <= 0xFAFF
        or 0x2F800 <= cp <= 0x2FA1F
    )


def fallback_char_class(char: str) -> str | None:
    """'cjk', 'letter' (ASCII), 'digit' (ASCII), 'punct' or None: the characters kept as fallbacks."""
    if len(char) != 1:
        return None
    if _is_cjk(char):
        return "cjk"
    if char.isascii():
        if char.isalpha():
            return "letter"
        if char.isdigit():
            return "digit"
        if char.isprintable() and not char.isspace():
            return "punct"  # every printable ASCII symbol, as BERT counts them
        return None
    return "punct" if unicodedata.category(char).startswith("P") else None


# --------------------------------------------------------------------------- tokenizer


def tokenizer_family(backend: Any) -> str:
    """'unigram' or 'wordpiece'; `UserError` for any other tokenizer model."""
    from tokenizers import models

    if isinstance(backend.model, models.Unigram):
        return "unigram"
    if isinstance(backend.model, models.WordPiece):
        return "wordpiece"
    raise UserError(
        f"the checkpoint's tokenizer is a {type(backend.model).__name__} model; vocabulary "
        "trimming supports Unigram (SentencePiece: XLM-R, e5) and WordPiece (BERT) tokenizers."
    )


def _state(component: Any) -> dict[str, Any]:
    """A tokenizers component's own serialised description (read-only)."""
    return json.loads(component.__getstate__())


def _metaspace_replacement(backend: Any) -> str | None:
    """The word-boundary mark of a Metaspace pre-tokenizer (`▁`), or None."""
    if backend.pre_tokenizer is None:
        return None

    def find(node: Any) -> str | None:
        if isinstance(node, dict):
            if node.get("type") == "Metaspace":
                return node.get("replacement")
            return next((r for r in map(find, node.values()) if r), None)
        if isinstance(node, list):
            return next((r for r in map(find, node) if r), None)
        return None

    return find(_state(backend.pre_tokenizer))


def _normalize(backend: Any, text: str) -> str:
    return backend.normalizer.normalize_str(text) if backend.normalizer is not None else text


def _words(backend: Any, text: str) -> list[str]:
    text = _normalize(backend, text)
    if backend.pre_tokenizer is None:
        return text.split()
    return [word for word, _ in backend.pre_tokenizer.pre_tokenize_str(text)]


def single_character_ids(backend: Any) -> dict[str, set[int]]:
    """Ids of the single-character pieces kept as fallbacks, by character class.

    A piece counts when it is one fallback character (see `fallback_char_class`),
    bare or with the word-boundary mark of its family (`▁x` for Metaspace, `##x`
    for WordPiece), and the tokenizer can produce it: the normalizer leaves the
    character as it is (lower-casing makes `A` unreachable), and a `##x` needs a
    pre-tokenizer that does not split `x` off its word (BERT splits CJK and
    punctuation, so their `##` forms are never produced).
    """
    family = tokenizer_family(backend)
    prefix = backend.model.continuing_subword_prefix if family == "wordpiece" else None
    mark = _metaspace_replacement(backend) if family == "unigram" else None
    found: dict[str, set[int]] = {}
    reachable: dict[tuple[str, bool], bool] = {}

    def can_produce(char: str, continuation: bool) -> bool:
        key = (char, continuation)
        if key not in reachable:
            ok = _normalize(backend, char).strip() == char
            if ok and continuation:
                ok = len(_words(backend, "a" + char)) == 1
            reachable[key] = ok
        return reachable[key]

    for piece, token_id in backend.get_vocab(with_added_tokens=False).items():
        char, continuation = piece, False
        if prefix and piece.startswith(prefix) and len(piece) > len(prefix):
            char, continuation = piece[len(prefix) :], True
        elif mark and len(piece) == 2 and piece.startswith(mark):
            char = piece[1:]
        if mark and piece == mark:  # the Metaspace mark: `▁` + `x` is the fallback of a word-initial `▁x`
            found.setdefault("metaspace", set()).add(token_id)
            continue
        kind = fallback_char_class(char)
        if kind and can_produce(char, continuation):
            found.setdefault(kind, set()).add(token_id)
    return found


def _byte_fallback_ids(backend: Any, unigram_state: dict[str, Any] | None) -> set[int]:
    if not unigram_state or not unigram_state.get("byte_fallback"):
        return set()
    vocab = backend.get_vocab(with_added_tokens=False)
    return {vocab[f"<0x{b:02X}>"] for b in range(256) if f"<0x{b:02X}>" in vocab}


def _template_string(items: list[dict[str, Any]]) -> str:
    parts = []
    for item in items:
        if "Sequence" in item:
            parts.append(f"${item['Sequence']['id']}:{item['Sequence']['type_id']}")
        else:
            parts.append(f"{item['SpecialToken']['id']}:{item['SpecialToken']['type_id']}")
    return " ".join(parts)


def post_processor_special_ids(post_processor: Any) -> set[int]:
    """The token ids a post-processor inserts (CLS/SEP ...)."""
    if post_processor is None:
        return set()
    state = _state(post_processor)
    if state["type"] == "TemplateProcessing":
        return {i for token in state["special_tokens"].values() for i in token["ids"]}
    if state["type"] in ("BertProcessing", "RobertaProcessing"):
        return {int(state["cls"][1]), int(state["sep"][1])}
    return set()


def rebuild_post_processor(post_processor: Any, id_map: dict[int, int]) -> Any:
    """A `TemplateProcessing` that inserts the same special tokens under their new ids."""
    from tokenizers import processors

    if post_processor is None:
        return None
    state = _state(post_processor)
    kind = state["type"]
    if kind == "TemplateProcessing":
        single, pair = _template_string(state["single"]), _template_string(state["pair"])
        specials = [
            {"id": name, "ids": [id_map[i] for i in token["ids"]], "tokens": token["tokens"]}
            for name, token in state["special_tokens"].items()
        ]
    elif kind in ("BertProcessing", "RobertaProcessing"):
        (cls, cls_id), (sep, sep_id) = state["cls"], state["sep"]
        single = f"{cls}:0 $A:0 {sep}:0"
        pair = (
            f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1"
            if kind == "BertProcessing"
            else f"{cls}:0 $A:0 {sep}:0 {sep}:0 $B:0 {sep}:0"
        )
        specials = [(cls, id_map[int(cls_id)]), (sep, id_map[int(sep_id)])]
    else:
        raise UserError(
            f"the tokenizer's post-processor is a {kind}; vocabulary trimming can rebuild "
            "TemplateProcessing, BertProcessing and RobertaProcessing only."
        )
    return processors.TemplateProcessing(single=single, pair=pair, special_tokens=specials)


def rebuild_tokenizer(backend: Any, keep: Sequence[int]) -> Any:
    """A `tokenizers.Tokenizer` with only the pieces whose old ids are in `keep` (sorted), re-numbered 0..n-1.

    Args:
        backend: the source `tokenizers.Tokenizer`.
        keep: old ids to keep, ascending; new id = position in `keep`.
    """
    from tokenizers import Tokenizer, models

    family = tokenizer_family(backend)
    id_map = {old: new for new, old in enumerate(keep)}
    model_vocab = backend.get_vocab(with_added_tokens=False)
    model_ids = set(model_vocab.values())
    kept_model = [old for old in keep if old in model_ids]
    if kept_model != list(keep[: len(kept_model)]):
        raise UserError(
            "the tokenizer has added tokens numbered between its model's pieces; trimming it would "
            "change their order. Not supported."
        )
    if family == "unigram":
        state = _state(backend.model)
        pieces = state["vocab"]
        unk_id = state.get("unk_id")
        model = models.Unigram(
            [(pieces[old][0], float(pieces[old][1])) for old in kept_model],
            id_map[unk_id] if unk_id is not None else None,
            bool(state.get("byte_fallback", False)),
        )
    else:
        by_id = {i: piece for piece, i in model_vocab.items()}
        old = backend.model
        model = models.WordPiece(
            {by_id[i]: id_map[i] for i in kept_model},
            unk_token=old.unk_token,
            max_input_chars_per_word=old.max_input_chars_per_word,
            continuing_subword_prefix=old.continuing_subword_prefix,
        )
    tokenizer = Tokenizer(model)
    tokenizer.normalizer = backend.normalizer
    tokenizer.pre_tokenizer = backend.pre_tokenizer
    tokenizer.decoder = backend.decoder
    tokenizer.post_processor = rebuild_post_processor(backend.post_processor, id_map)
    for old_id, token in sorted(backend.get_added_tokens_decoder().items()):
        (tokenizer.add_special_tokens if token.special else tokenizer.add_tokens)([token])
        if tokenizer.token_to_id(token.content) != id_map[old_id]:
            raise UserError(
                f"added token {token.content!r} would not keep its place after trimming; "
                "this tokenizer layout is not supported."
            )
    for old_id, new_id in id_map.items():  # the re-numbering is what the model's rows assume
        if tokenizer.id_to_token(new_id) != backend.id_to_token(old_id):
            raise RuntimeError(
                f"rebuilt tokenizer puts {tokenizer.id_to_token(new_id)!r} at {new_id}, "
                f"expected {backend.id_to_token(old_id)!r}"
            )
    return tokenizer


def wrap_tokenizer(source_tokenizer: Any, tokenizer: Any) -> Any:
    """The rebuilt `tokenizers.Tokenizer` in the transformers fast class the source came as."""
    kwargs = {k: v for k, v in source_tokenizer.init_kwargs.items() if k not in _STALE_INIT_KWARGS}
    return type(source_tokenizer)(tokenizer_object=tokenizer, **kwargs)


# --------------------------------------------------------------------------- choosing tokens


def corpus_texts(
    corpus: str | DataSource, held_out: set[str], text_field: str | None = None, dataset: Any = None
) -> tuple[list[str], dict[str, Any]]:
    """The texts whose tokens are kept, without any held-out (validation) sentence.

    Args:
        corpus: a data source (a `DataSource`, or a folder / hub id; its train split is used) or a
            `.txt`/`.jsonl`/`.csv`/`.parquet` file or glob of texts (a string).
        held_out: sentences that must not choose tokens (validation splits).
        text_field: the text column of a string `corpus` (`--corpus-field`); None: 'sentence', else 'text'.
        dataset: a `DataSource` corpus already loaded by the caller, so that it is not read twice.
    """
    from ..data import load_tnews
    from ..scoring.io import names_text_files, read_texts

    if not isinstance(corpus, DataSource) and names_text_files(corpus):
        texts, split = read_texts(corpus, text_field, option="--corpus-field"), None
    else:
        source = corpus if isinstance(corpus, DataSource) else DataSource(str(corpus), text_field=text_field)
        dataset = dataset if dataset is not None else load_tnews(source)
        if "train" not in dataset:
            raise UserError(f"{corpus}: has no train split to take the corpus from.")
        texts, split = list(dataset["train"]["sentence"]), "train"
        if "validation" in dataset:
            held_out = held_out | set(dataset["validation"]["sentence"])
    kept = [t for t in texts if t not in held_out]
    info = {
        "source": str(corpus),
        "split": split,
        "sentences": len(kept),
        "excluded_as_validation_sentences": len(texts) - len(kept),
    }
    if text_field is not None:
        info["text_field"] = text_field
    if not kept:
        raise UserError(f"{corpus}: no corpus sentences left once validation sentences are excluded.")
    return kept, info


def choose_tokens(
    source_tokenizer: Any, model_config: Any, texts: Sequence[str]
) -> tuple[dict[str, set[int]], dict[str, set[int]]]:
    """The old ids to keep by reason ('special', 'corpus', 'single_characters', 'byte_fallback'), and the
    single characters by class (see `single_character_ids`).

    Args:
        source_tokenizer: the transformers fast tokenizer of the checkpoint.
        model_config: its model config (special ids it names are kept).
        texts: the corpus.
    """
    backend = source_tokenizer.backend_tokenizer
    family = tokenizer_family(backend)
    unigram_state = _state(backend.model) if family == "unigram" else None
    vocab_size = backend.get_vocab_size(with_added_tokens=True)

    special = set(source_tokenizer.all_special_ids) | set(backend.get_added_tokens_decoder())
    special |= post_processor_special_ids(backend.post_processor)
    if family == "unigram" and unigram_state.get("unk_id") is not None:
        special.add(int(unigram_state["unk_id"]))
    elif family == "wordpiece" and backend.token_to_id(backend.model.unk_token) is not None:
        special.add(backend.token_to_id(backend.model.unk_token))
    for attr in CONFIG_TOKEN_IDS:
        value = getattr(model_config, attr, None)
        if isinstance(value, int) and 0 <= value < vocab_size:
            special.add(value)

    backend.no_truncation()
    encodings = backend.encode_batch(list(texts), add_special_tokens=False)
    corpus = {i for enc in encodings for i in enc.ids}
    by_class = single_character_ids(backend)
    reasons = {
        "special": special,
        "corpus": corpus,
        "single_characters": set().union(*by_class.values()),
        "byte_fallback": _byte_fallback_ids(backend, unigram_state),
    }
    return reasons, by_class


# --------------------------------------------------------------------------- model


def trim_embeddings(model: Any, keep: Sequence[int]) -> None:
    """Keep only the word-embedding rows in `keep` (old ids, ascending), in place; config follows.

    Args:
        model: a transformers model with input embeddings.
        keep: old ids; row `keep[i]` becomes row `i`.
    """
    import torch

    old = model.get_input_embeddings()
    if max(keep) >= old.num_embeddings:
        raise UserError(
            f"the tokenizer has token id {max(keep)} but the model only {old.num_embeddings} "
            "embedding rows: tokenizer and model do not belong together."
        )
    id_map = {o: n for n, o in enumerate(keep)}
    pad = getattr(model.config, "pad_token_id", None)
    new = torch.nn.Embedding(
        len(keep), old.embedding_dim, padding_idx=id_map.get(pad), dtype=old.weight.dtype, device=old.weight.device
    )
    with torch.no_grad():
        new.weight.copy_(old.weight[torch.as_tensor(list(keep), dtype=torch.long)])
    model.set_input_embeddings(new)
    model.config.vocab_size = len(keep)
    for attr in CONFIG_TOKEN_IDS:
        value = getattr(model.config, attr, None)
        if isinstance(value, int):
            setattr(model.config, attr, id_map.get(value))


# --------------------------------------------------------------------------- verification


def check_special_ids(source_tokenizer: Any, source_checkpoint: Path, tokenizer: Any, checkpoint: Path) -> None:
    """The special ids that config and tokenizer agreed on before trimming still agree, on the same tokens."""
    from transformers import AutoConfig

    before, after = AutoConfig.from_pretrained(source_checkpoint), AutoConfig.from_pretrained(checkpoint)
    for attr in ("pad_token_id", "bos_token_id", "eos_token_id", "sep_token_id", "cls_token_id", "unk_token_id"):
        old_config, old_tok = getattr(before, attr, None), getattr(source_tokenizer, attr, None)
        new_config, new_tok = getattr(after, attr, None), getattr(tokenizer, attr, None)
        same_token = new_tok is not None and (
            tokenizer.convert_ids_to_tokens(new_tok) == source_tokenizer.convert_ids_to_tokens(old_tok)
        )
        if old_tok is not None and not same_token:
            raise RuntimeError(f"tokenizer {attr} lost its token in trimming ({old_tok} -> {new_tok})")
        if old_config is not None and old_config == old_tok and new_config != new_tok:
            raise RuntimeError(f"config {attr} {new_config} and tokenizer {attr} {new_tok} disagree after trimming")


def _unk_id(backend: Any) -> int | None:
    if tokenizer_family(backend) == "unigram":
        return _state(backend.model).get("unk_id")
    return backend.token_to_id(backend.model.unk_token)


def _pieces_by_id(backend: Any) -> list[str | None]:
    pieces: list[str | None] = [None] * backend.get_vocab_size(with_added_tokens=True)
    for piece, token_id in backend.get_vocab(with_added_tokens=True).items():
        pieces[token_id] = piece
    return pieces


def compare_trimmed(
    texts: Sequence[str],
    labels: np.ndarray,
    old_backend: Any,
    new_backend: Any,
    reference: np.ndarray,
    candidate: np.ndarray,
) -> TrimReport:
    """Pieces, predictions and logits of the trimmed model against the untrimmed one.

    Args:
        texts: verification texts; labels: their classes.
        old_backend / new_backend: the untrimmed and trimmed `tokenizers.Tokenizer`.
        reference / candidate: logits of the untrimmed and trimmed model on `texts`.
    """
    from ..training.metrics import f1_scores

    old_encodings = old_backend.encode_batch(list(texts), add_special_tokens=False)
    new_encodings = new_backend.encode_batch(list(texts), add_special_tokens=False)
    # Pieces as the vocabulary names them: a Unigram encoding shows an unknown character as itself, not as
    # `<unk>`, so `Encoding.tokens` would hide a piece that trimming turned into the unknown token.
    old_pieces, new_pieces = _pieces_by_id(old_backend), _pieces_by_id(new_backend)
    unchanged = np.array(
        [
            [old_pieces[i] for i in a.ids] == [new_pieces[i] for i in b.ids]
            for a, b in zip(old_encodings, new_encodings)
        ],
        dtype=bool,
    )
    old_unk, new_unk = _unk_id(old_backend), _unk_id(new_backend)
    diff = np.abs(reference - candidate).max(axis=-1) if len(texts) else np.zeros(0)
    return TrimReport(
        texts=len(texts),
        pieces_unchanged=float(unchanged.mean()) if len(texts) else 1.0,
        agreement=float(np.mean(reference.argmax(-1) == candidate.argmax(-1))) if len(texts) else 1.0,
        max_abs_logit_diff_unchanged=float(diff[unchanged].max()) if unchanged.any() else 0.0,
        max_abs_logit_diff=float(diff.max()) if len(texts) else 0.0,
        texts_with_unk_before=sum(old_unk in e.ids for e in old_encodings),
        texts_with_unk_after=sum(new_unk in e.ids for e in new_encodings),
        source={k: round(v, 6) for k, v in f1_scores(labels, reference.argmax(-1)).items()},
        trimmed={k: round(v, 6) for k, v in f1_scores(labels, candidate.argmax(-1)).items()},
    )


def apply_gate(report: TrimReport, config: TrimConfig) -> TrimReport:
    """Set `passed` and `reasons`: agreement and unchanged-text logits against the config's limits."""
    reasons = []
    if report.agreement < config.min_agreement:
        reasons.append(
            f"prediction agreement with the untrimmed model {report.agreement:.2%} is below "
            f"--min-agreement {config.min_agreement:.1%} (keep more tokens: a larger --corpus)"
        )
    if report.max_abs_logit_diff_unchanged > config.unchanged_tolerance:
        reasons.append(
            f"texts whose pieces did not change moved a logit by {report.max_abs_logit_diff_unchanged:.2e}"
            f" (> {config.unchanged_tolerance:g}): the embedding rows do not match the tokens"
        )
    report.passed = not reasons
    report.reasons = reasons
    return report


def _verification_texts(
    dataset: Any, data: DataSource, size: int | None, seed: int, stratify: bool
) -> tuple[list[str], np.ndarray, set[str]]:
    """(texts, labels) to verify on, drawn from the validation split of `dataset` (`data`, loaded), and all its
    sentences."""
    from ..data import evaluation_split

    validation = dataset["validation"]
    if size is not None and size > len(validation):
        raise ConfigError(f"--verify-size {size} is larger than the {len(validation):,} validation texts of {data}.")
    chosen = validation if size is None or size == len(validation) else evaluation_split(dataset, size, seed, stratify)
    return list(chosen["sentence"]), np.asarray(chosen["label"]), set(validation["sentence"])


# --------------------------------------------------------------------------- main entry


def _size_of(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


def _versions() -> dict[str, str]:
    import tokenizers
    import torch
    import transformers

    return {
        "tnews_deploy": __version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
    }


def trim_vocab(source: str | Path, output: str | Path, config: TrimConfig = TrimConfig()) -> TrimResult:
    """Trim the vocabulary of SOURCE's checkpoint into the run-like folder OUTPUT, verified.

    Args:
        source: a checkpoint, run or grid folder (as `export` takes).
        output: the folder to create (see the module docstring for its layout).
        config: what to keep and how to verify.

    Raises:
        TrimRefused: verification failed; nothing was written.
        UserError: bad source, data or tokenizer.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from ..data import load_tnews
    from ..export.verify import pytorch_logits
    from ..training.metrics import classification_metrics

    output = Path(output)
    resolved = resolve_source(source)
    if output.exists() and not config.force:
        raise UserError(f"{output}: already exists. Choose another --output or pass --force to replace it.")
    run = resolved.run_config or {}
    recorded = DataSource.coerce(run["data"]) if run.get("data") else None
    data = DataSource.coerce(config.data) if config.data else recorded
    if data is None:
        raise UserError(
            f"{resolved.checkpoint}: no training-run config beside it says which data it was trained "
            "on; pass --data (and --corpus if the tokens should come from other texts)."
        )
    if data.label_names is None and recorded is not None and recorded.label_names:
        data = data.with_label_names(recorded.label_names)  # label ids as the model was trained on them
    corpus_source = config.corpus or recorded or data
    seed, stratify = int(run.get("seed", 42)), bool(run.get("stratify", True))
    max_length = int(config.max_length or run.get("max_length") or 128)
    logger.info("source: %s", resolved.describe())
    started = time.perf_counter()

    dataset = load_tnews(data)
    verify_texts, verify_labels, validation = _verification_texts(dataset, data, config.verify_size, seed, stratify)
    eval_texts, eval_labels, eval_origin = evaluation_set(resolved, ExportConfig(data=config.data), dataset)
    # Every validation sentence is held out: the run's evaluation and selection sets come from there.
    corpus, corpus_info = corpus_texts(
        corpus_source, validation | set(eval_texts), config.corpus_field, dataset if corpus_source == data else None
    )

    source_tokenizer = AutoTokenizer.from_pretrained(resolved.checkpoint)
    if not source_tokenizer.is_fast:
        raise UserError(
            f"{resolved.checkpoint}: its tokenizer has no fast (Rust) version; trimming needs tokenizer.json."
        )
    backend = source_tokenizer.backend_tokenizer
    family = tokenizer_family(backend)
    model = AutoModelForSequenceClassification.from_pretrained(resolved.checkpoint).eval()
    logger.info("choosing tokens from %s corpus sentences (%s) ...", f"{len(corpus):,}", corpus_source)
    reasons, char_classes = choose_tokens(source_tokenizer, model.config, corpus)
    keep = sorted(set().union(*reasons.values()))
    rows_before = model.get_input_embeddings().num_embeddings
    params_before = sum(p.numel() for p in model.parameters())
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    logger.info(
        "keeping %s of %s tokens (%s used by the corpus, %s single characters, %s special)",
        f"{len(keep):,}",
        f"{backend.get_vocab_size():,}",
        f"{len(reasons['corpus']):,}",
        f"{len(reasons['single_characters']):,}",
        f"{len(reasons['special']):,}",
    )

    output.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(output)
    staging = output.parent / f".{output.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    checkpoint = staging / CHECKPOINT_DIR
    checkpoint.mkdir(parents=True)
    try:
        tokenizer = wrap_tokenizer(source_tokenizer, rebuild_tokenizer(backend, keep))
        trim_embeddings(model, keep)
        params_after = sum(p.numel() for p in model.parameters())
        model.save_pretrained(checkpoint)
        tokenizer.save_pretrained(checkpoint)
        del model

        # Verify what was written, as it will be loaded: the saved tokenizer and model.
        saved_tokenizer = AutoTokenizer.from_pretrained(checkpoint)
        check_special_ids(source_tokenizer, resolved.checkpoint, saved_tokenizer, checkpoint)
        verify_set = set(verify_texts)
        extra = [t for t in dict.fromkeys(eval_texts) if t not in verify_set]  # when --verify-size is smaller
        texts = verify_texts + extra
        logger.info(
            "verifying on %s validation texts (untrimmed vs trimmed, max_length %d) ...",
            f"{len(verify_texts):,}",
            max_length,
        )
        reference = pytorch_logits(
            resolved.checkpoint, texts, max_length, config.batch_size, progress="untrimmed" if config.progress else None
        )
        candidate = pytorch_logits(
            checkpoint, texts, max_length, config.batch_size, progress="trimmed" if config.progress else None
        )
        n = len(verify_texts)
        report = apply_gate(
            compare_trimmed(
                verify_texts, verify_labels, backend, saved_tokenizer.backend_tokenizer, reference[:n], candidate[:n]
            ),
            config,
        )
        logger.info(report.summary())
        if not report.passed:
            raise TrimRefused(
                "vocabulary trimming refused: " + "; ".join(report.reasons) + ". Nothing was written.", report
            )

        row_of = {t: i for i, t in enumerate(texts)}
        eval_rows = [row_of[t] for t in eval_texts]
        trimmed_metrics = classification_metrics(eval_labels, candidate[eval_rows].argmax(-1), names)
        source_metrics = classification_metrics(eval_labels, reference[eval_rows].argmax(-1), names)
        metrics = {
            **(resolved.run_metrics or {}),
            **trimmed_metrics,
            "eval_size": len(eval_texts),
            "total_parameters": params_after,
            "trimmed_from": {
                "checkpoint": str(resolved.checkpoint.resolve()),
                **{k: source_metrics[k] for k in ("macro_f1", "micro_f1", "accuracy")},
            },
        }

        source_bytes = _size_of(resolved.checkpoint)
        trimmed_bytes = _size_of(checkpoint)
        record = {
            "format_version": TRIM_FORMAT_VERSION,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "source": resolved.to_json(),
            "tokenizer": {
                "family": family,
                "class": type(source_tokenizer).__name__,
                "vocab_before": backend.get_vocab_size(),
                "vocab_after": len(keep),
            },
            "embedding_rows": {"before": rows_before, "after": len(keep)},
            "parameters": {"before": params_before, "after": params_after},
            "checkpoint_bytes": {"before": source_bytes, "after": trimmed_bytes},
            "kept": {
                **{reason: len(ids) for reason, ids in reasons.items()},
                "total": len(keep),
                "single_characters_by_class": {k: len(v) for k, v in char_classes.items()},
            },
            "corpus": {**corpus_info, "distinct_tokens": len(reasons["corpus"])},
            "verification": {
                **report.to_json(),
                "data": data.to_json(),
                "split": "validation",
                "seed": seed,
                "max_length": max_length,
                "policy": {"min_agreement": config.min_agreement, "unchanged_tolerance": config.unchanged_tolerance},
            },
            "evaluation": {
                **eval_origin,
                "source": {k: source_metrics[k] for k in ("macro_f1", "micro_f1")},
                "trimmed": {k: trimmed_metrics[k] for k in ("macro_f1", "micro_f1")},
            },
            "kept_ids_file": KEPT_IDS_FILE,
            "seconds": round(time.perf_counter() - started, 1),
            "versions": _versions(),
        }
        (staging / KEPT_IDS_FILE).write_text(json.dumps(keep) + "\n", encoding="utf-8")
        write_json_atomic(staging / TRIM_FILE, record)
        if resolved.run_config is not None:
            write_json_atomic(staging / RUN_CONFIG_FILE, resolved.run_config)
        write_json_atomic(staging / METRICS_FILE, metrics)
        _move_into_place(staging, output)
    except BaseException:  # refused, failed or interrupted: leave nothing behind
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info(
        "accepted: %s (vocabulary %s -> %s, checkpoint %.1f -> %.1f MB)",
        output,
        f"{backend.get_vocab_size():,}",
        f"{len(keep):,}",
        source_bytes / 1e6,
        trimmed_bytes / 1e6,
    )
    return TrimResult(output=output, source=resolved, record=record, report=report)

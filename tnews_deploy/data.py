"""TNEWS data: loading from the hub or local files, seeded subsets, length statistics.

Owns everything between "a data source the user names" and "the datasets a
training run consumes":

* `load_tnews(source)` turns `clue/tnews` (the hub), a folder of HF-style JSONL
  (`train.jsonl`, `validation.jsonl`[, `test.jsonl`]) or a folder of the original
  CLUE files (`train.json`/`train.tsv`, `dev.json`, `test.json`, `labels.json`)
  into one `DatasetDict` with the same schema: `idx` (int), `label`
  (`ClassLabel` of the 15 TNEWS names; -1 on the unlabelled test split) and
  `sentence` (str).
* `make_splits(...)` draws the seeded training subsets, the evaluation set and a
  model-selection slice; evaluation and selection never overlap.
* `length_stats(...)` measures character and token lengths and suggests a
  `max_length`; `plot_length_histograms(...)` draws them.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

from .errors import ConfigError, DataError
from .labels import TNEWS_LABEL_NAMES, TNEWS_LABELS

HUB_DATASET = "clue/tnews"
SPLITS = ("train", "validation", "test")
ALL_TRAIN = "all"  # a training size: the whole train split (minus evaluation/selection sentences)


def tnews_features(label_names: Sequence[str] = TNEWS_LABEL_NAMES) -> Features:
    return Features(
        {
            "idx": Value("int32"),
            "label": ClassLabel(names=list(label_names)),
            "sentence": Value("string"),
        }
    )


# ----------------------------------------------------------------------------- loading


def load_tnews(source: str | Path = HUB_DATASET) -> DatasetDict:
    """Load TNEWS from the hub id `clue/tnews`, an HF-JSONL folder or a CLUE folder.

    Raises `DataError` with a message naming what is missing when the source is
    neither an existing folder of a known layout nor the hub id.
    """
    path = Path(source).expanduser()
    if path.is_dir():
        if (path / "train.jsonl").is_file() or (path / "validation.jsonl").is_file():
            return _load_hf_jsonl(path)
        if (path / "dev.json").is_file() or (path / "labels.json").is_file():
            return _load_clue(path)
        found = sorted(p.name for p in path.iterdir())[:10]
        raise DataError(
            f"{path}: not a TNEWS folder. Expected HF-style JSONL (train.jsonl, validation.jsonl"
            f"[, test.jsonl]) or the original CLUE files (train.json or train.tsv, dev.json, "
            f"test.json, labels.json); found {found or 'nothing'}."
        )
    if str(source) in (HUB_DATASET, "clue"):
        return _load_hub()
    if path.exists():
        raise DataError(f"{path}: is a file; --data takes a folder or the hub id {HUB_DATASET!r}.")
    raise DataError(
        f"{source}: no such folder. --data takes {HUB_DATASET!r} (the Hugging Face hub) or a "
        "local folder of HF-style JSONL or original CLUE files."
    )


def _load_hub() -> DatasetDict:
    from datasets import load_dataset

    try:
        dsd = load_dataset("clue", "tnews")
    except Exception as exc:  # network, auth, hub outage: all end the same for the user
        raise DataError(
            f"could not load {HUB_DATASET!r} from the Hugging Face hub ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}). Without network access, pass a local "
            "folder with --data (HF-style JSONL or the original CLUE files)."
        ) from exc
    return DatasetDict({name: split.cast(tnews_features()) for name, split in dsd.items()})


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    with path.open(encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{line_no}: invalid JSON ({exc.msg}).") from exc
    return rows


def _label_names_from(labels_json: Path) -> tuple[list[str], dict[str, int]]:
    """Names in file order and a code -> id map, from CLUE's labels.json."""
    names, code_to_id = [], {}
    for row in _read_jsonl(labels_json):
        try:
            code_to_id[str(row["label"])] = len(names)
            names.append(str(row["label_desc"]))
        except KeyError as exc:
            raise DataError(f"{labels_json}: every line needs 'label' and 'label_desc'.") from exc
    return names, code_to_id


def _load_hf_jsonl(folder: Path) -> DatasetDict:
    names = list(TNEWS_LABEL_NAMES)
    if (folder / "labels.json").is_file():
        names, _ = _label_names_from(folder / "labels.json")
    features = tnews_features(names)
    splits = {}
    for split in SPLITS:
        file = folder / f"{split}.jsonl"
        if not file.is_file():
            continue
        rows = _read_jsonl(file)
        for i, row in enumerate(rows):
            if "sentence" not in row or "label" not in row:
                raise DataError(f"{file}:{i + 1}: each line needs 'sentence' and 'label'.")
            label = int(row["label"])
            if not -1 <= label < len(names):
                raise DataError(f"{file}:{i + 1}: label {label} is outside 0..{len(names) - 1}.")
        splits[split] = Dataset.from_dict(
            {
                "idx": [int(r.get("idx", i)) for i, r in enumerate(rows)],
                "label": [int(r["label"]) for r in rows],
                "sentence": [str(r["sentence"]) for r in rows],
            },
            features=features,
        )
    _require_train_and_validation(folder, splits, "train.jsonl", "validation.jsonl")
    return DatasetDict(splits)


def _load_clue(folder: Path) -> DatasetDict:
    labels_json = folder / "labels.json"
    if labels_json.is_file():
        names, code_to_id = _label_names_from(labels_json)
    else:
        names = list(TNEWS_LABEL_NAMES)
        code_to_id = {code: i for i, (code, _) in enumerate(TNEWS_LABELS)}
    name_to_id = {name: i for i, name in enumerate(names)}
    features = tnews_features(names)

    def label_of(row: dict[str, Any], where: str) -> int:
        if "label" in row and str(row["label"]) in code_to_id:
            return code_to_id[str(row["label"])]
        if "label_desc" in row and row["label_desc"] in name_to_id:
            return name_to_id[row["label_desc"]]
        if "label" not in row and "label_desc" not in row:
            return -1  # the unlabelled test split
        raise DataError(f"{where}: unknown label {row.get('label', row.get('label_desc'))!r}.")

    def from_json(file: Path) -> Dataset:
        rows = _read_jsonl(file)
        return Dataset.from_dict(
            {
                "idx": [int(r.get("id", i)) for i, r in enumerate(rows)],
                "label": [label_of(r, f"{file}:{i + 1}") for i, r in enumerate(rows)],
                "sentence": [str(r["sentence"]) for r in rows],
            },
            features=features,
        )

    def from_tsv(file: Path) -> Dataset:
        sentences, labels = [], []
        with file.open(encoding="utf-8") as fh:
            for line_no, line in enumerate(fh, 1):
                line = line.rstrip("\n")
                if not line:
                    continue
                sentence, sep, desc = line.rpartition("\t")
                if not sep or desc not in name_to_id:
                    raise DataError(f"{file}:{line_no}: expected 'sentence<TAB>label_desc'.")
                sentences.append(sentence)
                labels.append(name_to_id[desc])
        return Dataset.from_dict(
            {"idx": list(range(len(sentences))), "label": labels, "sentence": sentences},
            features=features,
        )

    splits: dict[str, Dataset] = {}
    if (folder / "train.json").is_file():
        splits["train"] = from_json(folder / "train.json")
    elif (folder / "train.tsv").is_file():
        splits["train"] = from_tsv(folder / "train.tsv")
    if (folder / "dev.json").is_file():
        splits["validation"] = from_json(folder / "dev.json")
    if (folder / "test.json").is_file():
        splits["test"] = from_json(folder / "test.json")
    _require_train_and_validation(folder, splits, "train.json (or train.tsv)", "dev.json")
    return DatasetDict(splits)


def _require_train_and_validation(folder: Path, splits: dict, train: str, validation: str) -> None:
    missing = [name for key, name in (("train", train), ("validation", validation)) if key not in splits]
    if missing:
        raise DataError(f"{folder}: missing {', '.join(missing)}.")


# ----------------------------------------------------------------------------- subsets


@dataclass(frozen=True)
class SplitConfig:
    """How the evaluation set, selection slice and training subsets are drawn."""

    train_sizes: tuple[int | str, ...] = (500, 1000, 5000)  # ALL_TRAIN: the whole split (see make_splits)
    eval_size: int = 2000
    selection_size: int = 1000
    seed: int = 42  # draws the evaluation set and selection slice (and the subsets, unless train_seed)
    stratify: bool = True
    # Drop training sentences whose text also occurs in the evaluation set
    # (924 sentences occur in both TNEWS train and validation).
    exclude_eval_overlap: bool = True
    # Draws the training subsets; None = `seed`. Runs of one study with several
    # seeds share `seed` (the same evaluation set) and differ in `train_seed`.
    train_seed: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "train_sizes", tuple(self.train_sizes))
        bad = [n for n in self.train_sizes if n != ALL_TRAIN and (not isinstance(n, int) or n <= 0)]
        if bad:
            raise ConfigError(f"--train-size must be positive (got {bad[0]}).")
        if self.eval_size <= 0:
            raise ConfigError(f"--eval-size must be positive (got {self.eval_size}).")
        if self.selection_size < 0:
            raise ConfigError(f"--selection-size must be >= 0 (got {self.selection_size}).")


@dataclass
class TnewsSplits:
    """The datasets one grid works with."""

    train: dict[int | str, Dataset]  # size (or ALL_TRAIN) -> subset
    evaluation: Dataset
    selection: Dataset
    label_names: list[str] = field(default_factory=list)


def _sample_indices(labels: np.ndarray, size: int, seed: int, stratify: bool) -> np.ndarray:
    """`size` indices into `labels`, seeded; class-proportional when `stratify`."""
    if size == len(labels):
        return np.random.default_rng(seed).permutation(len(labels))
    if not stratify:
        return np.random.default_rng(seed).choice(len(labels), size=size, replace=False)
    from sklearn.model_selection import train_test_split

    counts = np.bincount(labels)
    if (counts[counts > 0] < 2).any():  # sklearn needs two of every class to stratify
        return np.random.default_rng(seed).choice(len(labels), size=size, replace=False)
    chosen, _ = train_test_split(
        np.arange(len(labels)), train_size=size, stratify=labels, random_state=seed
    )
    return np.asarray(chosen)


def make_splits(dsd: DatasetDict, config: SplitConfig = SplitConfig()) -> TnewsSplits:
    """Seeded training subsets, evaluation set and selection slice.

    The evaluation set and the selection slice are disjoint draws from
    validation (seed `config.seed`); each training subset is an independent
    draw from train (seed `config.train_seed`, else `config.seed`). The size
    `ALL_TRAIN` ("all") is the whole train split minus every sentence whose text
    is in the evaluation set or the selection slice.
    """
    if "train" not in dsd or "validation" not in dsd:
        raise DataError("the dataset needs 'train' and 'validation' splits.")
    train, validation = dsd["train"], dsd["validation"]
    if config.eval_size + config.selection_size > len(validation):
        raise ConfigError(
            f"eval size {config.eval_size} + selection size {config.selection_size} exceed the "
            f"{len(validation)} validation sentences; lower --eval-size or --selection-size."
        )
    val_labels = np.asarray(validation["label"])
    order = _sample_indices(val_labels, config.eval_size, config.seed, config.stratify)
    eval_idx = np.sort(order)
    rest = np.setdiff1d(np.arange(len(validation)), eval_idx)
    if config.selection_size:
        pick = _sample_indices(val_labels[rest], config.selection_size, config.seed + 1, config.stratify)
        sel_idx = np.sort(rest[pick])
    else:
        sel_idx = np.array([], dtype=int)
    evaluation = validation.select(eval_idx)
    selection = validation.select(sel_idx)

    pool = np.arange(len(train))
    if config.exclude_eval_overlap:
        eval_texts = set(evaluation["sentence"])
        pool = np.array([i for i, s in enumerate(train["sentence"]) if s not in eval_texts])
    train_labels = np.asarray(train["label"])[pool]
    subset_seed = config.seed if config.train_seed is None else config.train_seed
    subsets: dict[int | str, Dataset] = {}
    for size in config.train_sizes:
        if size == ALL_TRAIN:  # the whole split, minus sentences of the evaluation set and selection slice
            held_out = set(evaluation["sentence"]) | set(selection["sentence"])
            subsets[size] = train.select([i for i, s in enumerate(train["sentence"]) if s not in held_out])
            continue
        if size > len(pool):
            raise ConfigError(
                f"train size {size} is larger than the {len(pool)} training sentences available; "
                "lower --train-size."
            )
        picked = pool[_sample_indices(train_labels, size, subset_seed, config.stratify)]
        subsets[size] = train.select(np.sort(picked))
    names = list(train.features["label"].names)
    return TnewsSplits(train=subsets, evaluation=evaluation, selection=selection, label_names=names)


def evaluation_split(
    dsd: DatasetDict,
    eval_size: int = SplitConfig.eval_size,
    seed: int = SplitConfig.seed,
    stratify: bool = SplitConfig.stratify,
) -> Dataset:
    """The evaluation set `make_splits` draws for these settings (it does not depend on the other sizes)."""
    config = SplitConfig(train_sizes=(), eval_size=eval_size, selection_size=0, seed=seed, stratify=stratify)
    return make_splits(dsd, config).evaluation


# ----------------------------------------------------------------------------- lengths


PERCENTILES = (50, 90, 95, 99, 100)


@dataclass
class LengthStats:
    """Sentence lengths in characters and tokens, and the max_length they suggest."""

    char_lengths: list[int]
    token_lengths: list[int]
    char_percentiles: dict[str, float]
    token_percentiles: dict[str, float]
    suggested_max_length: int
    truncated_share: float  # share of sentences longer than suggested_max_length tokens
    class_counts: dict[str, dict[str, int]]

    def to_json(self) -> dict[str, Any]:
        return {
            "sentences": len(self.char_lengths),
            "char_percentiles": self.char_percentiles,
            "token_percentiles": self.token_percentiles,
            "suggested_max_length": self.suggested_max_length,
            "truncated_share": self.truncated_share,
            "class_counts": self.class_counts,
        }


def suggest_max_length(token_lengths: Iterable[int], percentile: float = 99.0, multiple: int = 8) -> int:
    """The `percentile` of token lengths (special tokens included), rounded up to `multiple`.

    Rounding to a multiple of 8 keeps padded shapes friendly to vectorised kernels.
    """
    value = float(np.percentile(np.fromiter(token_lengths, dtype=float), percentile))
    return max(multiple, int(math.ceil(value / multiple) * multiple))


def length_stats(dsd: DatasetDict, tokenizer: Any, split: str = "train", percentile: float = 99.0) -> LengthStats:
    """Character and token lengths of `split`, plus class counts of every split."""
    sentences = list(dsd[split]["sentence"])
    char_lengths = [len(s) for s in sentences]
    encoded = tokenizer(sentences, add_special_tokens=True, truncation=False)["input_ids"]
    token_lengths = [len(ids) for ids in encoded]
    suggested = suggest_max_length(token_lengths, percentile)
    names = dsd[split].features["label"].names
    class_counts = {}
    for name, ds in dsd.items():
        counts = Counter(list(ds["label"]))
        class_counts[name] = {names[i]: counts.get(i, 0) for i in range(len(names))}
        if counts.get(-1):
            class_counts[name]["(unlabelled)"] = counts[-1]
    return LengthStats(
        char_lengths=char_lengths,
        token_lengths=token_lengths,
        char_percentiles={f"p{p}": float(np.percentile(char_lengths, p)) for p in PERCENTILES},
        token_percentiles={f"p{p}": float(np.percentile(token_lengths, p)) for p in PERCENTILES},
        suggested_max_length=suggested,
        truncated_share=float(np.mean(np.asarray(token_lengths) > suggested)),
        class_counts=class_counts,
    )


def plot_length_histograms(stats: LengthStats, path: Path) -> Path:
    """Two histograms (characters, tokens) with percentile markers, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, lengths, pct, unit in (
        (axes[0], stats.char_lengths, stats.char_percentiles, "characters"),
        (axes[1], stats.token_lengths, stats.token_percentiles, "tokens (with [CLS]/[SEP])"),
    ):
        ax.hist(lengths, bins=range(0, max(lengths) + 2), color="#4c72b0")
        for key, style in (("p50", ":"), ("p95", "--"), ("p99", "-")):
            ax.axvline(pct[key], color="#c44e52", linestyle=style, label=f"{key} = {pct[key]:.0f}")
        ax.set_xlabel(f"sentence length in {unit}")
        ax.set_ylabel("sentences")
        ax.legend()
    axes[1].axvline(
        stats.suggested_max_length, color="black", linewidth=2,
        label=f"suggested max_length = {stats.suggested_max_length}",
    )
    axes[1].legend()
    fig.suptitle(f"TNEWS sentence lengths ({len(stats.char_lengths):,} sentences)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

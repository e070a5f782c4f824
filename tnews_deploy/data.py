"""Labelled data: loading from the hub or local files, seeded subsets, length statistics.

Owns everything between "a data source the user names" (a `tnews_deploy.datasource.DataSource`) and "the
datasets a training run consumes":

* `load_data(source)` turns `clue/tnews` (the hub, the default), any hub dataset with a config, a folder of
  HF-style JSONL (`train.jsonl`, `validation.jsonl`[, `test.jsonl`]), a folder of the original CLUE files
  (`train.json`/`train.tsv`, `dev.json`, `test.json`, `labels.json`), or a file, glob or folder of
  `.csv`/`.tsv`/`.jsonl`/`.parquet` files (read by `datasets`' own loaders) into one `DatasetDict` with
  the same schema: `idx` (int), `label` (`ClassLabel` of the class names; -1 on an unlabelled test split)
  and `sentence` (str, whatever the text column was called). Labels are integers (named by a names file)
  or strings (their sorted set); data without a validation split gets a seeded, stratified holdout from
  train. Bad rows are reported with their file and line.
* `make_splits(...)` draws the seeded training subsets, the evaluation set and a
  model-selection slice; evaluation and selection never overlap.
* `length_stats(...)` measures character and token lengths and suggests a
  `max_length`; `plot_length_histograms(...)` draws them.
"""

from __future__ import annotations

import csv
import glob
import itertools
import json
import logging
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

from .datasource import DEFAULT_DATA, DEFAULT_TEXT_FIELDS, DataSource
from .defaults import EVAL_SIZE, SELECTION_SIZE
from .errors import ConfigError, DataError
from .formats import DATA
from .labels import TNEWS_LABEL_NAMES, TNEWS_LABELS

logger = logging.getLogger(__name__)

HUB_DATASET = DEFAULT_DATA
SPLITS = ("train", "validation", "test")
ALL_TRAIN = "all"  # a training size: the whole train split (minus evaluation/selection sentences)
# In clue/tnews's layout, rows labelled outside 0..14 up to this share of train are mistakes, not more classes.
STRAY_LABEL_SHARE = 0.01


def tnews_features(label_names: Sequence[str] = TNEWS_LABEL_NAMES) -> Features:
    return Features(
        {
            "idx": Value("int32"),
            "label": ClassLabel(names=list(label_names)),
            "sentence": Value("string"),
        }
    )


# ----------------------------------------------------------------------------- loading

DATA_SUFFIXES: dict[str, str] = DATA.suffixes  # suffix -> format (`tnews_deploy.formats`)
# The reader of each format `--data` takes: `datasets`' loader ("tsv": its CSV loader with a tab separator).
DATA_LOADERS: dict[str, str] = {"csv": "csv", "tsv": "tsv", "jsonl": "json", "parquet": "parquet"}
SPLIT_FILE_NAMES: dict[str, tuple[str, ...]] = {
    "train": ("train",),
    "validation": ("validation", "dev", "valid", "val"),
    "test": ("test",),
}
GLOB_CHARS = "*?["


@dataclass
class _Rows:
    """One file's (or one hub split's) texts and raw label values, before labels become ids."""

    where: str  # the file (or hub split) for messages
    texts: list[Any]
    labels: list[Any] | None  # None: no label column (an unlabelled test split)
    ids: list[int]
    line: Any  # row index -> "file:line" for messages
    text_field: str = "sentence"
    label_field: str = "label"


def load_data(source: DataSource | str | Path | dict[str, Any] = HUB_DATASET) -> DatasetDict:
    """Load a labelled data set into the toolkit's schema: `idx`, `label` (`ClassLabel`), `sentence`.

    Args:
        source: a `DataSource`, or what one is read from (a path or hub id string, a recorded dict):
            `clue/tnews` (the hub), any hub id (with `config`), a folder of HF-style JSONL or original CLUE
            files, or a file, glob or folder of `.csv`/`.tsv`/`.jsonl`/`.parquet` files. In a folder or glob,
            files named `train*`, `validation*`/`dev*`/`valid*`/`val*` and `test*` are those splits; without a
            `train*` file every file is training data.

    Returns:
        `train` and `validation` (held out of train, seeded and stratified, when the data has none) and
        `test` when present. Labels are ids into the `ClassLabel` names: the names file's, the run's recorded
        `label_names`, a hub `ClassLabel`'s, the sorted set of string labels, or the integers themselves.

    Raises:
        DataError: naming the file and line of a missing field, an empty text or a label absent from the names;
            naming the class when one is too small to hold out a validation split.
    """
    src = DataSource.coerce(source)
    path = Path(src.path).expanduser()
    if path.is_dir() and _is_clue_folder(path):
        return _load_clue(path, src)
    if path.is_dir() or path.is_file() or any(ch in src.path for ch in GLOB_CHARS):
        splits = {
            split: [_read_file(file, src, split) for file in files] for split, files in _split_files(src, path).items()
        }
        beside = path if path.is_dir() else None
        return _assemble(splits, src, names_beside=beside, tnews_default=path.is_dir() and _has_split_jsonl(path))
    if src.path in (HUB_DATASET, "clue") and src.config in (None, "tnews"):
        return _load_tnews_hub()
    if _looks_like_hub_id(src.path):
        return _load_hub(src)
    raise DataError(
        f"{src.path}: no such file or folder. --data takes {HUB_DATASET!r} or another hub id, a folder (HF-style "
        f"JSONL, original CLUE files, or {DATA.listed()} files), a file or a glob of such files."
    )


load_tnews = load_data  # the name earlier versions used


def _is_clue_folder(folder: Path) -> bool:
    """The original CLUE layout: dev.json / train.json, or CLUE's header-less train.tsv beside labels.json."""
    if _has_split_jsonl(folder):
        return False
    return (
        (folder / "dev.json").is_file()
        or (folder / "train.json").is_file()
        or ((folder / "train.tsv").is_file() and (folder / "labels.json").is_file())
    )


def _has_split_jsonl(folder: Path) -> bool:
    return (folder / "train.jsonl").is_file() or (folder / "validation.jsonl").is_file()


def _looks_like_hub_id(value: str) -> bool:
    return (
        bool(re.fullmatch(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?", value)) and Path(value).suffix.lower() not in DATA_SUFFIXES
    )


def _split_of(file: Path) -> str | None:
    stem = file.name.lower().split(".")[0]
    for split, names in SPLIT_FILE_NAMES.items():
        if any(stem == n or stem.startswith((n + "-", n + "_")) for n in names):
            return split
    return None


def _split_files(src: DataSource, path: Path) -> dict[str, list[Path]]:
    """Data files per split: a single file is the training data; a folder or glob splits by file name."""
    if path.is_file():
        if path.suffix.lower() not in DATA_SUFFIXES:
            raise DataError(
                f"{path}: not a data file; --data takes {DATA.listed(', ', ' or ')} files "
                "(or a folder or glob of them)."
            )
        return {"train": [path]}
    if path.is_dir():
        files = sorted(
            p for p in path.iterdir() if p.is_file() and p.suffix.lower() in DATA_SUFFIXES and p.name != "labels.json"
        )
        if not files:
            found = sorted(p.name for p in path.iterdir())[:10]
            raise DataError(
                f"{path}: no data files. Expected HF-style JSONL (train.jsonl, validation.jsonl[, test.jsonl]), "
                f"the original CLUE files (train.json or train.tsv, dev.json, test.json, labels.json) or "
                f"{DATA.listed()} files; found {found or 'nothing'}."
            )
    else:
        files = sorted(Path(p) for p in glob.glob(str(path)) if Path(p).suffix.lower() in DATA_SUFFIXES)
        if not files:
            raise DataError(f"{src.path}: the pattern matches no {DATA.listed()} file.")
    named: dict[str, list[Path]] = {}
    for file in files:
        split = _split_of(file)
        if split:
            named.setdefault(split, []).append(file)
    if "train" not in named:
        if "validation" in named:
            raise DataError(f"{path}: has a validation file ({named['validation'][0].name}) but no train file.")
        return {"train": files}
    ignored = [f.name for f in files if _split_of(f) is None]
    if ignored:
        logger.warning("%s: ignoring %s (not named train/validation/dev/test)", path, ", ".join(ignored))
    return named


def _loader_of(file: Path) -> str:
    """The `datasets` loader (csv, tsv, json, parquet) of a data file, by its format.

    Raises:
        DataError: a suffix `--data` does not take, or a format with no loader here (never read as CSV).
    """
    fmt = DATA.format_of(file)
    if fmt is None or fmt not in DATA_LOADERS:
        what = f"no reader for {fmt} files" if fmt else f"cannot read a '{file.suffix or 'suffix-less'}' file"
        raise DataError(
            f"{file}: {what}; --data takes {DATA.listed(', ', ' or ')} files (or a folder or glob of them)."
        )
    return DATA_LOADERS[fmt]


def _read_file(file: Path, src: DataSource, split: str) -> _Rows:
    """One data file through `datasets`' own loader, with its text and label columns picked out."""
    from datasets import load_dataset

    kind = _loader_of(file)
    options: dict[str, Any] = {}
    if kind in ("csv", "tsv"):
        # Keep texts as written: no "NA" -> NaN; TSV has no quoting.
        options = dict(keep_default_na=False, na_filter=False)
        if kind == "tsv":
            options.update(sep="\t", quoting=csv.QUOTE_NONE)
    import datasets as hf_datasets

    silence = not hf_datasets.are_progress_bars_disabled()
    if silence:
        hf_datasets.disable_progress_bars()
    try:
        dataset = load_dataset("csv" if kind == "tsv" else kind, data_files=[str(file)], split="train", **options)
    except Exception as exc:  # datasets wraps pandas/pyarrow errors; find the line ourselves where we can
        raise DataError(_read_error(file, kind, exc)) from exc
    finally:
        if silence:
            hf_datasets.enable_progress_bars()
    columns = dataset.column_names
    text_field = src.text_field or next((f for f in DEFAULT_TEXT_FIELDS if f in columns), None)
    if text_field not in columns:
        wanted = repr(src.text_field) if src.text_field else " or ".join(map(repr, DEFAULT_TEXT_FIELDS))
        raise DataError(f"{file}: no text column {wanted}; its columns are {columns}. Pass --text-field.")
    labels = None
    if src.label_field in columns:
        labels = list(dataset[src.label_field])
        if str(getattr(dataset.features[src.label_field], "dtype", "")).startswith("float"):
            # One non-integer label turns the loader's whole column into floats (7 -> 7.0): the labels as
            # written, so that the message names the row that is not an integer.
            labels = _labels_as_written(file, kind, src.label_field, len(labels)) or labels
    elif split != "test":
        raise DataError(f"{file}: no label column {src.label_field!r}; its columns are {columns}. Pass --label-field.")
    ids = list(dataset["idx"]) if "idx" in columns and dataset.features["idx"].dtype.startswith("int") else None
    return _Rows(
        where=str(file),
        texts=list(dataset[text_field]),
        labels=labels,
        ids=ids or list(range(len(dataset))),
        line=_line_numbers(file, kind),
        text_field=text_field,
        label_field=src.label_field,
    )


def _labels_as_written(file: Path, kind: str, label_field: str, rows: int) -> list[Any] | None:
    """A numeric label column as written in a JSONL/CSV/TSV file (ints stay ints); None if it cannot be told."""
    values: list[Any] = []
    with file.open(encoding="utf-8", errors="replace", newline="") as fh:
        if kind == "json":
            try:
                values = [json.loads(line).get(label_field) for line in fh if line.strip()]
            except (json.JSONDecodeError, AttributeError):  # a JSON array or another layout: not JSON lines
                return None
        elif kind in ("csv", "tsv"):
            reader = csv.reader(
                fh,
                delimiter="\t" if kind == "tsv" else ",",
                quoting=csv.QUOTE_NONE if kind == "tsv" else csv.QUOTE_MINIMAL,
            )
            records = [record for record in reader if record]
            if not records or label_field not in records[0]:
                return None
            column = records[0].index(label_field)
            cells = [record[column].strip() if column < len(record) else "" for record in records[1:]]
            try:
                values = [int(cell) if re.fullmatch(r"[+-]?\d+", cell) else float(cell) for cell in cells]
            except ValueError:
                return None
    return values if len(values) == rows else None


def _read_error(file: Path, kind: str, exc: Exception) -> str:
    if kind == "json":
        with file.open(encoding="utf-8-sig", errors="replace") as fh:
            for line_no, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    json.loads(line)
                except json.JSONDecodeError as bad:
                    return f"{file}:{line_no}: invalid JSON ({bad.msg})."
    cause = exc
    while cause.__cause__ is not None or cause.__context__ is not None:
        cause = cause.__cause__ or cause.__context__
    message = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
    return f"{file}: cannot be read as {kind.upper()} ({message})."


def _line_numbers(file: Path, kind: str):
    """row index -> "file:line" (or "file: row N" for Parquet), computed only when a message needs it."""
    cache: list[int] = []

    def line(row: int) -> str:
        if kind == "parquet":
            return f"{file}: row {row + 1}"
        if not cache:
            with file.open(encoding="utf-8", errors="replace", newline="") as fh:
                if kind == "json":
                    cache.extend(n for n, text in enumerate(fh, 1) if text.strip())
                else:  # the line each CSV record starts on (quoted fields may span lines), header skipped
                    reader = csv.reader(
                        fh,
                        delimiter="\t" if kind == "tsv" else ",",
                        quoting=csv.QUOTE_NONE if kind == "tsv" else csv.QUOTE_MINIMAL,
                    )
                    end = 0
                    for record in reader:
                        start, end = end + 1, reader.line_num
                        if record:
                            cache.append(start)
                    del cache[:1]
        return f"{file}:{cache[row]}" if row < len(cache) else f"{file}: row {row + 1}"

    return line


def _hub_dataset(repo: str, config: str | None, what: str, instead: str) -> DatasetDict:
    """`load_dataset(repo, config)`, refused at once when the hub cannot deliver it (`hub.unavailable`) instead of
    after datasets' retries; any failure is a DataError naming `what` and saying what to pass `instead`."""
    from datasets import load_dataset

    from .hub import unavailable

    reason, cause = unavailable(repo, "dataset"), None
    if reason is None:
        try:
            return load_dataset(repo, config)
        except Exception as exc:  # network, auth, hub outage: all end the same for the user
            reason, cause = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", exc
    raise DataError(
        f"could not load {what} from the Hugging Face hub ({reason}). Without network access, "
        f"pass {instead} with --data."
    ) from cause


def _load_tnews_hub() -> DatasetDict:
    dsd = _hub_dataset("clue", "tnews", repr(HUB_DATASET), "a local folder (HF-style JSONL or the original CLUE files)")
    return DatasetDict({name: split.cast(tnews_features()) for name, split in dsd.items()})


def _load_hub(src: DataSource) -> DatasetDict:
    """Any hub dataset (with `src.config`): its splits through the same label and holdout rules as files."""
    from datasets import ClassLabel as HubClassLabel

    dsd = _hub_dataset(
        src.path, src.config, repr(src.path) + (f" (config {src.config!r})" if src.config else ""), "local files"
    )
    aliases = {n: split for split, names in SPLIT_FILE_NAMES.items() for n in names}
    splits: dict[str, list[_Rows]] = {}
    hub_names: list[str] | None = None
    for name, dataset in dsd.items():
        split = aliases.get(name)
        if split is None:
            continue
        columns = dataset.column_names
        text_field = src.text_field or next((f for f in DEFAULT_TEXT_FIELDS if f in columns), None)
        where = f"{src.path}[{name}]"
        if text_field not in columns:
            raise DataError(
                f"{where}: no text column {src.text_field or 'sentence or text'!r}; its columns are "
                f"{columns}. Pass --text-field."
            )
        labels = list(dataset[src.label_field]) if src.label_field in columns else None
        if labels is None and split != "test":
            raise DataError(
                f"{where}: no label column {src.label_field!r}; its columns are {columns}. Pass --label-field."
            )
        feature = dataset.features.get(src.label_field)
        if isinstance(feature, HubClassLabel):
            hub_names = list(feature.names)
        splits[split] = [
            _Rows(
                where=where,
                texts=list(dataset[text_field]),
                labels=labels,
                ids=list(range(len(dataset))),
                line=lambda row, where=where: f"{where} row {row + 1}",
                text_field=text_field,
                label_field=src.label_field,
            )
        ]
    if "train" not in splits:
        raise DataError(f"{src.path}: has no train split (it has {', '.join(dsd)}).")
    return _assemble(splits, src, hub_names=hub_names)


def read_label_names(file: Path) -> tuple[list[str], dict[str, int]]:
    """Class names in file order and a code -> id map from a names file.

    Args:
        file: one name a line, or CLUE's `labels.json` (JSON lines with `label` codes and `label_desc` names).
    """
    if not file.is_file():
        raise DataError(f"{file}: no such names file (--labels takes one class name a line, or CLUE's labels.json).")
    lines = [
        (n, line.strip()) for n, line in enumerate(file.read_text(encoding="utf-8-sig").splitlines(), 1) if line.strip()
    ]
    names: list[str] = []
    codes: dict[str, int] = {}
    if lines and lines[0][1].startswith("{"):
        for line_no, line in lines:
            try:
                row = json.loads(line)
                codes[str(row["label"])] = len(names)
                names.append(str(row["label_desc"]))
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise DataError(
                    f"{file}:{line_no}: expected a JSON object with 'label' and 'label_desc' (CLUE's labels.json)."
                ) from exc
    else:
        names = [line for _, line in lines]
    seen: dict[str, int] = {}
    for (line_no, _), name in zip(lines, names):
        if name in seen:
            raise DataError(f"{file}:{line_no}: class {name!r} repeats line {seen[name]}.")
        seen[name] = line_no
    if len(names) < 2:
        raise DataError(f"{file}: names {len(names)} class(es); a classifier needs at least 2.")
    return names, codes


def _assemble(
    splits: dict[str, list[_Rows]],
    src: DataSource,
    *,
    names_beside: Path | None = None,
    tnews_default: bool = False,
    hub_names: list[str] | None = None,
) -> DatasetDict:
    """Raw rows -> validated `DatasetDict`: texts checked, labels mapped to ids, validation held out if absent."""
    names: list[str] | None = None
    codes: dict[str, int] = {}
    names_from = ""
    if src.label_names:
        names, names_from = list(src.label_names), "the run's recorded classes"
    elif src.labels:
        names, codes = read_label_names(Path(src.labels).expanduser())
        names_from = f"the names file {src.labels}"
    elif names_beside is not None and (names_beside / "labels.json").is_file():
        names, codes = read_label_names(names_beside / "labels.json")
        names_from = f"the names file {names_beside / 'labels.json'}"
    elif hub_names:
        names, names_from = hub_names, "the hub dataset's class names"

    for parts in splits.values():
        for rows in parts:
            _check_texts(rows)
    kind = _label_kind([rows for parts in splits.values() for rows in parts])
    if names is None:
        train_labels = [v for rows in splits["train"] for v in rows.labels or [] if v != -1]
        if kind == "int":
            top = max(train_labels, default=-1)
            if tnews_default:
                _refuse_stray_tnews_labels(splits["train"])
            if tnews_default and top == len(TNEWS_LABEL_NAMES) - 1:
                names, names_from = list(TNEWS_LABEL_NAMES), "the TNEWS classes"
            else:
                names, names_from = [str(i) for i in range(top + 1)], "the training data's integer labels"
                logger.info(
                    "integer labels without a names file: the classes are named 0..%d (pass --labels "
                    "FILE to name them)",
                    top,
                )
                _warn_unused_ids(splits["train"], train_labels, top)
        else:
            names, names_from = sorted(set(train_labels)), "the training data"
        if len(names) < 2:
            raise DataError(
                f"{splits['train'][0].where}: the training data has {len(names)} class(es); a "
                "classifier needs at least 2."
            )
    name_to_id = {name: i for i, name in enumerate(names)}

    def label_id(rows: _Rows, row: int, value: Any, split: str) -> int:
        if value == -1 and split == "test":
            return -1
        if isinstance(value, str):
            if value in name_to_id:
                return name_to_id[value]
            if value in codes:
                return codes[value]
        elif isinstance(value, int):
            if str(value) in codes:
                return codes[str(value)]
            if 0 <= value < len(names) and names_from != "the training data":
                return value
        shown = ", ".join(names[:8]) + (", …" if len(names) > 8 else "")
        if names_from == "the training data":
            raise DataError(
                f"{rows.line(row)}: label {value!r} does not occur in the training data "
                f"({len(names)} classes: {shown})."
            )
        expected = f"0..{len(names) - 1} or " if kind == "int" else ""
        raise DataError(
            f"{rows.line(row)}: label {value!r} is not in {names_from} "
            f"(expected {expected}one of {len(names)} classes: {shown})."
        )

    built: dict[str, dict[str, list]] = {}
    for split, parts in splits.items():
        out: dict[str, list] = {"idx": [], "label": [], "sentence": [], "where": []}
        for rows in parts:
            for i, text in enumerate(rows.texts):
                out["idx"].append(int(rows.ids[i]))
                out["sentence"].append(str(text))
                out["label"].append(-1 if rows.labels is None else label_id(rows, i, rows.labels[i], split))
                out["where"].append((rows, i))
        built[split] = out
    if "validation" not in built:
        built["train"], built["validation"] = _hold_out(built["train"], names, src)
    features = tnews_features(names)
    return DatasetDict(
        {
            split: Dataset.from_dict({k: v for k, v in columns.items() if k != "where"}, features=features)
            for split, columns in sorted(built.items(), key=lambda kv: SPLITS.index(kv[0]))
        }
    )


def _first_row(parts: list[_Rows], wanted: Any) -> tuple[str, Any]:
    """("file:line", label) of the first row whose label satisfies `wanted`."""
    return next((rows.line(i), v) for rows in parts for i, v in enumerate(rows.labels or []) if wanted(v))


def _refuse_stray_tnews_labels(train: list[_Rows]) -> None:
    """In clue/tnews's layout, labels that are TNEWS's 0..14 but for a few rows: those rows are mistakes.

    Numbering the classes by the largest label would turn TNEWS's 15 named classes into 16 (or 100) numbered
    ones, most without an example. Data that has more classes (more than a stray share of its rows outside
    0..14, or not every TNEWS class) is the user's own and keeps integer names.
    """
    n = len(TNEWS_LABEL_NAMES)
    counts = Counter(v for rows in train for v in rows.labels or [] if v != -1)
    outside = sum(c for v, c in counts.items() if not 0 <= v < n)
    if not outside or outside > STRAY_LABEL_SHARE * sum(counts.values()) or any(counts[i] == 0 for i in range(n)):
        return
    where, value = _first_row(train, lambda v: v != -1 and not 0 <= v < n)
    raise DataError(
        f"{where}: label {value} is outside the TNEWS classes 0..{n - 1} ({outside} row(s) outside them, in a "
        f"folder laid out like clue/tnews). Fix or remove the row(s); if the data really has more classes, "
        f"pass --labels FILE naming every class (one a line, line 1 = id 0)."
    )


def _warn_unused_ids(train: list[_Rows], labels: list[int], top: int) -> None:
    """Integer labels name the classes 0..top: say so when some ids have no training example (a stray label far
    above the rest makes most of them empty classes)."""
    used = set(labels)
    unused = [i for i in range(top + 1) if i not in used]
    if not unused:
        return
    shown = ", ".join(map(str, unused[:5])) + (", …" if len(unused) > 5 else "")
    logger.warning(
        "%s: label %d makes the classes 0..%d, but %d of the %d have no training example (%s); a typo? "
        "Fix the row, or pass --labels FILE to name the classes.",
        _first_row(train, lambda v: v == top)[0],
        top,
        top,
        len(unused),
        top + 1,
        shown,
    )


def _check_texts(rows: _Rows) -> None:
    for i, text in enumerate(rows.texts):
        if text is None:
            raise DataError(f"{rows.line(i)}: no text: {rows.text_field!r} is missing or null.")
        if isinstance(text, str) and not text.strip():
            raise DataError(f"{rows.line(i)}: empty text in {rows.text_field!r}; every row needs a non-empty text.")
        if isinstance(text, (list, dict)):
            raise DataError(
                f"{rows.line(i)}: the text in {rows.text_field!r} is a {type(text).__name__}, not a string."
            )
        if rows.labels is not None and rows.labels[i] is None:
            raise DataError(
                f"{rows.line(i)}: no label: {rows.label_field!r} is missing or null; every training "
                "and validation row needs one."
            )


def _label_kind(parts: list[_Rows]) -> str:
    """'int' or 'str': all labels must be integers, or all strings (checked row by row)."""
    kind = None
    for rows in parts:
        for i, value in enumerate(rows.labels or []):
            this = (
                "int"
                if isinstance(value, int) and not isinstance(value, bool)
                else "str"
                if isinstance(value, str)
                else None
            )
            if this is None:
                raise DataError(
                    f"{rows.line(i)}: label {value!r} is neither an integer nor a string; write class "
                    "ids as integers (3, not 3.0) or class names as strings."
                )
            if this == "str" and not value.strip():
                raise DataError(f"{rows.line(i)}: empty label; every training and validation row needs one.")
            if kind is None:
                kind = this
            elif this != kind:
                raise DataError(
                    f"{rows.line(i)}: label {value!r} is {'an integer' if this == 'int' else 'a string'} "
                    f"but earlier labels are {'integers' if kind == 'int' else 'strings'}; use one kind."
                )
    return kind or "str"


def _held_out_count(size: int, fraction: float) -> int:
    return math.floor(size * fraction + 0.5)  # half up, not Python's round-half-to-even


def _hold_out(train: dict[str, list], names: list[str], src: DataSource) -> tuple[dict, dict]:
    """A seeded, stratified validation split held out of `train`: `validation_fraction` of every class."""
    labels = np.asarray(train["label"])
    rng = np.random.default_rng(src.validation_seed)
    held: list[int] = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        take = _held_out_count(len(members), src.validation_fraction)
        if take < 1 or take >= len(members):
            rows, _ = train["where"][members[0]]
            need = next(n for n in itertools.count(2) if 1 <= _held_out_count(n, src.validation_fraction) < n)
            raise DataError(
                f"{rows.where}: class {names[label]!r} has {len(members)} training example(s); holding out a "
                f"validation split of {src.validation_fraction:g} needs at least {need} per class (one on each "
                "side). Add examples of it, drop it, change --validation-fraction, or give a validation file."
            )
        held.extend(rng.permutation(members)[:take].tolist())
    held_set = set(held)
    keep = [i for i in range(len(labels)) if i not in held_set]
    held.sort()
    logger.info(
        "no validation split: held out %s of %s training rows (%g per class, seed %d)",
        f"{len(held):,}",
        f"{len(labels):,}",
        src.validation_fraction,
        src.validation_seed,
    )
    return ({k: [v[i] for i in keep] for k, v in train.items()}, {k: [v[i] for i in held] for k, v in train.items()})


def _load_clue(folder: Path, src: DataSource) -> DatasetDict:
    if src.label_names:
        names = list(src.label_names)
        code_to_id = {}
        if (folder / "labels.json").is_file():
            _, code_to_id = read_label_names(folder / "labels.json")
    elif src.labels or (folder / "labels.json").is_file():
        names, code_to_id = read_label_names(Path(src.labels).expanduser() if src.labels else folder / "labels.json")
    else:
        names = list(TNEWS_LABEL_NAMES)
        code_to_id = {code: i for i, (code, _) in enumerate(TNEWS_LABELS)}
    name_to_id = {name: i for i, name in enumerate(names)}
    features = tnews_features(names)
    text_field = src.text_field or "sentence"

    def label_of(row: dict[str, Any], where: str) -> int:
        if "label" in row and str(row["label"]) in code_to_id:
            return code_to_id[str(row["label"])]
        if "label_desc" in row and row["label_desc"] in name_to_id:
            return name_to_id[row["label_desc"]]
        if "label" not in row and "label_desc" not in row:
            return -1  # the unlabelled test split
        codes = ", ".join(list(code_to_id)[:4]) + (", …" if len(code_to_id) > 4 else "")
        raise DataError(
            f"{where}: unknown label {row.get('label', row.get('label_desc'))!r}; expected one of the "
            f"{len(names)} classes, by code ({codes or 'none'}) or label_desc ({', '.join(names[:2])}, …). "
            "Fix or remove the row."
        )

    def from_json(file: Path) -> Dataset:
        numbered = _read_jsonl(file)
        rows = [row for _, row in numbered]
        for line_no, row in numbered:
            if not str(row.get(text_field) or "").strip():
                raise DataError(f"{file}:{line_no}: no text in {text_field!r}.")
        return Dataset.from_dict(
            {
                "idx": [int(r.get("id", i)) for i, r in enumerate(rows)],
                "label": [label_of(r, f"{file}:{line_no}") for line_no, r in numbered],
                "sentence": [str(r[text_field]) for r in rows],
            },
            features=features,
        )

    def from_tsv(file: Path) -> Dataset:
        sentences, labels = [], []
        with file.open(encoding="utf-8-sig") as fh:  # -sig: without the byte-order mark Notepad/Excel write
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
    if "train" not in splits:
        raise DataError(f"{folder}: missing train.json (or train.tsv).")
    if "validation" not in splits:
        raise DataError(f"{folder}: missing dev.json.")
    return DatasetDict(splits)


def _read_jsonl(path: Path) -> list[tuple[int, Any]]:
    """(line number, JSON object) for each line of a JSON-lines file, blank lines skipped."""
    rows = []
    with path.open(encoding="utf-8-sig") as fh:  # -sig: without the byte-order mark Notepad/Excel write
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{line_no}: invalid JSON ({exc.msg}).") from exc
            rows.append((line_no, row))
    return rows


def check_label_names(checkpoint: Path, names: list[str], data: Any) -> None:
    """Refuse data whose classes are not the model's (a model scored on other labels scores nonsense).

    Args:
        checkpoint: a transformers checkpoint folder; its `config.json` `id2label` holds the model's classes.
        names: the data's class names in id order.
        data: the data source, for the message.
    """
    config_file = Path(checkpoint) / "config.json"
    try:
        id2label = json.loads(config_file.read_text(encoding="utf-8")).get("id2label") or {}
    except (OSError, json.JSONDecodeError):
        return  # the model loader reports a broken checkpoint more clearly
    model_names = [str(id2label[key]) for key in sorted(id2label, key=int)]
    if len(model_names) != len(names):
        raise DataError(
            f"{data}: has {len(names)} classes, but the model in {checkpoint} has {len(model_names)} "
            f"({', '.join(model_names[:6])}{', …' if len(model_names) > 6 else ''}); pass the data "
            "the model was trained on."
        )
    if model_names != list(names) and not all(n.startswith("LABEL_") for n in model_names):
        logger.warning(
            "%s: its class names differ from the model's (%s … vs %s …); scoring by id",
            data,
            ", ".join(names[:3]),
            ", ".join(model_names[:3]),
        )


# ----------------------------------------------------------------------------- subsets


@dataclass(frozen=True)
class SplitConfig:
    """How the evaluation set, selection slice and training subsets are drawn."""

    train_sizes: tuple[int | str, ...] = (500, 1000, 5000)  # ALL_TRAIN: the whole split (see make_splits)
    # None (not given): `defaults.EVAL_SIZE` / `SELECTION_SIZE`, or what fits a smaller validation split
    # (`fit_split_sizes`).
    eval_size: int | None = None
    selection_size: int | None = None
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
        if self.eval_size is not None and self.eval_size <= 0:
            raise ConfigError(f"--eval-size must be positive (got {self.eval_size}).")
        if self.selection_size is not None and self.selection_size < 0:
            raise ConfigError(f"--selection-size must be >= 0 (got {self.selection_size}).")


def fit_split_sizes(
    validation: int, eval_size: int | None = None, selection_size: int | None = None
) -> tuple[int, int]:
    """The evaluation-set and selection-slice sizes to draw from a validation split of `validation` sentences.

    A size given is kept as is (`make_splits` refuses sizes that do not fit). A size not given (None) is its
    default, `EVAL_SIZE` or `SELECTION_SIZE`, where that fits; on a smaller validation split (a holdout of the
    user's own data, say) it is what fits: the split shared 2:1 like the defaults when neither size is given,
    the rest of the split (at most the default) when the other one is.

    Args:
        validation: sentences in the validation split.
        eval_size, selection_size: the sizes asked for; None = not given.
    """
    if eval_size is None and selection_size is None:
        if EVAL_SIZE + SELECTION_SIZE <= validation:
            return EVAL_SIZE, SELECTION_SIZE
        selection = math.floor(validation * SELECTION_SIZE / (EVAL_SIZE + SELECTION_SIZE) + 0.5)
        return validation - selection, selection
    if eval_size is None:
        rest = validation - selection_size
        return (min(EVAL_SIZE, rest) if rest >= 1 else EVAL_SIZE), selection_size
    if selection_size is None:
        rest = validation - eval_size
        return eval_size, (min(SELECTION_SIZE, rest) if rest >= 1 else SELECTION_SIZE)
    return eval_size, selection_size


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
    classes = int((counts > 0).sum())
    # sklearn needs two of every class, and at least one per class on each side, to stratify.
    if (counts[counts > 0] < 2).any() or size < classes or len(labels) - size < classes:
        return np.random.default_rng(seed).choice(len(labels), size=size, replace=False)
    chosen, _ = train_test_split(np.arange(len(labels)), train_size=size, stratify=labels, random_state=seed)
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
    eval_size, selection_size = fit_split_sizes(len(validation), config.eval_size, config.selection_size)
    if eval_size + selection_size > len(validation):
        raise ConfigError(
            f"eval size {eval_size} + selection size {selection_size} exceed the "
            f"{len(validation)} validation sentences; lower --eval-size or --selection-size (data without a "
            "validation split holds out --validation-fraction of train as one)."
        )
    if (config.eval_size is None and eval_size != EVAL_SIZE) or (
        config.selection_size is None and selection_size != SELECTION_SIZE
    ):
        logger.info(
            "the validation split has %s sentences, fewer than the default evaluation set (%s) and "
            "selection slice (%s): drawing %s and %s (--eval-size, --selection-size set them)",
            f"{len(validation):,}",
            f"{EVAL_SIZE:,}",
            f"{SELECTION_SIZE:,}",
            f"{eval_size:,}",
            f"{selection_size:,}",
        )
    val_labels = np.asarray(validation["label"])
    order = _sample_indices(val_labels, eval_size, config.seed, config.stratify)
    eval_idx = np.sort(order)
    rest = np.setdiff1d(np.arange(len(validation)), eval_idx)
    if selection_size:
        pick = _sample_indices(val_labels[rest], selection_size, config.seed + 1, config.stratify)
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
                "lower --train-size (grid: --train-sizes)."
            )
        picked = pool[_sample_indices(train_labels, size, subset_seed, config.stratify)]
        subsets[size] = train.select(np.sort(picked))
    names = list(train.features["label"].names)
    return TnewsSplits(train=subsets, evaluation=evaluation, selection=selection, label_names=names)


def evaluation_split(
    dsd: DatasetDict,
    eval_size: int | None = SplitConfig.eval_size,
    seed: int = SplitConfig.seed,
    stratify: bool = SplitConfig.stratify,
) -> Dataset:
    """The evaluation set `make_splits` draws for these settings (it does not depend on the other sizes).

    `eval_size` None: the size `make_splits` fits when neither size is given (`fit_split_sizes`).
    """
    if eval_size is None and "validation" in dsd:
        eval_size = fit_split_sizes(len(dsd["validation"]))[0]
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


def length_stats(
    dsd: DatasetDict, tokenizer: Any, split: str = "train", percentile: float = 99.0, chunk: int = 4096
) -> LengthStats:
    """Character and token lengths of `split`, plus class counts of every split.

    The sentences are tokenised `chunk` at a time, with a progress line every 30 s (`ProgressLog`).
    """
    from .progress_log import ProgressLog

    sentences = list(dsd[split]["sentence"])
    char_lengths = [len(s) for s in sentences]
    logger.info("counting the tokens of %s %s sentences ...", f"{len(sentences):,}", split)
    progress = ProgressLog(logger, f"tokenizing {split}", "sentence", total=len(sentences))
    token_lengths: list[int] = []
    for start in range(0, len(sentences), chunk):
        encoded = tokenizer(sentences[start : start + chunk], add_special_tokens=True, truncation=False)["input_ids"]
        token_lengths.extend(len(ids) for ids in encoded)
        progress.update(len(token_lengths))
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
        stats.suggested_max_length,
        color="black",
        linewidth=2,
        label=f"suggested max_length = {stats.suggested_max_length}",
    )
    axes[1].legend()
    fig.suptitle(f"Sentence lengths ({len(stats.char_lengths):,} sentences)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

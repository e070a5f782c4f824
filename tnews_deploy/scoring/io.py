"""Scoring input and output, shared by both engines.

* `find_inputs`: files, folders (searched recursively) and glob patterns -> the `.jsonl`, `.parquet`,
  `.csv` and `.txt` files to score, in a stable order.
* `read_texts`: the usable texts of files or a glob, whole, for commands that take a file of texts
  (`trim-vocab --corpus`, `distill --unlabeled`); `names_text_files` tells such a file from a data source.
* `read_chunks`: one file as Arrow tables of at most `chunk_rows` rows (`source`, `id`, `text`, `error`),
  read as a stream (bounded memory for any file size). The bad-row contract of `predict`: a row whose text
  is missing, not a string, empty, not valid UTF-8 or holds a lone surrogate (or a JSON line that cannot be
  parsed) keeps its place with an `error` and no text; it never stops the file. The id is the row's `idx` or
  `id` value (as a string), else its 1-based row (line) number within its file.
* `score_chunk`: one chunk through a `Predictor` -> the output rows (`source`, `id`, `label`, `label_id`,
  `score`, optional `top_k` and `probabilities`, `error`).
* `staged_output`: the output folder is written aside (`.NAME.partial-PID-HOST-*`) and renamed into place
  only when complete, with a `_SUCCESS` summary (JSON): a killed job never leaves output that looks finished,
  and the next job removes what it left.
* Reading: a UTF-8 byte-order mark (Excel, Notepad) is dropped; a CSV row longer than the parser's block is
  read with larger blocks.

Runtime side: pyarrow and numpy (the `Predictor` is passed in), no torch.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import DataError, UserError
from ..formats import DATA, TEXTS
from ..inputs import TEXT_FIELDS, UTF8_BOM, json_object, text_error

logger = logging.getLogger(__name__)

SUFFIXES = TEXTS.suffixes  # suffix -> format (`tnews_deploy.formats`)
ID_FIELDS = ("idx", "id")
SUMMARY_FILE = "_SUCCESS"
MAX_SHOWN_ERRORS = 5
# Bytes of CSV parsed at a time; a row longer than a block is read again in blocks 8x larger, up to the most.
CSV_BLOCK_SIZE = 1 << 20
CSV_MAX_BLOCK_SIZE = 256 << 20

INPUT_SCHEMA = pa.schema([("source", pa.string()), ("id", pa.string()), ("text", pa.string()), ("error", pa.string())])
TOP_K_TYPE = pa.list_(pa.struct([("label", pa.string()), ("label_id", pa.int32()), ("score", pa.float32())]))


@dataclass(frozen=True)
class InputFile:
    """One file to score and how to read it; `source` names it in the output (default: the path as given)."""

    path: Path
    fmt: str  # a format `tnews_deploy.formats.TEXTS` takes: jsonl, parquet, csv or txt
    source: str | None = None

    @property
    def name(self) -> str:
        return self.source if self.source is not None else str(self.path)


# --------------------------------------------------------------------------- finding inputs


def _visible(path: Path, root: Path) -> bool:
    """Not hidden and not a marker file ('.x', '_x') anywhere below `root` (e.g. a previous output's _SUCCESS)."""
    return not any(part.startswith((".", "_")) for part in path.relative_to(root).parts)


def _supported(path: Path, given: str) -> InputFile:
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise DataError(
            f"{given}: cannot read a '{path.suffix or 'suffix-less'}' file; inputs are "
            f"{TEXTS.listed(', ', ' or ')} files (or folders/globs of them)."
        )
    return InputFile(path, fmt)


def find_inputs(patterns: Sequence[str]) -> list[InputFile]:
    """The files to score, in the order given (folders and globs sorted by path), each once.

    Args:
        patterns: files, folders (every supported file below them, hidden and '_' names skipped) or glob
            patterns (`*`, `?`, `[...]`, `**`).

    Raises:
        DataError: a path that does not exist, a file of an unsupported kind, or a folder/glob that holds
            no supported file.
    """
    found: list[InputFile] = []
    for given in patterns:
        path = Path(given)
        if path.is_dir():
            files = [
                InputFile(p, SUFFIXES[p.suffix.lower()])
                for p in sorted(path.rglob("*"))
                if p.is_file() and p.suffix.lower() in SUFFIXES and _visible(p, path)
            ]
            if not files:
                raise DataError(f"{given}: a folder with no {TEXTS.listed()} files.")
            found.extend(files)
        elif path.is_file():
            found.append(_supported(path, given))
        elif glob.has_magic(given):
            matches = [Path(p) for p in sorted(glob.glob(given, recursive=True)) if Path(p).is_file()]
            files = [InputFile(p, SUFFIXES[p.suffix.lower()]) for p in matches if p.suffix.lower() in SUFFIXES]
            if not files:
                raise DataError(f"{given}: matches no {TEXTS.listed()} file.")
            found.extend(files)
        else:
            raise DataError(f"{given}: no such file or folder.")
    seen: set[Path] = set()
    unique = []
    for item in found:
        key = item.path.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(item)
    return unique


# --------------------------------------------------------------------------- reading


class _Chunk:
    """Rows being collected for one input table."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.ids: list[str] = []
        self.texts: list[str | None] = []
        self.errors: list[str | None] = []

    def add(self, row_id: str, text: str | None, error: str | None) -> None:
        self.ids.append(row_id)
        self.texts.append(text)
        self.errors.append(error)

    def __len__(self) -> int:
        return len(self.ids)

    def table(self) -> pa.Table:
        n = len(self.ids)
        return pa.Table.from_arrays(
            [
                pa.array([self.source] * n, pa.string()),
                pa.array(self.ids, pa.string()),
                pa.array(self.texts, pa.string()),
                pa.array(self.errors, pa.string()),
            ],
            schema=INPUT_SCHEMA,
        )


def _id_string(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _checked(text: str, where: str) -> tuple[str | None, str | None]:
    """(text, None) for a usable text, else (None, why)."""
    error = text_error(text, where)
    return (None, error) if error else (text, None)


def _decoded(raw: bytes | None, where: str, field_name: str) -> tuple[str | None, str | None]:
    if raw is None:
        return None, f"{where}: no text (null '{field_name}')"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, f"{where}: not valid UTF-8 ({exc.reason} at byte {exc.start})"
    return _checked(text, where)


def _json_line(raw: bytes, number: int, text_field: str | None) -> tuple[str, str | None, str | None]:
    """(id, text, error) of one JSONL line."""
    where = f"line {number}"
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return str(number), None, f"{where}: not valid UTF-8 ({exc.reason} at byte {exc.start})"
    names = (text_field,) if text_field else TEXT_FIELDS
    obj, error = json_object(line, where, names)
    if obj is None:
        return str(number), None, error
    row_id = next((_id_string(obj[k]) for k in ID_FIELDS if obj.get(k) is not None), str(number))
    name = next((n for n in names if n in obj), None)
    if name is None:
        return row_id, None, f"{where}: no {' or '.join(repr(n) for n in names)} field"
    value = obj[name]
    if not isinstance(value, str):
        return row_id, None, f"{where}: '{name}' is {type(value).__name__}, not a string"
    return (row_id, *_checked(value, where))


def _read_lines(
    item: InputFile, text_field: str | None, chunk_rows: int, option: str = "--text-field"
) -> Iterator[pa.Table]:
    chunk = _Chunk(item.name)
    with item.path.open("rb") as fh:
        for number, raw in enumerate(fh, 1):
            if number == 1:
                raw = raw.removeprefix(UTF8_BOM)
            if item.fmt == "jsonl":
                chunk.add(*_json_line(raw, number, text_field))
            else:
                text, error = _decoded(raw.rstrip(b"\r\n"), f"line {number}", "line")
                chunk.add(str(number), text, error)
            if len(chunk) >= chunk_rows:
                yield chunk.table()
                chunk = _Chunk(chunk.source)
    if len(chunk):
        yield chunk.table()


def _pick_field(columns: Sequence[str], text_field: str | None, path: Path, option: str = "--text-field") -> str:
    names = (text_field,) if text_field else TEXT_FIELDS
    name = next((n for n in names if n in columns), None)
    if name is None:
        raise DataError(
            f"{path}: no {' or '.join(repr(n) for n in names)} column (it has: "
            f"{', '.join(map(str, columns)) or 'none'}); pass {option} NAME."
        )
    return name


def _columns_table(source: str, texts: pa.Array, ids: pa.Array | None, first_row: int, name: str) -> pa.Table:
    """Input rows from a text column (any type) and an optional id column, rows numbered from `first_row`."""
    chunk = _Chunk(source)
    numbers = range(first_row, first_row + len(texts))
    id_values = ids.to_pylist() if ids is not None else [None] * len(texts)
    row_ids = [str(n) if v is None else _id_string(v) for n, v in zip(numbers, id_values)]
    if pa.types.is_string(texts.type) or pa.types.is_binary(texts.type):
        raw_values = texts.cast(pa.binary()).to_pylist()
    elif pa.types.is_large_string(texts.type) or pa.types.is_large_binary(texts.type):
        raw_values = texts.cast(pa.large_binary()).to_pylist()
    elif pa.types.is_string_view(texts.type) or pa.types.is_binary_view(texts.type):
        raw_values = texts.cast(pa.binary()).to_pylist()
    else:
        for number, row_id, value in zip(numbers, row_ids, texts.to_pylist()):
            error = (
                f"row {number}: no text (null '{name}')"
                if value is None
                else f"row {number}: '{name}' is {texts.type}, not a string"
            )
            chunk.add(row_id, None, error)
        return chunk.table()
    for number, row_id, raw in zip(numbers, row_ids, raw_values):
        chunk.add(row_id, *_decoded(raw, f"row {number}", name))
    return chunk.table()


def _sliced(batches: Iterator[pa.RecordBatch], chunk_rows: int) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        for start in range(0, batch.num_rows, chunk_rows):
            yield batch.slice(start, chunk_rows)


def _read_parquet(
    item: InputFile, text_field: str | None, chunk_rows: int, option: str = "--text-field"
) -> Iterator[pa.Table]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(item.path)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{item.path}: cannot be read as Parquet ({exc}).") from exc
    columns = parquet.schema_arrow.names
    name = _pick_field(columns, text_field, item.path, option)
    id_name = next((c for c in ID_FIELDS if c in columns and c != name), None)
    wanted = [name] + ([id_name] if id_name else [])
    row = 1
    try:
        for batch in parquet.iter_batches(batch_size=chunk_rows, columns=wanted):
            yield _columns_table(item.name, batch.column(name), batch.column(id_name) if id_name else None, row, name)
            row += batch.num_rows
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{item.path}: cannot be read as Parquet after row {row - 1} ({exc}).") from exc


def _csv_header(path: Path) -> list[str] | None:
    """The column names of a CSV file (None when empty), without the byte-order mark that Excel writes
    (pyarrow drops it too)."""
    with path.open(encoding="utf-8-sig", errors="replace", newline="") as fh:
        return next(csv.reader(fh), None)


def _read_csv(
    item: InputFile, text_field: str | None, chunk_rows: int, option: str = "--text-field"
) -> Iterator[pa.Table]:
    import pyarrow.csv as pacsv

    header = _csv_header(item.path)
    if header is None:  # an empty file: no rows
        return
    name = _pick_field(header, text_field, item.path, option)
    id_name = next((c for c in ID_FIELDS if c in header and c != name), None)
    wanted = [name] + ([id_name] if id_name else [])
    convert = pacsv.ConvertOptions(
        include_columns=wanted, column_types=dict.fromkeys(wanted, pa.binary()), strings_can_be_null=False
    )
    parse = pacsv.ParseOptions(newlines_in_values=True)
    row = 1
    block = CSV_BLOCK_SIZE
    while True:  # once, unless a row is longer than the block: then again with larger blocks, after that row
        try:
            reader = pacsv.open_csv(
                item.path,
                read_options=pacsv.ReadOptions(block_size=block),
                parse_options=parse,
                convert_options=convert,
            )
            for batch in _sliced(_skipped(iter(reader), row - 1), chunk_rows):
                ids = batch.column(id_name) if id_name else None
                if ids is not None:  # ids as text, whatever their bytes
                    ids = pa.array(
                        [None if v is None else v.decode("utf-8", "replace") for v in ids.to_pylist()], pa.string()
                    )
                yield _columns_table(item.name, batch.column(name), ids, row, name)
                row += batch.num_rows
            return
        except pa.ArrowInvalid as exc:
            if "straddl" not in str(exc):  # "straddling object straddles two block boundaries"
                raise _csv_error(item.path, row, exc) from exc
            if block >= CSV_MAX_BLOCK_SIZE:
                raise DataError(
                    f"{item.path}: a row after row {row - 1} is longer than "
                    f"{CSV_MAX_BLOCK_SIZE >> 20} MiB, the most read at once; split that text, or "
                    "convert the file to .jsonl or .parquet."
                ) from exc
            block = min(block * 8, CSV_MAX_BLOCK_SIZE)
            logger.info(
                "%s: a row after row %d is longer than the CSV block; reading on in %d MiB blocks",
                item.path,
                row - 1,
                block >> 20,
            )
        except (pa.ArrowException, OSError) as exc:
            raise _csv_error(item.path, row, exc) from exc


def _csv_error(path: Path, row: int, exc: Exception) -> DataError:
    return DataError(
        f"{path}: cannot be read as CSV after row {row - 1} ({exc}). Fix the file, or convert it to .jsonl or .parquet."
    )


def _skipped(batches: Iterator[pa.RecordBatch], rows: int) -> Iterator[pa.RecordBatch]:
    """The batches without their first `rows` rows (those read before a retry)."""
    for batch in batches:
        if rows >= batch.num_rows:
            rows -= batch.num_rows
            continue
        yield batch.slice(rows) if rows else batch
        rows = 0


# The reader of each format `tnews_deploy.formats.TEXTS` takes.
_READERS = {"jsonl": _read_lines, "txt": _read_lines, "parquet": _read_parquet, "csv": _read_csv}


def check_input(item: InputFile, text_field: str | None) -> None:
    """Fail fast, before any scoring: a Parquet/CSV file that cannot be opened or has no text column.

    Raises:
        DataError: naming the file and what to do.
    """
    if item.fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            columns = pq.ParquetFile(item.path).schema_arrow.names
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"{item.path}: cannot be read as Parquet ({exc}).") from exc
        _pick_field(columns, text_field, item.path)
    elif item.fmt == "csv":
        header = _csv_header(item.path)
        if header is not None:
            _pick_field(header, text_field, item.path)


def read_chunks(
    item: InputFile, text_field: str | None, chunk_rows: int, option: str = "--text-field"
) -> Iterator[pa.Table]:
    """One file's rows as input tables of at most `chunk_rows` rows, in file order, read as a stream.

    Args:
        item: the file and its format.
        text_field: the text column/field; None: 'sentence', else 'text'.
        chunk_rows: most rows per table.
        option: the command-line flag that names the text column, for the error that asks for it.

    Raises:
        DataError: a Parquet/CSV file without the text column, or one that cannot be parsed at all (bad rows of
            a readable file are error rows instead); a format with no reader here.
    """
    reader = _READERS.get(item.fmt)
    if reader is None:
        raise DataError(
            f"{item.path}: no reader for format {item.fmt!r}; the formats read here are "
            f"{', '.join(TEXTS.formats)} ({TEXTS.listed(', ', ' or ')} files)."
        )
    return reader(item, text_field, chunk_rows, option)


def names_text_files(source: str) -> bool:
    """Whether `source` names files of texts (`read_texts`) rather than a data source (`load_data`).

    Files of texts: an existing file (but one in a format only `--data` reads: a `.tsv`, a labelled table), a
    glob pattern, or a missing path with a text-file suffix (so that its error is "no such file"). Data
    sources: a folder, a `.tsv` file, anything else (a hub id).
    """
    path = Path(source).expanduser()
    if path.is_dir():
        return False
    if path.exists():
        return DATA.format_of(path) not in set(DATA.formats) - set(TEXTS.formats)
    return glob.has_magic(source) or path.suffix.lower() in SUFFIXES


def read_texts(
    source: str, text_field: str | None = None, option: str = "--text-field", chunk_rows: int = 10_000
) -> list[str]:
    """The usable texts of a file, folder or glob of .jsonl/.parquet/.csv/.txt files, in order.

    Unusable rows (empty, not UTF-8, no text field, ...) are skipped with one warning that counts them and
    names the first.

    Args:
        source: as `find_inputs` takes one pattern.
        text_field: the column/field holding the text; None: 'sentence', else 'text' (a .txt file: each line).
        option: the command-line flag that sets `text_field`, named when a table lacks the column.
        chunk_rows: rows read at a time.

    Raises:
        DataError: no such file, a file of another kind, a table without the text column, or no usable text.
    """
    texts: list[str] = []
    skipped, first_error = 0, None
    for item in find_inputs([source]):
        for table in read_chunks(item, text_field, chunk_rows, option):
            for text, error in zip(table.column("text").to_pylist(), table.column("error").to_pylist()):
                if error is None:
                    texts.append(text)
                else:
                    skipped += 1
                    first_error = first_error or f"{item.name}, {error}"
    if not texts:
        raise DataError(
            f"{source}: no usable text in it"
            + (f" (first problem: {first_error})" if first_error else " (it is empty)")
            + f"; texts are lines of a .txt file, or a field/column named by {option} (default "
            "'sentence', else 'text') of .jsonl/.csv/.parquet files."
        )
    if skipped:
        logger.warning("%s: skipped %d unusable row(s) (first: %s)", source, skipped, first_error)
    return texts


# --------------------------------------------------------------------------- scoring


def output_schema(top_k: int, probabilities: bool) -> pa.Schema:
    """The columns of the scored Parquet shards."""
    fields = [
        ("source", pa.string()),
        ("id", pa.string()),
        ("label", pa.string()),
        ("label_id", pa.int32()),
        ("score", pa.float32()),
    ]
    if top_k > 1:
        fields.append(("top_k", TOP_K_TYPE))
    if probabilities:
        fields.append(("probabilities", pa.list_(pa.float32())))
    fields.append(("error", pa.string()))
    return pa.schema(fields)


def _lists(values: pa.Array, per_row: int, good: np.ndarray, list_type: pa.DataType) -> pa.Array:
    """A list column: `per_row` consecutive `values` for each good row, null for the others."""
    offsets = np.zeros(len(good) + 1, dtype=np.int32)
    offsets[1:] = np.cumsum(good.astype(np.int32) * per_row)
    return pa.ListArray.from_arrays(pa.array(offsets), values, type=list_type, mask=pa.array(~good))


def score_chunk(predictor: Any, table: pa.Table, top_k: int = 1, probabilities: bool = False) -> pa.Table:
    """Score the good rows of an input table (from `read_chunks`) with one `Predictor` call.

    Args:
        predictor: a `tnews_deploy.predictor.Predictor`.
        table: input rows (`source`, `id`, `text`, `error`).
        top_k: classes in the `top_k` column (only when > 1); the best one is also `label`/`label_id`/`score`.
        probabilities: add the `probabilities` column (every class, in label-id order).

    Returns:
        The output rows in input order (`output_schema`); error rows keep their error and have no label.
    """
    n = table.num_rows
    good = pc.is_null(table.column("error")).to_numpy(zero_copy_only=False).astype(bool)
    texts = table.column("text").filter(pa.array(good)).to_pylist()
    labels = np.asarray(predictor.labels, dtype=object)
    probs = (predictor.predict_proba(texts) if texts else np.zeros((0, len(labels)), np.float32)).astype(
        np.float32, copy=False
    )
    ranked = np.argsort(-probs, axis=1, kind="stable")[:, :top_k]
    best = ranked[:, 0] if len(ranked) else np.zeros(0, np.int64)

    label_id = np.zeros(n, np.int32)
    label_id[good] = best
    score = np.zeros(n, np.float32)
    score[good] = probs[np.arange(len(best)), best]
    label = np.full(n, None, dtype=object)
    label[good] = labels[best]
    bad = ~good
    columns: dict[str, pa.Array] = {
        "source": table.column("source").combine_chunks(),
        "id": table.column("id").combine_chunks(),
        "label": pa.array(label, pa.string()),
        "label_id": pa.array(label_id, pa.int32(), mask=bad),
        "score": pa.array(score, pa.float32(), mask=bad),
    }
    if top_k > 1:
        top_scores = np.take_along_axis(probs, ranked, axis=1)
        values = pa.StructArray.from_arrays(
            [
                pa.array(labels[ranked.ravel()], pa.string()),
                pa.array(ranked.ravel().astype(np.int32)),
                pa.array(top_scores.ravel(), pa.float32()),
            ],
            names=["label", "label_id", "score"],
        )
        columns["top_k"] = _lists(values, ranked.shape[1], good, TOP_K_TYPE)
    if probabilities:
        columns["probabilities"] = _lists(
            pa.array(probs.ravel(), pa.float32()), len(labels), good, pa.list_(pa.float32())
        )
    columns["error"] = table.column("error").combine_chunks()
    return pa.Table.from_arrays(list(columns.values()), schema=output_schema(top_k, probabilities))


# --------------------------------------------------------------------------- output


@dataclass
class ScoreSummary:
    """What a finished job wrote; saved as the output's `_SUCCESS` (JSON).

    `first_errors` holds up to five failed rows (`source`, `id`, `error`) for the command's message.
    """

    rows: int
    errors: int
    seconds: float
    engine: str
    model_dir: str
    model_sha256: str
    labels: list[str]
    inputs: list[str]
    shards: list[str]
    output: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    first_errors: list[dict[str, Any]] = field(default_factory=list)

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["rows_per_second"] = round(self.rows_per_second, 2)
        data["seconds"] = round(self.seconds, 3)
        return data


def model_sha256(model_dir: Path, manifest: dict[str, Any]) -> str:
    """The model file's sha256: the export manifest's (checked when the predictor loaded it), else computed."""
    from ..predictor import MODEL_FILE, sha256_of

    return (manifest.get("model") or {}).get("sha256") or sha256_of(Path(model_dir) / MODEL_FILE)


def write_summary(folder: Path, summary: ScoreSummary) -> Path:
    """Write `_SUCCESS` into the (staging) folder; the last file written before it moves into place."""
    path = folder / SUMMARY_FILE
    path.write_text(json.dumps(summary.to_dict(), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return path


def check_output(output: Path, force: bool) -> None:
    """Refuse an existing output (without `force`) or one that is not a folder, before any work starts."""
    if output.exists() and not force:
        raise UserError(
            f"{output}: exists; pass --force to replace it (once the new output is complete), "
            "or choose another --output."
        )
    if output.exists() and not output.is_dir():
        raise UserError(f"{output}: exists and is not a folder; choose another --output.")


def _owner_tag() -> str:
    """This process as `PID-HOST` (HOST: 8 hex digits of the host name's sha1), for a staging folder's name."""
    return f"{os.getpid()}-{hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except OSError:
        return True  # cannot tell: keep its folder
    return True


def remove_stale_partials(output: Path) -> list[Path]:
    """Remove the staging folders (`.NAME.partial-PID-HOST-*`) that jobs killed outright left next to `output`.

    Only folders made on this host by a process that is no longer running are removed (with a log line); a
    running job's folder, another host's, or one named otherwise is kept.

    Args:
        output: the final folder.

    Returns:
        The folders removed.
    """
    host = _owner_tag().split("-", 1)[1]
    pattern = re.compile(rf"\.{re.escape(output.name)}\.partial-(\d+)-([0-9a-f]{{8}})-[0-9a-f]{{12}}")
    removed: list[Path] = []
    if not output.parent.is_dir():
        return removed
    for folder in output.parent.iterdir():
        match = pattern.fullmatch(folder.name)
        if match is None or match.group(2) != host or not folder.is_dir() or _pid_alive(int(match.group(1))):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        logger.info(
            "removed %s: the unfinished output of an earlier job (pid %s) that is no longer running",
            folder,
            match.group(1),
        )
        removed.append(folder)
    return removed


def _fresh_folder(output: Path, kind: str, owner: str = "") -> Path:
    """A new hidden folder next to `output` (`.NAME.KIND-[OWNER-]RANDOM`), created with the usual permissions."""
    while True:
        folder = output.parent / f".{output.name}.{kind}-{owner + '-' if owner else ''}{uuid.uuid4().hex[:12]}"
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            continue


@contextmanager
def staged_output(output: Path, force: bool = False) -> Iterator[Path]:
    """A staging folder next to `output`, renamed to `output` when the block completes, removed if it fails.

    With `force`, an existing `output` is replaced only after the new one is complete. A job killed outright
    leaves only a hidden `.NAME.partial-PID-HOST-*` folder, never `output`; the next job for `output` removes
    it (`remove_stale_partials`).

    Args:
        output: the final folder.
        force: replace `output` if it exists.

    Raises:
        UserError: `output` exists and `force` is not set.
    """
    output = Path(output)
    check_output(output, force)
    output.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(output)
    staging = _fresh_folder(output, "partial", _owner_tag())
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if output.exists():
        old = _fresh_folder(output, "old")
        os.replace(output, old / output.name)
        os.replace(staging, output)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, output)
    logger.debug("output complete: %s", output)


def shard_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


def first_errors(table: pa.Table, limit: int = MAX_SHOWN_ERRORS) -> list[dict[str, Any]]:
    """Up to `limit` failed rows of an output table, as dicts (`source`, `id`, `error`)."""
    failed = table.filter(pc.is_valid(table.column("error"))).select(["source", "id", "error"])
    return failed.slice(0, limit).to_pylist()

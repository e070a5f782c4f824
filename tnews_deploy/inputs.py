"""What counts as a text to classify, and reading texts from files.

One contract for every entry point (the `Predictor`, `predict`, the HTTP
service): a text is a `str` that is not empty or whitespace-only and that can
be encoded as UTF-8 (no lone UTF-16 surrogates such as "\\ud800", which valid
JSON can carry and the tokenizer cannot take). Bad texts are reported by their
positions, never guessed at.

Files: `.txt` (one text a line) or `.jsonl` (a `sentence` or `text` field).
Each line becomes an `InputRecord`; a line that cannot be used (bad UTF-8,
invalid or too deeply nested JSON, a number over Python's 4,300 digits, no text
field, an empty or unencodable text) becomes a record with an `error`, so one bad
line never loses the good ones. A UTF-8 byte-order mark at the start is dropped.
Stdlib only (runtime side).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any, BinaryIO

from .errors import DataError
from .formats import PREDICT, PREDICT_FORMAT_CHOICES, TEXTS

TEXT_FIELDS = ("sentence", "text")
FORMATS = PREDICT_FORMAT_CHOICES  # "auto", then the formats `predict` reads (`tnews_deploy.formats.PREDICT`)

_SURROGATE = re.compile("[\ud800-\udfff]")
UTF8_BOM = b"\xef\xbb\xbf"  # a byte-order mark, not text: dropped from the start of an input


@dataclass(frozen=True)
class InputRecord:
    """One input line: its 1-based number and either its text or why it cannot be used."""

    line: int
    text: str | None = None
    error: str | None = None


# --------------------------------------------------------------------------- validation


def format_positions(indices: Sequence[Any], limit: int = 10) -> str:
    """'1, 4, 7' or '1, 4, 7 and 12 more': positions for an error message."""
    shown = ", ".join(map(str, indices[:limit]))
    return shown + (f" and {len(indices) - limit} more" if len(indices) > limit else "")


def text_problem(text: str) -> str | None:
    """Why a string cannot be classified ("empty", "surrogate"), or None when it can."""
    if not text.strip():
        return "empty"
    if _SURROGATE.search(text):
        return "surrogate"
    return None


@dataclass(frozen=True)
class InvalidPositions:
    """Positions of the items that are not usable texts, by reason (0-based)."""

    not_strings: list[int]
    empty: list[int]
    surrogates: list[int]

    def __bool__(self) -> bool:
        return bool(self.not_strings or self.empty or self.surrogates)


def invalid_positions(items: Sequence[Any]) -> InvalidPositions:
    """Which items are not strings, empty/whitespace-only, or carry lone surrogates.

    Args:
        items: the candidate texts, in order.
    """
    not_strings, empty, surrogates = [], [], []
    for i, item in enumerate(items):
        if not isinstance(item, str):
            not_strings.append(i)
            continue
        problem = text_problem(item)
        if problem == "empty":
            empty.append(i)
        elif problem == "surrogate":
            surrogates.append(i)
    return InvalidPositions(not_strings, empty, surrogates)


EMPTY_MESSAGE = "empty or whitespace-only text at position(s) {}; remove or fill them."
SURROGATE_MESSAGE = (
    "text with a lone UTF-16 surrogate (not encodable as UTF-8) at position(s) {}; fix the encoding of those texts."
)


def validate_texts(texts: Any) -> tuple[list[str], bool]:
    """Check the `Predictor`'s input: a `str` or a list/tuple of `str`.

    Args:
        texts: what the caller passed.

    Returns:
        (the texts as a list, whether a single string was given).

    Raises:
        TypeError: `texts` is not a str/list/tuple, or some items are not strings (positions named).
        ValueError: some texts are empty/whitespace-only or hold lone surrogates (positions named).
    """
    if isinstance(texts, str):
        items, single = [texts], True
    elif isinstance(texts, (list, tuple)):
        items, single = list(texts), False
    else:
        raise TypeError(f"texts must be a str or a list/tuple of str, got {type(texts).__name__}.")
    bad = invalid_positions(items)
    if bad.not_strings:
        named = [f"{i} ({type(items[i]).__name__})" for i in bad.not_strings]
        raise TypeError(f"texts must be strings; not a str at position(s) {format_positions(named)}.")
    if bad.empty:
        raise ValueError(EMPTY_MESSAGE.format(format_positions(bad.empty)))
    if bad.surrogates:
        raise ValueError(SURROGATE_MESSAGE.format(format_positions(bad.surrogates)))
    return items, single


# --------------------------------------------------------------------------- files


def guess_format(name: str, first_line: bytes | None) -> str:
    """'txt' or 'jsonl' from a file name, or for stdin ('-') from its first line.

    Raises:
        DataError: the name has a suffix that is neither a text nor a JSONL suffix (e.g. `.csv`).
    """
    fmt = PREDICT.format_of(name)
    if fmt is not None:
        return fmt
    suffix = PurePath(name).suffix.lower()
    if name != "-" and suffix:
        scored = TEXTS.format_of(name)  # a table `score` reads
        table = (
            f" For .{scored} tables, `tnews-deploy score MODEL_DIR FILE --text-field COLUMN --output DIR` "
            "scores them into Parquet."
            if scored
            else ""
        )
        raise DataError(
            f"{name}: cannot tell how to read a {suffix} file; inputs are .txt (one text a line) "
            "or .jsonl (a 'sentence' or 'text' field). Pass --input-format txt or jsonl to read it "
            "as one of those." + table
        )
    return "jsonl" if first_line is not None and first_line.lstrip().startswith(b"{") else "txt"


def text_error(text: str, where: str) -> str | None:
    """Why `text` cannot be classified, prefixed by `where` (e.g. "line 3"); None for a usable text."""
    problem = text_problem(text)
    if problem == "empty":
        return f"{where}: empty text"
    if problem == "surrogate":
        return f"{where}: text holds a lone UTF-16 surrogate (not valid Unicode text)"
    return None


def json_object(line: str, where: str, fields: Sequence[str] = TEXT_FIELDS) -> tuple[dict[str, Any] | None, str | None]:
    """(object, None) for a JSON-object line, else (None, why): empty, invalid, too deep, or not an object
    (the message names the text `fields` the object should hold)."""
    if not line.strip():
        return None, f"{where}: empty line"
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        return None, f"{where}: invalid JSON ({exc.msg})"
    except RecursionError:
        return None, f"{where}: JSON nested too deeply"
    except ValueError:  # an integer over Python's digit limit (sys.get_int_max_str_digits)
        return None, (
            f"{where}: a JSON number with more than {sys.get_int_max_str_digits():,} digits; "
            "write such a value as a string"
        )
    if not isinstance(obj, dict):
        return None, f"{where}: expected a JSON object with a {' or '.join(repr(f) for f in fields)}"
    return obj, None


def _parse(raw: bytes, fmt: str, line_no: int) -> InputRecord:
    where = f"line {line_no}"
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return InputRecord(line_no, error=f"{where}: not valid UTF-8 ({exc.reason} at byte {exc.start})")
    line = line.rstrip("\r\n")
    if fmt == "jsonl":
        obj, error = json_object(line, where)
        if obj is None:
            return InputRecord(line_no, error=error)
        field = next((f for f in TEXT_FIELDS if f in obj), None)
        if field is None:
            return InputRecord(line_no, error=f"{where}: no 'sentence' or 'text' field")
        text = obj[field]
        if not isinstance(text, str):
            return InputRecord(line_no, error=f"{where}: '{field}' is {type(text).__name__}, not a string")
        line = text
    return _checked(line, line_no, where)


def _checked(text: str, number: int, where: str) -> InputRecord:
    error = text_error(text, where)
    return InputRecord(number, error=error) if error else InputRecord(number, text=text)


def records_from_texts(texts: Iterable[str]) -> list[InputRecord]:
    """Texts given directly (e.g. as command-line arguments), numbered from 1.

    Arguments that were not valid UTF-8 reach Python as lone surrogates
    (surrogateescape) and become error records like empty ones.
    """
    return [_checked(t, i, f"argument {i}") for i, t in enumerate(texts, 1)]


def read_records(stream: BinaryIO, name: str = "-", fmt: str = "auto") -> Iterator[InputRecord]:
    """Records in file order, with 1-based line numbers.

    Args:
        stream: a binary file object (a file, or stdin's buffer).
        name: its name, used to guess the format when `fmt` is 'auto' ('-' for stdin: sniffed).
        fmt: 'auto', 'txt' or 'jsonl'.

    Raises:
        DataError: `fmt` is 'auto' and the name's suffix is not a supported one, or `fmt` is none of `FORMATS`
            (on the first iteration).
    """
    if fmt not in FORMATS:
        raise DataError(f"{name}: no reader for format {fmt!r}; the formats read here are {', '.join(FORMATS)}.")
    first = stream.readline().removeprefix(UTF8_BOM)  # Excel and Notepad start UTF-8 files with one
    if fmt == "auto":
        fmt = guess_format(name, first or None)
    line_no = 0
    raw = first
    while raw:
        line_no += 1
        yield _parse(raw, fmt, line_no)
        raw = stream.readline()

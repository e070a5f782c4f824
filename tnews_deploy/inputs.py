"""Reading texts to classify from files: `.txt` (one a line) or `.jsonl`.

Each line becomes an `InputRecord`; a line that cannot be used (bad UTF-8,
invalid JSON, no text field, empty text) becomes a record with an `error`, so
one bad line never loses the good ones. Stdlib only (runtime side).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

TEXT_FIELDS = ("sentence", "text")
FORMATS = ("auto", "txt", "jsonl")


@dataclass(frozen=True)
class InputRecord:
    line: int
    text: str | None = None
    error: str | None = None


def guess_format(name: str, first_line: bytes | None) -> str:
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    if name.endswith(".txt"):
        return "txt"
    return "jsonl" if first_line is not None and first_line.lstrip().startswith(b"{") else "txt"


def _parse(raw: bytes, fmt: str, line_no: int) -> InputRecord:
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return InputRecord(line_no, error=f"line {line_no}: not valid UTF-8 ({exc.reason} at byte {exc.start})")
    line = line.rstrip("\r\n")
    if fmt == "jsonl":
        if not line.strip():
            return InputRecord(line_no, error=f"line {line_no}: empty line")
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            return InputRecord(line_no, error=f"line {line_no}: invalid JSON ({exc.msg})")
        if not isinstance(obj, dict):
            return InputRecord(line_no, error=f"line {line_no}: expected a JSON object with a 'sentence' or 'text'")
        field = next((f for f in TEXT_FIELDS if f in obj), None)
        if field is None:
            return InputRecord(line_no, error=f"line {line_no}: no 'sentence' or 'text' field")
        text = obj[field]
        if not isinstance(text, str):
            return InputRecord(line_no, error=f"line {line_no}: '{field}' is {type(text).__name__}, not a string")
        line = text
    if not line.strip():
        return InputRecord(line_no, error=f"line {line_no}: empty text")
    return InputRecord(line_no, text=line)


def records_from_texts(texts: Iterable[str]) -> list[InputRecord]:
    """Texts given directly (e.g. as command-line arguments), numbered from 1."""
    return [
        InputRecord(i, text=t) if t.strip() else InputRecord(i, error=f"argument {i}: empty text")
        for i, t in enumerate(texts, 1)
    ]


def read_records(stream: BinaryIO, name: str = "-", fmt: str = "auto") -> Iterator[InputRecord]:
    """Records in file order, with 1-based line numbers."""
    first = stream.readline()
    if fmt == "auto":
        fmt = guess_format(name, first or None)
    line_no = 0
    raw = first
    while raw:
        line_no += 1
        yield _parse(raw, fmt, line_no)
        raw = stream.readline()

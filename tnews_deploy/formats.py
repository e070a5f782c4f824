"""Input file formats, listed once: which suffix is which format, and which commands read which.

Three readers take files, each with a reader per format:

* `DATA`: labelled data, `--data` of train, data-stats, export, benchmark (`tnews_deploy.data.load_data`);
* `TEXTS`: files of texts to score, `score` and the texts of `trim-vocab --corpus` / `distill --unlabeled`
  (`tnews_deploy.scoring.io`);
* `PREDICT`: `predict --input` and stdin (`tnews_deploy.inputs`).

Their suffix tables, the CLI's `--input-format` choices and the format lists in messages come from here;
each reading module maps these format names to its readers and raises a `DataError` for a format it has no
reader for. Adding a format: its suffixes in `SUFFIXES`, its name in the readers that take it, a reader in
each of those modules. Stdlib only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath

# format -> its suffixes (lower case), the usual one first (messages name that one).
SUFFIXES: dict[str, tuple[str, ...]] = {
    "txt": (".txt", ".text"),  # one text a line
    "jsonl": (".jsonl", ".ndjson"),  # one JSON object a line
    "csv": (".csv",),
    "tsv": (".tsv",),
    "parquet": (".parquet",),
}
# `.json` is JSON lines to the readers that only read files they are named (`--data`, `predict --input`), but
# not to `score`, which also searches folders, where .json files are configs and manifests rather than texts.
JSON_SUFFIX = ".json"


@dataclass(frozen=True)
class Reader:
    """The formats one reader takes, and whether a `.json` file is JSON lines to it."""

    formats: tuple[str, ...]
    json_as_jsonl: bool = False

    def __post_init__(self) -> None:
        unknown = [f for f in self.formats if f not in SUFFIXES]
        if unknown:
            raise ValueError(f"unknown format(s) {unknown}; the formats are {', '.join(SUFFIXES)}")

    @property
    def suffixes(self) -> dict[str, str]:
        """suffix -> format, for every suffix this reader takes."""
        table = {suffix: fmt for fmt in self.formats for suffix in SUFFIXES[fmt]}
        if self.json_as_jsonl and "jsonl" in self.formats:
            table[JSON_SUFFIX] = "jsonl"
        return table

    def format_of(self, path: str | PurePath) -> str | None:
        """The format of a file by its suffix (any case); None when this reader does not take that suffix.

        Args:
            path: the file's path or name.
        """
        return self.suffixes.get(PurePath(path).suffix.lower())

    def listed(self, sep: str = "/", last: str | None = None) -> str:
        """The formats' usual suffixes for a message: ".csv/.tsv/.jsonl/.parquet", or with `sep=", "` and
        `last=" or "`: ".jsonl, .parquet, .csv or .txt".

        Args:
            sep: between suffixes.
            last: before the last suffix (default: `sep`).
        """
        names = [SUFFIXES[fmt][0] for fmt in self.formats]
        if last is None or len(names) < 2:
            return sep.join(names)
        return sep.join(names[:-1]) + last + names[-1]


DATA = Reader(("csv", "tsv", "jsonl", "parquet"), json_as_jsonl=True)
TEXTS = Reader(("jsonl", "parquet", "csv", "txt"))
PREDICT = Reader(("txt", "jsonl"), json_as_jsonl=True)
# `predict --input-format`: "auto" guesses from the name (stdin: from the first line).
PREDICT_FORMAT_CHOICES: tuple[str, ...] = ("auto", *PREDICT.formats)

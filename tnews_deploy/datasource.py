"""`DataSource`: what `--data` and its companion flags name, validated, and how it is recorded (stdlib only).

One frozen dataclass describes a labelled data set: where it is (`path`: the hub id `clue/tnews`, any hub id
with `config`, a folder, a file or a glob of `.csv`/`.tsv`/`.jsonl`/`.parquet` files), which columns hold the
text and the label, where the class names come from (`labels`: a names file), and how a validation split is
held out of train when the data has none (`validation_fraction`, `validation_seed`). Once the data is loaded,
`label_names` records the class names in id order, so that a training run's `run_config.json` (key `data`),
an export's manifest and a benchmark rebuild exactly the same label ids and evaluation set.

`DataSource.coerce` reads every recorded form: the plain path string older runs wrote, the dict this class
writes, or a `DataSource`. Loading lives in `tnews_deploy.data` (it needs `datasets`); importing this
module loads nothing heavy, so configs can hold a `DataSource`.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .validation import is_int, is_number, require

DEFAULT_DATA = "clue/tnews"
DEFAULT_TEXT_FIELDS = ("sentence", "text")  # tried in this order when `text_field` is None
DEFAULT_LABEL_FIELD = "label"
DEFAULT_VALIDATION_FRACTION = 0.2
DEFAULT_VALIDATION_SEED = 42


@dataclass(frozen=True)
class DataSource:
    """A labelled data set as the user names it, plus its class names once known.

    Attributes:
        path: `clue/tnews` (the default), a hub dataset id, a folder, a file or a glob.
        config: the hub dataset's configuration name (`--data-config`, e.g. `iflytek` of `clue/clue`).
        text_field: the column holding the text; None: `sentence`, else `text`.
        label_field: the column holding the label (integers or strings).
        labels: a names file for integer labels (one name a line, or CLUE's `labels.json`); None: a
            `labels.json` beside the data, else the string labels' own set (sorted), else the integers.
        validation_fraction: share of each class held out of train as the validation split when the data
            has no validation split (seeded, stratified).
        validation_seed: seed of that holdout.
        label_names: the class names in id order, recorded once the data is loaded; when set, loading maps
            labels onto exactly these ids (a label outside them is an error).
    """

    path: str = DEFAULT_DATA
    config: str | None = None
    text_field: str | None = None
    label_field: str = DEFAULT_LABEL_FIELD
    labels: str | None = None
    validation_fraction: float = DEFAULT_VALIDATION_FRACTION
    validation_seed: int = DEFAULT_VALIDATION_SEED
    label_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.path, Path):
            object.__setattr__(self, "path", str(self.path))
        if isinstance(self.labels, Path):
            object.__setattr__(self, "labels", str(self.labels))
        if self.label_names is not None:
            object.__setattr__(self, "label_names", tuple(str(n) for n in self.label_names))
        names = self.label_names or ()
        require(
            [
                (
                    isinstance(self.path, str) and bool(self.path.strip()),
                    f"--data must name a data source (got {self.path!r})",
                ),
                (
                    self.config is None or (isinstance(self.config, str) and bool(self.config.strip())),
                    f"--data-config must be a non-empty name (got {self.config!r})",
                ),
                (
                    self.text_field is None or (isinstance(self.text_field, str) and bool(self.text_field.strip())),
                    f"--text-field must be a non-empty column name (got {self.text_field!r})",
                ),
                (
                    isinstance(self.label_field, str) and bool(self.label_field.strip()),
                    f"--label-field must be a non-empty column name (got {self.label_field!r})",
                ),
                (
                    self.text_field != self.label_field,
                    f"--text-field and --label-field name the same column ({self.label_field!r})",
                ),
                (
                    self.labels is None or (isinstance(self.labels, str) and bool(self.labels.strip())),
                    f"--labels must name a file (got {self.labels!r})",
                ),
                (
                    is_number(self.validation_fraction) and 0 < self.validation_fraction < 1,
                    f"--validation-fraction must be between 0 and 1, exclusive (got {self.validation_fraction!r})",
                ),
                (
                    is_int(self.validation_seed) and self.validation_seed >= 0,
                    f"validation_seed must be an integer >= 0 (got {self.validation_seed!r})",
                ),
                (
                    self.label_names is None or len(names) >= 2,
                    f"label_names must hold at least 2 classes (got {list(names)})",
                ),
                (len(set(names)) == len(names), f"label_names repeat a name: {list(names)}"),
            ]
        )

    # ------------------------------------------------------------------ reading and writing

    @classmethod
    def coerce(cls, value: DataSource | str | Path | dict[str, Any]) -> DataSource:
        """A `DataSource` from any recorded form: itself, a path or hub id string, or `to_json()`'s dict.

        Args:
            value: what a config, `run_config.json` (`data`) or a manifest holds.

        Raises:
            ConfigError: an unknown key or a bad value.
        """
        if isinstance(value, DataSource):
            return value
        if isinstance(value, (str, Path)):
            return cls(path=str(value))
        if isinstance(value, dict):
            known = {f.name for f in fields(cls)}
            unknown = sorted(set(value) - known)
            if unknown:
                raise ConfigError(f"unknown data-source setting(s): {', '.join(unknown)}.")
            return cls(**value)
        raise ConfigError(f"a data source is a path, a hub id or a dict (got {type(value).__name__}).")

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["label_names"] = list(self.label_names) if self.label_names is not None else None
        return data

    # ------------------------------------------------------------------ derived forms

    def portable(self) -> DataSource:
        """The same source with local paths made absolute, so that it resolves from any directory.

        A hub id such as `clue/tnews` stays as it is.
        """

        def absolute(value: str | None) -> str | None:
            if value is None:
                return None
            path = Path(value).expanduser()
            if path.exists():
                return str(path.resolve())
            parent = path.parent  # a glob: make its folder absolute
            if any(ch in value for ch in "*?[") and parent.exists():
                return str(parent.resolve() / path.name)
            return value

        return replace(self, path=absolute(self.path), labels=absolute(self.labels))

    def relative_to(self, folder: str | Path) -> DataSource:
        """The same source with its local paths written relative to `folder` (hub ids as they are): how a
        report kept in `folder` names it, without the machine's own prefix.

        Args:
            folder: the folder the paths are written from.
        """
        base = os.path.realpath(folder)

        def relative(value: str | None) -> str | None:
            return os.path.relpath(value, base) if value is not None and os.path.isabs(value) else value

        portable = self.portable()
        return replace(portable, path=relative(portable.path), labels=relative(portable.labels))

    def with_label_names(self, names: list[str] | tuple[str, ...]) -> DataSource:
        return replace(self, label_names=tuple(names))

    def same_data(self, other: DataSource | str | dict[str, Any]) -> bool:
        """Whether two sources name the same data the same way (paths compared absolute).

        Recorded `label_names` count only when both sides have them.
        """
        a, b = self.portable(), DataSource.coerce(other).portable()
        if a.label_names is None or b.label_names is None:
            a, b = replace(a, label_names=None), replace(b, label_names=None)
        return a == b

    def changed(self) -> dict[str, Any]:
        """The settings that differ from the defaults, other than `path` and `label_names`."""
        default = DataSource()
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name not in ("path", "label_names") and getattr(self, f.name) != getattr(default, f.name)
        }

    def describe(self) -> str:
        """One line for logs and reports: the path, then each non-default setting."""
        extra = ", ".join(f"{k.replace('_', '-')}={v}" for k, v in self.changed().items())
        return f"{self.path} ({extra})" if extra else self.path

    def __str__(self) -> str:
        return self.describe()


def describe_data(value: Any) -> str:
    """`DataSource.describe()` of a recorded value (string or dict); anything unreadable as is."""
    try:
        return DataSource.coerce(value).describe()
    except (ConfigError, TypeError):
        return str(value)

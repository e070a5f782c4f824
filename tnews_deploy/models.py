"""Installed model packages: finding an export folder by a package's name.

`tnews-deploy package` (`tnews_deploy.model_package`) turns an export folder into a wheel; installed, the wheel
registers its folder under the entry-point group `tnews_deploy.models` (name: the package's normalised name,
value: the folder's path in the package). So `Predictor("tnews-int8")`, `tnews-deploy predict tnews-int8 …`,
`score` and `serve` find the folder by name, through the installed distributions' metadata: no search of
paths. An existing folder always wins over a package of the same name. The folder is then loaded like any other
export (the manifest's sha256 checks included).

The convention follows spaCy's model packages (`spacy.load("en_core_web_sm")`), with an entry point instead of
an import by name, so that listing the installed models needs no imports.

The bundled model: the package ships one export folder, `tnews_deploy/default_model/` (`BUNDLED_MODEL_DIR`),
found by the names `default` and `tnews-compact` (`BUNDLED_MODEL_NAME`). It is *the default model*, what
`Predictor()`, `tnews-deploy predict TEXT`, `score FILE` and `serve` load when no model is given, unless the
environment variable `TNEWS_DEPLOY_MODEL` (`MODEL_ENV`: a folder or a name) names another; an explicit model always
wins over both. Resolution order for a name: an existing path, then the bundled model's names, then the installed
model packages.

Stdlib + `packaging` only: importing this module loads no model library.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Literal

from packaging.utils import InvalidName, canonicalize_name

from .errors import ModelLoadError

ENTRY_POINT_GROUP = "tnews_deploy.models"
BUNDLED_MODEL_NAME = "tnews-compact"  # the bundled model's name (its manifest's `release.name` says the same)
DEFAULT_ALIAS = "default"  # the other name of the bundled model
BUNDLED_MODEL_DIR = Path(__file__).parent / "default_model"
MODEL_ENV = "TNEWS_DEPLOY_MODEL"  # a folder or a name: the default model instead of the bundled one
_BUNDLED_KEYS = frozenset({BUNDLED_MODEL_NAME, DEFAULT_ALIAS})
_PATH_MARKERS = ("/", "\\")
_MODEL_FILES = ("model.onnx", "manifest.json")  # a folder holding one of them is a model folder (`score`)


@dataclass(frozen=True)
class ModelPackage:
    """One installed model package.

    Args:
        name: the name it is found by (normalised: lower case, runs of `-_.` as one `-`).
        distribution: the installed distribution's name as written in its metadata.
        version: the distribution's version.
        entry_point: its `tnews_deploy.models` entry point (`module:MODEL_DIR`).
    """

    name: str
    distribution: str
    version: str
    entry_point: EntryPoint

    def folder(self) -> Path:
        """The export folder inside the installed package (imports the package's small `__init__`)."""
        try:
            folder = self.entry_point.load()
        except Exception as exc:  # an uninstalled-but-listed, broken or foreign entry point
            raise ModelLoadError(
                f"{self.name}: the installed model package {self.distribution} {self.version} is broken "
                f"({self.entry_point.value}: {type(exc).__name__}: {exc}). Reinstall it: pip install "
                f"--force-reinstall WHEEL."
            ) from exc
        if not isinstance(folder, (str, os.PathLike)):
            raise ModelLoadError(
                f"{self.name}: the {ENTRY_POINT_GROUP} entry point of {self.distribution} names "
                f"{type(folder).__name__}, not a folder. Rebuild the package with `tnews-deploy package`."
            )
        return Path(folder)


def model_key(name: str) -> str | None:
    """`name` normalised as a package name (PEP 503), or None when it is not a valid package name."""
    try:
        return canonicalize_name(name, validate=True)
    except InvalidName:
        return None


def installed_models() -> dict[str, ModelPackage]:
    """The model packages installed in this environment, by normalised name (the first on sys.path wins)."""
    found: dict[str, ModelPackage] = {}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        key = model_key(entry.name)
        if key is None or key in found:
            continue
        dist = entry.dist
        found[key] = ModelPackage(
            name=key,
            distribution=dist.name if dist else entry.module,
            version=dist.version if dist else "?",
            entry_point=entry,
        )
    return found


def _listing(packages: dict[str, ModelPackage]) -> str:
    if not packages:
        return "no model package is installed here"
    return "installed model packages: " + ", ".join(f"{p.name} {p.version}" for p in packages.values())


@dataclass(frozen=True)
class ResolvedModel:
    """Where a model argument led (`locate_model`).

    Args:
        folder: the export folder.
        kind: "folder" (a path given), "bundled" (the model shipped in this package) or "package" (an installed
            model package, found by name).
        name: the bundled model's or the package's name; None for a folder.
        version: the package's version; None for a folder or the bundled model (its manifest's `release` says it).
        from_env: found through `TNEWS_DEPLOY_MODEL` (no model was given).
    """

    folder: Path
    kind: Literal["folder", "bundled", "package"]
    name: str | None = None
    version: str | None = None
    from_env: bool = False

    def label(self, name: str, version: str | None) -> str:
        """One line naming the model for people: `tnews-compact 1.0.0 (bundled)`, `fp32 (folder exports/fp32)`.

        Args:
            name: the model's name (`Predictor.model_name`).
            version: its version, or None when unknown.
        """
        where = {"bundled": "bundled", "package": "installed model package"}.get(self.kind, f"folder {self.folder}")
        via = f", from {MODEL_ENV}" if self.from_env else ""
        return f"{name}{' ' + version if version else ''} ({where}{via})"


def model_identity(resolved: ResolvedModel, manifest: dict) -> tuple[str, str | None]:
    """(name, version) of a located model: its manifest's `release` name/version (the bundled model), else the
    installed model package's or bundled model's name/version it was found by, else the folder's name and None.

    Args:
        resolved: where the model was found (`locate_model`).
        manifest: its manifest.json, parsed (`{}` when there is none).
    """
    release = manifest.get("release")
    release = release if isinstance(release, dict) else {}

    def said(key: str) -> str | None:
        value = release.get(key)
        return value if isinstance(value, str) and value.strip() else None

    name = said("name") or resolved.name or Path(os.path.abspath(resolved.folder)).name
    return name, said("version") or resolved.version


def is_bundled_name(name: str) -> bool:
    """Whether `name` names the bundled model (`default` or `tnews-compact`, compared like package names)."""
    return model_key(name) in _BUNDLED_KEYS


def bundled_model() -> Path:
    """The bundled model's folder (`BUNDLED_MODEL_DIR`).

    Raises:
        ModelLoadError: the folder is not there (a source checkout without it, or a broken install); the
            message says what to do.
    """
    folder = BUNDLED_MODEL_DIR
    if not folder.is_dir():
        raise ModelLoadError(
            f"the bundled model ({BUNDLED_MODEL_NAME}) is not in this installation: {folder} is missing (a source "
            f"checkout it has not been added to, or a broken install). Pass a model: an export folder (written by "
            f"`tnews-deploy export`) or an installed model package's name, or set {MODEL_ENV} to one; or reinstall "
            f"the package: pip install --force-reinstall tnews-deploy."
        )
    return folder


def locate_model(name_or_path: str | os.PathLike | None = None) -> ResolvedModel:
    """The export folder `name_or_path` stands for, and how it was found.

    Args:
        name_or_path: in this order: an existing folder (used as given); `default` or `tnews-compact`, the bundled
            model; the name of an installed model package (`tnews-deploy package`, then `pip install` the wheel;
            matched like pip matches names: case-insensitive, `-`, `_` and `.` alike). None: the default model,
            which is what `TNEWS_DEPLOY_MODEL` names when it is set (a folder or a name, resolved the same way),
            else the bundled model.

    Returns:
        The folder and how it was found (`ResolvedModel`).

    Raises:
        ModelLoadError: neither an existing path, nor the bundled model, nor an installed model package (the
            message lists the installed ones and says how to make one); a broken package; the bundled model
            missing from this installation.
    """
    if name_or_path is None:
        chosen = os.environ.get(MODEL_ENV, "").strip()
        if not chosen:
            return ResolvedModel(bundled_model(), "bundled", BUNDLED_MODEL_NAME)
        try:
            resolved = locate_model(chosen)
        except ModelLoadError as exc:
            raise ModelLoadError(f"{MODEL_ENV}={chosen}: {exc}") from exc
        return ResolvedModel(resolved.folder, resolved.kind, resolved.name, resolved.version, from_env=True)
    path = Path(name_or_path)
    if path.exists() or path.is_symlink():
        return ResolvedModel(path, "folder")
    text = os.fspath(name_or_path)
    key = model_key(text) if isinstance(text, str) else None
    if key is None:  # a path (it has a separator or other characters a name cannot have)
        raise ModelLoadError(f"{path}: no such model folder. Pass a folder written by `tnews-deploy export`.")
    if key in _BUNDLED_KEYS:
        return ResolvedModel(bundled_model(), "bundled", BUNDLED_MODEL_NAME)
    packages = installed_models()
    if key in packages:
        package = packages[key]
        folder = package.folder()
        if not folder.is_dir():
            raise ModelLoadError(
                f"{text}: the installed model package {package.distribution} {package.version} has no "
                f"folder {folder}. Reinstall it: pip install --force-reinstall WHEEL."
            )
        return ResolvedModel(folder, "package", package.name, package.version)
    raise ModelLoadError(
        f"{text}: no such model folder, and no installed model package of that name ({_listing(packages)}; the "
        f"bundled model is {DEFAULT_ALIAS!r} or {BUNDLED_MODEL_NAME!r}). "
        f"Pass a folder written by `tnews-deploy export`, or a model package's name: build one with "
        f"`tnews-deploy package EXPORT_DIR --name {text} --version 1.0.0 --output dist/`, then "
        f"`pip install dist/{key.replace('-', '_')}-1.0.0-py3-none-any.whl`."
    )


def resolve_model(name_or_path: str | os.PathLike | None = None) -> Path:
    """The export folder `name_or_path` stands for: `locate_model(name_or_path).folder` (see it for the order).

    Args:
        name_or_path: an existing folder (returned as given), `default` / `tnews-compact` (the bundled model), the
            name of an installed model package, or None (the default model: `TNEWS_DEPLOY_MODEL`, else bundled).

    Raises:
        ModelLoadError: see `locate_model`.
    """
    return locate_model(name_or_path).folder


def is_known_model(name: str) -> bool:
    """Whether `name` is the bundled model's name or an installed model package's (no path is looked at)."""
    key = model_key(name)
    return key is not None and (key in _BUNDLED_KEYS or key in installed_models())


def looks_like_path(text: str) -> bool:
    """Whether a command-line word is plainly meant as a path: ASCII without whitespace, and it has a `/` or `\\`,
    starts with `.` or `~`, or ends in `.onnx` (a title or sentence does not look so)."""
    if not text or not text.isascii() or any(c.isspace() for c in text):
        return False
    return any(m in text for m in _PATH_MARKERS) or text.startswith((".", "~")) or text.lower().endswith(".onnx")


def split_predict_arguments(args: Sequence[str]) -> tuple[str | None, tuple[str, ...]]:
    """`predict [MODEL] [TEXTS]...`: (the model or None for the default one, the texts).

    The first word is the model when it is an existing folder, the bundled model's or an installed model
    package's name, or looks like a path (`looks_like_path`: then a missing one is an error, "no such model
    folder", never quietly a text). Otherwise every word is a text.

    Args:
        args: the command's positional words.
    """
    if not args:
        return None, ()
    first = args[0]
    if Path(first).is_dir() or is_known_model(first) or looks_like_path(first):
        return first, tuple(args[1:])
    return None, tuple(args)


def split_score_arguments(args: Sequence[str]) -> tuple[str | None, tuple[str, ...]]:
    """`score [MODEL] INPUT...`: (the model or None for the default one, the inputs).

    The first word is the model only when it is an existing folder holding model.onnx or manifest.json, or the
    bundled model's or an installed model package's name; otherwise every word is an input (a file, folder or
    glob).

    Args:
        args: the command's positional words.
    """
    if not args:
        return None, ()
    first = args[0]
    folder = Path(first)
    if (folder.is_dir() and any((folder / name).exists() for name in _MODEL_FILES)) or is_known_model(first):
        return first, tuple(args[1:])
    return None, tuple(args)

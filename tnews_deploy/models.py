"""Installed model packages: finding an export folder by a package's name.

`tnews-deploy package` (`tnews_deploy.model_package`) turns an export folder into a wheel; installed, the wheel
registers its folder under the entry-point group `tnews_deploy.models` (name: the package's normalised name,
value: the folder's path in the package). So `Predictor("tnews-int8")`, `tnews-deploy predict tnews-int8 …`,
`score` and `serve` find the folder by name, through the installed distributions' metadata: no search of
paths. An existing folder always wins over a package of the same name. The folder is then loaded like any other
export (the manifest's sha256 checks included).

The convention follows spaCy's model packages (`spacy.load("en_core_web_sm")`), with an entry point instead of
an import by name, so that listing the installed models needs no imports.

Stdlib + `packaging` only: importing this module loads no model library.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

from packaging.utils import InvalidName, canonicalize_name

from .errors import ModelLoadError

ENTRY_POINT_GROUP = "tnews_deploy.models"


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


def resolve_model(name_or_path: str | os.PathLike) -> Path:
    """The export folder `name_or_path` stands for.

    Args:
        name_or_path: an existing folder (returned as given), or the name of an installed model package
            (`tnews-deploy package`, then `pip install` the wheel; matched like pip matches names:
            case-insensitive, `-`, `_` and `.` alike).

    Returns:
        The folder: `name_or_path` itself when it exists, else the installed package's folder.

    Raises:
        ModelLoadError: neither an existing path nor an installed model package (the message lists the installed
            ones and says how to make one), or a broken package.
    """
    path = Path(name_or_path)
    if path.exists() or path.is_symlink():
        return path
    text = os.fspath(name_or_path)
    key = model_key(text) if isinstance(text, str) else None
    if key is None:  # a path (it has a separator or other characters a name cannot have)
        raise ModelLoadError(f"{path}: no such model folder. Pass a folder written by `tnews-deploy export`.")
    packages = installed_models()
    if key in packages:
        folder = packages[key].folder()
        if not folder.is_dir():
            raise ModelLoadError(
                f"{text}: the installed model package {packages[key].distribution} {packages[key].version} has no "
                f"folder {folder}. Reinstall it: pip install --force-reinstall WHEEL."
            )
        return folder
    raise ModelLoadError(
        f"{text}: no such model folder, and no installed model package of that name ({_listing(packages)}). "
        f"Pass a folder written by `tnews-deploy export`, or a model package's name: build one with "
        f"`tnews-deploy package EXPORT_DIR --name {text} --version 1.0.0 --output dist/`, then "
        f"`pip install dist/{key.replace('-', '_')}-1.0.0-py3-none-any.whl`."
    )

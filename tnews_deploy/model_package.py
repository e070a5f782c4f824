"""`tnews-deploy package`: an export folder as a pip-installable wheel (a model package).

Like spaCy's model packages (`spacy package`): the wheel holds the verified export folder inside a small Python
package, depends on the runtime (`tnews-deploy>=` the version that verified it), and carries the model card as
its long description. Installed, it registers the folder under the `tnews_deploy.models` entry-point group, so
`Predictor("NAME")`, `tnews-deploy predict NAME …`, `score` and `serve` find it by name (`tnews_deploy.models`).

The wheel is written with the standard library (`zipfile`), following the binary distribution format
(https://packaging.python.org/en/latest/specifications/binary-distribution-format/): `NAME-VERSION.dist-info/`
with METADATA (core metadata 2.1), WHEEL, entry_points.txt and RECORD (sha256 and size of every file). Names are
normalised per PEP 503/427 and versions per PEP 440 (`packaging`). The zip entries carry a fixed timestamp
(`SOURCE_DATE_EPOCH` when set), so the same folder, name and version give the same bytes.

Layout of the wheel for `--name tnews-int8 --version 1.0.0`:

    tnews_int8/__init__.py          MODEL_DIR, __version__, load(**Predictor options)
    tnews_int8/tnews-int8/…         the export folder (model.onnx, tokenizer.json, config.json, manifest.json, …)
    tnews_int8-1.0.0.dist-info/     METADATA, WHEEL, entry_points.txt ([tnews_deploy.models] tnews-int8 = …), RECORD

Runtime layer: stdlib, `packaging` and the predictor (onnxruntime); never torch.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import keyword
import logging
import os
import re
import stat
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.utils import InvalidName, canonicalize_name
from packaging.version import InvalidVersion, Version

from . import __version__ as RUNTIME_VERSION
from .errors import ConfigError, ModelError, UserError, disk_full_error
from .export.card import CARD_FILE
from .models import ENTRY_POINT_GROUP, installed_models

logger = logging.getLogger(__name__)

_FRONT_MATTER = re.compile(r"\A---\r?\n.*?\r?\n---[ \t]*\r?\n", re.DOTALL)
_CHUNK = 1 << 22
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can carry

_INIT_TEMPLATE = '''"""The tnews-deploy model package {name} {version}: a verified, exported ONNX text classifier.

Written by `tnews-deploy package`. Installed, it is found by name (the `{group}` entry point):

    from tnews_deploy import Predictor
    predictor = Predictor({name!r})

or `tnews-deploy predict {name} "…"`, `tnews-deploy score {name} …`, `tnews-deploy serve {name}`.
"""

from pathlib import Path

__version__ = {version!r}
MODEL_DIR = Path(__file__).resolve().parent / {folder!r}


def load(**options):
    """A `tnews_deploy.Predictor` for this model; `options` are the Predictor's keyword arguments."""
    from tnews_deploy import Predictor

    return Predictor(MODEL_DIR, **options)
'''


@dataclass(frozen=True)
class PackageConfig:
    """One `tnews-deploy package` job; validates and normalises itself.

    Args:
        model_dir: the export folder (`tnews-deploy export`) to package.
        name: the package's name (PEP 508: letters, digits, `-`, `_`, `.`; starts and ends with a letter or
            digit). The model is found by it once installed, compared like pip compares names.
        version: the package's version (PEP 440, e.g. 1.0.0; written in its normal form).
        output: the folder the wheel is written to (created when missing).
        force: replace a wheel of the same name and version in `output`.
    """

    model_dir: Path
    name: str
    version: str
    output: Path = Path("dist")
    force: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "model_dir", Path(self.model_dir))
        object.__setattr__(self, "output", Path(self.output))
        try:
            canonicalize_name(self.name, validate=True)
        except InvalidName:
            raise ConfigError(
                f"--name {self.name!r} is not a valid package name: use letters, digits, '-', '_' and '.', starting "
                "and ending with a letter or digit (e.g. tnews-int8)."
            ) from None
        if not self.module[0].isalpha() or keyword.iskeyword(self.module):
            raise ConfigError(
                f"--name {self.name!r}: a model package's name must start with a letter (its Python "
                f"package is named {self.module}); e.g. tnews-{self.name}."
            )
        try:
            object.__setattr__(self, "version", str(Version(self.version)))
        except InvalidVersion:
            raise ConfigError(
                f"--version {self.version!r} is not a valid version (PEP 440): use e.g. 1.0.0, 1.0.0rc1 or 2024.6.1."
            ) from None

    @property
    def key(self) -> str:
        """The name the model is found by: normalised per PEP 503 (tnews-int8)."""
        return canonicalize_name(self.name)

    @property
    def module(self) -> str:
        """The name of the wheel's distribution and Python package (PEP 427 escaping: tnews_int8)."""
        return self.key.replace("-", "_")

    @property
    def wheel_name(self) -> str:
        return f"{self.module}-{self.version}-py3-none-any.whl"


def _b64_sha256(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _zip_time() -> tuple[int, int, int, int, int, int]:
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if epoch.isdigit():
        return max(_ZIP_EPOCH, time.gmtime(int(epoch))[:6])
    return _ZIP_EPOCH


class _WheelWriter:
    """Adds files to an open wheel (zip) and keeps the RECORD lines."""

    def __init__(self, archive: zipfile.ZipFile) -> None:
        self.archive = archive
        self.records: list[str] = []
        self.date_time = _zip_time()

    def _info(self, arcname: str) -> zipfile.ZipInfo:
        info = zipfile.ZipInfo(arcname, date_time=self.date_time)
        info.external_attr = (stat.S_IFREG | 0o644) << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        return info

    def add_bytes(self, arcname: str, data: bytes) -> None:
        self.archive.writestr(self._info(arcname), data)
        self.records.append(f"{arcname},sha256={_b64_sha256(hashlib.sha256(data).digest())},{len(data)}")

    def add_file(self, arcname: str, path: Path) -> str:
        """Copy `path` in; returns its sha256 (hex) as read while copying."""
        digest, size = hashlib.sha256(), 0
        with path.open("rb") as source, self.archive.open(self._info(arcname), "w", force_zip64=True) as target:
            while chunk := source.read(_CHUNK):
                digest.update(chunk)
                target.write(chunk)
                size += len(chunk)
        self.records.append(f"{arcname},sha256={_b64_sha256(digest.digest())},{size}")
        return digest.hexdigest()

    def add_record(self, arcname: str) -> None:
        self.records.append(f"{arcname},,")
        self.archive.writestr(self._info(arcname), "\n".join(self.records) + "\n")


def _long_description(model_dir: Path, config: PackageConfig) -> str:
    """The model card without its hub-style YAML front matter (a PyPI page shows it as text), or a short note."""
    card = model_dir / CARD_FILE
    if card.is_file():
        return _FRONT_MATTER.sub("", card.read_text(encoding="utf-8"), count=1).lstrip("\n")
    return (
        f"# {config.name}\n\nA text classifier exported and verified by tnews-deploy. Installed, load it with "
        f"`tnews_deploy.Predictor({config.name!r})` or `tnews-deploy predict {config.name} TEXT`.\n"
    )


def _summary(manifest: dict[str, Any], labels: int) -> str:
    quantization = (manifest.get("quantization") or {}).get("mode") or "none"
    f1 = ((manifest.get("verification") or {}).get("onnx") or {}).get("macro_f1")
    kind = "fp32" if quantization == "none" else quantization
    scored = f", verified macro-F1 {f1:.4f}" if isinstance(f1, (int, float)) else ""
    return f"A tnews-deploy text classifier: {labels} labels, {kind} ONNX{scored}."


def _metadata(config: PackageConfig, summary: str, description: str) -> str:
    headers = [
        ("Metadata-Version", "2.1"),
        ("Name", config.name),
        ("Version", config.version),
        ("Summary", summary),
        ("Requires-Python", ">=3.10"),
        # The runtime that verified the folder here, or a newer one (newer runtimes load older exports).
        ("Requires-Dist", f"tnews-deploy>={RUNTIME_VERSION}"),
        ("Keywords", "tnews-deploy,onnx,text-classification"),
        ("Description-Content-Type", "text/markdown; charset=UTF-8"),
    ]
    return "".join(f"{key}: {value}\n" for key, value in headers) + "\n" + description


def _check_module_name(config: PackageConfig) -> None:
    """Refuse a name whose Python package would overwrite an importable module that is not a model package."""
    spec = importlib.util.find_spec(config.module)
    if spec is None:
        return
    ours = {package.entry_point.module.partition(".")[0] for package in installed_models().values()}
    if config.module not in ours:
        where = spec.origin or (list(spec.submodule_search_locations or []) or ["?"])[0]
        raise ConfigError(
            f"--name {config.name}: its Python package would be {config.module}, which is already a "
            f"module here ({where}); installing it would overwrite that. Pick another name, e.g. "
            f"tnews-{config.key}."
        )


def _verified_folder(model_dir: Path) -> tuple[Path, dict[str, Any], int, dict[Path, str]]:
    """The export folder loaded and checked by the runtime (`Predictor`: files, sha256, labels, model), its
    manifest, its number of labels and the sha256 the manifest records per file."""
    from .predictor import MANIFEST_FILE, Predictor, _manifest_checksums

    predictor = Predictor(model_dir, threads=1)
    folder, manifest = predictor.model_dir, predictor.manifest
    if not manifest.get("model"):
        raise ModelError(
            f"{folder}: no {MANIFEST_FILE} with the model's sha256, so an installed copy could not be "
            "checked. Package a folder written by `tnews-deploy export`."
        )
    if (manifest.get("verification") or {}).get("passed") is not True:
        raise ModelError(
            f"{folder / MANIFEST_FILE}: records no passed verification. Package a folder written by "
            "`tnews-deploy export` (it writes only models that pass)."
        )
    checksums = _manifest_checksums(folder / MANIFEST_FILE, manifest)
    return folder, manifest, len(predictor.labels), checksums


def build_model_package(config: PackageConfig) -> Path:
    """Write the wheel of `config.model_dir` into `config.output`.

    The folder is first loaded as the runtime would (`Predictor`: every file, sha256 against the manifest,
    labels, the model), and must hold a manifest recording a passed verification. The files are then copied
    into the wheel, and their sha256 checked against the manifest once more while copying. The wheel is written
    aside and renamed into place when complete.

    Args:
        config: the folder, name, version and output folder.

    Returns:
        The wheel's path.

    Raises:
        ModelLoadError / ModelError: the folder is not a verified export (the message names the file).
        ConfigError: an invalid name or version, or a name that would overwrite another Python module.
        UserError: the wheel exists (without `force`).
        DiskFullError: the disk filled up while writing (nothing is left behind).
    """
    _check_module_name(config)
    folder, manifest, labels, checksums = _verified_folder(config.model_dir)
    target = config.output / config.wheel_name
    if target.exists() and not config.force:
        raise UserError(f"{target}: exists. Pass --force to replace it, or give another --version.")
    config.output.mkdir(parents=True, exist_ok=True)
    partial = config.output / f".{config.wheel_name}.partial-{os.getpid()}"
    data_dir = f"{config.module}/{config.key}"
    dist_info = f"{config.module}-{config.version}.dist-info"
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    try:
        with zipfile.ZipFile(partial, "w") as archive:
            wheel = _WheelWriter(archive)
            wheel.add_bytes(
                f"{config.module}/__init__.py",
                _INIT_TEMPLATE.format(
                    name=config.name, version=config.version, folder=config.key, group=ENTRY_POINT_GROUP
                ).encode(),
            )
            for path in files:
                sha256 = wheel.add_file(f"{data_dir}/{path.relative_to(folder).as_posix()}", path)
                expected = checksums.get(path)
                if expected is not None and sha256 != expected:
                    raise ModelError(
                        f"{path}: sha256 differs from the manifest; the file changed while it was "
                        "being packaged. Package it again once nothing writes to the folder."
                    )
            description = _long_description(folder, config)
            wheel.add_bytes(
                f"{dist_info}/METADATA", _metadata(config, _summary(manifest, labels), description).encode("utf-8")
            )
            wheel.add_bytes(
                f"{dist_info}/WHEEL",
                (
                    f"Wheel-Version: 1.0\nGenerator: tnews-deploy "
                    f"{RUNTIME_VERSION}\nRoot-Is-Purelib: true\n"
                    "Tag: py3-none-any\n"
                ).encode(),
            )
            wheel.add_bytes(
                f"{dist_info}/entry_points.txt",
                f"[{ENTRY_POINT_GROUP}]\n{config.key} = {config.module}:MODEL_DIR\n".encode(),
            )
            wheel.add_record(f"{dist_info}/RECORD")
        os.replace(partial, target)
    except BaseException as exc:
        partial.unlink(missing_ok=True)
        needed = sum(p.stat().st_size for p in files)
        full = (
            disk_full_error(exc, config.output, "while writing the wheel", needed=needed)
            if isinstance(exc, Exception)
            else None
        )
        if full is not None:
            raise full from exc
        raise
    logger.info("packaged %s (%d files) as %s %s", folder, len(files), config.name, config.version)
    return target


def package_model(
    model_dir: str | os.PathLike, name: str, version: str, output: str | os.PathLike = "dist", *, force: bool = False
) -> Path:
    """Package an export folder as a wheel; see `PackageConfig` (the arguments) and `build_model_package`."""
    return build_model_package(PackageConfig(Path(model_dir), name, version, Path(output), force))


__all__ = ["PackageConfig", "build_model_package", "package_model"]

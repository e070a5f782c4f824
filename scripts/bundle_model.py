"""Maintainers: make a verified export the model bundled with the package (`tnews_deploy/default_model/`).

    python scripts/bundle_model.py EXPORT_DIR --version 1.0.0

The export folder (written by `tnews-deploy export`, flat: model.onnx, tokenizer.json, config.json, manifest.json,
README.md, ...) is checked and copied:

1. it must be at most 20 MB (all its files; the wheel stays small) and hold no subfolder;
2. it must load in `tnews_deploy.Predictor` (every file against the manifest's sha256, the labels, the model) and
   its manifest must record a passed verification;
3. it is copied into a temporary sibling of the target, whose manifest.json gets a top-level `release`
   (name, version, the export's model.onnx sha256, the export folder's name, the date); manifest.json is not
   itself checksummed, the files it lists are, so the copy loads as the export did;
4. the copy is loaded once more, and only then put in place with renames (an older bundled model is moved aside,
   the new one renamed in, the old one removed): a failure at any step leaves the previous bundled model as it was.

What it did is logged on stderr. Exit status 2 with one line on a refused export.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
from datetime import datetime, timezone
from pathlib import Path

from packaging.version import InvalidVersion, Version

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))

from tnews_deploy.errors import UserError  # noqa: E402
from tnews_deploy.models import BUNDLED_MODEL_DIR, BUNDLED_MODEL_NAME  # noqa: E402

logger = logging.getLogger("bundle_model")

MAX_BYTES = 20_000_000  # 20 MB: the bundled folder's budget (the wheel's is 25 MB)
MANIFEST = "manifest.json"


def folder_bytes(folder: Path) -> int:
    """The size of the files directly in `folder`; `UserError` when it holds a subfolder (not a flat export)."""
    total = 0
    for path in sorted(folder.iterdir()):
        if path.is_dir():
            raise UserError(f"{path}: a subfolder; the bundled model is a flat export folder. Remove it first.")
        total += path.stat().st_size
    return total


def check_export(export: Path, max_bytes: int) -> dict:
    """The export's manifest once `export` is small enough and loads in `Predictor` with a passed verification."""
    from tnews_deploy.predictor import Predictor

    if not export.is_dir():
        raise UserError(f"{export}: no such folder. Pass a folder written by `tnews-deploy export`.")
    size = folder_bytes(export)
    if size > max_bytes:
        raise UserError(
            f"{export}: {size / 1e6:.1f} MB, more than the bundled model's {max_bytes / 1e6:.0f} MB. Bundle a "
            "smaller export (int8, a distilled student, a trimmed vocabulary)."
        )
    predictor = Predictor(export, threads=1)  # every file against the manifest's sha256, labels, model
    manifest = predictor.manifest
    if not (manifest.get("model") or {}).get("sha256"):
        raise UserError(f"{export / MANIFEST}: missing or without the model's sha256. Bundle a `tnews-deploy export`.")
    if (manifest.get("verification") or {}).get("passed") is not True:
        raise UserError(f"{export / MANIFEST}: records no passed verification. Bundle a `tnews-deploy export`.")
    logger.info("%s: %.1f MB, %d labels, loads and verifies", export, size / 1e6, len(predictor.labels))
    return manifest


def release_record(export: Path, manifest: dict, name: str, version: str) -> dict:
    """The manifest's `release`: what the bundled copy is and where it came from."""
    return {
        "name": name,
        "version": version,
        "source_export": export.resolve().name,
        "source_model_sha256": manifest["model"]["sha256"],
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def bundle(
    export: Path,
    version: str,
    target: Path = BUNDLED_MODEL_DIR,
    name: str = BUNDLED_MODEL_NAME,
    max_bytes: int = MAX_BYTES,
) -> Path:
    """Copy the verified `export` to `target` with a `release` in its manifest, replacing what is there.

    Args:
        export: the export folder.
        version: the release version (PEP 440, written in its normal form).
        target: the bundled model's folder (default: the package's `default_model/`).
        name: the release name.
        max_bytes: the largest folder accepted.

    Returns:
        `target`.

    Raises:
        UserError: an invalid version, a folder that is too large, not flat, not a verified export, or a copy
            that does not load.
    """
    from tnews_deploy.predictor import Predictor

    try:
        version = str(Version(version))
    except InvalidVersion:
        raise UserError(f"--version {version!r} is not a valid version (PEP 440), e.g. 1.0.0.") from None
    export, target = Path(export), Path(target)
    manifest = check_export(export, max_bytes)
    release = release_record(export, manifest, name, version)
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        shutil.copytree(export, partial)
        (partial / MANIFEST).write_text(
            json.dumps({**manifest, "release": release}, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        copy = Predictor(partial, threads=1)
        if (copy.model_name, copy.model_version) != (name, version):
            raise UserError(f"{partial}: loads as {copy.model_name} {copy.model_version}, not {name} {version}.")
        if target.exists():
            os.replace(target, old)
            logger.info("moved the previous bundled model aside (%s)", old.name)
        os.replace(partial, target)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        if old.exists() and not target.exists():
            os.replace(old, target)  # put the previous one back
        raise
    shutil.rmtree(old, ignore_errors=True)
    logger.info(
        "bundled %s as %s %s in %s (%.1f MB, model.onnx sha256 %s)",
        export,
        name,
        version,
        target,
        folder_bytes(target) / 1e6,
        release["source_model_sha256"][:12],
    )
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("export", type=Path, help="the export folder (tnews-deploy export)")
    parser.add_argument("--version", required=True, help="the release version, e.g. 1.0.0")
    parser.add_argument("--name", default=BUNDLED_MODEL_NAME, help="the release name (default: %(default)s)")
    parser.add_argument(
        "--target", type=Path, default=BUNDLED_MODEL_DIR, help="the bundled model's folder (default: %(default)s)"
    )
    parser.add_argument("--max-mb", type=float, default=MAX_BYTES / 1e6, help="largest folder accepted, in MB")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    try:
        bundle(args.export, args.version, args.target, args.name, int(args.max_mb * 1e6))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

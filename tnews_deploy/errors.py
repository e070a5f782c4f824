"""User-facing errors.

`UserError` carries a message a person can act on; the CLI prints it as one line
and exits non-zero instead of showing a traceback.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


class UserError(Exception):
    """Bad input from the user (a path, a name, a size): say what and what to do."""


class DataError(UserError, ValueError):
    """A data source that cannot be read, or a bad row in it (the message names the file and line)."""


class ConfigError(UserError, ValueError):
    """An option value that cannot work (unknown variant, size too large, ...)."""


class ModelError(UserError, ValueError):
    """A model folder that cannot be loaded (missing weights, wrong files, ...)."""


class ModelLoadError(ModelError):
    """An exported folder that cannot be served, or a model name that is neither a folder nor an installed
    model package; the message names the file (or the name) and what to do."""


class DiskFullError(UserError, OSError):
    """A write failed for want of disk space or quota (ENOSPC, EDQUOT); the message names the folder.

    Also an `OSError` carrying that errno, so code that handles OSErrors still recognises it.
    """


def disk_full_cause(exc: BaseException) -> BaseException | None:
    """The exception behind `exc` (itself, or along its `__cause__`/`__context__` chain) that says a disk is
    full: an `OSError` with errno ENOSPC or EDQUOT, or a native library's error quoting the system's words for
    them; None when there is none."""
    words = tuple(os.strerror(code) for code in DISK_FULL_ERRNOS)
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in DISK_FULL_ERRNOS:
            return current
        if not isinstance(current, OSError) and any(w in str(current) for w in words):
            return current
        current = current.__cause__ or current.__context__
    return None


def _size(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def disk_full_error(
    exc: BaseException,
    folder: str | Path,
    doing: str,
    *,
    needed: int | None = None,
    advice: str = "free some space there or write to another disk",
) -> DiskFullError | None:
    """A one-line `DiskFullError` for `exc` when a full disk (or quota) caused it, else None.

    Args:
        exc: what a write raised.
        folder: the folder that was being written, named in the message.
        doing: what was being written ("while writing the export").
        needed: the bytes the job needs in `folder`, when known (an estimate is fine: the message says "about").
        advice: what to do, completing "...; <advice>.".
    """
    cause = disk_full_cause(exc)
    if cause is None:
        return None
    code = cause.errno if isinstance(cause, OSError) and cause.errno in DISK_FULL_ERRNOS else errno.ENOSPC
    if not isinstance(cause, OSError) and os.strerror(errno.EDQUOT) in str(cause):
        code = errno.EDQUOT
    folder = Path(folder)
    existing = next((p for p in (folder, *folder.parents) if p.is_dir()), None)
    try:
        free = f"{_size(shutil.disk_usage(existing).free)} free there" if existing else None
    except OSError:
        free = None
    need = f"about {_size(needed)} needed" if needed else None
    space = "; ".join(part for part in (free, need) if part)
    error = DiskFullError(
        f"{folder}: the disk is full ({os.strerror(code)}) {doing}{f' ({space})' if space else ''}; {advice}."
    )
    error.errno = code
    return error

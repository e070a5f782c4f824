"""Which grid worker trains which run: one exclusive lock per run, so that several `grid` processes share a folder.

Start the same `tnews-deploy grid ... --output DIR` command in several processes, for example one per
core or one per GPU: each trains the runs that no other worker holds. A worker holds a run through an
exclusive `flock` on `DIR/.claims/RUN.lock`. The kernel drops the lock when the process ends, even after a
kill -9, so a dead worker's run does not stay blocked. The next worker that reaches that run takes it, and it
resumes from its last saved step.

`flock` works between processes of one machine. Whether it works between machines over a network file system
depends on that file system (NFS v4 supports it; some setups do not). Where `fcntl` does not exist
(Windows), every run counts as free: run one worker per folder there.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import IO

try:
    import fcntl
except ImportError:  # Windows: no flock
    fcntl = None  # type: ignore[assignment]

CLAIMS_DIR = ".claims"


class RunClaim:
    """This process's claim on one run of a grid folder.

    Args:
        grid_dir: the grid folder.
        run_name: the run's folder name in it.
    """

    def __init__(self, grid_dir: Path, run_name: str) -> None:
        self.path = Path(grid_dir) / CLAIMS_DIR / f"{run_name}.lock"
        self._file: IO[str] | None = None

    def acquire(self) -> bool:
        """Take the run if no other process holds it; False if one does."""
        if fcntl is None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held by another process
            handle.close()
            return False
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
        self._file = handle
        return True

    def holder(self) -> str:
        """Who holds the run, as its lock file says ("pid N on HOST"), or "another process"."""
        try:
            return self.path.read_text(encoding="utf-8").strip() or "another process"
        except OSError:
            return "another process"

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None

    def __enter__(self) -> RunClaim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

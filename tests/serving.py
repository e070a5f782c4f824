"""A real `tnews-deploy serve` process on a free loopback port, for the tests that need one (hardening, workers)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CLI = [sys.executable, "-m", "tnews_deploy.cli"]


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(model_dir: Path, tmp_path: Path, *flags: str) -> Iterator[tuple[subprocess.Popen, int, Path]]:
    """`serve MODEL_DIR --port PORT FLAGS...`, its log in a file (a pipe nobody reads could fill up and stall it).

    Yields (process, port, log path). On the way out the process group is killed: the parent if it still runs,
    and whatever of its group (uvicorn workers) outlived it.
    """
    pytest.importorskip("uvicorn")
    port = free_port()
    log_path = tmp_path / f"serve-{port}.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            CLI + ["serve", str(model_dir), "--port", str(port), *flags],
            stdout=subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,
        )
        try:
            yield proc, port, log_path
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
            else:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

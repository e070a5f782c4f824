"""`serve --workers N` as a process tree, and the micro-batcher's adaptive window.

Real processes on 127.0.0.1 (a free port), every wait bounded, every process killed on the way out.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from serving import serving
from tnews_deploy import Predictor

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="finds worker processes in /proc")


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _ready(port: int) -> bool:
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1).status == 200
    except OSError:
        return False


def _workers(parent: int) -> list[int]:
    """The uvicorn worker processes (multiprocessing spawn children) of `parent`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and b"spawn_main" in cmdline:
            found.append(int(entry.name))
    return sorted(found)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_worker_that_cannot_load_its_model_stops_the_service_with_one_clear_line(exported, tmp_path):
    """--workers 2, the model folder deleted, a worker killed: the service exits non-zero, no respawn loop."""
    model = tmp_path / "model"
    shutil.copytree(exported.output, model)
    with serving(model, tmp_path, "--workers", "2", "--threads", "1") as (proc, port, log):
        _wait_for(lambda: _ready(port), 120, "the workers to be ready")
        workers = _workers(proc.pid)
        assert len(workers) == 2
        shutil.rmtree(model)
        os.kill(workers[0], signal.SIGKILL)
        try:
            code = proc.wait(timeout=120)  # a bound for a hang: the old code respawned the worker forever
        except subprocess.TimeoutExpired:
            pytest.fail("serve kept running with a worker that cannot load its model:\n" + log.read_text()[-3000:])
        _wait_for(lambda: not any(_alive(pid) for pid in workers), 30, "the other worker to stop too")
    stderr = log.read_text()
    assert code == 2, stderr[-3000:]
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "could not load the model" in last and "no such model folder" in last


def test_after_sigterm_new_connections_are_refused_while_a_worker_drains(exported, tmp_path):
    """--workers 2: once SIGTERM is handled the port refuses connections; the accepted request still gets its 200."""
    with serving(exported.output, tmp_path, "--workers", "2", "--threads", "1", "--graceful-timeout", "60") as (
        proc,
        port,
        log,
    ):
        _wait_for(lambda: _ready(port), 120, "the workers to be ready")
        body = json.dumps({"texts": ["今天的新闻"]}).encode()
        held = socket.create_connection(("127.0.0.1", port), timeout=30)
        try:
            # A request whose body is still to come: its worker keeps draining until the body arrives.
            held.sendall(
                b"POST /v1/classify HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body)
            )
            assert held.recv(100).startswith(b"HTTP/1.1 100 Continue")  # a worker's app reads the body
            os.kill(proc.pid, signal.SIGTERM)

            def refused() -> bool:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                except ConnectionRefusedError:
                    return True
                except OSError:
                    pass
                return False

            _wait_for(refused, 20, "a new connection to be refused after SIGTERM")
            assert proc.poll() is None  # refused while the service still drains, not because it had exited
            held.sendall(body)
            answer = b""
            while b"\r\n\r\n" not in answer:
                chunk = held.recv(4096)
                assert chunk, answer
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 200")
        finally:
            held.close()
        assert proc.wait(timeout=60) == 0, log.read_text()[-3000:]


def test_the_window_is_only_waited_while_more_requests_can_join(exported):
    """Adaptive window: a lone request and a batch that already fills a model call run at once, same answers."""
    from tnews_deploy.service import MicroBatcher

    predictor = Predictor(exported.output, threads=1)
    full = [[f"第{i}组的第{j}条新闻" for j in range(8)] for i in range(predictor.batch_size // 8)]
    big = [f"很长的新闻标题{i}" * 20 for i in range(500)]

    async def scenario():
        batcher = MicroBatcher(predictor, window_s=600.0, max_texts=4 * predictor.batch_size)
        await batcher.start()
        try:
            lone = await asyncio.wait_for(batcher.submit(["今天新闻"], 1), 60)
            # enough texts for one model call: nothing to wait for
            filled = await asyncio.wait_for(asyncio.gather(*(batcher.submit(t, 2) for t in full)), 60)
            # a lone request that arrives while another call runs does not wait for company either
            running = asyncio.ensure_future(batcher.submit(big, 1))
            await asyncio.sleep(0)
            while batcher.queue.qsize():
                await asyncio.sleep(0.001)
            during = await asyncio.wait_for(batcher.submit(["体育新闻"], 1), 60)
            await asyncio.wait_for(running, 60)
            return lone, filled, during
        finally:
            await batcher.stop()

    lone, filled, during = asyncio.run(scenario())
    assert lone == predictor.predict(["今天新闻"]) and during == predictor.predict(["体育新闻"])
    for texts, got in zip(full, filled):
        want = predictor.predict(texts, top_k=2)
        assert [[p.label for p in r] for r in got] == [[p.label for p in r] for r in want]
        assert [p.score for r in got for p in r] == pytest.approx([p.score for r in want for p in r], abs=1e-6)

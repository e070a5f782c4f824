"""The interactive API pages (/docs, /redoc) load from a CDN: off unless `serve --docs` asks for them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from tnews_deploy.service import ServiceConfig, create_app  # noqa: E402


def test_by_default_no_page_loads_from_a_cdn_and_the_document_stays(exported):
    with TestClient(create_app(ServiceConfig(model_dir=exported.output))) as client:
        for path in ("/docs", "/redoc", "/docs/oauth2-redirect"):
            response = client.get(path)
            assert response.status_code == 404, path
            assert response.json()["error"]["code"] == "not_found"
            assert response.headers["content-type"] == "application/json" and "<script" not in response.text
        assert "serve --docs" in client.get("/docs").json()["error"]["message"]
        document = client.get("/openapi.json")
        assert document.status_code == 200 and "/v1/classify" in document.json()["paths"]


def test_docs_on_serves_both_pages_and_the_same_document(exported):
    with TestClient(create_app(ServiceConfig(model_dir=exported.output))) as client:
        document = client.get("/openapi.json").json()
    with TestClient(create_app(ServiceConfig(model_dir=exported.output, docs=True))) as client:
        for path in ("/docs", "/redoc"):
            page = client.get(path)
            assert page.status_code == 200 and "/openapi.json" in page.text, path
        assert client.get("/openapi.json").json() == document


@pytest.mark.parametrize("docs", [False, True])
def test_workers_get_the_docs_setting(docs, monkeypatch):
    config = ServiceConfig(model_dir="m", docs=docs)
    for key, value in config.to_env().items():
        monkeypatch.setenv(key, value)
    assert ServiceConfig.from_env() == config


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _status(url: str) -> int | None:
    try:
        return urllib.request.urlopen(url, timeout=2).status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def test_serve_docs_flag_turns_the_page_on(exported):
    pytest.importorskip("uvicorn")
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tnews_deploy.cli",
            "serve",
            str(exported.output),
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--threads",
            "1",
            "--docs",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while _status(base + "/healthz") != 200:
            assert proc.poll() is None and time.monotonic() < deadline, "the service did not start"
            time.sleep(0.1)
        assert _status(base + "/docs") == 200
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)

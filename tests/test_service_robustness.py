"""The service under hostile or broken clients: odd JSON numbers, made-up methods and paths, control characters,
clients that leave mid-body. Each gets the documented error body, bounded metrics and a clean log."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from tnews_deploy.service import ServiceConfig, create_app  # noqa: E402
from tnews_deploy.service.schemas import ERROR_CODES  # noqa: E402

ACCESS_LOGGER = "tnews_deploy.service.access"
STANDARD_METHODS = {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}


@pytest.fixture(scope="module")
def app(exported):
    return create_app(ServiceConfig(model_dir=exported.output))  # the default limits: 256 texts, 2,000 chars


@pytest.fixture(scope="module")
def client(app):
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def _request_series(client) -> list[dict[str, str]]:
    """The label sets of `tnews_http_requests_total` in /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    text = client.get("/metrics").text
    return [
        s.labels
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "tnews_http_requests_total"
    ]


HUGE = "9" * 5000  # over Python's 4,300-digit limit for int(str)


@pytest.mark.parametrize(
    "body",
    [
        '{"texts": ["新闻"], "top_k": ' + HUGE + "}",
        '{"texts": ["新闻"], "extra": [1, {"n": -' + HUGE + "}]}",
        '{"texts": [' + HUGE + "]}",
        HUGE,
    ],
    ids=["top_k", "nested", "in_texts", "bare"],
)
def test_an_integer_of_thousands_of_digits_is_a_400_not_a_500(client, body):
    response = client.post("/v1/classify", content=body.encode(), headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_json" and "digits" in error["message"]
    assert "set_int_max_str_digits" not in error["message"]  # no server internals in the answer


def test_metrics_series_stay_bounded_whatever_methods_and_paths_clients_send(client):
    before = len(_request_series(client))
    for i in range(40):
        client.request(f"FUZZ{i}", "/healthz")
        client.request(f"x-{i}", f"/no/such/{i}")
        client.request("GET", f"/v1/classify/{i}/%0a")
    series = _request_series(client)
    methods = {labels["method"] for labels in series}
    endpoints = {labels["endpoint"] for labels in series}
    assert methods <= STANDARD_METHODS | {"other"} and "other" in methods
    assert endpoints <= {route.path for route in client.app.routes} | {"other"}
    # 120 requests with 80 made-up methods and 120 made-up paths added a handful of series, not hundreds.
    assert len(series) - before <= 6


def test_control_characters_in_the_path_are_escaped_in_the_access_log(client, caplog):
    forged = "/x%0d%0aINFO:%20%20%20%20%20GET%20/healthz%20200%1b[2K%E2%80%A8%5C"
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        assert client.get(forged).status_code == 404
        assert client.get("/新闻").status_code == 404
    records = [r for r in caplog.records if r.name == ACCESS_LOGGER]
    assert len(records) == 2
    line, readable = records[0].getMessage(), records[1].getMessage()
    for raw in ("\r", "\n", "\x1b", "\u2028"):
        assert raw not in line and raw not in records[0].path
    assert line.startswith("GET /x\\r\\nINFO:     GET /healthz 200\\x1b[2K\\u2028\\\\ 404 ")
    assert records[0].path == "/x\\r\\nINFO:     GET /healthz 200\\x1b[2K\\u2028\\\\"
    assert readable.startswith("GET /新闻 404 ")  # printable text, Chinese included, stays as it is


def test_a_trailing_slash_is_404_not_a_redirect(client):
    for method, path in (("POST", "/v1/classify/"), ("GET", "/healthz/"), ("GET", "/v1/model/")):
        response = client.request(
            method, path, json={"texts": ["新闻"]}, headers={"host": "evil.example"}, follow_redirects=False
        )
        assert response.status_code == 404, (method, path, response.status_code)
        assert "location" not in response.headers
        assert response.json()["error"]["code"] == "not_found"


def test_the_schema_limits_answer_422_and_413_is_left_to_the_byte_cap(client):
    too_many = client.post("/v1/classify", json={"texts": ["新闻"] * 257})
    assert too_many.status_code == 422
    assert too_many.json()["error"]["code"] == "too_many_texts" and "256" in too_many.json()["error"]["message"]
    too_long = client.post("/v1/classify", json={"texts": ["新闻", "长" * 2001]})
    assert too_long.status_code == 422
    assert too_long.json()["error"]["code"] == "text_too_long" and too_long.json()["error"]["positions"] == [1]
    assert client.post("/v1/classify", json={"texts": ["新闻"] * 256}).status_code == 200  # the limit itself
    assert client.post("/v1/classify", json={"texts": ["长" * 2000]}).status_code == 200

    document = client.get("/openapi.json").json()
    responses = document["paths"]["/v1/classify"]["post"]["responses"]
    schema = document["paths"]["/v1/classify"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert schema["properties"]["texts"]["maxItems"] == 256  # the schema's validation error is what clients get
    assert ERROR_CODES[413] == ("body_too_large",)
    assert {"too_many_texts", "text_too_long"} <= set(ERROR_CODES[422])
    assert "too_many_texts" in responses["422"]["description"] and "too_many" not in responses["413"]["description"]


@pytest.fixture(scope="module")
def live(exported) -> Iterator[tuple]:
    """An app under a real uvicorn on a free loopback port, in a thread; yields (app, host, port)."""
    import uvicorn

    app = create_app(ServiceConfig(model_dir=exported.output))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        _wait_for(lambda: server.started, "uvicorn to start")
        yield (app, *sock.getsockname())
    finally:
        server.should_exit = True
        thread.join(timeout=60)
        sock.close()


def _wait_for(predicate, what: str, timeout: float = 60) -> None:
    """A bound for a hang, not a speed target."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _classify_counts(app) -> dict[str, float]:
    """{status: count} of /v1/classify requests, from the app's own registry."""
    counts: dict[str, float] = {}
    for family in app.state.metrics.requests.collect():
        for sample in family.samples:
            if sample.name.endswith("_total") and sample.labels["endpoint"] == "/v1/classify":
                counts[sample.labels["status"]] = counts.get(sample.labels["status"], 0) + sample.value
    return counts


def test_a_client_that_leaves_mid_body_counts_as_client_closed_without_a_traceback(live, caplog, monkeypatch):
    app, host, port = live
    for name in ("uvicorn", "uvicorn.error", "tnews_deploy"):  # caplog listens at the root logger
        monkeypatch.setattr(logging.getLogger(name), "propagate", True)
    before = _classify_counts(app)
    head = (
        b"POST /v1/classify HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
    )
    with caplog.at_level(logging.INFO):
        for _ in range(3):
            with socket.create_connection((host, port)) as conn:
                conn.sendall(head + json.dumps({"texts": ["新闻"] * 50})[:300].encode())
        _wait_for(
            lambda: _classify_counts(app).get("499", 0) - before.get("499", 0) >= 3,
            "three requests counted as client-closed",
        )
        with socket.create_connection((host, port)) as conn:  # the server still answers afterwards
            body = json.dumps({"texts": ["新闻"]}).encode()
            conn.sendall(
                b"POST /v1/classify HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            assert conn.makefile("rb").readline().startswith(b"HTTP/1.1 200")
    after = _classify_counts(app)
    assert after.get("500", 0) == before.get("500", 0)
    assert not [r for r in caplog.records if r.exc_info or "Exception in ASGI application" in r.getMessage()]
    closed = [r for r in caplog.records if r.name == ACCESS_LOGGER and r.status == 499]
    assert len(closed) == 3 and all(r.path == "/v1/classify" and r.method == "POST" for r in closed)

"""The HTTP service: endpoints, validation (4xx, never 500), concurrency."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from tnews_deploy import Predictor  # noqa: E402
from tnews_deploy.service import ServiceConfig, create_app  # noqa: E402


@pytest.fixture(scope="module")
def client(exported):
    app = create_app(ServiceConfig(model_dir=exported.output, max_batch=64, max_chars=500))
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def test_classify_matches_the_library(client, exported):
    texts = ["\u9f00的人", "今天新闻", "\u9f10\u9f11国家"]
    response = client.post("/v1/classify", json={"texts": texts})
    assert response.status_code == 200
    body = response.json()
    expected = [p.to_dict() for p in Predictor(exported.output).predict(texts)]
    assert [(p["label"], p["label_id"]) for p in body["predictions"]] == [(p["label"], p["label_id"]) for p in expected]
    assert body["predictions"][0]["score"] == pytest.approx(expected[0]["score"], abs=1e-6)
    assert body["model"]["sha256"] == exported.manifest["model"]["sha256"]


def test_top_k_and_empty_list(client):
    body = client.post("/v1/classify", json={"texts": ["今天新闻"], "top_k": 3}).json()
    assert len(body["predictions"]) == 1 and len(body["predictions"][0]) == 3
    assert client.post("/v1/classify", json={"texts": []}).json()["predictions"] == []


def test_health_and_model_info(client, exported):
    assert client.get("/healthz").json() == {"status": "ok"}
    info = client.get("/v1/model").json()
    assert len(info["labels"]) == 15 and info["max_length"] == exported.manifest["max_length"]
    assert info["manifest"]["verification"]["passed"] is True
    assert info["manifest"]["model"]["sha256"] == exported.manifest["model"]["sha256"]
    assert info["limits"] == {"max_batch": 64, "max_chars": 500}


BAD_REQUESTS = [
    (b"{not json", 400, "invalid_json", None),
    (b'{"texts": ["\xff\xfe"]}', 400, "invalid_utf8", None),
    (b"[1, 2]", 422, "invalid_body", None),
    (b"null", 422, "invalid_body", None),
    (b"{}", 422, "missing_texts", None),
    (json.dumps({"texts": "one string"}).encode(), 422, "texts_not_a_list", None),
    (json.dumps({"texts": {"a": 1}}).encode(), 422, "texts_not_a_list", None),
    (json.dumps({"texts": ["ok", None, 3, ["nested"], {"d": 1}]}).encode(), 422, "text_not_a_string", [1, 2, 3, 4]),
    (json.dumps({"texts": ["ok", "", "  \n"]}).encode(), 422, "empty_text", [1, 2]),
    (json.dumps({"texts": ["x"] * 65}).encode(), 413, "too_many_texts", None),
    (json.dumps({"texts": ["ok", "长" * 501]}).encode(), 413, "text_too_long", [1]),
    (json.dumps({"texts": ["ok"], "top_k": 0}).encode(), 422, "invalid_top_k", None),
    (json.dumps({"texts": ["ok"], "top_k": "3"}).encode(), 422, "invalid_top_k", None),
    (json.dumps({"texts": ["ok"], "top_k": True}).encode(), 422, "invalid_top_k", None),
    (json.dumps({"texts": ["ok"], "top_k": 16}).encode(), 422, "invalid_top_k", None),
    (b'{"texts": ["ok", "\\ud800abc"]}', 422, "invalid_text", [1]),  # valid JSON, lone surrogate
    (b"[" * 100_000 + b"]" * 100_000, 400, "invalid_json", None),
    (b'{"texts": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 400, "invalid_json", None),
]


@pytest.mark.parametrize("body, status, code, positions", BAD_REQUESTS)
def test_bad_requests_get_clear_4xx(client, body, status, code, positions):
    response = client.post("/v1/classify", content=body, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"]
    if positions is not None:
        assert error["positions"] == positions


@pytest.mark.parametrize("method, path, status, code", [
    ("GET", "/v1/classify", 405, "method_not_allowed"),
    ("DELETE", "/healthz", 405, "method_not_allowed"),
    ("GET", "/nope", 404, "not_found"),
    ("POST", "/v1/classify/extra", 404, "not_found"),
])
def test_unknown_paths_and_methods_use_the_error_body(client, method, path, status, code):
    response = client.request(method, path)
    assert response.status_code == status
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code and path in body["error"]["message"]
    if status == 405:
        assert "POST" in response.headers.get("allow", "") or "GET" in response.headers.get("allow", "")


def test_model_info_shows_no_filesystem_paths(client, exported):
    text = client.get("/v1/model").text
    for part in (str(exported.output.parent), str(exported.source.checkpoint), "/tmp", "/root", "/work"):
        assert part not in text
    assert exported.source.checkpoint.name in text  # the name is kept, the place is not


@pytest.mark.parametrize("kwargs, message", [
    (dict(max_batch=0), "--max-batch"), (dict(max_chars=-1), "--max-chars"), (dict(threads=0), "--threads"),
    (dict(batch_window_ms=-1.0), "--batch-window-ms"),
])
def test_service_config_validates_itself(tmp_path, kwargs, message):
    from tnews_deploy.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        ServiceConfig(model_dir=tmp_path, **kwargs)


def test_unusual_but_valid_texts(client):
    texts = ["emoji 😀🚀 和中文", "繁體中文新聞標題", "control\x00\x07chars", "A" * 500, "\u200b零宽"]
    response = client.post("/v1/classify", json={"texts": texts})
    assert response.status_code == 200 and len(response.json()["predictions"]) == 5


def test_concurrent_requests_match_serial(client):
    payloads = [{"texts": [f"今天{i}新闻", "\u9f00的人" * (i % 5 + 1)]} for i in range(40)]
    serial = [client.post("/v1/classify", json=p).json() for p in payloads]
    with ThreadPoolExecutor(max_workers=8) as pool:
        concurrent = list(pool.map(lambda p: client.post("/v1/classify", json=p).json(), payloads))
    assert concurrent == serial


def test_openapi_documents_the_endpoints(client):
    spec = client.get("/openapi.json").json()
    assert {"/v1/classify", "/healthz", "/v1/model"} <= set(spec["paths"])


def test_micro_batching_coalesces_and_matches_serial(exported):
    app = create_app(ServiceConfig(model_dir=exported.output, batch_window_ms=20, batch_max_texts=64))
    payloads = [{"texts": [f"今天{i}新闻", "\u9f00的人" * (i % 5 + 1)], "top_k": 1 + i % 3} for i in range(48)]
    with TestClient(app) as c:
        serial = [c.post("/v1/classify", json=p).json() for p in payloads]
        with ThreadPoolExecutor(max_workers=16) as pool:
            concurrent = list(pool.map(lambda p: c.post("/v1/classify", json=p).json(), payloads))
        stats = c.get("/v1/model").json()["micro_batching"]
    # batches of other sizes pad differently: labels identical, scores equal to float precision
    for got, want in zip(concurrent, serial):
        flat_got = [p for x in got["predictions"] for p in (x if isinstance(x, list) else [x])]
        flat_want = [p for x in want["predictions"] for p in (x if isinstance(x, list) else [x])]
        assert [p["label"] for p in flat_got] == [p["label"] for p in flat_want]
        assert [p["score"] for p in flat_got] == pytest.approx([p["score"] for p in flat_want], abs=1e-5)
    assert stats["requests"] == 96 and stats["batches"] < 96  # some requests shared a model call


def test_micro_batcher_in_isolation(exported):
    """Without HTTP: concurrent submits share calls, each gets its own rows, a failure reaches its caller."""
    import asyncio
    import time

    from tnews_deploy.service import MicroBatcher

    predictor = Predictor(exported.output)
    requests = [([f"今天{i}新闻", "\u9f00的人" * (i % 4 + 1)], 1 + i % 3) for i in range(20)]

    async def scenario():
        batcher = MicroBatcher(predictor, window_s=0.05, max_texts=64)
        await batcher.start()
        try:
            lone = await batcher.submit(["今天新闻"], 1)
            batcher_long = MicroBatcher(predictor, window_s=30.0, max_texts=64)
            await batcher_long.start()
            started = time.perf_counter()
            await batcher_long.submit(["今天新闻"], 1)
            long_window_seconds = time.perf_counter() - started
            await batcher_long.stop()
            results = await asyncio.gather(*(batcher.submit(t, k) for t, k in requests))
            with pytest.raises(ValueError, match="empty"):
                await batcher.submit(["ok", ""], 1)
            after_failure = await batcher.submit(["今天新闻"], 1)
            return lone, long_window_seconds, results, after_failure, batcher.batches, batcher.requests
        finally:
            await batcher.stop()

    lone, long_window_seconds, results, after_failure, batches, served = asyncio.run(scenario())
    assert lone == predictor.predict(["今天新闻"]) and after_failure == lone
    assert long_window_seconds < 10  # a lone request never waits out a 30 s window
    for (texts, top_k), got in zip(requests, results):
        want = predictor.predict(texts, top_k=top_k)
        flat_got = [p for r in got for p in (r if isinstance(r, list) else [r])]
        flat_want = [p for r in want for p in (r if isinstance(r, list) else [r])]
        assert [p.label for p in flat_got] == [p.label for p in flat_want]
        assert [p.score for p in flat_got] == pytest.approx([p.score for p in flat_want], abs=1e-5)
    assert batches < served  # the 20 concurrent requests shared model calls

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


def test_integral_float_top_k_is_an_integer(client):
    """JSON has one number type and the documented schema says "integer": 3.0 is 3 (the fuzzer's finding)."""
    as_float = client.post("/v1/classify", content=rb'{"texts": ["\u4eca\u5929"], "top_k": 3.0}')
    assert as_float.status_code == 200, as_float.text
    assert as_float.json() == client.post("/v1/classify", json={"texts": ["今天"], "top_k": 3}).json()


def test_health_and_model_info(client, exported):
    assert client.get("/healthz").json() == {"status": "ok"}
    info = client.get("/v1/model").json()
    assert len(info["labels"]) == 15 and info["max_length"] == exported.manifest["max_length"]
    assert info["manifest"]["verification"]["passed"] is True
    assert info["manifest"]["model"]["sha256"] == exported.manifest["model"]["sha256"]
    cap = ServiceConfig(exported.output, max_batch=64, max_chars=500).max_body_bytes
    assert info["limits"] == {"max_batch": 64, "max_chars": 500, "max_queue": 64, "max_body_bytes": cap}
    # the CPU the export was verified on, beside the one serving it (fp32: no int8 kernels)
    from tnews_deploy.int8_weights import cpu_description

    assert info["cpu"]["verified_on"] == exported.manifest["verification"]["machine"]
    assert info["cpu"]["serving"] == cpu_description() and info["cpu"]["int8_kernels"] is None


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
    (json.dumps({"texts": ["x"] * 65}).encode(), 422, "too_many_texts", None),
    (json.dumps({"texts": ["ok", "长" * 501]}).encode(), 422, "text_too_long", [1]),
    (json.dumps({"texts": ["ok"], "top_k": 0}).encode(), 422, "invalid_top_k", None),
    (json.dumps({"texts": ["ok"], "top_k": "3"}).encode(), 422, "invalid_top_k", None),
    (json.dumps({"texts": ["ok"], "top_k": True}).encode(), 422, "invalid_top_k", None),
    (json.dumps({"texts": ["ok"], "top_k": 16}).encode(), 422, "invalid_top_k", None),
    (json.dumps({"texts": ["ok"], "top_k": 2.5}).encode(), 422, "invalid_top_k", None),
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


@pytest.mark.parametrize(
    "method, path, status, code",
    [
        ("GET", "/v1/classify", 405, "method_not_allowed"),
        ("DELETE", "/healthz", 405, "method_not_allowed"),
        ("GET", "/nope", 404, "not_found"),
        ("POST", "/v1/classify/extra", 404, "not_found"),
    ],
)
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


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(max_batch=0), "--max-batch"),
        (dict(max_chars=-1), "--max-chars"),
        (dict(threads=0), "--threads"),
        (dict(batch_window_ms=-1.0), "--batch-window-ms"),
        (dict(max_queue=0), "--max-queue"),
        (dict(graceful_timeout_s=0), "--graceful-timeout"),
    ],
)
def test_service_config_validates_itself(tmp_path, kwargs, message):
    from tnews_deploy.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        ServiceConfig(model_dir=tmp_path, **kwargs)


def test_a_body_over_the_cap_is_refused_before_it_is_read(client):
    """413 body_too_large from the declared length, and from a chunked body as it streams in; the largest valid
    request (every text at max_chars, each character at its longest JSON spelling) still fits under the cap."""
    limit = client.get("/v1/model").json()["limits"]["max_body_bytes"]
    padded = b'{"texts": ["x"]' + b" " * limit + b"}"  # valid JSON, but no request needs that much space
    response = client.post("/v1/classify", content=padded, headers={"content-type": "application/json"})
    assert (response.status_code, response.json()["error"]["code"]) == (413, "body_too_large")

    sent = []

    def chunks():  # no Content-Length: the server must count while it reads, and stop reading
        for _ in range(limit // 1024 + 64):
            sent.append(1)
            yield b" " * 1024

    response = client.post("/v1/classify", content=chunks(), headers={"content-type": "application/json"})
    assert (response.status_code, response.json()["error"]["code"]) == (413, "body_too_large")

    largest = json.dumps({"texts": ["\U0001f600" * 500] * 64, "top_k": 1}).encode()  # ensure_ascii: 12 bytes/char
    assert len(largest) <= limit
    response = client.post("/v1/classify", content=largest, headers={"content-type": "application/json"})
    assert response.status_code == 200 and len(response.json()["predictions"]) == 64


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


def test_readyz_only_after_warm_up_while_healthz_always_answers(exported):
    app = create_app(ServiceConfig(model_dir=exported.output))
    cold = TestClient(app)  # no `with`: the app's start-up (warm-up) has not run
    assert cold.get("/healthz").json() == {"status": "ok"}
    not_ready = cold.get("/readyz")
    assert not_ready.status_code == 503 and not_ready.json()["error"]["code"] == "not_ready"
    with TestClient(app) as warm:
        assert warm.get("/readyz").json() == {"status": "ready"}
        metrics = _metrics(warm)
    assert metrics[("tnews_ready", ())] == 1
    assert metrics[("tnews_model_warmup_seconds", ())] > 0


def _metrics(client) -> dict:
    """{(sample name, sorted labels): value} from /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def test_metrics_count_requests_latency_texts_queue_and_model(exported):
    with TestClient(create_app(ServiceConfig(model_dir=exported.output, max_queue=7))) as c:
        assert c.post("/v1/classify", json={"texts": ["今天新闻", "国足", "股市"]}).status_code == 200
        assert c.post("/v1/classify", json={"texts": ["今天新闻"]}).status_code == 200
        assert c.post("/v1/classify", json={"texts": [""]}).status_code == 422
        assert c.get("/no/such/path/123").status_code == 404
        metrics = _metrics(c)

    def requests(endpoint, method, status):
        return metrics.get(
            ("tnews_http_requests_total", (("endpoint", endpoint), ("method", method), ("status", status))), 0
        )

    assert requests("/v1/classify", "POST", "200") == 2 and requests("/v1/classify", "POST", "422") == 1
    assert requests("other", "GET", "404") == 1  # unknown paths share one label
    assert metrics[("tnews_http_request_duration_seconds_count", (("endpoint", "/v1/classify"),))] == 3
    assert metrics[("tnews_classify_texts_per_request_count", ())] == 2  # valid requests only
    assert metrics[("tnews_classify_texts_per_request_sum", ())] == 4
    assert metrics[("tnews_model_queue_depth", ())] == 0 and metrics[("tnews_model_queue_limit", ())] == 7
    info = [labels for (name, labels), value in metrics.items() if name == "tnews_model_info" and value == 1]
    assert len(info) == 1 and dict(info[0])["sha256"] == exported.manifest["model"]["sha256"]
    assert dict(info[0])["quantization"] == "none"
    assert metrics[("tnews_model_load_seconds", ())] > 0
    assert any(name == "process_resident_memory_bytes" for name, _ in metrics)


def test_one_access_log_line_per_request_and_no_texts(exported, caplog):
    import logging

    secret = "这条机密标题不应出现在日志里"
    with caplog.at_level(logging.INFO, logger="tnews_deploy.service.access"):
        with TestClient(create_app(ServiceConfig(model_dir=exported.output))) as c:
            c.post("/v1/classify", json={"texts": [secret, "今天新闻"]})
            c.post("/v1/classify", content=b"{not json")
            c.get("/healthz")
    records = [r for r in caplog.records if r.name == "tnews_deploy.service.access"]
    assert [(r.method, r.path, r.status, r.texts) for r in records] == [
        ("POST", "/v1/classify", 200, 2),
        ("POST", "/v1/classify", 400, None),
        ("GET", "/healthz", 200, None),
    ]
    assert all(r.duration_ms >= 0 and r.getMessage().endswith("ms") for r in records)
    assert "POST /v1/classify 200 texts=2 " in records[0].getMessage()
    assert not any(secret in r.getMessage() for r in caplog.records)


def test_overload_gets_an_immediate_503_never_a_500(exported):
    """More concurrent clients than the queue holds: some 503 + Retry-After, the rest right answers."""
    import asyncio

    import httpx

    app = create_app(ServiceConfig(model_dir=exported.output, max_queue=2, max_batch=1000))
    payloads = [[f"第{i}条新闻：{'长' * (i % 7)}国足备战世界杯"] * 1000 for i in range(12)]

    async def scenario():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=300) as client:
                responses = await asyncio.gather(*(client.post("/v1/classify", json={"texts": p}) for p in payloads))
                metrics = await client.get("/metrics")
        return responses, metrics.text

    responses, metrics_text = asyncio.run(scenario())
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 503} and statuses.count(503) >= 1 and statuses.count(200) >= 1
    predictor = Predictor(exported.output)
    for texts, response in zip(payloads, responses):
        if response.status_code == 503:
            assert response.json()["error"]["code"] == "overloaded" and int(response.headers["retry-after"]) >= 1
        else:
            expected = predictor.predict(texts[:1])[0]
            got = response.json()["predictions"]
            assert len(got) == 1000 and {p["label"] for p in got} == {expected.label}
            assert got[0]["score"] == pytest.approx(expected.score, abs=1e-5)
    assert "tnews_model_queue_depth 0.0" in metrics_text  # every admitted request left the queue
    assert f'status="503"}} {float(statuses.count(503))}' in metrics_text

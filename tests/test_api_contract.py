"""The API document (/openapi.json) is the contract: it states every limit and every answer, and the app keeps it.

A property-based fuzzer (schemathesis) reads the document and sends a few hundred generated requests, valid
and invalid, to the real app in-process, with all its checks. A fixed corpus pins the edges that random
generation rarely reaches (every whitespace character, the exact limits), under two JSON Schema engines.
"""

from __future__ import annotations

import json
import sys

import pytest

pytest.importorskip("fastapi")
schemathesis = pytest.importorskip("schemathesis")
from fastapi.testclient import TestClient  # noqa: E402

from tnews_deploy.service import ServiceConfig, create_app  # noqa: E402
from tnews_deploy.service.schemas import ERROR_CODES  # noqa: E402

# Small limits, so that the fuzzer reaches them; micro-batching on, so that both model paths are exercised
# (requests under 4 texts go through the micro-batcher, bigger ones straight to the thread pool).
SETTINGS = dict(max_batch=8, max_chars=40, batch_window_ms=2, batch_max_texts=4)
FUZZ_CONFIG = {
    "seed": 20240611,
    "generation": {"mode": "all", "max-examples": 150, "deterministic": True, "database": "none"},
    "checks": {
        # A valid request gets 200, nothing else; an invalid one 400 or 422, too many texts or a text too long
        # (maxItems/maxLength) included: 413 is only for a body over the byte cap, which no generated body reaches.
        "positive_data_acceptance": {"expected-statuses": [200]},
        "negative_data_rejection": {"expected-statuses": [400, 422]},
    },
}


@pytest.fixture(scope="module")
def client(exported):
    with TestClient(create_app(ServiceConfig(model_dir=exported.output, **SETTINGS))) as c:
        yield c


@pytest.fixture(scope="module")
def document(client):
    return client.get("/openapi.json").json()


def _resolve(document: dict, schema: dict) -> dict:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def _error_codes(document: dict, response: dict) -> set[str]:
    envelope = _resolve(document, response["content"]["application/json"]["schema"])
    detail = _resolve(document, envelope["properties"]["error"])
    code = detail["properties"]["code"]
    return set(code.get("enum") or [code["const"]])


def test_document_states_the_limits_and_every_answer(document, exported):
    classify = document["paths"]["/v1/classify"]["post"]
    request = classify["requestBody"]["content"]["application/json"]["schema"]
    texts, top_k = request["properties"]["texts"], request["properties"]["top_k"]
    labels = exported.manifest.get("labels") or json.loads((exported.output / "config.json").read_text())["id2label"]
    num_labels = len(labels)
    assert request["required"] == ["texts"]
    assert texts["maxItems"] == SETTINGS["max_batch"] and texts["items"]["maxLength"] == SETTINGS["max_chars"]
    assert texts["items"]["minLength"] == 1 and texts["items"]["pattern"]
    assert (top_k["type"], top_k["minimum"], top_k["maximum"]) == ("integer", 1, num_labels)

    responses = classify["responses"]
    assert set(responses) == {"200", "400", "413", "422", "503", "500"}
    for status in ("400", "413", "422", "500"):
        assert _error_codes(document, responses[status]) == set(ERROR_CODES[int(status)])
    assert _error_codes(document, responses["503"]) == {"overloaded", "shutting_down"}
    assert "Retry-After" in responses["503"]["headers"]
    prediction = document["components"]["schemas"]["Prediction"]["properties"]
    assert len(prediction["label"]["enum"]) == num_labels and prediction["label_id"]["maximum"] == num_labels - 1

    readyz = document["paths"]["/readyz"]["get"]["responses"]
    assert _error_codes(document, readyz["503"]) == {"not_ready"}
    assert {"/healthz", "/readyz", "/v1/model", "/metrics"} <= set(document["paths"])
    reusable = document["components"]["responses"]
    assert _error_codes(document, reusable["NotFound"]) == {"not_found"}
    assert _error_codes(document, reusable["MethodNotAllowed"]) == {"method_not_allowed"}
    assert "Allow" in reusable["MethodNotAllowed"]["headers"]


WHITESPACE = [chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()]
# Not whitespace to Python (so valid texts) though some regex engines' \s would say otherwise, or look blank.
LOOKS_BLANK = ["\ufeff", "\u200b", "\u180e", "\u2060", "\x00", "\x1b"]


def _corpus() -> list:
    ok = ["新闻"]
    bodies: list = [
        {"texts": []},
        {"texts": ok},
        {"texts": ok, "top_k": 15},
        {"texts": ok, "top_k": 2.0},
        *({"texts": ok, "top_k": k} for k in (16, 0, -1, True, "2", None, 1.5, [1], 1e300)),
        {"texts": ["x" * 40]},
        {"texts": ["x" * 41]},
        {"texts": ["😀" * 40]},
        {"texts": ["😀" * 41]},
        {"texts": ["x"] * 8},
        {"texts": ["x"] * 9},
        {"texts": "x"},
        {"texts": None},
        {"texts": {"a": "b"}},
        {},
        {"top_k": 1},
        [],
        ["x"],
        "x",
        1,
        None,
        True,
        {"texts": [""]},
        {"texts": [1]},
        {"texts": [None]},
        {"texts": [["x"]]},
        {"texts": ["ok", ""]},
        {"texts": ok, "unknown": {"nested": [1]}},
    ]
    for space in WHITESPACE:
        bodies += [{"texts": [space]}, {"texts": [space * 3]}, {"texts": [f"{space}a{space}"]}]
    bodies += [{"texts": [c]} for c in LOOKS_BLANK]
    return bodies


def _validators(schema: dict) -> dict:
    """The schema read by Python's regex engine (jsonschema) and by Rust's (jsonschema_rs, which schemathesis
    validates with): their `\\s` differ, the documented pattern must not."""
    engines = {}
    try:
        import jsonschema
    except ImportError:
        pass
    else:
        engines["jsonschema (Python re)"] = jsonschema.Draft202012Validator(schema).is_valid
    try:
        import jsonschema_rs
    except ImportError:
        pass
    else:
        engines["jsonschema_rs (Rust regex)"] = jsonschema_rs.validator_for(schema).is_valid
    if not engines:
        pytest.skip("no JSON Schema validator installed (jsonschema or jsonschema_rs)")
    return engines


def test_the_documented_schema_and_the_parser_agree(client, document):
    """Every body the documented schema accepts gets 200; every body it refuses gets a documented 4xx.

    The one thing JSON Schema cannot say (a lone UTF-16 surrogate, refused with 422 invalid_text) is stated in
    the schema's description instead.
    """
    schema = document["paths"]["/v1/classify"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    engines = _validators(schema)
    disagreements = []
    for body in _corpus():
        response = client.post(
            "/v1/classify", content=json.dumps(body).encode(), headers={"content-type": "application/json"}
        )
        assert response.status_code in (200, 400, 413, 422), (body, response.text)
        for engine, is_valid in engines.items():
            if is_valid(body) != (response.status_code == 200):
                disagreements.append((engine, body, response.status_code))
    assert not disagreements, disagreements[:10]
    assert "surrogate" in schema["description"]


@pytest.fixture(scope="module")
def fuzzed_api(exported):
    app = create_app(ServiceConfig(model_dir=exported.output, **SETTINGS))
    return schemathesis.openapi.from_asgi("/openapi.json", app, config=schemathesis.Config.from_dict(FUZZ_CONFIG))


fuzzed = schemathesis.pytest.from_fixture("fuzzed_api")
FUZZED_CALLS: list[tuple[str, str, int]] = []


@fuzzed.parametrize()
def test_fuzzer_finds_no_contract_violation(case):
    """All schemathesis checks on every generated request: no 5xx, only documented statuses and content types,
    response bodies and headers as documented, valid requests accepted, invalid ones refused, 405 for methods a
    path lacks. Seeded and derandomized, so every run sends the same requests."""
    response = case.call_and_validate()
    FUZZED_CALLS.append((case.method, case.path, response.status_code))


def test_fuzzer_sent_a_few_hundred_requests():
    if not FUZZED_CALLS:
        pytest.skip("runs after test_fuzzer_finds_no_contract_violation")
    classify = [status for method, path, status in FUZZED_CALLS if (method, path) == ("POST", "/v1/classify")]
    assert len(FUZZED_CALLS) >= 200 and len(classify) >= 150
    assert {200, 400, 422} <= set(classify) and 413 not in set(classify)  # valid requests and refusals

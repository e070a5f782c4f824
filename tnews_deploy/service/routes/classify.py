"""POST /v1/classify: parse and check the request, admit it (`ModelQueue`), run the model, rank the answers.

The checks behind the documented `ClassifyRequest` schema live here (`parse_classify_request`), as does the
byte cap on the body (`read_body`); the handler reaches the model through the app's `Service`.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from ...inputs import SURROGATE_MESSAGE, format_positions, invalid_positions
from ..config import ServiceConfig
from ..errors import RETRY_AFTER_S, ApiError
from .deps import INTERNAL_ERROR, Service, ServiceDep


def parse_classify_request(raw: bytes, config: ServiceConfig, num_labels: int) -> tuple[list[str], int]:
    """Validate a /v1/classify body; raises `ApiError` with the status to answer.

    The behaviour behind the documented `ClassifyRequest` schema (`schemas.build_schemas`): a request the
    schema accepts is accepted here, and every fault gets its own status and code.

    Args:
        raw: the request body.
        config: the limits (max_batch, max_chars).
        num_labels: `top_k` may be 1..num_labels.
    """
    try:
        body = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ApiError(400, "invalid_utf8", f"request body is not valid UTF-8 ({exc.reason}).") from exc
    except json.JSONDecodeError as exc:
        raise ApiError(
            400, "invalid_json", f"request body is not valid JSON ({exc.msg} at position {exc.pos})."
        ) from exc
    except RecursionError as exc:
        raise ApiError(400, "invalid_json", "request body is nested too deeply to be a classify request.") from exc
    except ValueError as exc:  # an integer over Python's limit on digits (sys.get_int_max_str_digits())
        raise ApiError(
            400,
            "invalid_json",
            f"request body holds an integer of more than "
            f"{sys.get_int_max_str_digits()} digits; no classify request needs one.",
        ) from exc
    if not isinstance(body, dict):
        raise ApiError(422, "invalid_body", 'body must be a JSON object like {"texts": ["..."], "top_k": 1}.')
    if "texts" not in body:
        raise ApiError(422, "missing_texts", "'texts' is required: a list of strings.")
    texts, top_k = body["texts"], body.get("top_k", 1)
    if not isinstance(texts, list):
        raise ApiError(422, "texts_not_a_list", f"'texts' must be a list of strings, got {type(texts).__name__}.")
    if len(texts) > config.max_batch:
        raise ApiError(422, "too_many_texts", f"{len(texts)} texts; at most {config.max_batch} per request.")
    bad = invalid_positions(texts)
    if bad.not_strings:
        raise ApiError(
            422,
            "text_not_a_string",
            f"texts must be strings; not a string at position(s) {format_positions(bad.not_strings)}.",
            bad.not_strings,
        )
    if bad.empty:
        raise ApiError(
            422, "empty_text", f"empty or whitespace-only text at position(s) {format_positions(bad.empty)}.", bad.empty
        )
    if bad.surrogates:
        raise ApiError(422, "invalid_text", SURROGATE_MESSAGE.format(format_positions(bad.surrogates)), bad.surrogates)
    too_long = [i for i, t in enumerate(texts) if len(t) > config.max_chars]
    if too_long:
        raise ApiError(
            422,
            "text_too_long",
            f"text over {config.max_chars} characters at position(s) {format_positions(too_long)}.",
            too_long,
        )
    if isinstance(top_k, float) and top_k.is_integer():
        top_k = int(top_k)  # JSON has one number type: 3.0 is the integer 3 (as JSON Schema says)
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= num_labels:
        raise ApiError(422, "invalid_top_k", f"'top_k' must be an integer in 1..{num_labels}, got {top_k!r}.")
    return texts, top_k


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 `body_too_large` as soon as it is known to exceed `limit` bytes.

    A declared Content-Length over the limit is refused before anything is read; a chunked body is read
    chunk by chunk and refused once the running total passes the limit, so memory stays bounded.

    Args:
        request: the incoming request.
        limit: most bytes accepted.
    """
    refused = ApiError(413, "body_too_large", f"request body over {limit} bytes; no valid request is that large.")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise refused
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise refused
        chunks.append(chunk)
    return b"".join(chunks)


async def classify(request: Request, service: ServiceDep) -> dict[str, Any]:
    """Classify up to `max_batch` texts; answers in input order."""
    config, metrics, queue, batcher = service.config, service.metrics, service.queue, service.batcher
    texts, top_k = parse_classify_request(await read_body(request, config.max_body_bytes), config, service.num_labels)
    request.state.texts = len(texts)
    metrics.texts.observe(len(texts))
    if not texts:
        return {"predictions": [], "model": service.summary}
    if not queue.try_enter():
        raise ApiError(
            503,
            "overloaded",
            f"the service is overloaded ({config.max_queue} requests are waiting "
            f"for the model); retry in {RETRY_AFTER_S} s.",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )
    results: Any  # a list of Predictions (top_k 1) or of lists of them
    try:
        if batcher is not None and len(texts) < config.batch_max_texts:
            results = await batcher.submit(texts, top_k)
        else:
            results = await run_in_threadpool(service.predictor.predict, texts, top_k)
    except asyncio.CancelledError:
        # uvicorn cancels the requests still running when the graceful-shutdown deadline runs out. Answer
        # them with the documented 503 (retry elsewhere) rather than uvicorn's bare 500.
        raise ApiError(
            503,
            "shutting_down",
            "the service stopped before this request was answered; retry.",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        ) from None
    finally:
        queue.leave()
    if top_k == 1:
        predictions: list[Any] = [r.to_dict() for r in results]
    else:
        predictions = [[p.to_dict() for p in ranked] for ranked in results]
    return {"predictions": predictions, "model": service.summary}


def add_routes(routes: APIRouter, service: Service) -> None:
    """Add the classify route, documented with `service`'s limits and labels.

    Args:
        routes: where to add them (the app's router).
        service: the app's model and limits.
    """
    config, schemas, num_labels = service.config, service.schemas, service.num_labels
    routes.add_api_route(
        "/v1/classify",
        classify,
        methods=["POST"],
        response_model=schemas.classify_response,
        openapi_extra=schemas.classify_request_body(),
        responses=schemas.responses(
            (
                400,
                "BadRequest",
                "`invalid_json`: not JSON, nested too deeply, or an integer of thousands "
                "of digits; `invalid_utf8`: not UTF-8.",
            ),
            (
                413,
                "PayloadTooLarge",
                f"`body_too_large`: a body over {config.max_body_bytes} bytes (more than any valid request needs).",
            ),
            (
                422,
                "Unprocessable",
                "`invalid_body`: not a JSON object; `missing_texts`; `texts_not_a_list`; "
                f"`too_many_texts`: more than {config.max_batch} texts (`maxItems`); "
                "`text_not_a_string`, `empty_text` (empty or whitespace-only), "
                "`invalid_text` (lone UTF-16 surrogate), `text_too_long`: a text over "
                f"{config.max_chars} characters (`maxLength`): positions named; "
                f"`invalid_top_k`: not an integer in 1..{num_labels}.",
            ),
            (
                503,
                "Unavailable",
                f"`overloaded`: {config.max_queue} requests already wait for the model; "
                "`shutting_down`: the graceful-shutdown deadline ran out before the answer. "
                "Retry after `Retry-After` seconds.",
            ),
            INTERNAL_ERROR,
        ),
    )

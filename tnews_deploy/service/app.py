"""The HTTP service: FastAPI over one `Predictor` (`pip install "tnews-deploy[serve]"`).

Endpoints:

* `POST /v1/classify` `{"texts": ["…"], "top_k": 1}` ->
  `{"predictions": [{"label", "label_id", "score"}, …], "model": {…}}`
  (with `top_k` > 1 each prediction is a list of the k best);
* `GET /healthz` -> `{"status": "ok"}` while the process runs (liveness);
* `GET /readyz` -> `{"status": "ready"}` once the model is loaded and warmed up, 503 before (readiness);
* `GET /v1/model` -> labels, max_length, limits and the export manifest's
  source, parity and sha256;
* `GET /metrics` -> Prometheus metrics (`metrics.ServiceMetrics`);
* `GET /openapi.json` -> the API document, built from `schemas` with this app's limits.

Every bad request gets a 4xx with `{"error": {"code", "message"[, "positions"]}}`,
never a 500: invalid JSON or UTF-8, JSON nested too deeply or an integer of thousands
of digits (400); a body that is not an object, `texts` that is not a list, non-string
or empty texts, texts with lone UTF-16 surrogates, more than `max_batch` texts or a
text over `max_chars` characters (422, as the schema's limits say; positions named);
a body over `max_body_bytes` (413, refused before the body is read: from its
Content-Length, or while a chunked body streams in); an unknown path (404, a trailing
slash included: no redirects) or method (405). A client that leaves before its
answer is counted and logged as 499, without a traceback.
`/v1/model` shows the manifest without filesystem paths.

Prediction runs in the thread pool, off the event loop, so slow requests do not
block others. With `batch_window_ms` > 0, concurrent small requests are
coalesced into one predictor call (`MicroBatcher`). At most `max_queue` classify
requests wait for or run in the model at once (`ModelQueue`); one more gets an
immediate 503 `overloaded` with `Retry-After`, so latency stays bounded under
overload. `serve` stops gracefully on SIGTERM: no new connections, in-flight
requests finish (up to `graceful_timeout_s`), exit 0. The service loads nothing
but the model folder it is given and never unpickles anything.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import asynccontextmanager, contextmanager
from pathlib import PurePath
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from .. import __version__
from ..errors import ModelError, UserError
from ..inputs import SURROGATE_MESSAGE, format_positions, invalid_positions
from ..int8_weights import cpu_description
from ..labels import TNEWS_LABEL_NAMES
from ..machine import usable_cpus
from ..predictor import Predictor
from .config import ServiceConfig
from .metrics import CLIENT_CLOSED, MULTIPROC_ENV, ObserveRequests, ServiceMetrics
from .schemas import Health, ModelInfo, Ready, add_path_errors, build_schemas

logger = logging.getLogger(__name__)

WARMUP_TEXT = "北京大学举行毕业典礼"
RETRY_AFTER_S = 1
HTTP_ERROR_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}


class ApiError(Exception):
    """A request the service answers with an error status and the documented error body."""

    def __init__(self, status: int, code: str, message: str, positions: list[int] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.positions = status, code, message, positions
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.positions is not None:
            error["positions"] = self.positions
        return JSONResponse({"error": error}, status_code=self.status, headers=self.headers)


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
        raise ApiError(400, "invalid_json",
                       f"request body is not valid JSON ({exc.msg} at position {exc.pos}).") from exc
    except RecursionError as exc:
        raise ApiError(400, "invalid_json", "request body is nested too deeply to be a classify request.") from exc
    except ValueError as exc:  # an integer over Python's limit on digits (sys.get_int_max_str_digits())
        raise ApiError(400, "invalid_json", f"request body holds an integer of more than "
                       f"{sys.get_int_max_str_digits()} digits; no classify request needs one.") from exc
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
        raise ApiError(422, "text_not_a_string", f"texts must be strings; not a string at position(s) "
                       f"{format_positions(bad.not_strings)}.", bad.not_strings)
    if bad.empty:
        raise ApiError(422, "empty_text",
                       f"empty or whitespace-only text at position(s) {format_positions(bad.empty)}.", bad.empty)
    if bad.surrogates:
        raise ApiError(422, "invalid_text", SURROGATE_MESSAGE.format(format_positions(bad.surrogates)),
                       bad.surrogates)
    too_long = [i for i, t in enumerate(texts) if len(t) > config.max_chars]
    if too_long:
        raise ApiError(422, "text_too_long", f"text over {config.max_chars} characters at position(s) "
                       f"{format_positions(too_long)}.", too_long)
    if isinstance(top_k, float) and top_k.is_integer():
        top_k = int(top_k)  # JSON has one number type: 3.0 is the integer 3 (as JSON Schema says)
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= num_labels:
        raise ApiError(422, "invalid_top_k", f"'top_k' must be an integer in 1..{num_labels}, got {top_k!r}.")
    return texts, top_k


class MicroBatcher:
    """Coalesce concurrent classify calls into shared predictor calls (dynamic batching, adaptive window).

    Submitted requests queue up. A batch takes every request already waiting (up to `max_texts` texts) and runs
    as one `predict_proba` in the thread pool, at most `max_calls` batches at once; while they run, new requests
    queue and form the next batch, so under load batches grow without any timer. The window only holds a batch
    back while more company is actually coming: a request that finds nobody else waiting (a lone request) runs
    at once, and so does a batch that already has `target_texts` texts (one full model call: the predictor's
    batch size); otherwise the batch waits for more requests while they keep arriving (each within
    `window_s / 2` of the last), `window_s` at most in all. Each request gets its own rows back; with a
    batch-invariant model (fp32, per-token int8) its answer is the one it would get alone.

    Args:
        predictor: the model.
        window_s: the longest a batch waits for more requests, in seconds.
        max_texts: most texts in one batch (a larger request runs as a batch of its own).
        max_calls: most batches in the model at once; default: twice as many as the predictor's threads need
            cores (a single call leaves cores idle while it tokenizes, pads and ranks; the one-call-at-a-time
            batcher this replaces halved throughput). Requests beyond that wait, and form larger batches.
        target_texts: a batch this large runs without waiting; default: the predictor's batch size.
    """

    def __init__(self, predictor: Predictor, window_s: float, max_texts: int, max_calls: int | None = None,
                 target_texts: int | None = None) -> None:
        self.predictor, self.window_s, self.max_texts = predictor, window_s, max_texts
        self.max_calls = max_calls or max(2, 2 * usable_cpus() // predictor.threads)
        self.target_texts = min(max_texts, target_texts or predictor.batch_size)
        self.queue: asyncio.Queue | None = None
        self.task: asyncio.Task | None = None
        self.calls: set[asyncio.Task] = set()
        self.slots: asyncio.Semaphore | None = None
        self.batches = 0
        self.requests = 0

    async def start(self) -> None:
        self.queue = asyncio.Queue()
        self.slots = asyncio.Semaphore(self.max_calls)
        self.task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        for task in [self.task, *self.calls]:
            if task:
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass

    async def submit(self, texts: list[str], top_k: int) -> list:
        future = asyncio.get_running_loop().create_future()
        self.queue.put_nowait((texts, top_k, future))
        return await future

    def _take_waiting(self, batch: list, size: int) -> int:
        """Move requests already queued into `batch` (up to `max_texts` texts); returns its new size."""
        while size < self.max_texts and not self.queue.empty():
            item = self.queue.get_nowait()
            batch.append(item)
            size += len(item[0])
        return size

    async def _collect(self) -> list:
        """The next batch: what waits now, plus what arrives while arrivals go on and the batch is small."""
        loop = asyncio.get_running_loop()
        batch = [await self.queue.get()]
        deadline = loop.time() + self.window_s
        size = self._take_waiting(batch, len(batch[0][0]))
        if len(batch) == 1:
            return batch  # nobody else was waiting: nothing says more requests are coming
        while size < self.target_texts:
            remaining = min(deadline - loop.time(), self.window_s / 2)
            if remaining <= 0:
                break
            try:
                item = await asyncio.wait_for(self.queue.get(), remaining)
            except asyncio.TimeoutError:
                break  # arrivals stopped
            batch.append(item)
            size = self._take_waiting(batch, size + len(item[0]))
        return batch

    async def _loop(self) -> None:
        while True:
            await self.slots.acquire()  # a free model slot first: meanwhile requests queue and batch up
            try:
                batch = await self._collect()
            except BaseException:
                self.slots.release()
                raise
            call = asyncio.create_task(self._run(batch))
            self.calls.add(call)
            call.add_done_callback(self.calls.discard)

    async def _run(self, batch: list) -> None:
        try:
            batch = [item for item in batch if not item[2].done()]  # callers that left (cancelled) need nothing
            if not batch:
                return
            texts = [t for item in batch for t in item[0]]
            try:
                probs = await run_in_threadpool(self.predictor.predict_proba, texts)
            except Exception as exc:  # hand the failure to every waiting request
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                return
            self.batches += 1
            self.requests += len(batch)
            offset = 0
            for item_texts, top_k, future in batch:
                rows = probs[offset:offset + len(item_texts)]
                offset += len(item_texts)
                if not future.done():
                    future.set_result(self.predictor.rank(rows, top_k))
        finally:
            self.slots.release()


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


def model_summary(predictor: Predictor) -> dict[str, Any]:
    manifest = predictor.manifest
    return {
        "name": predictor.model_dir.name,
        "sha256": manifest.get("model", {}).get("sha256"),
        "quantization": (manifest.get("quantization") or {}).get("mode", "none"),
        "optimization": (manifest.get("optimization") or {}).get("level", "none"),
    }


_PATH_KEYS = {"checkpoint", "path", "output", "model_dir"}
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")


def _looks_like_path(value: str) -> bool:
    return (value.startswith(("/", "~", "./", "../", "\\")) or bool(_WINDOWS_DRIVE.match(value))
            or value.count("/") >= 2)


def without_paths(value: Any, key: str | None = None) -> Any:
    """`value` with every filesystem path reduced to its last component.

    The manifest records where the model came from on the exporting machine
    (checkpoint and data folders); over HTTP those paths would tell clients about
    the server's file system, and mean nothing to them. Hub ids (`clue/tnews`)
    stay as they are.
    """
    if isinstance(value, dict):
        return {k: without_paths(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [without_paths(v) for v in value]
    if isinstance(value, str) and (key in _PATH_KEYS or _looks_like_path(value)):
        return PurePath(value.replace("\\", "/")).name or value
    return value


class ModelQueue:
    """Admission control: at most `limit` classify requests waiting for or in the model at once.

    Used from the event loop only (no lock needed). A request that finds the queue full is refused at once
    (503) rather than left to wait: under overload the service answers fast instead of slowly for everyone.
    """

    def __init__(self, limit: int, gauge: Any = None) -> None:
        self.limit, self.depth, self.gauge = limit, 0, gauge

    def try_enter(self) -> bool:
        if self.depth >= self.limit:
            return False
        self.depth += 1
        if self.gauge is not None:
            self.gauge.inc()
        return True

    def leave(self) -> None:
        self.depth -= 1
        if self.gauge is not None:
            self.gauge.dec()


def create_app(config: ServiceConfig) -> FastAPI:
    """The FastAPI app serving `config.model_dir` (loaded once, here; warmed up when the app starts).

    Args:
        config: the model folder and the limits.
    """
    started = time.perf_counter()
    predictor = Predictor(config.model_dir, threads=config.threads)
    load_seconds = time.perf_counter() - started
    summary = model_summary(predictor)
    num_labels = len(predictor.labels)
    schemas = build_schemas(config.max_batch, config.max_chars, tuple(predictor.labels))
    metrics = ServiceMetrics(config.max_batch, config.max_queue)
    metrics.set_model(summary, load_seconds)
    queue = ModelQueue(config.max_queue, metrics.queue_depth)
    batcher = (MicroBatcher(predictor, config.batch_window_ms / 1000, config.batch_max_texts)
               if config.batch_window_ms > 0 else None)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if batcher:
            await batcher.start()
        warm = time.perf_counter()
        await run_in_threadpool(predictor.predict, [WARMUP_TEXT])  # first-call costs are paid before /readyz
        metrics.warmup_seconds.set(time.perf_counter() - warm)
        app.state.ready = True
        metrics.ready.set(1)
        logger.info("loaded the model (%s) in %.2f s, warmed it up in %.2f s: ready", summary["name"], load_seconds,
                    time.perf_counter() - warm)
        try:
            yield
        finally:
            app.state.ready = False
            metrics.ready.set(0)
            if batcher:
                await batcher.stop()
            metrics.process_exited()

    task = ("Chinese news-title classification (CLUE TNEWS)" if tuple(predictor.labels) == TNEWS_LABEL_NAMES
            else f"Text classification into {num_labels} classes")
    # redirect_slashes=False: `/v1/classify/` is a 404 like any unknown path, not a 307 to a Location built from
    # the client's Host header.
    app = FastAPI(title="tnews-deploy", version=__version__, lifespan=lifespan, redirect_slashes=False,
                  description=f"{task} with a verified ONNX model (`{summary['name']}`).\n\n"
                              "Every error has the body `{\"error\": {\"code\", \"message\", \"positions\"?}}`; "
                              "an unknown path gets 404 `not_found`, a wrong method 405 `method_not_allowed` "
                              "with an `Allow` header.")
    app.state.predictor = predictor
    app.state.batcher = batcher
    app.state.metrics = metrics
    app.state.queue = queue
    app.state.ready = False
    app.add_middleware(ObserveRequests, metrics=metrics)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # 404, 405 and the like: the documented error body instead of the framework's {"detail": ...}.
        code = HTTP_ERROR_CODES.get(exc.status_code, "http_error")
        message = {404: f"no such endpoint: {request.method} {request.url.path}.",
                   405: f"{request.method} is not allowed on {request.url.path}."}.get(exc.status_code,
                                                                                       str(exc.detail))
        return ApiError(exc.status_code, code, message, headers=dict(exc.headers or {})).response()

    @app.exception_handler(ClientDisconnect)
    async def client_left(request: Request, exc: ClientDisconnect) -> Response:
        # The client closed the connection before its body was read: nobody to answer, nothing went wrong here.
        # The status goes to the metrics and the access log only (499, as nginx counts it).
        return Response(status_code=CLIENT_CLOSED)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        # A bug. The server logs the traceback (the exception goes on to it); the client gets the error body.
        return ApiError(500, "internal_error", "internal error; the server logged the details.").response()

    internal = (500, "InternalError", "A bug: the server logged the details.")

    @app.post("/v1/classify", response_model=schemas.classify_response,
              openapi_extra=schemas.classify_request_body(),
              responses=schemas.responses(
                  (400, "BadRequest", "`invalid_json`: not JSON, nested too deeply, or an integer of thousands "
                                      "of digits; `invalid_utf8`: not UTF-8."),
                  (413, "PayloadTooLarge", f"`body_too_large`: a body over {config.max_body_bytes} bytes (more "
                                           "than any valid request needs)."),
                  (422, "Unprocessable", "`invalid_body`: not a JSON object; `missing_texts`; `texts_not_a_list`; "
                                         f"`too_many_texts`: more than {config.max_batch} texts (`maxItems`); "
                                         "`text_not_a_string`, `empty_text` (empty or whitespace-only), "
                                         "`invalid_text` (lone UTF-16 surrogate), `text_too_long`: a text over "
                                         f"{config.max_chars} characters (`maxLength`): positions named; "
                                         f"`invalid_top_k`: not an integer in 1..{num_labels}."),
                  (503, "Unavailable", f"`overloaded`: {config.max_queue} requests already wait for the model; "
                                       "`shutting_down`: the graceful-shutdown deadline ran out before the answer. "
                                       "Retry after `Retry-After` seconds."),
                  internal))
    async def classify(request: Request) -> dict[str, Any]:
        """Classify up to `max_batch` texts; answers in input order."""
        texts, top_k = parse_classify_request(await read_body(request, config.max_body_bytes), config, num_labels)
        request.state.texts = len(texts)
        metrics.texts.observe(len(texts))
        if not texts:
            return {"predictions": [], "model": summary}
        if not queue.try_enter():
            raise ApiError(503, "overloaded", f"the service is overloaded ({config.max_queue} requests are waiting "
                                              f"for the model); retry in {RETRY_AFTER_S} s.",
                           headers={"Retry-After": str(RETRY_AFTER_S)})
        try:
            if batcher is not None and len(texts) < config.batch_max_texts:
                results = await batcher.submit(texts, top_k)
            else:
                results = await run_in_threadpool(predictor.predict, texts, top_k)
        except asyncio.CancelledError:
            # uvicorn cancels the requests still running when the graceful-shutdown deadline runs out. Answer
            # them with the documented 503 (retry elsewhere) rather than uvicorn's bare 500.
            raise ApiError(503, "shutting_down", "the service stopped before this request was answered; retry.",
                           headers={"Retry-After": str(RETRY_AFTER_S)}) from None
        finally:
            queue.leave()
        if top_k == 1:
            predictions: list[Any] = [r.to_dict() for r in results]
        else:
            predictions = [[p.to_dict() for p in ranked] for ranked in results]
        return {"predictions": predictions, "model": summary}

    @app.get("/healthz", response_model=Health, responses=schemas.responses(internal))
    async def healthz() -> dict[str, str]:
        """Liveness: the process runs and its event loop answers."""
        return {"status": "ok"}

    @app.get("/readyz", response_model=Ready, responses=schemas.responses(
        (503, "NotReady", "`not_ready`: the model is not warmed up yet (or the service is stopping)."), internal))
    async def readyz(request: Request) -> dict[str, str]:
        """Readiness: the model is loaded and has answered its warm-up prediction."""
        if not request.app.state.ready:
            raise ApiError(503, "not_ready", "the model is not warmed up yet; retry shortly.")
        return {"status": "ready"}

    serving_cpu = cpu_description()

    @app.get("/v1/model", response_model=ModelInfo, responses=schemas.responses(internal))
    async def model_info() -> dict[str, Any]:
        """The served model: labels, max_length, limits, micro-batching and the export manifest."""
        manifest = predictor.manifest
        return {
            **summary,
            "tnews_deploy_version": __version__,
            "labels": list(predictor.labels),
            "max_length": predictor.max_length,
            "limits": {"max_batch": config.max_batch, "max_chars": config.max_chars, "max_queue": config.max_queue,
                       "max_body_bytes": config.max_body_bytes},
            "micro_batching": ({"window_ms": config.batch_window_ms, "max_texts": config.batch_max_texts,
                                "batches": batcher.batches, "requests": batcher.requests}
                               if batcher else None),
            "threads": predictor.threads,
            "cpu": {
                "serving": serving_cpu,
                "verified_on": (manifest.get("verification") or {}).get("machine"),
                "int8_kernels": predictor.kernel_plan.to_json() if predictor.kernel_plan.used else None,
            },
            "manifest": without_paths({
                "source": manifest.get("source"),
                "created": manifest.get("created"),
                "verification": manifest.get("verification"),
                "model": manifest.get("model"),
                "versions": manifest.get("versions"),
            }),
        }

    @app.get("/metrics", response_class=Response, responses={
        200: {"description": "Prometheus text format (OpenMetrics when the Accept header asks for it).",
              "content": {"text/plain": {"schema": {"type": "string"}},
                          "application/openmetrics-text": {"schema": {"type": "string"}}}},
        **schemas.responses(internal)})
    async def prometheus_metrics(request: Request) -> Response:
        """Prometheus metrics: requests, latency, texts per request, queue depth, model info and load time."""
        body, content_type = metrics.exposition(request.headers.get("accept"))
        return Response(body, media_type=content_type)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = add_path_errors(FastAPI.openapi(app), schemas)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    metrics.known_paths = {route.path for route in app.routes if hasattr(route, "path")}
    return app


def create_app_from_env() -> FastAPI:
    """uvicorn factory for `--workers N` (each worker process builds its own app).

    A worker that cannot build its app (its model folder deleted or damaged since the service started, say)
    logs why and exits with uvicorn's `STARTUP_FAILURE` status: uvicorn's supervisor then stops the whole
    service instead of respawning a worker that would fail the same way forever (see `serve`).
    """
    try:
        return create_app(ServiceConfig.from_env())
    except UserError as exc:
        logger.error("worker %d cannot serve: %s", os.getpid(), exc)
    except Exception:
        logger.exception("worker %d cannot serve: building the app failed", os.getpid())
    sys.exit(STARTUP_FAILURE)


def log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging setup plus the `tnews_deploy` loggers (the access log among them), on stderr."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["tnews_deploy"] = {"handlers": ["default"], "level": level.upper(), "propagate": False}
    return config


@contextmanager
def _exit_zero_after_graceful_stop():
    """Make a SIGTERM/SIGINT that uvicorn handled gracefully end the process with status 0.

    uvicorn re-raises the signal that stopped it once it has shut down, with the handler that was there
    before it started; under the default handler the process would then die "killed by SIGTERM". A no-op
    handler lets `serve` return normally instead.
    """
    handled = (signal.SIGTERM, signal.SIGINT)
    previous = {sig: signal.signal(sig, lambda signum, frame: None) for sig in handled}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _exit_without_stuck_model_calls(wait_s: float = 1.0) -> None:
    """End the process now if model calls cancelled at the graceful-shutdown deadline are still running.

    A model call in the thread pool cannot be interrupted, and Python waits for those threads at exit, which
    would stretch the deadline by up to one batch's time. Their requests are already answered (503
    `shutting_down`) and the server is closed, so nothing is lost by not waiting. (uvicorn's worker
    processes, with `--workers N`, end on the re-raised signal and do not wait either.)
    """
    others = [t for t in threading.enumerate() if t is not threading.current_thread() and not t.daemon]
    end = time.monotonic() + wait_s
    for thread in others:
        thread.join(max(0.0, end - time.monotonic()))
    stuck = [t for t in others if t.is_alive()]
    if stuck:
        logger.warning("%d model call(s) still running after the graceful-shutdown deadline; exiting without "
                       "waiting for them.", len(stuck))
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


class _Supervisor(Multiprocess):
    """uvicorn's `Multiprocess` supervisor, closing the parent's listening socket before the workers drain.

    On SIGTERM the supervisor tells every worker to stop and waits for them; each worker closes its own copy of
    the listening socket, but the parent's copy stays open until the last worker has drained, so the kernel
    goes on completing handshakes that nobody accepts and resets them when the parent exits, seconds later.
    Closing the parent's copy first makes a new connection fail at once (refused), so clients and load balancers
    go elsewhere. uvicorn (0.55) has no hook for this (upstream PR #2010 proposed it, unmerged), hence this
    one-method subclass. Everything else is uvicorn's: respawning a worker that dies while serving, and stopping
    every worker when one exits with `STARTUP_FAILURE` (a worker that cannot load its model; uvicorn >= 0.50).
    """

    def terminate_all(self) -> None:
        for sock in self.sockets:
            sock.close()
        super().terminate_all()

    @property
    def startup_failed(self) -> bool:
        """Whether it stopped because a worker could not start (exited with `STARTUP_FAILURE`)."""
        return any(process.exitcode == STARTUP_FAILURE for process in self.processes)


def _worker_failure(model_dir: Any) -> ModelError:
    """The one-line error for a worker that could not start: the model folder's fault when it is the cause."""
    try:
        Predictor(model_dir, threads=1)
    except UserError as exc:
        return ModelError(f"a worker could not load the model, so the service stopped: {exc}")
    return ModelError("a worker could not start (its error is logged above), so the service stopped.")


def serve(config: ServiceConfig, host: str = "127.0.0.1", port: int = 8000, workers: int = 1,
          log_level: str = "info", on_loaded: Callable[[], None] | None = None) -> None:
    """Run the service with uvicorn until SIGTERM/SIGINT, then stop gracefully.

    On the signal: stop accepting connections (new ones are refused at once), let in-flight requests finish for
    up to `config.graceful_timeout_s` (then cancel them), and return (exit status 0). With `workers` > 1, metrics
    use prometheus-client's multiprocess mode in a fresh temporary folder (or `$PROMETHEUS_MULTIPROC_DIR` when
    set); a worker that dies while serving is replaced, but one that cannot load its model stops the service:
    the other workers drain as on SIGTERM, then `ModelError` is raised (the CLI prints it and exits 2), so that
    a supervisor (systemd, Kubernetes) sees the failure instead of a service at part capacity.

    Args:
        config: what to serve and its limits.
        host, port: where to listen.
        workers: uvicorn worker processes, each with its own model.
        log_level: for uvicorn's and this package's loggers (the access log is at info).
        on_loaded: called once before listening: with one worker after the model has loaded (a folder that
            cannot be served raises `ModelLoadError` first); with several, before they start (each loads its own).
    """
    import uvicorn

    options = dict(host=host, port=port, log_level=log_level, log_config=log_config(log_level), access_log=False,
                   timeout_graceful_shutdown=config.graceful_timeout_s)
    with _exit_zero_after_graceful_stop():
        if workers == 1:
            app = create_app(config)
            if on_loaded is not None:
                on_loaded()
            uvicorn.run(app, **options)
            _exit_without_stuck_model_calls()
            return
        if on_loaded is not None:
            on_loaded()
        os.environ.update(config.to_env())
        own_dir = None
        if not os.environ.get(MULTIPROC_ENV):
            own_dir = tempfile.mkdtemp(prefix="tnews-deploy-metrics-")
            os.environ[MULTIPROC_ENV] = own_dir
        try:
            # What uvicorn.run does for workers > 1, with `_Supervisor` in place of `Multiprocess`.
            server = uvicorn.Config("tnews_deploy.service.app:create_app_from_env", factory=True, workers=workers,
                                    **options)
            supervisor = _Supervisor(server, sockets=[server.bind_socket()])
            supervisor.run()
        finally:
            if own_dir:
                shutil.rmtree(own_dir, ignore_errors=True)
                os.environ.pop(MULTIPROC_ENV, None)
        if supervisor.startup_failed:
            raise _worker_failure(config.model_dir)

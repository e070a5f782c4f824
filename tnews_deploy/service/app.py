"""The HTTP service: FastAPI over one `Predictor` (`pip install "tnews-deploy[serve]"`).

Endpoints:

* `POST /v1/classify` `{"texts": ["…"], "top_k": 1}` ->
  `{"predictions": [{"label", "label_id", "score"}, …], "model": {…}}`
  (with `top_k` > 1 each prediction is a list of the k best);
* `GET /healthz` -> `{"status": "ok"}`;
* `GET /v1/model` -> labels, max_length, limits and the export manifest's
  source, parity and sha256.

Every bad request gets a 4xx with `{"error": {"code", "message"[, "positions"]}}`,
never a 500: invalid JSON or UTF-8, or JSON nested too deeply (400); a body that
is not an object, `texts` that is not a list, non-string or empty texts, texts
with lone UTF-16 surrogates (422, positions named); more than `max_batch` texts or
a text over `max_chars` characters (413); an unknown path (404) or method (405).
`/v1/model` shows the manifest without filesystem paths.

Prediction runs in the thread pool, off the event loop, so slow requests do not
block others. With `batch_window_ms` > 0, concurrent small requests are
coalesced into one predictor call (`MicroBatcher`). The service loads nothing but the model folder it is given and
never unpickles anything.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from contextlib import asynccontextmanager
from pathlib import PurePath
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..inputs import SURROGATE_MESSAGE, format_positions, invalid_positions
from ..predictor import Predictor
from .config import ServiceConfig

HTTP_ERROR_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, positions: list[int] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.positions = status, code, message, positions

    def response(self) -> JSONResponse:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.positions is not None:
            error["positions"] = self.positions
        return JSONResponse({"error": error}, status_code=self.status)


def parse_classify_request(raw: bytes, config: ServiceConfig, num_labels: int) -> tuple[list[str], int]:
    """Validate a /v1/classify body; raises `ApiError` with the status to answer."""
    try:
        body = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ApiError(400, "invalid_utf8", f"request body is not valid UTF-8 ({exc.reason}).") from exc
    except json.JSONDecodeError as exc:
        raise ApiError(400, "invalid_json",
                       f"request body is not valid JSON ({exc.msg} at position {exc.pos}).") from exc
    except RecursionError as exc:
        raise ApiError(400, "invalid_json", "request body is nested too deeply to be a classify request.") from exc
    if not isinstance(body, dict):
        raise ApiError(422, "invalid_body", 'body must be a JSON object like {"texts": ["..."], "top_k": 1}.')
    if "texts" not in body:
        raise ApiError(422, "missing_texts", "'texts' is required: a list of strings.")
    texts, top_k = body["texts"], body.get("top_k", 1)
    if not isinstance(texts, list):
        raise ApiError(422, "texts_not_a_list", f"'texts' must be a list of strings, got {type(texts).__name__}.")
    if len(texts) > config.max_batch:
        raise ApiError(413, "too_many_texts", f"{len(texts)} texts; at most {config.max_batch} per request.")
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
        raise ApiError(413, "text_too_long", f"text over {config.max_chars} characters at position(s) "
                       f"{format_positions(too_long)}.", too_long)
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= num_labels:
        raise ApiError(422, "invalid_top_k", f"'top_k' must be an integer in 1..{num_labels}, got {top_k!r}.")
    return texts, top_k


class MicroBatcher:
    """Coalesce concurrent classify calls into one predictor call (dynamic batching).

    The first waiting request opens a window of `window_s` (unless it is the only
    request in flight); requests that arrive in it (up to `max_texts` texts) join
    the batch. One `predict_proba` runs in
    the thread pool, and each request gets its own rows back. While a batch
    runs, new requests queue up and form the next one.
    """

    def __init__(self, predictor: Predictor, window_s: float, max_texts: int) -> None:
        self.predictor, self.window_s, self.max_texts = predictor, window_s, max_texts
        self.queue: asyncio.Queue | None = None
        self.task: asyncio.Task | None = None
        self.batches = 0
        self.requests = 0
        self.in_flight = 0  # requests submitted and not answered yet

    async def start(self) -> None:
        self.queue = asyncio.Queue()
        self.task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass

    async def submit(self, texts: list[str], top_k: int) -> list:
        future = asyncio.get_running_loop().create_future()
        self.in_flight += 1
        try:
            await self.queue.put((texts, top_k, future))
            return await future
        finally:
            self.in_flight -= 1

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            size = len(batch[0][0])
            # A lone request does not wait out the window: nobody else could join it.
            deadline = loop.time() + (self.window_s if self.in_flight > 1 else 0.0)
            while size < self.max_texts:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self.queue.get(), remaining)
                except asyncio.TimeoutError:
                    break
                batch.append(item)
                size += len(item[0])
            texts = [t for item in batch for t in item[0]]
            try:
                probs = await run_in_threadpool(self.predictor.predict_proba, texts)
            except Exception as exc:  # hand the failure to every waiting request
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            self.batches += 1
            self.requests += len(batch)
            offset = 0
            for item_texts, top_k, future in batch:
                rows = probs[offset:offset + len(item_texts)]
                offset += len(item_texts)
                if not future.done():
                    future.set_result(self.predictor.rank(rows, top_k))


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


CLASSIFY_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {
            "type": "object",
            "required": ["texts"],
            "properties": {
                "texts": {"type": "array", "items": {"type": "string", "minLength": 1}},
                "top_k": {"type": "integer", "minimum": 1, "default": 1},
            },
        }}},
    }
}


def create_app(config: ServiceConfig) -> FastAPI:
    """The FastAPI app serving `config.model_dir` (loaded once, here)."""
    predictor = Predictor(config.model_dir, threads=config.threads)
    summary = model_summary(predictor)
    batcher = (MicroBatcher(predictor, config.batch_window_ms / 1000, config.batch_max_texts)
               if config.batch_window_ms > 0 else None)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if batcher:
            await batcher.start()
        yield
        if batcher:
            await batcher.stop()

    app = FastAPI(title="tnews-deploy", version=__version__, lifespan=lifespan,
                  description="Chinese news-title classification (CLUE TNEWS) with a verified ONNX model.")
    app.state.predictor = predictor
    app.state.batcher = batcher

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
        response = ApiError(exc.status_code, code, message).response()
        for name, value in (exc.headers or {}).items():
            response.headers[name] = value
        return response

    @app.post("/v1/classify", openapi_extra=CLASSIFY_SCHEMA)
    async def classify(request: Request) -> dict[str, Any]:
        texts, top_k = parse_classify_request(await request.body(), config, len(predictor.labels))
        if not texts:
            results: list = []
        elif batcher is not None and len(texts) < config.batch_max_texts:
            results = await batcher.submit(texts, top_k)
        else:
            results = await run_in_threadpool(predictor.predict, texts, top_k)
        if top_k == 1:
            predictions: list[Any] = [r.to_dict() for r in results]
        else:
            predictions = [[p.to_dict() for p in ranked] for ranked in results]
        return {"predictions": predictions, "model": summary}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/model")
    async def model_info() -> dict[str, Any]:
        manifest = predictor.manifest
        return {
            **summary,
            "labels": list(predictor.labels),
            "max_length": predictor.max_length,
            "limits": {"max_batch": config.max_batch, "max_chars": config.max_chars},
            "micro_batching": ({"window_ms": config.batch_window_ms, "max_texts": config.batch_max_texts,
                                "batches": batcher.batches, "requests": batcher.requests}
                               if batcher else None),
            "threads": predictor.threads,
            "manifest": without_paths({
                "source": manifest.get("source"),
                "created": manifest.get("created"),
                "verification": manifest.get("verification"),
                "model": manifest.get("model"),
                "versions": manifest.get("versions"),
            }),
        }

    return app


def create_app_from_env() -> FastAPI:
    """uvicorn factory for `--workers N` (each worker process builds its own app)."""
    return create_app(ServiceConfig.from_env())


def serve(config: ServiceConfig, host: str = "127.0.0.1", port: int = 8000, workers: int = 1,
          log_level: str = "info") -> None:
    import uvicorn

    if workers > 1:
        os.environ.update(config.to_env())
        uvicorn.run("tnews_deploy.service.app:create_app_from_env", factory=True, host=host, port=port,
                    workers=workers, log_level=log_level)
    else:
        uvicorn.run(create_app(config), host=host, port=port, log_level=log_level)

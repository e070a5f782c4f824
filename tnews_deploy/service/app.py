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
* `GET /openapi.json` -> the API document, built from `schemas` with this app's limits;
* `GET /docs`, `GET /redoc` -> the interactive API pages, only with `ServiceConfig.docs` (`serve --docs`).

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
import functools
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from .. import __version__
from ..errors import ModelError, UserError
from ..int8_weights import cpu_description
from ..labels import TNEWS_LABEL_NAMES
from ..predictor import Predictor
from .config import ServiceConfig
from .errors import add_error_handlers
from .metrics import MULTIPROC_ENV, ObserveRequests, ServiceMetrics
from .routes import add_routes
from .routes.deps import Service
from .schemas import add_path_errors, build_schemas

logger = logging.getLogger(__name__)

WARMUP_TEXT = "北京大学举行毕业典礼"


class MicroBatcher:
    """Coalesce concurrent classify calls into shared predictor calls (dynamic batching, adaptive window).

    Submitted requests queue up. A batch takes every request already waiting (up to `max_texts` texts) and runs
    as one `predict_proba` in the thread pool, its texts sorted by length and cut into model calls of
    `call_texts` (short texts are not padded to long ones), at most `max_calls` batches at once; while they
    run, new requests queue and form the next batch, so under load batches grow without any timer. The window
    only holds a batch back while more company is actually coming: a request that finds nobody else waiting (a
    lone request) runs at once, and so does a batch that already has `target_texts` texts (by default the
    predictor's batch size); otherwise the batch waits for more requests while they keep arriving (each within
    `window_s / 2` of the last), `window_s` at most in all. Each request gets its own rows back; with a
    batch-invariant model (fp32, per-token int8) its answer is the one it would get alone.

    Args:
        predictor: the model.
        window_s: the longest a batch waits for more requests, in seconds.
        max_texts: most texts in one batch (a larger request runs as a batch of its own).
        max_calls: most batches in the model at once; requests beyond that wait, and form larger batches.
            Calls in parallel keep the cores busy while one tokenizes, pads or ranks, or loses its core to a
            neighbour: in trial runs on 2 shared cores (docs/load-test-microbatch.md) one call at a time served
            about half the requests of independent calls, 2 still clearly fewer, 8 about as many.
        target_texts: a batch this large runs without waiting; default: the predictor's batch size.
        call_texts: texts per model call within a batch. Small calls of length-sorted texts pad least: on
            e5-small int8 (2 CPUs, per CPU-second) 4 requests of 8 texts cost 21 % less as 4 sorted calls of 8
            than as they came, 16 % more as one call of 32.
    """

    def __init__(
        self,
        predictor: Predictor,
        window_s: float,
        max_texts: int,
        max_calls: int = 8,
        target_texts: int | None = None,
        call_texts: int = 8,
    ) -> None:
        self.predictor, self.window_s, self.max_texts, self.max_calls = predictor, window_s, max_texts, max_calls
        self.call_texts = call_texts
        self.target_texts = min(max_texts, target_texts or predictor.batch_size)
        self.queue: asyncio.Queue  # made by start(), on the serving loop, as `slots`
        self.task: asyncio.Task | None = None
        self.calls: set[asyncio.Task] = set()
        self.slots: asyncio.Semaphore
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
                probs = await run_in_threadpool(self.predictor.predict_proba, texts, self.call_texts)
            except Exception as exc:  # hand the failure to every waiting request
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                return
            self.batches += 1
            self.requests += len(batch)
            offset = 0
            for item_texts, top_k, future in batch:
                rows = probs[offset : offset + len(item_texts)]
                offset += len(item_texts)
                if not future.done():
                    future.set_result(self.predictor.rank(rows, top_k))
        finally:
            self.slots.release()


def model_summary(predictor: Predictor) -> dict[str, Any]:
    manifest = predictor.manifest
    return {
        "name": predictor.model_name,
        "version": predictor.model_version,
        "sha256": manifest.get("model", {}).get("sha256"),
        "quantization": (manifest.get("quantization") or {}).get("mode", "none"),
        "optimization": (manifest.get("optimization") or {}).get("level", "none"),
    }


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


@asynccontextmanager
async def lifespan(app: FastAPI):
    """Start the micro-batcher and warm the model up (then `/readyz` answers ready); stop them on shutdown."""
    service: Service = app.state.service
    batcher, metrics = service.batcher, service.metrics
    if batcher:
        await batcher.start()
    warm = time.perf_counter()
    await run_in_threadpool(service.predictor.predict, [WARMUP_TEXT])  # first-call costs are paid before /readyz
    metrics.warmup_seconds.set(time.perf_counter() - warm)
    app.state.ready = True
    metrics.ready.set(1)
    logger.info(
        "loaded the model (%s) in %.2f s, warmed it up in %.2f s: ready",
        service.summary["name"],
        service.load_seconds,
        time.perf_counter() - warm,
    )
    try:
        yield
    finally:
        app.state.ready = False
        metrics.ready.set(0)
        if batcher:
            await batcher.stop()
        metrics.process_exited()


def openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's API document of `app`, plus the 404/405 answers that belong to no route (built once)."""
    if app.openapi_schema is None:
        app.openapi_schema = add_path_errors(FastAPI.openapi(app), app.state.service.schemas)
    return app.openapi_schema


def create_app(config: ServiceConfig) -> FastAPI:
    """The FastAPI app serving `config.model_dir` (loaded once, here; warmed up when the app starts).

    The interactive API pages (`/docs`, `/redoc`) are off unless `config.docs` asks for them (`serve --docs`):
    FastAPI's pages load Swagger UI / ReDoc from a CDN (cdn.jsdelivr.net), so offline they are blank, and in
    production each visit has the browser run third-party code. Serving the assets from here was weighed and
    not done: the PyPI package that ships them, swagger-ui-bundle (1.1.0, its newest), carries Swagger UI
    4.15.5, which cannot render OpenAPI 3.1 documents such as FastAPI's (Swagger UI 5 can), and vendoring
    megabytes of JavaScript into this package is not ours to maintain. `/openapi.json` is always served: any
    OpenAPI viewer or client generator reads it.

    The routes live in `service.routes` (one module per endpoint group); they reach the model, the limits,
    the micro-batcher and the metrics through `app.state.service` (`routes.deps.Service`). `app.state` also
    holds `predictor`, `batcher`, `metrics`, `queue` and `ready`.

    Args:
        config: the model folder and the limits.
    """
    started = time.perf_counter()
    predictor = Predictor(config.model_dir, threads=config.threads)
    load_seconds = time.perf_counter() - started
    summary = model_summary(predictor)
    metrics = ServiceMetrics(config.max_batch, config.max_queue)
    metrics.set_model(summary, load_seconds)
    service = Service(
        config=config,
        predictor=predictor,
        schemas=build_schemas(config.max_batch, config.max_chars, tuple(predictor.labels)),
        summary=summary,
        metrics=metrics,
        queue=ModelQueue(config.max_queue, metrics.queue_depth),
        batcher=(
            MicroBatcher(predictor, config.batch_window_ms / 1000, config.batch_max_texts)
            if config.batch_window_ms > 0
            else None
        ),
        serving_cpu=cpu_description(),
        load_seconds=load_seconds,
    )

    task = (
        "Chinese news-title classification (CLUE TNEWS)"
        if tuple(predictor.labels) == TNEWS_LABEL_NAMES
        else f"Text classification into {service.num_labels} classes"
    )
    # redirect_slashes=False: `/v1/classify/` is a 404 like any unknown path, not a 307 to a Location built from
    # the client's Host header.
    app = FastAPI(
        title="tnews-deploy",
        version=__version__,
        lifespan=lifespan,
        redirect_slashes=False,
        docs_url="/docs" if config.docs else None,
        redoc_url="/redoc" if config.docs else None,
        description=f"{task} with a verified ONNX model (`{summary['name']}`).\n\n"
        'Every error has the body `{"error": {"code", "message", "positions"?}}`; '
        "an unknown path gets 404 `not_found`, a wrong method 405 `method_not_allowed` "
        "with an `Allow` header.",
    )
    app.state.service = service
    app.state.predictor = predictor
    app.state.batcher = service.batcher
    app.state.metrics = metrics
    app.state.queue = service.queue
    app.state.ready = False
    app.add_middleware(ObserveRequests, metrics=metrics)
    add_error_handlers(app)
    add_routes(app.router, service)
    app.openapi = functools.partial(openapi, app)  # type: ignore[method-assign]
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
        logger.warning(
            "%d model call(s) still running after the graceful-shutdown deadline; exiting without waiting for them.",
            len(stuck),
        )
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


def serve(
    config: ServiceConfig,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    log_level: str = "info",
    on_loaded: Callable[[], None] | None = None,
) -> None:
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

    options: dict[str, Any] = dict(
        host=host,
        port=port,
        log_level=log_level,
        log_config=log_config(log_level),
        access_log=False,
        timeout_graceful_shutdown=config.graceful_timeout_s,
    )
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
            server = uvicorn.Config(
                "tnews_deploy.service.app:create_app_from_env", factory=True, workers=workers, **options
            )
            supervisor = _Supervisor(server, sockets=[server.bind_socket()])
            supervisor.run()
        finally:
            if own_dir:
                shutil.rmtree(own_dir, ignore_errors=True)
                os.environ.pop(MULTIPROC_ENV, None)
        if supervisor.startup_failed:
            raise _worker_failure(config.model_dir)

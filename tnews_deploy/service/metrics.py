"""What the service reports about itself: Prometheus metrics and one access-log line per request.

`ServiceMetrics` owns one app's metrics (its own `CollectorRegistry`, so several apps in one process do not
clash). With `--workers N` `serve` sets `PROMETHEUS_MULTIPROC_DIR`, and the metrics use prometheus-client's
multiprocess mode: every worker writes its values to files there and `/metrics`, whichever worker answers it,
reports the sum over all workers (queue depth: the live workers'; model gauges: the largest value). Process
metrics (CPU, memory) are only reported with one worker (multiprocess mode cannot collect them).

`ObserveRequests` is the ASGI middleware that times every HTTP request, counts it by method, endpoint and status,
and logs one line through the `tnews_deploy.service.access` logger: method, path, status, number of texts, ms. Texts
themselves are never logged. Labels are bounded whatever clients send (unknown methods and paths count as
`other`), and the client's method and path are logged with control and other non-printable characters escaped
(a carriage return is written as the two characters `\\r`), so a request cannot forge or garble log lines.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess
from prometheus_client.exposition import choose_encoder

access_logger = logging.getLogger("tnews_deploy.service.access")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
CLIENT_CLOSED = 499  # nginx's code for "the client went away before the answer"
# The `method` label takes these values, anything else counts as "other" (a client may send any token).
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"})
OTHER = "other"


def printable(value: str) -> str:
    """`value` with backslashes and non-printable characters (CR, LF, ESC, U+2028, ...) escaped as in Python
    literals, for log lines a client's input goes into; printable text (Chinese included) stays as it is."""
    if value.isprintable() and "\\" not in value:
        return value
    return "".join(c if c.isprintable() and c != "\\" else c.encode("unicode_escape").decode("ascii") for c in value)


def texts_buckets(max_batch: int) -> tuple[float, ...]:
    """0, 1, 2, 4, ... up to `max_batch` (the histogram's upper bounds for texts per request)."""
    bounds = [0.0]
    size = 1
    while size < max_batch:
        bounds.append(float(size))
        size *= 2
    bounds.append(float(max_batch))
    return tuple(bounds)


class ServiceMetrics:
    """The Prometheus metrics of one app.

    Args:
        max_batch: most texts per request (sets the texts-per-request buckets).
        max_queue: the queue limit (exported as a gauge).
        multiprocess_dir: prometheus-client's multiprocess folder; default: `$PROMETHEUS_MULTIPROC_DIR`
            (set by `serve` for `--workers N`); None: one process.
    """

    def __init__(self, max_batch: int, max_queue: int, multiprocess_dir: str | None = None) -> None:
        self.multiprocess_dir = multiprocess_dir or os.environ.get(MULTIPROC_ENV) or None
        self.known_paths: set[str] = set()  # the app's route paths (labels); unknown paths count as "other"
        self.registry = CollectorRegistry(auto_describe=True)
        if not self.multiprocess_dir:
            from prometheus_client import GC_COLLECTOR, PLATFORM_COLLECTOR, PROCESS_COLLECTOR

            for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
                self.registry.register(collector)
        reg = self.registry
        self.requests = Counter(
            "tnews_http_requests",
            "HTTP requests answered, by method, endpoint and status.",
            ["method", "endpoint", "status"],
            registry=reg,
        )
        self.latency = Histogram(
            "tnews_http_request_duration_seconds",
            "Time from request to the end of the answer, by endpoint.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.texts = Histogram(
            "tnews_classify_texts_per_request",
            "Texts per valid /v1/classify request (including ones refused as overloaded).",
            buckets=texts_buckets(max_batch),
            registry=reg,
        )
        self.queue_depth = Gauge(
            "tnews_model_queue_depth",
            "Classify requests waiting for or in the model now.",
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.queue_limit = Gauge(
            "tnews_model_queue_limit",
            "--max-queue: the most requests the queue holds (per worker).",
            registry=reg,
            multiprocess_mode="livemax",
        )
        self.model_info = Gauge(
            "tnews_model_info",
            "The served model (value 1): name, version (empty when unknown), sha256 of the ONNX "
            "file, quantisation and optimisation of the export.",
            ["name", "version", "sha256", "quantization", "optimization"],
            registry=reg,
            multiprocess_mode="livemax",
        )
        self.load_seconds = Gauge(
            "tnews_model_load_seconds",
            "Seconds it took to load the model at start-up.",
            registry=reg,
            multiprocess_mode="max",
        )
        self.warmup_seconds = Gauge(
            "tnews_model_warmup_seconds",
            "Seconds the warm-up prediction took at start-up.",
            registry=reg,
            multiprocess_mode="max",
        )
        self.ready = Gauge(
            "tnews_ready",
            "1 once the model is loaded and warmed up (/readyz answers 200).",
            registry=reg,
            multiprocess_mode="livemin",
        )
        self.queue_limit.set(max_queue)
        self.ready.set(0)

    def set_model(self, summary: dict[str, Any], load_seconds: float) -> None:
        self.model_info.labels(
            name=summary["name"],
            version=summary.get("version") or "",
            sha256=summary["sha256"] or "",
            quantization=summary["quantization"],
            optimization=summary["optimization"],
        ).set(1)
        self.load_seconds.set(load_seconds)

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """The metrics in the format the `Accept` header asks for (Prometheus text by default)."""
        encoder, content_type = choose_encoder(accept or "")
        if self.multiprocess_dir:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=self.multiprocess_dir)
            return encoder(registry), content_type
        return encoder(self.registry), content_type

    def process_exited(self) -> None:
        """Drop this worker's live gauges (multiprocess mode), so they stop counting in the sums."""
        if self.multiprocess_dir:
            multiprocess.mark_process_dead(os.getpid(), path=self.multiprocess_dir)


class ObserveRequests:
    """ASGI middleware: per HTTP request, metrics and one access-log line.

    The endpoint label is the matched route's path (`/v1/classify`), or `other` for unknown paths, and the method
    label one of `HTTP_METHODS` or `other`, so that fuzzed URLs and methods cannot blow up the number of time
    series. The access log escapes what the client sent (`printable`). Handlers put the number of texts in
    `request.state.texts`.
    """

    def __init__(self, app: Any, metrics: ServiceMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        state = scope.setdefault("state", {})
        status: int | None = None

        async def send_observed(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_observed)
        except BaseException as exc:
            if status is None:
                # An exception that reaches the server is answered 500; a cancellation means that the client
                # left, or that the graceful-shutdown deadline ran out.
                status = 500 if isinstance(exc, Exception) else CLIENT_CLOSED
            raise
        finally:
            seconds = time.perf_counter() - started
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or (
                scope["path"] if scope["path"] in self.metrics.known_paths else OTHER
            )
            texts = state.get("texts")
            status = status or 500
            method = scope["method"] if scope["method"] in HTTP_METHODS else OTHER
            self.metrics.requests.labels(method=method, endpoint=endpoint, status=str(status)).inc()
            self.metrics.latency.labels(endpoint=endpoint).observe(seconds)
            logged_method, logged_path = printable(scope["method"]), printable(scope["path"])
            access_logger.info(
                "%s %s %d texts=%s %.1fms",
                logged_method,
                logged_path,
                status,
                "-" if texts is None else texts,
                seconds * 1000,
                extra={
                    "method": logged_method,
                    "path": logged_path,
                    "status": status,
                    "texts": texts,
                    "duration_ms": round(seconds * 1000, 3),
                },
            )

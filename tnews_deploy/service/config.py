"""The service's settings: `ServiceConfig`, validated on creation (stdlib only).

Kept apart from the app so that the CLI can read its defaults without importing
FastAPI, and so that `--workers N` processes can rebuild it from the environment.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..validation import require

ENV_PREFIX = "TNEWS_DEPLOY_"
# Body cap: the largest valid request (max_batch texts of max_chars characters, each character at its longest
# JSON spelling, a \uXXXX\uXXXX surrogate pair = 12 bytes) plus this much for the rest (keys, top_k, spaces).
BODY_SLACK_BYTES = 64 * 1024
MAX_JSON_BYTES_PER_CHAR = 12


@dataclass(frozen=True)
class ServiceConfig:
    """What one service process serves and its limits; validates itself.

    Args:
        model_dir: an exported model folder, `default` (the bundled model) or an installed model package's name
            (`tnews_deploy.models`); None: the default model (`$TNEWS_DEPLOY_MODEL` when set, else the bundled one).
        max_batch: most texts in one request (more: 422 `too_many_texts`).
        max_chars: longest text accepted, in characters (longer: 422 `text_too_long`).
        threads: onnxruntime intra-op threads; None: every usable CPU.
        batch_window_ms: micro-batching window; concurrent requests arriving within it share one
            predictor call. 0 = off.
        batch_max_texts: most texts in one micro-batch.
        max_queue: most classify requests waiting for or in the model at once (thread pool or
            micro-batcher); one more gets an immediate 503 `overloaded` with `Retry-After`.
        graceful_timeout_s: on SIGTERM, how long in-flight requests may take to finish before they
            are cancelled and the process exits.
        docs: serve the interactive API pages `/docs` (Swagger UI) and `/redoc`. Off by default: their
            scripts and styles load from a CDN (see `app.create_app` for why they are not served from here).
            `/openapi.json` is always served.
    """

    model_dir: Path | None = None
    max_batch: int = 256
    max_chars: int = 2000
    threads: int | None = None
    batch_window_ms: float = 0.0
    batch_max_texts: int = 64
    max_queue: int = 64
    graceful_timeout_s: float = 30.0
    docs: bool = False

    def __post_init__(self) -> None:
        if self.model_dir is not None:
            object.__setattr__(self, "model_dir", Path(self.model_dir))
        checks = [
            (self.max_batch >= 1, f"--max-batch must be >= 1 (got {self.max_batch})"),
            (self.max_chars >= 1, f"--max-chars must be >= 1 (got {self.max_chars})"),
            (self.threads is None or self.threads >= 1, f"--threads must be >= 1 (got {self.threads})"),
            (self.batch_window_ms >= 0, f"--batch-window-ms must be >= 0 (got {self.batch_window_ms})"),
            (self.batch_max_texts >= 1, f"batch_max_texts must be >= 1 (got {self.batch_max_texts})"),
            (self.max_queue >= 1, f"--max-queue must be >= 1 (got {self.max_queue})"),
            (self.graceful_timeout_s > 0, f"--graceful-timeout must be > 0 seconds (got {self.graceful_timeout_s})"),
        ]
        require(checks)

    @property
    def max_body_bytes(self) -> int:
        """Largest request body read (larger: 413 `body_too_large` before it is read): any valid request fits."""
        return BODY_SLACK_BYTES + self.max_batch * (self.max_chars * MAX_JSON_BYTES_PER_CHAR + 8)

    def to_env(self) -> dict[str, str]:
        """For uvicorn workers, which build the app in their own process."""
        env = {
            # empty: no model given, so the workers load the default model, as this process would
            f"{ENV_PREFIX}MODEL_DIR": "" if self.model_dir is None else str(self.model_dir),
            f"{ENV_PREFIX}MAX_BATCH": str(self.max_batch),
            f"{ENV_PREFIX}MAX_CHARS": str(self.max_chars),
        }
        if self.threads:
            env[f"{ENV_PREFIX}THREADS"] = str(self.threads)
        env[f"{ENV_PREFIX}BATCH_WINDOW_MS"] = str(self.batch_window_ms)
        env[f"{ENV_PREFIX}BATCH_MAX_TEXTS"] = str(self.batch_max_texts)
        env[f"{ENV_PREFIX}MAX_QUEUE"] = str(self.max_queue)
        env[f"{ENV_PREFIX}GRACEFUL_TIMEOUT_S"] = str(self.graceful_timeout_s)
        env[f"{ENV_PREFIX}DOCS"] = "1" if self.docs else "0"
        return env

    @classmethod
    def from_env(cls) -> ServiceConfig:
        threads = os.environ.get(f"{ENV_PREFIX}THREADS")
        model_dir = os.environ.get(f"{ENV_PREFIX}MODEL_DIR")
        return cls(
            model_dir=Path(model_dir) if model_dir else None,
            max_batch=int(os.environ.get(f"{ENV_PREFIX}MAX_BATCH", 256)),
            max_chars=int(os.environ.get(f"{ENV_PREFIX}MAX_CHARS", 2000)),
            threads=int(threads) if threads else None,
            batch_window_ms=float(os.environ.get(f"{ENV_PREFIX}BATCH_WINDOW_MS", 0)),
            batch_max_texts=int(os.environ.get(f"{ENV_PREFIX}BATCH_MAX_TEXTS", 64)),
            max_queue=int(os.environ.get(f"{ENV_PREFIX}MAX_QUEUE", 64)),
            graceful_timeout_s=float(os.environ.get(f"{ENV_PREFIX}GRACEFUL_TIMEOUT_S", 30.0)),
            docs=os.environ.get(f"{ENV_PREFIX}DOCS", "0") == "1",
        )

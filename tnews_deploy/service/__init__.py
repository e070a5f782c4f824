"""The HTTP service over one `Predictor` (`pip install "tnews-deploy[serve]"`).

`config` holds `ServiceConfig` (stdlib only, cheap to import); `app` builds the
FastAPI app (`create_app`) and holds the micro-batcher, backpressure and `serve`;
`routes` the endpoints, one module each; `errors` the error contract; `schemas`
the pydantic models behind /openapi.json; `metrics` the Prometheus metrics and
the access log. Importing this package imports neither FastAPI nor onnxruntime
until an app name is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_exports
from .config import ServiceConfig

__all__ = ["ApiError", "MicroBatcher", "ServiceConfig", "create_app", "create_app_from_env", "serve"]

if TYPE_CHECKING:
    from .app import MicroBatcher, create_app, create_app_from_env, serve
    from .errors import ApiError

_APP_NAMES = {"MicroBatcher", "create_app", "create_app_from_env", "serve", "model_summary"}

__getattr__ = lazy_exports(
    __name__,
    {
        **dict.fromkeys(_APP_NAMES, "app"),
        "ApiError": "errors",
        "parse_classify_request": "routes.classify",
        "without_paths": "routes.model",
    },
)

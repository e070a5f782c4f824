"""The service's endpoints, one module per concern: `classify` (POST /v1/classify), `health` (/healthz,
/readyz), `model` (/v1/model), `metrics` (/metrics).

The handlers are plain module functions that get the app's `deps.Service` (model, limits, micro-batcher,
metrics) through a FastAPI dependency; each module's `add_routes(router, service)` registers them on an
`APIRouter` with the documentation of that app's limits and labels, so the OpenAPI document states what this
process accepts. They are added to the app's own router rather than through `include_router`: FastAPI >= 0.160
keeps an included router as one opaque entry of `app.routes`, and the metrics label requests by route path.
A new endpoint: a module here with its handler and `add_routes`, listed in `ROUTE_MODULES`; its error codes in
`schemas.ERROR_CODES`.
"""

from __future__ import annotations

from fastapi import APIRouter

from . import classify, health, metrics, model
from .deps import Service

# In this order in the app, hence in /openapi.json.
ROUTE_MODULES = (classify, health, model, metrics)


def add_routes(routes: APIRouter, service: Service) -> None:
    """Add every endpoint to `routes`.

    Args:
        routes: the app's router (`app.router`).
        service: the app's model, limits and machinery.
    """
    for module in ROUTE_MODULES:
        module.add_routes(routes, service)

"""GET /healthz (liveness: the process answers) and GET /readyz (readiness: the model is warmed up)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from ..errors import ApiError
from ..schemas import Health, Ready
from .deps import INTERNAL_ERROR, Service


async def healthz() -> dict[str, str]:
    """Liveness: the process runs and its event loop answers."""
    return {"status": "ok"}


async def readyz(request: Request) -> dict[str, str]:
    """Readiness: the model is loaded and has answered its warm-up prediction."""
    if not request.app.state.ready:
        raise ApiError(503, "not_ready", "the model is not warmed up yet; retry shortly.")
    return {"status": "ready"}


def add_routes(routes: APIRouter, service: Service) -> None:
    """Add the health routes (`app.state.ready` is set by the app's lifespan once the warm-up answered).

    Args:
        routes: where to add them (the app's router).
        service: the app's model and limits (for the documented error bodies).
    """
    routes.add_api_route(
        "/healthz", healthz, methods=["GET"], response_model=Health, responses=service.schemas.responses(INTERNAL_ERROR)
    )
    routes.add_api_route(
        "/readyz",
        readyz,
        methods=["GET"],
        response_model=Ready,
        responses=service.schemas.responses(
            (503, "NotReady", "`not_ready`: the model is not warmed up yet (or the service is stopping)."),
            INTERNAL_ERROR,
        ),
    )

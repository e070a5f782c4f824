"""GET /metrics: the Prometheus metrics (`service.metrics.ServiceMetrics`)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from .deps import INTERNAL_ERROR, Service, ServiceDep


async def prometheus_metrics(request: Request, service: ServiceDep) -> Response:
    """Prometheus metrics: requests, latency, texts per request, queue depth, model info and load time."""
    body, content_type = service.metrics.exposition(request.headers.get("accept"))
    return Response(body, media_type=content_type)


def add_routes(routes: APIRouter, service: Service) -> None:
    """Add the metrics route.

    Args:
        routes: where to add them (the app's router).
        service: the app's model and limits (for the documented error bodies).
    """
    routes.add_api_route(
        "/metrics",
        prometheus_metrics,
        methods=["GET"],
        response_class=Response,
        responses={
            200: {
                "description": "Prometheus text format (OpenMetrics when the Accept header asks for it).",
                "content": {
                    "text/plain": {"schema": {"type": "string"}},
                    "application/openmetrics-text": {"schema": {"type": "string"}},
                },
            },
            **service.schemas.responses(INTERNAL_ERROR),
        },
    )

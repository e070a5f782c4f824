"""The service's routes live in route modules and reach the model through the app's `Service` dependency."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")
from fastapi import APIRouter  # noqa: E402
from fastapi.routing import APIRoute  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from tnews_deploy.service import ServiceConfig, create_app  # noqa: E402
from tnews_deploy.service.routes.deps import ServiceDep  # noqa: E402


@pytest.fixture(scope="module")
def app(exported):
    return create_app(ServiceConfig(model_dir=exported.output, max_batch=17, batch_window_ms=5))


def test_every_endpoint_is_a_route_module_function(app):
    from tnews_deploy.service.routes import ROUTE_MODULES

    modules = {module.__name__ for module in ROUTE_MODULES}
    documented = [route for route in app.routes if isinstance(route, APIRoute)]
    assert {route.path for route in documented} == {"/v1/classify", "/healthz", "/readyz", "/v1/model", "/metrics"}
    for route in documented:
        handler = route.endpoint
        assert handler.__module__ in modules, f"{route.path} is served by {handler.__module__}"
        assert "<locals>" not in handler.__qualname__, f"{route.path} is a closure: {handler.__qualname__}"
        assert getattr(__import__(handler.__module__, fromlist=["_"]), handler.__name__) is handler


def test_a_route_added_in_a_module_reaches_the_service_through_the_dependency(app, exported):
    async def labels_and_limit(service: ServiceDep) -> dict:
        return {
            "labels": list(service.predictor.labels),
            "max_batch": service.config.max_batch,
            "batching": service.batcher is not None,
            "same_metrics": service.metrics is app.state.metrics,
        }

    extra = APIRouter()
    extra.add_api_route("/v1/labels", labels_and_limit, methods=["GET"])
    app.include_router(extra)
    with TestClient(app) as client:
        body = client.get("/v1/labels").json()
        assert "service" not in str(client.get("/openapi.json").json()["paths"]["/v1/labels"])  # no parameter
    assert body == {"labels": list(app.state.predictor.labels), "max_batch": 17, "batching": True, "same_metrics": True}
    assert app.state.service.predictor is app.state.predictor

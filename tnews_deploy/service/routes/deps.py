"""What the route handlers serve with: `Service`, built once per app and reached through a dependency.

`create_app` builds one `Service` (the predictor, the config, the micro-batcher, the metrics, ...) and keeps
it in `app.state.service`; a handler declares `service: ServiceDep` and FastAPI hands it over. Nothing here
adds a parameter to the API document.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Request

from ...predictor import Predictor
from ..config import ServiceConfig
from ..metrics import ServiceMetrics
from ..schemas import ServiceSchemas

if TYPE_CHECKING:
    from ..app import MicroBatcher, ModelQueue

# The 500 entry every operation documents (for `ServiceSchemas.responses`).
INTERNAL_ERROR = (500, "InternalError", "A bug: the server logged the details.")


@dataclass(frozen=True)
class Service:
    """One app's model and machinery, shared by its routes.

    Args:
        config: the model folder and the limits.
        predictor: the loaded model.
        schemas: the request/response models with this app's limits and labels.
        summary: the model summary every classify answer carries (`app.model_summary`).
        metrics: the Prometheus metrics.
        queue: admission control for classify requests.
        batcher: the micro-batcher; None when micro-batching is off.
        serving_cpu: this machine's CPU, as `/v1/model` reports it.
        load_seconds: how long loading the model took.
    """

    config: ServiceConfig
    predictor: Predictor
    schemas: ServiceSchemas
    summary: dict[str, Any]
    metrics: ServiceMetrics
    queue: ModelQueue
    batcher: MicroBatcher | None
    serving_cpu: dict[str, Any]
    load_seconds: float

    @property
    def num_labels(self) -> int:
        return len(self.predictor.labels)


async def get_service(request: Request) -> Service:
    """The app's `Service` (an async dependency: it runs on the event loop, not in the thread pool)."""
    return request.app.state.service


ServiceDep = Annotated[Service, Depends(get_service)]

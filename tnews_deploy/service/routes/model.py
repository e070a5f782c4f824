"""GET /v1/model: the served model (labels, limits, micro-batching, CPUs) and its export manifest, without paths."""

from __future__ import annotations

import re
from pathlib import PurePath
from typing import Any

from fastapi import APIRouter

from ... import __version__
from ..schemas import ModelInfo
from .deps import INTERNAL_ERROR, Service, ServiceDep

_PATH_KEYS = {"checkpoint", "path", "output", "model_dir"}
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")


def _looks_like_path(value: str) -> bool:
    return value.startswith(("/", "~", "./", "../", "\\")) or bool(_WINDOWS_DRIVE.match(value)) or value.count("/") >= 2


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


async def model_info(service: ServiceDep) -> dict[str, Any]:
    """The served model: labels, max_length, limits, micro-batching and the export manifest."""
    predictor, config, batcher = service.predictor, service.config, service.batcher
    manifest = predictor.manifest
    return {
        **service.summary,
        "tnews_deploy_version": __version__,
        "labels": list(predictor.labels),
        "max_length": predictor.max_length,
        "limits": {
            "max_batch": config.max_batch,
            "max_chars": config.max_chars,
            "max_queue": config.max_queue,
            "max_body_bytes": config.max_body_bytes,
        },
        "micro_batching": (
            {
                "window_ms": config.batch_window_ms,
                "max_texts": config.batch_max_texts,
                "batches": batcher.batches,
                "requests": batcher.requests,
            }
            if batcher
            else None
        ),
        "threads": predictor.threads,
        "cpu": {
            "serving": service.serving_cpu,
            "verified_on": (manifest.get("verification") or {}).get("machine"),
            "int8_kernels": predictor.kernel_plan.to_json() if predictor.kernel_plan.used else None,
        },
        "manifest": without_paths(
            {
                "source": manifest.get("source"),
                "created": manifest.get("created"),
                "verification": manifest.get("verification"),
                "model": manifest.get("model"),
                "versions": manifest.get("versions"),
            }
        ),
    }


def add_routes(routes: APIRouter, service: Service) -> None:
    """Add the model-information route.

    Args:
        routes: where to add them (the app's router).
        service: the app's model and limits (for the documented error bodies).
    """
    routes.add_api_route(
        "/v1/model",
        model_info,
        methods=["GET"],
        response_model=ModelInfo,
        responses=service.schemas.responses(INTERNAL_ERROR),
    )

"""Verified ONNX export through Hugging Face Optimum.

Exporting needs the `train` extra. Importing this package, or
`tnews_deploy.export.source`, loads neither torch nor transformers: the names
below are loaded from their modules on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .exporter import ExportConfig, ExportRefused, ExportResult, export_model
    from .source import ExportSource, resolve_source
    from .verify import GatePolicy, ParityReport

_MODULE_OF = {
    "ExportConfig": "exporter",
    "ExportRefused": "exporter",
    "ExportResult": "exporter",
    "export_model": "exporter",
    "ExportSource": "source",
    "resolve_source": "source",
    "GatePolicy": "verify",
    "ParityReport": "verify",
}
__all__ = [
    "ExportConfig",
    "ExportRefused",
    "ExportResult",
    "ExportSource",
    "GatePolicy",
    "ParityReport",
    "export_model",
    "resolve_source",
]


def __getattr__(name: str) -> Any:
    if name in _MODULE_OF:
        return getattr(import_module(f".{_MODULE_OF[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

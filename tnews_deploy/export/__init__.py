"""Verified ONNX export through Hugging Face Optimum.

Exporting needs the `train` extra. Importing this package, or
`tnews_deploy.export.source` / `.card` (the model card, stdlib only), loads
neither torch nor transformers: the names below are loaded from their modules
on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

if TYPE_CHECKING:
    from .card import write_card
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
    "write_card": "card",
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
    "write_card",
]

__getattr__ = lazy_exports(__name__, _MODULE_OF)

"""Verified ONNX export through Hugging Face Optimum (needs the `train` extra)."""

from .exporter import ExportConfig, ExportRefused, ExportResult, export_model
from .source import ExportSource, resolve_source
from .verify import GatePolicy, ParityReport

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

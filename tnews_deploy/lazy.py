"""Lazy package attributes (PEP 562): a package names what it exports, the module is imported on first use.

Every package of tnews-deploy uses this so that importing it (for a config, a constant or `--help`) never
loads torch, transformers, onnxruntime or FastAPI.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import Any


def lazy_exports(package: str, module_of: dict[str, str]) -> Callable[[str], Any]:
    """A module-level `__getattr__` for `package` that imports `module_of[name]` when `name` is first read.

    Args:
        package: the package's `__name__`.
        module_of: exported name -> the submodule (relative, without the dot) that defines it.
    """

    def __getattr__(name: str) -> Any:
        if name in module_of:
            return getattr(import_module(f".{module_of[name]}", package), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__

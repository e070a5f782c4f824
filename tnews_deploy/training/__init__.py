"""Fine-tuning on TNEWS: configs and presets, variants, single runs and the grid.

Training needs the `train` extra (`pip install "tnews-deploy[train]"`). Importing
this package, or `tnews_deploy.training.config`, loads neither torch nor
transformers: the names below are loaded from their modules on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

if TYPE_CHECKING:
    from .config import PRESETS, VARIANTS, GridConfig, TrainConfig, resolve_config
    from .grid import run_grid
    from .run import RunResult, train_run

_MODULE_OF = {
    "PRESETS": "config",
    "VARIANTS": "config",
    "GridConfig": "config",
    "TrainConfig": "config",
    "resolve_config": "config",
    "run_grid": "grid",
    "RunResult": "run",
    "train_run": "run",
}
__all__ = [
    "GridConfig",
    "PRESETS",
    "RunResult",
    "TrainConfig",
    "VARIANTS",
    "resolve_config",
    "run_grid",
    "train_run",
]

__getattr__ = lazy_exports(__name__, _MODULE_OF)

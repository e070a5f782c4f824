"""Fine-tuning on TNEWS: configs and presets, variants, single runs and the grid.

Needs the `train` extra (`pip install "tnews-deploy[train]"`).
"""

from .config import PRESETS, VARIANTS, TrainConfig, resolve_config
from .grid import GridConfig, run_grid
from .run import RunResult, train_run

__all__ = [
    "PRESETS",
    "VARIANTS",
    "GridConfig",
    "RunResult",
    "TrainConfig",
    "resolve_config",
    "run_grid",
    "train_run",
]

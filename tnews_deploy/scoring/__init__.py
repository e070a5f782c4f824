"""Batch scoring of files of texts into Parquet (`tnews-deploy score`).

`config` holds `ScoreConfig` (stdlib only, cheap to import); `io` finds the input files, reads them in
bounded chunks with the `predict` bad-row contract, scores a chunk and stages the output folder so that it
appears only when complete; `local` is the streaming engine over one `Predictor`; `ray_engine` the Ray Data
engine (`pip install "tnews-deploy[scale]"`). Importing this package imports neither pyarrow, onnxruntime nor
Ray until an engine name is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_exports
from .config import ENGINES, ScoreConfig

__all__ = ["ENGINES", "ScoreConfig", "ScoreSummary", "score", "score_local", "score_ray"]

if TYPE_CHECKING:
    from .io import ScoreSummary
    from .local import score, score_local
    from .ray_engine import score_ray

__getattr__ = lazy_exports(
    __name__, {"ScoreSummary": "io", "score": "local", "score_local": "local", "score_ray": "ray_engine"}
)

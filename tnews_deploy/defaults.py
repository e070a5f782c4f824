"""Defaults shared by training, export and benchmark, in one stdlib-only place.

How a run draws its evaluation set and model-selection slice from the validation split (sizes, seed,
stratified) and its token cap, when nothing says otherwise. The training config and the data splits take their
defaults from here; `export` and `benchmark` fall back to them for a checkpoint whose run records none. Keeping
them here lets those layers read them without importing `training` (the export layer sits below it).
"""

from __future__ import annotations

EVAL_SIZE = 2000  # evaluation sentences drawn from the validation split
SELECTION_SIZE = 1000  # model-selection sentences drawn from the rest of it
SEED = 42  # draws the evaluation set and the model-selection slice
STRATIFY = True  # draw them class-proportionally
MAX_LENGTH = 64  # tokens per text, special tokens included

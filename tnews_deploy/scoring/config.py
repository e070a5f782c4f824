"""What one scoring job does: `ScoreConfig`, validated on creation (stdlib only)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..formats import TEXTS
from ..validation import is_int, require

ENGINES = ("local", "ray")
DEFAULT_CHUNK_ROWS = 2048


@dataclass(frozen=True)
class ScoreConfig:
    """One `tnews-deploy score` job; validates itself.

    Args:
        model_dir: an exported model folder, `default` (the bundled model) or an installed model package's name
            (`tnews_deploy.models`); None: the default model (`$TNEWS_DEPLOY_MODEL` when set, else the bundled one).
        inputs: files, folders or glob patterns of .jsonl/.parquet/.csv/.txt files.
        output: the output folder (it appears only when the job is complete).
        text_field: the column/field holding the text; None: 'sentence', else 'text'.
        top_k: best classes per row; > 1 adds a `top_k` list column.
        probabilities: add a `probabilities` column (every class, in label-id order).
        engine: 'local' (one process, streaming) or 'ray' (Ray Data, an actor pool).
        threads: onnxruntime intra-op threads of the local engine; None: every usable CPU.
        batch_size: texts per model call (after sorting a chunk by length).
        chunk_rows: rows read, scored and written at a time (bounds memory; larger chunks pad less).
        force: replace `output` if it exists (only once the new output is complete).
        ray_address: the Ray cluster to join; None: $RAY_ADDRESS, else start a local one.
        actors: Ray actors, each owning one `Predictor`.
        threads_per_actor: onnxruntime threads and CPUs reserved per actor.
    """

    model_dir: Path | None
    inputs: tuple[str, ...]
    output: Path
    text_field: str | None = None
    top_k: int = 1
    probabilities: bool = False
    engine: str = "local"
    threads: int | None = None
    batch_size: int = 32
    chunk_rows: int = DEFAULT_CHUNK_ROWS
    force: bool = False
    ray_address: str | None = field(default_factory=lambda: os.environ.get("RAY_ADDRESS") or None)
    actors: int = 2
    threads_per_actor: int = 1

    def __post_init__(self) -> None:
        if self.model_dir is not None:
            object.__setattr__(self, "model_dir", Path(self.model_dir))
        object.__setattr__(self, "output", Path(self.output))
        object.__setattr__(self, "inputs", tuple(str(i) for i in self.inputs))
        require(
            [
                (bool(self.inputs), f"no INPUT given: pass files, folders or globs of {TEXTS.listed()}"),
                (self.engine in ENGINES, f"--engine must be one of {', '.join(ENGINES)} (got {self.engine!r})"),
                (is_int(self.top_k) and self.top_k >= 1, f"--top-k must be >= 1 (got {self.top_k!r})"),
                (
                    self.threads is None or (is_int(self.threads) and self.threads >= 1),
                    f"--threads must be >= 1 (got {self.threads!r})",
                ),
                (
                    is_int(self.batch_size) and self.batch_size >= 1,
                    f"--batch-size must be >= 1 (got {self.batch_size!r})",
                ),
                (
                    is_int(self.chunk_rows) and self.chunk_rows >= 1,
                    f"--chunk-rows must be >= 1 (got {self.chunk_rows!r})",
                ),
                (is_int(self.actors) and self.actors >= 1, f"--actors must be >= 1 (got {self.actors!r})"),
                (
                    is_int(self.threads_per_actor) and self.threads_per_actor >= 1,
                    f"--threads-per-actor must be >= 1 (got {self.threads_per_actor!r})",
                ),
                (self.text_field is None or bool(self.text_field.strip()), "--text-field must not be empty"),
            ]
        )

"""The local scoring engine: every input streamed through one `Predictor` in this process.

Each input file is read in chunks of `chunk_rows` rows, each chunk is scored with one predictor call (which
sorts it by length and pads each batch only to its own longest text) and appended to the file's Parquet
shard as a row group, so memory stays bounded whatever the input size. `score` runs a `ScoreConfig` with
the engine it names.
"""

from __future__ import annotations

import logging
import time

import pyarrow.parquet as pq

from ..errors import ConfigError
from ..progress_log import ProgressLog
from .config import ScoreConfig
from .io import (
    MAX_SHOWN_ERRORS,
    ScoreSummary,
    check_input,
    find_inputs,
    first_errors,
    model_sha256,
    output_schema,
    read_chunks,
    score_chunk,
    shard_name,
    staged_output,
    write_summary,
)

logger = logging.getLogger(__name__)


def check_top_k(config: ScoreConfig, labels: tuple[str, ...]) -> None:
    if config.top_k > len(labels):
        raise ConfigError(f"--top-k must be in 1..{len(labels)} (the model's classes), got {config.top_k}.")


def settings(config: ScoreConfig) -> dict:
    """The job's options that shape the output or its speed, for the summary."""
    common = {
        "text_field": config.text_field,
        "top_k": config.top_k,
        "probabilities": config.probabilities,
        "batch_size": config.batch_size,
        "chunk_rows": config.chunk_rows,
    }
    if config.engine == "ray":
        return {**common, "actors": config.actors, "threads_per_actor": config.threads_per_actor}
    return common


def score_local(config: ScoreConfig) -> ScoreSummary:
    """Score `config.inputs` into `config.output` in this process.

    Args:
        config: the job (its `engine` is not consulted).

    Returns:
        The summary also written as the output's `_SUCCESS`.

    Raises:
        UserError: bad inputs, an existing output (without `force`), a model folder that cannot be loaded.
    """
    from ..predictor import Predictor

    files = find_inputs(config.inputs)
    for item in files:
        check_input(item, config.text_field)
    with staged_output(config.output, config.force) as staging:
        start = time.perf_counter()
        predictor = Predictor(config.model_dir, threads=config.threads, batch_size=config.batch_size)
        check_top_k(config, predictor.labels)
        schema = output_schema(config.top_k, config.probabilities)
        rows = errors = 0
        shown: list[dict] = []
        shards = []
        progress = ProgressLog(logger, "scoring", "row")  # no bar here: a line every 30 s while rows come
        for index, item in enumerate(files):
            shard = shard_name(index)
            progress.what = f"scoring {item.path.name} (file {index + 1}/{len(files)})"
            with pq.ParquetWriter(staging / shard, schema) as writer:
                for chunk in read_chunks(item, config.text_field, config.chunk_rows):
                    scored = score_chunk(predictor, chunk, config.top_k, config.probabilities)
                    writer.write_table(scored)
                    rows += scored.num_rows
                    progress.update(rows)
                    failed = scored.num_rows - scored.column("error").null_count
                    errors += failed
                    if failed and len(shown) < MAX_SHOWN_ERRORS:
                        shown.extend(first_errors(scored, MAX_SHOWN_ERRORS - len(shown)))
            shards.append(shard)
            logger.info(
                "scored %s: %s rows so far (%.0f rows/s)",
                item.path,
                f"{rows:,}",
                rows / max(time.perf_counter() - start, 1e-9),
            )
        summary = ScoreSummary(
            rows=rows,
            errors=errors,
            seconds=time.perf_counter() - start,
            engine="local",
            model_dir=str(config.model_dir or predictor.model_dir),  # the default model: its folder
            model_sha256=model_sha256(predictor.model_dir, predictor.manifest),
            labels=list(predictor.labels),
            inputs=[f.name for f in files],
            shards=shards,
            output=str(config.output),
            settings={**settings(config), "threads": predictor.threads},
            first_errors=shown,
        )
        write_summary(staging, summary)
    return summary


def score(config: ScoreConfig) -> ScoreSummary:
    """Run a scoring job with the engine `config.engine` names ('local' or 'ray')."""
    if config.engine == "ray":
        from .ray_engine import score_ray

        return score_ray(config)
    return score_local(config)

"""The Ray scoring engine: Ray Data reads the inputs, an actor pool scores them, `write_parquet` writes them.

Pipeline: `ray.data.read_datasource(ScoreInputs)` (one read task per input file, reusing the local engine's
streaming readers, so both engines number rows, take ids and report bad rows identically) ->
`map_batches(RayScorer)` on `actors` actors, each owning one `Predictor` with `threads_per_actor` onnxruntime
threads and reserving as many CPUs (so actors never oversubscribe the cores; tokenizer parallelism is off in
them) -> `write_parquet` into the staging folder, which moves into place with its `_SUCCESS` once complete.

`ray_address` (or $RAY_ADDRESS) joins an existing cluster (every node needs tnews-deploy and the model and
input paths); otherwise a local Ray is started for the job. Needs the scale extra:
`pip install "tnews-deploy[scale]"`.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import ConfigError, UserError
from .config import ScoreConfig
from .io import (
    INPUT_SCHEMA,
    MAX_SHOWN_ERRORS,
    InputFile,
    ScoreSummary,
    check_input,
    find_inputs,
    model_sha256,
    read_chunks,
    score_chunk,
    staged_output,
    write_summary,
)
from .local import check_top_k, settings

logger = logging.getLogger(__name__)

# Set in every actor before the tokenizer loads: the actor pool is the parallelism.
ACTOR_ENV = {"TOKENIZERS_PARALLELISM": "false"}


def import_ray() -> Any:
    """The `ray` module, or a `UserError` saying which extra to install."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ModuleNotFoundError as exc:
        raise UserError(f'--engine ray needs Ray Data ({exc}): pip install "tnews-deploy[scale]"') from None
    return ray


class RayScorer:
    """The `map_batches` callable of one Ray actor: one `Predictor`, loaded once, scoring Arrow batches.

    Args:
        model_dir: the exported model folder (a path every node can read).
        threads: onnxruntime intra-op threads of this actor's predictor.
        batch_size: texts per model call.
        top_k: classes in the `top_k` column (only when > 1).
        probabilities: add the `probabilities` column.
    """

    def __init__(self, model_dir: str, threads: int, batch_size: int, top_k: int, probabilities: bool) -> None:
        os.environ.update(ACTOR_ENV)
        from ..predictor import Predictor

        self.predictor = Predictor(model_dir, threads=threads, batch_size=batch_size)
        self.top_k = top_k
        self.probabilities = probabilities

    def __call__(self, batch: pa.Table) -> pa.Table:
        return score_chunk(self.predictor, batch, self.top_k, self.probabilities)


def _input_datasource(files: list[InputFile], text_field: str | None, chunk_rows: int) -> Any:
    """A Ray Data datasource with one read task per input file, built on the `Datasource` of the installed Ray."""
    import_ray()  # a UserError naming the extra when Ray is missing
    from ray.data.block import BlockMetadata
    from ray.data.datasource import Datasource, ReadTask

    class ScoreInputs(Datasource):
        """The input files as (`source`, `id`, `text`, `error`) blocks of at most `chunk_rows` rows."""

        def __init__(self) -> None:
            super().__init__()

        def get_name(self) -> str:
            return "ScoreInputs"

        def estimate_inmemory_data_size(self) -> int | None:
            return sum(f.path.stat().st_size for f in files)

        def get_read_tasks(
            self, parallelism: int, per_task_row_limit: int | None = None, data_context: Any = None
        ) -> list:
            tasks = []
            for item in files:
                metadata = BlockMetadata(
                    num_rows=None, size_bytes=item.path.stat().st_size, exec_stats=None, input_files=(str(item.path),)
                )

                def read(item: InputFile = item) -> Any:
                    yield from read_chunks(item, text_field, chunk_rows)

                tasks.append(ReadTask(read, metadata, schema=INPUT_SCHEMA, per_task_row_limit=per_task_row_limit))
            return tasks

    return ScoreInputs()


def connect(address: str | None, quiet: bool = True) -> bool:
    """Join the Ray cluster at `address`, or start a local one; False when Ray was already initialised here.

    Args:
        address: 'HOST:PORT' or 'auto' of a running cluster; None: start a local Ray for this job.
        quiet: no Ray Data progress bars.
    """
    ray = import_ray()
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING, "log_to_driver": False}
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:
            os.environ.pop("RAY_ADDRESS", None)  # an empty or stale value would make ray.init look for it
            # Ray starts its workers at nice 15; on a busy machine they would then get almost no CPU next to
            # the other processes (measured: 10x slower). The job's own actors run at normal priority.
            os.environ.setdefault("RAY_worker_niceness", "0")
            ray.init(**kwargs)
    except ConnectionError as exc:
        raise UserError(
            f"cannot join the Ray cluster at {address} ({exc}); start it with `ray start --head` "
            "or drop --ray-address to start a local one."
        ) from exc
    ray.data.DataContext.get_current().enable_progress_bars = not quiet
    return True


def score_ray(config: ScoreConfig, quiet: bool = True) -> ScoreSummary:
    """Score `config.inputs` into `config.output` on a Ray cluster (joined or started for the job).

    Args:
        config: the job: `actors` actors of `threads_per_actor` threads, `ray_address`.
        quiet: no Ray Data progress bars.

    Returns:
        The summary also written as the output's `_SUCCESS`.

    Raises:
        UserError: bad inputs, an existing output (without `force`), a model folder that cannot be loaded, a
            cluster without the CPUs the actor pool needs, or no Ray installed.
    """
    from ..predictor import Predictor

    ray = import_ray()
    files = find_inputs(config.inputs)
    for item in files:
        check_input(item, config.text_field)
    # Load the model once here: a broken folder fails now, in one line, not inside every actor.
    probe = Predictor(config.model_dir, threads=1)
    check_top_k(config, probe.labels)
    labels, sha256 = list(probe.labels), model_sha256(probe.model_dir, probe.manifest)
    model_dir = probe.model_dir.resolve()  # the folder itself when config.model_dir names a model package
    del probe
    with staged_output(config.output, config.force) as staging:
        started_here = connect(config.ray_address, quiet)
        try:
            needed = config.actors * config.threads_per_actor
            available = ray.cluster_resources().get("CPU", 0)
            if needed > available:
                raise ConfigError(
                    f"--actors {config.actors} x --threads-per-actor {config.threads_per_actor} "
                    f"needs {needed} CPUs; the Ray cluster has {available:g}. Use fewer actors or "
                    "threads, or add nodes."
                )
            start = time.perf_counter()
            # Absolute paths for the workers (whose working folder is not ours); the output names them as given.
            absolute = [InputFile(f.path.resolve(), f.fmt, f.name) for f in files]
            dataset = ray.data.read_datasource(
                _input_datasource(absolute, config.text_field, config.chunk_rows), num_cpus=0
            )
            scored = dataset.map_batches(
                RayScorer,
                fn_constructor_kwargs={
                    "model_dir": str(model_dir),
                    "threads": config.threads_per_actor,
                    "batch_size": config.batch_size,
                    "top_k": config.top_k,
                    "probabilities": config.probabilities,
                },
                batch_size=config.chunk_rows,
                batch_format="pyarrow",
                zero_copy_batch=True,
                compute=ray.data.ActorPoolStrategy(size=config.actors),
                num_cpus=config.threads_per_actor,
            )
            scored.write_parquet(str(staging), ray_remote_args={"num_cpus": 0})
            seconds = time.perf_counter() - start
        finally:
            if started_here:
                ray.shutdown()
        shards = sorted(p.name for p in staging.glob("*.parquet"))
        rows = errors = 0
        shown: list[dict] = []
        for shard in shards:
            rows += pq.read_metadata(staging / shard).num_rows
            table = pq.read_table(staging / shard, columns=["source", "id", "error"])
            failed = table.filter(pc.is_valid(table.column("error")))
            errors += failed.num_rows
            shown.extend(failed.slice(0, MAX_SHOWN_ERRORS - len(shown)).to_pylist())
        summary = ScoreSummary(
            rows=rows,
            errors=errors,
            seconds=seconds,
            engine="ray",
            model_dir=str(config.model_dir or model_dir),  # the default model: its folder
            model_sha256=sha256,
            labels=labels,
            inputs=[f.name for f in files],
            shards=shards,
            output=str(config.output),
            settings=settings(config),
            first_errors=shown,
        )
        write_summary(staging, summary)
    return summary

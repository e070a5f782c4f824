"""Knowledge distillation: a smaller student from a fine-tuned teacher (`tnews-deploy distill`).

`distill_model(config, output)`:

1. resolves TEACHER as `export` does (checkpoint, run, grid -> best run, or a
   vocabulary-trimmed run) and reads its run config: data, seed, evaluation-set
   and selection-slice sizes, training-set size, max_length;
2. draws the teacher's splits again (`data.make_splits`, same settings): the
   evaluation set, the selection slice and the labeled subset (the teacher's
   labeled budget, with its gold labels);
3. builds the transfer set: the labeled subset plus unlabeled texts (by default
   the training split of the teacher's data; or `--unlabeled`, a data folder or
   a `.txt`/`.jsonl`/`.csv`/`.parquet` file or glob of texts), minus every
   sentence of the evaluation set and the selection slice, deduplicated. Only
   the text of an unlabeled example is read: its label, if it has one, is never
   looked at;
4. computes the teacher's logits on the transfer set once, through an fp32 ONNX
   export of the teacher and the runtime `Predictor` (1.8x faster than PyTorch
   on this CPU, see docs/compression.md; the export is verified against PyTorch first),
   and caches them in the run folder (`teacher-logits-<hash>.npy`, keyed by the
   transfer texts, the teacher's weights file and max_length; a killed computation
   resumes at its last finished chunk) and in the user cache
   (`$TNEWS_DEPLOY_CACHE`, default `~/.cache/tnews-deploy/teacher-logits/`), so a
   second student of the same teacher on the same texts skips this step;
5. builds the student: the teacher's config with `num_hidden_layers = N`, the
   teacher's embeddings, N evenly spaced encoder layers (DistilBERT-style: 0, 2,
   4, 7, 9, 11 for 6 of 12), pooler and classifier head;
6. trains it with `DistillationTrainer` (T² · KL to the teacher at temperature T
   + α · cross-entropy on the gold labels), with model selection and early
   stopping on the teacher's selection slice (`training.selection`), Trainer
   checkpoints every `save_every` steps (`save_total_limit=1`): rerunning the
   same command resumes a killed run from its last checkpoint;
7. scores the selected student on the teacher's evaluation set and writes a
   normal run folder: `checkpoint/`, `run_config.json` (what `export` needs plus
   the distillation settings), `metrics.json` last and atomically.

Torch and transformers are imported inside the functions that need them:
importing this module (for `DistillConfig`) stays light.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import shutil
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..runfiles import (
    CHECKPOINT_DIR,
    METRICS_FILE,
    PREDICTIONS_FILE,
    RUN_CONFIG_FILE,
    WEIGHT_FILES,
    is_finished,
    write_json_atomic,
)
from ..validation import is_int, is_number, require

logger = logging.getLogger(__name__)

WORK_DIR = "trainer"  # Trainer checkpoints, best weights, resume records; removed when the run finishes
TEACHER_EXPORT_DIR = "teacher-fp32"  # removed once the teacher logits are cached
LOGITS_FILE = "teacher-logits-{key}.npy"
CACHE_ENV = "TNEWS_DEPLOY_CACHE"  # root of the user cache (teacher logits); default ~/.cache/tnews-deploy
LOGITS_CHUNK = 2048  # texts per teacher call between two progress saves
# An encoder layer's parameters, e.g. "bert.encoder.layer.7.attention.self.query.weight".
LAYER_KEY = re.compile(r"^(?P<prefix>.*\.(?:layer|layers)\.)(?P<index>\d+)(?P<rest>\..+)$")
# Settings that define a run: a folder holding another value of one of them is another run.
RUN_SETTINGS = (
    "teacher",
    "teacher_checkpoint",
    "layers",
    "layer_indices",
    "unlabeled",
    "unlabeled_field",
    "temperature",
    "alpha",
    "epochs",
    "min_steps",
    "lr",
    "batch_size",
    "max_length",
    "warmup_ratio",
    "weight_decay",
    "evaluations",
    "early_stopping_patience",
    "select_best",
    "eval_batch_size",
    "save_every",
    "train_seed",
    "train_embeddings",
    "data",
    "train_size",
    "eval_size",
    "selection_size",
    "seed",
    "stratify",
)


@dataclass(frozen=True)
class DistillConfig:
    """What one distillation run needs; validates itself (`ConfigError` naming the option).

    Args:
        teacher: a checkpoint, training-run, grid or trimmed-run folder (as `export` takes).
        layers: encoder layers of the student (N).
        layer_indices: the teacher layers the student copies, in order; default: N evenly spaced.
        unlabeled: the transfer texts: a data folder or hub id (its training split) or a `.txt` / `.jsonl` /
            `.csv` / `.parquet` file or glob of texts (labels never read); default: the training split of the
            teacher's data.
        unlabeled_field: the text column/field of `unlabeled`; None: 'sentence', else 'text'.
        temperature: softmax temperature T of the soft (KL) term.
        alpha: weight of the cross-entropy on the teacher's labeled subset.
        epochs: passes over the transfer set (raised to reach `min_steps`).
        min_steps: optimiser-step floor; 0 turns it off.
        lr: peak AdamW learning rate (10 % warmup, linear decay).
        batch_size: transfer examples per step.
        max_length: token cap; default: the teacher run's.
        evaluations: how many times the student is scored on the selection slice.
        early_stopping_patience: evaluations without a better selection macro-F1 before stopping; 0 = off.
        select_best: keep the weights of the best selection macro-F1 (else the last).
        save_every: steps between Trainer checkpoints (for resuming); default: every evaluation.
        seed: training seed; default: the teacher run's seed (the splits always use the teacher's).
        train_embeddings: train the word embeddings too (default: frozen, see docs/compression.md).
    """

    teacher: str
    layers: int
    layer_indices: tuple[int, ...] | None = None
    unlabeled: str | None = None
    unlabeled_field: str | None = None
    temperature: float = 2.0
    alpha: float = 0.5
    epochs: float = 1.0
    min_steps: int = 800
    lr: float = 5e-5
    batch_size: int = 32
    max_length: int | None = None
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    evaluations: int = 16
    early_stopping_patience: int = 5
    select_best: bool = True
    eval_batch_size: int = 64
    save_every: int | None = None
    seed: int | None = None
    train_embeddings: bool = False

    def __post_init__(self) -> None:
        if self.layer_indices is not None:
            object.__setattr__(self, "layer_indices", tuple(self.layer_indices))
        require(
            [
                (bool(str(self.teacher).strip()), "TEACHER must name a checkpoint, run or grid folder"),
                (is_int(self.layers) and self.layers >= 1, f"--layers must be an integer >= 1 (got {self.layers!r})"),
                (
                    self.unlabeled_field is None
                    or (self.unlabeled is not None and bool(str(self.unlabeled_field).strip())),
                    "--unlabeled-field names the text column of --unlabeled: pass --unlabeled too, and a "
                    f"non-empty name (got {self.unlabeled_field!r})",
                ),
                (
                    is_number(self.temperature) and self.temperature > 0,
                    f"--temperature must be a number > 0 (got {self.temperature!r})",
                ),
                (is_number(self.alpha) and self.alpha >= 0, f"--alpha must be a number >= 0 (got {self.alpha!r})"),
                (is_number(self.epochs) and self.epochs > 0, f"--epochs must be > 0 (got {self.epochs!r})"),
                (is_int(self.min_steps) and self.min_steps >= 0, f"--min-steps must be >= 0 (got {self.min_steps!r})"),
                (is_number(self.lr) and self.lr > 0, f"--lr must be > 0 (got {self.lr!r})"),
                (
                    is_int(self.batch_size) and self.batch_size >= 1,
                    f"--batch-size must be an integer >= 1 (got {self.batch_size!r})",
                ),
                (
                    self.max_length is None or (is_int(self.max_length) and self.max_length >= 8),
                    f"--max-length must be an integer >= 8 (got {self.max_length!r})",
                ),
                (
                    is_number(self.warmup_ratio) and 0 <= self.warmup_ratio < 1,
                    f"warmup_ratio must be in [0, 1) (got {self.warmup_ratio!r})",
                ),
                (
                    is_number(self.weight_decay) and self.weight_decay >= 0,
                    f"weight_decay must be >= 0 (got {self.weight_decay!r})",
                ),
                (
                    is_int(self.evaluations) and self.evaluations >= 1,
                    f"--evaluations must be an integer >= 1 (got {self.evaluations!r})",
                ),
                (
                    is_int(self.early_stopping_patience) and self.early_stopping_patience >= 0,
                    f"--patience must be an integer >= 0 (got {self.early_stopping_patience!r})",
                ),
                (
                    is_int(self.eval_batch_size) and self.eval_batch_size >= 1,
                    f"eval_batch_size must be an integer >= 1 (got {self.eval_batch_size!r})",
                ),
                (
                    self.save_every is None or (is_int(self.save_every) and self.save_every >= 1),
                    f"--save-every must be an integer >= 1 (got {self.save_every!r})",
                ),
                (
                    self.seed is None or (is_int(self.seed) and self.seed >= 0),
                    f"--seed must be >= 0 (got {self.seed!r})",
                ),
            ]
        )
        if self.layer_indices is not None:
            indices = self.layer_indices
            if not all(is_int(i) and i >= 0 for i in indices):
                raise ConfigError(f"--layer-indices must be integers >= 0 (got {list(indices)}).")
            if len(indices) != self.layers:
                raise ConfigError(f"--layer-indices names {len(indices)} layer(s) but --layers is {self.layers}.")
            if list(indices) != sorted(set(indices)):
                raise ConfigError(f"--layer-indices must be increasing, without repeats (got {list(indices)}).")


@dataclass
class DistillResult:
    """A finished distillation run folder."""

    run_dir: Path
    run_config: dict[str, Any]
    metrics: dict[str, Any]

    @property
    def checkpoint(self) -> Path:

        return self.run_dir / CHECKPOINT_DIR


# --------------------------------------------------------------------------- layers and the student


def evenly_spaced_layers(total: int, n: int) -> tuple[int, ...]:
    """`n` of `total` layer indices, evenly spaced from the first to the last (rounded).

    12 -> 6: (0, 2, 4, 7, 9, 11), the layers DistilBERT kept; 12 -> 4: (0, 4, 7, 11); n = 1: (0,).

    Args:
        total: the teacher's layer count.
        n: the student's (1 <= n <= total).
    """
    if not 1 <= n <= total:
        raise ConfigError(f"--layers must be between 1 and the teacher's {total} layers (got {n}).")
    if n == 1:
        return (0,)
    return tuple(int(math.floor(i * (total - 1) / (n - 1) + 0.5)) for i in range(n))


def choose_layers(total: int, layers: int, indices: Sequence[int] | None = None) -> tuple[int, ...]:
    """The teacher layers the student copies: `indices` if given (checked), else evenly spaced.

    Args:
        total: the teacher's layer count.
        layers: the student's layer count.
        indices: explicit teacher layer indices, or None.
    """
    if indices is None:
        return evenly_spaced_layers(total, layers)
    bad = [i for i in indices if not 0 <= i < total]
    if bad:
        raise ConfigError(f"--layer-indices {bad} do not exist: the teacher has layers 0..{total - 1}.")
    if len(indices) != layers:
        raise ConfigError(f"--layer-indices names {len(indices)} layer(s) but --layers is {layers}.")
    return tuple(indices)


def teacher_layer_count(checkpoint: Path) -> int:
    """`num_hidden_layers` from the checkpoint's config.json (no torch)."""
    config = json.loads((Path(checkpoint) / "config.json").read_text(encoding="utf-8"))
    for key in ("num_hidden_layers", "n_layers", "num_layers"):
        if isinstance(config.get(key), int):
            return int(config[key])
    raise ConfigError(f"{checkpoint}/config.json: no layer count (num_hidden_layers); cannot pick student layers.")


def build_student(teacher_checkpoint: str | Path, layer_indices: Sequence[int]):
    """A student sequence classifier initialised from the teacher.

    Same config with `num_hidden_layers = len(layer_indices)`; embeddings, pooler and classifier
    head are the teacher's; student layer j is a copy of teacher layer `layer_indices[j]`. Every
    student parameter is set from the teacher (strict load).

    Args:
        teacher_checkpoint: the teacher's checkpoint folder (a transformers sequence classifier).
        layer_indices: teacher layers to copy, in order.

    Returns:
        (student model, teacher model); both in train mode is not assumed: the caller sets modes.
    """
    import copy

    from transformers import AutoModelForSequenceClassification

    teacher = AutoModelForSequenceClassification.from_pretrained(teacher_checkpoint)
    total = int(teacher.config.num_hidden_layers)
    indices = choose_layers(total, len(layer_indices), list(layer_indices))
    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers = len(indices)
    student = AutoModelForSequenceClassification.from_config(config)
    new_index = {old: new for new, old in enumerate(indices)}
    state, matched = {}, False
    for key, value in teacher.state_dict().items():
        match = LAYER_KEY.match(key)
        if match:
            matched = True
            old = int(match["index"])
            if old not in new_index:
                continue
            key = f"{match['prefix']}{new_index[old]}{match['rest']}"
        state[key] = value
    if not matched:
        raise ConfigError(
            f"{teacher_checkpoint}: no numbered encoder layers (`...layer.N...`) in its weights; "
            "only BERT-like encoders can be distilled by layer copy."
        )
    student.load_state_dict(state, strict=True)
    return student, teacher


# --------------------------------------------------------------------------- the transfer set


def read_unlabeled(source: str | None, dataset=None, text_field: str | None = None) -> list[str]:
    """Texts only, in file order: the labels of an unlabeled source are never read.

    Args:
        source: None (the `train` split of `dataset`), a `.txt` / `.jsonl` / `.csv` / `.parquet` file or a glob
            of them (each line of a text file, else the `text_field` column: unusable rows are skipped with a
            warning), or a data folder / hub id (its `train` split).
        dataset: the teacher's loaded data (a `DatasetDict`), used when `source` is None.
        text_field: the text column/field of `source`; None: 'sentence', else 'text'.
    """
    from ..data import load_tnews
    from ..datasource import DataSource
    from ..scoring.io import names_text_files, read_texts

    if source is None:
        return list(dataset["train"]["sentence"])
    if names_text_files(source):
        return read_texts(source, text_field, option="--unlabeled-field")
    return list(load_tnews(DataSource(str(source), text_field=text_field))["train"]["sentence"])


def build_transfer_set(
    labeled_texts: Sequence[str],
    labeled_labels: Sequence[int],
    unlabeled_texts: Iterable[str],
    held_out: set[str],
) -> tuple[list[str], list[int]]:
    """(texts, labels): the labeled subset, then the unlabeled texts not held out, each text once.

    Labels are the gold label for a text of the labeled subset and -100 for every other text: an
    unlabeled text that also occurs in the labeled subset gets the subset's label, never its own.

    Args:
        labeled_texts, labeled_labels: the teacher's labeled subset (kept whole, as the teacher had it).
        unlabeled_texts: the unlabeled source, in order.
        held_out: texts that never enter the transfer set (evaluation set and selection slice).
    """
    from ..inputs import text_problem

    gold: dict[str, int] = {}
    for text, label in zip(labeled_texts, labeled_labels):
        gold.setdefault(text, int(label))
    texts: list[str] = []
    seen: set[str] = set()
    for text in labeled_texts:
        if text not in seen:
            seen.add(text)
            texts.append(text)
    for text in unlabeled_texts:
        if text in seen or text in held_out or text_problem(text) is not None:
            continue
        seen.add(text)
        texts.append(text)
    return texts, [gold.get(t, -100) for t in texts]


def transfer_key(texts: Sequence[str], teacher_checkpoint: Path, max_length: int) -> str:
    """The cache key of teacher logits: sha256 of the texts, the teacher's weights file and max_length.

    The weights file counts by path, size and modification time: a teacher retrained into the same folder
    gets a new key, without hashing hundreds of MB at every run.
    """

    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8", "surrogatepass") + b"\n")
    weights = next((teacher_checkpoint / w for w in WEIGHT_FILES if (teacher_checkpoint / w).is_file()), None)
    stat = weights.stat() if weights else None
    digest.update(
        f"\0{teacher_checkpoint.resolve()}\0{stat.st_size if stat else 0}\0{stat.st_mtime_ns if stat else 0}"
        f"\0{max_length}".encode()
    )
    return digest.hexdigest()[:16]


# --------------------------------------------------------------------------- teacher logits


def logits_cache_dir() -> Path:
    """The user-wide teacher-logits cache: `$TNEWS_DEPLOY_CACHE/teacher-logits`, else under ~/.cache."""
    root = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "tnews-deploy"
    return Path(root) / "teacher-logits"


def _share(path: Path) -> None:
    """Copy finished logits into the user cache; a cache that cannot be written only costs a recomputation."""
    try:
        shared = logits_cache_dir()
        shared.mkdir(parents=True, exist_ok=True)
        tmp = shared / f".{path.name}.{os.getpid()}.tmp"
        shutil.copyfile(path, tmp)
        tmp.replace(shared / path.name)
    except OSError as exc:
        logger.debug("teacher logits not copied to the user cache: %s", exc)


def teacher_logits(
    teacher_source: str | Path,
    teacher_checkpoint: Path,
    texts: Sequence[str],
    max_length: int,
    run_dir: Path,
    *,
    threads: int | None = None,
    quiet: bool = False,
    dataset: Any = None,
):
    """The teacher's logits on `texts` (float32, (len(texts), classes)), cached in `run_dir` and the user cache.

    Computed through a verified fp32 ONNX export of the teacher (`export_model`, into
    `run_dir/teacher-fp32`, removed afterwards) and the runtime `Predictor`, `LOGITS_CHUNK` texts at a
    time; each finished chunk is saved, so a killed computation resumes where it stopped.

    Args:
        teacher_source: what the user named as TEACHER (the export resolves it again).
        teacher_checkpoint: its checkpoint folder (for the cache key).
        texts: the transfer texts.
        max_length: token cap.
        run_dir: the run folder (cache and export live there).
        threads: onnxruntime threads; default: torch's thread count (follows OMP_NUM_THREADS).
        quiet: no progress bar.
        dataset: the teacher's data already loaded (`load_tnews`), for the export's verification.

    Returns:
        (logits, info): info says whether the cache was used and how long computing took.
    """
    import numpy as np
    from tqdm.auto import tqdm

    from ..export import ExportConfig, export_model
    from ..predictor import MANIFEST_FILE, Predictor

    key = transfer_key(texts, teacher_checkpoint, max_length)
    final = run_dir / LOGITS_FILE.format(key=key)
    info: dict[str, Any] = {"file": final.name, "cached": False, "seconds": 0.0}
    for cached in (final, logits_cache_dir() / final.name):
        if cached.is_file():
            logits = np.load(cached)
            if logits.shape[0] == len(texts):
                if cached != final:
                    shutil.copyfile(cached, final)
                logger.info("teacher logits: cached in %s", cached)
                info["cached"] = True
                return logits, info
            cached.unlink(missing_ok=True)
    started = time.perf_counter()
    export_dir = run_dir / TEACHER_EXPORT_DIR
    manifest = _read_json(export_dir / MANIFEST_FILE) or {}
    if (
        manifest.get("source", {}).get("checkpoint") != str(Path(teacher_checkpoint).resolve())
        or manifest.get("max_length") != max_length
    ):  # none yet, or one of another teacher
        shutil.rmtree(export_dir, ignore_errors=True)
        logger.info("exporting the teacher to fp32 ONNX (verified against PyTorch) for its logits ...")
        export_model(teacher_source, export_dir, ExportConfig(max_length=max_length), dataset=dataset)
    if threads is None:
        import torch

        threads = torch.get_num_threads()
    predictor = Predictor(export_dir, threads=threads)
    partial = run_dir / f".{final.stem}.partial.npy"
    progress = run_dir / f".{final.stem}.done"
    done = int(progress.read_text()) if progress.is_file() and partial.is_file() else 0
    classes = len(predictor.labels)
    if done:
        out = np.lib.format.open_memmap(partial, mode="r+")
        if out.shape != (len(texts), classes):
            done, out = 0, None
    if not done:
        out = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float32, shape=(len(texts), classes))
    bar = tqdm(
        total=len(texts),
        initial=done,
        desc="teacher logits",
        unit="text",
        disable=True if quiet else None,
        dynamic_ncols=True,
    )
    for start in range(done, len(texts), LOGITS_CHUNK):
        stop = min(start + LOGITS_CHUNK, len(texts))
        out[start:stop] = predictor.logits(list(texts[start:stop]))
        out.flush()
        tmp = progress.with_name(progress.name + ".tmp")
        tmp.write_text(str(stop))
        tmp.replace(progress)
        bar.update(stop - start)
    bar.close()
    logits = np.asarray(out, dtype=np.float32).copy()
    del out
    np.save(final.with_name(final.name + ".tmp.npy"), logits)
    final.with_name(final.name + ".tmp.npy").replace(final)
    partial.unlink(missing_ok=True)
    progress.unlink(missing_ok=True)
    shutil.rmtree(export_dir, ignore_errors=True)
    _share(final)
    info["seconds"] = round(time.perf_counter() - started, 1)
    logger.info("teacher logits: %d texts in %.0f s -> %s", len(texts), info["seconds"], final.name)
    return logits, info


# --------------------------------------------------------------------------- the run


def _settings(run_config: dict[str, Any]) -> dict[str, Any]:
    return {k: run_config.get(k) for k in RUN_SETTINGS}


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    a, b = _settings(old), _settings(new)
    return [f"{k} {a[k]!r} (asked: {b[k]!r})" for k in RUN_SETTINGS if a[k] != b[k]]


def _read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def plan_run(config: DistillConfig) -> tuple[Any, dict[str, Any]]:
    """Resolve TEACHER and the settings a run folder records (no data loaded, no torch).

    Returns:
        (the teacher's `ExportSource`, the run settings).
    """
    from ..datasource import DataSource
    from ..export.source import resolve_source
    from ..training.run import portable_source

    teacher = resolve_source(config.teacher)
    run = teacher.run_config
    if not run or not run.get("data"):
        raise ConfigError(
            f"{teacher.checkpoint}: no run_config.json beside it says which data, splits and labeled subset "
            "the teacher was trained on; pass the teacher's run (or grid) folder as TEACHER."
        )
    total = teacher_layer_count(teacher.checkpoint)
    indices = choose_layers(total, config.layers, config.layer_indices)
    values = asdict(config)
    values.pop("seed")
    settings = {
        **values,
        "teacher": str(Path(config.teacher).expanduser().resolve()),
        "teacher_checkpoint": str(teacher.checkpoint.resolve()),
        "teacher_kind": teacher.kind,
        "teacher_layers": total,
        "layer_indices": list(indices),
        "unlabeled": portable_source(config.unlabeled) if config.unlabeled else None,
        "max_length": int(config.max_length or run.get("max_length") or 128),
        "train_seed": int(config.seed if config.seed is not None else run.get("seed", 42)),
        # What export, benchmark and the splits need, as the teacher run had them.
        "model": str(teacher.checkpoint.resolve()),
        "variant": f"distill-{config.layers}-layers",
        "data": DataSource.coerce(run["data"]).portable().to_json(),
        "train_size": run["train_size"] if run.get("train_size") == "all" else int(run.get("train_size") or 0),
        "subset_seed": run.get("train_seed"),  # drew the teacher's training subset (None: `seed` did)
        "eval_size": int(run.get("eval_size", 2000)),
        "selection_size": int(run.get("selection_size", 1000)),
        "seed": int(run.get("seed", 42)),
        "stratify": bool(run.get("stratify", True)),
    }
    if settings["train_size"] != "all" and settings["train_size"] <= 0:
        raise ConfigError(f"{teacher.checkpoint}: the teacher's run config has no train_size (its labeled subset).")
    return teacher, settings


def distill_model(config: DistillConfig, output: str | Path, *, quiet: bool = False) -> DistillResult:
    """Distill TEACHER into an N-layer student in the run folder `output`; resumes an unfinished one.

    Args:
        config: the run's settings.
        output: the run folder. A finished run of the same settings is returned as is; a finished or
            checkpointed run of other settings is refused (`ConfigError`); an unfinished run of the same
            settings resumes from its last Trainer checkpoint (and cached teacher logits).
        quiet: no progress bars.
    """

    run_dir = Path(output)
    teacher, settings = plan_run(config)
    # Load every later phase now: a missing extra fails before the long teacher pass, and edits to
    # the source tree while a run goes on cannot change it halfway.
    from .. import export  # noqa: F401
    from ..training import selection  # noqa: F401
    from . import distill_trainer  # noqa: F401

    if is_finished(run_dir):
        finished = _read_json(run_dir / RUN_CONFIG_FILE) or {}
        differences = _differences(finished, settings)
        if differences:
            raise ConfigError(
                f"{run_dir}: already holds a finished distillation with other settings: "
                f"{', '.join(differences[:6])}. Choose another --output, or delete that folder."
            )
        logger.info("%s: finished already; nothing to do", run_dir)
        return DistillResult(run_dir, finished, _read_json(run_dir / METRICS_FILE) or {})
    work_dir = run_dir / WORK_DIR
    previous = _read_json(run_dir / RUN_CONFIG_FILE)
    if previous is not None:
        differences = _differences(previous, settings)
        from ..training.resume import complete_checkpoints

        if differences and complete_checkpoints(work_dir):
            raise ConfigError(
                f"{run_dir}: holds an unfinished distillation with other settings: {', '.join(differences[:6])}. "
                "Rerun with the same options to resume it, or delete its trainer/ folder to start training "
                "over (cached teacher logits are reused), or choose another --output."
            )
        if differences:
            shutil.rmtree(work_dir, ignore_errors=True)
    elif run_dir.exists() and any(run_dir.iterdir()):
        raise ConfigError(f"{run_dir}: exists and is not a distillation run folder; choose another --output.")
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run_dir / RUN_CONFIG_FILE, settings)

    from ..data import SplitConfig, load_tnews, make_splits

    dataset = load_tnews(settings["data"])
    splits = make_splits(
        dataset,
        SplitConfig(
            train_sizes=(settings["train_size"],),
            eval_size=settings["eval_size"],
            selection_size=settings["selection_size"],
            seed=settings["seed"],
            stratify=settings["stratify"],
            train_seed=settings.get("subset_seed"),
        ),
    )
    labeled = splits.train[settings["train_size"]]
    held_out = set(splits.evaluation["sentence"]) | set(splits.selection["sentence"])
    unlabeled = read_unlabeled(config.unlabeled, dataset, config.unlabeled_field)
    texts, labels = build_transfer_set(labeled["sentence"], labeled["label"], unlabeled, held_out)
    n_labeled = len(set(labeled["sentence"]))
    logger.info(
        "transfer set: %d texts = %d of the teacher's labeled subset + %d unlabeled (of %d read; the rest "
        "are in the evaluation set or selection slice, repeated, or empty)",
        len(texts),
        n_labeled,
        len(texts) - n_labeled,
        len(unlabeled),
    )
    logits, logits_info = teacher_logits(
        config.teacher, teacher.checkpoint, texts, settings["max_length"], run_dir, quiet=quiet, dataset=dataset
    )
    if logits.shape[1] != len(splits.label_names):
        raise ConfigError(f"the teacher has {logits.shape[1]} classes but the data has {len(splits.label_names)}.")

    steps_per_epoch = max(1, math.ceil(len(texts) / config.batch_size))
    epochs = float(max(config.epochs, math.ceil(config.min_steps / steps_per_epoch)))
    total_steps = math.ceil(epochs * steps_per_epoch)
    eval_every = max(1, math.ceil(total_steps / config.evaluations))
    save_every = config.save_every or eval_every
    settings.update(
        transfer_size=len(texts),
        labeled_in_transfer=int(sum(label >= 0 for label in labels)),
        steps_per_epoch=steps_per_epoch,
        effective_epochs=epochs,
        total_steps=total_steps,
        eval_every=eval_every,
        save_every_steps=save_every,
        teacher_logits=logits_info["file"],
        teacher_metrics={k: (teacher.run_metrics or {}).get(k) for k in ("macro_f1", "micro_f1", "accuracy")},
    )
    write_json_atomic(run_dir / RUN_CONFIG_FILE, settings)
    metrics = _train_student(config, settings, teacher.checkpoint, splits, texts, labels, logits, run_dir, quiet=quiet)
    metrics["teacher_logits_seconds"] = logits_info["seconds"]
    metrics["teacher_logits_cached"] = logits_info["cached"]
    write_json_atomic(run_dir / METRICS_FILE, metrics)  # last: marks the run finished
    return DistillResult(run_dir, settings, metrics)


def _train_student(
    config: DistillConfig,
    settings: dict[str, Any],
    teacher_checkpoint: Path,
    splits,
    texts: list[str],
    labels: list[int],
    logits,
    run_dir: Path,
    *,
    quiet: bool,
) -> dict[str, Any]:
    """Build, train, select and score the student; save its checkpoint. Returns the metrics."""
    import numpy as np
    from datasets import Dataset
    from transformers import AutoTokenizer, set_seed

    from ..training.metrics import selection_metrics
    from ..training.progress import use_readable_progress
    from ..training.resume import ELAPSED_FILE, ElapsedCallback, start_or_resume
    from ..training.run import save_checkpoint, score_run, tokenize, training_arguments
    from ..training.selection import SelectBestCallback
    from ..training.variants import count_parameters
    from .distill_trainer import TEACHER_LOGITS, CompactProgressCallback, DistillationCollator, DistillationTrainer

    work_dir = run_dir / WORK_DIR
    work_dir.mkdir(parents=True, exist_ok=True)
    set_seed(settings["train_seed"])
    student, teacher = build_student(teacher_checkpoint, settings["layer_indices"])
    teacher_parameters = sum(p.numel() for p in teacher.parameters())
    del teacher
    if not config.train_embeddings:
        student.get_input_embeddings().requires_grad_(False)
    trainable, total = count_parameters(student)
    tokenizer = AutoTokenizer.from_pretrained(teacher_checkpoint)

    transfer = tokenize(
        Dataset.from_dict({"sentence": texts, "label": labels}), tokenizer, settings["max_length"], quiet=quiet
    )
    transfer = transfer.add_column(TEACHER_LOGITS, [row.tolist() for row in np.asarray(logits, dtype=np.float32)])
    selection = (
        tokenize(splits.selection, tokenizer, settings["max_length"], quiet=quiet) if len(splits.selection) else None
    )
    evaluation = tokenize(splits.evaluation, tokenizer, settings["max_length"], quiet=quiet)
    use_selection = selection is not None and (config.select_best or config.early_stopping_patience > 0)

    args = training_arguments(
        work_dir,
        config,
        epochs=settings["effective_epochs"],
        eval_every=settings["eval_every"],
        seed=settings["train_seed"],
        evaluate=use_selection,
        quiet=quiet,
        save_strategy="steps",
        save_steps=settings["save_every_steps"],
        save_total_limit=1,
        # Without this the Trainer restores no callback state on resume: the selection callback would
        # forget its best score and overwrite the best weights with the next evaluation's.
        restore_callback_states_from_checkpoint=True,
        remove_unused_columns=False,  # the teacher logits are not a model input
    )
    callbacks = [ElapsedCallback(work_dir / ELAPSED_FILE)]
    if use_selection:
        callbacks.append(
            SelectBestCallback(
                patience=config.early_stopping_patience,
                keep_best=config.select_best,
                persist_dir=str(work_dir / "best"),
            )
        )
    trainer = DistillationTrainer(
        model=student,
        args=args,
        train_dataset=transfer,
        eval_dataset=selection if use_selection else None,
        data_collator=DistillationCollator(tokenizer),
        processing_class=tokenizer,
        compute_metrics=selection_metrics,
        callbacks=callbacks,
        temperature=config.temperature,
        alpha=config.alpha,
    )
    # A progress bar with the losses on it (unless quiet) and a log line per selection evaluation: never the
    # raw log dicts Trainer prints.
    use_readable_progress(trainer, CompactProgressCallback)

    resume, start_step, resumes = start_or_resume(work_dir, settings["total_steps"])
    train_output = trainer.train(resume_from_checkpoint=str(resume) if resume else None)

    # A resumed Trainer replaces stateful callbacks by restored copies: use the ones it holds now.
    selector = next((c for c in trainer.callback_handler.callbacks if isinstance(c, SelectBestCallback)), None)
    elapsed = next(c for c in trainer.callback_handler.callbacks if isinstance(c, ElapsedCallback))
    train_seconds = elapsed.seconds
    metrics = score_run(
        trainer,
        selector,
        evaluation,
        selection,
        splits.label_names,
        train_output,
        train_seconds,
        trainable,
        total,
        predictions_file=run_dir / PREDICTIONS_FILE,
        eval_ids=list(splits.evaluation["idx"]),
    )
    metrics.update(
        variant=settings["variant"],
        layers=len(settings["layer_indices"]),
        layer_indices=settings["layer_indices"],
        teacher=settings["teacher"],
        teacher_metrics=settings["teacher_metrics"],
        temperature=config.temperature,
        alpha=config.alpha,
        transfer_size=settings["transfer_size"],
        train_size=settings["train_size"],
        steps_this_invocation=int(train_output.global_step) - start_step,
        resumed_from_steps=resumes,
        teacher_parameters=teacher_parameters,
    )
    save_checkpoint(trainer, run_dir, work_dir)
    return metrics

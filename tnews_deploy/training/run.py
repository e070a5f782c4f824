"""One training run: fine-tune a sequence classifier, select, evaluate, save.

A run folder holds:

* `checkpoint/`: model + tokenizer (`save_pretrained`), `id2label` = class names;
* `run_config.json`: the resolved `TrainConfig`;
* `predictions.json`: the evaluation set's sentence ids, gold labels and the
  run's predictions (what bootstrap intervals and per-class tables are computed from);
* `train.log`: the run's log lines, among them the weights initialised anew (the
  task head); `metrics.json` keeps transformers' loading warning verbatim;
* `metrics.json`: evaluation-set macro/micro-F1, accuracy, per-class report,
  confusion matrix, timings. It is written last and atomically, so its presence
  is what marks a run as finished; a folder without it is a half-done run.

A run that saves Trainer checkpoints (`save_every`, on by default for
`--train-size all`) keeps the latest one under `trainer/`; run again after a kill,
it resumes from that step (`tnews_deploy.training.resume`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
from datasets import DatasetDict

from ..data import SplitConfig, TnewsSplits, load_tnews, make_splits
from ..datasource import DataSource
from ..errors import ConfigError, DataError, ModelError, UserError
from ..hub import unavailable
from ..noise import silence_known_noise
from ..runfiles import (
    CHECKPOINT_DIR,
    LOG_HISTORY_FILE,
    METRICS_FILE,
    MODEL_CONFIG_FILE,
    PREDICTIONS_FILE,
    RUN_CONFIG_FILE,
    RUN_LOG_FILE,
    WEIGHT_FILES,
    is_finished,
    read_json,
    write_json_atomic,
)
from . import distributed
from .config import OPERATIONAL_SETTINGS, TrainConfig
from .metrics import classification_metrics, selection_metrics
from .selection import SelectBestCallback

logger = logging.getLogger(__name__)


@dataclass
class RunResult:
    run_dir: Path
    config: TrainConfig
    metrics: dict[str, Any]

    @property
    def checkpoint(self) -> Path:
        return self.run_dir / CHECKPOINT_DIR


def portable_source(source: str) -> str:
    """A `--model`/`--data` value that resolves from any directory.

    A local folder becomes its absolute path (a path relative to where training
    ran would break `export` and `benchmark` run from elsewhere); a hub id such as
    `clue/tnews` stays as it is.
    """
    path = Path(source).expanduser()
    return str(path.resolve()) if path.exists() else source


# Sizes that None leaves to the data (`data.fit_split_sizes`): a run records the sizes it drew.
FITTED_SIZES = ("eval_size", "selection_size")


def config_differences(finished: TrainConfig, wanted: TrainConfig) -> list[tuple[str, Any, Any]]:
    """(field, finished value, wanted value) for each setting in which two runs differ.

    Settings in `OPERATIONAL_SETTINGS` are not compared.

    `model` and `data` are compared as resolved paths, so the same folder named
    relatively and absolutely counts as the same; the class names a finished run
    recorded count only when both runs have them. An evaluation-set or selection-slice
    size not given (None: the sizes that fit the data) matches the size a run recorded.
    """
    differences = []
    for name in (f.name for f in fields(TrainConfig)):
        if name in OPERATIONAL_SETTINGS or (name in FITTED_SIZES and getattr(wanted, name) is None):
            continue
        old, new = getattr(finished, name), getattr(wanted, name)
        if name == "data":
            if not old.same_data(new):
                differences.append((name, str(old), str(new)))
            continue
        if name == "model":
            old, new = portable_source(str(old)), portable_source(str(new))
        if old != new:
            differences.append((name, getattr(finished, name), getattr(wanted, name)))
    return differences


def score_run(
    trainer: Any,
    selector: SelectBestCallback | None,
    evaluation: Any,
    selection: Any,
    label_names: list[str],
    train_output: Any,
    train_seconds: float,
    trainable: int,
    total: int,
    predictions_file: Path | None = None,
    eval_ids: list[int] | None = None,
) -> dict[str, Any]:
    """Restore the selected weights, score the evaluation set, and add what the training did.

    Args:
        trainer: the Trainer after `train()`.
        selector: the selection callback the Trainer holds (None: no selection).
        evaluation: the tokenized evaluation set; selection: the selection slice (or None).
        label_names: class names in id order.
        train_output: what `trainer.train()` returned.
        train_seconds: wall seconds of training.
        trainable, total: parameter counts.
        predictions_file: when given, the evaluation set's ids, gold labels and predictions are written there
            (`predictions.json`), for bootstrap intervals over the evaluation set.
        eval_ids: the evaluation sentences' ids (`idx`), in the order of `evaluation`.
    """
    import torch

    if selector is not None:
        selector.restore_best(trainer.model)
    prediction = trainer.predict(evaluation, metric_key_prefix="eval")
    predicted = np.asarray(prediction.predictions).argmax(-1)
    gold = np.asarray(prediction.label_ids)
    metrics = classification_metrics(gold, predicted, label_names)
    if predictions_file is not None:
        write_json_atomic(
            predictions_file,
            {
                "ids": [int(i) for i in eval_ids] if eval_ids is not None else None,
                "labels": gold.astype(int).tolist(),
                "predictions": predicted.astype(int).tolist(),
            },
            indent=None,
        )
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    metrics.update(
        eval_size=len(evaluation),
        selection_size=len(selection) if selection is not None else 0,
        train_seconds=round(train_seconds, 1),
        steps=int(train_output.global_step),
        best_selection_macro_f1=selector.best_metric if selector else None,
        best_step=selector.best_step if selector else None,
        stopped_early=bool(selector and selector.stopped_early),
        first_loss=losses[0] if losses else None,
        last_loss=losses[-1] if losses else None,
        trainable_parameters=trainable,
        total_parameters=total,
        device="cuda:" + torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
    )
    return metrics


def save_checkpoint(trainer: Any, run_dir: Path, work_dir: Path) -> Path:
    """Save the trained model + tokenizer as `run_dir/checkpoint` (no pickles) and its log history.

    Trainer also pickles its TrainingArguments into the checkpoint; `run_config.json`
    already says what ran, and a checkpoint without pickles is safe to hand on. The
    Trainer's working folder is removed.
    """
    checkpoint = run_dir / CHECKPOINT_DIR
    trainer.save_model(str(checkpoint))  # model + tokenizer (processing_class); the main rank only, under DDP
    distributed.wait_for_everyone()
    if not distributed.is_main():
        return checkpoint
    (checkpoint / "training_args.bin").unlink(missing_ok=True)
    history = trainer.state.log_history
    (run_dir / LOG_HISTORY_FILE).write_text(json.dumps(history, indent=1) + "\n", encoding="utf-8")
    shutil.rmtree(work_dir, ignore_errors=True)
    return checkpoint


def load_finished(run_dir: Path) -> RunResult:
    metrics = json.loads((run_dir / METRICS_FILE).read_text(encoding="utf-8"))
    config = TrainConfig.from_json(json.loads((run_dir / RUN_CONFIG_FILE).read_text(encoding="utf-8")))
    return RunResult(run_dir=run_dir, config=config, metrics=metrics)


def check_model_source(model: str) -> None:
    """Fail early, with a clear message, on a local model folder that cannot work, or a hub id the hub cannot
    deliver now (offline and not cached, or the hub unreachable: `hub.unavailable`)."""
    path = Path(model).expanduser()
    looks_local = path.exists() or model.startswith((".", "/", "~")) or model.count("/") > 1
    if not looks_local:  # a hub id: transformers resolves it, when the hub or the local cache has it
        reason = unavailable(model, "model")
        if reason:
            raise ModelError(
                f"{model}: cannot load this hub model ({reason}). Pass --model a local folder saved "
                "with save_pretrained."
            )
        return
    if not path.is_dir():
        raise ModelError(f"{model}: no such model folder. Pass a hub id or a folder saved with save_pretrained.")
    if not (path / MODEL_CONFIG_FILE).is_file():
        raise ModelError(f"{path}: no {MODEL_CONFIG_FILE}; this is not a transformers model folder.")
    if not any((path / name).is_file() for name in WEIGHT_FILES):
        raise ModelError(
            f"{path}: has no weights ({' or '.join(WEIGHT_FILES[:2])}). A tokenizer-only folder cannot "
            "be fine-tuned: point --model at a folder with pretrained weights."
        )


class _Collect(logging.Handler):
    """Keeps the messages of the records it sees."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def load_sources(model: str, data: DataSource) -> DatasetDict:
    """Check the model source (`check_model_source`) and load the data, before a run writes anything.

    Both are tried, so that one error names every problem (a missing model and unreachable data, say).

    Returns:
        The loaded data (`data.load_data`).

    Raises:
        ModelError, DataError: the one source that cannot be had; UserError: both, in one message.
    """
    problems: list[UserError] = []
    try:
        check_model_source(model)
    except ModelError as exc:
        problems.append(exc)
    try:
        dataset = load_tnews(data)
    except DataError as exc:
        problems.append(exc)
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise UserError(" ".join(str(p).rstrip(".") + "." for p in problems))
    return dataset


def load_model_and_tokenizer(model: str, label_names: list[str], info: dict[str, Any] | None = None):
    """The sequence classifier (a new head of `len(label_names)` classes) and tokenizer of `model`.

    Args:
        model: hub id or local folder.
        label_names: class names in id order (the head's `id2label`).
        info: when given, filled with `newly_initialized` (the weights not in the checkpoint, so initialised
            at random: the task head) and `load_warnings` (what transformers warned while loading).
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    check_model_source(model)
    id2label = dict(enumerate(label_names))
    collect = _Collect()
    # transformers' "Some weights ... newly initialized" goes to the collector (metrics.json keeps it), not to
    # the console: `train_run` says it once, in its own words.
    loader_log = logging.getLogger("transformers.modeling_utils")
    loader_log.addHandler(collect)
    propagate, loader_log.propagate = loader_log.propagate, False
    try:
        tokenizer = AutoTokenizer.from_pretrained(model)
        net, loading = AutoModelForSequenceClassification.from_pretrained(
            model,
            num_labels=len(label_names),
            id2label=id2label,
            label2id={name: i for i, name in id2label.items()},
            ignore_mismatched_sizes=True,  # a checkpoint with another head gets a fresh one
            output_loading_info=True,
        )
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"could not load model {model!r}: {str(exc).splitlines()[0]} "
            "Without network access, pass a local model folder with --model."
        ) from exc
    finally:
        loader_log.removeHandler(collect)
        loader_log.propagate = propagate
    if info is not None:
        mismatched = [
            entry[0] if isinstance(entry, (list, tuple)) else entry for entry in loading.get("mismatched_keys", [])
        ]
        info["newly_initialized"] = sorted({*loading.get("missing_keys", []), *mismatched})
        info["load_warnings"] = collect.messages
    return net, tokenizer


class _RunLog:
    """Copies the records of `tnews_deploy` and `transformers` loggers to `run_dir/train.log` while open."""

    def __init__(self, path: Path) -> None:
        self.handler = logging.FileHandler(path, encoding="utf-8")
        self.handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self.loggers = [logging.getLogger("tnews_deploy"), logging.getLogger("transformers")]

    def __enter__(self) -> _RunLog:
        for log in self.loggers:
            log.addHandler(self.handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        for log in self.loggers:
            log.removeHandler(self.handler)
        self.handler.close()


def training_arguments(
    work_dir: Path, config: Any, *, epochs: float, eval_every: int, seed: int, evaluate: bool, quiet: bool, **extra: Any
):
    """The `TrainingArguments` every run of this toolkit shares (`train`, `grid`, `distill`).

    AdamW with a linear schedule after warm-up; one selection evaluation every `eval_every` steps when
    `evaluate`; bf16 on a CUDA device that supports it, else the CPU; no reporting integrations.

    Args:
        work_dir: the Trainer's output_dir (its checkpoints, if any are saved).
        config: a `TrainConfig` or `DistillConfig`: its batch_size, eval_batch_size, lr, weight_decay and
            warmup_ratio are used.
        epochs: passes over the training set (fractional allowed).
        eval_every: steps between selection evaluations; also caps the logging interval (at most 50).
        seed: seeds both the model initialisation and the data order.
        evaluate: evaluate on the selection slice at all.
        quiet: no progress bars.
        extra: further `TrainingArguments` fields (saving, resume), overriding these.
    """
    import torch
    from transformers import TrainingArguments

    cuda = torch.cuda.is_available()
    settings: dict[str, Any] = dict(
        output_dir=str(work_dir),
        num_train_epochs=epochs,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.eval_batch_size,
        learning_rate=config.lr,
        weight_decay=config.weight_decay,
        warmup_ratio=config.warmup_ratio,
        lr_scheduler_type="linear",
        eval_strategy="steps" if evaluate else "no",
        eval_steps=eval_every,
        logging_steps=max(1, min(50, eval_every)),
        seed=seed,
        data_seed=seed,
        report_to=[],
        bf16=cuda and torch.cuda.is_bf16_supported(),
        dataloader_num_workers=0,
        disable_tqdm=quiet,
        use_cpu=not cuda,
        # Every trainable parameter is used in each forward pass, frozen variants included (frozen ones are
        # not DDP's to synchronise): no extra autograd traversal per step under torchrun.
        ddp_find_unused_parameters=False,
    )
    settings.update(extra)
    return TrainingArguments(**settings)


def tokenize(dataset, tokenizer, max_length: int, *, quiet: bool = False):
    """`dataset` with its sentences tokenized (truncated to `max_length`); only `label` kept. `quiet`: no bar."""
    import datasets

    def encode(batch):
        return tokenizer(batch["sentence"], truncation=True, max_length=max_length)

    keep = {"label"}
    drop = [c for c in dataset.column_names if c not in keep]
    silence = quiet and not datasets.are_progress_bars_disabled()  # datasets' switch is process-wide
    if silence:
        datasets.disable_progress_bars()
    try:
        return dataset.map(encode, batched=True, remove_columns=drop, desc="tokenizing")
    finally:
        if silence:
            datasets.enable_progress_bars()


def train_run(
    config: TrainConfig,
    run_dir: Path,
    splits: TnewsSplits | None = None,
    *,
    quiet: bool = False,
    on_start: Callable[[TrainConfig], Any] | None = None,
) -> RunResult:
    """Train one run into `run_dir`: fine-tune, select on the selection slice, score the evaluation set.

    Args:
        config: the resolved run settings (see `resolve_config`); saved as `run_config.json`.
        run_dir: the run folder. A finished run there is loaded and returned as is. An unfinished one
            (no `metrics.json`) of the same settings resumes from its latest Trainer checkpoint when it
            saved one (see `TrainConfig.save_every`); otherwise it is deleted and trained from scratch.
        splits: the datasets to use, as `make_splits` draws them for this config's seeds (a grid draws them
            once per seed for all its runs); None loads `config.data` and draws them.
        quiet: no progress bars (selection scores are still logged, at INFO).
        on_start: called with the config once the model source is checked and the data drawn, before the run
            folder is written (the CLI announces the run there); not called for a finished run.

    Before the run folder is created or changed, the model source is checked and the data loaded and drawn: a
    run that cannot start (no such model or data, the hub unreachable, sizes that do not fit) leaves nothing.

    Returns:
        The run folder, its config and the evaluation metrics written to `metrics.json`.

    Raises:
        ModelError: `config.model` cannot be loaded; DataError / ConfigError: the data or the sizes; UserError:
        both sources, in one message.
    """
    import torch  # noqa: F401  (first: without the train extra, fail before any data is read)

    run_dir = Path(run_dir)
    config = replace(config, model=portable_source(config.model), data=config.data.portable())
    distributed.start()  # a torchrun / accelerate launch: join its process group before touching the folder
    if is_finished(run_dir):
        finished = load_finished(run_dir)
        differences = config_differences(finished.config, config)
        if differences:
            shown = ", ".join(f"{name} {old!r} (asked: {new!r})" for name, old, new in differences[:6])
            raise ConfigError(
                f"{run_dir}: already holds a finished run with other settings: {shown}. Choose another "
                "--output, or delete that folder to train it again."
            )
        logger.debug("%s: finished already, reused", run_dir)
        return finished
    silence_known_noise()
    if splits is None:  # both sources checked and the data drawn before the run folder is touched
        splits = draw_splits(load_sources(config.model, config.data), config)
    else:
        check_model_source(config.model)
    if on_start is not None:
        on_start(config)
    work_dir = run_dir / "trainer"
    main = distributed.is_main()
    resumable = _resumable(run_dir, work_dir, config)
    if resumable is not None and resumable.train_vocab != config.train_vocab:  # its checkpoint has that shape
        logger.info(
            "%s: resumed with --train-vocab %s, the mode it started in (asked: %s)",
            run_dir,
            resumable.train_vocab,
            config.train_vocab,
        )
        config = replace(config, train_vocab=resumable.train_vocab)
    distributed.wait_for_everyone()  # (torchrun) every rank has read the folder before the main rank changes it
    if main:
        _prepare_run_dir(run_dir, work_dir, config, resume=resumable is not None)
    distributed.wait_for_everyone()
    with _RunLog(run_dir / RUN_LOG_FILE) if main else contextlib.nullcontext():
        config, metrics = _train(config, run_dir, work_dir, splits, quiet=quiet)
    if main:
        write_json_atomic(run_dir / METRICS_FILE, metrics)  # last: marks the run finished
    distributed.wait_for_everyone()
    return RunResult(run_dir=run_dir, config=config, metrics=metrics)


def _resumable(run_dir: Path, work_dir: Path, config: TrainConfig) -> TrainConfig | None:
    """The recorded settings of the unfinished run in `run_dir` when it can be resumed (the same settings as
    `config`, and a complete Trainer checkpoint); None when the folder is to be started afresh."""
    from .resume import complete_checkpoints

    previous = read_json(run_dir / RUN_CONFIG_FILE)
    if previous is None or not complete_checkpoints(work_dir):
        return None
    recorded = TrainConfig.from_json(previous)
    return None if config_differences(recorded, config) else recorded


def _prepare_run_dir(run_dir: Path, work_dir: Path, config: TrainConfig, *, resume: bool) -> None:
    """Keep the folder of a run to resume (`_resumable`); else start the folder afresh. Writes `config`."""
    if resume:
        logger.info("%s: an unfinished run with a saved checkpoint: resumed", run_dir)
    elif run_dir.exists():  # a half-done run without a checkpoint to resume from, or of other settings
        logger.info("%s: an unfinished run, trained again from scratch", run_dir)
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run_dir / RUN_CONFIG_FILE, config.to_json())


def _data_vocabulary(model: Any, tokenizer: Any, datasets: list[Any]):
    """The `DataVocabulary` of the run's tokens, or None where it would change nothing (frozen embeddings, tied
    output embeddings, or data that uses every row)."""
    from .vocab import DataVocabulary, data_token_ids

    if not DataVocabulary.applies(model):
        return None
    vocabulary = DataVocabulary(model, data_token_ids(datasets, tokenizer))
    if vocabulary.rows >= vocabulary.full_rows:
        return None
    logger.info(
        "training %s of the %s word-embedding rows: the tokens of the data (--train-vocab all: every row)",
        f"{vocabulary.rows:,}",
        f"{vocabulary.full_rows:,}",
    )
    return vocabulary


def draw_splits(dataset: DatasetDict, config: TrainConfig) -> TnewsSplits:
    """The training subset, evaluation set and selection slice `config` draws from `dataset`."""
    return make_splits(
        dataset,
        SplitConfig(
            train_sizes=(config.train_size,),
            eval_size=config.eval_size,
            selection_size=config.selection_size,
            seed=config.seed,
            stratify=config.stratify,
            train_seed=config.train_seed,
        ),
    )


def _train(
    config: TrainConfig, run_dir: Path, work_dir: Path, splits: TnewsSplits, *, quiet: bool
) -> tuple[TrainConfig, dict[str, Any]]:
    """The training of `train_run`, from data to saved checkpoint; returns the config with the class names
    it recorded, and the metrics."""
    from transformers import DataCollatorWithPadding, set_seed

    from .progress import use_readable_progress
    from .resume import ELAPSED_FILE, ElapsedCallback, start_or_resume
    from .trainer import Trainer
    from .variants import apply_variant, count_parameters

    train_set = splits.train[config.train_size]
    n = len(train_set)
    # The class names, in id order, and the sizes drawn go into run_config.json: export and benchmark map labels
    # the same way and draw the same evaluation set.
    config = replace(
        config,
        data=config.data.with_label_names(splits.label_names),
        eval_size=len(splits.evaluation),
        selection_size=len(splits.selection),
    )
    world = distributed.world_size()
    if distributed.is_main():  # with the schedule for this many sentences, and the launch's size
        write_json_atomic(
            run_dir / RUN_CONFIG_FILE,
            {**config.to_json(n), "world_size": world, "effective_batch_size": config.batch_size * world},
        )
    seed = config.effective_seed
    set_seed(seed)
    loading: dict[str, Any] = {}
    model, tokenizer = load_model_and_tokenizer(config.model, splits.label_names, loading)
    # The warnings name the model folder: kept with its name instead (no paths of this machine in results).
    loading["load_warnings"] = [m.replace(config.model, Path(config.model).name) for m in loading["load_warnings"]]
    for message in loading["load_warnings"]:
        logger.debug("transformers said while loading the model: %s", message)
    if loading["newly_initialized"]:
        logger.info(
            "initialised at random (not in %s): %s; expected: the task head is new, training learns it",
            Path(config.model).name,
            ", ".join(loading["newly_initialized"]),
        )
    apply_variant(model, config.variant)
    trainable, total = count_parameters(model)

    train_ds = tokenize(train_set, tokenizer, config.max_length, quiet=quiet)
    selection_ds = (
        tokenize(splits.selection, tokenizer, config.max_length, quiet=quiet) if len(splits.selection) else None
    )
    eval_ds = tokenize(splits.evaluation, tokenizer, config.max_length, quiet=quiet)

    collator: Any = DataCollatorWithPadding(tokenizer)
    vocabulary = (
        _data_vocabulary(model, tokenizer, [train_ds, selection_ds, eval_ds]) if config.train_vocab == "data" else None
    )
    if vocabulary is not None:
        from .vocab import MappedCollator

        vocabulary.shrink()
        collator = MappedCollator(collator, vocabulary)

    use_selection = selection_ds is not None and (config.select_best or config.early_stopping_patience > 0)
    save_steps = config.save_steps(n)
    saving: dict[str, Any] = (
        dict(
            save_strategy="steps",
            save_steps=save_steps,
            save_total_limit=1,
            # Without this the Trainer restores no callback state on resume: the selection callback would
            # forget its best score and overwrite the best weights with the next evaluation's.
            restore_callback_states_from_checkpoint=True,
        )
        if save_steps
        else dict(
            # The best weights are kept in memory by SelectBestCallback: no checkpoint
            # of ~0.5 GB is written to disk at every evaluation.
            save_strategy="no",
        )
    )
    args = training_arguments(
        work_dir,
        config,
        epochs=config.effective_epochs(n),
        eval_every=config.eval_every(n),
        seed=seed,
        evaluate=use_selection,
        quiet=quiet,
        **saving,
    )
    callbacks: list[Any] = [ElapsedCallback(work_dir / ELAPSED_FILE)]
    if use_selection:
        callbacks.append(
            SelectBestCallback(
                patience=config.early_stopping_patience,
                keep_best=config.select_best,
                persist_dir=str(work_dir / "best") if save_steps else None,
            )
        )
    class_weights = None
    trainer_class: Any = Trainer
    extra: dict[str, Any] = {}
    if config.class_weight == "balanced":
        from .losses import WeightedLossTrainer, balanced_class_weights

        class_weights = balanced_class_weights(train_set["label"], len(splits.label_names))
        trainer_class, extra = WeightedLossTrainer, {"class_weights": class_weights}
    trainer = trainer_class(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=selection_ds if use_selection else None,
        data_collator=collator,
        processing_class=tokenizer,
        compute_metrics=selection_metrics,
        callbacks=callbacks,
        **extra,
    )
    use_readable_progress(trainer)  # a progress bar and log lines instead of printed log dicts
    resume, start_step, resumes = start_or_resume(work_dir, config.total_steps(n)) if save_steps else (None, 0, [])
    train_output = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    # A resumed Trainer replaces stateful callbacks by restored copies: use the ones it holds now.
    selector = next((c for c in trainer.callback_handler.callbacks if isinstance(c, SelectBestCallback)), None)
    elapsed = next(c for c in trainer.callback_handler.callbacks if isinstance(c, ElapsedCallback))
    train_seconds = elapsed.seconds
    metrics = score_run(
        trainer,
        selector,
        eval_ds,
        selection_ds,
        splits.label_names,
        train_output,
        train_seconds,
        trainable,
        total,
        predictions_file=run_dir / PREDICTIONS_FILE if distributed.is_main() else None,
        eval_ids=list(splits.evaluation["idx"]),
    )
    if vocabulary is not None:  # the whole matrix again, as the weights that were scored would have it
        from .vocab import weight_decay_factor

        restored = selector is not None and selector.keep_best and selector.best_step is not None
        steps = int(selector.best_step) if restored else int(train_output.global_step)
        vocabulary.restore(weight_decay_factor(trainer, model.get_input_embeddings().weight, steps))
    metrics["embedding_rows_trained"] = vocabulary.rows if vocabulary is not None else None
    train_counts = np.bincount(np.asarray(train_set["label"]), minlength=len(splits.label_names))
    metrics.update(
        variant=config.variant,
        train_size=config.train_size,
        train_examples=n,
        seed=seed,
        split_seed=config.seed,
        class_weight=config.class_weight,
        class_weights=class_weights,
        train_class_counts=dict(zip(splits.label_names, train_counts.astype(int).tolist())),
        newly_initialized=loading["newly_initialized"],
        load_warnings=loading["load_warnings"],
        steps_this_invocation=int(train_output.global_step) - start_step,
        resumed_from_steps=resumes,
    )
    metrics.update(world_size=world, effective_batch_size=config.batch_size * world)
    save_checkpoint(trainer, run_dir, work_dir)
    return config, metrics

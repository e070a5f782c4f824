"""One training run: fine-tune a sequence classifier, select, evaluate, save.

A run folder holds:

* `checkpoint/`: model + tokenizer (`save_pretrained`), `id2label` = class names;
* `run_config.json`: the resolved `TrainConfig`;
* `metrics.json`: evaluation-set macro/micro-F1, accuracy, per-class report,
  confusion matrix, timings. It is written last and atomically, so its presence
  is what marks a run as finished; a folder without it is a half-done run.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..data import SplitConfig, TnewsSplits, load_tnews, make_splits
from ..errors import ConfigError, ModelError
from ..noise import silence_known_noise
from ..runfiles import (
    CHECKPOINT_DIR,
    LOG_HISTORY_FILE,
    METRICS_FILE,
    MODEL_CONFIG_FILE,
    RUN_CONFIG_FILE,
    WEIGHT_FILES,
    is_finished,
    write_json_atomic,
)
from .config import TrainConfig
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


def config_differences(finished: TrainConfig, wanted: TrainConfig) -> list[tuple[str, Any, Any]]:
    """(field, finished value, wanted value) for each setting in which two runs differ.

    `model` and `data` are compared as resolved paths, so the same folder named
    relatively and absolutely counts as the same; the class names a finished run
    recorded count only when both runs have them.
    """
    differences = []
    for name in (f.name for f in fields(TrainConfig)):
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


def score_run(trainer: Any, selector: SelectBestCallback | None, evaluation: Any, selection: Any,
              label_names: list[str], train_output: Any, train_seconds: float, trainable: int,
              total: int) -> dict[str, Any]:
    """Restore the selected weights, score the evaluation set, and add what the training did.

    Args:
        trainer: the Trainer after `train()`.
        selector: the selection callback the Trainer holds (None: no selection).
        evaluation: the tokenized evaluation set; selection: the selection slice (or None).
        label_names: class names in id order.
        train_output: what `trainer.train()` returned.
        train_seconds: wall seconds of training.
        trainable, total: parameter counts.
    """
    import torch

    if selector is not None:
        selector.restore_best(trainer.model)
    prediction = trainer.predict(evaluation, metric_key_prefix="eval")
    predicted = np.asarray(prediction.predictions).argmax(-1)
    metrics = classification_metrics(np.asarray(prediction.label_ids), predicted, label_names)
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
    trainer.save_model(str(checkpoint))  # model + tokenizer (processing_class)
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
    """Fail early, with a clear message, on a local model folder that cannot work."""
    path = Path(model).expanduser()
    looks_local = path.exists() or model.startswith((".", "/", "~")) or model.count("/") > 1
    if not looks_local:
        return  # a hub id: transformers resolves it
    if not path.is_dir():
        raise ModelError(f"{model}: no such model folder. Pass a hub id or a folder saved with save_pretrained.")
    if not (path / MODEL_CONFIG_FILE).is_file():
        raise ModelError(f"{path}: no {MODEL_CONFIG_FILE}; this is not a transformers model folder.")
    if not any((path / name).is_file() for name in WEIGHT_FILES):
        raise ModelError(
            f"{path}: has no weights ({' or '.join(WEIGHT_FILES[:2])}). A tokenizer-only folder cannot "
            "be fine-tuned: point --model at a folder with pretrained weights."
        )


def load_model_and_tokenizer(model: str, label_names: list[str]):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    check_model_source(model)
    id2label = dict(enumerate(label_names))
    try:
        tokenizer = AutoTokenizer.from_pretrained(model)
        net = AutoModelForSequenceClassification.from_pretrained(
            model,
            num_labels=len(label_names),
            id2label=id2label,
            label2id={name: i for i, name in id2label.items()},
            ignore_mismatched_sizes=True,  # a checkpoint with another head gets a fresh one
        )
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"could not load model {model!r}: {str(exc).splitlines()[0]} "
            "Without network access, pass a local model folder with --model."
        ) from exc
    return net, tokenizer



def training_arguments(work_dir: Path, config: Any, *, epochs: float, eval_every: int, seed: int, evaluate: bool,
                       quiet: bool, **extra: Any):
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
) -> RunResult:
    """Train one run into `run_dir`: fine-tune, select on the selection slice, score the evaluation set.

    Args:
        config: the resolved run settings (see `resolve_config`); saved as `run_config.json`.
        run_dir: the run folder. A finished run there is loaded and returned as is; a half-done one
            (no `metrics.json`) is deleted and trained again from scratch.
        splits: the datasets to use, as `make_splits` draws them (a grid draws them once for all its
            runs); None loads `config.data` and draws them from the config's sizes and seed.
        quiet: no progress bars (selection scores are still logged, at INFO).

    Returns:
        The run folder, its config and the evaluation metrics written to `metrics.json`.

    Raises:
        ModelError: `config.model` cannot be loaded; DataError / ConfigError: the data or the sizes.
    """
    import torch  # noqa: F401  (first: without the train extra, fail before any data is read)
    from transformers import DataCollatorWithPadding, Trainer, set_seed

    from .progress import use_readable_progress
    from .variants import apply_variant, count_parameters

    run_dir = Path(run_dir)
    config = replace(config, model=portable_source(config.model), data=config.data.portable())
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
    check_model_source(config.model)  # cheap checks first: fail before loading data
    if run_dir.exists():  # a half-done run: start it again from scratch
        logger.info("%s: an unfinished run, trained again from scratch", run_dir)
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    write_json_atomic(run_dir / RUN_CONFIG_FILE, config.to_json())

    if splits is None:
        splits = make_splits(
            load_tnews(config.data),
            SplitConfig(
                train_sizes=(config.train_size,),
                eval_size=config.eval_size,
                selection_size=config.selection_size,
                seed=config.seed,
                stratify=config.stratify,
            ),
        )
    # The class names, in id order, go into run_config.json: export and benchmark map labels the same way.
    config = replace(config, data=config.data.with_label_names(splits.label_names))
    write_json_atomic(run_dir / RUN_CONFIG_FILE, config.to_json())
    set_seed(config.seed)
    model, tokenizer = load_model_and_tokenizer(config.model, splits.label_names)
    apply_variant(model, config.variant)
    trainable, total = count_parameters(model)

    train_ds = tokenize(splits.train[config.train_size], tokenizer, config.max_length, quiet=quiet)
    selection_ds = (tokenize(splits.selection, tokenizer, config.max_length, quiet=quiet)
                    if len(splits.selection) else None)
    eval_ds = tokenize(splits.evaluation, tokenizer, config.max_length, quiet=quiet)

    use_selection = selection_ds is not None and (config.select_best or config.early_stopping_patience > 0)
    work_dir = run_dir / "trainer"
    args = training_arguments(
        work_dir, config, epochs=config.effective_epochs(), eval_every=config.eval_every(), seed=config.seed,
        evaluate=use_selection, quiet=quiet,
        # The best weights are kept in memory by SelectBestCallback: no checkpoint
        # of ~0.5 GB is written to disk at every evaluation.
        save_strategy="no",
    )
    selector = SelectBestCallback(
        patience=config.early_stopping_patience, keep_best=config.select_best
    ) if use_selection else None
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=selection_ds if use_selection else None,
        data_collator=DataCollatorWithPadding(tokenizer),
        processing_class=tokenizer,
        compute_metrics=selection_metrics,
        callbacks=[selector] if selector else [],
    )
    use_readable_progress(trainer)  # a progress bar and log lines instead of printed log dicts
    started = time.perf_counter()
    train_output = trainer.train()
    train_seconds = time.perf_counter() - started
    metrics = score_run(trainer, selector, eval_ds, selection_ds, splits.label_names, train_output,
                        train_seconds, trainable, total)
    metrics.update(variant=config.variant, train_size=config.train_size)
    save_checkpoint(trainer, run_dir, work_dir)
    write_json_atomic(run_dir / METRICS_FILE, metrics)  # last: marks the run finished
    return RunResult(run_dir=run_dir, config=config, metrics=metrics)

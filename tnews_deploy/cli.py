"""The `tnews-deploy` command line: a thin click layer over the Python API.

Heavy libraries (torch, transformers, datasets) are imported inside the
commands that need them, so `tnews-deploy --help` and the runtime commands stay
fast and work on a runtime-only install. Option defaults come from the config
dataclasses, which also validate the values.

Progress and diagnostics are log lines on the `tnews_deploy` logger, shown on
stderr (`-v` adds debug lines, `-q` keeps warnings only); results go to stdout.
"""

from __future__ import annotations

import functools
import importlib
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from . import __version__, defaults
from .benchmark.config import BenchmarkConfig
from .choices import OPTIMIZE_LEVELS, PREFERENCES, QUANTIZE_MODES, QUANTIZE_TARGETS
from .datasource import DEFAULT_DATA, DataSource
from .errors import UserError
from .formats import DATA, PREDICT_FORMAT_CHOICES, TEXTS
from .noise import silence_known_noise
from .scoring.config import DEFAULT_CHUNK_ROWS, ENGINES, ScoreConfig
from .service.config import ServiceConfig
from .training.config import (
    ALL_TRAIN,
    CLASS_WEIGHTS,
    DEFAULT_MODEL,
    PRESETS,
    TRAIN_VOCABS,
    VARIANTS,
    GridConfig,
    TrainConfig,
)

_SERVICE_DEFAULTS = ServiceConfig(model_dir=Path("."))
_DATA_DEFAULTS = DataSource()
DATA_HELP = (
    "'clue/tnews' (hub) or another hub id (with --data-config); a folder of HF-style JSONL or original "
    f"CLUE files; or a {DATA.listed()} file, glob or folder (files named train*/validation*/dev*/"
    "test* are those splits)."
)

# Top-level import names of the packages each optional extra installs (pyproject.toml).
EXTRA_PACKAGES: dict[str, tuple[str, ...]] = {
    "train": (
        "torch",
        "transformers",
        "accelerate",
        "datasets",
        "sklearn",
        "optimum",
        "onnx",
        "matplotlib",
        "tqdm",
        "safetensors",
        "huggingface_hub",
    ),
    "serve": ("fastapi", "uvicorn", "starlette"),
}


def missing_extra(exc: BaseException) -> str | None:
    """The extra to install when `exc` is a missing optional dependency; None for any other error."""
    if not isinstance(exc, ModuleNotFoundError) or not exc.name:
        return None
    top = exc.name.partition(".")[0]
    return next((extra for extra, packages in EXTRA_PACKAGES.items() if top in packages), None)


def user_errors(func: Callable) -> Callable:
    """Print a `UserError` (or a missing optional dependency) as one line and exit 2, instead of a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except UserError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(2)
        except ModuleNotFoundError as exc:
            extra = missing_extra(exc)
            if extra is None:
                raise  # not an optional dependency: a bug or a broken install, shown in full
            click.secho(
                f'error: {exc}. This command needs the {extra} extra: pip install "tnews-deploy[{extra}]"',
                fg="red",
                err=True,
            )
            sys.exit(2)

    return wrapper


class FieldDefault:
    """A click default read from a dataclass field when first needed (the command runs or shows --help).

    For configs whose module is heavy to import (the exporter's loads numpy and
    onnxruntime): the dataclass stays the one place for the default, and
    `tnews-deploy --help` does not import it.
    """

    def __init__(self, module: str, cls: str, name: str) -> None:
        self.module, self.cls, self.name = module, cls, name

    def __call__(self) -> Any:
        return getattr(getattr(importlib.import_module(self.module), self.cls), self.name)

    def __str__(self) -> str:  # what --help shows
        return str(self())

    def __bool__(self) -> bool:  # --help of an on/off flag shows the side that is on
        return bool(self())


class _ConsoleHandler(logging.Handler):
    """Log records as plain lines on the current stderr, written above tqdm's progress bars when any show."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record)
            if record.levelno >= logging.WARNING:
                message = f"{record.levelname.lower()}: {message}"
            tqdm = sys.modules.get("tqdm")
            if tqdm is not None:
                tqdm.tqdm.write(message, file=sys.stderr)
            else:
                click.echo(message, err=True)
        except Exception:
            self.handleError(record)


def configure_logging(level: int) -> None:
    """Show the `tnews_deploy` loggers' records at `level` and above on stderr (one handler, added once)."""
    package_logger = logging.getLogger("tnews_deploy")
    package_logger.setLevel(level)
    if not any(isinstance(h, _ConsoleHandler) for h in package_logger.handlers):
        package_logger.addHandler(_ConsoleHandler())


def _size(value: str) -> int | str:
    """A training-set size: a positive integer (`5_000` allowed) or `all`."""
    value = value.strip()
    if value.lower() == ALL_TRAIN:
        return ALL_TRAIN
    try:
        size = int(value.replace("_", ""))
    except ValueError:
        raise click.BadParameter(f"expected a positive integer or {ALL_TRAIN!r}, got {value!r}") from None
    if size <= 0:
        raise click.BadParameter(f"sizes must be positive integers or {ALL_TRAIN!r} (got {size})")
    return size


def _size_option(ctx: click.Context, param: click.Parameter, value: str | None) -> int | str | None:
    return None if value is None else _size(value)


def _int_list(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int | str, ...] | None:
    """Comma-separated sizes (`500,1000,5000`, `all` allowed)."""
    if value is None:
        return None
    sizes = tuple(_size(v) for v in value.split(",") if v.strip())
    if not sizes:
        raise click.BadParameter("name at least one size")
    return sizes


def _seed_list(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    try:
        seeds = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers like 42,7,13, got {value!r}") from None
    if not seeds or any(s < 0 for s in seeds):
        raise click.BadParameter("seeds must be integers >= 0")
    return seeds


def _name_list(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    return tuple(v.strip() for v in value.split(",") if v.strip())


def data_options(*, default: bool, help_data: str) -> Callable:
    """`--data` and the flags that describe it, turned into one `DataSource` passed to the command as `data`.

    Args:
        default: `--data` defaults to `clue/tnews` (train, grid, data-stats); else None means "the data the
            run recorded" (export, benchmark), and the describing flags need `--data`.
        help_data: `--data`'s help text.
    """
    options = [
        click.option("--data", default=DEFAULT_DATA if default else None, show_default=default, help=help_data),
        click.option(
            "--data-config", help="Configuration of a hub dataset, e.g. --data clue/clue --data-config iflytek."
        ),
        click.option("--text-field", help="Column holding the text. Default: 'sentence', else 'text'."),
        click.option(
            "--label-field",
            default=_DATA_DEFAULTS.label_field,
            show_default=True,
            help="Column holding the label: integers (named by --labels) or strings (their sorted set "
            "is the class list).",
        ),
        click.option(
            "--labels",
            "labels_file",
            help="Class names for integer labels: one a line (line 1 = id 0), or CLUE's labels.json. "
            "Default: a labels.json beside the data.",
        ),
        click.option(
            "--validation-fraction",
            type=float,
            default=_DATA_DEFAULTS.validation_fraction,
            show_default=True,
            help="Data without a validation split: share of each class held out of train as one "
            "(seeded, stratified; recorded in the run, so export and benchmark rebuild it).",
        ),
    ]

    def decorate(func: Callable) -> Callable:
        @functools.wraps(func)
        def wrapper(
            *args: Any,
            data: str | None,
            data_config: str | None,
            text_field: str | None,
            label_field: str,
            labels_file: str | None,
            validation_fraction: float,
            **kwargs: Any,
        ) -> Any:
            described = dict(
                config=data_config,
                text_field=text_field,
                label_field=label_field,
                labels=labels_file,
                validation_fraction=validation_fraction,
            )
            source = None
            if data is None:
                given = [name for name, value in described.items() if value != getattr(_DATA_DEFAULTS, name)]
                if given:
                    flags = ", ".join("--" + ("data-config" if n == "config" else n.replace("_", "-")) for n in given)
                    raise click.UsageError(
                        f"{flags} describe the data given with --data; pass --data too "
                        "(without it the run's recorded data is used as recorded)."
                    )
            else:
                try:
                    source = DataSource(path=data, **described)
                except UserError as exc:
                    click.secho(f"error: {exc}", fg="red", err=True)
                    sys.exit(2)
            return func(*args, data=source, **kwargs)

        for option in reversed(options):
            wrapper = option(wrapper)
        return wrapper

    return decorate


def hyperparameter_options(func: Callable) -> Callable:
    """Options shared by `train` and `grid`; None means "take the preset's value"."""
    options = [
        click.option(
            "--model",
            default=TrainConfig.model,
            show_default=True,
            help="Hub id or local folder of a pretrained encoder (any HF encoder).",
        ),
        click.option(
            "--preset",
            type=click.Choice(tuple(PRESETS)),
            default=TrainConfig.preset,
            show_default=True,
            help="'default': a recipe that works at every size (step floor, warmup, early "
            "stopping). 'paper': the study's batch 8, lr 1e-5, 30 epochs, max_length 40.",
        ),
        click.option(
            "--eval-size",
            type=int,
            help=f"Evaluation sentences drawn from validation. Default: {defaults.EVAL_SIZE:,}, or 2/3 of a "
            f"validation split smaller than {defaults.EVAL_SIZE + defaults.SELECTION_SIZE:,} (a holdout "
            "of your own data, say), with the rest for selection.",
        ),
        click.option(
            "--selection-size",
            type=int,
            help="Validation sentences for model selection, disjoint from the evaluation set. Default: "
            f"{defaults.SELECTION_SIZE:,}, or what fits beside the evaluation set (see --eval-size).",
        ),
        click.option("--epochs", type=float, help="Minimum epochs (small sets get more, see --min-steps)."),
        click.option("--min-steps", type=int, help="Optimiser-step floor; 0 turns it off."),
        click.option("--lr", type=float, help="Peak learning rate of AdamW."),
        click.option("--batch-size", type=int, help="Training batch size."),
        click.option("--max-length", type=int, help="Token cap; see `tnews-deploy data-stats`."),
        click.option(
            "--patience",
            "early_stopping_patience",
            type=int,
            help="Early stopping after this many selection evaluations without gain; 0 = off.",
        ),
        click.option(
            "--select-best/--no-select-best",
            "select_best",
            default=None,
            help="Score the weights of the best selection evaluation (default preset) or the last ones "
            "(paper preset). --no-select-best with --patience 0 allows --selection-size 0, e.g. to "
            "score all validation sentences with --eval-size 10000.",
        ),
        click.option(
            "--seed",
            type=int,
            default=TrainConfig.seed,
            show_default=True,
            help="Seed of the evaluation set and selection slice; also of the training subset and "
            "training unless --seeds / --train-seed.",
        ),
        click.option(
            "--stratify/--no-stratify",
            default=TrainConfig.stratify,
            show_default=True,
            help="Draw subsets class-proportionally.",
        ),
        click.option(
            "--class-weight",
            type=click.Choice(CLASS_WEIGHTS),
            default=TrainConfig.class_weight,
            show_default=True,
            help="balanced: cross-entropy weighted by n / (classes · count) of the training subset, so "
            "that rare classes count as much as frequent ones.",
        ),
        click.option(
            "--save-every",
            type=int,
            help="Save a resumable Trainer checkpoint (the latest kept) every N steps; a killed run "
            "resumes from it. 0 = never. Default: every 1/16 of the run (the selection-evaluation "
            "interval) for --train-size all, never otherwise.",
        ),
        click.option(
            "--train-vocab",
            type=click.Choice(TRAIN_VOCABS),
            default=TrainConfig.train_vocab,
            show_default=True,
            help="data: while training, keep only the word-embedding rows of tokens in the data (the "
            "others get no gradient; the checkpoint has them all again). Same results up to "
            "rounding, with less gradient and optimizer memory (multilingual-e5-small, full "
            "fine-tuning on TNEWS: 15k of 250k rows, 1.15x per step on CPU). all: train every row.",
        ),
        click.option("--quiet", is_flag=True, help="No progress bars (there are none when stderr is not a terminal)."),
    ]
    for option in reversed(options):
        func = option(func)
    return data_options(default=True, help_data=DATA_HELP)(func)


def _no_bars(quiet: bool) -> bool:
    """Progress bars only on a terminal: redrawn bars in a log file are noise (log lines say how it goes)."""
    return quiet or not sys.stderr.isatty()


def _overrides(kwargs: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "eval_size",
        "selection_size",
        "epochs",
        "min_steps",
        "lr",
        "batch_size",
        "max_length",
        "early_stopping_patience",
        "select_best",
        "seed",
        "stratify",
        "class_weight",
        "save_every",
        "train_vocab",
    )
    return {k: kwargs[k] for k in keys}


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, package_name="tnews-deploy")  # the version /v1/model and model cards report
@click.option("-v", "--verbose", is_flag=True, help="Debug log lines too (e.g. every training-loss entry).")
@click.option("-q", "--quiet", is_flag=True, help="Log warnings and errors only; results still go to stdout.")
def main(verbose: bool, quiet: bool) -> None:
    """Fine-tune a Chinese BERT classifier on CLUE TNEWS and ship it as a verified ONNX model.

    \b
    Typical path:
      tnews-deploy data-stats --data clue/tnews --output runs/stats
      tnews-deploy grid --model bert-base-chinese --data clue/tnews --output runs/grid
      tnews-deploy export runs/grid --quantize int8 --output exports/int8
      tnews-deploy predict exports/int8 "国足备战世界杯预选赛"
      tnews-deploy serve exports/int8 --port 8000
      tnews-deploy benchmark --onnx exports/int8 --output bench/
    Smaller: trim-vocab, then distill; many files: score; the study: grid --seeds, then report.

    Every command takes --help. Without hub access, pass local folders to --model and --data.
    Your own data: --data tickets.csv --text-field body --label-field category (string labels, or
    integers with --labels names.txt); without a validation file one is held out of train.
    """
    from .training.distributed import is_main

    # Under torchrun / accelerate launch, only the main rank talks (the others would repeat every line).
    configure_logging(logging.DEBUG if verbose else logging.WARNING if quiet or not is_main() else logging.INFO)
    silence_known_noise()


def _display_width(text: str) -> int:
    """Terminal columns of `text`: wide (CJK) characters take two."""
    import unicodedata

    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _pad(text: str, width: int) -> str:
    return text + " " * max(0, width - _display_width(text))


@main.command("data-stats")
@data_options(default=True, help_data=DATA_HELP)
@click.option(
    "--model", default=DEFAULT_MODEL, show_default=True, help="Tokenizer to count tokens with (hub id or local folder)."
)
@click.option("--split", default="train", show_default=True, help="Split whose lengths are measured.")
@click.option(
    "--percentile",
    type=float,
    default=99.0,
    show_default=True,
    help="Token-length percentile that max_length must cover.",
)
@click.option(
    "--output",
    type=click.Path(path_type=Path),
    default=Path("runs/data-stats"),
    show_default=True,
    help="Folder for lengths.png and stats.json.",
)
@user_errors
def data_stats(data: DataSource, model: str, split: str, percentile: float, output: Path) -> None:
    """Sentence-length histograms, percentiles, a suggested max_length, class counts."""
    from transformers import AutoTokenizer

    from .data import length_stats, load_tnews, plot_length_histograms
    from .runfiles import write_json_atomic

    dsd = load_tnews(data)
    if split not in dsd:
        raise UserError(f"no split {split!r} in {data}; it has {', '.join(dsd)}.")
    try:
        tokenizer = AutoTokenizer.from_pretrained(model)
    except (OSError, ValueError) as exc:
        raise UserError(f"could not load a tokenizer from {model!r}: {str(exc).splitlines()[0]}") from exc
    stats = length_stats(dsd, tokenizer, split=split, percentile=percentile)
    output.mkdir(parents=True, exist_ok=True)
    png = plot_length_histograms(stats, output / "lengths.png")
    payload = {"data": data.to_json(), "tokenizer": model, "split": split, "percentile": percentile, **stats.to_json()}
    write_json_atomic(output / "stats.json", payload)

    click.echo(f"{split}: {len(stats.char_lengths):,} sentences")
    header = "        " + "".join(f"{k:>8}" for k in stats.char_percentiles)
    click.echo(header)
    click.echo("chars   " + "".join(f"{v:>8.0f}" for v in stats.char_percentiles.values()))
    click.echo("tokens  " + "".join(f"{v:>8.0f}" for v in stats.token_percentiles.values()))
    click.echo(
        f"suggested max_length: {stats.suggested_max_length} (covers the p{percentile:g} of token lengths; "
        f"{stats.truncated_share:.2%} of sentences would be truncated)"
    )
    click.echo("class counts:")
    unlabelled = "(unlabelled)"
    # A split whose every sentence is unlabelled (TNEWS test) gets a line, not a column of zeros.
    labelled = [s for s, counts in stats.class_counts.items() if any(n for k, n in counts.items() if k != unlabelled)]
    names = list(dsd[split].features["label"].names)
    if any(stats.class_counts[s].get(unlabelled) for s in labelled):
        names.append(unlabelled)
    width = max([20, *(_display_width(name) + 2 for name in names)])
    click.echo("  " + _pad("class", width) + "".join(f"{s:>12}" for s in labelled))
    for name in names:
        click.echo("  " + _pad(name, width) + "".join(f"{stats.class_counts[s].get(name, 0):>12,}" for s in labelled))
    for s, counts in stats.class_counts.items():
        if s not in labelled:
            click.echo(f"  {s}: unlabelled ({counts.get(unlabelled, 0):,} sentences)")
    click.echo(f"wrote {png} and {output / 'stats.json'}")


@main.command()
@hyperparameter_options
@click.option(
    "--variant",
    type=click.Choice(VARIANTS),
    default=TrainConfig.variant,
    show_default=True,
    help="full: all layers train; freeze-embeddings: embedding layer frozen; "
    "freeze-encoder: only pooler + classifier train.",
)
@click.option(
    "--train-size",
    callback=_size_option,
    default=str(TrainConfig.train_size),
    show_default=True,
    help="Training sentences drawn (seeded) from the train split; 'all': the whole split minus the "
    "evaluation and selection sentences.",
)
@click.option(
    "--train-seed",
    type=int,
    help="Seed of the training subset, initialisation and data order (default: --seed); the "
    "evaluation set stays the one of --seed.",
)
@click.option(
    "--output",
    type=click.Path(path_type=Path),
    required=True,
    help="Run folder: checkpoint/, metrics.json, predictions.json, run_config.json, train.log.",
)
@user_errors
def train(
    variant: str,
    train_size: int | str,
    train_seed: int | None,
    output: Path,
    model: str,
    data: DataSource,
    preset: str,
    quiet: bool,
    **kwargs: Any,
) -> None:
    """Fine-tune one run (one variant on one training-set size) and score it.

    The run folder is reused as is when it already holds a finished run; an unfinished one
    that saved a checkpoint (--save-every, on by default for --train-size all) resumes from it.

    Several processes or GPUs (PyTorch DDP; --batch-size is per process):
      torchrun --nproc_per_node 8 -m tnews_deploy train ...
      accelerate launch --multi_gpu --num_processes 8 -m tnews_deploy train ...
    """
    from .training import resolve_config, train_run
    from .training.distributed import is_main, world_size

    config = resolve_config(
        preset, variant, model=model, data=data, train_size=train_size, train_seed=train_seed, **_overrides(kwargs)
    )
    say = click.echo if is_main() else (lambda *args, **kwargs: None)  # torchrun: the main rank speaks
    schedule = (
        f"{config.effective_epochs():g} epochs ({config.total_steps():,} steps)"
        if isinstance(train_size, int)
        else f"at least {config.epochs:g} epochs"
    )
    size = f"{train_size:,}" if isinstance(train_size, int) else train_size
    batch = f"batch {config.batch_size}" + (f" × {world_size()} processes" if world_size() > 1 else "")
    # announced once both sources are checked and the data drawn: a run that cannot start says only why
    result = train_run(
        config,
        output,
        quiet=_no_bars(quiet),
        on_start=lambda _: say(
            f"training {variant} × {size} on {model}: lr {config.lr:g}, {batch}, {schedule}, "
            f"max_length {config.max_length}, class weight {config.class_weight}"
        ),
    )
    m = result.metrics
    say(
        f"macro-F1 {m['macro_f1']:.4f}  micro-F1 {m['micro_f1']:.4f}  accuracy {m['accuracy']:.4f}  "
        f"({m['train_seconds']:.0f} s); checkpoint: {result.checkpoint}"
    )


@main.command()
@hyperparameter_options
@click.option(
    "--variants",
    callback=_name_list,
    default=",".join(GridConfig.variants),
    show_default=True,
    help=f"Comma-separated variants, from {', '.join(VARIANTS)}.",
)
@click.option(
    "--train-sizes",
    callback=_int_list,
    default=",".join(map(str, GridConfig.train_sizes)),
    show_default=True,
    help="Comma-separated training-set sizes ('all': the whole train split).",
)
@click.option(
    "--seeds",
    callback=_seed_list,
    help="Comma-separated training seeds, e.g. 42,7,13: every cell is trained once per seed, each seed "
    "drawing its own training subsets; the evaluation set stays the one of --seed. Default: --seed.",
)
@click.option(
    "--output",
    type=click.Path(path_type=Path),
    required=True,
    help="Grid folder: one run folder each, results.json/.md/.png.",
)
@user_errors
def grid(
    variants: tuple[str, ...],
    train_sizes: tuple[int | str, ...],
    seeds: tuple[int, ...] | None,
    output: Path,
    model: str,
    data: DataSource,
    preset: str,
    quiet: bool,
    **kwargs: Any,
) -> None:
    """Train variants × sizes × seeds (3 × 3 × 1 by default) and report macro/micro-F1 with error bars.

    Finished runs are skipped, so rerunning a killed grid resumes it. Writes
    results.json (every run, with its seed), results.md (per cell: mean ± std over
    seeds and a 95 % bootstrap interval) and results.png (bars with error bars) into
    --output and names the best cell and run by macro-F1. `tnews-deploy report` turns
    the grid into the study report. Under torchrun / accelerate launch each run trains
    with DDP on all processes, one after the other (see `train --help`).

    Several workers may share one --output: start the same command in several processes
    (e.g. one per core with OMP_NUM_THREADS=1, or one per GPU with CUDA_VISIBLE_DEVICES).
    Each trains the runs no other worker holds (a lock per run, released when its worker
    ends, even by kill -9); the last worker to finish writes the complete report.
    """
    config = GridConfig(
        model=model,
        data=data,
        output=output,
        variants=variants,
        train_sizes=train_sizes,
        preset=preset,
        overrides=_overrides(kwargs),
        seeds=seeds,
    )
    from .training.distributed import is_main
    from .training.grid import portable_command, run_grid

    results = run_grid(config, quiet=_no_bars(quiet), command="tnews-deploy " + portable_command(sys.argv[1:]))
    if is_main():  # under torchrun / accelerate launch, rank 0 speaks
        click.echo((output / "results.md").read_text(encoding="utf-8"))
        if results.get("best"):
            click.echo(f"best run: {results['best']['run']} -> {output / results['best']['checkpoint']}")
        if results["finished_runs"] < results["planned_runs"]:
            click.echo(
                f"{results['finished_runs']} of {results['planned_runs']} runs finished; other workers "
                "are training the rest (the last one to finish rewrites the report)"
            )


@main.command()
@click.argument("grid_dir", metavar="GRID", type=click.Path(path_type=Path))
@click.option(
    "--output",
    type=click.Path(path_type=Path),
    required=True,
    help="The report (Markdown); its learning-curve figure is written beside it.",
)
@click.option(
    "--extra",
    "extras",
    type=click.Path(path_type=Path),
    multiple=True,
    help="Another grid or run folder whose cells join the report (repeatable): e.g. the study's "
    "settings on the frozen variant (--preset paper), --class-weight balanced, --train-size all.",
)
@click.option("--draws", type=click.IntRange(min=100), default=1000, show_default=True, help="Bootstrap resamples.")
@user_errors
def report(grid_dir: Path, output: Path, extras: tuple[Path, ...], draws: int) -> None:
    """The study report of a grid: the study's Table 2 beside ours, its five questions answered from data.

    Everything is computed from the run folders (metrics, saved evaluation
    predictions), so regenerating the report is this one command; the weights
    are not needed, so a copy of the results (docs/study-e5-small) regenerates
    its report too. Cells are
    means over seeds with 95 % bootstrap intervals; two cells are called
    indistinguishable when the interval of their paired difference holds 0.
    On other data than TNEWS the same questions are answered for its classes,
    without the study's and CLUE's TNEWS figures.

    \b
    Example:
      tnews-deploy grid --model $E5 --data $DATA --seeds 42,7,13 --output runs/grid
      tnews-deploy grid --model $E5 --data $DATA --seeds 42,7,13 --preset paper \\
          --variants freeze-encoder --train-sizes 1000 --output runs/paper
      tnews-deploy report runs/grid --extra runs/paper --output runs/grid/report.md
    """
    from .training.study import write_study_report

    path = write_study_report(grid_dir, output, extras, draws=draws)
    click.echo(f"wrote {path}")


# --------------------------------------------------------------------------- export


@main.command()
@click.argument("source", type=click.Path(path_type=Path))
@click.option(
    "--output",
    type=click.Path(path_type=Path),
    required=True,
    help="Folder to create: model.onnx, tokenizer, config.json, manifest.json.",
)
@click.option(
    "--optimize",
    type=click.Choice(OPTIMIZE_LEVELS),
    show_default=True,
    default=FieldDefault("tnews_deploy.export.exporter", "ExportConfig", "optimize"),
    help="Optimum graph optimisation. O1/O2 are exact; O3 approximates GELU.",
)
@click.option(
    "--quantize",
    type=click.Choice(QUANTIZE_MODES),
    show_default=True,
    default=FieldDefault("tnews_deploy.export.exporter", "ExportConfig", "quantize"),
    help="int8: per-token dynamic int8, batch-invariant (a text's answer does not depend on the other "
    "texts in its batch). int8-dynamic: Optimum's ORTQuantizer, one activation scale per tensor "
    "per call; its answers depend on the batch neighbours (with micro-batching, on other users' "
    "requests). auto: build fp32, fp32 + O2, int8 and int8 + O2, verify each with the gate, time "
    "each on this machine and keep the fastest that passes (see --prefer).",
)
@click.option(
    "--quantize-for",
    type=click.Choice(QUANTIZE_TARGETS),
    help="The int8 weight form. portable (default): uint8 weights (u8 x u8), exact on every CPU and in "
    "every runtime. avx512_vnni, arm64: int8 weights (u8 x s8), for a fleet known to have VNNI or "
    "ARM64: elsewhere their kernels saturate (tnews-deploy's Predictor converts them at load; other "
    "runtimes do not). avx512, avx2: uint8 weights. Predictor runs either file in the form that "
    "is exact and fastest on the CPU serving it.",
)
@click.option(
    "--per-channel/--per-tensor",
    show_default=True,
    default=FieldDefault("tnews_deploy.export.exporter", "ExportConfig", "per_channel"),
    help="Per-channel or per-tensor int8 weight scales (int8-dynamic; int8 is always per channel).",
)
@data_options(
    default=False,
    help_data="Verification data (see `train --help`); default: the data the run "
    "was evaluated on, as its run_config.json records it.",
)
@click.option("--eval-size", type=int, help="Verification sentences; default: the run's evaluation set.")
@click.option("--max-length", type=int, help="Token cap baked into the export; default: the run's.")
@click.option(
    "--min-agreement",
    type=float,
    show_default=True,
    default=FieldDefault("tnews_deploy.export.verify", "GatePolicy", "min_agreement"),
    help="Exact exports (fp32, O1, O2) must agree with PyTorch on this share of sentences.",
)
@click.option(
    "--max-f1-drop",
    type=float,
    show_default=True,
    default=FieldDefault("tnews_deploy.export.verify", "GatePolicy", "max_f1_drop"),
    help="Approximate exports (O3, int8) may lose at most this much macro-F1.",
)
@click.option(
    "--prefer",
    type=click.Choice(PREFERENCES),
    help="--quantize auto: keep the candidate with the most titles/s at batch 32 (throughput, default) "
    "or the lowest batch-1 p50 latency.",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    help="--quantize auto: onnxruntime threads the candidates are timed with (default: all usable "
    "cores); use the serving machine's.",
)
@click.option("--force", is_flag=True, help="Replace --output if it exists.")
@user_errors
def export(
    source: Path,
    output: Path,
    optimize: str,
    quantize: str,
    quantize_for: str | None,
    per_channel: bool,
    data: DataSource | None,
    eval_size: int | None,
    max_length: int | None,
    min_agreement: float,
    max_f1_drop: float,
    prefer: str | None,
    threads: int | None,
    force: bool,
) -> None:
    """Export a checkpoint to ONNX with Optimum, verified against PyTorch.

    \b
    SOURCE is a checkpoint folder, a training-run folder, or a grid folder
    (then the grid's best run by macro-F1 is exported).

    The evaluation set is run through PyTorch and through the new ONNX model.
    The export is refused (exit 2, nothing written) when an exact export
    agrees with PyTorch on fewer than --min-agreement of the sentences, or
    when an approximate one loses more than --max-f1-drop macro-F1. The
    folder appears only when accepted (built aside, then renamed). The
    manifest also records batch invariance: up to 500 evaluation sentences
    predicted one at a time vs in batches of 32 (label changes, max |Δp|).

    With --quantize auto (the recommended path), the variant is measured,
    not assumed: fp32, fp32 + O2, per-token int8 and int8 + O2 are each
    built and gated as above, the accepted ones are timed here through the
    Predictor (same threads, alternating rounds: batch-1 p50 and titles/s at
    batch 32 on the evaluation texts), and the fastest by --prefer is kept.
    The manifest (`auto`) and the model card record every candidate's gate
    figures and timings and the CPU; refused candidates are never kept. The
    fastest variant depends on the CPU: run it on (a machine like) the one
    that will serve.

    \b
    Examples:
      tnews-deploy export runs/grid --quantize auto --output exports/best
      tnews-deploy export runs/grid --output exports/fp32
      tnews-deploy export runs/grid --optimize O2 --output exports/o2
      tnews-deploy export runs/grid --quantize int8 --output exports/int8
    """
    from .errors import ConfigError
    from .export import ExportConfig, GatePolicy, export_model

    if quantize != "auto" and (prefer is not None or threads is not None):
        raise ConfigError(
            "--prefer and --threads choose among the candidates of --quantize auto; add "
            "--quantize auto or leave them out."
        )
    config = ExportConfig(
        optimize=optimize,
        quantize=quantize,
        quantize_for=quantize_for,
        per_channel=per_channel,
        data=data,
        eval_size=eval_size,
        max_length=max_length,
        policy=GatePolicy(min_agreement=min_agreement, max_f1_drop=max_f1_drop),
        force=force,
        **({"prefer": prefer} if prefer else {}),
        threads=threads,
    )
    result = export_model(source, output, config)
    m = result.manifest
    if "auto" in m:
        from .export.card import selection_table

        click.echo(
            f"candidates, timed on {m['auto']['machine']['cpu']} with {m['auto']['timing']['threads']} "
            f"thread(s), prefer {m['auto']['prefer']}:\n{selection_table(m['auto'])}"
        )
    click.echo(
        f"{output}: {m['model']['bytes'] / 1e6:.1f} MB, sha256 {m['model']['sha256'][:12]}…, "
        f"agreement {result.report.agreement:.2%}, ONNX macro-F1 {result.report.onnx['macro_f1']:.4f} "
        f"(PyTorch {result.report.pytorch['macro_f1']:.4f})"
    )


@main.command()
@click.argument("model_dir", type=click.Path(path_type=Path))
@click.option(
    "--benchmark",
    "benchmark_json",
    type=click.Path(path_type=Path),
    help="A results.json of `tnews-deploy benchmark` that measured MODEL_DIR: adds its speed figures.",
)
@click.option("--backend", help="The benchmark backend that is MODEL_DIR (default: found by its path).")
@click.option(
    "--base-model",
    help="Hub id of the pretrained model for the card's metadata (default: the run's model when it is a hub id).",
)
@user_errors
def card(model_dir: Path, benchmark_json: Path | None, backend: str | None, base_model: str | None) -> None:
    """Write the model card (README.md) of an export folder again, from its manifest.

    \b
    `export` writes the card; this regenerates it for an existing folder (an
    older export, a new tnews-deploy), optionally with benchmark figures.
    model.onnx and its sha256 are untouched.

    \b
    Examples:
      tnews-deploy card exports/int8
      tnews-deploy card exports/int8 --benchmark bench/results.json
    """
    from .export.card import write_card

    click.echo(write_card(model_dir, benchmark=benchmark_json, backend=backend, base_model=base_model))


# --------------------------------------------------------------------------- package


@main.command()
@click.argument("model_dir", type=click.Path(path_type=Path))
@click.option(
    "--name",
    required=True,
    help="The package's name, which finds the model once installed: letters, digits, '-', '_', '.' "
    "(e.g. tnews-int8; compared like pip compares names).",
)
@click.option("--version", "version", required=True, help="The package's version (PEP 440, e.g. 1.0.0).")
@click.option(
    "--output",
    type=click.Path(path_type=Path),
    default=Path("dist"),
    show_default=True,
    help="Folder the wheel is written to.",
)
@click.option("--force", is_flag=True, help="Replace a wheel of the same name and version in --output.")
@user_errors
def package(model_dir: Path, name: str, version: str, output: Path, force: bool) -> None:
    """Package an export folder as a pip-installable wheel (a model package).

    \b
    The folder is first loaded as the runtime loads it (every file's
    sha256 against manifest.json, labels, tokenizer, model), and its
    manifest must record a passed verification. The wheel holds the
    folder, depends on tnews-deploy (the runtime) and carries the model
    card as its description. Installed (pip install, a requirements
    file, a Docker image), the model is found by NAME, wherever it lives:
    predict, score and serve take NAME where they take a folder, and
    Python takes Predictor("NAME"). The sha256 checks run at every load.
    Prints the wheel's path.

    \b
    Examples:
      tnews-deploy package exports/int8 --name tnews-int8 --version 1.0.0 --output dist/
      pip install dist/tnews_int8-1.0.0-py3-none-any.whl
      tnews-deploy predict tnews-int8 "北京大学举行毕业典礼"
      tnews-deploy serve tnews-int8 --port 8000
      python -c 'from tnews_deploy import Predictor; print(Predictor("tnews-int8").predict("…"))'
    """
    from .model_package import PackageConfig, build_model_package

    wheel = build_model_package(PackageConfig(model_dir, name=name, version=version, output=output, force=force))
    click.echo(wheel)
    click.echo(f"install it with: pip install {wheel}; then use the name: tnews-deploy predict {name} TEXT", err=True)


# --------------------------------------------------------------------------- predict


def _prediction_fields(result: Any) -> dict[str, Any]:
    if isinstance(result, list):
        return {"predictions": [r.to_dict() for r in result]}
    return result.to_dict()


@main.command()
@click.argument("args", nargs=-1, metavar="[MODEL] [TEXTS]...")
@click.option(
    "--input", "input_path", help="File of texts: .txt (one a line) or .jsonl ('sentence'/'text'); - for stdin."
)
@click.option(
    "--input-format",
    type=click.Choice(PREDICT_FORMAT_CHOICES),
    default="auto",
    show_default=True,
    help="auto: by extension; stdin is sniffed.",
)
@click.option("--output", "output_path", type=click.Path(path_type=Path), help="Write JSONL here instead of stdout.")
@click.option("--top-k", type=int, default=1, show_default=True, help="Best classes per text.")
@click.option(
    "--format",
    "out_format",
    type=click.Choice(["auto", "table", "jsonl"]),
    default="auto",
    show_default=True,
    help="auto: a table on a terminal, JSONL in a pipe or file.",
)
@click.option("--threads", type=int, help="onnxruntime intra-op threads (default: all cores).")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@user_errors
def predict(
    args: tuple[str, ...],
    input_path: str | None,
    input_format: str,
    output_path: Path | None,
    top_k: int,
    out_format: str,
    threads: int | None,
    batch_size: int,
) -> None:
    """Classify texts (runtime only: no torch); with no MODEL, the bundled one.

    \b
    MODEL (optional): an export folder, the name of an installed model
    package (tnews-deploy package), or default / tnews-compact (the
    bundled model). The first argument is the model when it is an
    existing folder, such a name, or looks like a path (has a / or \\,
    starts with . or ~, ends in .onnx: a missing one is an error);
    otherwise every argument is a text. Without a MODEL the default
    model answers: the folder or name in $TNEWS_DEPLOY_MODEL when set,
    else the bundled model. A MODEL given always wins.
    \b
    Texts come as arguments, from --input, or piped in (standard input;
    also read for --input - or a lone -). A bad line in a file (empty,
    invalid JSON, bad UTF-8, no text field) gets an "error" record with
    its line number; the good lines are still predicted, and the command
    exits 1 at the end, saying how many failed. A table (on a terminal)
    starts with the model's name and version; JSONL has one record a line.

    \b
    Examples:
      tnews-deploy predict "北京大学举行毕业典礼" "国足备战世界杯预选赛"       # the bundled model
      tnews-deploy predict --input titles.txt --output predictions.jsonl
      cat titles.jsonl | tnews-deploy predict --top-k 3
      tnews-deploy predict exports/int8 "北京大学举行毕业典礼"        # an export folder
      tnews-deploy predict tnews-int8 "北京大学举行毕业典礼"          # an installed model package
    """
    from .inputs import read_records, records_from_texts
    from .models import split_predict_arguments
    from .predictor import Predictor

    model_dir, texts = split_predict_arguments(args)
    if texts == ("-",) and not input_path:  # the usual spelling of "read standard input"
        texts, input_path = (), "-"
    if texts and input_path:
        raise UserError("give texts as arguments or --input, not both.")
    piped = not texts and not input_path and sys.stdin is not None and not sys.stdin.isatty()
    if piped:
        input_path = "-"
    if not texts and not input_path:
        raise UserError("nothing to classify: pass texts as arguments, --input FILE, or pipe texts in.")
    predictor = Predictor(model_dir, threads=threads, batch_size=batch_size)
    if not 1 <= top_k <= len(predictor.labels):
        raise UserError(f"--top-k must be in 1..{len(predictor.labels)}.")

    if texts:
        records = records_from_texts(texts)
    elif input_path == "-":
        records = list(read_records(sys.stdin.buffer, "-", input_format))
        if not records and piped:
            raise UserError("nothing to classify: standard input was empty; pass texts as arguments or --input FILE.")
    else:
        path = Path(input_path)
        if not path.is_file():
            raise UserError(f"{path}: no such file.")
        with path.open("rb") as fh:
            records = list(read_records(fh, path.name, input_format))

    good = [r for r in records if r.error is None]
    results = iter(predictor.predict([r.text for r in good], top_k=top_k) if good else [])
    rows: list[dict[str, Any]] = []
    for record in records:
        if record.error is not None:
            rows.append({"line": record.line, "error": record.error})
        else:
            rows.append({"line": record.line, "text": record.text, **_prediction_fields(next(results))})

    sink = output_path.open("w", encoding="utf-8") if output_path else None
    try:
        as_table = out_format == "table" or (out_format == "auto" and sink is None and sys.stdout.isatty())
        if as_table:
            click.echo(predictor.model_label)
            _print_table(rows, top_k)
        else:
            for row in rows:
                line = json.dumps(row, ensure_ascii=False)
                if sink:
                    sink.write(line + "\n")
                else:
                    click.echo(line)
    finally:
        if sink:
            sink.close()
    failed = sum(1 for r in rows if "error" in r)
    if output_path:
        click.echo(f"wrote {len(rows) - failed:,} predictions to {output_path}", err=True)
    if failed:
        click.secho(f"{failed:,} of {len(rows):,} input(s) failed; see their 'error' fields.", fg="red", err=True)
        sys.exit(1)


def _print_table(rows: list[dict[str, Any]], top_k: int) -> None:
    for row in rows:
        if "error" in row:
            click.secho(f"{row['line']:>5}  ERROR  {row['error']}", fg="red")
            continue
        text = row["text"] if len(row["text"]) <= 40 else row["text"][:39] + "…"
        if top_k == 1:
            click.echo(f"{row['line']:>5}  {row['label']:<19} {row['score']:.3f}  {text}")
        else:
            ranked = ", ".join(f"{p['label']} {p['score']:.3f}" for p in row["predictions"])
            click.echo(f"{row['line']:>5}  {text}\n       {ranked}")


# --------------------------------------------------------------------------- score


@main.command()
@click.argument("args", nargs=-1, required=True, metavar="[MODEL] INPUT...")
@click.option(
    "--output",
    type=click.Path(path_type=Path),
    required=True,
    help="Folder of Parquet shards and a _SUCCESS summary; it appears only once complete.",
)
@click.option("--text-field", help="The text column/field (default: 'sentence', else 'text').")
@click.option(
    "--top-k", type=int, default=1, show_default=True, help="Above 1: a top_k column with the best classes per row."
)
@click.option("--probabilities", is_flag=True, help="A probabilities column (every class, in label-id order).")
@click.option(
    "--engine",
    type=click.Choice(ENGINES),
    default="local",
    show_default=True,
    help="local: one streaming process; ray: a Ray Data actor pool (the scale extra).",
)
@click.option("--threads", type=int, help="local: onnxruntime intra-op threads (default: all usable cores).")
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=ScoreConfig.batch_size,
    show_default=True,
    help="Texts per model call.",
)
@click.option(
    "--chunk-rows",
    type=click.IntRange(min=1),
    default=DEFAULT_CHUNK_ROWS,
    show_default=True,
    help="Rows read, scored and written at a time (bounds memory).",
)
@click.option(
    "--ray-address",
    envvar="RAY_ADDRESS",
    show_envvar=True,
    help="ray: the cluster to join (e.g. 10.0.0.1:6379); default: start a local one.",
)
@click.option(
    "--actors",
    type=click.IntRange(min=1),
    default=ScoreConfig.actors,
    show_default=True,
    help="ray: actors, each owning one Predictor.",
)
@click.option(
    "--threads-per-actor",
    type=click.IntRange(min=1),
    default=ScoreConfig.threads_per_actor,
    show_default=True,
    help="ray: onnxruntime threads and CPUs reserved per actor.",
)
@click.option("--force", is_flag=True, help="Replace --output if it exists (once the new output is complete).")
@user_errors
def score(
    args: tuple[str, ...],
    output: Path,
    text_field: str | None,
    top_k: int,
    probabilities: bool,
    engine: str,
    threads: int | None,
    batch_size: int,
    chunk_rows: int,
    ray_address: str | None,
    actors: int,
    threads_per_actor: int,
    force: bool,
) -> None:
    """Score files of texts into Parquet (runtime only: no torch).

    \b
    MODEL (optional): an export folder (holding model.onnx or
    manifest.json), the name of an installed model package (tnews-deploy
    package), or default / tnews-compact (the bundled model); any other
    first argument is an INPUT. Without a MODEL: the folder or name in
    $TNEWS_DEPLOY_MODEL when set, else the bundled model.
    INPUT: .jsonl, .parquet, .csv or .txt files, folders or globs; the text is
    the 'sentence' or 'text' field (--text-field), the id the 'idx' or 'id'
    field, else the 1-based row number within its file. Output rows: source,
    id, label, label_id, score (top_k, probabilities), error. A bad row (no,
    empty, non-string or undecodable text; a broken JSON line) gets an error
    and no label; the good rows are all scored, and the command exits 1 at the
    end, saying how many failed. The summary (rows, errors, seconds, rows/s,
    model sha256) is printed as JSON and saved as OUTPUT/_SUCCESS.

    \b
    Examples:
      tnews-deploy score titles.jsonl --output scores/titles     # the bundled model
      tnews-deploy score exports/int8 data/tnews/*.jsonl --output scores/tnews
      tnews-deploy score exports/int8 titles.csv --text-field title --top-k 3 --output scores/titles
      tnews-deploy score exports/int8 s3-mirror/ --output scores/all --engine ray --actors 8 \\
          --ray-address 10.0.0.1:6379
    """
    from .models import split_score_arguments
    from .scoring import score as run_scoring

    model_dir, inputs = split_score_arguments(args)
    config = ScoreConfig(
        model_dir=model_dir,
        inputs=inputs,
        output=output,
        text_field=text_field,
        top_k=top_k,
        probabilities=probabilities,
        engine=engine,
        threads=threads,
        batch_size=batch_size,
        chunk_rows=chunk_rows,
        force=force,
        ray_address=ray_address,
        actors=actors,
        threads_per_actor=threads_per_actor,
    )
    summary = run_scoring(config)
    details = summary.to_dict()
    details.pop("first_errors")
    click.echo(json.dumps(details, ensure_ascii=False))
    click.echo(
        f"scored {summary.rows:,} rows in {summary.seconds:.1f} s ({summary.rows_per_second:,.0f} rows/s) "
        f"into {output}",
        err=True,
    )
    if summary.errors:
        for row in summary.first_errors:
            click.secho(f"  {row['source']} id {row['id']}: {row['error']}", fg="red", err=True)
        click.secho(
            f"{summary.errors:,} of {summary.rows:,} row(s) failed; see their 'error' column in {output}.",
            fg="red",
            err=True,
        )
        sys.exit(1)


# --------------------------------------------------------------------------- benchmark


_BENCH = BenchmarkConfig.defaults()


@main.command()
@click.option(
    "--pytorch",
    type=click.Path(path_type=Path),
    help="Checkpoint, run or grid folder for the PyTorch baseline; default: the ONNX manifest's source (when it "
    "is not on this machine, only the ONNX models are measured, the first the reference).",
)
@click.option(
    "--onnx",
    type=click.Path(path_type=Path),
    multiple=True,
    required=True,
    help="An exported folder, `default` (the bundled model) or an installed model package's name; repeat for "
    "each variant (fp32, O2, int8 ...).",
)
@click.option(
    "--output",
    type=click.Path(path_type=Path),
    required=True,
    help="Folder for results.json, results.md, latency.png, throughput.png.",
)
@data_options(
    default=False,
    help_data="Evaluation data (see `train --help`); default: what the exports were verified on (else the run's).",
)
@click.option(
    "--eval-size", type=int, help="Evaluation-set size; default: the exports' verification set (else the run's)."
)
@click.option("--seed", type=int, help="Evaluation-set seed; default: the exports' / the run's.")
@click.option(
    "--stratify/--no-stratify",
    default=None,
    help="Draw the evaluation set class-proportionally; default: as the run did.",
)
@click.option("--max-sentences", type=int, help="Measure a seeded subset of this many evaluation sentences.")
@click.option("--threads", type=int, help="Threads for every backend (default: all usable cores).")
@click.option(
    "--latency-sentences",
    type=int,
    default=_BENCH["latency_sentences"],
    show_default=True,
    help="Timed batch-1 calls per backend.",
)
@click.option("--warmup", type=int, default=_BENCH["warmup"], show_default=True, help="Untimed batch-1 calls first.")
@click.option(
    "--rounds",
    type=int,
    default=_BENCH["rounds"],
    show_default=True,
    help="Alternating rounds (A B A B ...); medians and min–max are over rounds.",
)
@click.option(
    "--batch-sizes",
    callback=_int_list,
    default=",".join(map(str, _BENCH["batch_sizes"])),
    show_default=True,
    help="Throughput batch sizes.",
)
@click.option(
    "--pytorch-sorted",
    is_flag=True,
    default=_BENCH["pytorch_sorted"],
    help="Also run PyTorch with length bucketing, to separate bucketing from runtime gains.",
)
@click.option(
    "--cold-start/--no-cold-start",
    default=_BENCH["cold_start"],
    show_default=True,
    help="Measure import + load + first prediction and peak RSS in a fresh process.",
)
@click.option("--max-length", type=int, help="Token cap for PyTorch; default: the exports'.")
@click.option(
    "--quick",
    is_flag=True,
    help="A smoke run in seconds: 64 sentences, 24 timed calls, 1 round, batch 8 (flags given override).",
)
@user_errors
def benchmark(quick: bool, **options: Any) -> None:
    """PyTorch eager vs each ONNX export: F1 parity, latency, throughput, side by side.

    \b
    All backends run on the same sentences with the same thread count, in
    alternation (A B A B ...) so that machine drift cancels out. The
    evaluation set is the one the exports were verified on (the run's own
    evaluation set), unless --data / --eval-size / --seed / --stratify say
    otherwise.

    \b
    Examples:
      tnews-deploy benchmark --pytorch runs/grid --onnx exports/fp32 --onnx exports/o2 \\
          --onnx exports/int8 --output bench/
      tnews-deploy benchmark --onnx default --data clue/tnews --output bench/   # the bundled model alone
    """
    from .benchmark import run_benchmark

    # Only what was given on the command line: the rest keeps BenchmarkConfig's (or --quick's) defaults.
    ctx = click.get_current_context()
    given = {
        name: value
        for name, value in options.items()
        if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT
    }
    config = (BenchmarkConfig.quick_config if quick else BenchmarkConfig)(**{"pytorch": None, **given})
    report = run_benchmark(config)
    click.echo((config.output / "results.md").read_text(encoding="utf-8"))
    click.echo(
        f"wrote {config.output / 'results.json'}, latency.png, throughput.png ({len(report['backends'])} backends)"
    )


# --------------------------------------------------------------------------- serve


@main.command()
@click.argument("model_dir", metavar="[MODEL]", required=False, type=click.Path(path_type=Path))
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Interface to bind; the default is reachable from this machine only.",
)
@click.option("--port", type=int, default=8000, show_default=True)
@click.option(
    "--workers", type=int, default=1, show_default=True, help="Worker processes, each with its own model copy."
)
@click.option("--threads", type=int, help="onnxruntime threads per worker (default: usable cores / workers).")
@click.option(
    "--max-batch", type=int, default=_SERVICE_DEFAULTS.max_batch, show_default=True, help="Most texts in one request."
)
@click.option(
    "--max-chars",
    type=int,
    default=_SERVICE_DEFAULTS.max_chars,
    show_default=True,
    help="Longest text accepted, in characters.",
)
@click.option(
    "--batch-window-ms",
    type=float,
    default=_SERVICE_DEFAULTS.batch_window_ms,
    show_default=True,
    help="Micro-batching: concurrent requests arriving within this many ms share one model call "
    "(0 = off). See docs/load-test.md for what it buys.",
)
@click.option(
    "--max-queue",
    type=int,
    default=_SERVICE_DEFAULTS.max_queue,
    show_default=True,
    help="Most classify requests waiting for or in the model at once, per worker; more get an "
    "immediate 503 with Retry-After. See docs/operations.md for sizing.",
)
@click.option(
    "--graceful-timeout",
    type=float,
    default=_SERVICE_DEFAULTS.graceful_timeout_s,
    show_default=True,
    help="On SIGTERM, seconds in-flight requests may take to finish before they are cancelled.",
)
@click.option(
    "--log-level",
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
    default="info",
    show_default=True,
)
@click.option(
    "--docs",
    is_flag=True,
    help="Also serve the interactive API pages /docs (Swagger UI) and /redoc. Off by default: they load "
    "their scripts from a CDN (blank offline). /openapi.json is always served.",
)
@user_errors
def serve(
    model_dir: Path | None,
    host: str,
    port: int,
    workers: int,
    threads: int | None,
    max_batch: int,
    max_chars: int,
    batch_window_ms: float,
    max_queue: int,
    graceful_timeout: float,
    log_level: str,
    docs: bool,
) -> None:
    """Serve a model over HTTP (FastAPI + uvicorn); with no MODEL, the bundled one.

    \b
    MODEL (optional): an export folder, the name of an installed model
    package (tnews-deploy package), or default / tnews-compact (the
    bundled model). Without it: the folder or name in $TNEWS_DEPLOY_MODEL
    when set (handy in a container), else the bundled model.

    \b
    POST /v1/classify  {"texts": ["…"], "top_k": 1}
    GET  /healthz      liveness;  GET /readyz  readiness (model loaded and warmed up)
    GET  /v1/model     labels, max_length, limits, manifest (source, parity, sha256)
    GET  /metrics      Prometheus metrics;  GET /openapi.json  the API document
    GET  /docs         interactive API page, with --docs only

    SIGTERM stops it gracefully (in-flight requests finish, exit 0); one
    access-log line per request. Operations guide: docs/operations.md.

    \b
    Examples:
      tnews-deploy serve --port 8000                          # the bundled model
      tnews-deploy serve exports/int8 --port 8000             # or an installed model package's name
      curl -s localhost:8000/v1/classify -d '{"texts": ["北京大学举行毕业典礼"]}'
    """
    try:
        from .service import serve as run_service
    except ImportError as exc:
        raise UserError(f'{exc}. The service needs the serve extra: pip install "tnews-deploy[serve]"') from exc
    from .predictor import Predictor, default_threads

    if workers < 1:
        raise UserError(f"--workers must be >= 1 (got {workers}).")
    threads = threads or max(1, default_threads() // workers)
    config = ServiceConfig(
        model_dir=model_dir,
        max_batch=max_batch,
        max_chars=max_chars,
        threads=threads,
        batch_window_ms=batch_window_ms,
        max_queue=max_queue,
        graceful_timeout_s=graceful_timeout,
        docs=docs,
    )
    if workers > 1:
        Predictor(model_dir, threads=1)  # fail here, with one clear line, before workers start
    shown = str(model_dir)
    if model_dir is None:
        from .models import MODEL_ENV, locate_model

        default = locate_model()  # no default model: its one error line, before anything starts
        shown = f"the default model ({default.folder}{', from ' + MODEL_ENV if default.from_env else ''})"
    # Said once the model has loaded: a folder that cannot be served gives only its one error line.
    announce = functools.partial(
        click.echo,
        f"serving {shown} on http://{host}:{port} ({workers} worker(s), {threads} thread(s) each)",
        err=True,
    )
    run_service(config, host=host, port=port, workers=workers, log_level=log_level, on_loaded=announce)


# --------------------------------------------------------------------------- trim-vocab


@main.command("trim-vocab")
@click.argument("source", type=click.Path(path_type=Path))
@click.option(
    "--output",
    type=click.Path(path_type=Path),
    required=True,
    help="Run-like folder to create: checkpoint/, run_config.json, metrics.json, trim.json.",
)
@click.option(
    "--corpus",
    help="Texts whose tokens are kept: a data folder or hub id (its train split), or a "
    f"{TEXTS.listed()} file or glob of texts (labels not read). Default: the training split of the "
    "run's data. Validation sentences are always left out.",
)
@click.option("--corpus-field", help="The text column/field of --corpus. Default: 'sentence', else 'text'.")
@data_options(
    default=False,
    help_data="Verification data (its validation split; see `train --help`); default: the data the run was trained on.",
)
@click.option(
    "--verify-size", type=int, help="Validation texts to verify on (a seeded, stratified draw); default: all of them."
)
@click.option(
    "--min-agreement",
    type=float,
    default=0.995,
    show_default=True,
    help="Refuse when the trimmed model predicts like the untrimmed one on fewer of these texts.",
)
@click.option("--max-length", type=int, help="Token cap for verification; default: the run's.")
@click.option("--batch-size", type=int, default=64, show_default=True, help="Verification batch size.")
@click.option("--force", is_flag=True, help="Replace --output if it exists.")
@click.option("--quiet", is_flag=True, help="No progress bars (there are none when stderr is not a terminal).")
@user_errors
def trim_vocab(
    source: Path,
    output: Path,
    corpus: str | None,
    corpus_field: str | None,
    data: DataSource | None,
    verify_size: int | None,
    min_agreement: float,
    max_length: int | None,
    batch_size: int,
    force: bool,
    quiet: bool,
) -> None:
    """Shrink a checkpoint's vocabulary to the tokens its data needs, verified.

    \b
    A multilingual tokenizer (e5 / XLM-R: 250,002 tokens) spends most of the
    model's parameters on embedding rows that Chinese news titles never use.
    SOURCE is a checkpoint, run or grid folder (as `export` takes). Kept, in
    their old order: the special tokens, every token the corpus uses, and the
    single-character pieces for CJK, ASCII letters, digits and punctuation,
    so that unseen text falls back to characters, not to the unknown token.
    Unigram (SentencePiece) and WordPiece tokenizers are supported.

    \b
    Before anything is written, the trimmed model is compared with the
    untrimmed one on validation texts that did not choose tokens: the share
    of texts tokenised into the same pieces, prediction agreement, and max
    |Δlogit| where the pieces are unchanged (0 up to float noise). Below
    --min-agreement nothing is written (exit 2). OUTPUT is a run-like folder
    that `export` and `benchmark` take as they take a training run, verified
    on the run's evaluation set; trim.json records what was kept and the
    verification.

    \b
    Examples:
      tnews-deploy trim-vocab runs/e5-fe-5000 --output runs/e5-fe-5000-trimmed
      tnews-deploy export runs/e5-fe-5000-trimmed --quantize int8 --output exports/int8-trimmed
      tnews-deploy trim-vocab runs/grid --corpus titles.txt --verify-size 2000 --output runs/trimmed
      tnews-deploy trim-vocab runs/tickets --corpus 'archive/*.csv' \\
          --corpus-field body --output runs/tickets-trimmed
    """
    import logging

    from .compress import TrimConfig
    from .compress import trim_vocab as run_trim

    logger = logging.getLogger("tnews_deploy")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    config = TrimConfig(
        corpus=corpus,
        corpus_field=corpus_field,
        data=data,
        verify_size=verify_size,
        min_agreement=min_agreement,
        max_length=max_length,
        batch_size=batch_size,
        force=force,
        progress=not _no_bars(quiet),
    )
    result = run_trim(source, output, config)
    r, report = result.record, result.report
    vocab, params, size = r["tokenizer"], r["parameters"], r["checkpoint_bytes"]
    click.echo(
        f"{output}: vocabulary {vocab['vocab_before']:,} -> {vocab['vocab_after']:,}, "
        f"parameters {params['before'] / 1e6:.1f}M -> {params['after'] / 1e6:.1f}M, "
        f"checkpoint {size['before'] / 1e6:.0f} -> {size['after'] / 1e6:.0f} MB; "
        f"on {report.texts:,} validation texts: pieces unchanged {report.pieces_unchanged:.2%}, "
        f"agreement {report.agreement:.2%}, max |Δlogit| (unchanged pieces) "
        f"{report.max_abs_logit_diff_unchanged:.1e}"
    )


# --------------------------------------------------------------------------- distill


def _distill_defaults():
    from .compress.distill import DistillConfig  # stdlib-only at import: the CLI stays fast

    return DistillConfig(teacher="TEACHER", layers=1)


_DISTILL = _distill_defaults()


def _layer_indices(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    try:
        return tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated layer numbers like 0,4,8,11, got {value!r}") from None


@main.command()
@click.argument("teacher", type=click.Path(path_type=Path))
@click.option("--layers", type=int, required=True, help="Encoder layers of the student (N).")
@click.option(
    "--output",
    type=click.Path(path_type=Path),
    required=True,
    help="Run folder: checkpoint/, metrics.json, run_config.json, cached teacher logits.",
)
@click.option(
    "--layer-indices",
    callback=_layer_indices,
    help="Teacher layers the student copies, e.g. 0,4,8,11; default: N evenly spaced (0,2,4,7,9,11 for 6 of 12).",
)
@click.option(
    "--unlabeled",
    help="Transfer texts (labels never read): a data folder or hub id (its train split), "
    f"or a {TEXTS.listed()} file or glob of texts; default: the teacher's "
    "training split. Evaluation and selection sentences are always left out.",
)
@click.option("--unlabeled-field", help="The text column/field of --unlabeled. Default: 'sentence', else 'text'.")
@click.option(
    "--temperature",
    type=float,
    default=_DISTILL.temperature,
    show_default=True,
    help="Softmax temperature T of the KL term (scaled by T²).",
)
@click.option(
    "--alpha",
    type=float,
    default=_DISTILL.alpha,
    show_default=True,
    help="Weight of the cross-entropy on the teacher's labeled subset.",
)
@click.option(
    "--epochs",
    type=float,
    default=_DISTILL.epochs,
    show_default=True,
    help="Passes over the transfer set (raised to reach --min-steps).",
)
@click.option(
    "--min-steps", type=int, default=_DISTILL.min_steps, show_default=True, help="Optimiser-step floor; 0 turns it off."
)
@click.option("--lr", type=float, default=_DISTILL.lr, show_default=True, help="Peak AdamW learning rate.")
@click.option("--batch-size", type=int, default=_DISTILL.batch_size, show_default=True)
@click.option("--max-length", type=int, help="Token cap; default: the teacher run's.")
@click.option(
    "--evaluations",
    type=int,
    default=_DISTILL.evaluations,
    show_default=True,
    help="Selection-slice evaluations over the run.",
)
@click.option(
    "--patience",
    "early_stopping_patience",
    type=int,
    default=_DISTILL.early_stopping_patience,
    show_default=True,
    help="Early stopping after this many evaluations without gain; 0 = off.",
)
@click.option("--save-every", type=int, help="Steps between resumable checkpoints; default: every evaluation.")
@click.option("--seed", type=int, help="Training seed; default: the teacher's (the splits are always the teacher's).")
@click.option(
    "--train-embeddings/--freeze-embeddings",
    default=_DISTILL.train_embeddings,
    show_default=True,
    help="Train the word embeddings too (default frozen: they are most of the model, and AdamW over "
    "them costs more than the 6 layers on a CPU).",
)
@click.option("--quiet", is_flag=True, help="No progress bars (there are none when stderr is not a terminal).")
@user_errors
def distill(teacher: Path, output: Path, quiet: bool, **kwargs: Any) -> None:
    """Distill TEACHER into a student with fewer encoder layers.

    \b
    TEACHER is a checkpoint's run folder, a grid folder (its best run) or a
    vocabulary-trimmed run. The student copies the teacher's embeddings, N of
    its layers, pooler and head, and learns T²·KL(teacher ‖ student) + α·CE:
    soft targets on the transfer texts (teacher logits computed once, cached),
    gold labels on the teacher's labeled subset only. Selection and early
    stopping on the teacher's selection slice; scored on its evaluation set.

    Rerun the same command to resume a killed run from its last checkpoint.
    The folder is a normal run folder: `tnews-deploy export OUTPUT` takes it.

    \b
    Examples:
      tnews-deploy distill runs/e5-fe-5000 --layers 6 --output runs/distill/e5-L6
      tnews-deploy distill runs/tickets-trimmed --layers 4 --unlabeled archive.parquet \\
          --unlabeled-field body --output runs/tickets-L4
    """
    import logging

    from .compress.distill import DistillConfig, distill_model

    package_logger = logging.getLogger("tnews_deploy")
    if not package_logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        package_logger.addHandler(handler)
        package_logger.setLevel(logging.INFO)
    config = DistillConfig(teacher=str(teacher), **kwargs)
    result = distill_model(config, output, quiet=_no_bars(quiet))
    m = result.metrics
    teacher_f1 = (m.get("teacher_metrics") or {}).get("macro_f1")
    click.echo(
        f"student ({m['layers']} layers {m['layer_indices']}, {m['total_parameters'] / 1e6:.1f}M parameters): "
        f"macro-F1 {m['macro_f1']:.4f}  micro-F1 {m['micro_f1']:.4f}"
        + (f"  (teacher {teacher_f1:.4f})" if teacher_f1 is not None else "")
        + f"; checkpoint: {result.checkpoint}"
    )


if __name__ == "__main__":
    main()

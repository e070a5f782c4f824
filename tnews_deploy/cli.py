"""The `tnews-deploy` command line: a thin click layer over the Python API.

Heavy libraries (torch, transformers, datasets) are imported inside the
commands that need them, so `tnews-deploy --help` and the runtime commands stay
fast and work on a runtime-only install.
"""

from __future__ import annotations

import functools
import json
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from .errors import UserError

DEFAULT_MODEL = "bert-base-chinese"
DEFAULT_DATA = "clue/tnews"
VARIANT_NAMES = ("full", "freeze-embeddings", "freeze-encoder")
PRESET_NAMES = ("default", "paper")


def user_errors(func: Callable) -> Callable:
    """Print a `UserError` as one line and exit 2, instead of a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except UserError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(2)
        except ImportError as exc:
            click.secho(
                f"error: {exc}. This command needs the training extra: "
                'pip install "tnews-deploy[train]"',
                fg="red",
                err=True,
            )
            sys.exit(2)

    return wrapper


def _int_list(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    try:
        sizes = tuple(int(v.replace("_", "")) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers like 500,1000,5000, got {value!r}") from None
    if not sizes or any(n <= 0 for n in sizes):
        raise click.BadParameter("sizes must be positive integers")
    return sizes


def _variant_list(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    variants = tuple(v.strip() for v in value.split(",") if v.strip())
    unknown = [v for v in variants if v not in VARIANT_NAMES]
    if unknown:
        raise click.BadParameter(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANT_NAMES)}")
    return variants


def hyperparameter_options(func: Callable) -> Callable:
    """Options shared by `train` and `grid`; None means "take the preset's value"."""
    options = [
        click.option("--model", default=DEFAULT_MODEL, show_default=True,
                     help="Hub id or local folder of a pretrained encoder (any HF encoder)."),
        click.option("--data", default=DEFAULT_DATA, show_default=True,
                     help="'clue/tnews' (hub), or a folder of HF-style JSONL or original CLUE files."),
        click.option("--preset", type=click.Choice(PRESET_NAMES), default="default", show_default=True,
                     help="'default': a recipe that works at every size (step floor, warmup, early "
                          "stopping). 'paper': the study's batch 8, lr 1e-5, 30 epochs, max_length 40."),
        click.option("--eval-size", type=int, default=2000, show_default=True,
                     help="Evaluation sentences drawn from validation."),
        click.option("--selection-size", type=int, default=1000, show_default=True,
                     help="Validation sentences for model selection, disjoint from the evaluation set."),
        click.option("--epochs", type=float, help="Minimum epochs (small sets get more, see --min-steps)."),
        click.option("--min-steps", type=int, help="Optimiser-step floor; 0 turns it off."),
        click.option("--lr", type=float, help="Peak learning rate of AdamW."),
        click.option("--batch-size", type=int, help="Training batch size."),
        click.option("--max-length", type=int, help="Token cap; see `tnews-deploy data-stats`."),
        click.option("--patience", "early_stopping_patience", type=int,
                     help="Early stopping after this many selection evaluations without gain; 0 = off."),
        click.option("--seed", type=int, default=42, show_default=True, help="Seed for subsets and training."),
        click.option("--stratify/--no-stratify", default=True, show_default=True,
                     help="Draw subsets class-proportionally."),
        click.option("--quiet", is_flag=True, help="No progress bars."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _overrides(kwargs: dict[str, Any]) -> dict[str, Any]:
    keys = ("eval_size", "selection_size", "epochs", "min_steps", "lr", "batch_size", "max_length",
            "early_stopping_patience", "seed", "stratify")
    return {k: kwargs[k] for k in keys}


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="tnews-deploy")
def main() -> None:
    """Fine-tune a Chinese BERT classifier on CLUE TNEWS and ship it as a verified ONNX model.

    \b
    Typical path:
      tnews-deploy data-stats --data clue/tnews --output runs/stats
      tnews-deploy grid --model bert-base-chinese --data clue/tnews --output runs/grid
      tnews-deploy train --variant full --train-size 5000 --output runs/full-5000

    Every command takes --help. Without hub access, pass local folders to --model and --data.
    """


@main.command("data-stats")
@click.option("--data", default=DEFAULT_DATA, show_default=True,
              help="'clue/tnews' (hub), or a folder of HF-style JSONL or original CLUE files.")
@click.option("--model", default=DEFAULT_MODEL, show_default=True,
              help="Tokenizer to count tokens with (hub id or local folder).")
@click.option("--split", default="train", show_default=True, help="Split whose lengths are measured.")
@click.option("--percentile", type=float, default=99.0, show_default=True,
              help="Token-length percentile that max_length must cover.")
@click.option("--output", type=click.Path(path_type=Path), default=Path("runs/data-stats"), show_default=True,
              help="Folder for lengths.png and stats.json.")
@user_errors
def data_stats(data: str, model: str, split: str, percentile: float, output: Path) -> None:
    """Sentence-length histograms, percentiles, a suggested max_length, class counts."""
    from transformers import AutoTokenizer

    from .data import length_stats, load_tnews, plot_length_histograms
    from .training.run import write_json_atomic

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
    payload = {"data": data, "tokenizer": model, "split": split, "percentile": percentile, **stats.to_json()}
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
    splits = list(stats.class_counts)
    click.echo(f"  {'class':<20}" + "".join(f"{s:>12}" for s in splits))
    for name in next(iter(stats.class_counts.values())):
        click.echo(f"  {name:<20}" + "".join(f"{stats.class_counts[s].get(name, 0):>12,}" for s in splits))
    click.echo(f"wrote {png} and {output / 'stats.json'}")


@main.command()
@hyperparameter_options
@click.option("--variant", type=click.Choice(VARIANT_NAMES), default="full", show_default=True,
              help="full: all layers train; freeze-embeddings: embedding layer frozen; "
                   "freeze-encoder: only pooler + classifier train.")
@click.option("--train-size", type=int, default=1000, show_default=True,
              help="Training sentences drawn (seeded) from the train split.")
@click.option("--output", type=click.Path(path_type=Path), required=True,
              help="Run folder: checkpoint/, metrics.json, run_config.json.")
@user_errors
def train(variant: str, train_size: int, output: Path, model: str, data: str, preset: str,
          quiet: bool, **kwargs: Any) -> None:
    """Fine-tune one run (one variant on one training-set size) and score it.

    The run folder is reused as is when it already holds a finished run.
    """
    from .training import resolve_config, train_run

    config = resolve_config(preset, variant, model=model, data=data, train_size=train_size,
                            **_overrides(kwargs))
    click.echo(
        f"training {variant} × {train_size:,} on {model}: lr {config.lr:g}, batch {config.batch_size}, "
        f"{config.effective_epochs():g} epochs ({config.total_steps():,} steps), max_length {config.max_length}"
    )
    result = train_run(config, output, quiet=quiet)
    m = result.metrics
    click.echo(
        f"macro-F1 {m['macro_f1']:.4f}  micro-F1 {m['micro_f1']:.4f}  accuracy {m['accuracy']:.4f}  "
        f"({m['train_seconds']:.0f} s); checkpoint: {result.checkpoint}"
    )


@main.command()
@hyperparameter_options
@click.option("--variants", callback=_variant_list, default=",".join(VARIANT_NAMES), show_default=True,
              help="Comma-separated variants.")
@click.option("--train-sizes", callback=_int_list, default="500,1000,5000", show_default=True,
              help="Comma-separated training-set sizes.")
@click.option("--output", type=click.Path(path_type=Path), required=True,
              help="Grid folder: one run folder each, results.json/.md/.png.")
@user_errors
def grid(variants: tuple[str, ...], train_sizes: tuple[int, ...], output: Path, model: str, data: str,
         preset: str, quiet: bool, **kwargs: Any) -> None:
    """Train variants × sizes (3 × 3 by default) and report macro/micro-F1.

    Finished runs are skipped, so rerunning a killed grid resumes it. Writes
    results.json, results.md (a table) and results.png (bars) into --output
    and names the best run by macro-F1.
    """
    from .training.grid import GridConfig, record_command, run_grid

    config = GridConfig(model=model, data=data, output=output, variants=variants, train_sizes=train_sizes,
                        preset=preset, overrides=_overrides(kwargs))
    record_command(output, "tnews-deploy " + " ".join(shlex.quote(a) for a in sys.argv[1:]))
    results = run_grid(config, quiet=quiet)
    click.echo((output / "results.md").read_text(encoding="utf-8"))
    best = results["best"]
    click.echo(f"best run: {best['variant']} × {best['train_size']:,} -> {output / best['checkpoint']}")

# --------------------------------------------------------------------------- export


@main.command()
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--output", type=click.Path(path_type=Path), required=True,
              help="Folder to create: model.onnx, tokenizer, config.json, manifest.json.")
@click.option("--optimize", type=click.Choice(["none", "O1", "O2", "O3"]), default="none", show_default=True,
              help="Optimum graph optimisation. O1/O2 are exact; O3 approximates GELU.")
@click.option("--quantize", type=click.Choice(["none", "int8"]), default="none", show_default=True,
              help="Dynamic int8 quantisation (Optimum's ORTQuantizer).")
@click.option("--quantize-for", type=click.Choice(["avx512_vnni", "avx512", "avx2", "arm64"]),
              help="Quantisation config; default: picked from this CPU's flags.")
@click.option("--per-channel/--per-tensor", default=True, show_default=True,
              help="Per-channel or per-tensor int8 weight scales.")
@click.option("--data", help="Verification data; default: the data the run was evaluated on.")
@click.option("--eval-size", type=int, help="Verification sentences; default: the run's evaluation set.")
@click.option("--max-length", type=int, help="Token cap baked into the export; default: the run's.")
@click.option("--min-agreement", type=float, default=0.999, show_default=True,
              help="Exact exports (fp32, O1, O2) must agree with PyTorch on this share of sentences.")
@click.option("--max-f1-drop", type=float, default=0.01, show_default=True,
              help="Approximate exports (O3, int8) may lose at most this much macro-F1.")
@click.option("--force", is_flag=True, help="Replace --output if it exists.")
@user_errors
def export(source: Path, output: Path, optimize: str, quantize: str, quantize_for: str | None,
           per_channel: bool, data: str | None, eval_size: int | None, max_length: int | None,
           min_agreement: float, max_f1_drop: float, force: bool) -> None:
    """Export a checkpoint to ONNX with Optimum, verified against PyTorch.

    \b
    SOURCE is a checkpoint folder, a training-run folder, or a grid folder
    (then the grid's best run by macro-F1 is exported).

    The evaluation set is run through PyTorch and through the new ONNX model.
    The export is refused (exit 2, nothing written) when an exact export
    agrees with PyTorch on fewer than --min-agreement of the sentences, or
    when an approximate one loses more than --max-f1-drop macro-F1. The
    folder appears only when accepted (built aside, then renamed).

    \b
    Examples:
      tnews-deploy export runs/grid --output exports/fp32
      tnews-deploy export runs/grid --optimize O2 --output exports/o2
      tnews-deploy export runs/grid --quantize int8 --output exports/int8
    """
    from .export import ExportConfig, GatePolicy, export_model

    config = ExportConfig(
        optimize=optimize, quantize=quantize, quantize_for=quantize_for, per_channel=per_channel, data=data,
        eval_size=eval_size, max_length=max_length,
        policy=GatePolicy(min_agreement=min_agreement, max_f1_drop=max_f1_drop), force=force,
    )
    result = export_model(source, output, config, log=lambda m: click.echo(m, err=True))
    m = result.manifest
    click.echo(f"{output}: {m['model']['bytes'] / 1e6:.1f} MB, sha256 {m['model']['sha256'][:12]}…, "
               f"agreement {result.report.agreement:.2%}, ONNX macro-F1 {result.report.onnx['macro_f1']:.4f} "
               f"(PyTorch {result.report.pytorch['macro_f1']:.4f})")


# --------------------------------------------------------------------------- predict


def _prediction_fields(result: Any) -> dict[str, Any]:
    if isinstance(result, list):
        return {"predictions": [r.to_dict() for r in result]}
    return result.to_dict()


@main.command()
@click.argument("model_dir", type=click.Path(path_type=Path))
@click.argument("texts", nargs=-1)
@click.option("--input", "input_path",
              help="File of texts: .txt (one a line) or .jsonl ('sentence'/'text'); - for stdin.")
@click.option("--input-format", type=click.Choice(["auto", "txt", "jsonl"]), default="auto", show_default=True,
              help="auto: by extension; stdin is sniffed.")
@click.option("--output", "output_path", type=click.Path(path_type=Path),
              help="Write JSONL here instead of stdout.")
@click.option("--top-k", type=int, default=1, show_default=True, help="Best classes per text.")
@click.option("--format", "out_format", type=click.Choice(["auto", "table", "jsonl"]), default="auto",
              show_default=True, help="auto: a table on a terminal, JSONL in a pipe or file.")
@click.option("--threads", type=int, help="onnxruntime intra-op threads (default: all cores).")
@click.option("--batch-size", type=int, default=32, show_default=True)
@user_errors
def predict(model_dir: Path, texts: tuple[str, ...], input_path: str | None, input_format: str,
            output_path: Path | None, top_k: int, out_format: str, threads: int | None, batch_size: int) -> None:
    """Classify texts with an exported model (runtime only: no torch).

    \b
    Texts come as arguments or from --input. A bad line in a file (empty,
    invalid JSON, bad UTF-8, no text field) gets an "error" record with its
    line number; the good lines are still predicted, and the command exits 1
    at the end, saying how many failed.

    \b
    Examples:
      tnews-deploy predict exports/int8 "北京大学举行毕业典礼" "国足备战世界杯预选赛"
      tnews-deploy predict exports/int8 --input titles.txt --output predictions.jsonl
      cat titles.jsonl | tnews-deploy predict exports/int8 --input - --top-k 3
    """
    from .inputs import read_records, records_from_texts
    from .predictor import Predictor

    if texts and input_path:
        raise UserError("give texts as arguments or --input, not both.")
    if not texts and not input_path:
        raise UserError("nothing to classify: pass texts as arguments or --input FILE (- for stdin).")
    predictor = Predictor(model_dir, threads=threads, batch_size=batch_size)
    if not 1 <= top_k <= len(predictor.labels):
        raise UserError(f"--top-k must be in 1..{len(predictor.labels)}.")

    if texts:
        records = records_from_texts(texts)
    elif input_path == "-":
        records = list(read_records(sys.stdin.buffer, "-", input_format))
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

# --------------------------------------------------------------------------- benchmark


@main.command()
@click.option("--pytorch", "pytorch_path", type=click.Path(path_type=Path),
              help="Checkpoint, run or grid folder for the PyTorch baseline; default: the ONNX manifest's source.")
@click.option("--onnx", "onnx_dirs", type=click.Path(path_type=Path), multiple=True, required=True,
              help="An exported folder; repeat for each variant (fp32, O2, int8 ...).")
@click.option("--data", help="Evaluation data; default: the data the exports were verified on.")
@click.option("--output", type=click.Path(path_type=Path), required=True,
              help="Folder for results.json, results.md, latency.png, throughput.png.")
@click.option("--eval-size", type=int, default=2000, show_default=True, help="Evaluation sentences.")
@click.option("--threads", type=int, help="Threads for every backend (default: all usable cores).")
@click.option("--latency-sentences", type=int, default=300, show_default=True, help="Timed batch-1 calls per backend.")
@click.option("--warmup", type=int, default=20, show_default=True, help="Untimed batch-1 calls first.")
@click.option("--rounds", type=int, default=3, show_default=True,
              help="Alternating rounds (A B A B ...); medians and min–max are over rounds.")
@click.option("--batch-sizes", callback=_int_list, default="8,32", show_default=True,
              help="Throughput batch sizes.")
@click.option("--pytorch-sorted", is_flag=True,
              help="Also run PyTorch with length bucketing, to separate bucketing from runtime gains.")
@click.option("--cold-start/--no-cold-start", default=True, show_default=True,
              help="Measure import + load + first prediction and peak RSS in a fresh process.")
@click.option("--quick", is_flag=True, help="A smoke run in seconds: 64 sentences, 1 round, batch 8.")
@user_errors
def benchmark(pytorch_path: Path | None, onnx_dirs: tuple[Path, ...], data: str | None, output: Path,
              eval_size: int, threads: int | None, latency_sentences: int, warmup: int, rounds: int,
              batch_sizes: tuple[int, ...], pytorch_sorted: bool, cold_start: bool, quick: bool) -> None:
    """PyTorch eager vs each ONNX export: F1 parity, latency, throughput, side by side.

    \b
    All backends run on the same sentences with the same thread count, in
    alternation (A B A B ...) so that machine drift cancels out.

    \b
    Example:
      tnews-deploy benchmark --pytorch runs/grid --onnx exports/fp32 --onnx exports/o2 \\
          --onnx exports/int8 --data clue/tnews --output bench/
    """
    from .benchmark import BenchmarkConfig, run_benchmark

    settings = dict(pytorch=pytorch_path, onnx=tuple(onnx_dirs), output=output, data=data, threads=threads,
                    pytorch_sorted=pytorch_sorted, cold_start=cold_start)
    if quick:
        config = BenchmarkConfig.quick_config(**settings)
    else:
        if latency_sentences < 1 or rounds < 1 or eval_size < 1:
            raise UserError("--latency-sentences, --rounds and --eval-size must be positive.")
        config = BenchmarkConfig(eval_size=eval_size, latency_sentences=latency_sentences, warmup=warmup,
                                 rounds=rounds, batch_sizes=batch_sizes, **settings)
    report = run_benchmark(config, progress=lambda m: click.echo(m, err=True))
    click.echo((output / "results.md").read_text(encoding="utf-8"))
    click.echo(f"wrote {output / 'results.json'}, latency.png, throughput.png "
               f"({len(report['backends'])} backends)")

# --------------------------------------------------------------------------- serve


@main.command()
@click.argument("model_dir", type=click.Path(path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to bind; the default is reachable from this machine only.")
@click.option("--port", type=int, default=8000, show_default=True)
@click.option("--workers", type=int, default=1, show_default=True,
              help="Worker processes, each with its own model copy.")
@click.option("--threads", type=int, help="onnxruntime threads per worker (default: usable cores / workers).")
@click.option("--max-batch", type=int, default=256, show_default=True, help="Most texts in one request.")
@click.option("--max-chars", type=int, default=2000, show_default=True, help="Longest text accepted, in characters.")
@click.option("--batch-window-ms", type=float, default=0.0, show_default=True,
              help="Micro-batching: concurrent requests arriving within this many ms share one model call "
                   "(0 = off). See docs/load-test.md for what it buys.")
@click.option("--log-level", type=click.Choice(["critical", "error", "warning", "info", "debug"]), default="info",
              show_default=True)
@user_errors
def serve(model_dir: Path, host: str, port: int, workers: int, threads: int | None, max_batch: int,
          max_chars: int, batch_window_ms: float, log_level: str) -> None:
    """Serve an exported model over HTTP (FastAPI + uvicorn).

    \b
    POST /v1/classify  {"texts": ["…"], "top_k": 1}
    GET  /healthz
    GET  /v1/model     labels, max_length, limits, manifest (source, parity, sha256)

    \b
    Example:
      tnews-deploy serve exports/int8 --port 8000
      curl -s localhost:8000/v1/classify -d '{"texts": ["北京大学举行毕业典礼"]}'
    """
    try:
        from .service import ServiceConfig
        from .service import serve as run_service
    except ImportError as exc:
        raise UserError(f'{exc}. The service needs the serve extra: pip install "tnews-deploy[serve]"') from exc
    from .predictor import Predictor, default_threads

    if workers < 1 or max_batch < 1 or max_chars < 1:
        raise UserError("--workers, --max-batch and --max-chars must be positive.")
    threads = threads or max(1, default_threads() // workers)
    if batch_window_ms < 0:
        raise UserError("--batch-window-ms must be >= 0.")
    config = ServiceConfig(model_dir=model_dir, max_batch=max_batch, max_chars=max_chars, threads=threads,
                           batch_window_ms=batch_window_ms)
    if workers > 1:
        Predictor(model_dir, threads=1)  # fail here, with one clear line, before workers start
    click.echo(f"serving {model_dir} on http://{host}:{port} ({workers} worker(s), {threads} thread(s) each)",
               err=True)
    run_service(config, host=host, port=port, workers=workers, log_level=log_level)

# --------------------------------------------------------------------------- trim-vocab


@main.command("trim-vocab")
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--output", type=click.Path(path_type=Path), required=True,
              help="Run-like folder to create: checkpoint/, run_config.json, metrics.json, trim.json.")
@click.option("--corpus",
              help="Texts whose tokens are kept: a data source (its train split) or a .txt/.jsonl file of texts. "
                   "Default: the training split of the run's data. Validation sentences are always left out.")
@click.option("--data", help="Verification data (its validation split); default: the data the run was trained on.")
@click.option("--verify-size", type=int,
              help="Validation texts to verify on (a seeded, stratified draw); default: all of them.")
@click.option("--min-agreement", type=float, default=0.995, show_default=True,
              help="Refuse when the trimmed model predicts like the untrimmed one on fewer of these texts.")
@click.option("--max-length", type=int, help="Token cap for verification; default: the run's.")
@click.option("--batch-size", type=int, default=64, show_default=True, help="Verification batch size.")
@click.option("--force", is_flag=True, help="Replace --output if it exists.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@user_errors
def trim_vocab(source: Path, output: Path, corpus: str | None, data: str | None, verify_size: int | None,
               min_agreement: float, max_length: int | None, batch_size: int, force: bool, quiet: bool) -> None:
    """Shrink a checkpoint's vocabulary to the tokens TNEWS needs, verified.

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
    config = TrimConfig(corpus=corpus, data=data, verify_size=verify_size, min_agreement=min_agreement,
                        max_length=max_length, batch_size=batch_size, force=force, progress=not quiet)
    result = run_trim(source, output, config)
    r, report = result.record, result.report
    vocab, params, size = r["tokenizer"], r["parameters"], r["checkpoint_bytes"]
    click.echo(f"{output}: vocabulary {vocab['vocab_before']:,} -> {vocab['vocab_after']:,}, "
               f"parameters {params['before'] / 1e6:.1f}M -> {params['after'] / 1e6:.1f}M, "
               f"checkpoint {size['before'] / 1e6:.0f} -> {size['after'] / 1e6:.0f} MB; "
               f"on {report.texts:,} validation texts: pieces unchanged {report.pieces_unchanged:.2%}, "
               f"agreement {report.agreement:.2%}, max |Δlogit| (unchanged pieces) "
               f"{report.max_abs_logit_diff_unchanged:.1e}")


if __name__ == "__main__":
    main()

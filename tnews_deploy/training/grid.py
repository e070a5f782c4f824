"""The training grid: variants x training-set sizes, resumable, with a report.

`run_grid` loads the data once, draws every subset once (so all runs share the
same evaluation set and selection slice), trains each run that is not finished
yet, and rewrites `results.json`, `results.md` and `results.png` after every
run, so a killed grid leaves a correct partial report and resumes where it
stopped.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from ..data import SplitConfig, load_tnews, make_splits
from ..datasource import DataSource, describe_data
from ..machine import library_versions
from ..runfiles import GRID_RESULTS_JSON, GRID_RESULTS_MD, GRID_RESULTS_PNG, is_finished, write_json_atomic
from .config import GridConfig
from .run import RunResult, check_model_source, load_finished, train_run

logger = logging.getLogger(__name__)


def run_grid(config: GridConfig, *, quiet: bool = False) -> dict[str, Any]:
    """Train every unfinished run of the grid, rewriting the report after each; finished runs are skipped.

    Args:
        config: the grid: model, data, output folder, variants × training-set sizes, preset and overrides
            (validated when the `GridConfig` is made).
        quiet: no progress bars; each run's start and result are still logged (INFO).

    Returns:
        The content of the grid's `results.json`: one row per finished run and the best run by macro-F1.
    """
    output = Path(config.output)
    planned = [(v, n, config.run_config(v, n)) for v in config.variants for n in config.train_sizes]
    output.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    todo = [(v, n, c) for v, n, c in planned if not is_finished(output / config.run_name(v, n))]
    splits = None
    if todo:
        check_model_source(config.model)
        first = todo[0][2]
        splits = make_splits(
            load_tnews(config.data),
            SplitConfig(
                train_sizes=tuple(sorted(set(config.train_sizes))),
                eval_size=first.eval_size,
                selection_size=first.selection_size,
                seed=first.seed,
                stratify=first.stratify,
            ),
        )
    for i, (variant, size, run_config) in enumerate(planned, 1):
        run_dir = output / config.run_name(variant, size)
        finished = is_finished(run_dir)
        state = "done, skipped" if finished else "training"
        logger.info("[%d/%d] %s × %s (%s) -> %s", i, len(planned), variant, size, state, run_dir)
        result = train_run(run_config, run_dir, splits, quiet=quiet)
        logger.info(
            "[%d/%d] %s × %s: macro-F1 %.4f, micro-F1 %.4f, %.0f s", i, len(planned), variant, size,
            result.metrics["macro_f1"], result.metrics["micro_f1"], result.metrics["train_seconds"],
        )
        write_report(config, output, time.perf_counter() - started)
    return json.loads((output / GRID_RESULTS_JSON).read_text(encoding="utf-8"))


def collect_runs(config: GridConfig, output: Path) -> list[RunResult]:
    runs = []
    for variant in config.variants:
        for size in config.train_sizes:
            run_dir = output / config.run_name(variant, size)
            if is_finished(run_dir):
                runs.append(load_finished(run_dir))
    return runs


def run_row(result: RunResult, output: Path) -> dict[str, Any]:
    m = result.metrics
    return {
        "variant": result.config.variant,
        "train_size": result.config.train_size,
        "macro_f1": round(m["macro_f1"], 4),
        "micro_f1": round(m["micro_f1"], 4),
        "accuracy": round(m["accuracy"], 4),
        "train_seconds": m["train_seconds"],
        "steps": m.get("steps"),
        "best_step": m.get("best_step"),
        "lr": result.config.lr,
        "epochs": result.config.effective_epochs(),
        "checkpoint": str(result.checkpoint.relative_to(output)),
    }


def write_report(config: GridConfig, output: Path, wall_seconds: float) -> dict[str, Any]:
    """results.json, results.md and results.png from the finished runs in `output`."""
    runs = collect_runs(config, output)
    rows = [run_row(r, output) for r in runs]
    best = max(rows, key=lambda r: r["macro_f1"]) if rows else None
    first = runs[0].config if runs else config.run_config(config.variants[0], config.train_sizes[0])
    previous = {}
    if (output / GRID_RESULTS_JSON).is_file():
        previous = json.loads((output / GRID_RESULTS_JSON).read_text(encoding="utf-8"))
    results = {
        "model": config.model,
        "data": config.data.to_json(),
        "preset": config.preset,
        "seed": first.seed,
        "eval_size": first.eval_size,
        "selection_size": first.selection_size,
        "stratify": first.stratify,
        "variants": list(config.variants),
        "train_sizes": list(config.train_sizes),
        "planned_runs": len(config.variants) * len(config.train_sizes),
        "finished_runs": len(rows),
        "runs": rows,
        "best": best,
        "train_seconds_total": round(sum(r["train_seconds"] for r in rows), 1),
        # Wall time accumulates across resumed invocations.
        "wall_seconds_this_invocation": round(wall_seconds, 1),
        "devices": sorted({r.metrics.get("device", "?") for r in runs}),
        "versions": library_versions(("torch", "transformers")),
        "overrides": {k: v for k, v in config.overrides.items() if v is not None},
    }
    if previous.get("command"):
        results["command"] = previous["command"]
    write_json_atomic(output / GRID_RESULTS_JSON, results)
    (output / GRID_RESULTS_MD).write_text(render_markdown(results), encoding="utf-8")
    if rows:
        plot_results(results, output / GRID_RESULTS_PNG)
    return results


def render_markdown(results: dict[str, Any]) -> str:
    sizes = results["train_sizes"]
    by_key = {(r["variant"], r["train_size"]): r for r in results["runs"]}
    lines = [
        f"# Fine-tuning grid: `{results['model']}`",
        "",
        f"Data `{describe_data(results['data'])}`, preset `{results['preset']}`, seed {results['seed']}; "
        f"evaluation set {results['eval_size']:,} validation sentences, model selection on a "
        f"disjoint slice of {results['selection_size']:,}. "
        f"{results['finished_runs']}/{results['planned_runs']} runs finished.",
        "",
        "Macro-F1 / micro-F1 on the evaluation set:",
        "",
        "| variant | " + " | ".join(f"{n:,}" for n in sizes) + " |",
        "|---|" + "---|" * len(sizes),
    ]
    for variant in results["variants"]:
        cells = []
        for n in sizes:
            r = by_key.get((variant, n))
            cells.append(f"{r['macro_f1']:.3f} / {r['micro_f1']:.3f}" if r else "—")
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| run | macro-F1 | micro-F1 | accuracy | lr | epochs | steps (best) | train s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results["runs"]:
        lines.append(
            f"| {r['variant']} × {r['train_size']:,} | {r['macro_f1']:.4f} | {r['micro_f1']:.4f} | "
            f"{r['accuracy']:.4f} | {r['lr']:g} | {r['epochs']:g} | {r['steps']} ({r['best_step']}) | "
            f"{r['train_seconds']:.0f} |"
        )
    if results["best"]:
        b = results["best"]
        lines += ["", f"**Best run** by macro-F1: `{b['variant']}` × {b['train_size']:,} "
                  f"(macro-F1 {b['macro_f1']:.4f}), checkpoint `{b['checkpoint']}`."]
    lines += [
        "",
        f"Training time {results['train_seconds_total']:.0f} s in all, on {', '.join(results['devices'])}; "
        f"versions: " + ", ".join(f"{k} {v}" for k, v in results["versions"].items()) + ".",
    ]
    if results.get("command"):
        lines += ["", "Command:", "", "```", results["command"], "```"]
    return "\n".join(lines) + "\n"


def plot_results(results: dict[str, Any], path: Path) -> Path:
    """Grouped bars of macro-F1 (solid) and micro-F1 (hatched) per variant and size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.patches import Patch

    sizes, variants = results["train_sizes"], results["variants"]
    by_key = {(r["variant"], r["train_size"]): r for r in results["runs"]}
    width = 0.8 / len(variants)  # one slot per variant: a macro-F1 bar and a micro-F1 bar side by side
    x = np.arange(len(sizes))
    fig, ax = plt.subplots(figsize=(9, 4.5))
    colors = ["#4c72b0", "#55a868", "#c44e52", "#8172b2", "#ccb974"]
    for i, variant in enumerate(variants):
        slot = x + i * width - 0.4
        color = colors[i % len(colors)]
        for j, (metric, hatch) in enumerate((("macro_f1", None), ("micro_f1", "//"))):
            values = [by_key[(variant, n)][metric] if (variant, n) in by_key else 0 for n in sizes]
            bars = ax.bar(slot + (j + 0.5) * width / 2, values, width / 2, color=color, hatch=hatch,
                          edgecolor="white" if hatch else None, label=variant if j == 0 else None)
            ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xticks(x, [f"{n:,} sentences" for n in sizes])
    ax.set_ylabel("F1 on the evaluation set")
    ax.set_ylim(0, 1)
    data_name = Path(DataSource.coerce(results.get("data") or DataSource()).path).name
    ax.set_title(f"{data_name}: {Path(results['model']).name}, preset {results['preset']}")
    handles, labels = ax.get_legend_handles_labels()
    handles += [Patch(facecolor="#999999", label="macro-F1"),
                Patch(facecolor="#999999", hatch="//", edgecolor="white", label="micro-F1")]
    ax.legend(handles=handles, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def record_command(output: Path, command: str) -> None:
    """Keep the command line that produced a grid in its results.json."""
    path = Path(output) / GRID_RESULTS_JSON
    data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    data["command"] = command
    Path(output).mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, data)

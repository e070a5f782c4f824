"""The training grid: variants × training-set sizes × seeds, resumable, with a report.

`run_grid` loads the data once, draws the evaluation set and selection slice once
(every run of every seed is scored on the same sentences), draws each seed's
training subsets, trains each run that is not finished yet, and rewrites
`results.json`, `results.md` and `results.png` after every run, so a killed grid
leaves a correct partial report and resumes where it stopped.

The report keeps every run (with its seed) and one row per cell (variant × size):
mean ± std over seeds and 95 % bootstrap intervals over the evaluation set
(`cells.Cells`). It names the model and data by name and content hash, never by the
machine's paths.

Several `grid` processes may work on one folder: each run is claimed by the worker
that trains it (`claims.RunClaim`); the others skip it, and take it over if its worker
stops before finishing it.
"""

from __future__ import annotations

import json
import logging
import shlex
import time
from pathlib import Path
from typing import Any

from ..data import SplitConfig, make_splits
from ..datasource import DataSource
from ..machine import library_versions
from ..runfiles import (
    GRID_RESULTS_JSON,
    GRID_RESULTS_MD,
    GRID_RESULTS_PNG,
    is_finished,
    read_json,
    replaced_whole,
    source_identity,
    write_json_atomic,
    write_text_atomic,
)
from . import distributed
from .cells import Cells, Run, load_run
from .claims import RunClaim
from .config import GridConfig
from .run import load_sources, train_run

logger = logging.getLogger(__name__)

# Options whose values are paths of this machine: the recorded command names them by placeholder.
PATH_OPTIONS = {"--model": "$MODEL", "--data": "$DATA"}


def run_grid(config: GridConfig, *, quiet: bool = False, command: str | None = None) -> dict[str, Any]:
    """Train every unfinished run of the grid, rewriting the report after each; finished runs are skipped.

    The model source and the data are checked before the grid folder is made: a grid that cannot start leaves
    nothing behind.

    Args:
        config: the grid: model, data, output folder, variants × training-set sizes × seeds, preset and
            overrides (validated when the `GridConfig` is made).
        quiet: no progress bars; each run's start and result are still logged (INFO).
        command: the command line to keep in results.json (`record_command`), recorded once the checks pass.

    Returns:
        The content of the grid's `results.json`: every finished run, one row per cell, the best run.
    """
    output = Path(config.output)
    planned = config.planned()
    started = time.perf_counter()
    todo = [(v, n, s) for v, n, s in planned if not is_finished(output / config.run_name(v, n, s))]
    dataset, splits = None, {}
    if todo:  # both sources checked (one error for both) before the grid folder is made
        dataset = load_sources(config.model, config.data)
    output.mkdir(parents=True, exist_ok=True)
    if command is not None and distributed.is_main():  # under torchrun / accelerate launch, rank 0 writes
        record_command(output, command)
    identity = {"model": source_identity(config.model), "data": data_identity(config.data)}

    def run(i: int, variant: str, size: int | str, seed: int) -> bool:
        """Train (or load) one run and rewrite the report; False when another worker holds the run."""
        run_dir = output / config.run_name(variant, size, seed)
        run_config = config.run_config(variant, size, seed)
        name = f"{variant} × {size}" + (f", seed {seed}" if len(config.run_seeds()) > 1 else "")
        finished = is_finished(run_dir)
        with RunClaim(output, run_dir.name) as claim:
            if not finished and not distributed.agree(claim.acquire() if distributed.is_main() else False):
                logger.info("[%d/%d] %s (trained by %s, skipped)", i, len(planned), name, claim.holder())
                return False
            if not finished and seed not in splits:  # each seed's subsets; the same evaluation set for all
                splits[seed] = make_splits(
                    dataset,
                    SplitConfig(
                        train_sizes=tuple(dict.fromkeys(config.train_sizes)),
                        eval_size=run_config.eval_size,
                        selection_size=run_config.selection_size,
                        seed=run_config.seed,
                        stratify=run_config.stratify,
                        train_seed=run_config.train_seed,
                    ),
                )
            state = "done, skipped" if finished else "training"
            logger.info("[%d/%d] %s (%s) -> %s", i, len(planned), name, state, run_dir)
            result = train_run(run_config, run_dir, splits.get(seed), quiet=quiet)
        logger.info(
            "[%d/%d] %s: macro-F1 %.4f, micro-F1 %.4f, %.0f s",
            i,
            len(planned),
            name,
            result.metrics["macro_f1"],
            result.metrics["micro_f1"],
            result.metrics["train_seconds"],
        )
        if distributed.is_main():  # under torchrun, rank 0 writes the grid's files; the others wait for them
            write_report(config, output, time.perf_counter() - started, identity)
        distributed.wait_for_everyone()
        return True

    skipped = []
    for i, item in enumerate(planned, 1):
        if not run(i, *item):
            skipped.append((i, item))
    held = []
    for i, item in skipped:  # a run whose worker stopped before finishing it is free again: taken over (resumes)
        if not is_finished(output / config.run_name(*item)) and not run(i, *item):
            held.append((i, item))
    if distributed.is_main():
        if held:
            logger.info(
                "%d run(s) still being trained by other workers (%s); the last worker to finish "
                "rewrites the report with them",
                len(held),
                ", ".join(config.run_name(*x) for _, x in held),
            )
        if not (output / GRID_RESULTS_JSON).is_file():
            write_report(config, output, time.perf_counter() - started, identity)
    distributed.wait_for_everyone()
    return json.loads((output / GRID_RESULTS_JSON).read_text(encoding="utf-8"))


def collect_runs(config: GridConfig, output: Path) -> list[Run]:
    """The grid's finished runs, in plan order."""
    folders = [output / config.run_name(v, n, s) for v, n, s in config.planned()]
    return [load_run(f) for f in folders if is_finished(f)]


def run_row(run: Run, output: Path) -> dict[str, Any]:
    m, c = run.metrics, run.config
    return {
        "run": run.folder.name,
        "variant": c.get("variant", m.get("variant")),
        "train_size": c.get("train_size", m.get("train_size")),
        "seed": run.seed,
        "macro_f1": round(m["macro_f1"], 4),
        "micro_f1": round(m["micro_f1"], 4),
        "accuracy": round(m["accuracy"], 4),
        "train_seconds": m["train_seconds"],
        "steps": m.get("steps"),
        "best_step": m.get("best_step"),
        "lr": c.get("lr"),
        "epochs": c.get("effective_epochs"),
        "class_weight": c.get("class_weight", "none"),
        "trainable_parameters": m.get("trainable_parameters"),
        "checkpoint": str((run.folder / "checkpoint").relative_to(output)),
    }


def write_report(
    config: GridConfig, output: Path, wall_seconds: float, identity: dict[str, Any] | None = None
) -> dict[str, Any]:
    """results.json, results.md and results.png from the finished runs in `output`.

    Args:
        config: the grid.
        output: the grid folder.
        wall_seconds: this invocation's wall time so far.
        identity: `{"model": ..., "data": ...}` names and hashes (`source_identity`); None: as recorded before.
    """
    runs = collect_runs(config, output)
    rows = [run_row(r, output) for r in runs]
    previous = read_json(output / GRID_RESULTS_JSON) or {}
    identity = identity or {k: previous.get(k) for k in ("model", "data")}
    cells = Cells(runs)
    summaries = [cells.summary(c) for c in cells]
    best_cell = max(summaries, key=lambda c: c["macro_f1_mean"]) if summaries else None
    best = None
    if best_cell:  # the best cell's best seed: the checkpoint `export GRID` takes
        best = max((r for r in rows if r["run"] in best_cell["runs"]), key=lambda r: r["macro_f1"])
    first = config.run_config(config.variants[0], config.train_sizes[0])
    drawn = runs[0].config if runs else {}  # the sizes the runs drew (None in `first`: fitted to the data)
    results = {
        "model": identity.get("model"),
        "data": identity.get("data"),
        "preset": config.preset,
        "seed": first.seed,  # of the evaluation set and selection slice, shared by every run
        "seeds": list(config.run_seeds()),
        "eval_size": drawn.get("eval_size", first.eval_size),
        "selection_size": drawn.get("selection_size", first.selection_size),
        "stratify": first.stratify,
        "variants": list(config.variants),
        "train_sizes": list(config.train_sizes),
        "planned_runs": len(config.planned()),
        "finished_runs": len(rows),
        "bootstrap": {"draws": cells.draws, "seed": cells.seed, "confidence": 0.95},
        "cells": summaries,
        "runs": rows,
        "best_cell": best_cell,
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
    # Atomic writes: several workers of one grid folder (`claims`) rewrite these files.
    write_json_atomic(output / GRID_RESULTS_JSON, results)
    write_text_atomic(output / GRID_RESULTS_MD, render_markdown(results))
    if rows:
        with replaced_whole(output / GRID_RESULTS_PNG, ".png") as partial:
            plot_results(results, partial)
    return results


def data_identity(data: DataSource) -> dict[str, Any]:
    """`source_identity` of the data's path, with the settings that say how it was read (text field, ...)."""
    identity: dict[str, Any] = dict(source_identity(data.path))
    settings = {k: Path(v).name if k == "labels" else v for k, v in data.changed().items()}  # no machine paths
    if settings:
        identity["settings"] = settings
    return identity


def identity_text(identity: dict[str, Any] | str | None) -> str:
    """`name` (sha256 abcdef123456) of a source identity."""
    if not isinstance(identity, dict):
        return f"`{identity}`"
    digest = identity.get("sha256")
    settings = ", ".join(f"{k.replace('_', '-')}={v}" for k, v in (identity.get("settings") or {}).items())
    return (
        f"`{identity.get('name')}`"
        + (f" (sha256 {digest[:12]})" if digest else "")
        + (f" ({settings})" if settings else "")
    )


def format_mean(cell: dict[str, Any] | None, metric: str, ci: bool = True) -> str:
    """`0.460 ± 0.010 [0.440, 0.481]`: mean ± std over seeds, then the bootstrap interval."""
    if not cell or cell.get(f"{metric}_mean") is None:
        return "—"
    one_seed = len(cell.get("seeds") or ()) == 1  # no spread over seeds: a std of 0 would claim one
    text = f"{cell[f'{metric}_mean']:.3f}" + (" (1 seed)" if one_seed else f" ± {cell[f'{metric}_std']:.3f}")
    interval = cell.get(f"{metric}_ci")
    return text + (f" [{interval[0]:.3f}, {interval[1]:.3f}]" if ci and interval else "")


def _size(n: int | str) -> str:
    return f"{n:,}" if isinstance(n, int) else str(n)


def _count(n: int | None) -> str:
    return f"{n:,}" if n is not None else "(sized to fit the validation split)"


def render_markdown(results: dict[str, Any]) -> str:
    sizes = results["train_sizes"]
    cells = {(c["variant"], c["train_size"]): c for c in results.get("cells", [])}
    seeds = results.get("seeds") or [results.get("seed")]
    lines = [
        f"# Fine-tuning grid: {identity_text(results['model'])}",
        "",
        f"Data {identity_text(results['data'])}, preset `{results['preset']}`; training seeds "
        f"{', '.join(map(str, seeds))} (each draws its own training subsets); evaluation set "
        f"{_count(results['eval_size'])} validation sentences (seed {results['seed']}, the same for every run), "
        f"model selection on a disjoint slice of {_count(results['selection_size'])}. "
        f"{results['finished_runs']}/{results['planned_runs']} runs finished.",
        "",
        "Macro-F1 on the evaluation set: mean ± std over seeds [95 % bootstrap interval of the mean, over "
        "evaluation sentences and seeds]:",
        "",
        "| variant | " + " | ".join(_size(n) for n in sizes) + " |",
        "|---|" + "---|" * len(sizes),
    ]
    for variant in results["variants"]:
        lines.append(
            f"| {variant} | " + " | ".join(format_mean(cells.get((variant, n)), "macro_f1") for n in sizes) + " |"
        )
    lines += [
        "",
        "Micro-F1 (= accuracy), the same way:",
        "",
        "| variant | " + " | ".join(_size(n) for n in sizes) + " |",
        "|---|" + "---|" * len(sizes),
    ]
    for variant in results["variants"]:
        lines.append(
            f"| {variant} | " + " | ".join(format_mean(cells.get((variant, n)), "micro_f1") for n in sizes) + " |"
        )
    lines += [
        "",
        "| run | seed | macro-F1 | micro-F1 | accuracy | lr | epochs | steps (best) | train s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["runs"]:
        epochs = f"{r['epochs']:g}" if isinstance(r.get("epochs"), (int, float)) else "—"
        lines.append(
            f"| {r['variant']} × {_size(r['train_size'])} | {r['seed']} | {r['macro_f1']:.4f} | {r['micro_f1']:.4f} | "
            f"{r['accuracy']:.4f} | {r['lr']:g} | {epochs} | {r['steps']} ({r['best_step'] or '—'}) | "
            f"{r['train_seconds']:.0f} |"
        )
    if results.get("best_cell"):
        c, b = results["best_cell"], results["best"]
        lines += [
            "",
            f"**Best cell** by mean macro-F1: `{c['variant']}` × {_size(c['train_size'])} "
            f"({format_mean(c, 'macro_f1')}); its best run: seed {b['seed']} (macro-F1 {b['macro_f1']:.4f}), "
            f"checkpoint `{b['checkpoint']}`. Which cells are statistically indistinguishable from it: "
            "`tnews-deploy report`.",
        ]
    lines += [
        "",
        f"Training time {results['train_seconds_total']:.0f} s in all, on {', '.join(results['devices'])}; "
        f"versions: " + ", ".join(f"{k} {v}" for k, v in results["versions"].items()) + ".",
    ]
    if results.get("command"):
        lines += ["", "Command:", "", "```", results["command"], "```"]
    return "\n".join(lines) + "\n"


def plot_results(results: dict[str, Any], path: Path) -> Path:
    """Grouped bars of mean macro-F1 (solid) and micro-F1 (hatched) per variant and size, 95 % intervals as
    error bars (± std over seeds where a cell has no interval)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.patches import Patch

    sizes, variants = results["train_sizes"], results["variants"]
    by_key = {(c["variant"], c["train_size"]): c for c in results["cells"]}
    width = 0.8 / len(variants)  # one slot per variant: a macro-F1 bar and a micro-F1 bar side by side
    x = np.arange(len(sizes))
    fig, ax = plt.subplots(figsize=(9, 4.5))
    colors = ["#4c72b0", "#55a868", "#c44e52", "#8172b2", "#ccb974"]
    for i, variant in enumerate(variants):
        slot = x + i * width - 0.4
        color = colors[i % len(colors)]
        for j, (metric, hatch) in enumerate((("macro_f1", None), ("micro_f1", "//"))):
            positions, values, errors = [], [], [[], []]
            for k, n in enumerate(sizes):
                cell = by_key.get((variant, n))
                if cell is None:  # not trained (yet): no bar, rather than one at 0
                    continue
                mean = cell[f"{metric}_mean"]
                ci = cell.get(f"{metric}_ci")
                low, high = (mean - ci[0], ci[1] - mean) if ci else (cell[f"{metric}_std"],) * 2
                positions.append(slot[k] + (j + 0.5) * width / 2)
                values.append(mean)
                errors[0].append(max(low, 0.0))
                errors[1].append(max(high, 0.0))
            bars = ax.bar(
                positions,
                values,
                width / 2,
                color=color,
                hatch=hatch,
                edgecolor="white" if hatch else None,
                yerr=errors if values else None,
                capsize=2,
                error_kw={"elinewidth": 0.8},
            )
            ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=2)
    ax.set_xticks(x, [f"{_size(n)} sentences" for n in sizes])
    ax.set_ylabel("F1 on the evaluation set (mean over seeds)")
    ax.set_ylim(0, 1)
    model = results["model"]["name"] if isinstance(results.get("model"), dict) else Path(str(results["model"])).name
    data = results.get("data")
    data_name = (
        data["name"]
        if isinstance(data, dict) and "name" in data
        else Path(DataSource.coerce(data or DataSource()).path).name
    )
    seeds = len(results.get("seeds") or [1])
    weighted = (results.get("overrides") or {}).get("class_weight", "none")
    extra = f", class weight {weighted}" if weighted != "none" else ""
    ax.set_title(
        f"{data_name}: {model}, preset {results['preset']}{extra}, {seeds} seed(s); bars: 95 % bootstrap interval",
        fontsize=10,
    )
    trained = {c["variant"] for c in results["cells"]}
    handles = [
        Patch(facecolor=colors[i % len(colors)], label=v if v in trained else f"{v} (not trained yet)")
        for i, v in enumerate(variants)
    ]
    handles += [
        Patch(facecolor="#999999", label="macro-F1"),
        Patch(facecolor="#999999", hatch="//", edgecolor="white", label="micro-F1"),
    ]
    ax.legend(handles=handles, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def portable_command(argv: list[str]) -> str:
    """The command line with this machine's model and data paths replaced by `$MODEL` / `$DATA` (an absolute
    `--output` by its folder name)."""
    out: list[str] = []
    replace_next = None
    for arg in argv:
        if replace_next:
            absolute = replace_next == "ABSOLUTE_OUTPUT" and Path(arg).is_absolute()
            out.append(
                shlex.quote(Path(arg).name if absolute else arg) if replace_next == "ABSOLUTE_OUTPUT" else replace_next
            )
            replace_next = None
            continue
        name, eq, value = arg.partition("=")
        if name == "--output" and eq and Path(value).is_absolute():
            out.append(f"--output={Path(value).name}")
            continue
        if name == "--output" and not eq:
            out.append(arg)
            replace_next = "ABSOLUTE_OUTPUT"
            continue
        if name in PATH_OPTIONS:
            if eq:
                out.append(f"{name}={PATH_OPTIONS[name]}")
            else:
                out.append(arg)
                replace_next = PATH_OPTIONS[name]
            continue
        out.append(shlex.quote(arg))
    return " ".join(out)


def record_command(output: Path, command: str) -> None:
    """Keep the command line that produced a grid in its results.json."""
    path = Path(output) / GRID_RESULTS_JSON
    data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    data["command"] = command
    Path(output).mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, data)

"""The benchmark report as files: results.json, results.md (a table) and the latency and throughput plots.

Works on the report dict alone (numpy, matplotlib when plotting): importing it
loads neither torch nor onnxruntime, so reports can be re-rendered anywhere.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ..datasource import DataSource, describe_data
from ..errors import ConfigError

RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
LATENCY_PNG = "latency.png"
THROUGHPUT_PNG = "throughput.png"


def _model_name(checkpoint: str) -> str:
    """`grid/run/checkpoint` -> `run/checkpoint`: the folder name alone says little."""
    path = Path(checkpoint)
    return f"{path.parent.name}/{path.name}" if path.name == "checkpoint" else path.name


def _data_name(value: Any, folder: Path | None) -> str:
    """A recorded data source for the report: local paths relative to `folder` (None: as recorded)."""
    if folder is None:
        return describe_data(value)
    try:
        return DataSource.coerce(value).relative_to(folder).describe()
    except (ConfigError, TypeError):
        return str(value)


def _evaluation_line(report: dict[str, Any], folder: Path | None = None) -> str:
    ev = report.get("evaluation")
    if not ev:  # reports written before the evaluation set was recorded
        return f"Data `{_data_name(report['data'], folder)}`"
    origins = sorted(set(ev.get("origin", {}).values()))
    subset = f"{ev['sentences']:,} of " if ev["sentences"] < ev["eval_size"] else ""
    return (
        f"Evaluation set: {subset}{ev['eval_size']:,} sentences of `{_data_name(ev['data'], folder)}` "
        f"(seed {ev['seed']}, "
        f"{'stratified' if ev['stratify'] else 'not stratified'}; settings from {', '.join(origins)})"
    )


def render_markdown(report: dict[str, Any], folder: Path | None = None) -> str:
    """The report as a markdown table with a header on machine, data and method.

    Args:
        report: the dict `run_benchmark` returns (and results.json holds).
        folder: the folder the markdown is written to: a local data path is shown relative to it (as the
            recorded command's paths are), not as this machine's absolute path; None: as recorded.
    """
    m, rows = report["machine"], report["backends"]
    sizes = list(rows[0]["throughput"])
    checkpoint = report.get("pytorch_checkpoint")
    ref = "PT" if checkpoint else "ref"  # without a PyTorch baseline, the first ONNX model is the reference
    reference_model = "PyTorch's model" if checkpoint else "the reference's model"
    head = ["backend", "variant", "MB", "macro-F1", "micro-F1", "agree", "p50 ms", "p95 ms", "p99 ms", "mean ms"]
    head += [f"sent/s @{bs} (min–max)" for bs in sizes] + [f"×{ref} @{bs}" for bs in sizes] + [f"×{ref} p50"]
    head += [f"pad eff @{sizes[-1]}", "GFLOP/sent", f"GFLOP/s @{sizes[-1]}", "% fp32 peak", "cold s", "RSS MB"]
    lines = [
        f"# Benchmark: `{_model_name(checkpoint) if checkpoint else rows[0]['backend']}` on "
        f"{report['eval_sentences']:,} sentences",
        "",
        f"{m['cpu']} ({m['arch']}), {m['usable_cpus']} usable CPUs, **{m['threads']} threads for every backend**; "
        f"flags: {', '.join(m['flags']) or 'none'}; " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + ".",
        f"{_evaluation_line(report, folder)}, max_length {report['max_length']}, {report['mean_tokens']} tokens per "
        f"sentence on average, {report['gflop_per_sentence']} GFLOP per sentence ({reference_model}; each "
        "backend's own model in the GFLOP/sent column); "
        f"fp32 peak {report['fp32_peak']['gflops']} GFLOP/s ({report['fp32_peak']['method']}). "
        f"Latency: batch 1, {rows[0]['latency_ms']['samples']} sentences after "
        f"{report['settings']['warmup']} warm-up; {report['settings']['rounds']} alternating round(s).",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for r in rows:
        lat, thr = r["latency_ms"], r["throughput"]
        cells = [
            r["backend"],
            r["variant"],
            f"{r['model_mb']:.0f}",
            f"{r['macro_f1']:.4f}",
            f"{r['micro_f1']:.4f}",
            f"{r['agreement_with_pytorch']:.2%}",
            f"{lat['p50']:.2f}",
            f"{lat['p95']:.2f}",
            f"{lat['p99']:.2f}",
            f"{lat['mean']:.2f}",
        ]
        cells += [f"{thr[bs]['median']:.1f} ({thr[bs]['min']:.1f}–{thr[bs]['max']:.1f})" for bs in sizes]
        cells += [f"{r['speedup'][f'throughput_{bs}']:.2f}" for bs in sizes] + [f"{r['speedup']['latency_p50']:.2f}"]
        # reports written before each backend's own FLOPs were counted used PyTorch's model for all
        cells += [
            f"{r['padding_efficiency'][sizes[-1]]:.2f}",
            f"{r.get('gflop_per_sentence', report['gflop_per_sentence']):.4g}",
            f"{r['gflops'][sizes[-1]]:.1f}",
            f"{r['share_of_fp32_peak'][sizes[-1]]:.0%}",
        ]
        cold = r.get("cold_start")
        cells += [f"{cold['seconds']:.2f}", f"{cold['peak_rss_mb']:.0f}"] if cold else ["—", "—"]
        lines.append("| " + " | ".join(cells) + " |")
    speedup = "×PT: speed-up over PyTorch eager" if checkpoint else f"×ref: speed-up over `{rows[0]['backend']}`"
    lines += [
        "",
        f"{speedup} (throughput ratio of medians; latency ratio of p50); agree: same label as "
        f"{'PyTorch' if checkpoint else 'it'}"
        + ("" if checkpoint else " (no PyTorch baseline: pass --pytorch for one)")
        + ". "
        "pad eff: real tokens / padded tokens in the batches run. GFLOP/sent: useful FLOPs of the backend's own model "
        "(its layers and sizes) per sentence; GFLOP/s counts them on real tokens only; "
        "% fp32 peak divides it by the best fp32 GEMM rate measured on this machine with the same threads "
        "(several sizes, numpy and torch); int8 kernels can exceed it.",
    ]
    cpu_lines = [line for line in (cpu_line(r) for r in rows) if line]
    if cpu_lines:
        lines += ["", "Where each export was verified, and the int8 kernels it ran here:", "", *cpu_lines]
    if report.get("command"):
        lines += ["", "Command:", "", "```", report["command"], "```"]
    return "\n".join(lines) + "\n"


def cpu_line(row: dict[str, Any]) -> str:
    """Where an ONNX backend was verified (its export's CPU and flags) and the int8 kernels it ran here."""
    verified, kernels = row.get("verified_on"), row.get("int8_kernels")
    if not verified and not kernels:
        return ""
    line = f"- `{row['backend']}`: "
    if verified:
        line += f"verified on {verified.get('cpu')} (flags: {', '.join(verified.get('flags') or []) or 'none'})"
    else:
        line += "no verification machine recorded (exported before it was)"
    if kernels:
        converted = (
            f", converted at load from the file's {kernels['exported']}" if kernels.get("converted_at_load") else ""
        )
        line += f"; int8 kernels here: {kernels['used']}{converted}"
    return line + "."


@contextmanager
def _figure(path: Path, width: float, title: str, ylabel: str, legend_size: float | None = None) -> Iterator[Any]:
    """A matplotlib Axes (headless backend) whose figure is titled, labelled and saved as a PNG at `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, 4))
    try:
        yield ax
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.legend(fontsize=legend_size)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)


def plot_latency(report: dict[str, Any], path: Path) -> None:
    """Bars of p50/p95/p99 batch-1 latency per backend, as a PNG.

    Args:
        report: the report dict.
        path: where to write the PNG.
    """
    rows = report["backends"]
    x = np.arange(len(rows))
    with _figure(
        path, max(6, 1.4 * len(rows)), f"Latency, {report['machine']['threads']} threads", "ms per sentence (batch 1)"
    ) as ax:
        for offset, key, color in ((-0.25, "p50", "#4c72b0"), (0, "p95", "#dd8452"), (0.25, "p99", "#c44e52")):
            bars = ax.bar(x + offset, [r["latency_ms"][key] for r in rows], 0.25, label=key, color=color)
            ax.bar_label(bars, fmt="%.1f", fontsize=7)
        ax.set_xticks(x, [r["backend"] for r in rows], rotation=15)


def plot_throughput(report: dict[str, Any], path: Path) -> None:
    """Bars of median throughput (min–max whiskers) per batch size and backend, as a PNG.

    Args:
        report: the report dict.
        path: where to write the PNG.
    """
    rows = report["backends"]
    sizes = list(rows[0]["throughput"])
    width = 0.8 / len(rows)
    x = np.arange(len(sizes))
    with _figure(
        path,
        max(6, 2 * len(sizes) + len(rows)),
        f"Throughput, {report['machine']['threads']} threads",
        "sentences / s (median, min–max)",
        legend_size=8,
    ) as ax:
        for i, r in enumerate(rows):
            med = [r["throughput"][bs]["median"] for bs in sizes]
            err = [
                [m - r["throughput"][bs]["min"] for bs, m in zip(sizes, med)],
                [r["throughput"][bs]["max"] - m for bs, m in zip(sizes, med)],
            ]
            bars = ax.bar(x + i * width - 0.4 + width / 2, med, width, yerr=err, capsize=3, label=r["backend"])
            ax.bar_label(bars, fmt="%.0f", fontsize=7)
        ax.set_xticks(x, [f"batch {bs}" for bs in sizes])


def write_report(report: dict[str, Any], output: Path) -> None:
    """Write results.json, results.md, latency.png and throughput.png into `output` (created if needed).

    Args:
        report: the report dict.
        output: the folder.
    """
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    (output / RESULTS_JSON).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (output / RESULTS_MD).write_text(render_markdown(report, output), encoding="utf-8")
    plot_latency(report, output / LATENCY_PNG)
    plot_throughput(report, output / THROUGHPUT_PNG)

#!/usr/bin/env python3
"""Batch invariance, F1 and throughput of int8 exports, side by side.

    python benchmarks/int8_batch_invariance.py --data ../shared/data/tnews/hf \
        --variant fp32=runs/int8-work/fp32 --variant int8=runs/int8-work/int8 \
        --variant int8-dynamic=runs/int8-work/int8-dynamic --baseline int8-dynamic \
        --results benchmarks/results/<machine>-int8-batch-invariance

Each VARIANT is a folder written by `tnews-deploy export`; the first one is the reference for agreement
(normally fp32). On the evaluation set the exported run was scored on (same data, size and seed,
`tnews_deploy.data.evaluation_split`), through the runtime `Predictor`, per variant:

* batch invariance: every sentence predicted one at a time vs in (length-bucketed) batches of 32:
  label changes, max |Δp|, max |Δlogit|;
* macro/micro-F1 against the labels, and agreement / F1 difference against the reference variant;
* batch-32 throughput over the whole set, variants alternating within each round (A B C A B C ...);
  median and min–max over rounds, and each variant's throughput relative to `--baseline` (the median of the
  per-round ratios, which cancels slow drifts of a shared machine).

Writes RESULTS.json (every figure, the machine, the command) and RESULTS.md (the table).
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from results_io import machine_slug, write_results
from tnews_deploy.benchmark.resolve import EvaluationSettings, load_evaluation
from tnews_deploy.datasource import DataSource
from tnews_deploy.machine import machine_info
from tnews_deploy.predictor import Predictor
from tnews_deploy.training.metrics import f1_scores


def softmax(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)


def describe(manifest: dict) -> str:
    quant, opt = manifest.get("quantization"), manifest.get("optimization")
    text = "fp32" if not quant else f"{quant.get('mode')} ({quant.get('scheme', 'per-tensor-dynamic')})"
    return text + (f" + {opt['level']}" if opt else "")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--variant",
        action="append",
        required=True,
        metavar="NAME=DIR",
        help="an exported folder; repeat; the first is the reference (fp32)",
    )
    parser.add_argument("--baseline", help="variant the throughput ratios are taken against (default: the last)")
    parser.add_argument("--data", help="default: the data in the first variant's manifest")
    parser.add_argument("--eval-size", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--results", type=Path, required=True, help="path stem for .json and .md")
    args = parser.parse_args(argv)

    variants = dict(v.split("=", 1) for v in args.variant)
    names = list(variants)
    baseline = args.baseline or names[-1]
    predictors = {name: Predictor(folder, threads=args.threads) for name, folder in variants.items()}
    first_manifest = predictors[names[0]].manifest
    data = args.data or first_manifest["verification"]["evaluation"]["data"]
    texts, labels = load_evaluation(EvaluationSettings(DataSource.coerce(data), args.eval_size, args.seed, True))
    print(f"{len(texts):,} evaluation sentences from {data} (seed {args.seed}); threads {args.threads}", flush=True)

    results: dict[str, dict] = {}
    batched: dict[str, np.ndarray] = {}
    for name, predictor in predictors.items():
        print(f"== {name}: one at a time vs batches of {args.batch_size}", flush=True)
        batched[name] = predictor.logits(texts, batch_size=args.batch_size)
        alone = predictor.logits(texts, batch_size=1)
        results[name] = {
            "folder": variants[name],
            "describe": describe(predictor.manifest),
            "quantization": predictor.manifest.get("quantization"),
            "optimization": predictor.manifest.get("optimization"),
            "model_mb": round((Path(variants[name]) / "model.onnx").stat().st_size / 1e6, 1),
            "batch_invariance": {
                "sentences": len(texts),
                "label_changes": int(np.sum(alone.argmax(-1) != batched[name].argmax(-1))),
                "max_abs_prob_diff": float(np.abs(softmax(alone) - softmax(batched[name])).max()),
                "max_abs_logit_diff": float(np.abs(alone - batched[name]).max()),
            },
            "f1": {k: round(v, 6) for k, v in f1_scores(labels, batched[name].argmax(-1)).items()},
        }
    reference = batched[names[0]]
    for name in names:
        r = results[name]
        r["vs_reference"] = {
            "reference": names[0],
            "agreement": float(np.mean(batched[name].argmax(-1) == reference.argmax(-1))),
            "macro_f1_diff": round(r["f1"]["macro_f1"] - results[names[0]]["f1"]["macro_f1"], 6),
            "micro_f1_diff": round(r["f1"]["micro_f1"] - results[names[0]]["f1"]["micro_f1"], 6),
        }

    print(f"== throughput at batch {args.batch_size}: {args.rounds} alternating rounds", flush=True)
    for predictor in predictors.values():  # warm-up
        predictor.logits(texts[: args.batch_size * 4], batch_size=args.batch_size)
    rates: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(args.rounds):
        for name, predictor in predictors.items():
            start = time.perf_counter()
            predictor.logits(texts, batch_size=args.batch_size)
            rates[name].append(len(texts) / (time.perf_counter() - start))
        print(f"   round {round_ + 1}: " + ", ".join(f"{n} {rates[n][-1]:.1f}/s" for n in names), flush=True)
    for name in names:
        ratios = [a / b for a, b in zip(rates[name], rates[baseline])]
        results[name]["throughput"] = {
            "batch_size": args.batch_size,
            "rounds": [round(r, 2) for r in rates[name]],
            "median": round(statistics.median(rates[name]), 2),
            "min": round(min(rates[name]), 2),
            "max": round(max(rates[name]), 2),
            f"ratio_to_{baseline}": {
                "median": round(statistics.median(ratios), 3),
                "min": round(min(ratios), 3),
                "max": round(max(ratios), 3),
            },
        }

    info = machine_info(args.threads)
    report = {
        "command": "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])]),
        "machine": info,
        "machine_slug": machine_slug(info),
        "data": data,
        "eval_size": len(texts),
        "seed": args.seed,
        "threads": args.threads,
        "baseline": baseline,
        "reference": names[0],
        "variants": results,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_results(args.results, report, render(report))
    return report


def render(report: dict) -> str:
    baseline, reference = report["baseline"], report["reference"]
    m = report["machine"]
    lines = [
        f"# int8 batch invariance: {', '.join(report['variants'])}",
        "",
        f"{report['eval_size']:,} evaluation sentences ({report['data']}, seed {report['seed']}), through the "
        f"runtime `Predictor`, {report['threads']} threads. Machine: {m['cpu']} ({m['usable_cpus']} CPUs, "
        f"{', '.join(m['flags'])}), onnxruntime {m['versions'].get('onnxruntime')}. Throughput: batch "
        f"{report['variants'][baseline]['throughput']['batch_size']}, variants alternating in "
        f"{len(report['variants'][baseline]['throughput']['rounds'])} rounds; median (min–max); ratio = median "
        f"of the per-round ratios to {baseline}.",
        "",
        "| variant | scheme | MB | label changes b1 vs b32 | max \\|Δp\\| | max \\|Δlogit\\| | macro-F1 | micro-F1 | "
        f"Δ macro-F1 vs {reference} | agreement with {reference} | sentences/s | ratio to {baseline} |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in report["variants"].items():
        inv, t = r["batch_invariance"], r["throughput"]
        ratio = t[f"ratio_to_{baseline}"]
        lines.append(
            f"| {name} | {r['describe']} | {r['model_mb']} | {inv['label_changes']} / {inv['sentences']:,} | "
            f"{inv['max_abs_prob_diff']:.2e} | {inv['max_abs_logit_diff']:.2e} | {r['f1']['macro_f1']:.4f} | "
            f"{r['f1']['micro_f1']:.4f} | {r['vs_reference']['macro_f1_diff']:+.4f} | "
            f"{r['vs_reference']['agreement']:.2%} | {t['median']:.1f} ({t['min']:.1f}–{t['max']:.1f}) | "
            f"{ratio['median']:.3f} ({ratio['min']:.3f}–{ratio['max']:.3f}) |"
        )
    lines += ["", f"Command: `{report['command']}`", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""int8 weight forms on this CPU: agreement with fp32 and speed of u8 x u8 and u8 x s8 kernels.

    python benchmarks/int8_weight_forms.py --fp32 exports/fp32 \
        --int8 portable=exports/int8 --int8 vnni=exports/int8-vnni \
        --results benchmarks/results/<machine>-int8-weight-forms

Each int8 folder (written by `tnews-deploy export --quantize int8 [--quantize-for ...]`) is loaded through the
runtime `Predictor` three ways: `auto` (what users get: the form exact and fastest on this CPU, converted at
load when the file holds the other), and forced `u8u8` and `u8s8` (on a CPU without VNNI, u8s8 is what
onnxruntime runs for an int8-weight file loaded by anything but `Predictor`: its kernels saturate). For each:
label agreement with the fp32 export and max |Δlogit| on the export's evaluation set (same data, size and
seed), F1, and, unless --no-timing, batch-1 p50 latency and length-bucketed batch-32 throughput, every
(folder, form) alternating within each round. The load time of each form (conversion included) is recorded.

--no-timing is for runs under an emulated CPU (e.g. `qemu-x86_64 -cpu EPYC-Milan`, an AVX2-only Zen 3 model):
agreement there is the real kernels' arithmetic, speed is not. `--save-logits DIR` keeps every row's logits
(.npy); `--against DIR` (logits saved by a run on another CPU) adds, per row, the label changes and max
|Δlogit| against the same row there, and takes the fp32 reference from DIR instead of running fp32 here (slow
under emulation). Writes RESULTS.json and RESULTS.md.
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
from tnews_deploy.int8_weights import U8S8, U8U8, cpu_description
from tnews_deploy.machine import machine_info
from tnews_deploy.predictor import Predictor
from tnews_deploy.training.metrics import f1_scores

FORMS = ("auto", U8U8, U8S8)


def timed_load(folder: str, threads: int, kernels: str) -> tuple[Predictor, float]:
    start = time.perf_counter()
    predictor = Predictor(folder, threads=threads, int8_kernels=kernels)
    return predictor, time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fp32", required=True, help="the fp32 export of the same run (the reference)")
    parser.add_argument("--int8", action="append", required=True, metavar="NAME=DIR", help="an int8 export; repeat")
    parser.add_argument("--data", help="default: the data in the fp32 manifest")
    parser.add_argument("--eval-size", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--latency-sentences", type=int, default=200, help="batch-1 sentences per round")
    parser.add_argument("--forms", default=",".join(FORMS), help="comma-separated subset of auto,u8u8,u8s8")
    parser.add_argument("--no-timing", action="store_true", help="agreement only (an emulated CPU)")
    parser.add_argument("--save-logits", type=Path, help="folder to keep each row's logits in (.npy)")
    parser.add_argument("--against", type=Path, help="logits saved by a run on another CPU (--save-logits)")
    parser.add_argument("--note", default="", help="said in the report's header, e.g. the emulated CPU")
    parser.add_argument("--results", type=Path, required=True, help="path stem for .json and .md")
    args = parser.parse_args(argv)

    fp32 = Predictor(args.fp32, threads=args.threads)
    data = args.data or fp32.manifest["verification"]["evaluation"]["data"]
    texts, labels = load_evaluation(EvaluationSettings(DataSource.coerce(data), args.eval_size, args.seed, True))
    print(
        f"{len(texts):,} evaluation sentences from {data}; threads {args.threads}; CPU {cpu_description()}", flush=True
    )
    reference = np.load(args.against / "fp32.npy") if args.against else fp32.logits(texts)
    saved: dict[str, np.ndarray] = {"fp32": reference}
    rows: dict[str, dict] = {}
    predictors: dict[str, Predictor] = {}
    for spec in args.int8:
        name, folder = spec.split("=", 1)
        for form in args.forms.split(","):
            key = f"{name}/{form}"
            predictor, load_s = timed_load(folder, args.threads, form)
            predictors[key] = predictor
            logits = saved[key] = predictor.logits(texts)
            plan = predictor.kernel_plan
            rows[key] = {
                "folder": folder,
                "file_form": plan.exported,
                "ran": plan.used,
                "exact_here": plan.exact,
                "converted_at_load": plan.converted,
                "load_seconds": round(load_s, 3),
                "agreement_with_fp32": float(np.mean(logits.argmax(-1) == reference.argmax(-1))),
                "max_abs_logit_diff_vs_fp32": float(np.abs(logits - reference).max()),
                "f1": {k: round(v, 6) for k, v in f1_scores(labels, logits.argmax(-1)).items()},
            }
            print(f"   {key}: ran {plan.used}, agreement {rows[key]['agreement_with_fp32']:.2%}", flush=True)
    rows["fp32"] = {
        "folder": args.fp32,
        "agreement_with_fp32": 1.0,
        "max_abs_logit_diff_vs_fp32": 0.0,
        "f1": {k: round(v, 6) for k, v in f1_scores(labels, reference.argmax(-1)).items()},
    }
    predictors["fp32"] = fp32
    for key, logits in saved.items():
        other = args.against / f"{key.replace('/', '--')}.npy" if args.against else None
        if other is not None and other.is_file() and key != "fp32":  # fp32 was taken from there, not run here
            there = np.load(other)
            rows[key]["vs_against"] = {
                "label_changes": int(np.sum(there.argmax(-1) != logits.argmax(-1))),
                "max_abs_logit_diff": float(np.abs(there - logits).max()),
            }
        if args.save_logits:
            args.save_logits.mkdir(parents=True, exist_ok=True)
            np.save(args.save_logits / f"{key.replace('/', '--')}.npy", logits)

    if not args.no_timing:
        short = texts[: args.latency_sentences]
        for predictor in predictors.values():
            predictor.logits(texts[:128])  # warm-up
        rates: dict[str, list[float]] = {k: [] for k in predictors}
        p50s: dict[str, list[float]] = {k: [] for k in predictors}
        for round_ in range(args.rounds):
            for key, predictor in predictors.items():
                start = time.perf_counter()
                predictor.logits(texts, batch_size=32)
                rates[key].append(len(texts) / (time.perf_counter() - start))
                one = []
                for text in short:
                    start = time.perf_counter()
                    predictor.logits([text])
                    one.append(time.perf_counter() - start)
                p50s[key].append(1e3 * float(np.median(one)))
            print(f"   round {round_ + 1}: " + ", ".join(f"{k} {rates[k][-1]:.0f}/s" for k in predictors), flush=True)
        for key in predictors:
            rows[key]["throughput_b32"] = {
                "median": round(statistics.median(rates[key]), 1),
                "min": round(min(rates[key]), 1),
                "max": round(max(rates[key]), 1),
            }
            rows[key]["latency_b1_p50_ms"] = {
                "median": round(statistics.median(p50s[key]), 3),
                "min": round(min(p50s[key]), 3),
                "max": round(max(p50s[key]), 3),
            }

    info = machine_info(args.threads)
    report = {
        "command": "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])]),
        "machine": info,
        "machine_slug": machine_slug(info),
        "cpuid": cpu_description(),
        "note": args.note,
        "data": data,
        "eval_size": len(texts),
        "seed": args.seed,
        "threads": args.threads,
        "against": str(args.against) if args.against else None,
        "timed": not args.no_timing,
        "rounds": 0 if args.no_timing else args.rounds,
        "rows": rows,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_results(args.results, report, render(report))
    return report


def data_name(data) -> str:
    """The data's path (a recorded DataSource is a dict), for the header."""
    return str(data.get("path", data)) if isinstance(data, dict) else str(data)


def render(report: dict) -> str:
    cpu = report["cpuid"]
    lines = [
        "# int8 weight forms: agreement with fp32 and speed",
        "",
        f"{report['eval_size']:,} evaluation sentences ({data_name(report['data'])}, seed {report['seed']}), runtime "
        f"`Predictor`, {report['threads']} threads. CPU as onnxruntime sees it (CPUID): {cpu['cpu']} "
        f"({cpu['arch']}), u8 x s8 exact: {cpu['u8s8_exact']}, so `auto` runs {cpu['int8_kernels']}."
        + (f" {report['note']}" if report["note"] else ""),
        "",
    ]
    timed = report["timed"]
    head = "| folder / form | file | ran | exact here | agreement with fp32 | max \\|Δlogit\\| | macro-F1 | load s |"
    against = report.get("against")
    if against:
        head += " label changes / max \\|Δlogit\\| vs the same row in --against |"
    if timed:
        head += f" titles/s, batch 32 ({report['rounds']} rounds, min–max) | batch-1 p50 ms |"
    lines += [head, "|" + "---|" * (head.count(" | ") + 1)]
    for key, r in report["rows"].items():
        cells = [
            key,
            r.get("file_form") or "fp32",
            r.get("ran") or "fp32",
            "" if "exact_here" not in r else ("yes" if r["exact_here"] else "**no**"),
            f"{r['agreement_with_fp32']:.2%}",
            f"{r['max_abs_logit_diff_vs_fp32']:.3f}",
            f"{r['f1']['macro_f1']:.4f}",
            f"{r['load_seconds']:.2f}" if "load_seconds" in r else "",
        ]
        if against:
            v = r.get("vs_against")
            cells.append(
                f"{v['label_changes']} / {v['max_abs_logit_diff']:.2e}"
                if v
                else "(the reference, taken from there)"
                if key == "fp32"
                else ""
            )
        if timed:
            t, lat = r["throughput_b32"], r["latency_b1_p50_ms"]
            cells += [
                f"{t['median']:.0f} ({t['min']:.0f}–{t['max']:.0f})",
                f"{lat['median']:.2f} ({lat['min']:.2f}–{lat['max']:.2f})",
            ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"Command: `{report['command']}`", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()

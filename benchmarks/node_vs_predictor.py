#!/usr/bin/env python3
"""The Node.js example (transformers.js + onnxruntime-node) against the Python `Predictor`, on one export.

    (cd examples/node && npm ci --ignore-scripts)
    python benchmarks/node_vs_predictor.py /work/runs/int8-work/int8 --data ../shared/data/tnews/hf \
        --titles 1000 --results benchmarks/results/<machine>-node-transformersjs

On TITLES validation titles (the evaluation split of `tnews_deploy.data`, seeded, as the export was verified):

* parity: `node examples/node/classify.mjs MODEL_DIR --probs` (titles on stdin, batches of 32), with
  onnxruntime-node and with `--engine web` (onnxruntime-web's WebAssembly build), vs `Predictor.predict_proba`:
  label agreement, max |Δp|, and the same restricted to the texts longer than `max_length` tokens; for
  contrast, transformers.js's plain `pipeline('text-classification')` (labels and top scores only), which
  truncates by cutting the ids;
* throughput: titles/s over all titles at batch 32, same threads, the three runtimes alternating in each round
  (each Node process is loaded once, see examples/node/bench.mjs); median and min–max over rounds, and the
  median of the per-round ratios to the Predictor.

Writes RESULTS.json (every figure, the machine, the versions, the command) and RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from results_io import machine_slug, write_results
from tnews_deploy.data import evaluation_split, load_tnews
from tnews_deploy.machine import machine_info
from tnews_deploy.predictor import Predictor

NODE_DIR = Path(__file__).resolve().parents[1] / "examples" / "node"

PIPELINE_JS = """
import { pipeline, env } from '@huggingface/transformers';
import { readFileSync } from 'node:fs';
env.allowRemoteModels = false;
const [dir, file] = process.argv.slice(1);
const clf = await pipeline('text-classification', dir, { subfolder: '', dtype: 'fp32' });
const titles = readFileSync(file, 'utf8').split('\\n').filter((t) => t.trim());
const out = [];
for (let i = 0; i < titles.length; i += 32) out.push(...await clf(titles.slice(i, i + 32)));
console.log(JSON.stringify(out));
"""


def node_versions() -> dict:
    lock = json.loads((NODE_DIR / "package-lock.json").read_text(encoding="utf-8"))["packages"]
    version = subprocess.run(["node", "--version"], capture_output=True, text=True, check=True).stdout.strip()
    return {
        "node": version,
        **{
            name: lock[f"node_modules/{name}"]["version"]
            for name in ("@huggingface/transformers", "onnxruntime-node", "onnxruntime-web")
        },
    }


def node_probs(model_dir: Path, texts: list[str], engine: str, args: argparse.Namespace) -> np.ndarray:
    out = subprocess.run(
        [
            "node",
            str(NODE_DIR / "classify.mjs"),
            str(model_dir),
            "--probs",
            "--threads",
            str(args.threads),
            "--batch-size",
            str(args.batch_size),
            "--engine",
            engine,
        ],
        input="\n".join(texts) + "\n",
        capture_output=True,
        text=True,
        check=True,
    )
    return np.array([json.loads(line)["probs"] for line in out.stdout.splitlines()])


def compare(predictor: Predictor, texts: list[str], args: argparse.Namespace) -> dict:
    """classify.mjs (onnxruntime-node, onnxruntime-web) and the plain transformers.js pipeline against
    `Predictor` on `texts`."""
    cut = np.array([len(e.ids) >= predictor.max_length for e in predictor.encode(texts)])
    probs = predictor.predict_proba(texts)
    engines = {}
    for engine in ("node", "web"):
        got = node_probs(args.model_dir, texts, engine, args)
        diff = np.abs(got - probs).max(axis=1)
        same = got.argmax(1) == probs.argmax(1)
        engines[engine] = {
            "agreement": float(same.mean()),
            "label_changes": int((~same).sum()),
            "max_abs_prob_diff": float(diff.max()),
            "max_abs_prob_diff_cut": float(diff[cut].max()) if cut.any() else None,
        }
    with tempfile.TemporaryDirectory() as tmp:
        titles_file = Path(tmp) / "texts.txt"
        titles_file.write_text("\n".join(texts) + "\n", encoding="utf-8")
        plain = json.loads(
            subprocess.run(
                ["node", "--input-type=module", "-e", PIPELINE_JS, str(args.model_dir.resolve()), str(titles_file)],
                cwd=NODE_DIR,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
    plain_labels = np.array([predictor.labels.index(r["label"]) for r in plain])
    plain_diff = np.abs(np.array([r["score"] for r in plain]) - probs[np.arange(len(texts)), plain_labels])
    plain_same = plain_labels == probs.argmax(1)
    return {
        "texts": len(texts),
        "cut_at_max_length": int(cut.sum()),
        **engines["node"],
        "web": engines["web"],
        "plain_pipeline": {
            "agreement": float(plain_same.mean()),
            "label_changes": int((~plain_same).sum()),
            "label_changes_cut": int((~plain_same & cut).sum()),
            "max_abs_top_score_diff": float(plain_diff.max()),
            "max_abs_top_score_diff_cut": float(plain_diff[cut].max()) if cut.any() else None,
            "max_abs_top_score_diff_not_cut": float(plain_diff[~cut].max()) if (~cut).any() else None,
        },
    }


def measure_throughput(
    predictor: Predictor, texts: list[str], titles_file: Path, args: argparse.Namespace
) -> tuple[dict, dict]:
    """Titles/s of the Predictor and of classify.mjs on both engines, alternating round by round."""
    print(f"== throughput at batch {args.batch_size}: {args.rounds} alternating rounds", flush=True)
    benches, ready = {}, {}
    for engine in ("node", "web"):
        benches[engine] = subprocess.Popen(
            [
                "node",
                str(NODE_DIR / "bench.mjs"),
                str(args.model_dir),
                str(titles_file),
                "--threads",
                str(args.threads),
                "--batch-size",
                str(args.batch_size),
                "--engine",
                engine,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        ready[engine] = json.loads(benches[engine].stdout.readline())
    predictor.logits(texts[: args.batch_size * 4])  # warm-up
    load_before = os.getloadavg()[0]
    rates: dict[str, list[float]] = {"predictor": [], "node": [], "web": []}
    for round_ in range(args.rounds):
        start = time.perf_counter()
        predictor.logits(texts)
        rates["predictor"].append(len(texts) / (time.perf_counter() - start))
        for engine, bench in benches.items():
            bench.stdin.write("run\n")
            bench.stdin.flush()
            rates[engine].append(len(texts) / json.loads(bench.stdout.readline())["seconds"])
        print(f"   round {round_ + 1}: " + ", ".join(f"{k} {v[-1]:.1f}/s" for k, v in rates.items()), flush=True)
    for bench in benches.values():
        bench.stdin.close()
        bench.wait(timeout=60)
    throughput = {
        name: {
            "rounds": [round(r, 2) for r in values],
            "median": round(statistics.median(values), 2),
            "min": round(min(values), 2),
            "max": round(max(values), 2),
        }
        for name, values in rates.items()
    }
    throughput["load_average_1min"] = {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)}
    for engine in ("node", "web"):
        ratios = [n / p for n, p in zip(rates[engine], rates["predictor"])]
        throughput[f"{engine}_over_predictor"] = {
            "median": round(statistics.median(ratios), 3),
            "min": round(min(ratios), 3),
            "max": round(max(ratios), 3),
        }
    return throughput, {engine: round(r["load_seconds"], 2) for engine, r in ready.items()}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", type=Path, help="a folder written by `tnews-deploy export`")
    parser.add_argument("--data", help="default: the data in the export's manifest")
    parser.add_argument("--titles", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5, help="throughput rounds; 0: parity only")
    parser.add_argument("--joined", type=int, default=250, help="texts of four titles joined (truncation check)")
    parser.add_argument("--results", type=Path, required=True, help="path stem for .json and .md")
    args = parser.parse_args(argv)

    predictor = Predictor(args.model_dir, threads=args.threads, batch_size=args.batch_size)
    data = args.data or predictor.manifest["verification"]["evaluation"]["data"]
    texts = list(evaluation_split(load_tnews(data), args.titles, args.seed)["sentence"])
    print(f"{len(texts):,} titles from {data} (seed {args.seed}); threads {args.threads}", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        titles_file = Path(tmp) / "titles.txt"
        titles_file.write_text("\n".join(texts) + "\n", encoding="utf-8")

        print("== parity", flush=True)
        parity = compare(predictor, texts, args)
        # Longer inputs, so that truncation at max_length is exercised: four titles joined into one text.
        joined = ["，".join(texts[i : i + 4]) for i in range(0, min(len(texts), 4 * args.joined), 4)]
        parity["joined_titles"] = compare(predictor, joined, args) if joined else None
        print(json.dumps(parity, indent=1), flush=True)

        throughput, load_seconds = measure_throughput(predictor, texts, titles_file, args) if args.rounds else ({}, {})

    info = machine_info(args.threads)
    report = {
        "command": "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])]),
        "machine": info,
        "machine_slug": machine_slug(info),
        "node": node_versions(),
        "model": {
            "folder": str(args.model_dir),
            "sha256": predictor.manifest.get("model", {}).get("sha256"),
            "quantization": predictor.manifest.get("quantization"),
            "max_length": predictor.max_length,
        },
        "data": data,
        "seed": args.seed,
        "threads": args.threads,
        "batch_size": args.batch_size,
        "load_seconds": load_seconds,
        "parity": parity,
        "throughput": throughput,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_results(args.results, report, render(report))
    return report


def _fmt(x: float | None) -> str:
    return "–" if x is None else f"{x:.1e}"


def render(report: dict) -> str:
    p, t, m, n = report["parity"], report["throughput"], report["machine"], report["node"]
    q = report["model"]["quantization"] or {}
    precision = " ".join(filter(None, (q.get("mode", "fp32"), q.get("scheme"))))
    lines = [
        "# Node.js (transformers.js, onnxruntime-node / onnxruntime-web) vs the Python Predictor",
        "",
        f"Export: {report['model']['folder']} ({precision}, max_length "
        f"{report['model']['max_length']}, sha256 {str(report['model']['sha256'])[:12]}…). Texts: {p['texts']:,} "
        f"validation titles ({report['data']}, evaluation split, seed {report['seed']}), and texts of four of "
        f"them joined (to exercise truncation at max_length). Machine: {m['cpu']} ({m['usable_cpus']} CPUs), "
        f"{report['threads']} threads; Python onnxruntime {m['versions'].get('onnxruntime')}; Node {n['node']}, "
        f"@huggingface/transformers {n['@huggingface/transformers']}, onnxruntime-node {n['onnxruntime-node']}, "
        f"onnxruntime-web {n['onnxruntime-web']} (WebAssembly, run in Node.js).",
        "",
        "| texts | cut at max_length | runtime | label agreement with Predictor | max \\|Δp\\| | "
        "max \\|Δp\\| on cut texts |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in (("titles", p), ("4 titles joined", p.get("joined_titles"))):
        if not r:
            continue
        plain = r["plain_pipeline"]
        for label, e in (("classify.mjs (onnxruntime-node)", r), ("classify.mjs --engine web", r["web"])):
            lines.append(
                f"| {name} ({r['texts']:,}) | {r['cut_at_max_length']:,} | {label} | {e['agreement']:.2%} "
                f"({e['label_changes']} changes) | {_fmt(e['max_abs_prob_diff'])} (15 classes) | "
                f"{_fmt(e['max_abs_prob_diff_cut'])} |"
            )
        lines.append(
            f"| {name} ({r['texts']:,}) | {r['cut_at_max_length']:,} | plain `pipeline('text-classification')` | "
            f"{plain['agreement']:.2%} ({plain['label_changes']} changes, {plain['label_changes_cut']} on cut texts) "
            f"| {_fmt(plain['max_abs_top_score_diff_not_cut'])} (top score, uncut texts) | "
            f"{_fmt(plain['max_abs_top_score_diff_cut'])} (top score) |"
        )
    if not t:
        return "\n".join([*lines, "", f"Command: `{report['command']}`", ""])
    lines += [
        "",
        f"Throughput, batch {report['batch_size']}, all {p['texts']:,} titles per round, the three alternating in "
        f"{len(t['predictor']['rounds'])} rounds: median (min–max).",
        "",
        "| runtime | titles/s | ratio to Predictor (median of per-round ratios) | load (s) |",
        "|---|---|---|---|",
        f"| Python `Predictor` | {t['predictor']['median']:.1f} ({t['predictor']['min']:.1f}–"
        f"{t['predictor']['max']:.1f}) | 1 | |",
    ]
    for engine, label in (("node", "classify.mjs (onnxruntime-node)"), ("web", "classify.mjs --engine web")):
        r = t[f"{engine}_over_predictor"]
        lines.append(
            f"| {label} | {t[engine]['median']:.1f} ({t[engine]['min']:.1f}–{t[engine]['max']:.1f}) | "
            f"{r['median']:.3f} ({r['min']:.3f}–{r['max']:.3f}) | {report['load_seconds'][engine]:.2f} |"
        )
    load = t.get("load_average_1min")
    lines += [
        "",
        "Load: sha256 check + tokenizer + session, in the Node process."
        + (
            f" Machine load average (1 min) {load['before']} before and {load['after']} after the rounds "
            f"({m['usable_cpus']} CPUs shared with other jobs)."
            if load
            else ""
        ),
        "",
        f"Command: `{report['command']}`",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()

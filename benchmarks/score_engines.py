#!/usr/bin/env python3
"""Batch scoring: the local engine against Ray actor pools, on the same inputs, in one run.

    python benchmarks/score_engines.py EXPORT_DIR INPUT... --rounds 2 \
        --work /tmp/score-bench --results benchmarks/results/NAME-score

Each round runs `tnews-deploy score` (a fresh process each time) as: local with `--local-threads` threads,
Ray with 2 actors x 1 thread, Ray with 1 actor x 1 thread, in alternating order over the rounds (the CPU may be
shared with other jobs: load averages are recorded with every run). rows/s is the job's own figure from its
`_SUCCESS` (model load, scoring and writing; for Ray from the dataset start, actors' start-up included, a local
Ray's own start excluded); wall seconds are also recorded. It also runs a local job over the first
`--small-rows` rows, for the peak RSS of a small job against the full one (the process's ru_maxrss).

Checks: rows out = rows in for every run; every engine's labels and scores against the first local run's; a
seeded sample of `--check-rows` rows against `Predictor.predict` directly. Writes NAME.json and NAME.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from results_io import write_results

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def run_job(name: str, model: str, inputs: list[str], out: Path, extra: list[str]) -> dict:
    """One `tnews-deploy score` process: its summary, wall seconds, peak RSS and the load around it."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    command = [
        sys.executable,
        "-m",
        "tnews_deploy.cli",
        "-q",
        "score",
        model,
        *inputs,
        "--output",
        str(out),
        "--force",
        *extra,
    ]
    load_before = os.getloadavg()
    start = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    stdout, stderr = proc.stdout.read(), proc.stderr.read()
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 1):
        raise SystemExit(f"{name} failed ({code}):\n{stderr[-3000:]}")
    summary = json.loads(stdout.splitlines()[0])
    return {
        "name": name,
        "rows": summary["rows"],
        "errors": summary["errors"],
        "seconds": summary["seconds"],
        "rows_per_second": summary["rows_per_second"],
        "wall_seconds": round(wall, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "output": str(out),
        "settings": summary["settings"],
    }


def rows_in(inputs: list[str]) -> int:
    return sum(1 for path in inputs for _ in open(path, "rb"))


def keyed(folder: str):
    import pyarrow.parquet as pq

    table = pq.read_table(folder, columns=["source", "id", "label_id", "score"]).to_pandas()
    return table.set_index(["source", "id"]).sort_index()


def compare(reference: str, other: str) -> dict:
    a, b = keyed(reference), keyed(other)
    same_rows = a.index.equals(b.index)
    b = b.reindex(a.index)
    return {
        "same_rows": bool(same_rows),
        "label_mismatches": int((a.label_id != b.label_id).sum()),
        "max_abs_score_diff": float((a.score - b.score).abs().max()),
    }


def check_predictor(model: str, inputs: list[str], reference: str, n: int, seed: int = 0) -> dict:
    """A seeded sample of rows through `Predictor.predict` directly, against the local engine's output."""
    sys.path.insert(0, str(ROOT))
    from tnews_deploy.predictor import Predictor

    rows = []
    for path in inputs:
        with open(path, encoding="utf-8") as fh:
            rows.extend((path, json.loads(line)) for line in fh)
    sample = random.Random(seed).sample(rows, min(n, len(rows)))
    predictions = Predictor(model, threads=2).predict([obj["sentence"] for _, obj in sample])
    table = keyed(reference)
    got = table.loc[[(path, str(obj["idx"])) for path, obj in sample]]
    return {
        "rows": len(sample),
        "label_mismatches": int(sum(int(g) != p.label_id for g, p in zip(got.label_id, predictions))),
        "max_abs_score_diff": float(max(abs(g - p.score) for g, p in zip(got.score, predictions))),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("inputs", nargs="+", help=".jsonl files (TNEWS: idx + sentence)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--local-threads", type=int, default=2)
    parser.add_argument("--small-rows", type=int, default=1000)
    parser.add_argument("--check-rows", type=int, default=2000)
    parser.add_argument("--work", type=Path, required=True, help="where the outputs go (large)")
    parser.add_argument("--results", type=Path, required=True, help="NAME: writes NAME.json and NAME.md")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    small = args.work / "small.jsonl"
    with open(args.inputs[0], "rb") as src, small.open("wb") as dst:
        for _, line in zip(range(args.small_rows), src):
            dst.write(line)
    total_in = rows_in(args.inputs)

    configs = [
        ("local", ["--engine", "local", "--threads", str(args.local_threads)]),
        ("ray-2x1", ["--engine", "ray", "--actors", "2", "--threads-per-actor", "1"]),
        ("ray-1x1", ["--engine", "ray", "--actors", "1", "--threads-per-actor", "1"]),
    ]
    runs: list[dict] = []
    results: dict = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": args.model,
        "inputs": args.inputs,
        "rows_in": total_in,
        "runs": runs,
        "note": "the 1-minute load average before each run is recorded (other jobs may share the CPU)",
    }
    sys.path.insert(0, str(ROOT))
    from tnews_deploy.machine import machine_info

    results["machine"] = machine_info(args.local_threads)
    for round_index in range(args.rounds):
        order = configs if round_index % 2 == 0 else configs[::-1]
        for name, extra in order:
            run = run_job(name, args.model, args.inputs, args.work / f"{name}-r{round_index}", extra)
            run["round"] = round_index
            runs.append(run)
            print(json.dumps(run), flush=True)
            args.results.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
        run = run_job(
            "local-small",
            args.model,
            [str(small)],
            args.work / f"small-r{round_index}",
            ["--engine", "local", "--threads", str(args.local_threads)],
        )
        run["round"] = round_index
        runs.append(run)
        print(json.dumps(run), flush=True)

    def median(name: str, key: str) -> float:
        return statistics.median(r[key] for r in runs if r["name"] == name)

    reference = next(r["output"] for r in runs if r["name"] == "local")
    results["rows_out_equal_rows_in"] = all(r["rows"] == total_in for r in runs if r["name"] != "local-small")
    results["against_local"] = {
        r["output"]: compare(reference, r["output"])
        for r in runs
        if r["name"] != "local-small" and r["output"] != reference
    }
    results["against_predictor"] = check_predictor(args.model, args.inputs, reference, args.check_rows)
    results["summary"] = {
        name: {
            "median_rows_per_second": median(name, "rows_per_second"),
            "median_seconds": median(name, "seconds"),
            "median_wall_seconds": median(name, "wall_seconds"),
            "median_peak_rss_mb": median(name, "peak_rss_mb"),
        }
        for name, _ in [*configs, ("local-small", [])]
    }
    s = results["summary"]

    def ratio(a: str, b: str, key: str) -> float:
        return round(s[a][key] / s[b][key], 3)

    results["ratios"] = {
        "ray_2x1_over_local": ratio("ray-2x1", "local", "median_rows_per_second"),
        "ray_2x1_over_ray_1x1": ratio("ray-2x1", "ray-1x1", "median_rows_per_second"),
        "local_peak_rss_full_over_small": ratio("local", "local-small", "median_peak_rss_mb"),
    }

    lines = [
        f"# Batch scoring: local engine vs Ray ({results['created']})",
        "",
        f"Model: `{args.model}`; inputs: {', '.join(f'`{p}`' for p in args.inputs)} ({total_in:,} rows); "
        f"CPU: {results['machine']['cpu']}, {results['machine']['usable_cpus']} usable cores. "
        f"{results['note']}.",
        "",
        "| run | round | rows | seconds | rows/s | wall s | peak RSS MB (driver) | load before |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        lines.append(
            f"| {r['name']} | {r['round']} | {r['rows']:,} | {r['seconds']:.1f} | {r['rows_per_second']:.1f} "
            f"| {r['wall_seconds']:.1f} | {r['peak_rss_mb']:.0f} | {r['load_before'][0]:.2f} |"
        )
    lines += ["", "| engine | median rows/s | median seconds | median peak RSS MB |", "|---|---|---|---|"]
    for name, v in s.items():
        lines.append(
            f"| {name} | {v['median_rows_per_second']:.1f} | {v['median_seconds']:.1f} | "
            f"{v['median_peak_rss_mb']:.0f} |"
        )
    ratios = results["ratios"]
    lines += [
        "",
        f"- Ray 2 actors x 1 thread / local {args.local_threads} threads (rows/s): "
        f"**{ratios['ray_2x1_over_local']:.3f}**",
        f"- Ray 2 actors / 1 actor (rows/s): **{ratios['ray_2x1_over_ray_1x1']:.3f}**",
        f"- Peak RSS, {total_in:,}-row local job / {args.small_rows:,}-row local job: "
        f"**{ratios['local_peak_rss_full_over_small']:.3f}**",
        f"- Rows out = rows in for every run: {results['rows_out_equal_rows_in']}",
        f"- Against the first local run: {json.dumps(results['against_local'])}",
        f"- {results['against_predictor']['rows']:,} sampled rows against `Predictor.predict`: "
        f"{results['against_predictor']['label_mismatches']} label mismatches, max |score diff| "
        f"{results['against_predictor']['max_abs_score_diff']:.2e}",
        "",
    ]
    write_results(args.results, results, "\n".join(lines))


if __name__ == "__main__":
    main()

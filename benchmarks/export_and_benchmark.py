#!/usr/bin/env python3
"""Export a checkpoint as several ONNX variants, then benchmark them all against PyTorch.

    python benchmarks/export_and_benchmark.py SOURCE --data DATA --work runs/bench-e5 \
        --results benchmarks/results/<machine>-<model>

SOURCE is a checkpoint, run or grid folder. Each variant is exported (and
verified) with `tnews_deploy.export.export_model` into WORK/exports/<variant>;
a variant already exported there is reused. The side-by-side benchmark runs with
`tnews_deploy.benchmark.run_benchmark` into WORK/bench, and its results.md/.json
are copied to RESULTS.md/.json with the command line that produced them.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import shutil
import sys
from pathlib import Path

from results_io import write_results
from tnews_deploy.benchmark import BenchmarkConfig, run_benchmark
from tnews_deploy.export import ExportConfig, GatePolicy, export_model

VARIANTS = {
    "fp32": dict(),
    "o2": dict(optimize="O2"),
    "o3": dict(optimize="O3"),
    "int8": dict(quantize="int8"),
    "int8-o2": dict(quantize="int8", optimize="O2"),
    "int8-dynamic": dict(quantize="int8-dynamic"),
    "int8-dynamic-o2": dict(quantize="int8-dynamic", optimize="O2"),
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path)
    parser.add_argument("--data", required=True)
    parser.add_argument("--work", type=Path, required=True, help="folder for exports/ and bench/")
    parser.add_argument("--results", type=Path, help="path stem for the committed results (.md and .json)")
    parser.add_argument("--variants", default="fp32,o2,int8,int8-o2", help=f"from {', '.join(VARIANTS)}")
    parser.add_argument("--eval-size", type=int, help="benchmark sentences (default: the exports' evaluation set)")
    parser.add_argument("--export-eval-size", type=int, help="verification sentences (default: the run's)")
    parser.add_argument("--max-f1-drop", type=float, default=0.01)
    parser.add_argument("--min-agreement", type=float, default=0.999)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency-sentences", type=int, default=300)
    parser.add_argument("--batch-sizes", default="8,32")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--pytorch-sorted", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stdout, format="  %(message)s")  # the exporter's progress lines
    logging.getLogger("tnews_deploy").setLevel(logging.INFO)
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)

    folders = []
    for name in args.variants.split(","):
        target = args.work / "exports" / name
        if not (target / "manifest.json").is_file():
            print(f"== exporting {name}", flush=True)
            config = ExportConfig(
                **VARIANTS[name],
                data=args.data,
                eval_size=args.export_eval_size,
                policy=GatePolicy(args.min_agreement, args.max_f1_drop),
            )
            export_model(args.source, target, config)
        folders.append(target)

    print("== benchmarking", flush=True)
    report = run_benchmark(
        BenchmarkConfig(
            pytorch=args.source,
            onnx=tuple(folders),
            output=args.work / "bench",
            data=args.data,
            eval_size=args.eval_size,
            threads=args.threads,
            rounds=args.rounds,
            latency_sentences=args.latency_sentences,
            batch_sizes=tuple(int(b) for b in args.batch_sizes.split(",")),
            pytorch_sorted=args.pytorch_sorted,
        ),
        command=command,
    )
    exports = {f.name: json.loads((f / "manifest.json").read_text())["verification"] for f in folders}
    report["export_verification"] = exports
    (args.work / "bench" / "results.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    if args.results:
        from tnews_deploy.benchmark import render_markdown

        write_results(args.results, report, render_markdown(report))
        for png in ("latency.png", "throughput.png"):
            shutil.copy(args.work / "bench" / png, args.results.parent / f"{args.results.name}-{png}")
    else:
        print((args.work / "bench" / "results.md").read_text())


if __name__ == "__main__":
    main()

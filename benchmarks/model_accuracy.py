#!/usr/bin/env python3
"""Accuracy and macro-F1 of exported models on a whole labelled validation file, with bootstrap intervals.

    python benchmarks/model_accuracy.py default runs/box/teacher-int8 \
        --data ../shared/data/tnews/hf --results benchmarks/results/<machine>-default-model-accuracy

Each MODEL is what `Predictor` takes: an export folder, `default` (the bundled model) or an installed model
package's name. Every text of DATA/validation.jsonl (HF schema: `sentence`, integer `label`) is classified
through the runtime `Predictor` (the path users run), and per model: accuracy and macro-F1 (scikit-learn), a
95 % bootstrap interval of each (1,000 resamples of the texts, seeded), per-class F1, and agreement with the
first model. Nothing is selected on these texts here; that the model never saw them in training or selection
is a property of how it was made (docs/model.md).

Writes RESULTS.json (every figure, the machine, the command) and RESULTS.md (the table).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np

from results_io import write_results

BOOTSTRAP = 1000


def bootstrap(labels: np.ndarray, predicted: np.ndarray, seed: int = 0) -> dict[str, list[float]]:
    """95 % percentile intervals of accuracy and macro-F1 over resampled texts."""
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(seed)
    acc, f1 = [], []
    for _ in range(BOOTSTRAP):
        idx = rng.integers(0, len(labels), len(labels))
        acc.append(float((labels[idx] == predicted[idx]).mean()))
        f1.append(float(f1_score(labels[idx], predicted[idx], average="macro", zero_division=0)))
    return {
        name: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))]
        for name, v in (("accuracy", acc), ("macro_f1", f1))
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", metavar="MODEL")
    parser.add_argument("--data", required=True, help="folder with validation.jsonl (HF schema)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--results", required=True, type=Path)
    args = parser.parse_args()

    from sklearn.metrics import f1_score

    from tnews_deploy.machine import machine_info
    from tnews_deploy.predictor import Predictor, default_threads

    rows = [json.loads(line) for line in (Path(args.data) / "validation.jsonl").read_text("utf-8").splitlines()]
    texts = [r["sentence"] for r in rows]
    labels = np.array([int(r["label"]) for r in rows])
    results, reference = [], None
    for model in args.models:
        predictor = Predictor(model, threads=args.threads)
        predicted = np.array([p.label_id for p in predictor.predict(texts)])
        reference = predicted if reference is None else reference
        per_class = f1_score(labels, predicted, average=None, labels=range(len(predictor.labels)), zero_division=0)
        results.append(
            {
                "model": model,
                "name": predictor.model_name,
                "version": predictor.model_version,
                "sha256": predictor.manifest.get("model", {}).get("sha256"),
                "texts": len(texts),
                "accuracy": float((predicted == labels).mean()),
                "macro_f1": float(f1_score(labels, predicted, average="macro", zero_division=0)),
                "interval_95": bootstrap(labels, predicted),
                "agreement_with_first": float((predicted == reference).mean()),
                "f1_per_class": dict(zip(predictor.labels, map(float, per_class))),
            }
        )
        print(
            f"{model}: accuracy {results[-1]['accuracy']:.4f}, macro-F1 {results[-1]['macro_f1']:.4f}", file=sys.stderr
        )

    command = "python benchmarks/model_accuracy.py " + shlex.join(sys.argv[1:])
    lines = [
        f"# Accuracy on all {len(texts):,} texts of `{Path(args.data).name}/validation.jsonl`",
        "",
        "Through the runtime `Predictor`; 95 % bootstrap intervals (1,000 resamples of the texts).",
        "",
        "| model | name | accuracy | 95 % interval | macro-F1 | 95 % interval | agreement with the first |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        (a0, a1), (f0, f1) = r["interval_95"]["accuracy"], r["interval_95"]["macro_f1"]
        lines.append(
            f"| `{r['model']}` | {r['name']} {r['version'] or ''} | {r['accuracy']:.4f} | [{a0:.3f}, {a1:.3f}] | "
            f"{r['macro_f1']:.4f} | [{f0:.3f}, {f1:.3f}] | {r['agreement_with_first']:.2%} |"
        )
    lines += ["", "Command:", "", "```", command, "```", ""]
    report = {
        "machine": machine_info(args.threads or default_threads()),
        "command": command,
        "data": args.data,
        "results": results,
    }
    write_results(args.results, report, "\n".join(lines))


if __name__ == "__main__":
    main()

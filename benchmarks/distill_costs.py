#!/usr/bin/env python3
"""What the two cost choices of `tnews-deploy distill` rest on, measured side by side.

    OMP_NUM_THREADS=1 python benchmarks/distill_costs.py TEACHER_RUN --onnx EXPORT_DIR \
        --data DATA --results benchmarks/results/<machine>-distill-costs

1. Teacher logits: ms per text through PyTorch (`export.verify.pytorch_logits`, model
   loaded once) and through the runtime `Predictor` on an fp32 export, on the same
   texts, alternating rounds.
2. A student training step (forward + backward + AdamW, batch 32, N layers copied from
   the teacher) with the word embeddings frozen and trained, alternating steps.

Both run on the threads torch and onnxruntime are given (1 with OMP_NUM_THREADS=1).
Writes RESULTS.json and RESULTS.md with the command line.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time
from pathlib import Path

from results_io import write_results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("teacher", type=Path, help="the teacher's run folder")
    parser.add_argument("--onnx", type=Path, required=True, help="an fp32 export of the teacher")
    parser.add_argument("--data", required=True)
    parser.add_argument("--texts", type=int, default=256, help="texts per teacher-logits round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--steps", type=int, default=6, help="timed student steps per setting")
    parser.add_argument("--results", type=Path, required=True)
    args = parser.parse_args(argv)

    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from tnews_deploy.compress.distill import build_student, evenly_spaced_layers, teacher_layer_count
    from tnews_deploy.data import load_tnews
    from tnews_deploy.predictor import Predictor

    threads = torch.get_num_threads()
    checkpoint = args.teacher / "checkpoint"
    texts = list(load_tnews(args.data)["train"]["sentence"][: args.texts * 2 + 32])
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    teacher = AutoModelForSequenceClassification.from_pretrained(checkpoint).eval()
    predictor = Predictor(args.onnx, threads=threads)

    def torch_logits(batch: list[str]) -> None:
        with torch.inference_mode():
            for start in range(0, len(batch), 64):
                encoded = tokenizer(
                    batch[start : start + 64], truncation=True, max_length=64, padding=True, return_tensors="pt"
                )
                teacher(**encoded)

    timings: dict[str, list[float]] = {"pytorch": [], "onnxruntime": []}
    sample = texts[: args.texts]
    torch_logits(texts[-32:])
    predictor.logits(texts[-32:])
    for _ in range(args.rounds):
        for name, run in (("pytorch", torch_logits), ("onnxruntime", predictor.logits)):
            started = time.perf_counter()
            run(sample)
            timings[name].append((time.perf_counter() - started) / len(sample) * 1000)

    indices = evenly_spaced_layers(teacher_layer_count(checkpoint), args.layers)
    student, _ = build_student(checkpoint, indices)
    student.train()
    embeddings = student.get_input_embeddings().weight
    optimisers = {}
    for frozen in (True, False):
        embeddings.requires_grad_(not frozen)
        optimisers[frozen] = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=1e-6)
    steps: dict[str, list[float]] = {"frozen word embeddings": [], "trained word embeddings": []}
    batches = [texts[i * 32 : (i + 1) * 32] for i in range(args.steps + 1)]
    for i, batch in enumerate(batches):
        for frozen, name in ((True, "frozen word embeddings"), (False, "trained word embeddings")):
            embeddings.requires_grad_(not frozen)
            encoded = tokenizer(batch, truncation=True, max_length=64, padding=True, return_tensors="pt")
            started = time.perf_counter()
            student(**encoded).logits.logsumexp(-1).mean().backward()
            optimisers[frozen].step()
            student.zero_grad(set_to_none=True)
            if i:  # the first step of each is warm-up (allocates AdamW state)
                steps[name].append(time.perf_counter() - started)

    def summary(values: list[float]) -> dict[str, float]:
        return {
            "median": round(statistics.median(values), 3),
            "min": round(min(values), 3),
            "max": round(max(values), 3),
            "n": len(values),
        }

    results = {
        "command": "python benchmarks/distill_costs.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])),
        "threads": threads,
        "teacher_ms_per_text": {k: summary(v) for k, v in timings.items()},
        "student_layers": list(indices),
        "student_step_seconds_batch_32": {k: summary(v) for k, v in steps.items()},
        "trainable_parameters": {
            "frozen word embeddings": sum(p.numel() for n, p in student.named_parameters() if p is not embeddings),
            "trained word embeddings": sum(p.numel() for p in student.parameters()),
        },
    }
    t, s = results["teacher_ms_per_text"], results["student_step_seconds_batch_32"]
    lines = [
        "# Distillation costs",
        "",
        f"{threads} thread(s); medians over alternating rounds (min–max).",
        "",
        f"Teacher logits, ms per text ({args.texts} texts a round, {args.rounds} rounds):",
        "",
        "| backend | ms/text |",
        "|---|---|",
        *(f"| {k} | {v['median']} ({v['min']}–{v['max']}) |" for k, v in t.items()),
        "",
        f"Student training step, batch 32, layers {list(indices)} ({args.steps} steps each):",
        "",
        "| word embeddings | s/step | trainable parameters |",
        "|---|---|---|",
        *(
            f"| {k} | {v['median']} ({v['min']}–{v['max']}) | {results['trainable_parameters'][k]:,} |"
            for k, v in s.items()
        ),
        "",
        "Command:",
        "",
        "```",
        results["command"],
        "```",
    ]
    write_results(args.results, results, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

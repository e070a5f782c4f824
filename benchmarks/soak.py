#!/usr/bin/env python3
"""Soak test: does memory stay bounded over many predictions of varied shapes?

    python benchmarks/soak.py EXPORT_DIR --data ../shared/data/tnews/hf \
        --memory ort-default,arena,shrink,no-arena --http --results benchmarks/results/NAME-soak

For each `--memory` mode, a fresh process runs `--predictions` texts through one
`Predictor`, in calls whose batch size is drawn from 1..`--max-batch` and whose
texts are real TNEWS titles or, for a share of them, concatenations of titles
up to `--max-chars` characters (so that every length from 1 to the cap occurs).
It samples the process's RSS after every call. The same seeded request stream
goes through every mode, so their seconds compare (the modes run one after
another, in alternating order over `--rounds`). With `--http`, the same stream
is then sent to `tnews-deploy serve` on 127.0.0.1 (the predictor's default
mode), sampling the server's RSS.

Reported per run: RSS after `--warmup` predictions, at the end, the growth
between the two, the peak (VmHWM), seconds and texts/s. Writes NAME.json,
NAME.md and NAME.png (RSS over predictions).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

from results_io import write_results

HERE = Path(__file__).resolve().parent


def rss_mb(pid: int | str = "self") -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MB, from /proc."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            key, value = line.split(":", 1)
            fields[key] = int(value.split()[0]) / 1024
    return fields.get("VmRSS", 0.0), fields.get("VmHWM", 0.0)


def titles_from(data: str | None, limit: int = 20_000) -> list[str]:
    """Real TNEWS titles (validation, then train) or, without data, synthetic ones."""
    if data:
        titles = []
        for split in ("validation", "train"):
            path = Path(data) / f"{split}.jsonl"
            if path.is_file():
                with path.open(encoding="utf-8") as fh:
                    for line in fh:
                        titles.append(json.loads(line)["sentence"])
                        if len(titles) >= limit:
                            return titles
        if titles:
            return titles
    rng = random.Random(0)
    alphabet = [chr(c) for c in range(0x4E00, 0x4E00 + 2000)]
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(4, 30))) for _ in range(2000)]


def request_stream(
    titles: list[str], predictions: int, max_batch: int, max_chars: int, seed: int, long_share: float = 0.2
):
    """Batches of texts, `predictions` texts in all; a `long_share` of texts are 1..max_chars long."""
    rng = random.Random(seed)
    done = 0
    while done < predictions:
        size = min(rng.randint(1, max_batch), predictions - done)
        batch = []
        for _ in range(size):
            if rng.random() < long_share:
                target = rng.randint(1, max_chars)
                text = ""
                while len(text) < target:
                    text += rng.choice(titles)
                batch.append(text[:target] if text[:target].strip() else "新")
            else:
                batch.append(rng.choice(titles))
        done += size
        yield batch


# --------------------------------------------------------------------------- one run (child process)


def child(args: argparse.Namespace) -> None:
    from tnews_deploy import Predictor

    titles = titles_from(args.data)
    predictor = Predictor(args.model, threads=args.threads, memory=args.memory)
    samples = []
    done = 0
    started = time.perf_counter()
    for batch in request_stream(titles, args.predictions, args.max_batch, args.max_chars, args.seed):
        predictor.predict_proba(batch)
        done += len(batch)
        rss, hwm = rss_mb()
        samples.append((done, round(rss, 1), round(time.perf_counter() - started, 3)))
    seconds = time.perf_counter() - started
    json.dump({"samples": samples, "seconds": seconds, "peak_mb": rss_mb()[1]}, sys.stdout)


def run_child(args: argparse.Namespace, memory: str) -> dict:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        str(args.model),
        "--child",
        "--memory",
        memory,
        "--predictions",
        str(args.predictions),
        "--max-batch",
        str(args.max_batch),
        "--max-chars",
        str(args.max_chars),
        "--seed",
        str(args.seed),
        "--threads",
        str(args.threads),
    ]
    if args.data:
        cmd += ["--data", args.data]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


# --------------------------------------------------------------------------- HTTP


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_http(args: argparse.Namespace) -> dict:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tnews_deploy.cli",
            "serve",
            str(args.model),
            "--port",
            str(port),
            "--threads",
            str(args.threads),
            "--max-batch",
            str(args.max_batch),
            "--max-chars",
            str(args.max_chars),
            "--log-level",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(base + "/healthz", timeout=2).read()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the service did not start: " + server.stderr.read().decode()[-2000:]) from None
                time.sleep(0.3)
        titles = titles_from(args.data)
        samples, done = [], 0
        started = time.perf_counter()
        for batch in request_stream(titles, args.predictions, args.max_batch, args.max_chars, args.seed):
            body = json.dumps({"texts": batch}).encode()
            request = urllib.request.Request(base + "/v1/classify", body, {"content-type": "application/json"})
            with urllib.request.urlopen(request, timeout=300) as response:
                assert response.status == 200
                response.read()
            done += len(batch)
            samples.append((done, round(rss_mb(server.pid)[0], 1), round(time.perf_counter() - started, 3)))
        seconds = time.perf_counter() - started
        peak = rss_mb(server.pid)[1]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
    return {"samples": samples, "seconds": seconds, "peak_mb": peak}


# --------------------------------------------------------------------------- report


def summarise(run: dict, warmup: int) -> dict:
    samples = run["samples"]
    after_warmup = next((rss for done, rss, _ in samples if done >= warmup), samples[-1][1])
    end = samples[-1][1]
    predictions = samples[-1][0]
    return {
        "rss_after_warmup_mb": after_warmup,
        "rss_end_mb": end,
        "growth_after_warmup": round((end - after_warmup) / after_warmup, 4),
        "max_rss_after_warmup_mb": max(rss for done, rss, _ in samples if done >= warmup),
        "peak_mb": round(run["peak_mb"], 1),
        "seconds": round(run["seconds"], 1),
        "texts_per_s": round(predictions / run["seconds"], 1),
    }


def render(report: dict) -> str:
    m = report["model"]
    lines = [
        f"# Soak: {report['predictions']:,} predictions, batch 1–{report['max_batch']}, 1–{report['max_chars']:,} "
        "characters",
        "",
        f"Model: `{m['name']}` ({m['mb']:.1f} MB model.onnx, {m['quantization']}); machine: {report['machine']}; "
        f"{report['threads']} thread(s); warm-up {report['warmup']:,} predictions; {report['rounds']} round(s).",
        "",
        "| run | RSS after warm-up MB | RSS at end MB | growth | peak MB | peak / model size | texts/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, rounds in report["runs"].items():
        for i, s in enumerate(rounds):
            label = name if len(rounds) == 1 else f"{name} (round {i + 1})"
            lines.append(
                f"| {label} | {s['rss_after_warmup_mb']:.0f} | {s['rss_end_mb']:.0f} | "
                f"{s['growth_after_warmup']:+.1%} | {s['peak_mb']:.0f} | {s['peak_mb'] / m['mb']:.1f}× | "
                f"{s['texts_per_s']:.0f} |"
            )
    lines += ["", f"Command: `{report['command']}`", ""]
    return "\n".join(lines)


def plot(report: dict, curves: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, samples in curves.items():
        ax.plot([s[0] for s in samples], [s[1] for s in samples], label=name, linewidth=1.2)
    ax.axvline(report["warmup"], color="grey", linestyle=":", linewidth=1, label="end of warm-up")
    ax.set_xlabel("predictions")
    ax.set_ylabel("RSS (MB)")
    ax.set_title(f"RSS over a soak of {report['predictions']:,} predictions ({report['model']['name']})")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def machine() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} CPUs"
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="an exported model folder")
    parser.add_argument("--data", help="a TNEWS HF-JSONL folder for real titles (default: synthetic titles)")
    parser.add_argument("--predictions", type=int, default=50_000)
    parser.add_argument("--warmup", type=int, default=2_000)
    parser.add_argument("--max-batch", type=int, default=256)
    parser.add_argument("--max-chars", type=int, default=2_000)
    parser.add_argument("--memory", default="arena", help="comma-separated Predictor memory modes")
    parser.add_argument("--rounds", type=int, default=1, help="repeat the modes, alternating their order")
    parser.add_argument("--http", action="store_true", help="also soak `tnews-deploy serve` (default mode)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results", type=Path, help="path prefix for .json/.md/.png")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    modes = [m.strip() for m in args.memory.split(",") if m.strip()]
    runs: dict[str, list[dict]] = {}
    curves: dict[str, list] = {}
    for r in range(args.rounds):
        for memory in modes if r % 2 == 0 else modes[::-1]:
            print(f"round {r + 1}: predictor, memory={memory} ...", file=sys.stderr, flush=True)
            raw = run_child(args, memory)
            runs.setdefault(f"predictor {memory}", []).append(summarise(raw, args.warmup))
            curves.setdefault(f"predictor {memory}", raw["samples"])
    if args.http:
        print("HTTP service ...", file=sys.stderr, flush=True)
        raw = run_http(args)
        runs["http serve (default)"] = [summarise(raw, args.warmup)]
        curves["http serve (default)"] = raw["samples"]

    manifest_path = args.model / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    report = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "threads": args.threads,
        "predictions": args.predictions,
        "warmup": args.warmup,
        "max_batch": args.max_batch,
        "max_chars": args.max_chars,
        "rounds": args.rounds,
        "seed": args.seed,
        "model": {
            "name": args.model.name,
            "mb": (args.model / "model.onnx").stat().st_size / 1e6,
            "quantization": ((manifest.get("quantization") or {}).get("mode") or "fp32"),
        },
        "command": "python benchmarks/soak.py " + " ".join(sys.argv[1:]),
        "runs": runs,
    }
    text = render(report)
    if args.results:
        write_results(args.results, {**report, "curves": curves}, text)
        plot(report, curves, args.results.with_suffix(".png"))
    else:
        print(text)


if __name__ == "__main__":
    main()

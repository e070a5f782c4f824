#!/usr/bin/env python3
r"""HTTP load test of `tnews-deploy serve` on loopback, with wrk.

    python benchmarks/load_test.py runs/bench-e5/exports/int8 --data ../shared/data/tnews/hf \
        --results docs/load-test

Several models side by side (MODEL: an export folder, or a model name such as `default`, the bundled model):

    python benchmarks/load_test.py default exports/teacher-int8 --data ../shared/data/tnews/hf \
        --concurrency 8,32 --texts-per-request 1 --rounds 3 --duration 10 --results docs/load-test

For each model, starts the service on 127.0.0.1 (a free port), checks it answers, then runs wrk
(Debian package `wrk`) for each concurrency level with POST /v1/classify bodies
that rotate over real TNEWS validation sentences (one text per request by
default). Records requests/s, latency p50/p90/p99, the service's CPU seconds,
non-2xx responses and socket errors, and checks the service is still healthy
afterwards. Every round runs each (model, window) once, the service started afresh
for each, in an order alternating round by round. Writes RESULTS.md and
RESULTS.json (each model's folder, name, version and manifest sha256). Traffic
goes to 127.0.0.1 only, and every wrk run is bounded by --duration.

Micro-batching on and off, alternating on a shared machine (about 11 minutes):

    python benchmarks/load_test.py exports/int8 --data ../shared/data/tnews/hf \
        --batch-window-ms 0,2 --rounds 3 --concurrency 1,8,32 --texts-per-request 1,8 \
        --duration 10 --results docs/load-test-microbatch
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

from results_io import write_results
from tnews_deploy.errors import UserError
from tnews_deploy.machine import machine_info
from tnews_deploy.models import locate_model, model_identity

LUA = """
local bodies = {%s}
local i = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  i = i %% #bodies + 1
  return wrk.format(nil, "/v1/classify", nil, bodies[i])
end
"""


def lua_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(base: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(base + "/healthz", timeout=1).status == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("the service did not become healthy")


def to_ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value).groups()
    return float(number) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


def parse_wrk(output: str) -> dict:
    result = {
        "requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
        "requests": int(re.search(r"(\d+) requests in", output).group(1)),
    }
    for pct in ("50", "75", "90", "99"):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", output, re.M)
        result[f"p{pct}_ms"] = round(to_ms(m.group(1)), 2) if m else None
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    result["non_2xx"] = int(non2xx.group(1)) if non2xx else 0
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    result["socket_errors"] = sum(map(int, socket_errors.groups())) if socket_errors else 0
    return result


def server_cpu_seconds(pid: int) -> float | None:
    """CPU seconds (user + system) process `pid` has used so far; None where /proc cannot say."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def identify(models: list[str]) -> list[dict]:
    """Each MODEL's folder (`locate_model`), name and version (as `Predictor.model_name` / `model_version` say them,
    without loading the model), manifest sha256 and export settings. A name given twice gets ` #2`, ` #3`."""
    identities, names = [], []
    for model in models:
        try:
            resolved = locate_model(model)
        except UserError as exc:
            raise SystemExit(str(exc)) from exc
        manifest_path = resolved.folder / "manifest.json"
        manifest_bytes = manifest_path.read_bytes() if manifest_path.is_file() else b"{}"
        manifest = json.loads(manifest_bytes)
        name, version = model_identity(resolved, manifest)
        names.append(name)
        repeat = names.count(names[-1])
        identities.append(
            {
                "name": names[-1] + (f" #{repeat}" if repeat > 1 else ""),
                "version": version,
                "folder": str(resolved.folder),
                "manifest_sha256": hashlib.sha256(manifest_bytes).hexdigest() if manifest_path.is_file() else None,
                "source": manifest.get("source", {}).get("checkpoint"),
                "quantization": manifest.get("quantization"),
                "optimization": manifest.get("optimization"),
                "bytes": manifest.get("model", {}).get("bytes"),
            }
        )
    return identities


def measure(
    args: argparse.Namespace, model_dir: str, window_ms: float, scripts: dict[int, Path]
) -> tuple[list[dict], bool]:
    """Start `serve` on this model with this micro-batching window, run every level (clients x texts per request),
    stop it."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    serve = [
        sys.executable,
        "-m",
        "tnews_deploy.cli",
        "serve",
        model_dir,
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    if args.server_threads:
        serve += ["--threads", str(args.server_threads)]
    if window_ms:
        serve += ["--batch-window-ms", str(window_ms)]
    server = subprocess.Popen(serve, start_new_session=True)
    levels = []
    try:
        wait_healthy(base)
        subprocess.run(
            ["wrk", "-t1", "-c1", "-d3s", "-s", str(scripts[min(scripts)]), base], capture_output=True, check=True
        )
        for c in (int(x) for x in args.concurrency.split(",")):
            for k, script in scripts.items():
                command = [
                    "wrk",
                    f"-t{min(c, 2)}",
                    f"-c{c}",
                    f"-d{args.duration}s",
                    "--timeout",
                    "10s",
                    "--latency",
                    "-s",
                    str(script),
                    base,
                ]
                print(
                    f"$ {' '.join(command)}  ({model_dir}, window {window_ms} ms, {k} text(s) per request)", flush=True
                )
                cpu_before = server_cpu_seconds(server.pid)
                output = subprocess.run(
                    command, capture_output=True, text=True, check=True, timeout=args.duration + 60
                ).stdout
                cpu_after = server_cpu_seconds(server.pid)
                print(output, flush=True)
                level = {"concurrency": c, "texts_per_request": k, **parse_wrk(output)}
                if cpu_before is not None and cpu_after is not None and cpu_after > cpu_before:
                    level["server_cpu_s"] = round(cpu_after - cpu_before, 2)
                    level["requests_per_cpu_s"] = round(level["requests"] / (cpu_after - cpu_before), 1)
                levels.append(level)
        healthy_after = urllib.request.urlopen(base + "/healthz", timeout=5).status == 200
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    return levels, healthy_after


def summarise(runs: list[dict], models: list[str]) -> list[dict]:
    """Per level, window and model (in the order given): the median over rounds (and the range of requests/s)."""
    rows: dict[tuple, list[dict]] = {}
    for run in runs:
        for lv in run["levels"]:
            key = (lv["concurrency"], lv["texts_per_request"], run["batch_window_ms"], models.index(run["model"]))
            rows.setdefault(key, []).append(lv)
    summary = []
    for (c, k, window, model), levels in sorted(rows.items()):
        row = {
            "concurrency": c,
            "texts_per_request": k,
            "batch_window_ms": window,
            "model": models[model],
            "rounds": len(levels),
            "requests_per_s_min": min(lv["requests_per_s"] for lv in levels),
            "requests_per_s_max": max(lv["requests_per_s"] for lv in levels),
            "non_2xx": sum(lv["non_2xx"] for lv in levels),
            "socket_errors": sum(lv["socket_errors"] for lv in levels),
        }
        for key in ("requests_per_s", "p50_ms", "p90_ms", "p99_ms", "requests_per_cpu_s"):
            values = [lv[key] for lv in levels if lv.get(key) is not None]
            row[key] = round(statistics.median(values), 2) if values else None
        summary.append(row)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "models",
        nargs="+",
        metavar="MODEL",
        help="an export folder or a model name (`default`: the bundled model); several are compared, alternating",
    )
    parser.add_argument("--data", required=True, help="folder with validation.jsonl (HF-style)")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--duration", type=int, default=20, help="seconds per level")
    parser.add_argument("--texts-per-request", default="1", help="texts per request; a list (1,8) runs each")
    parser.add_argument("--server-threads", type=int, help="onnxruntime threads of the service")
    parser.add_argument(
        "--batch-window-ms", default="0", help="service micro-batching window; a list (0,2) compares them, alternating"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="repeat every model and window this often, in alternating order (a shared machine's speed "
        "drifts; alternation spreads the drift over the models and windows compared)",
    )
    parser.add_argument("--results", type=Path, required=True, help="path stem for .md and .json")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get install wrk")
    models = identify(args.models)
    names = [m["name"] for m in models]

    rows = [json.loads(line) for line in (Path(args.data) / "validation.jsonl").open(encoding="utf-8")][:600]
    workdir = Path(tempfile.mkdtemp())
    scripts = {}
    for k in sorted({int(x) for x in args.texts_per_request.split(",")}):
        bodies = [
            json.dumps({"texts": [r["sentence"] for r in rows[i : i + k]]}, ensure_ascii=False)
            for i in range(0, len(rows) - k + 1, k)
        ]
        scripts[k] = workdir / f"classify-{k}.lua"
        scripts[k].write_text(LUA % ",\n".join(lua_string(b) for b in bodies), encoding="utf-8")
    windows = [float(x) for x in args.batch_window_ms.split(",")]
    runs = []
    try:
        for round_no in range(args.rounds):
            order = 1 if round_no % 2 == 0 else -1
            for model in models[::order]:
                for window in windows[::order]:
                    levels, healthy_after = measure(args, model["folder"], window, scripts)
                    runs.append(
                        {
                            "round": round_no + 1,
                            "model": model["name"],
                            "batch_window_ms": window,
                            "levels": levels,
                            "healthy_after": healthy_after,
                        }
                    )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    summary = summarise(runs, names)
    healthy = all(run["healthy_after"] for run in runs)
    report = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
        "models": models,
    }
    if len(models) == 1:  # the single-model report's keys, as before
        report["model_dir"] = models[0]["folder"]
        report["model"] = {key: models[0][key] for key in ("source", "quantization", "optimization", "bytes")}
    report |= {
        "texts_per_request": sorted(scripts),
        "batch_window_ms": windows,
        "rounds": args.rounds,
        "duration_s": args.duration,
        "machine": machine_info(args.server_threads or os.cpu_count() or 1),
        "summary": summary,
        "runs": runs,
        "healthy_after": healthy,
    }
    windows_text = ", ".join(f"{w:g} ms" if w else "off" for w in windows)
    several = len(models) > 1
    title = ", ".join(names) if several else Path(models[0]["folder"]).name
    lines = [
        f"# Load test: `tnews-deploy serve` on loopback ({title})",
        "",
        f"wrk against POST /v1/classify, request bodies rotating over {len(rows)} real TNEWS validation "
        f"sentences, {args.duration} s per level, server and wrk on the same "
        f"{report['machine']['usable_cpus']}-CPU machine ({report['machine']['cpu']}); one uvicorn worker; "
        f"micro-batching: {windows_text}; {args.rounds} round(s), each starting the service afresh per "
        f"{'model and window' if several else 'window'}, "
        "the order alternating round by round. Medians over the rounds (requests/s: median and range); "
        "requests per server CPU-second: requests answered per second of CPU time the service process used "
        "(on a shared machine, less dependent on what else runs than requests/s).",
        "",
        f"| clients | texts/request | window |{' model |' if several else ''} requests/s | range | p50 ms | p90 ms "
        "| p99 ms | requests per CPU-s | non-2xx | socket errors |",
        "|---|---|---|" + ("---|" if several else "") + "---|---|---|---|---|---|---|---|",
    ]
    for row in summary:
        window = f"{row['batch_window_ms']:g} ms" if row["batch_window_ms"] else "off"
        model = f" {row['model']} |" if several else ""
        lines.append(
            f"| {row['concurrency']} | {row['texts_per_request']} | {window} |{model} {row['requests_per_s']:.1f} "
            f"| {row['requests_per_s_min']:.1f}-{row['requests_per_s_max']:.1f} | {row['p50_ms']} | "
            f"{row['p90_ms']} | {row['p99_ms']} | {row['requests_per_cpu_s']} | {row['non_2xx']} | "
            f"{row['socket_errors']} |"
        )
    lines += ["", f"Healthy after every run: {healthy}.", "", "Command:", "", "```", report["command"], "```"]
    write_results(args.results, report, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

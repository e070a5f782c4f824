#!/usr/bin/env python3
"""HTTP load test of `tnews-deploy serve` on loopback, with wrk.

    python benchmarks/load_test.py runs/bench-e5/exports/int8 --data ../shared/data/tnews/hf \
        --results docs/load-test

Starts the service on 127.0.0.1 (a free port), checks it answers, then runs wrk
(Debian package `wrk`) for each concurrency level with POST /v1/classify bodies
that rotate over real TNEWS validation sentences (one text per request by
default). Records requests/s, latency p50/p90/p99, non-2xx responses and socket
errors, and checks the service is still healthy afterwards. Writes RESULTS.md
and RESULTS.json. Traffic goes to 127.0.0.1 only, and every wrk run is bounded
by --duration.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

from results_io import write_results
from tnews_deploy.machine import machine_info

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
    result = {"requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
              "requests": int(re.search(r"(\d+) requests in", output).group(1))}
    for pct in ("50", "75", "90", "99"):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", output, re.M)
        result[f"p{pct}_ms"] = round(to_ms(m.group(1)), 2) if m else None
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    result["non_2xx"] = int(non2xx.group(1)) if non2xx else 0
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    result["socket_errors"] = sum(map(int, socket_errors.groups())) if socket_errors else 0
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--data", required=True, help="folder with validation.jsonl (HF-style)")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--duration", type=int, default=20, help="seconds per level")
    parser.add_argument("--texts-per-request", type=int, default=1)
    parser.add_argument("--server-threads", type=int, help="onnxruntime threads of the service")
    parser.add_argument("--batch-window-ms", type=float, default=0.0, help="service micro-batching window")
    parser.add_argument("--results", type=Path, required=True, help="path stem for .md and .json")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get install wrk")

    rows = [json.loads(line) for line in (Path(args.data) / "validation.jsonl").open(encoding="utf-8")][:600]
    k = args.texts_per_request
    bodies = [json.dumps({"texts": [r["sentence"] for r in rows[i:i + k]]}, ensure_ascii=False)
              for i in range(0, len(rows) - k + 1, k)]
    workdir = Path(tempfile.mkdtemp())
    script = workdir / "classify.lua"
    script.write_text(LUA % ",\n".join(lua_string(b) for b in bodies), encoding="utf-8")

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    serve = [sys.executable, "-m", "tnews_deploy.cli", "serve", str(args.model_dir), "--port", str(port),
             "--log-level", "warning"]
    if args.server_threads:
        serve += ["--threads", str(args.server_threads)]
    if args.batch_window_ms:
        serve += ["--batch-window-ms", str(args.batch_window_ms)]
    server = subprocess.Popen(serve, start_new_session=True)
    levels = []
    try:
        wait_healthy(base)
        subprocess.run(["wrk", "-t1", "-c1", "-d3s", "-s", str(script), base], capture_output=True, check=True)
        for c in (int(x) for x in args.concurrency.split(",")):
            command = ["wrk", f"-t{min(c, 2)}", f"-c{c}", f"-d{args.duration}s", "--timeout", "10s", "--latency",
                       "-s", str(script), base]
            print("$ " + " ".join(command), flush=True)
            output = subprocess.run(command, capture_output=True, text=True, check=True,
                                    timeout=args.duration + 60).stdout
            print(output, flush=True)
            levels.append({"concurrency": c, **parse_wrk(output)})
        healthy_after = urllib.request.urlopen(base + "/healthz", timeout=5).status == 200
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        shutil.rmtree(workdir, ignore_errors=True)

    manifest = json.loads((args.model_dir / "manifest.json").read_text())
    report = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
        "model_dir": str(args.model_dir),
        "model": {"source": manifest.get("source", {}).get("checkpoint"),
                  "quantization": manifest.get("quantization"), "optimization": manifest.get("optimization"),
                  "bytes": manifest.get("model", {}).get("bytes")},
        "texts_per_request": k,
        "batch_window_ms": args.batch_window_ms,
        "duration_s": args.duration,
        "machine": machine_info(args.server_threads or os.cpu_count() or 1),
        "levels": levels,
        "healthy_after": healthy_after,
    }
    lines = [
        f"# Load test: `tnews-deploy serve` on loopback ({args.model_dir.name})",
        "",
        f"wrk against POST /v1/classify, {k} text(s) per request rotating over {len(bodies)} real TNEWS "
        f"validation sentences, {args.duration} s per level, server and wrk on the same "
        f"{report['machine']['usable_cpus']}-CPU machine ({report['machine']['cpu']}); one uvicorn worker; "
        f"micro-batching {'window ' + str(args.batch_window_ms) + ' ms' if args.batch_window_ms else 'off'}.",
        "",
        "| concurrent clients | requests/s | p50 ms | p90 ms | p99 ms | requests | non-2xx | socket errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for lv in levels:
        lines.append(f"| {lv['concurrency']} | {lv['requests_per_s']:.1f} | {lv['p50_ms']} | {lv['p90_ms']} | "
                     f"{lv['p99_ms']} | {lv['requests']:,} | {lv['non_2xx']} | {lv['socket_errors']} |")
    lines += ["", f"Healthy after the run: {healthy_after}.", "", "Command:", "", "```", report["command"], "```"]
    write_results(args.results, report, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

"""Faults, kills, concurrency and volume: the toolkit keeps working and loses nothing."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from serving import CLI, free_port, serving
from synthetic import make_rows
from tnews_deploy import Predictor
from tnews_deploy.runfiles import is_finished


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_kill_9_during_grid_then_resume_finishes_only_the_rest(tiny_model, hf_data, tmp_path):
    out = tmp_path / "grid"
    args = CLI + [
        "grid",
        "--model",
        str(tiny_model),
        "--data",
        str(hf_data),
        "--variants",
        "full",
        "--train-sizes",
        "60,90,120",
        "--eval-size",
        "100",
        "--selection-size",
        "60",
        "--epochs",
        "1",
        "--min-steps",
        "400",
        "--batch-size",
        "8",
        "--max-length",
        "32",
        "--patience",
        "0",
        "--quiet",
        "--output",
        str(out),
    ]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        # Bounds for a hang, not speed targets: a busy 2-core machine takes minutes for what CI does in seconds.
        _wait_for(lambda: is_finished(out / "full-60"), 900, "the first run to finish")
        _wait_for(lambda: (out / "full-90" / "run_config.json").is_file(), 300, "the second run to start")
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:  # a wait above timed out: leave no grid running behind the test
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert not is_finished(out / "full-90")  # half-done, and not taken for finished
    first_mtime = (out / "full-60" / "metrics.json").stat().st_mtime_ns

    result = subprocess.run(args, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "full × 60 (done, skipped)" in result.stderr  # progress is logged to stderr
    assert (out / "full-60" / "metrics.json").stat().st_mtime_ns == first_mtime
    results = json.loads((out / "results.json").read_text())
    assert results["finished_runs"] == 3
    assert all(is_finished(out / f"full-{n}") for n in (60, 90, 120))


@pytest.mark.slow
def test_kill_9_during_export_leaves_nothing_that_looks_complete(trained_run, tmp_path):
    target = tmp_path / "exports" / "fp32"
    args = CLI + ["export", str(trained_run.run_dir), "--output", str(target)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait_for(
            lambda: any((tmp_path / "exports").glob(".fp32.partial-*")) if (tmp_path / "exports").is_dir() else False,
            120,
            "the export to start",
        )
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert not target.exists()
    assert [p.name for p in (tmp_path / "exports").iterdir()][0].startswith(".fp32.partial-")
    # A new export succeeds and clears the dead one's leftovers.
    result = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert [p.name for p in (tmp_path / "exports").iterdir()] == ["fp32"]
    Predictor(target)  # loads, checksum verified


def test_8_threads_x_500_calls_equal_serial(exported):
    predictor = Predictor(exported.output)
    rows = make_rows(4, seed=21)
    calls = [[rows[(i + j) % len(rows)]["sentence"] for j in range(1 + i % 4)] for i in range(500)]
    serial = [predictor.predict(c) for c in calls]

    def worker(offset: int) -> bool:
        order = calls[offset:] + calls[:offset]
        expected = serial[offset:] + serial[:offset]
        return all(predictor.predict(c) == e for c, e in zip(order, expected))

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert all(pool.map(worker, [k * 61 for k in range(8)]))


def test_ten_thousand_texts_in_one_call(exported):
    predictor = Predictor(exported.output)
    texts = [r["sentence"] for r in make_rows(667, seed=5)][:10_000]
    results = predictor.predict(texts)
    assert len(results) == 10_000
    assert [r.label for r in results[:50]] == [p.label for p in predictor.predict(texts[:50])]


def test_cli_file_with_ten_thousand_lines_and_bad_ones(exported, tmp_path):
    good = [r["sentence"] for r in make_rows(667, seed=6)][:10_000]
    lines = [t.encode() for t in good]
    bad_at = {17: b"", 4242: b"\xff\xfe\xfd", 9999: b"   "}
    for i, raw in bad_at.items():
        lines[i] = raw
    source = tmp_path / "in.txt"
    source.write_bytes(b"\n".join(lines) + b"\n")
    out = tmp_path / "out.jsonl"
    result = subprocess.run(
        CLI + ["predict", str(exported.output), "--input", str(source), "--output", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1 and "3 of 10,000 input(s) failed" in result.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 10_000
    assert {r["line"] for r in rows if "error" in r} == {i + 1 for i in bad_at}
    assert sum("label" in r for r in rows) == 9_997


def test_serve_command_answers_on_loopback(exported):
    pytest.importorskip("uvicorn")
    port = free_port()
    proc = subprocess.Popen(
        CLI + ["serve", str(exported.output), "--port", str(port), "--log-level", "warning"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return urllib.request.urlopen(base + "/healthz", timeout=1).status == 200
        except OSError:
            return False

    try:
        _wait_for(up, 60, "the service to start")
        request = urllib.request.Request(
            base + "/v1/classify",
            data=json.dumps({"texts": ["今天新闻"]}).encode(),
            headers={"content-type": "application/json"},
        )
        body = json.loads(urllib.request.urlopen(request, timeout=10).read())
        assert body["predictions"][0]["label"].startswith("news_")
        bad = urllib.request.Request(
            base + "/v1/classify", data=b'{"texts": [1]}', headers={"content-type": "application/json"}
        )
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(bad, timeout=10)
        assert info.value.code == 422
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_serve_refuses_a_bad_model_folder_in_one_line(tmp_path):
    result = subprocess.run(CLI + ["serve", str(tmp_path / "none")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "no such model folder" in result.stderr
    assert "Traceback" not in result.stderr


BATTERY = [
    "长" * 100_000,
    "tab\tand\x07bell\x1bescape",
    "emoji 😀🚀 and English 和中文 mixed",
    "繁體中文新聞標題",
    "\u200b\u200d零宽字符",
    "x",
]


def test_bad_input_battery_in_cli_file_mode(exported, tmp_path):
    """Unusual texts are predicted; bad lines get an error; nothing is lost or crashes."""
    lines = [json.dumps({"text": t}, ensure_ascii=False).encode() for t in BATTERY]
    lines += [b"", b"null", b"42", b'["nested"]', b'{"text": {"a": 1}}', b'{"sentence": "   "}', b"\xc3\x28"]
    source = tmp_path / "battery.jsonl"
    source.write_bytes(b"\n".join(lines) + b"\n")
    result = subprocess.run(
        CLI + ["predict", str(exported.output), "--input", str(source), "--format", "jsonl"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1 and "7 of 13 input(s) failed" in result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["line"] for r in rows] == list(range(1, 14))
    assert all("label" in r for r in rows[:6]) and all("error" in r for r in rows[6:])


def test_bad_input_battery_over_http(exported):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from tnews_deploy.service import ServiceConfig, create_app

    with TestClient(create_app(ServiceConfig(model_dir=exported.output))) as client:
        ok = client.post("/v1/classify", json={"texts": BATTERY[1:]})
        assert ok.status_code == 200 and len(ok.json()["predictions"]) == len(BATTERY) - 1
        assert client.post("/v1/classify", json={"texts": [BATTERY[0]]}).status_code == 422  # 100,000 chars
        assert client.post("/v1/classify", json={"texts": ["新闻"] * 10_000}).status_code == 422
        for bad in ([None], [1.5], [["a"]], [{"a": 1}], [""], ["  "]):
            response = client.post("/v1/classify", json={"texts": bad})
            assert response.status_code == 422 and response.json()["error"]["positions"] == [0]


def test_short_soak_keeps_memory_bounded(exported, tmp_path):
    """benchmarks/soak.py on the tiny model: batches of 1-256 texts of 1-2,000 characters, RSS sampled."""
    soak = Path(__file__).resolve().parents[1] / "benchmarks" / "soak.py"
    result = subprocess.run(
        [
            sys.executable,
            str(soak),
            str(exported.output),
            "--predictions",
            "6000",
            "--warmup",
            "1000",
            "--memory",
            "arena,ort-default",
            "--threads",
            "1",
            "--results",
            str(tmp_path / "soak"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "soak.json").read_text())
    for name in ("predictor arena", "predictor ort-default"):
        run = report["runs"][name][0]
        assert run["growth_after_warmup"] <= 0.10, (name, run)
        assert run["rss_after_warmup_mb"] > 0 and run["peak_mb"] >= run["rss_end_mb"]
    samples = report["curves"]["predictor arena"]
    assert samples[-1][0] == 6000  # every prediction was made
    assert (tmp_path / "soak.png").stat().st_size > 0 and (tmp_path / "soak.md").is_file()


def _ready(base: str) -> bool:
    try:
        return urllib.request.urlopen(base + "/readyz", timeout=1).status == 200
    except OSError:
        return False


def _classify(base: str, texts: list[str]) -> tuple[str, object]:
    """('ok', number of predictions), ('http', status) or ('refused'/'dropped', error) for a connection error."""
    request = urllib.request.Request(
        base + "/v1/classify", data=json.dumps({"texts": texts}).encode(), headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            return "ok", len(json.loads(response.read())["predictions"])
    except urllib.error.HTTPError as exc:
        return "http", exc.code
    except (urllib.error.URLError, ConnectionError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", exc)
        return ("refused" if isinstance(reason, ConnectionRefusedError) else "dropped"), exc


def _metric(base: str, name: str) -> float:
    text = urllib.request.urlopen(base + "/metrics", timeout=10).read().decode()
    values = _metric_values(text, name + " ")
    return values[0] if values else float("nan")


def test_sigterm_lets_accepted_requests_finish_and_exits_0(exported, tmp_path):
    """SIGTERM while slow requests run: each of them gets its 200, later ones are refused, the process exits 0."""
    pytest.importorskip("uvicorn")
    texts = ["今天的新闻是关于北京大学举行毕业典礼的消息" * 3] * 4000  # seconds per request
    with serving(exported.output, tmp_path, "--max-batch", "5000", "--threads", "1", "--graceful-timeout", "120") as (
        proc,
        port,
        log,
    ):
        base = f"http://127.0.0.1:{port}"
        _wait_for(lambda: _ready(base), 60, "the service to be ready")
        with ThreadPoolExecutor(max_workers=8) as pool:
            in_flight = [pool.submit(_classify, base, texts) for _ in range(4)]
            _wait_for(lambda: _metric(base, "tnews_model_queue_depth") == 4, 120, "4 requests in the model")
            os.kill(proc.pid, signal.SIGTERM)
            later = [pool.submit(_classify, base, texts[:10]) for _ in range(3)]
            assert [f.result() for f in in_flight] == [("ok", 4000)] * 4
            for outcome, detail in (f.result() for f in later):
                # Raced in before the socket closed (answered) or refused; never an error status.
                assert outcome in ("ok", "refused", "dropped"), (outcome, detail)
        assert proc.wait(timeout=60) == 0
    lines = log.read_text().splitlines()
    answered = [line for line in lines if "POST /v1/classify 200 texts=4000 " in line]
    assert len(answered) == 4  # one access-log line per request ...
    assert not any('"POST /v1/classify HTTP/1.1"' in line for line in lines)  # ... not uvicorn's second one


def _metric_values(text: str, prefix: str, *labels: str) -> list[float]:
    return [
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith(prefix) and all(label in line for label in labels)
    ]


def test_workers_report_metrics_summed_over_processes_and_stop_on_sigterm(exported, tmp_path):
    """--workers 2: /metrics (whichever worker answers) counts every worker's requests; SIGTERM exits 0."""
    pytest.importorskip("uvicorn")
    with serving(exported.output, tmp_path, "--workers", "2", "--threads", "1") as (proc, port, _log):
        base = f"http://127.0.0.1:{port}"
        _wait_for(lambda: _ready(base), 120, "the workers to be ready")
        with ThreadPoolExecutor(max_workers=6) as pool:
            outcomes = list(pool.map(lambda i: _classify(base, [f"第{i}条新闻"] * (1 + i % 3)), range(24)))
        assert outcomes == [("ok", 1 + i % 3) for i in range(24)]
        text = urllib.request.urlopen(base + "/metrics", timeout=10).read().decode()
        assert sum(_metric_values(text, "tnews_http_requests_total{", 'endpoint="/v1/classify"', 'status="200"')) == 24
        assert _metric_values(text, "tnews_classify_texts_per_request_sum") == [sum(1 + i % 3 for i in range(24))]
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=60) == 0


@pytest.mark.parametrize("flag, value", [("--max-queue", "0"), ("--graceful-timeout", "0")])
def test_serve_refuses_bad_limits_in_one_line(exported, flag, value):
    result = subprocess.run(
        CLI + ["serve", str(exported.output), flag, value], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2 and flag in result.stderr and "Traceback" not in result.stderr

"""Side-by-side benchmark: PyTorch eager vs each ONNX export, on the same sentences and threads.

For every backend it measures, on the evaluation set:

* accuracy: macro/micro-F1 and agreement with PyTorch's predictions;
* latency at batch size 1 (p50/p95/p99/mean over >= 300 sentences after warm-up);
* throughput at each batch size over the whole evaluation set, with the padding
  efficiency (real tokens / padded tokens) of the batches actually run;
* cold start (import + load + first prediction in a fresh process) and the
  peak RSS of that process, and the model file size;
* effective GFLOP/s (useful FLOPs from the model's shape and the real token
  counts) and its share of this machine's measured fp32 GEMM peak.

Backends are measured in alternation (A B A B ...) round by round, so drift of
the machine hits all of them alike; medians and min-max over rounds are reported.
Needs the `train` extra (PyTorch is one of the backends).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .errors import UserError
from .predictor import MANIFEST_FILE, MODEL_FILE, Predictor, default_threads

# --------------------------------------------------------------------------- FLOPs


def encoder_flops(tokens: int, hidden: int, layers: int, intermediate: int, num_labels: int) -> int:
    """Multiply-add FLOPs (2 per MAC) of one BERT-style sentence of `tokens` tokens.

    Per layer: Q, K, V and output projections 4 * 2*n*H^2, attention scores and
    the weighted sum 2 * 2*n^2*H, feed-forward 2 * 2*n*H*I. Then the pooler on
    [CLS] (2*H^2) and the classifier (2*H*C). Embedding lookups, LayerNorm,
    softmax and GELU are elementwise and left out (under 1 % here).
    """
    n, h = tokens, hidden
    per_layer = 8 * n * h * h + 4 * n * n * h + 4 * n * h * intermediate
    return layers * per_layer + 2 * h * h + 2 * h * num_labels


@dataclass(frozen=True)
class ModelShape:
    hidden: int
    layers: int
    intermediate: int
    num_labels: int

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ModelShape:
        return cls(
            hidden=int(config["hidden_size"]),
            layers=int(config["num_hidden_layers"]),
            intermediate=int(config["intermediate_size"]),
            num_labels=len(config.get("id2label") or {}) or int(config.get("num_labels", 2)),
        )

    def flops(self, token_counts: Sequence[int]) -> int:
        return sum(encoder_flops(int(t), self.hidden, self.layers, self.intermediate, self.num_labels)
                   for t in token_counts)


# --------------------------------------------------------------------------- machine


def machine_info(threads: int) -> dict[str, Any]:
    model, flags = "", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and not model:
                model = line.split(":", 1)[1].strip()
            elif line.startswith(("flags", "Features")) and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    interesting = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx_vnni",
                   "amx_tile", "amx_int8", "amx_bf16", "asimd", "asimddp")
    versions = {"python": platform.python_version()}
    from importlib import metadata

    for name in ("onnxruntime", "torch", "transformers", "optimum", "tokenizers", "numpy"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return {
        "cpu": model or platform.machine(),
        "arch": platform.machine(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": default_threads(),
        "threads": threads,
        "flags": [f for f in interesting if f in flags],
        "versions": versions,
        "platform": platform.platform(),
    }


def measure_gemm_peak(threads: int, size: int = 1024, repeats: int = 10) -> dict[str, Any]:
    """fp32 GEMM GFLOP/s on this machine with `threads` threads (PyTorch's oneDNN/MKL)."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return {"gflops": round(2 * size**3 / best / 1e9, 1), "method": f"torch fp32 matmul {size}x{size}, best of "
            f"{repeats}, {threads} thread(s)"}


# --------------------------------------------------------------------------- backends


@dataclass
class PassResult:
    logits: np.ndarray
    seconds: float
    real_tokens: int
    padded_tokens: int


class Backend:
    name: str
    kind: str
    path: Path

    def run(self, texts: Sequence[str], batch_size: int) -> PassResult:
        raise NotImplementedError

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        raise NotImplementedError

    def size_bytes(self) -> int:
        raise NotImplementedError

    def cold_start_code(self, texts: Sequence[str]) -> str:
        raise NotImplementedError


class PyTorchBackend(Backend):
    """The checkpoint in eager PyTorch, batches in input order padded to their longest text."""

    kind = "pytorch"

    def __init__(self, checkpoint: Path, threads: int, max_length: int, sort_by_length: bool = False) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        torch.set_num_threads(threads)
        self.path, self.threads, self.max_length, self.sort = Path(checkpoint), threads, max_length, sort_by_length
        self.name = "pytorch-sorted" if sort_by_length else "pytorch"
        self.tokenizer = AutoTokenizer.from_pretrained(checkpoint)
        self.model = AutoModelForSequenceClassification.from_pretrained(checkpoint).eval()
        self.config = self.model.config.to_dict()

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        return [len(i) for i in self.tokenizer(list(texts), truncation=True, max_length=self.max_length)["input_ids"]]

    def run(self, texts: Sequence[str], batch_size: int) -> PassResult:
        import torch

        start_time = time.perf_counter()  # sorting by length is part of the work, as in the Predictor
        lengths = np.asarray(self.token_counts(texts)) if self.sort else None
        order = np.argsort(lengths, kind="stable") if self.sort else np.arange(len(texts))
        out = np.empty((len(texts), self.model.config.num_labels), dtype=np.float32)
        padded = 0
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                idx = order[start:start + batch_size]
                batch = self.tokenizer([texts[i] for i in idx], truncation=True, max_length=self.max_length,
                                       padding=True, return_tensors="pt")
                out[idx] = self.model(**batch).logits.numpy()
                padded += int(batch["input_ids"].numel())
        seconds = time.perf_counter() - start_time
        return PassResult(out, seconds, int(sum(self.token_counts(texts))), padded)

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.path.glob("*.safetensors")) or sum(
            p.stat().st_size for p in self.path.glob("pytorch_model*.bin"))

    def cold_start_code(self, texts: Sequence[str]) -> str:
        return textwrap.dedent(f"""
            import torch
            from transformers import AutoModelForSequenceClassification, AutoTokenizer
            torch.set_num_threads({self.threads})
            tok = AutoTokenizer.from_pretrained({str(self.path)!r})
            model = AutoModelForSequenceClassification.from_pretrained({str(self.path)!r}).eval()
            with torch.inference_mode():
                model(**tok([TEXTS[0]], truncation=True, max_length={self.max_length}, return_tensors="pt"))
                mark_first()
                for i in range(0, len(TEXTS), 32):
                    model(**tok(TEXTS[i:i + 32], truncation=True, max_length={self.max_length},
                                padding=True, return_tensors="pt"))
        """)


class OnnxBackend(Backend):
    """An exported folder through the project's runtime `Predictor`."""

    kind = "onnx"

    def __init__(self, folder: Path, threads: int, name: str | None = None) -> None:
        self.path, self.threads = Path(folder), threads
        self.predictor = Predictor(folder, threads=threads)
        manifest = self.predictor.manifest
        self.name = name or self.path.name
        self.variant = describe_variant(manifest)
        self.config = json.loads((self.path / "config.json").read_text(encoding="utf-8"))

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        return [len(e.ids) for e in self.predictor.encode(texts)]

    def run(self, texts: Sequence[str], batch_size: int) -> PassResult:
        predictor = self.predictor
        start_time = time.perf_counter()
        logits = predictor.logits(list(texts), batch_size=batch_size)
        seconds = time.perf_counter() - start_time
        lengths = np.asarray(self.token_counts(texts), dtype=np.int64)
        padded = sum(int(lengths[b[-1]]) * len(b) for b in predictor.batches(lengths, batch_size))
        return PassResult(logits, seconds, int(lengths.sum()), padded)

    def size_bytes(self) -> int:
        return (self.path / MODEL_FILE).stat().st_size

    def cold_start_code(self, texts: Sequence[str]) -> str:
        return textwrap.dedent(f"""
            from tnews_deploy import Predictor
            p = Predictor({str(self.path)!r}, threads={self.threads})
            p.predict(TEXTS[0])
            mark_first()
            p.predict(TEXTS)
        """)


def describe_variant(manifest: dict[str, Any]) -> str:
    parts = []
    opt, quant = manifest.get("optimization"), manifest.get("quantization")
    if quant:  # manifests before int8-dynamic existed say mode "int8" without a scheme: per-tensor
        parts.append("int8" if quant.get("scheme") == "per-token-symmetric" else "int8-dynamic")
    else:
        parts.append("fp32")
    if opt:
        parts.append(opt.get("level", "?"))
    return " ".join(parts)


# --------------------------------------------------------------------------- config and run


@dataclass(frozen=True)
class BenchmarkConfig:
    pytorch: Path | None
    onnx: tuple[Path, ...]
    output: Path
    data: str | None = None
    eval_size: int = 2000
    seed: int = 42
    threads: int | None = None
    latency_sentences: int = 300
    warmup: int = 20
    rounds: int = 3
    batch_sizes: tuple[int, ...] = (8, 32)
    pytorch_sorted: bool = False  # also run PyTorch with the Predictor's length bucketing
    cold_start: bool = True
    max_length: int | None = None
    quick: bool = False

    @classmethod
    def quick_config(cls, **kwargs: Any) -> BenchmarkConfig:
        settings = dict(eval_size=64, latency_sentences=24, warmup=3, rounds=1, batch_sizes=(8,), quick=True)
        settings.update(kwargs)
        return cls(**settings)


def _stats(values: Sequence[float]) -> dict[str, float]:
    arr = np.asarray(values, dtype=float)
    return {"median": float(np.median(arr)), "min": float(arr.min()), "max": float(arr.max())}


def _cold_start(backend: Backend, texts: Sequence[str]) -> dict[str, float]:
    """Import + load + first prediction in a fresh interpreter; its peak RSS after a batch pass.

    Peak RSS is VmHWM of the child's own address space: ru_maxrss would carry the
    parent's high-water mark across fork + exec on Linux.
    """
    program = "import time, json, resource\nT0 = time.perf_counter()\n" \
              f"TEXTS = {json.dumps(list(texts), ensure_ascii=False)}\n" \
              "FIRST = []\ndef mark_first():\n    FIRST.append(time.perf_counter() - T0)\n" \
              + backend.cold_start_code(texts) + \
              "\nHWM = [l for l in open('/proc/self/status') if l.startswith('VmHWM')]\n" \
              "rss_kb = int(HWM[0].split()[1]) if HWM else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n" \
              "print(json.dumps({'first': FIRST[0], 'rss_kb': rss_kb}))\n"
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=600, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"cold start of {backend.name} failed:\n{result.stderr[-2000:]}")
    data = json.loads(result.stdout.strip().splitlines()[-1])
    return {"seconds": round(data["first"], 3), "peak_rss_mb": round(data["rss_kb"] / 1024, 1)}


def evaluation_texts(data: str, eval_size: int, seed: int) -> tuple[list[str], np.ndarray]:
    from .data import evaluation_split, load_tnews

    evaluation = evaluation_split(load_tnews(data), eval_size, seed)
    return list(evaluation["sentence"]), np.asarray(evaluation["label"])


def run_benchmark(config: BenchmarkConfig, progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Measure every backend; write results.json, results.md, latency.png, throughput.png."""
    from .export.source import resolve_source
    from .training.metrics import f1_scores

    threads = config.threads or default_threads()
    for folder in config.onnx:
        if not Path(folder).is_dir():
            raise UserError(f"{folder}: no such ONNX folder; pass folders written by `tnews-deploy export`.")
    manifests = [json.loads((Path(f) / MANIFEST_FILE).read_text()) if (Path(f) / MANIFEST_FILE).is_file() else {}
                 for f in config.onnx]
    pytorch_path = config.pytorch
    if pytorch_path is None:
        sources = [m.get("source", {}).get("checkpoint") for m in manifests if m.get("source")]
        if not sources:
            raise UserError("no --pytorch checkpoint given and no ONNX manifest names its source.")
        pytorch_path = Path(sources[0])
    checkpoint = resolve_source(pytorch_path).checkpoint
    data = config.data or next((m["verification"]["evaluation"]["data"] for m in manifests
                                if m.get("verification", {}).get("evaluation", {}).get("data")), None)
    if not data:
        raise UserError("no --data given and no ONNX manifest records its evaluation data.")
    max_length = config.max_length or next((int(m["max_length"]) for m in manifests if m.get("max_length")), 128)

    progress(f"loading the evaluation set ({config.eval_size:,} sentences from {data}) ...")
    texts, labels = evaluation_texts(data, config.eval_size, config.seed)
    progress(f"loading backends (threads = {threads}) ...")
    backends: list[Backend] = [PyTorchBackend(checkpoint, threads, max_length)]
    if config.pytorch_sorted:
        backends.append(PyTorchBackend(checkpoint, threads, max_length, sort_by_length=True))
    names = set()
    for folder in config.onnx:
        backend = OnnxBackend(Path(folder), threads)
        if backend.name in names:
            backend.name = f"{backend.name}-{len(names)}"
        names.add(backend.name)
        backends.append(backend)
    shape = ModelShape.from_config(backends[0].config)
    token_counts = backends[0].token_counts(texts)
    flops_eval = shape.flops(token_counts)

    rng = np.random.default_rng(config.seed)
    latency_pool = [texts[i] for i in rng.permutation(len(texts))]
    need = config.warmup + config.latency_sentences
    latency_texts = (latency_pool * (need // len(latency_pool) + 1))[:need]
    warm, timed = latency_texts[:config.warmup], latency_texts[config.warmup:]
    chunks = np.array_split(np.arange(len(timed)), config.rounds)

    results: dict[str, dict[str, Any]] = {b.name: {"latency_ms": [], "latency_round_p50": [],
                                                   "throughput": {str(bs): [] for bs in config.batch_sizes}}
                                          for b in backends}
    for backend in backends:  # warm-up, not timed
        for t in warm:
            backend.run([t], 1)

    total_steps = config.rounds * len(backends) * (1 + len(config.batch_sizes))
    step = 0
    logits_by_backend: dict[str, np.ndarray] = {}
    padding: dict[str, dict[str, float]] = {b.name: {} for b in backends}
    for round_no, chunk in enumerate(chunks, 1):
        for backend in backends:  # A B A B: latency
            step += 1
            progress(f"[{step}/{total_steps}] round {round_no}: {backend.name} latency, {len(chunk)} sentences")
            samples = []
            for i in chunk:
                samples.append(backend.run([timed[i]], 1).seconds * 1000)
            results[backend.name]["latency_ms"].extend(samples)
            results[backend.name]["latency_round_p50"].append(float(np.median(samples)))
        for bs in config.batch_sizes:
            for backend in backends:  # A B A B: throughput
                step += 1
                progress(f"[{step}/{total_steps}] round {round_no}: {backend.name} batch {bs}, "
                         f"{len(texts):,} sentences")
                pass_result = backend.run(texts, bs)
                results[backend.name]["throughput"][str(bs)].append(len(texts) / pass_result.seconds)
                padding[backend.name][str(bs)] = pass_result.real_tokens / pass_result.padded_tokens
                logits_by_backend[backend.name] = pass_result.logits

    progress("measuring this machine's fp32 GEMM peak ...")
    peak = measure_gemm_peak(threads)
    reference_pred = logits_by_backend[backends[0].name].argmax(-1)
    rows = []
    for backend in backends:
        r = results[backend.name]
        pred = logits_by_backend[backend.name].argmax(-1)
        lat = np.asarray(r["latency_ms"])
        throughput = {bs: _stats(v) for bs, v in r["throughput"].items()}
        gflops = {bs: flops_eval * t["median"] / len(texts) / 1e9 for bs, t in throughput.items()}
        row = {
            "backend": backend.name,
            "kind": backend.kind,
            "variant": getattr(backend, "variant", "fp32 eager"),
            "path": str(backend.path),
            "model_mb": round(backend.size_bytes() / 1e6, 1),
            **{k: round(v, 4) for k, v in f1_scores(labels, pred).items()},
            "agreement_with_pytorch": round(float(np.mean(pred == reference_pred)), 4),
            "latency_ms": {"p50": float(np.percentile(lat, 50)), "p95": float(np.percentile(lat, 95)),
                           "p99": float(np.percentile(lat, 99)), "mean": float(lat.mean()),
                           "samples": int(lat.size), "round_p50": _stats(r["latency_round_p50"])},
            "throughput": throughput,
            "padding_efficiency": {bs: round(v, 3) for bs, v in padding[backend.name].items()},
            "gflops": {bs: round(v, 1) for bs, v in gflops.items()},
            "share_of_fp32_peak": {bs: round(v / peak["gflops"], 3) for bs, v in gflops.items()},
        }
        rows.append(row)
    if config.cold_start:
        for backend, row in zip(backends, rows):
            progress(f"cold start: {backend.name} (fresh process) ...")
            row["cold_start"] = _cold_start(backend, texts[:64])
    base = rows[0]
    for row in rows:
        row["speedup"] = {
            "latency_p50": round(base["latency_ms"]["p50"] / row["latency_ms"]["p50"], 2),
            **{f"throughput_{bs}": round(row["throughput"][bs]["median"] / base["throughput"][bs]["median"], 2)
               for bs in row["throughput"]},
        }
    report = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv) if sys.argv else None,
        "machine": machine_info(threads),
        "fp32_peak": peak,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()
                     if k not in ("onnx", "pytorch", "output")},
        "data": data,
        "pytorch_checkpoint": str(checkpoint),
        "max_length": max_length,
        "model_shape": asdict(shape),
        "eval_sentences": len(texts),
        "mean_tokens": round(float(np.mean(token_counts)), 2),
        "gflop_per_sentence": round(flops_eval / len(texts) / 1e9, 4),
        "backends": rows,
    }
    output = Path(config.output)
    output.mkdir(parents=True, exist_ok=True)
    (output / "results.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (output / "results.md").write_text(render_markdown(report), encoding="utf-8")
    plot_latency(report, output / "latency.png")
    plot_throughput(report, output / "throughput.png")
    return report


# --------------------------------------------------------------------------- report


def _model_name(checkpoint: str) -> str:
    """`grid/run/checkpoint` -> `run/checkpoint`: the folder name alone says little."""
    path = Path(checkpoint)
    return f"{path.parent.name}/{path.name}" if path.name == "checkpoint" else path.name


def render_markdown(report: dict[str, Any]) -> str:
    m, rows = report["machine"], report["backends"]
    sizes = list(rows[0]["throughput"])
    head = ["backend", "variant", "MB", "macro-F1", "micro-F1", "agree", "p50 ms", "p95 ms", "p99 ms", "mean ms"]
    head += [f"sent/s @{bs} (min–max)" for bs in sizes] + [f"×PT @{bs}" for bs in sizes] + ["×PT p50"]
    head += [f"pad eff @{sizes[-1]}", f"GFLOP/s @{sizes[-1]}", "% fp32 peak", "cold s", "RSS MB"]
    lines = [
        f"# Benchmark: `{_model_name(report['pytorch_checkpoint'])}` on {report['eval_sentences']:,} sentences",
        "",
        f"{m['cpu']} ({m['arch']}), {m['usable_cpus']} usable CPUs, **{m['threads']} threads for every backend**; "
        f"flags: {', '.join(m['flags']) or 'none'}; "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + ".",
        f"Data `{report['data']}`, max_length {report['max_length']}, {report['mean_tokens']} tokens per sentence "
        f"on average, {report['gflop_per_sentence']} GFLOP per sentence; "
        f"fp32 peak {report['fp32_peak']['gflops']} GFLOP/s ({report['fp32_peak']['method']}). "
        f"Latency: batch 1, {rows[0]['latency_ms']['samples']} sentences after "
        f"{report['settings']['warmup']} warm-up; {report['settings']['rounds']} alternating round(s).",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for r in rows:
        lat, thr = r["latency_ms"], r["throughput"]
        cells = [r["backend"], r["variant"], f"{r['model_mb']:.0f}", f"{r['macro_f1']:.4f}", f"{r['micro_f1']:.4f}",
                 f"{r['agreement_with_pytorch']:.2%}", f"{lat['p50']:.2f}", f"{lat['p95']:.2f}", f"{lat['p99']:.2f}",
                 f"{lat['mean']:.2f}"]
        cells += [f"{thr[bs]['median']:.1f} ({thr[bs]['min']:.1f}–{thr[bs]['max']:.1f})" for bs in sizes]
        cells += [f"{r['speedup'][f'throughput_{bs}']:.2f}" for bs in sizes] + [f"{r['speedup']['latency_p50']:.2f}"]
        cells += [f"{r['padding_efficiency'][sizes[-1]]:.2f}", f"{r['gflops'][sizes[-1]]:.1f}",
                  f"{r['share_of_fp32_peak'][sizes[-1]]:.0%}"]
        cold = r.get("cold_start")
        cells += [f"{cold['seconds']:.2f}", f"{cold['peak_rss_mb']:.0f}"] if cold else ["—", "—"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "×PT: speed-up over PyTorch eager (throughput ratio of medians; latency ratio of p50). "
        "pad eff: real tokens / padded tokens in the batches run. GFLOP/s counts useful FLOPs on real tokens only; "
        "int8 kernels can exceed the fp32 peak.",
    ]
    if report.get("command"):
        lines += ["", "Command:", "", "```", report["command"], "```"]
    return "\n".join(lines) + "\n"


def plot_latency(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["backends"]
    names = [r["backend"] for r in rows]
    fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(rows)), 4))
    x = np.arange(len(rows))
    for offset, key, color in ((-0.25, "p50", "#4c72b0"), (0, "p95", "#dd8452"), (0.25, "p99", "#c44e52")):
        values = [r["latency_ms"][key] for r in rows]
        bars = ax.bar(x + offset, values, 0.25, label=key, color=color)
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_xticks(x, names, rotation=15)
    ax.set_ylabel("ms per sentence (batch 1)")
    ax.set_title(f"Latency, {report['machine']['threads']} threads")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_throughput(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["backends"]
    sizes = list(rows[0]["throughput"])
    width = 0.8 / len(rows)
    fig, ax = plt.subplots(figsize=(max(6, 2 * len(sizes) + len(rows)), 4))
    x = np.arange(len(sizes))
    for i, r in enumerate(rows):
        med = [r["throughput"][bs]["median"] for bs in sizes]
        err = [[m - r["throughput"][bs]["min"] for bs, m in zip(sizes, med)],
               [r["throughput"][bs]["max"] - m for bs, m in zip(sizes, med)]]
        bars = ax.bar(x + i * width - 0.4 + width / 2, med, width, yerr=err, capsize=3, label=r["backend"])
        ax.bar_label(bars, fmt="%.0f", fontsize=7)
    ax.set_xticks(x, [f"batch {bs}" for bs in sizes])
    ax.set_ylabel("sentences / s (median, min–max)")
    ax.set_title(f"Throughput, {report['machine']['threads']} threads")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

"""The timings: warm-up, alternating latency and throughput rounds, and cold starts in fresh processes.

Backends are measured in alternation (A B A B ...) round by round, so drift of
the machine hits all of them alike. Nothing here computes statistics: the raw
samples go to `summary`.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .backends import Backend

logger = logging.getLogger(__name__)


@dataclass
class Timings:
    """The raw measurements of one backend."""

    latency_ms: list[float] = field(default_factory=list)  # every timed batch-1 call
    latency_round_p50: list[float] = field(default_factory=list)  # median of each round's calls
    throughput: dict[str, list[float]] = field(default_factory=dict)  # batch size -> sentences/s per round
    padding_efficiency: dict[str, float] = field(default_factory=dict)  # batch size -> real / padded tokens
    logits: np.ndarray | None = None  # of the last full pass, for F1 and agreement


def latency_schedule(
    texts: Sequence[str], warmup: int, latency_sentences: int, seed: int
) -> tuple[list[str], list[str]]:
    """Warm-up texts and timed texts for batch-1 latency: a seeded shuffle of `texts`, repeated if too short.

    Args:
        texts: the evaluation sentences.
        warmup: untimed calls.
        latency_sentences: timed calls.
        seed: shuffle seed.
    """
    pool = [texts[i] for i in np.random.default_rng(seed).permutation(len(texts))]
    need = warmup + latency_sentences
    schedule = (pool * (need // len(pool) + 1))[:need]
    return schedule[:warmup], schedule[warmup:]


def measure_rounds(
    backends: Sequence[Backend],
    texts: Sequence[str],
    batch_sizes: Sequence[int],
    rounds: int,
    warm: Sequence[str],
    timed: Sequence[str],
) -> dict[str, Timings]:
    """Warm every backend up, then `rounds` rounds of batch-1 latency and full-set throughput, alternating.

    Args:
        backends: the backends, in report order.
        texts: the evaluation sentences (each throughput pass runs them all).
        batch_sizes: throughput batch sizes.
        rounds: alternating rounds; the timed latency texts are split evenly over them.
        warm: untimed batch-1 texts, run once per backend before the rounds.
        timed: timed batch-1 texts.
    """
    from tqdm.auto import tqdm

    timings = {b.name: Timings(throughput={str(bs): [] for bs in batch_sizes}) for b in backends}
    logger.info("warming up %d backend(s) (%d calls each) ...", len(backends), len(warm))
    for backend in backends:
        for text in warm:
            backend.run([text], 1)

    chunks = np.array_split(np.arange(len(timed)), rounds)
    total = len(backends) * (len(timed) + rounds * len(batch_sizes) * len(texts))
    with tqdm(total=total, desc="benchmark", unit="sent", disable=None, file=sys.stderr) as bar:
        for round_no, chunk in enumerate(chunks, 1):
            for backend in backends:  # A B A B: latency
                bar.set_postfix_str(f"round {round_no}/{rounds}: {backend.name} latency")
                logger.debug("round %d: %s latency, %d sentences", round_no, backend.name, len(chunk))
                samples = []
                for i in chunk:
                    samples.append(backend.run([timed[i]], 1).seconds * 1000)
                    bar.update(1)
                timings[backend.name].latency_ms.extend(samples)
                timings[backend.name].latency_round_p50.append(float(np.median(samples)))
            for bs in batch_sizes:
                for backend in backends:  # A B A B: throughput
                    bar.set_postfix_str(f"round {round_no}/{rounds}: {backend.name} batch {bs}")
                    logger.debug("round %d: %s batch %d, %d sentences", round_no, backend.name, bs, len(texts))
                    result = backend.run(texts, bs)
                    bar.update(len(texts))
                    t = timings[backend.name]
                    t.throughput[str(bs)].append(len(texts) / result.seconds)
                    t.padding_efficiency[str(bs)] = result.real_tokens / result.padded_tokens
                    t.logits = result.logits
            # One line a round, so that a run whose stderr is a file (no bar) still shows how far it is.
            logger.info(
                "round %d/%d done: %s",
                round_no,
                rounds,
                ", ".join(f"{b.name} p50 {timings[b.name].latency_round_p50[-1]:.1f} ms" for b in backends),
            )
    return timings


def cold_start(backend: Backend, texts: Sequence[str]) -> dict[str, float]:
    """Import + load + first prediction in a fresh interpreter; its peak RSS after a batch pass.

    Peak RSS is VmHWM of the child's own address space: ru_maxrss would carry the
    parent's high-water mark across fork + exec on Linux.

    Args:
        backend: the backend whose `cold_start_code` runs.
        texts: the texts the child predicts (the first one alone, then all).
    """
    program = (
        "import time, json, resource\nT0 = time.perf_counter()\n"
        f"TEXTS = {json.dumps(list(texts), ensure_ascii=False)}\n"
        "FIRST = []\ndef mark_first():\n    FIRST.append(time.perf_counter() - T0)\n"
        + backend.cold_start_code()
        + "\nHWM = [l for l in open('/proc/self/status') if l.startswith('VmHWM')]\n"
        "rss_kb = int(HWM[0].split()[1]) if HWM else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(json.dumps({'first': FIRST[0], 'rss_kb': rss_kb}))\n"
    )
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=600, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"cold start of {backend.name} failed:\n{result.stderr[-2000:]}")
    data = json.loads(result.stdout.strip().splitlines()[-1])
    return {"seconds": round(data["first"], 3), "peak_rss_mb": round(data["rss_kb"] / 1024, 1)}


def cold_starts(backends: Sequence[Backend], texts: Sequence[str]) -> dict[str, dict[str, Any]]:
    """`cold_start` of every backend, one fresh process after the other.

    Args:
        backends: the backends.
        texts: the texts each child predicts.
    """
    results = {}
    for backend in backends:
        logger.info("cold start: %s (fresh process) ...", backend.name)
        results[backend.name] = cold_start(backend, texts)
    return results

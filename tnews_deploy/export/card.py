"""The model card of an export folder: `README.md`, generated from its `manifest.json`.

The card follows the model-hub convention (Markdown with a YAML front matter: language, pipeline tag,
library, base model, dataset, metrics) and says what the model is, its labels, the training run, the
verification against PyTorch, size (and speed, when a `tnews-deploy benchmark` result is given), its
limitations, and how to use the folder from Python, Node.js and HTTP. Every figure comes from the
manifest or the benchmark result; nothing is written by hand.

`export` writes it into the folder before the folder is moved into place; `tnews-deploy card DIR`
(`write_card`) writes it again for an existing folder, optionally with benchmark figures. The card is not
covered by the manifest's sha256 (that is `model.onnx`'s) and the runtime never reads it.

Filesystem paths of the machine that exported (checkpoint, data) appear by their last component only.
Stdlib only.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from ..datasource import DataSource
from ..errors import ConfigError, UserError
from ..labels import TNEWS_LABEL_NAMES

CARD_FILE = "README.md"
TNEWS_HUB_DATASET = "clue/tnews"
NODE_EXAMPLE = "examples/node/classify.mjs"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def hub_id(name: str | None) -> str | None:
    """`name` when it reads as a Hugging Face hub id ("org/name" or a legacy "name"), not a local path."""
    if not name or os.path.isabs(name) or name.startswith((".", "~")) or os.path.exists(name):
        return None
    return name if _HUB_ID.match(name) else None


def _data_name(value: Any) -> str | None:
    """The path or hub id of a recorded data source (a `DataSource` dict, or the plain string older runs wrote)."""
    if not value:
        return None
    try:
        return DataSource.coerce(value).path
    except (ConfigError, TypeError):
        return str(value)


def _short(name: Any) -> str:
    """A hub id as is; a local path by its last two components (no machine-specific prefix)."""
    if hub_id(str(name)):
        return str(name)
    parts = Path(str(name)).parts
    return "/".join(parts[-2:]) if len(parts) >= 2 and parts[-2] != "/" else Path(str(name)).name or str(name)


def _yaml(value: Any) -> str:
    """A YAML scalar (JSON is valid YAML; strings are quoted)."""
    return json.dumps(value, ensure_ascii=False)


def _f(value: Any, fmt: str = ".4f") -> str:
    return "–" if value is None else format(value, fmt)


def _labels(manifest: dict[str, Any]) -> list[str]:
    labels = manifest.get("labels") or {}
    return [labels[k] for k in sorted(labels, key=int)]


def _precision(manifest: dict[str, Any]) -> str:
    quant, opt = manifest.get("quantization"), manifest.get("optimization")
    text = "fp32" if not quant else f"{quant['mode']}, {quant.get('scheme', 'per-tensor-dynamic')}"
    return text + (f", graph-optimised {opt['level']}" if opt else "")


def _dataset(run: dict[str, Any], labels: list[str]) -> str | None:
    """The hub dataset for the front matter: the run's data when it is a hub id, TNEWS when the labels are its."""
    data = hub_id(_data_name(run.get("data")))
    if data:
        return data
    return TNEWS_HUB_DATASET if tuple(labels) == TNEWS_LABEL_NAMES else None


# --------------------------------------------------------------------------- benchmark figures


def benchmark_figures(results: dict[str, Any], folder: Path, backend: str | None = None) -> dict[str, Any]:
    """The entry of a `tnews-deploy benchmark` results.json that measured `folder`, with its machine.

    Args:
        results: the parsed results.json.
        folder: the export folder the card is for.
        backend: the backend name in the results; default: the ONNX backend whose path is `folder`
            (compared resolved, then by folder name when that is unique).

    Raises:
        UserError: no (or no unique) backend of the results measured `folder`.
    """
    onnx = [b for b in results.get("backends", []) if b.get("kind") == "onnx"]
    if backend is not None:
        chosen = [b for b in onnx if b.get("backend") == backend]
    else:
        chosen = [b for b in onnx if Path(b.get("path", "")).resolve() == folder.resolve()]
        if not chosen:
            chosen = [b for b in onnx if Path(b.get("path", "")).name == folder.name]
    if len(chosen) != 1:
        names = ", ".join(f"{b.get('backend')} ({b.get('path')})" for b in onnx) or "none"
        raise UserError(
            f"the benchmark results name {'no' if not chosen else 'several'} ONNX backend(s) for "
            f"{folder}; pass --backend NAME (ONNX backends there: {names})."
        )
    return {
        "backend": chosen[0],
        "machine": results.get("machine", {}),
        "created": results.get("created"),
        "max_length": results.get("max_length"),
        "eval_sentences": results.get("eval_sentences"),
    }


# --------------------------------------------------------------------------- rendering


def render_card(
    manifest: dict[str, Any], name: str, benchmark: dict[str, Any] | None = None, base_model: str | None = None
) -> str:
    """The card's Markdown.

    Args:
        manifest: the export's manifest.json.
        name: the folder's name (the model's name in the card).
        benchmark: `benchmark_figures(...)` of a benchmark run on this folder, or None.
        base_model: the hub id of the pretrained model; default: the run's model when it is a hub id.
    """
    source = manifest.get("source") or {}
    run = source.get("run") or {}
    ver = manifest.get("verification") or {}
    labels = _labels(manifest)
    max_length = manifest.get("max_length")
    base = base_model or hub_id(run.get("model"))
    dataset = _dataset(run, labels)
    onnx, torch = ver.get("onnx") or {}, ver.get("pytorch") or {}
    sections = [
        _front_matter(name, base, dataset, onnx, labels),
        _summary(manifest, name, run, labels),
        _labels_section(labels),
        _training_section(source, run),
        _verification_section(ver, onnx, torch),
        *([_selection_section(manifest["auto"])] if manifest.get("auto") else []),
        _size_section(manifest, benchmark),
        _limitations_section(manifest, ver, max_length),
        _usage_section(name, max_length, labels),
    ]
    return "\n".join(s.rstrip("\n") + "\n" for s in sections)


def _front_matter(name: str, base: str | None, dataset: str | None, onnx: dict[str, Any], labels: list[str]) -> str:
    lines = [
        "---",
        "language:",
        "- zh",
        "pipeline_tag: text-classification",
        "library_name: transformers.js",
        "tags:",
        "- onnx",
        "- optimum",
        "- text-classification",
        "- tnews-deploy",
    ]
    if base:
        lines.append(f"base_model: {_yaml(base)}")
    if dataset:
        lines += ["datasets:", f"- {_yaml(dataset)}"]
    lines += ["metrics:", "- f1", "- accuracy"]
    if onnx:
        task = "- task:\n      type: text-classification\n      name: Text classification"
        data = (
            f"    dataset:\n      name: {_yaml(dataset or 'evaluation set')}\n"
            f"      type: {_yaml(dataset or 'local')}\n      split: validation"
        )
        metrics = "\n".join(
            f"    - type: {kind}\n      value: {_yaml(round(onnx[key], 4))}\n      name: {_yaml(title)}"
            for key, kind, title in (
                ("macro_f1", "f1", "macro-F1 (ONNX)"),
                ("micro_f1", "f1", "micro-F1 (ONNX)"),
                ("accuracy", "accuracy", "accuracy (ONNX)"),
            )
            if onnx.get(key) is not None
        )
        lines += ["model-index:", f"- name: {_yaml(name)}", "  results:", "  " + task, data, "    metrics:", metrics]
    lines.append("---")
    return "\n".join(lines) + "\n"


def _summary(manifest: dict[str, Any], name: str, run: dict[str, Any], labels: list[str]) -> str:
    model = run.get("model")
    what = (f"`{_short(model)}` fine-tuned" if model else "A fine-tuned encoder") + " as a classifier of Chinese news "
    what += f"titles into {len(labels)} classes"
    versions = manifest.get("versions") or {}
    return (
        f"# {name}\n\n{what}, exported to ONNX ({_precision(manifest)}, opset {manifest.get('opset')}) and "
        f"verified against PyTorch by tnews-deploy {versions.get('tnews_deploy', '')}. The folder runs without "
        "PyTorch: with `tnews_deploy.Predictor` (onnxruntime + tokenizers), Optimum's "
        "`ORTModelForSequenceClassification`, transformers.js (Node.js, browsers) or any onnxruntime binding.\n\n"
        f"This card was generated from `manifest.json` on export ({manifest.get('created', 'unknown date')}).\n"
    )


def _labels_section(labels: list[str]) -> str:
    rows = "\n".join(f"| {i} | `{label}` |" for i, label in enumerate(labels))
    return f"## Labels\n\n| id | label |\n|---|---|\n{rows}\n"


def _training_section(source: dict[str, Any], run: dict[str, Any]) -> str:
    if not run:
        return (
            "## Training run\n\nExported from a checkpoint without a training-run config beside it "
            f"({source.get('kind', 'checkpoint')}); its training settings are not recorded.\n"
        )
    fields = [
        ("base model", _short(run["model"]) if run.get("model") else None),
        ("data", _short(_data_name(run["data"])) if run.get("data") else None),
        ("variant", run.get("variant")),
        ("training sentences", run.get("train_size")),
        ("preset", run.get("preset")),
        ("learning rate", run.get("lr")),
        ("seed", run.get("seed")),
        ("max_length", run.get("max_length")),
    ]
    rows = "\n".join(f"| {k} | {v} |" for k, v in fields if v is not None)
    text = f"## Training run\n\n| setting | value |\n|---|---|\n{rows}\n"
    metrics = source.get("run_metrics") or {}
    if metrics:
        text += (
            f"\nThe run's own evaluation (PyTorch): macro-F1 {_f(metrics.get('macro_f1'))}, micro-F1 "
            f"{_f(metrics.get('micro_f1'))}, accuracy {_f(metrics.get('accuracy'))}.\n"
        )
    if source.get("kind") == "grid" and source.get("grid_best"):
        text += "\nChosen as the best run of a grid by macro-F1.\n"
    return text


def _verification_section(ver: dict[str, Any], onnx: dict[str, Any], torch: dict[str, Any]) -> str:
    if not ver:
        return "## Verification\n\nThe manifest records no verification.\n"
    evaluation = ver.get("evaluation") or {}
    where = (
        f"{ver.get('sentences', '?'):,} evaluation sentences"
        if isinstance(ver.get("sentences"), int)
        else "the evaluation sentences"
    )
    if evaluation:
        where += (
            f" of `{_short(_data_name(evaluation.get('data')))}` (seed {evaluation.get('seed')}"
            + (", the run's own evaluation set" if evaluation.get("same_as_training_run") else "")
            + ")"
        )
    text = (
        f"## Verification\n\nThe export was run on {where} through PyTorch and through the runtime `Predictor` "
        "before the folder was written:\n\n"
        "| | macro-F1 | micro-F1 | accuracy |\n|---|---|---|---|\n"
        f"| PyTorch | {_f(torch.get('macro_f1'))} | {_f(torch.get('micro_f1'))} | {_f(torch.get('accuracy'))} |\n"
        f"| ONNX | {_f(onnx.get('macro_f1'))} | {_f(onnx.get('micro_f1'))} | {_f(onnx.get('accuracy'))} |\n\n"
        f"Prediction agreement with PyTorch: {_f(ver.get('agreement'), '.2%')}; max |Δlogit| "
        f"{_f(ver.get('max_abs_logit_diff'), '.2e')}, mean |Δlogit| {_f(ver.get('mean_abs_logit_diff'), '.2e')}."
    )
    policy = ver.get("policy") or {}
    if policy:
        rule = (
            "agreement ≥ " + _f(policy.get("min_agreement"), ".1%")
            if ver.get("exact")
            else f"macro-F1 drop ≤ {policy.get('max_f1_drop')}"
        )
        text += f" Gate ({'exact' if ver.get('exact') else 'approximate'} export): {rule}, passed."
    inv = ver.get("batch_invariance")
    if inv:
        text += (
            f"\n\nBatch invariance: {inv['sentences']:,} sentences predicted one at a time and in batches of "
            f"{max(inv.get('batch_sizes', [32]))}: {inv['label_changes']} label change(s), max |Δp| "
            f"{inv['max_abs_prob_diff']:.2e}."
        )
    text += _cpu_paragraph(ver)
    return text + "\n"


def _cpu_paragraph(ver: dict[str, Any]) -> str:
    """The CPU the export was verified on, and for int8 the kernels it ran and the other weight form's check."""
    machine, kernels = ver.get("machine"), ver.get("int8_kernels")
    if not machine:
        return ""
    text = (
        f"\n\nVerified on {machine.get('cpu')} ({machine.get('arch')}; flags: "
        f"{', '.join(machine.get('flags') or []) or 'none'})."
    )
    if kernels:
        used = kernels.get("verified_with")
        text += (
            f" int8 weights in the file: {kernels.get('file')}; run there as {used}. `Predictor` runs them in "
            "the form exact and fastest on the CPU serving it (u8s8 with VNNI or on ARM64, else u8u8); the "
            "integer products are the same."
        )
        for form in ("u8u8", "u8s8"):
            check = kernels.get(form) if form != used else None
            if check:
                text += (
                    f" The same {check['sentences']:,} sentences in the {form} form: {check['label_changes']} "
                    f"label change(s), max |Δlogit| {check['max_abs_logit_diff']:.2e}."
                )
    return text


def selection_table(auto: dict[str, Any]) -> str:
    """The Markdown table of an `export --quantize auto` record: each candidate's gate figures and timings.

    Args:
        auto: the manifest's `auto` record (`tnews_deploy.export.auto`).
    """
    size = auto.get("timing", {}).get("batch_size", 32)
    rows = [
        f"| candidate | gate | agreement | ONNX macro-F1 | macro-F1 drop | batch-1 p50 (ms) | "
        f"titles/s, batch {size} | model.onnx (MB) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in auto.get("candidates", []):
        gate, timing = c.get("gate") or {}, c.get("timing") or {}
        verdict = "passed" if c.get("passed") else "refused: " + "; ".join(c.get("reasons") or [])
        name = f"**{c['name']}** (chosen)" if c["name"] == auto.get("chosen") else c["name"]
        size_mb = _f(c["bytes"] / 1e6, ".1f") if c.get("bytes") else "–"
        rows.append(
            f"| {name} | {verdict} | {_f(gate.get('agreement'), '.2%')} | "
            f"{_f((gate.get('onnx') or {}).get('macro_f1'))} | {_f(gate.get('macro_f1_drop'))} | "
            f"{_f(timing.get('latency_p50_ms'), '.2f')} | {_f(timing.get('throughput'), '.0f')} | {size_mb} |"
        )
    return "\n".join(rows)


def _selection_section(auto: dict[str, Any]) -> str:
    timing, machine = auto.get("timing") or {}, auto.get("machine") or {}
    measure = (
        "titles per second at batch " + str(timing.get("batch_size"))
        if auto.get("prefer") == "throughput"
        else "batch-1 p50 latency"
    )
    return (
        "## Variant chosen on this machine\n\n"
        f"Exported with `--quantize auto`: each candidate was built, verified with the same gate, and the ones "
        f"that passed were timed through `Predictor` on {machine.get('cpu')} ({machine.get('arch')}; flags: "
        f"{', '.join(machine.get('flags') or []) or 'none'}) with {timing.get('threads')} thread(s), in "
        f"{timing.get('rounds')} alternating rounds on {timing.get('texts')} evaluation titles (batch-1: "
        f"median of {timing.get('latency_calls')} calls; throughput: median of the rounds, length-bucketed). "
        f"Kept: the best by {measure} (`--prefer {auto.get('prefer')}`). Another CPU may rank them "
        "differently.\n\n" + selection_table(auto) + "\n"
    )


def _size_section(manifest: dict[str, Any], benchmark: dict[str, Any] | None) -> str:
    model = manifest.get("model") or {}
    text = (
        f"## Size and speed\n\n`model.onnx`: {model.get('bytes', 0) / 1e6:.1f} MB, sha256 `{model.get('sha256')}` "
        "(checked by `Predictor` and the Node.js example before loading)."
    )
    quant = manifest.get("quantization")
    if quant:
        text += (
            f" Quantisation: {quant.get('mode')}, {quant.get('scheme', 'per-tensor-dynamic')}; activations "
            f"{quant.get('activations')}; weights {quant.get('weights')}; kernels for {quant.get('target')}."
        )
    if not benchmark:
        text += (
            "\n\nNo benchmark was recorded with this card; `tnews-deploy benchmark --onnx DIR --output OUT`, "
            "then `tnews-deploy card DIR --benchmark OUT/results.json`, adds one."
        )
        return text + "\n"
    b, m = benchmark["backend"], benchmark["machine"]
    lat, tput = b.get("latency_ms") or {}, b.get("throughput") or {}
    rows = [
        f"| latency, 1 title (p50 / p95 / p99) | {_f(lat.get('p50'), '.1f')} / {_f(lat.get('p95'), '.1f')} / "
        f"{_f(lat.get('p99'), '.1f')} ms |"
    ]
    rows += [f"| throughput, batches of {size} | {_f(t.get('median'), '.0f')} titles/s |" for size, t in tput.items()]
    cold = b.get("cold_start") or {}
    if cold:
        rows.append(
            f"| cold start (import, load, first prediction) | {_f(cold.get('seconds'), '.2f')} s, peak RSS "
            f"{_f(cold.get('peak_rss_mb'), '.0f')} MB |"
        )
    text += (
        f"\n\nMeasured by `tnews-deploy benchmark` ({benchmark.get('created')}) on {m.get('cpu')} "
        f"({m.get('usable_cpus')} usable CPUs, {m.get('threads')} threads), onnxruntime "
        f"{(m.get('versions') or {}).get('onnxruntime')}, on {benchmark.get('eval_sentences')} evaluation "
        f"sentences (backend `{b.get('backend')}`):\n\n| | |\n|---|---|\n" + "\n".join(rows)
    )
    return text + "\n"


def _limitations_section(manifest: dict[str, Any], ver: dict[str, Any], max_length: Any) -> str:
    items = [
        f"Texts are cut to {max_length} tokens, special tokens included: the end of a longer text is not seen. "
        "The model was trained and verified on news titles; other text (article bodies, comments, other "
        "domains) is untested."
    ]
    onnx = ver.get("onnx") or {}
    if onnx.get("accuracy") is not None:
        items.append(
            f"Accuracy on the evaluation set is {onnx['accuracy']:.1%}: roughly "
            f"{1 - onnx['accuracy']:.0%} of titles get a wrong label; use the scores (or `top_k`) where "
            "that matters."
        )
    quant = manifest.get("quantization") or {}
    if quant.get("mode") == "int8":
        items.append(
            "int8 (per-token symmetric): approximate: it agrees with PyTorch on "
            f"{_f(ver.get('agreement'), '.1%')} of the evaluation titles. It is batch-invariant: a text gets "
            "the same answer alone or in any batch. It uses the `com.microsoft` contrib op "
            "`MatMulIntegerToFloat`, which onnxruntime's CPU builds (Python, onnxruntime-node, C/C++, C#, "
            "Java) include; other runtimes may lack it."
        )
    elif quant.get("mode") == "int8-dynamic":
        items.append(
            "int8-dynamic (one activation scale per tensor per call): a text's answer depends on the other "
            "texts in its batch (with micro-batching, on other users' requests). Prefer `--quantize int8`."
        )
    elif manifest.get("optimization") and manifest["optimization"].get("level") == "O3":
        items.append("O3 approximates GELU: close to PyTorch, not exact.")
    return "## Limitations\n\n" + "\n".join(f"- {item}" for item in items) + "\n"


def _usage_section(name: str, max_length: Any, labels: list[str]) -> str:
    example = "北京大学举行毕业典礼"
    return f"""## Usage

The folder: `model.onnx` (inputs `input_ids`, `attention_mask`, and `token_type_ids` when the model takes
them; output `logits`, one row of {len(labels)} per text), `tokenizer.json` (Hugging Face tokenizers),
`config.json` (`id2label`), `manifest.json`. To reproduce `Predictor` exactly in any runtime: encode with
`tokenizer.json` *with* its special tokens; cut a longer text's content so that the whole is at most
{max_length} tokens (the special tokens stay); pad a batch to its longest text with `config.json`'s
`pad_token_id`, `attention_mask` 1 on tokens and 0 on padding, `token_type_ids` all 0; all int64;
probabilities = softmax of the logits; label = `id2label[argmax]`.
More: `docs/embedding.md` of tnews-deploy.

### Python: tnews-deploy

```python
from tnews_deploy import Predictor          # pip install tnews-deploy (onnxruntime + tokenizers + numpy)

predictor = Predictor("{name}")
predictor.predict("{example}")           # Prediction(label=..., label_id=..., score=...)
predictor.predict(["...", "..."], top_k=3)
```

```
tnews-deploy predict {name} "{example}" "国足备战世界杯预选赛"
```

### Python: Optimum + transformers

```python
from optimum.onnxruntime import ORTModelForSequenceClassification
from transformers import AutoTokenizer, pipeline

model = ORTModelForSequenceClassification.from_pretrained("{name}")
tokenizer = AutoTokenizer.from_pretrained("{name}")
classify = pipeline("text-classification", model=model, tokenizer=tokenizer)
# (transformers >= 4.57.3 warns of "an incorrect regex pattern" for tokenizers of over 100k tokens such as
# e5's / XLM-R's: a false alarm for them; tnews_deploy.noise.silence_known_noise() filters it.)
classify(["{example}"], truncation=True, max_length={max_length}, top_k=None)   # all classes, best first
```

### Node.js: transformers.js

`{NODE_EXAMPLE}` in tnews-deploy (`npm ci --ignore-scripts`, then
`node classify.mjs {name} "{example}"`) reproduces `Predictor` (same labels; probabilities within 1e-5,
long texts included). The plain pipeline gives the same answers on texts of up to {max_length} tokens:

```js
import {{ pipeline, env }} from '@huggingface/transformers';   // 4.3.2, onnxruntime-node underneath
env.allowRemoteModels = false;
const classify = await pipeline('text-classification', '/abs/path/to/{name}', {{ subfolder: '', dtype: 'fp32' }});
await classify(['{example}'], {{ top_k: null }});
```

(transformers.js 4.3 truncates a longer text by cutting its ids, which drops the final special token: use the
example's `TnewsClassifier` for long texts.)

### HTTP

```
tnews-deploy serve {name} --port 8000
curl -s localhost:8000/v1/classify -H 'content-type: application/json' \\
     -d '{{"texts": ["{example}"], "top_k": 1}}'
```
"""


# --------------------------------------------------------------------------- writing


def write_card(
    folder: str | Path,
    manifest: dict[str, Any] | None = None,
    benchmark: str | Path | None = None,
    backend: str | None = None,
    base_model: str | None = None,
    name: str | None = None,
) -> Path:
    """Write (or rewrite) `README.md` in an export folder from its manifest.

    Args:
        folder: the export folder.
        manifest: the manifest to use; default: the folder's manifest.json.
        benchmark: a `tnews-deploy benchmark` results.json that measured this folder, for the speed figures.
        backend: the benchmark backend that is this folder (default: found by path).
        base_model: the pretrained model's hub id for the front matter (default: the run's model if a hub id).
        name: the model's name in the card; default: the folder's name.

    Returns:
        The card's path.

    Raises:
        UserError: no manifest, or benchmark results that did not measure this folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: no such folder (an export folder written by `tnews-deploy export`).")
    if manifest is None:
        manifest = _read_json(
            folder / "manifest.json",
            "the card is generated from an export's manifest (export the model with `tnews-deploy export`)",
        )
    figures = None
    if benchmark is not None:
        results = _read_json(Path(benchmark), "a results.json written by `tnews-deploy benchmark`")
        figures = benchmark_figures(results, folder, backend)
    card = folder / CARD_FILE
    text = render_card(manifest, name or folder.resolve().name, figures, base_model)
    tmp = card.with_name(f".{CARD_FILE}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, card)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UserError(f"{card}: cannot be written ({exc.strerror or exc}).") from exc
    return card


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: missing; {what}.") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: cannot be read as JSON ({exc}); {what}.") from exc

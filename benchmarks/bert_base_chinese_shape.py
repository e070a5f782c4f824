#!/usr/bin/env python3
"""Latency of the real production shape: bert-base-chinese with random weights.

    python benchmarks/bert_base_chinese_shape.py --tokenizer ../shared/models/bert-base-chinese-tokenizer \
        --data ../shared/data/tnews/hf --work runs/bench-bert-base \
        --results benchmarks/results/<machine>-bert-base-chinese-shape

Builds a `BertForSequenceClassification` with bert-base-chinese's exact config
(12 layers, hidden 768, vocab 21,128) and random weights from the real vocab and
config (or `--tokenizer bert-base-chinese` from the hub), saves it with the 15
TNEWS labels, then exports and benchmarks it like any checkpoint. F1 of random
weights means nothing, so the int8 F1 gate is relaxed by default; speed is the
point here. Extra arguments go to export_and_benchmark.py.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import export_and_benchmark  # noqa: E402


def build_checkpoint(tokenizer_source: str, target: Path, seed: int = 0) -> Path:
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    from tnews_deploy.labels import TNEWS_LABEL_NAMES

    if (target / "model.safetensors").is_file():
        return target
    id2label = dict(enumerate(TNEWS_LABEL_NAMES))
    config = BertConfig.from_pretrained(
        tokenizer_source, num_labels=len(id2label), id2label=id2label, label2id={v: k for k, v in id2label.items()}
    )
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config).eval()
    model.save_pretrained(target)
    BertTokenizerFast.from_pretrained(tokenizer_source).save_pretrained(target)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--tokenizer", default="bert-base-chinese", help="folder with vocab.txt + config.json, or hub id"
    )
    parser.add_argument("--work", type=Path, required=True)
    args, rest = parser.parse_known_args()
    checkpoint = build_checkpoint(args.tokenizer, args.work / "checkpoint")
    if "--max-f1-drop" not in rest:
        rest += ["--max-f1-drop", "1.0"]  # random weights: F1 is noise; parity is shown on a trained model
    export_and_benchmark.main([str(checkpoint), "--work", str(args.work), *rest])


if __name__ == "__main__":
    main()

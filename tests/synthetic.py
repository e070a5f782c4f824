"""Tiny TNEWS-shaped data and a tiny random BERT, for tests that must run offline.

Each class owns a few "keyword" characters; a sentence is filler characters with
one or two keywords of its class mixed in, so a model can learn the task in a
few dozen steps.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from tnews_deploy.labels import TNEWS_LABEL_NAMES, TNEWS_LABELS

FILLER = list(
    "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所"
    "民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日"
    "那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想"
    "已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指"
    "几九区强放决西被干做必战先回则任取据处理"
)
KEYWORDS_PER_CLASS = 3
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def class_keywords() -> list[list[str]]:
    # Keywords come from a block of CJK characters that FILLER does not use.
    start = 0x9F00
    chars = [chr(start + i) for i in range(len(TNEWS_LABELS) * KEYWORDS_PER_CLASS)]
    return [chars[i * KEYWORDS_PER_CLASS : (i + 1) * KEYWORDS_PER_CLASS] for i in range(len(TNEWS_LABELS))]


def make_sentence(rng: random.Random, label: int) -> str:
    keywords = class_keywords()[label]
    chars = [rng.choice(FILLER) for _ in range(rng.randint(6, 24))]
    for _ in range(rng.randint(1, 2)):
        chars.insert(rng.randrange(len(chars) + 1), rng.choice(keywords))
    return "".join(chars)


def make_rows(n_per_class: int, seed: int, labelled: bool = True) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for label in range(len(TNEWS_LABELS)):
        for _ in range(n_per_class):
            rows.append({"label": label if labelled else -1, "sentence": make_sentence(rng, label)})
    rng.shuffle(rows)
    return [{"idx": i, **row} for i, row in enumerate(rows)]


def write_hf_jsonl(folder: Path, splits: dict[str, list[dict]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in splits.items():
        with (folder / f"{name}.jsonl").open("w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(
                    json.dumps(
                        {"idx": row["idx"], "label": row["label"], "sentence": row["sentence"]}, ensure_ascii=False
                    )
                    + "\n"
                )
    return folder


def write_clue(folder: Path, splits: dict[str, list[dict]], train_as_tsv: bool = False) -> Path:
    """The original CLUE layout: label codes as strings, label_desc, keywords."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "labels.json").open("w", encoding="utf-8") as fh:
        for code, name in TNEWS_LABELS:
            fh.write(json.dumps({"label": code, "label_desc": name}) + "\n")
    files = {"train": "train.json", "validation": "dev.json", "test": "test.json"}
    for split, rows in splits.items():
        if split == "train" and train_as_tsv:
            with (folder / "train.tsv").open("w", encoding="utf-8") as fh:
                for row in rows:
                    fh.write(f"{row['sentence']}\t{TNEWS_LABEL_NAMES[row['label']]}\n")
            continue
        with (folder / files[split]).open("w", encoding="utf-8") as fh:
            for row in rows:
                if split == "test":
                    obj = {"id": row["idx"], "sentence": row["sentence"], "keywords": ""}
                else:
                    code, name = TNEWS_LABELS[row["label"]]
                    obj = {"label": code, "label_desc": name, "sentence": row["sentence"], "keywords": ""}
                fh.write(json.dumps(obj, ensure_ascii=False) + "\n")
    return folder


def synthetic_splits() -> dict[str, list[dict]]:
    return {
        "train": make_rows(40, seed=1),
        "validation": make_rows(20, seed=2),
        "test": make_rows(3, seed=3, labelled=False),
    }


def build_tiny_bert(folder: Path, hidden: int = 32, layers: int = 2, min_vocab: int = 0) -> Path:
    """A random BERT encoder (no classification head) + fast char tokenizer, saved like a hub model.

    `min_vocab` pads the vocabulary with unused tokens: transformers treats tokenizers over 100k
    tokens (e5, XLM-R) differently, and some of its warnings fire only for those.
    """
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = SPECIAL_TOKENS + sorted(set(FILLER) | {c for kw in class_keywords() for c in kw})
    vocab += [f"[unused{i}]" for i in range(min_vocab - len(vocab))]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(
        vocab_file=str(folder / "vocab.txt"), do_lower_case=False, tokenize_chinese_chars=True
    )
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=hidden * 2,
        max_position_embeddings=128,
        pad_token_id=0,
    )
    BertModel(config).save_pretrained(folder)
    return folder

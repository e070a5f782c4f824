"""Vocabulary trimming on tiny trained models of both tokenizer families (Unigram and WordPiece).

The data are the synthetic TNEWS rows plus a few sentences with ASCII words:
`news` occurs in training sentences (its token must be kept), `game` only in
validation sentences, and `quiz` in a sentence that is in both train and
validation (neither may choose tokens).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import SHARED, tiny_train_config
from synthetic import FILLER, SPECIAL_TOKENS, class_keywords, synthetic_splits, write_hf_jsonl
from tnews_deploy.errors import ConfigError

KEYWORDS = [c for kw in class_keywords() for c in kw]
CHARS = sorted(set(FILLER))  # FILLER repeats a character
# CJK characters that no sentence uses: their single-character pieces are what unseen text falls back to.
EXTRA_CJK = [c for c in map(chr, range(0x9E00, 0x9E20)) if c not in FILLER and c not in KEYWORDS]
UNSEEN = EXTRA_CJK[0]
LETTERS = [chr(c) for c in range(ord("a"), ord("z") + 1)]
DIGITS = list("0123456789")
PUNCT = list(",.!?，。！？")
WORDS = ["news", "game", "quiz"]
GREEK = ["α", "β"]  # not a fallback class: kept only if the corpus used them (it does not)
DUPLICATE = "国quiz人{kw}的"  # in train and in validation


def _trim_rows() -> dict[str, list[dict]]:
    rows = synthetic_splits()
    rng = random.Random(7)

    def sentence(word: str, label: int) -> str:
        kw = rng.choice(class_keywords()[label])
        return "".join(rng.choice(FILLER) for _ in range(4)) + f" {word} " + kw + rng.choice(FILLER)

    train, validation = rows["train"], rows["validation"]
    for i in range(15):
        train.append({"idx": len(train), "label": i, "sentence": sentence("news", i)})
        validation.append({"idx": len(validation), "label": i, "sentence": sentence("game", i)})
    # A character the vocab has as a piece but no training sentence uses, and no fallback class covers:
    # it becomes the unknown token, although a Unigram encoding still shows it as itself (between known
    # characters, so that it is not fused with a neighbouring unknown one).
    validation.append({"idx": len(validation), "label": 3, "sentence": "的人" + GREEK[0] + class_keywords()[3][0]})
    dup = DUPLICATE.format(kw=class_keywords()[7][0])
    train.append({"idx": len(train), "label": 7, "sentence": dup})
    validation.append({"idx": len(validation), "label": 7, "sentence": dup})
    return rows


def _bigrams(rng: random.Random, n: int) -> list[str]:
    chars = CHARS + KEYWORDS
    return sorted({rng.choice(chars) + rng.choice(chars) for _ in range(n)})


def build_unigram_bert(folder: Path, hidden: int = 32) -> Path:
    """A random BERT + a SentencePiece-style Unigram tokenizer (Metaspace, <s> </s>), like XLM-R / e5."""
    import torch
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, XLMRobertaTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(3)
    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    vocab = [(t, 0.0) for t in specials] + [("▁", -2.0)]
    vocab += [(w, -5.0) for w in WORDS] + [("▁" + w, -4.5) for w in WORDS]
    vocab += [(b, -6.0) for b in _bigrams(rng, 300)]
    vocab += [("▁" + c, -7.0) for c in FILLER[:20] + EXTRA_CJK[:3]]
    vocab += [(c, -8.0) for c in CHARS + KEYWORDS + EXTRA_CJK + LETTERS + DIGITS + PUNCT]
    vocab += [(c, -10.0) for c in GREEK] + [("<mask>", 0.0)]
    pieces = [p for p, _ in vocab]
    assert len(pieces) == len(set(pieces))
    tokenizer = Tokenizer(models.Unigram(vocab, 3, False))
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials + ["<mask>"]])
    XLMRobertaTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
    ).save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab) + 3,
        hidden_size=hidden,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=hidden * 2,
        max_position_embeddings=128,
        pad_token_id=1,
    )
    BertModel(config).save_pretrained(folder)  # 3 spare embedding rows, as e5 has 35
    return folder


def build_wordpiece_bert(folder: Path, hidden: int = 32) -> Path:
    """A random BERT + a WordPiece vocab with words, ## pieces and unused slots, like bert-base-chinese."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[unused1]", "[unused2]"] + SPECIAL_TOKENS[1:]
    vocab += WORDS + ["##ing"]
    vocab += CHARS + KEYWORDS + EXTRA_CJK + LETTERS + DIGITS + PUNCT + GREEK
    vocab += ["##" + c for c in LETTERS + DIGITS + PUNCT + FILLER[:20]]  # ##，/##的 can never be produced
    assert len(vocab) == len(set(vocab))
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=False).save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=hidden,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=hidden * 2,
        max_position_embeddings=128,
        pad_token_id=0,
    )
    BertModel(config).save_pretrained(folder)
    return folder


BUILDERS = {"unigram": build_unigram_bert, "wordpiece": build_wordpiece_bert}


@pytest.fixture(scope="session")
def trim_data(tmp_path_factory) -> Path:
    return write_hf_jsonl(tmp_path_factory.mktemp("trim-data"), _trim_rows())


@pytest.fixture(scope="session")
def make_run(tmp_path_factory, trim_data):
    """family -> a finished tiny training run whose base model has that tokenizer family (built once)."""
    from tnews_deploy.training import train_run

    runs = {}

    def make(family: str):
        if family not in runs:
            base = BUILDERS[family](tmp_path_factory.mktemp(f"{family}-base"))
            runs[family] = train_run(
                tiny_train_config(base, trim_data), tmp_path_factory.mktemp(f"{family}-run") / "run", quiet=True
            )
        return runs[family]

    return make


@pytest.fixture(scope="session", params=sorted(BUILDERS))
def family_run(request, make_run):
    """(family, its run), for the behaviour every tokenizer family must show."""
    return request.param, make_run(request.param)


@pytest.fixture(scope="session")
def unigram_run(make_run):
    """For the mechanics that do not depend on the family (gate, atomicity, CLI)."""
    return make_run("unigram")


@pytest.fixture(scope="session")
def trimmed(family_run, tmp_path_factory):
    from tnews_deploy.compress import TrimConfig, trim_vocab

    family, run = family_run
    out = tmp_path_factory.mktemp(f"{family}-trimmed") / "trimmed"
    # A few-second tiny model has near-ties: the texts whose pieces change (the `game` ones) may flip
    # one or two of ~300 predictions, so the gate is set below the default 99.5 % here.
    return family, run, trim_vocab(run.run_dir, out, TrimConfig(min_agreement=0.95, progress=False))


def _tokenizer(folder: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)


def _validation(data: Path) -> tuple[list[str], list[int]]:
    rows = [json.loads(line) for line in (data / "validation.jsonl").read_text(encoding="utf-8").splitlines()]
    return [r["sentence"] for r in rows], [r["label"] for r in rows]


def test_kept_tokens_keep_their_order_rows_and_special_ids(trimmed):
    from transformers import AutoModelForSequenceClassification

    family, run, result = trimmed
    source_dir, trimmed_dir = run.checkpoint, result.output / "checkpoint"
    old_tok, new_tok = _tokenizer(source_dir), _tokenizer(trimmed_dir)
    old_vocab, new_vocab = old_tok.get_vocab(), new_tok.get_vocab()
    assert len(new_vocab) < len(old_vocab)
    by_new_id = sorted(new_vocab, key=new_vocab.get)
    assert [new_vocab[t] for t in by_new_id] == list(range(len(new_vocab)))
    old_ids = [old_vocab[t] for t in by_new_id]
    assert old_ids == sorted(old_ids) and len(set(old_ids)) == len(old_ids)  # old relative order
    assert json.loads((result.output / "trim_kept_ids.json").read_text()) == old_ids

    old_model = AutoModelForSequenceClassification.from_pretrained(source_dir)
    new_model = AutoModelForSequenceClassification.from_pretrained(trimmed_dir)
    old_rows = old_model.get_input_embeddings().weight.detach().numpy()
    new_rows = new_model.get_input_embeddings().weight.detach().numpy()
    assert new_model.config.vocab_size == new_rows.shape[0] == len(new_vocab)
    np.testing.assert_array_equal(new_rows, old_rows[old_ids])

    for name in ("pad_token", "unk_token", "cls_token", "sep_token", "mask_token"):
        assert getattr(new_tok, name) == getattr(old_tok, name)
        assert new_tok.convert_ids_to_tokens(getattr(new_tok, name + "_id")) == getattr(old_tok, name)
    assert new_model.config.pad_token_id == new_tok.pad_token_id
    assert new_model.get_input_embeddings().padding_idx == new_tok.pad_token_id
    ids = new_tok("的人")["input_ids"]  # the rebuilt post-processor inserts the new special ids
    assert ids[0] == new_tok.cls_token_id and ids[-1] == new_tok.sep_token_id
    assert type(new_tok) is type(old_tok)
    assert result.record["tokenizer"]["family"] == family


def test_unchanged_pieces_give_identical_logits(trimmed, trim_data):
    from tnews_deploy.export.verify import pytorch_logits

    _, run, result = trimmed
    texts, _ = _validation(trim_data)
    old_tok, new_tok = _tokenizer(run.checkpoint), _tokenizer(result.output / "checkpoint")

    def pieces(tokenizer, text):
        return tokenizer.convert_ids_to_tokens(tokenizer(text, add_special_tokens=False)["input_ids"])

    unchanged = np.array([pieces(old_tok, t) == pieces(new_tok, t) for t in texts])
    assert unchanged.sum() > 0 and (~unchanged).sum() > 0  # the `game` sentences changed
    greek = [i for i, t in enumerate(texts) if GREEK[0] in t]
    assert greek and not unchanged[greek].any()  # its piece became the unknown token: a change
    before = pytorch_logits(run.checkpoint, texts, 32)
    after = pytorch_logits(result.output / "checkpoint", texts, 32)
    assert np.abs(before - after)[unchanged].max() <= 1e-5
    report = result.report
    assert report.passed and report.max_abs_logit_diff_unchanged <= 1e-5
    assert report.texts == len(texts)  # default: all of the validation split
    assert report.pieces_unchanged == pytest.approx(unchanged.mean())


def test_unseen_text_falls_back_to_single_characters(trimmed, trim_data):
    _, run, result = trimmed
    corpus = (trim_data / "train.jsonl").read_text(encoding="utf-8") + (trim_data / "validation.jsonl").read_text(
        encoding="utf-8"
    )
    assert UNSEEN not in corpus and "zebra" not in corpus
    old_tok, new_tok = _tokenizer(run.checkpoint), _tokenizer(result.output / "checkpoint")
    for text in (f"的{UNSEEN}人", UNSEEN, "zebra 2049"):
        ids = new_tok(text, add_special_tokens=False)["input_ids"]
        assert new_tok.unk_token_id not in ids, (text, new_tok.convert_ids_to_tokens(ids))
    pieces = new_tok.tokenize(f"的{UNSEEN}人")
    assert UNSEEN in pieces or "▁" + UNSEEN in pieces
    assert new_tok.tokenize(f"的{UNSEEN}人") == old_tok.tokenize(f"的{UNSEEN}人")
    for greek in GREEK:  # not a fallback class, not in the corpus: dropped
        assert greek not in new_tok.get_vocab() and greek in old_tok.get_vocab()


def test_validation_sentences_do_not_choose_tokens(trimmed):
    family, _, result = trimmed
    vocab = _tokenizer(result.output / "checkpoint").get_vocab()
    word = (lambda w: "▁" + w) if family == "unigram" else (lambda w: w)
    assert word("news") in vocab  # in training sentences
    assert word("game") not in vocab  # only in validation sentences
    assert word("quiz") not in vocab  # in a sentence that is in train and in validation
    corpus = result.record["corpus"]
    assert corpus["split"] == "train" and corpus["excluded_as_validation_sentences"] >= 1


def test_output_is_a_run_folder_that_exports_and_predicts(trimmed, trim_data, tmp_path):
    from tnews_deploy import Predictor
    from tnews_deploy.export import export_model, resolve_source
    from tnews_deploy.export.verify import pytorch_logits

    _, run, result = trimmed
    out = result.output
    run_config = json.loads((run.run_dir / "run_config.json").read_text())
    assert json.loads((out / "run_config.json").read_text()) == run_config
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["trimmed_from"]["macro_f1"] == pytest.approx(run.metrics["macro_f1"], abs=1e-9)
    assert metrics["eval_size"] == run.config.eval_size
    record = json.loads((out / "trim.json").read_text())
    assert record["verification"]["passed"] is True
    assert record["embedding_rows"]["after"] == record["tokenizer"]["vocab_after"] < record["embedding_rows"]["before"]
    assert record["parameters"]["after"] < record["parameters"]["before"]
    assert resolve_source(out).kind == "run"

    exported = export_model(out, tmp_path / "fp32")
    verification = exported.manifest["verification"]
    assert verification["passed"] and verification["evaluation"]["same_as_training_run"]
    assert verification["sentences"] == run.config.eval_size
    assert exported.report.pytorch["macro_f1"] == pytest.approx(metrics["macro_f1"], abs=1e-6)  # report rounds
    texts, _ = _validation(trim_data)
    predictor = Predictor(tmp_path / "fp32")
    assert predictor.pad_token_id == _tokenizer(out / "checkpoint").pad_token_id
    expected = pytorch_logits(out / "checkpoint", texts, run.config.max_length).argmax(-1)
    assert [p.label_id for p in predictor.predict(texts)] == expected.tolist()


def test_refused_trim_leaves_nothing(unigram_run, tmp_path, monkeypatch):
    """Rows that do not match their tokens must be refused, with no folder left behind."""
    import tnews_deploy.compress.trim as trim
    from tnews_deploy.compress import TrimConfig, TrimRefused

    real = trim.trim_embeddings

    def scrambled(model, keep):
        real(model, keep)
        rows = model.get_input_embeddings().weight
        rows.data = rows.data[np.random.default_rng(0).permutation(rows.shape[0])]

    monkeypatch.setattr(trim, "trim_embeddings", scrambled)
    with pytest.raises(TrimRefused, match="agreement with the untrimmed model") as info:
        trim.trim_vocab(unigram_run.run_dir, tmp_path / "out", TrimConfig(progress=False))
    assert info.value.report.agreement < 0.995 and info.value.report.passed is False
    assert "rows do not match" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_trim_leaves_nothing(unigram_run, tmp_path, monkeypatch):
    import tnews_deploy.export.verify as verify
    from tnews_deploy.compress import TrimConfig, trim_vocab

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(verify, "pytorch_logits", interrupted)
    with pytest.raises(KeyboardInterrupt):
        trim_vocab(unigram_run.run_dir, tmp_path / "out", TrimConfig(progress=False))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"min_agreement": 1.5}, "--min-agreement"),
        ({"min_agreement": -0.1}, "--min-agreement"),
        ({"verify_size": 0}, "--verify-size"),
        ({"max_length": 4}, "--max-length"),
        ({"batch_size": 0}, "--batch-size"),
        ({"corpus": " "}, "--corpus"),
        ({"corpus_field": "body"}, "--corpus-field"),  # without --corpus
        ({"corpus": "more.csv", "corpus_field": ""}, "--corpus-field"),
        ({"unchanged_tolerance": float("nan")}, "unchanged_tolerance"),
    ],
)
def test_trim_config_rejects_bad_values(kwargs, name):
    from tnews_deploy.compress import TrimConfig

    with pytest.raises(ConfigError, match=name):
        TrimConfig(**kwargs)


def test_corpus_file_and_verify_size(unigram_run, trim_data, tmp_path):
    """A text file as corpus: its tokens are kept, validation sentences in it are not used."""
    from tnews_deploy.compress import TrimConfig, trim_vocab

    run = unigram_run
    validation, _ = _validation(trim_data)
    game_sentence = next(s for s in validation if "game" in s)
    corpus = tmp_path / "titles.txt"
    corpus.write_text("\n".join(["北京 quiz 的人", game_sentence, "", "人的"]) + "\n", encoding="utf-8")
    result = trim_vocab(
        run.run_dir, tmp_path / "out", TrimConfig(corpus=str(corpus), verify_size=60, min_agreement=0.0, progress=False)
    )
    vocab = _tokenizer(result.output / "checkpoint").get_vocab()
    assert "▁quiz" in vocab and "▁game" not in vocab and "▁news" not in vocab
    assert result.record["corpus"]["sentences"] == 2  # the empty line is skipped, the validation one excluded
    assert result.report.texts == 60


def test_cli_trim_vocab(unigram_run, tmp_path):
    from tnews_deploy.cli import main

    args = [
        "trim-vocab",
        str(unigram_run.run_dir),
        "--output",
        str(tmp_path / "out"),
        "--verify-size",
        "100",
        "--min-agreement",
        "0.9",
        "--quiet",
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "vocabulary" in result.output and "agreement" in result.output
    assert (tmp_path / "out" / "trim.json").is_file()
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 2 and "already exists" in again.output and "Traceback" not in again.output
    bad = CliRunner().invoke(main, [*args[:4], "--min-agreement", "2", "--force"])
    assert bad.exit_code == 2 and "--min-agreement" in bad.output
    missing = CliRunner().invoke(main, ["trim-vocab", str(tmp_path / "nope"), "--output", str(tmp_path / "o")])
    assert missing.exit_code == 2 and "no such folder" in missing.output


BERT_CHINESE = SHARED / "models" / "bert-base-chinese-tokenizer"


@pytest.mark.shared
@pytest.mark.skipif(not (BERT_CHINESE / "vocab.txt").is_file(), reason="../shared bert-base-chinese tokenizer absent")
def test_real_bert_base_chinese_vocabulary():
    """The real 21,128-token WordPiece vocab: corpus texts keep their pieces, ## CJK forms go, characters stay."""
    from transformers import AutoTokenizer, BertConfig

    from tnews_deploy.compress.trim import choose_tokens, rebuild_tokenizer, single_character_ids, wrap_tokenizer

    source = AutoTokenizer.from_pretrained(BERT_CHINESE)
    backend = source.backend_tokenizer
    corpus = ["北京大学举行毕业典礼", "国足备战2022世界杯预选赛", "iPhone 15 发布会：苹果的新品"]
    reasons, _ = choose_tokens(source, BertConfig.from_pretrained(BERT_CHINESE), corpus)
    keep = sorted(set().union(*reasons.values()))
    singles = single_character_ids(backend)
    assert len(singles["cjk"]) > 5000 and backend.token_to_id("##的") not in set().union(*singles.values())
    assert backend.token_to_id("##a") in singles["letter"]
    trimmed = wrap_tokenizer(source, rebuild_tokenizer(backend, keep))
    assert len(trimmed) == len(keep) < len(source)
    for text in corpus:
        assert trimmed.tokenize(text) == source.tokenize(text)
    unseen = "鬣狗出没"
    assert trimmed.unk_token_id not in trimmed(unseen)["input_ids"]
    assert trimmed("的")["input_ids"][0] == trimmed.cls_token_id == keep.index(source.cls_token_id)

"""The user's own data: CSV/TSV/JSONL/Parquet files, string labels, names files, a held-out validation split,
clear errors naming file and line, and the label set following the data through train, export, predict and
serve."""

from __future__ import annotations

import csv
import json
import random
import re

import pytest
from click.testing import CliRunner

from conftest import tiny_train_config
from synthetic import make_sentence
from tnews_deploy.cli import main
from tnews_deploy.data import load_data, make_splits
from tnews_deploy.datasource import DataSource
from tnews_deploy.errors import ConfigError, DataError

TOPICS = ("billing", "shipping", "returns")  # sorted order: billing, returns, shipping


def topic_rows(n_per_class: int, seed: int, topics=TOPICS) -> list[tuple[str, str]]:
    """(text, topic) rows; each topic owns the synthetic keywords of one TNEWS class, so the tiny model learns it."""
    rng = random.Random(seed)
    rows = [(make_sentence(rng, i), topic) for i, topic in enumerate(topics) for _ in range(n_per_class)]
    rng.shuffle(rows)
    return rows


def write_csv(path, rows, header=("ticket", "category"), delimiter=","):
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def tickets_csv(tmp_path_factory):
    """3 classes of string labels, other column names, no validation file."""
    return write_csv(tmp_path_factory.mktemp("own") / "tickets.csv", topic_rows(60, seed=5))


@pytest.fixture(scope="module")
def tickets_parquet(tmp_path_factory):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = topic_rows(60, seed=6)
    path = tmp_path_factory.mktemp("own-parquet") / "tickets.parquet"
    pq.write_table(pa.table({"text": [t for t, _ in rows], "label": [c for _, c in rows]}), path)
    return path


def train_on_tickets(runner, tiny_model, tickets_csv, run, min_steps: int) -> None:
    """`train` on the tickets CSV through the CLI, its columns named by the data flags."""
    result = runner.invoke(
        main,
        [
            "train",
            "--model",
            str(tiny_model),
            "--data",
            str(tickets_csv),
            "--text-field",
            "ticket",
            "--label-field",
            "category",
            "--train-size",
            "140",
            "--eval-size",
            "24",
            "--selection-size",
            "12",
            "--min-steps",
            str(min_steps),
            "--lr",
            "2e-3",
            "--batch-size",
            "16",
            "--max-length",
            "32",
            "--patience",
            "0",
            "--quiet",
            "--output",
            str(run),
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output


def own_source(path, **kwargs) -> DataSource:
    return DataSource(str(path), **kwargs)


# --------------------------------------------------------------------------- loading


def test_string_labels_get_a_sorted_class_list_and_a_stratified_seeded_holdout(tickets_csv):
    source = own_source(tickets_csv, text_field="ticket", label_field="category")
    dsd = load_data(source)
    names = list(dsd["train"].features["label"].names)
    assert names == sorted(TOPICS)
    assert set(dsd) == {"train", "validation"}
    assert len(dsd["validation"]) == 36 and len(dsd["train"]) == 144  # 20 % of each class of 60
    for split in ("train", "validation"):
        counts = {names[i]: list(dsd[split]["label"]).count(i) for i in range(3)}
        assert len(set(counts.values())) == 1  # stratified: every class held out alike
    assert not set(dsd["train"]["sentence"]) & set(dsd["validation"]["sentence"])
    with tickets_csv.open(encoding="utf-8") as fh:
        original = {row["ticket"]: row["category"] for row in csv.DictReader(fh)}
    for split in ("train", "validation"):
        assert all(original[s] == names[i] for s, i in zip(dsd[split]["sentence"], dsd[split]["label"]))
    again = load_data(source)
    assert list(again["validation"]["sentence"]) == list(dsd["validation"]["sentence"])
    other = load_data(own_source(tickets_csv, text_field="ticket", label_field="category", validation_seed=7))
    assert list(other["validation"]["sentence"]) != list(dsd["validation"]["sentence"])
    wider = load_data(own_source(tickets_csv, text_field="ticket", label_field="category", validation_fraction=0.5))
    assert len(wider["validation"]) == 90


def test_integer_labels_take_their_names_from_a_names_file(tmp_path):
    rows = [(text, TOPICS.index(topic)) for text, topic in topic_rows(10, seed=1)]
    data = write_csv(tmp_path / "train.csv", rows, header=("text", "label"))
    write_csv(tmp_path / "dev.csv", rows[:6], header=("text", "label"))
    names = tmp_path / "names.txt"
    names.write_text("\n".join(TOPICS) + "\n", encoding="utf-8")
    dsd = load_data(own_source(tmp_path, labels=str(names)))
    assert list(dsd["train"].features["label"].names) == list(TOPICS)  # file order, not sorted
    assert len(dsd["validation"]) == 6  # the dev file is the validation split: nothing held out
    assert list(dsd["train"]["label"]) == [label for _, label in rows]
    plain = load_data(own_source(data))  # no names file: the integers name the classes
    assert list(plain["train"].features["label"].names) == ["0", "1", "2"]


def test_jsonl_tsv_and_glob_sources(tmp_path):
    rows = topic_rows(10, seed=2)
    with (tmp_path / "part-a.jsonl").open("w", encoding="utf-8") as fh:
        for text, topic in rows[:15]:
            fh.write(json.dumps({"body": text, "tag": topic}, ensure_ascii=False) + "\n")
    with (tmp_path / "part-b.jsonl").open("w", encoding="utf-8") as fh:
        for text, topic in rows[15:]:
            fh.write(json.dumps({"body": text, "tag": topic}, ensure_ascii=False) + "\n\n")
    dsd = load_data(own_source(tmp_path / "part-*.jsonl", text_field="body", label_field="tag"))
    assert len(dsd["train"]) + len(dsd["validation"]) == 30
    write_csv(tmp_path / "tickets.tsv", rows, header=("text", "label"), delimiter="\t")
    tsv = load_data(own_source(tmp_path / "tickets.tsv"))
    assert sorted(list(tsv["train"]["sentence"]) + list(tsv["validation"]["sentence"])) == sorted(t for t, _ in rows)


def test_a_hub_dataset_with_a_config_goes_through_the_same_rules(monkeypatch):
    import datasets

    rows = topic_rows(10, seed=3)
    features = datasets.Features(
        {"sentence": datasets.Value("string"), "label": datasets.ClassLabel(names=list(TOPICS))}
    )
    hub = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict(
                {"sentence": [t for t, _ in rows], "label": [TOPICS.index(c) for _, c in rows]}, features=features
            )
        }
    )
    asked = []
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # no probe of the hub before the (stubbed) load
    monkeypatch.setattr(datasets, "load_dataset", lambda *args, **kw: asked.append(args) or hub)
    dsd = load_data(DataSource("someone/tickets", config="v2"))
    assert asked == [("someone/tickets", "v2")]
    assert list(dsd["train"].features["label"].names) == list(TOPICS)
    assert len(dsd["validation"]) == 6


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("rows", "kwargs", "message"),
    [
        ([("今天新闻", "billing"), ("  ", "returns")], {}, r"bad.csv:3: empty text"),
        ([("今天新闻", "billing"), ("新闻", "")], {}, r"bad.csv:3: empty label"),
        (
            [("今天新闻", "billing")],
            {"text_field": "title"},
            r"bad.csv: no text column 'title'.*'text', 'label'.*--text-field",
        ),
        ([("今天新闻", "billing")], {"label_field": "topic"}, r"bad.csv: no label column 'topic'.*--label-field"),
    ],
)
def test_bad_rows_name_the_file_and_line(tmp_path, rows, kwargs, message):
    path = write_csv(tmp_path / "bad.csv", rows, header=("text", "label"))
    with pytest.raises(DataError, match=message):
        load_data(own_source(path, **kwargs))


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("bad.csv", 'text,label\n"两行\n的文本",billing\n\n新闻,returns\n"",returns\n', r"bad.csv:6: empty text"),
        (
            "bad.jsonl",
            '{"text": "新闻", "label": "a"}\n\n{"text": "新闻"}\n',
            r"bad.jsonl:3: no label: 'label' is missing or null",
        ),
        (
            "bad.jsonl",
            '{"text": "新闻", "label": "a"}\n{"label": "b"}\n',
            r"bad.jsonl:2: no text: 'text' is missing or null",
        ),
        ("broken.jsonl", '{"text": "新闻", "label": "a"}\n{oops\n', r"broken.jsonl:2: invalid JSON"),
    ],
    ids=["csv-quoted-newline-and-blank-line", "jsonl-blank-line-no-label", "jsonl-no-text", "jsonl-invalid"],
)
def test_line_numbers_count_quoted_newlines_and_blank_lines(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        load_data(own_source(path))


def test_a_label_absent_from_the_names_file_is_named_with_its_line(tmp_path):
    path = write_csv(tmp_path / "tickets.csv", [("新闻", "billing"), ("新闻", "refunds")], header=("text", "label"))
    names = tmp_path / "names.txt"
    names.write_text("billing\nreturns\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"tickets.csv:3: label 'refunds' is not in the names file .*names.txt"):
        load_data(own_source(path, labels=str(names)))
    ints = write_csv(tmp_path / "ints.csv", [("新闻", 0), ("新闻", 2)], header=("text", "label"))
    with pytest.raises(DataError, match=r"ints.csv:3: label 2 is not in the names file .*0\.\.1"):
        load_data(own_source(ints, labels=str(names)))


def test_a_class_too_small_to_hold_out_is_named_with_its_count(tmp_path):
    rows = topic_rows(10, seed=4)[:25] + [("孤单的一行", "warranty")]
    path = write_csv(tmp_path / "tickets.csv", rows, header=("text", "label"))
    with pytest.raises(
        DataError, match=r"tickets.csv: class 'warranty' has 1 training example\(s\).*at least 3 per class"
    ):
        load_data(own_source(path))


def test_mixed_label_kinds_and_validation_labels_unseen_in_train_are_errors(tmp_path):
    (tmp_path / "mixed.jsonl").write_text('{"text": "a", "label": "x"}\n{"text": "b", "label": 3}\n')
    with pytest.raises(DataError, match=r"mixed.jsonl:2: label 3 is an integer but earlier labels are strings"):
        load_data(own_source(tmp_path / "mixed.jsonl"))
    folder = tmp_path / "split"
    folder.mkdir()
    write_csv(folder / "train.csv", topic_rows(3, seed=1, topics=("a", "b")), header=("text", "label"))
    write_csv(folder / "validation.csv", [("新闻", "a"), ("新闻", "c")], header=("text", "label"))
    with pytest.raises(DataError, match=r"validation.csv:3: label 'c' does not occur in the training data"):
        load_data(own_source(folder))


def test_the_data_source_validates_itself_and_reads_every_recorded_form(tmp_path):
    with pytest.raises(ConfigError, match="--validation-fraction"):
        DataSource("x.csv", validation_fraction=1.0)
    with pytest.raises(ConfigError, match="--text-field and --label-field"):
        DataSource("x.csv", text_field="label")
    with pytest.raises(ConfigError, match="unknown data-source setting"):
        DataSource.coerce({"path": "x.csv", "colour": "red"})
    source = DataSource(str(tmp_path), text_field="t", label_names=("a", "b"))
    assert DataSource.coerce(source.to_json()) == source
    assert DataSource.coerce(str(tmp_path)) == DataSource(str(tmp_path))  # what older runs recorded
    assert source.same_data(DataSource(str(tmp_path), text_field="t"))  # recorded names count when both have them
    assert not source.same_data(DataSource(str(tmp_path)))


def test_make_splits_on_a_small_holdout_with_few_classes(tickets_csv):
    dsd = load_data(own_source(tickets_csv, text_field="ticket", label_field="category"))
    from tnews_deploy.data import SplitConfig

    with pytest.raises(ConfigError, match="validation-fraction"):  # TNEWS-sized requests do not fit 36 rows
        make_splits(dsd, SplitConfig(eval_size=2000, selection_size=1000))

    splits = make_splits(dsd, SplitConfig(train_sizes=(2,), eval_size=24, selection_size=12))
    assert len(splits.train[2]) == 2 and splits.label_names == sorted(TOPICS)


# --------------------------------------------------------------------------- downstream


@pytest.mark.slow
def test_csv_with_string_labels_goes_through_train_export_predict_and_serve(tmp_path, tiny_model, tickets_csv):
    """The CLI end to end: the label set comes from the data, and the service answers with those names."""
    run, export = tmp_path / "run", tmp_path / "export"
    runner = CliRunner()
    train_on_tickets(runner, tiny_model, tickets_csv, run, min_steps=300)
    recorded = json.loads((run / "run_config.json").read_text(encoding="utf-8"))["data"]
    assert recorded["label_names"] == sorted(TOPICS) and recorded["text_field"] == "ticket"
    model_config = json.loads((run / "checkpoint" / "config.json").read_text(encoding="utf-8"))
    assert list(model_config["id2label"].values()) == sorted(TOPICS)
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["macro_f1"] > 0.6  # chance is 1/3

    result = runner.invoke(main, ["export", str(run), "--output", str(export)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    manifest = json.loads((export / "manifest.json").read_text(encoding="utf-8"))
    evaluation = manifest["verification"]["evaluation"]
    assert evaluation["same_as_training_run"] and evaluation["eval_size"] == 24
    assert evaluation["data"]["label_names"] == sorted(TOPICS)

    keyword_texts = [text for text, _ in topic_rows(2, seed=99)]
    result = runner.invoke(main, ["predict", str(export), "--format", "jsonl", *keyword_texts])
    predicted = [json.loads(line)["label"] for line in result.output.splitlines() if line.startswith("{")]
    assert len(predicted) == len(keyword_texts) and set(predicted) <= set(TOPICS)

    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from tnews_deploy.service import ServiceConfig, create_app

    with TestClient(create_app(ServiceConfig(model_dir=export))) as client:
        body = client.post("/v1/classify", json={"texts": keyword_texts, "top_k": 3}).json()
        assert {p["label"] for ranked in body["predictions"] for p in ranked} == set(TOPICS)
        assert client.get("/v1/model").json()["labels"] == sorted(TOPICS)
        assert client.get("/openapi.json").json()["info"]["description"].startswith("Text classification into 3 ")
        assert client.post("/v1/classify", json={"texts": ["新闻"], "top_k": 4}).status_code == 422


@pytest.mark.slow
def test_parquet_goes_through_train_export_predict_and_serve(tmp_path, tiny_model, tickets_parquet):
    from tnews_deploy.export import export_model
    from tnews_deploy.predictor import Predictor
    from tnews_deploy.training import train_run

    config = tiny_train_config(
        tiny_model, tickets_parquet, train_size=100, eval_size=24, selection_size=12, min_steps=150
    )
    result = train_run(config, tmp_path / "run", quiet=True)
    assert result.config.data.label_names == tuple(sorted(TOPICS))
    exported = export_model(result.run_dir, tmp_path / "export")
    assert exported.report.sentences == 24
    predictor = Predictor(tmp_path / "export")
    assert predictor.labels == tuple(sorted(TOPICS))
    texts = [text for text, _ in topic_rows(3, seed=42)]
    predictions = predictor.predict(texts)
    assert {p.label for p in predictions} <= set(TOPICS)

    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from tnews_deploy.service import ServiceConfig, create_app

    with TestClient(create_app(ServiceConfig(model_dir=tmp_path / "export"))) as client:
        body = client.post("/v1/classify", json={"texts": texts}).json()
    assert [p["label"] for p in body["predictions"]] == [p.label for p in predictions]


@pytest.mark.slow
def test_own_text_files_feed_trim_vocab_and_distill(tmp_path, tiny_model, tickets_csv):
    """A run on a CSV with its own column names: trim-vocab takes more texts from a CSV (--corpus-field) and distill
    from a Parquet file (--unlabeled-field); without the field flag, the error names the flag to pass."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    runner = CliRunner()
    run, trimmed, student = tmp_path / "run", tmp_path / "trimmed", tmp_path / "student"
    train_on_tickets(runner, tiny_model, tickets_csv, run, min_steps=150)

    archive = [text for text, _ in topic_rows(10, seed=8)]
    archive_csv = write_csv(
        tmp_path / "archive.csv", [(i, text) for i, text in enumerate(archive)] + [(99, "")], header=("id", "body")
    )
    result = runner.invoke(main, ["trim-vocab", str(run), "--corpus", str(archive_csv), "--output", str(trimmed)])
    assert result.exit_code == 2 and "--corpus-field" in result.output and "id, body" in result.output
    result = runner.invoke(
        main,
        [
            "trim-vocab",
            str(run),
            "--corpus",
            str(archive_csv),
            "--corpus-field",
            "body",
            "--min-agreement",
            "0.9",
            "--quiet",
            "--output",
            str(trimmed),
        ],
    )
    assert result.exit_code == 0, result.output
    corpus = json.loads((trimmed / "trim.json").read_text(encoding="utf-8"))["corpus"]
    assert corpus["text_field"] == "body" and corpus["split"] is None
    assert corpus["sentences"] + corpus["excluded_as_validation_sentences"] == len(archive)  # the empty row skipped

    archive_parquet = tmp_path / "archive.parquet"
    pq.write_table(pa.table({"body": archive, "category": ["not a label"] * len(archive)}), archive_parquet)
    result = runner.invoke(
        main,
        [
            "distill",
            str(trimmed),
            "--layers",
            "1",
            "--unlabeled",
            str(archive_parquet),
            "--unlabeled-field",
            "body",
            "--min-steps",
            "40",
            "--evaluations",
            "2",
            "--quiet",
            "--output",
            str(student),
        ],
    )
    assert result.exit_code == 0, result.output
    recorded = json.loads((student / "run_config.json").read_text(encoding="utf-8"))
    assert recorded["unlabeled_field"] == "body" and recorded["transfer_size"] > recorded["labeled_in_transfer"]
    assert json.loads((student / "checkpoint" / "config.json").read_text(encoding="utf-8"))["id2label"] == {
        str(i): name for i, name in enumerate(sorted(TOPICS))
    }


@pytest.mark.slow
def test_benchmark_measures_the_runs_held_out_evaluation_set(tmp_path, tiny_model, tickets_parquet):
    """No flags: the benchmark rebuilds the holdout the run was scored on from what the export recorded."""
    from tnews_deploy.benchmark import BenchmarkConfig, run_benchmark
    from tnews_deploy.export import export_model
    from tnews_deploy.training import train_run

    config = tiny_train_config(
        tiny_model, tickets_parquet, train_size=100, eval_size=24, selection_size=12, min_steps=20
    )
    result = train_run(config, tmp_path / "run", quiet=True)
    export_model(result.run_dir, tmp_path / "export")
    bench = BenchmarkConfig.quick_config(
        pytorch=None, onnx=(tmp_path / "export",), output=tmp_path / "bench", latency_sentences=2, cold_start=False
    )
    report = run_benchmark(bench)
    assert report["evaluation"]["data"]["label_names"] == sorted(TOPICS)
    assert report["eval_sentences"] == 24
    pytorch = report["backends"][0]  # the run's checkpoint on the run's evaluation set: the run's own score
    assert pytorch["kind"] == "pytorch"
    assert pytorch["macro_f1"] == pytest.approx(result.metrics["macro_f1"], abs=1e-4)


def test_runs_recorded_before_data_sources_still_export_and_benchmark(trained_run, hf_data):
    """A run_config.json whose `data` is a plain path (older runs) rebuilds the same evaluation set."""
    from tnews_deploy.benchmark.config import BenchmarkConfig
    from tnews_deploy.benchmark.resolve import evaluation_settings, load_evaluation
    from tnews_deploy.export.exporter import ExportConfig, evaluation_set
    from tnews_deploy.export.source import resolve_source

    source = resolve_source(trained_run.run_dir)
    old = {**source.run_config, "data": str(hf_data)}
    current_texts, current_labels, _ = evaluation_set(source, ExportConfig())
    old_source = type(source)(source.checkpoint, source.kind, old, source.run_metrics)
    texts, labels, origin = evaluation_set(old_source, ExportConfig())
    assert texts == current_texts and list(labels) == list(current_labels)
    assert origin["data"]["path"] == str(hf_data)
    settings = evaluation_settings(BenchmarkConfig(pytorch=None, onnx=("x",), output="o"), {}, old)
    bench_texts, bench_labels = load_evaluation(settings)
    assert bench_texts == current_texts


def test_data_flags_without_data_are_refused_on_export(trained_run, tmp_path):
    result = CliRunner().invoke(
        main, ["export", str(trained_run.run_dir), "--text-field", "title", "--output", str(tmp_path / "x")]
    )
    assert result.exit_code == 2 and "--text-field describe the data given with --data" in result.output
    result = CliRunner().invoke(
        main, ["train", "--data", "x.csv", "--validation-fraction", "1.5", "--output", str(tmp_path / "y")]
    )
    assert result.exit_code == 2 and "--validation-fraction must be between 0 and 1" in result.output


def test_data_stats_counts_the_users_classes(tmp_path, tiny_model, tickets_csv):
    result = CliRunner().invoke(
        main,
        [
            "data-stats",
            "--model",
            str(tiny_model),
            "--data",
            str(tickets_csv),
            "--text-field",
            "ticket",
            "--label-field",
            "category",
            "--output",
            str(tmp_path / "stats"),
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    stats = json.loads((tmp_path / "stats" / "stats.json").read_text(encoding="utf-8"))
    assert stats["class_counts"]["train"] == {topic: 48 for topic in TOPICS}
    assert stats["class_counts"]["validation"] == {topic: 12 for topic in TOPICS}
    assert stats["data"]["text_field"] == "ticket"
    assert all(topic in result.output for topic in TOPICS)


def test_export_refuses_data_whose_classes_are_not_the_models(trained_run, tickets_csv, tmp_path):
    import shutil

    args = ["--data", str(tickets_csv), "--text-field", "ticket", "--label-field", "category"]
    # A run: the labels must map onto the classes the run recorded.
    result = CliRunner().invoke(main, ["export", str(trained_run.run_dir), *args, "--output", str(tmp_path / "x")])
    assert result.exit_code == 2
    assert re.search(
        r"tickets.csv:2: label '(billing|returns|shipping)' is not in the run's recorded classes", result.output
    )
    # A bare checkpoint (no run config beside it): the class count must be the model's.
    bare = tmp_path / "bare"
    shutil.copytree(trained_run.checkpoint, bare)
    result = CliRunner().invoke(main, ["export", str(bare), *args, "--output", str(tmp_path / "y")])
    assert result.exit_code == 2 and "has 3 classes, but the model" in result.output
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_a_labels_json_beside_csv_files_names_their_integer_labels(tmp_path):
    rows = [(text, TOPICS.index(topic)) for text, topic in topic_rows(10, seed=8)]
    write_csv(tmp_path / "train.csv", rows, header=("text", "label"))
    with (tmp_path / "labels.json").open("w", encoding="utf-8") as fh:
        for code, name in zip(("100", "101", "102"), TOPICS):
            fh.write(json.dumps({"label": code, "label_desc": name}) + "\n")
    dsd = load_data(str(tmp_path))
    assert list(dsd["train"].features["label"].names) == list(TOPICS)
    assert len(dsd["validation"]) == 6


@pytest.mark.slow
def test_grid_on_own_data_records_the_source_and_the_class_list(tmp_path, tiny_model, tickets_csv):
    result = CliRunner().invoke(
        main,
        [
            "grid",
            "--model",
            str(tiny_model),
            "--data",
            str(tickets_csv),
            "--text-field",
            "ticket",
            "--label-field",
            "category",
            "--variants",
            "freeze-encoder",
            "--train-sizes",
            "60",
            "--eval-size",
            "24",
            "--selection-size",
            "12",
            "--min-steps",
            "10",
            "--batch-size",
            "16",
            "--max-length",
            "32",
            "--quiet",
            "--output",
            str(tmp_path / "grid"),
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    results = json.loads((tmp_path / "grid" / "results.json").read_text(encoding="utf-8"))
    # named and hashed, not by this machine's path; how it was read is kept
    assert results["data"]["name"] == tickets_csv.name and len(results["data"]["sha256"]) == 64
    assert results["data"]["settings"] == {"text_field": "ticket", "label_field": "category"}
    assert "text-field=ticket" in (tmp_path / "grid" / "results.md").read_text(encoding="utf-8")
    run_config = json.loads((tmp_path / "grid" / "freeze-encoder-60" / "run_config.json").read_text())
    assert run_config["data"]["label_names"] == sorted(TOPICS)


@pytest.mark.slow
def test_the_study_report_of_a_grid_on_own_data_speaks_of_its_classes(tmp_path, tiny_model):
    """`report` on another task: its own class count and rarest class, no TNEWS study figures or CLUE scores."""
    rows = [row for row in topic_rows(60, seed=12) if row[1] != "returns"]
    rows += [row for row in topic_rows(24, seed=13) if row[1] == "returns"]  # the rare class
    data = write_csv(tmp_path / "tickets.csv", rows)
    common = [
        "--model",
        str(tiny_model),
        "--data",
        str(data),
        "--text-field",
        "ticket",
        "--label-field",
        "category",
        "--variants",
        "full",
        "--seeds",
        "42,7",
        "--validation-fraction",
        "0.4",
        "--eval-size",
        "30",
        "--selection-size",
        "12",
        "--min-steps",
        "20",
        "--batch-size",
        "16",
        "--max-length",
        "32",
        "--quiet",
    ]
    runner = CliRunner()
    for args in (
        ["--train-sizes", "30,60", "--output", str(tmp_path / "grid")],
        ["--train-sizes", "60", "--class-weight", "balanced", "--output", str(tmp_path / "weighted")],
    ):
        result = runner.invoke(main, ["grid", *common, *args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
    report = tmp_path / "report.md"
    result = runner.invoke(
        main,
        [
            "report",
            str(tmp_path / "grid"),
            "--extra",
            str(tmp_path / "weighted"),
            "--draws",
            "100",
            "--output",
            str(report),
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    text = report.read_text(encoding="utf-8")
    assert text.startswith("# Study report: 3 classes") and "## The cells" in text and "## Table 2" not in text
    assert "3-class head for this task" in text and "to 3 logits" in text
    assert "the F1 of `returns`, the rarest class" in text and "| returns F1 unweighted → weighted |" in text
    assert "TNEWS" not in text and "news_" not in text and "CLUE" not in text
    for heading in ("## 1.", "## 2.", "## 3.", "## 4. From 30 to 60 sentences", "## 5.", "## Class weighting"):
        assert heading in text

"""Without a progress bar (output to a file or a pipe), long jobs log a line at a steady interval: step, rate, ETA.

Every test runs on a fake clock: no test waits.
"""

from __future__ import annotations

import json
import logging

import pytest

from tnews_deploy import progress_log
from tnews_deploy.progress_log import ProgressLog


class FakeClock:
    """Seconds that move only when told to (`advance`), or by `step` on every read."""

    def __init__(self, step: float = 0.0) -> None:
        self.now, self.step = 1000.0, step

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def __call__(self) -> float:
        self.now += self.step
        return self.now


@pytest.fixture
def every_read_is_31_s_later(monkeypatch):
    """The default clock of every `ProgressLog`, 31 s further on each read: each update is due a line."""
    monkeypatch.setattr(progress_log, "monotonic", FakeClock(step=31.0))


def messages(caplog, logger: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == logger and r.levelno == logging.INFO]


def test_a_line_every_interval_with_step_rate_and_eta(caplog):
    clock, log = FakeClock(), logging.getLogger("tnews_deploy.test.progress")
    progress = ProgressLog(log, "training", "step", total=1504, interval_s=30, clock=clock)
    caplog.set_level(logging.INFO, logger=log.name)
    logged = []
    for step in range(1, 121):  # a step every 2 s for 4 minutes
        clock.advance(2.0)
        logged.append(progress.update(step))

    lines = messages(caplog, log.name)
    assert len(lines) == 8 and [i + 1 for i, on in enumerate(logged) if on] == [15, 30, 45, 60, 75, 90, 105, 120]
    assert lines[0] == "training: step 15/1,504 (1%), 0.5 steps/s, ETA 49m 38s"
    assert lines[-1] == "training: step 120/1,504 (8%), 0.5 steps/s, ETA 46m 08s"


def test_unknown_total_says_count_rate_and_time_so_far_and_a_resumed_job_counts_its_own_pace(caplog):
    clock, log = FakeClock(), logging.getLogger("tnews_deploy.test.progress")
    caplog.set_level(logging.INFO, logger=log.name)
    rows = ProgressLog(log, "scoring news.csv (file 1/2)", "row", clock=clock)
    clock.advance(95)
    assert rows.update(69_350)
    resumed = ProgressLog(log, "training", "step", total=1000, start=900, clock=clock)
    clock.advance(3600 + 60)
    assert resumed.update(961)
    assert messages(caplog, log.name) == [
        "scoring news.csv (file 1/2): 69,350 rows, 730 rows/s, 1m 35s so far",
        "training: step 961/1,000 (96%), 0.0167 steps/s, ETA 39m 00s",
    ]
    with pytest.raises(ValueError, match="interval_s"):
        ProgressLog(log, "x", "row", interval_s=0)


@pytest.mark.slow
def test_training_without_bars_logs_step_rate_and_eta(tmp_path, tiny_model, hf_data, caplog, every_read_is_31_s_later):
    from conftest import tiny_train_config
    from tnews_deploy.training import train_run

    caplog.set_level(logging.INFO, logger="tnews_deploy")
    config = tiny_train_config(
        tiny_model, hf_data, train_size=64, eval_size=32, selection_size=32, min_steps=12, evaluations=1
    )
    train_run(config, tmp_path / "run", quiet=True)  # quiet: the bars are off, as in a log file
    lines = [m for m in messages(caplog, "tnews_deploy.training.progress") if m.startswith("training: step")]

    done = [line.split()[2].split("/") for line in lines]  # "training: step 7/12 (58%), ..." -> ["7", "12"]
    steps, totals = [int(d) for d, _ in done], {int(t) for _, t in done}
    assert len(totals) == 1 and totals.pop() == steps[-1] >= 12  # up to the last step, of the run's steps
    assert steps == sorted(steps) and len(set(steps)) > 1
    assert all(" steps/s, ETA " in line for line in lines)


def test_training_with_bars_adds_no_lines(tiny_model, tmp_path):
    from transformers import AutoModelForSequenceClassification, Trainer, TrainingArguments

    from tnews_deploy.training.progress import ProgressBarCallback, ProgressLinesCallback, use_readable_progress

    model = AutoModelForSequenceClassification.from_pretrained(tiny_model)
    for bars in (True, False):
        args = TrainingArguments(output_dir=str(tmp_path), disable_tqdm=not bars, report_to=[], use_cpu=True)
        trainer = Trainer(model=model, args=args)
        use_readable_progress(trainer)
        kinds = {type(cb) for cb in trainer.callback_handler.callbacks}
        assert (ProgressLinesCallback in kinds) is not bars and (ProgressBarCallback in kinds) is bars


def test_score_logs_rows_and_rate_while_it_runs(exported, tmp_path, caplog, every_read_is_31_s_later):
    from tnews_deploy.scoring import ScoreConfig, score

    source = tmp_path / "news.jsonl"
    source.write_text(
        "".join(json.dumps({"text": f"第{i}条新闻"}, ensure_ascii=False) + "\n" for i in range(23)), encoding="utf-8"
    )
    caplog.set_level(logging.INFO, logger="tnews_deploy")
    summary = score(
        ScoreConfig(model_dir=exported.output, inputs=(str(source),), output=tmp_path / "out", chunk_rows=5, threads=1)
    )

    lines = [m for m in messages(caplog, "tnews_deploy.scoring.local") if m.startswith("scoring news.jsonl")]
    assert summary.rows == 23
    assert [line.split(": ")[1].split(" rows")[0] for line in lines] == ["5", "10", "15", "20", "23"]
    assert all(line.startswith("scoring news.jsonl (file 1/1): ") and " rows/s, " in line for line in lines)


def test_data_stats_logs_sentences_tokenized_and_counts_as_before(tiny_model, caplog, every_read_is_31_s_later):
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value
    from transformers import AutoTokenizer

    from tnews_deploy.data import length_stats

    sentences = [f"第{i}条新闻" + "很长" * (i % 7) for i in range(50)]
    features = Features({"sentence": Value("string"), "label": ClassLabel(names=["a", "b"])})
    dsd = DatasetDict(
        train=Dataset.from_dict({"sentence": sentences, "label": [i % 2 for i in range(50)]}, features=features)
    )
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    caplog.set_level(logging.INFO, logger="tnews_deploy")
    stats = length_stats(dsd, tokenizer, chunk=20)

    lines = [m for m in messages(caplog, "tnews_deploy.data") if m.startswith("tokenizing train")]
    assert [line.split()[3] for line in lines] == ["20/50", "40/50", "50/50"]
    assert stats.token_lengths == [len(ids) for ids in tokenizer(sentences)["input_ids"]]


def test_the_helper_loads_no_third_party_package():
    import subprocess
    import sys

    code = (
        "import sys, tnews_deploy.progress_log; print(sorted(m.split('.')[0] for m in sys.modules "
        "if m.split('.')[0] in {'numpy', 'torch', 'transformers', 'tqdm', 'pyarrow', 'datasets'}))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stderr or result.stdout

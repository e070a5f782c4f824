"""Each list of choices lives in one module: the CLI offers exactly those lists, every input format has a reader
in each module that takes it, an unknown format is a clear error (never read as CSV), and the benchmark names
an export's quantisation mode as its manifest records it."""

from __future__ import annotations

import io

import pytest
from click.testing import CliRunner

from tnews_deploy import choices, formats
from tnews_deploy.cli import main
from tnews_deploy.errors import UserError


def _choices(command: str, option: str) -> list[str]:
    param = next(p for p in main.commands[command].params if p.name == option)
    return list(param.type.choices)


@pytest.mark.parametrize(
    "command, option, expected",
    [
        ("export", "optimize", choices.OPTIMIZE_LEVELS),
        ("export", "quantize", choices.QUANTIZE_MODES),
        ("export", "quantize_for", choices.QUANTIZE_TARGETS),
        ("export", "prefer", choices.PREFERENCES),
        ("predict", "input_format", formats.PREDICT_FORMAT_CHOICES),
    ],
)
def test_cli_choices_are_the_lists(command, option, expected):
    assert _choices(command, option) == list(expected)


def test_export_config_validates_against_the_same_lists():
    from tnews_deploy.errors import ConfigError
    from tnews_deploy.export import ExportConfig

    for level in choices.OPTIMIZE_LEVELS:
        ExportConfig(optimize=level)
    for target in choices.QUANTIZE_TARGETS:
        ExportConfig(quantize="int8", quantize_for=target)
    with pytest.raises(ConfigError, match="--quantize must be one of " + ", ".join(choices.QUANTIZE_MODES)):
        ExportConfig(quantize="int4")
    result = CliRunner().invoke(main, ["export", "x", "--output", "y", "--quantize", "int4"])
    assert result.exit_code == 2 and all(mode in result.output for mode in choices.QUANTIZE_MODES)


def test_the_per_token_scheme_is_the_one_the_quantizer_writes():
    from tnews_deploy.export.quantize import SCHEME

    assert choices.QUANTIZE_SCHEMES["int8"] == SCHEME


# --------------------------------------------------------------------------- input formats


def test_each_reader_has_a_reader_for_every_format_it_takes():
    from tnews_deploy import data, inputs
    from tnews_deploy.scoring import io as scoring_io

    assert set(data.DATA_LOADERS) == set(formats.DATA.formats)
    assert set(scoring_io._READERS) == set(formats.TEXTS.formats)
    assert inputs.FORMATS == ("auto", *formats.PREDICT.formats)
    assert data.DATA_SUFFIXES == formats.DATA.suffixes and scoring_io.SUFFIXES == formats.TEXTS.suffixes


def test_suffixes_map_to_formats_per_reader():
    assert formats.DATA.format_of("a/B.TSV") == "tsv" and formats.DATA.format_of("x.json") == "jsonl"
    assert formats.TEXTS.format_of("x.json") is None  # score searches folders: their .json files are configs
    assert formats.PREDICT.format_of("notes.text") == "txt" and formats.PREDICT.format_of("t.csv") is None
    assert formats.TEXTS.listed() == ".jsonl/.parquet/.csv/.txt"
    assert formats.DATA.listed(", ", " or ") == ".csv, .tsv, .jsonl or .parquet"


def test_score_reader_refuses_a_format_it_has_no_reader_for(tmp_path):
    """A format without a reader used to be read as CSV (a TSV came back as one column of whole lines)."""
    from tnews_deploy.scoring.io import InputFile, read_chunks

    path = tmp_path / "rows.tsv"
    path.write_text("sentence\tlabel\n好的新闻\t3\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"no reader for format 'tsv'.*jsonl, parquet, csv, txt"):
        list(read_chunks(InputFile(path, "tsv"), None, 10))


def test_data_reader_refuses_a_suffix_it_has_no_loader_for(tmp_path):
    from tnews_deploy.data import _read_file
    from tnews_deploy.datasource import DataSource

    path = tmp_path / "train.xlsx"
    path.write_bytes(b"PK\x03\x04")
    with pytest.raises(UserError, match=r"train.xlsx: cannot read a '.xlsx' file; --data takes .csv, .tsv"):
        _read_file(path, DataSource(path=str(path)), "train")


def test_predict_reader_refuses_an_unknown_format():
    from tnews_deploy.inputs import read_records

    with pytest.raises(UserError, match=r"no reader for format 'csv'.*auto, txt, jsonl"):
        list(read_records(io.BytesIO(b"id,text\n1,x\n"), "t.csv", fmt="csv"))


def test_predict_points_only_to_tables_score_reads():
    from tnews_deploy.inputs import guess_format

    with pytest.raises(UserError, match=r"For \.csv tables, `tnews-deploy score"):
        guess_format("titles.csv", b"id,text")
    with pytest.raises(UserError) as info:  # score does not read .tsv: no hint that it does
        guess_format("titles.tsv", b"id\ttext")
    assert "tnews-deploy score" not in str(info.value)


# --------------------------------------------------------------------------- the benchmark's variant names


@pytest.mark.parametrize(
    "quantization, optimization, expected",
    [
        (None, None, "fp32"),
        (None, {"level": "O2"}, "fp32 O2"),
        ({"mode": "int8", "scheme": "per-token-symmetric"}, None, "int8"),
        ({"mode": "int8-dynamic", "scheme": "per-tensor-dynamic"}, {"level": "O2"}, "int8-dynamic O2"),
        ({"mode": "int8"}, None, "int8-dynamic"),  # written before int8-dynamic existed: per-tensor dynamic int8
        ({"mode": "int4-weights", "scheme": "block-32"}, None, "int4-weights (block-32)"),  # not "int8-dynamic"
        ({"mode": "int8", "scheme": "per-channel-static"}, None, "int8 (per-channel-static)"),
    ],
)
def test_describe_variant_reads_the_mode_from_the_manifest(quantization, optimization, expected):
    from tnews_deploy.benchmark.backends import describe_variant

    assert describe_variant({"quantization": quantization, "optimization": optimization}) == expected

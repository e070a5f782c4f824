"""A tiny verified export and a small JSONL of texts, for .ci/wheel-smoke (run in CI's main venv: it needs torch).

The model and data are the test suite's: a tiny random BERT (tests/synthetic.py) trained for a few seconds with
tests/conftest.py's `tiny_train_config`, then `export_model` (fp32, verified by the usual gate).

    python .ci/make_tiny_export.py WORKDIR    # writes WORKDIR/export/ and WORKDIR/texts.jsonl
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workdir", type=Path, help="an empty or missing folder; export/ and texts.jsonl go there")
    workdir = parser.parse_args().workdir
    workdir.mkdir(parents=True, exist_ok=True)
    # the user-wide cache (teacher logits) stays inside the work folder, as the tests' `user_cache` fixture keeps it
    os.environ.setdefault("TNEWS_DEPLOY_CACHE", str(workdir / "cache"))
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    sys.path.insert(0, str(TESTS))

    from conftest import tiny_train_config
    from synthetic import build_tiny_bert, make_rows, synthetic_splits, write_hf_jsonl
    from tnews_deploy.export import export_model
    from tnews_deploy.training import train_run

    model = build_tiny_bert(workdir / "tiny-bert")
    data = write_hf_jsonl(workdir / "data", synthetic_splits())
    run = train_run(tiny_train_config(model, data), workdir / "run", quiet=True)
    exported = export_model(run.run_dir, workdir / "export")
    with (workdir / "texts.jsonl").open("w", encoding="utf-8") as fh:
        for row in make_rows(2, seed=7):
            fh.write(json.dumps({"idx": row["idx"], "sentence": row["sentence"]}, ensure_ascii=False) + "\n")
    print(exported.output)


if __name__ == "__main__":
    main()

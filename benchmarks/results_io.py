"""What the benchmark scripts share: the machine's file-name slug and writing a result pair (.json + .md).

Imported by the scripts in this folder (`python benchmarks/<script>.py` puts the folder on sys.path).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any


def machine_slug(info: dict[str, Any]) -> str:
    """`amd-epyc-2cpu`-style prefix for result files, from `tnews_deploy.machine.machine_info`."""
    return re.sub(r"[^a-z0-9]+", "-", info["cpu"].lower()).strip("-") + f"-{info['usable_cpus']}cpu"


def write_results(stem: Path, report: dict[str, Any], markdown: str) -> None:
    """Write `stem`.json (the report, UTF-8, indented) and `stem`.md (the rendered table); print the table.

    Args:
        stem: the path without suffix, e.g. benchmarks/results/amd-epyc-2cpu-score.
        report: everything measured, JSON-serialisable.
        markdown: the human-readable rendering.
    """
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    stem.with_suffix(".md").write_text(markdown, encoding="utf-8")
    print(markdown)

"""What a notebook hands to the series report: findings, headline numbers, tables and figures.

A notebook calls :func:`record` at its end; ``python -m lomix_core reproduce`` collects every
record into ``REPORT.md``. Records are JSON files next to the executed notebooks.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
from ..foundations.machine import summary as machine  # noqa: F401  (the report's machine line)
from ..foundations.records import save_json


def record(output_dir: str | Path, notebook: str, headline: dict | None = None,
           tables: dict[str, pd.DataFrame] | None = None, figures: list[str | Path] = (),
           findings: list[str] = ()) -> Path:
    """Write ``<output_dir>/<notebook>.summary.json`` for the series report.

    ``findings`` are plain-language answers (for example :func:`lomix_core.teaching.findings.statement`)
    that the report puts first."""
    output_dir = Path(output_dir)
    figures = [str(Path(f).resolve().relative_to(output_dir.resolve())) for f in figures]
    payload = {"notebook": notebook, "headline": headline or {}, "findings": list(findings),
               "tables": {name: markdown_table(t) for name, t in (tables or {}).items()}, "figures": figures}
    return save_json(payload, output_dir / f"{notebook}.summary.json")


def load_record(output_dir: str | Path, notebook: str) -> dict | None:
    path = Path(output_dir) / f"{notebook}.summary.json"
    return json.loads(path.read_text()) if path.exists() else None


def markdown_table(frame: pd.DataFrame, digits: int = 3) -> str:
    """A GitHub-flavoured markdown table (pandas' own needs the optional ``tabulate``)."""
    frame = frame.reset_index() if frame.index.name or not isinstance(frame.index, pd.RangeIndex) else frame

    def cell(value) -> str:
        if isinstance(value, float):
            return "" if math.isnan(value) else f"{value:.{digits}f}"
        return str(value)

    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])

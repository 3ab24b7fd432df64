"""Every chapter keeps the teaching standard: goals, a start cell, a recap, exercises with worked
solutions, what next, and the report cell last (nbval, in `make test`, executes every solution)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))
COMMON_PARAMETERS = {"PROFILE", "DATASET", "MODEL", "SEEDS", "OUTPUT_DIR"}


def cells(path: Path) -> list[dict]:
    return [{**c, "text": "".join(c["source"])} for c in json.loads(path.read_text())["cells"]]


def section(chapter: list[dict], heading: str) -> int:
    found = [i for i, c in enumerate(chapter) if c["cell_type"] == "markdown" and c["text"].startswith(heading)]
    assert found, f"no '{heading}' section"
    return found[0]


def test_there_are_nine_chapters():
    assert [p.name[:2] for p in NOTEBOOKS] == [f"{i:02d}" for i in range(9)]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_chapter_teaches_to_the_standard(path):
    chapter = cells(path)
    assert "colab-badge" in chapter[0]["text"] and "**You will learn to**" in chapter[0]["text"]
    parameters = [i for i, c in enumerate(chapter) if "parameters" in c["metadata"].get("tags", [])]
    assert len(parameters) == 1
    names = set(re.findall(r"^([A-Z_]+) =", chapter[parameters[0]]["text"], re.M))
    assert {"PROFILE", "OUTPUT_DIR"} <= names
    assert not {"SEED", "DATASETS"} & names, "use the common names SEEDS and DATASET"
    first_code = next(c for c in chapter[parameters[0] + 1:] if c["cell_type"] == "code")
    assert f'lx.chapter.start("{path.name[:2]}", PROFILE, OUTPUT_DIR' in first_code["text"]

    learned, exercises, after = (section(chapter, h) for h in ("## What you learned", "## Exercises", "## What next"))
    assert learned < exercises < after
    block = chapter[exercises:after]
    revealed = sum(c["text"].count("<details><summary>Solution</summary>") for c in block if c["cell_type"] == "markdown")
    coded = [c for c in block if "solution" in c["metadata"].get("tags", [])]
    assert all(c["cell_type"] == "code" and c["text"].startswith("# Solution") for c in coded)
    assert all("assert" in c["text"] for c in coded), "a code solution must check what it claims"
    assert revealed + len(coded) >= 3

    assert chapter[-1]["cell_type"] == "code" and chapter[-1]["text"].startswith("lx.report.record(")
    assert chapter[-2]["text"].startswith("## For the series report")


def test_common_parameter_names_are_shared():
    used = set()
    for path in NOTEBOOKS:
        chapter = cells(path)
        parameters = next(c for c in chapter if "parameters" in c["metadata"].get("tags", []))
        used |= set(re.findall(r"^([A-Z_]+) =", parameters["text"], re.M))
    assert COMMON_PARAMETERS <= used

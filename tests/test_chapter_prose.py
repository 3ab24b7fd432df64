"""No chapter's prose states a result a run produces.

A notebook's markdown is written once and read under every run's output: a Dice value, a speed-up
or a direction ("LoMix beat ...", "the paired interval is narrower") typed into it is true of the
run its author saw and may be false under the student's. Such sentences belong in code, generated
from the numbers (``print``, ``IPython.display.Markdown``) or followed by an ``assert``. This test
reads every markdown cell of the numbered notebooks and fails on:

* a decimal number (``0.796``, ``2.86``) that is not on the allow-list below: the paper's own
  figures, formula constants, hyper-parameters and geometry that no run changes;
* a measured ratio written as ``4.1×`` or ``3 times faster``;
* a phrase that states the direction of a result (``LoMix beat``, ``narrower than``, ``costs
  little``, ``flatters every``).

Formulas (``$...$``), inline code and code blocks are not read: worked toy examples live there, and
their arithmetic is checked by the cells below them. A worked example written as a table may use
its numbers when the next code cell types them in and asserts something about them.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))

# Decimal numbers a chapter may write: none of them is produced by a run of the kit.
ALLOWED_NUMBERS = {
    # the paper's own figures (Synapse, Dice points): LoMix over last layer, deep supervision, mutation;
    # with one or two labelled scans; and the kit's subtraction 9.23 - 4.2
    "4.2": "paper", "2.2": "paper", "1.5": "paper (Dice points) and abdomen_ct's 1.5 mm pixels",
    "9.23": "paper", "5.03": "paper, derived",
    # the loss and its starting weight
    "0.3": "CE weight", "0.7": "Dice weight", "0.693": "softplus(0) = ln 2",
    # statistics: the level, the t and normal quantiles a chapter derives
    "0.05": "significance level", "0.975": "t quantile", "1.96": "normal quantile", "2.5": "exercise's bound on t, "
    "and abdomen_ct's 2.5 mm test slices",
    # the mean of two tied ranks, 3 and 4 (chapter 06's rule for ties)
    "3.5": "tied ranks",
    # geometry of the embedded data: brain_aal's 217-pixel square on the cpu profile's 48-pixel grid
    "4.5": "217 / 48 mm per model pixel",
    # nnU-Net's SGD (chapter 08 says why the LoMix trainer keeps the loss's parameters out of it)
    "0.01": "nnU-Net's initial learning rate", "0.99": "nnU-Net's SGD momentum",
}
_MATH = re.compile(r"\$\$.*?\$\$|\$[^$]+\$", re.S)
_CODE = re.compile(r"```.*?```|`[^`\n]+`", re.S)
_LINK_TARGET = re.compile(r"\]\([^)]*\)")
_VERSION = re.compile(r"\b\d+\.\d+\.\d+\b|[A-Za-z]-\d+(?:\.\d+)+")  # versions and licences: 2.18.0, Apache-2.0
_DECIMAL = re.compile(r"(?<![\w.])[+-]?\d*\.\d+(?![\w.])")
_RATIO = re.compile(r"\d(?:\.\d+)?\s?×(?!\s?\d)|\b\d+(?:\.\d+)?\s+times\s+(?:faster|slower|larger|smaller|more|fewer)\b")
_DIRECTIONS = [  # a result's direction, stated in prose
    r"\blomix (?:beat|beats|won|wins|outperform\w*|lost|loses|helped|hurt)\b",
    r"\b(?:was|were|is|are) (?:significant|significantly \w+)\b",
    r"\b(?:narrower|wider|faster|slower) than\b",
    r"\bcosts? (?:little|nothing more)\b",
    r"\bflatters every\b",
    r"\bas (?:adam|the derivation) predicts\b",
]
_DIRECTION = re.compile("|".join(_DIRECTIONS), re.I)


def prose(markdown: str) -> str:
    """The words of a markdown cell, without formulas, code or link targets."""
    for pattern in (_CODE, _MATH, _LINK_TARGET, _VERSION):
        markdown = pattern.sub(" ", markdown)
    return markdown


def hard_coded_results(markdown: str) -> list[str]:
    """The pieces of ``markdown``'s prose that state a run's result."""
    text = prose(markdown)
    found = [m.group().lstrip("+-") for m in _DECIMAL.finditer(text)]
    found = [number for number in found if number not in ALLOWED_NUMBERS]
    found += [m.group() for m in _RATIO.finditer(text)]
    found += [m.group() for m in _DIRECTION.finditer(text)]
    return found


def checked_by_next_cell(found: list[str], next_code: str) -> list[str]:
    """What of ``found`` is left once a worked example's numbers, typed into the next code cell that
    asserts something, are taken out."""
    if not re.search(r"\bassert", next_code):
        return found
    return [f for f in found if not (_DECIMAL.fullmatch(f) and re.search(rf"(?<![\w.]){re.escape(f)}(?![\w.])", next_code))]


def notebook_problems(cells: list[dict]) -> list[str]:
    """Every markdown cell's hard-coded results, as ``cell N: [...]``."""
    problems = []
    for i, cell in enumerate(cells):
        if cell["cell_type"] != "markdown":
            continue
        next_code = next(("".join(c["source"]) for c in cells[i + 1:] if c["cell_type"] == "code"), "")
        if found := checked_by_next_cell(hard_coded_results("".join(cell["source"])), next_code):
            problems.append(f"cell {i}: {found}")
    return problems


def test_the_scan_catches_the_issues_examples():
    # sentences the student's read found contradicted by their own output
    for sentence in ["Mean Dice was 0.796 with 1 subject.",
                     "The official-style loop measured 2.86× slower than the kit's loss.",
                     "LoMix beat every baseline on the phantom.",
                     "The paired interval is then narrower than the one from two independent means.",
                     "On a CPU a `.item()` costs little.",
                     "## Selecting on the test set flatters every method",
                     "θ fell 0.65 × lr per step, as Adam predicts.",
                     "It ran 3 times faster."]:
        assert hard_coded_results(sentence), sentence


def test_the_scan_lets_formulas_code_constants_and_the_papers_figures_through():
    for sentence in ["$L = 0.3\\,\\mathrm{CE} + 0.7\\,(1 - \\mathrm{Dice})$, toy $d = (+0.02, +0.05, -0.01)$",
                     "the paper reports LoMix ahead by 4.2 Dice points, and 9.23 with one or two scans",
                     "every weight starts at softplus(0) ≈ 0.693; `lr = 1e-4`; the 0.975 quantile",
                     "TotalSegmentator 2.18.0 (Apache-2.0) and DiffDRR 0.6.1", "images of 224 × 224 pixels, 4 × 11 = 44",
                     "see [the notes](docs/results.md#v1.2)"]:
        assert hard_coded_results(sentence) == [], sentence


def test_a_worked_examples_numbers_pass_only_when_the_next_cell_types_them_and_asserts():
    table = {"cell_type": "markdown", "source": ["| map | Dice |\n", "| a | 0.40 |\n", "LoMix beat it."]}
    checked = {"cell_type": "code", "source": ["dice = [0.40]\n", "assert spearman(dice, dice) == 1"]}
    unchecked = {"cell_type": "code", "source": ["dice = [0.40]\n", "print(dice)"]}
    assert notebook_problems([table, checked]) == ["cell 0: ['LoMix beat']"]  # a direction is never a toy number
    assert notebook_problems([table, unchecked]) == ["cell 0: ['0.40', 'LoMix beat']"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_no_chapter_hard_codes_a_result_in_its_prose(path):
    problems = notebook_problems(json.loads(path.read_text())["cells"])
    assert not problems, (f"{path.name} states results in markdown; generate them from the numbers in code or "
                          f"follow them by an assert:\n" + "\n".join(problems))

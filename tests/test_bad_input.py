"""Bad input at every public entry point gets one line naming the problem and what was expected.

The table of cases lives in ``docs/what_happens_when.py``, which also prints the messages for the
README; here each case must raise its error with a one-line message that holds every part of
:attr:`Case.says` (the offending value or file, and what was expected).
"""
import importlib.util
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _load_cases():
    spec = importlib.util.spec_from_file_location("what_happens_when", DOCS / "what_happens_when.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


cases = _load_cases()


@pytest.mark.parametrize("case", cases.CASES, ids=[case.id for case in cases.CASES])
def test_bad_input_is_rejected_in_one_line(case, tmp_path):
    with pytest.raises(case.error) as caught:
        case.run(tmp_path)
    message = cases.message(caught.value, tmp_path)
    assert "\n" not in message, message
    missing = [part for part in case.says if part not in message]
    assert not missing, f"{missing} not in: {message}"


def test_cases_are_unique_and_the_table_lists_every_one():
    assert len({case.id for case in cases.CASES}) == len(cases.CASES)
    table = (DOCS / "what_happens_when.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| input tried")]
    assert len(rows) == len(cases.CASES), "regenerate it: python docs/what_happens_when.py"
    for row, case in zip(rows, cases.CASES):
        assert row.startswith(f"| {case.tried} | "), (row, case.tried)


def test_table_cells_keep_messages_verbatim():
    assert cases.table([("a `b`", "x | `y` <tmp>")]).splitlines()[2] == r"| a `b` | `` x \| `y` <tmp> `` |"
    assert cases._cell("ValueError: v") == "`ValueError: v`"


def test_a_case_that_raises_nothing_is_reported():
    quiet = cases.Case("quiet", "nothing wrong", lambda tmp: None, ValueError, ())
    with pytest.raises(AssertionError, match="'quiet' raised nothing"):
        cases.attempt(quiet)

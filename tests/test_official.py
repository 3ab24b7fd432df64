"""The official-vs-kit table (lomix_core.studies.official): every row true of the kit's code, and the doc
that shows it generated from it."""
from pathlib import Path

import pytest

from lomix_core import official

DOC = Path(__file__).parents[1] / "docs" / "official_vs_kit.md"


@pytest.mark.parametrize("row", official.DIFFERENCES, ids=lambda r: r.aspect)
def test_every_row_holds_for_the_kits_code(row):
    assert row.status in official.STATUSES
    assert row.check(), f"{row.aspect}: the kit's code no longer does what the row says"


def test_the_doc_holds_the_generated_table():
    text = DOC.read_text()
    generated = text.split("<!-- generated: python -m lomix_core.studies.official -->\n", 1)[1].split("\n<!-- end generated -->")[0]
    assert generated.strip() == official.markdown().strip(), "regenerate with: python -m lomix_core.studies.official"


def test_a_row_whose_code_changed_is_caught(monkeypatch):
    from lomix_core import config

    monkeypatch.setitem(config.PROTOCOLS, "official",
                        config.dataclasses.replace(config.PROTOCOLS["official"], drop_last_batch=True))
    assert official.failing_rows() == ["last partial batch of an epoch"]

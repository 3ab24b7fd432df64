"""What a notebook hands to the series report (lomix_core.teaching.report)."""
import pandas as pd

from lomix_core.teaching.report import load_record, markdown_table, record


def test_markdown_table_rounds_and_leaves_unknown_values_blank():
    table = markdown_table(pd.DataFrame({"method": ["lomix", "last_layer"], "dice": [0.41234, float("nan")]}))
    assert table.splitlines() == ["| method | dice |", "|---|---|", "| lomix | 0.412 |", "| last_layer |  |"]


def test_a_record_round_trips_with_figures_relative_to_the_output(tmp_path):
    figure = tmp_path / "figures" / "dice.png"
    figure.parent.mkdir()
    figure.write_bytes(b"png")
    record(tmp_path, "03_supervision_comparison", headline={"lomix": 0.4}, findings=["no difference shown"],
           tables={"t": pd.DataFrame({"a": [1.0]})}, figures=[figure])
    saved = load_record(tmp_path, "03_supervision_comparison")
    assert saved["figures"] == ["figures/dice.png"] and saved["findings"] == ["no difference shown"]
    assert saved["tables"]["t"] == "| a |\n|---|\n| 1.000 |"
    assert load_record(tmp_path, "99_missing") is None

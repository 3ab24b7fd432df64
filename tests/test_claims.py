"""The paper-vs-run tables of chapters 03-05 (lomix_core.teaching.claims), on hand-built runs whose per-seed
differences are known."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from lomix_core import claims
from lomix_core.teaching.claims import Claim
from lomix_core.studies.comparisons import Comparison, LowData
from lomix_core.studies.statistics import TestFamily, holm

LOMIX = np.array([0.60, 0.55, 0.70, 0.65])  # LoMix's test Dice on seeds 0-3


def comparison(differences: dict[str, list[float]], method: str = "lomix", improving: set | None = None,
               reading: str = "no rise shown") -> Comparison:
    """Runs where ``method`` scores LOMIX and each baseline LOMIX minus its per-seed ``differences``
    (Dice fractions). ``improving``: {(variant, seed)} whose plateau test reads "still improving";
    the others read ``reading``."""
    seeds = range(len(next(iter(differences.values()))))
    dice = {method: LOMIX[list(seeds)]} | {b: LOMIX[list(seeds)] - np.array(d) for b, d in differences.items()}
    rows = [{"preset": variant, "seed": s, "test_dice": float(values[s]), "test_hd95": 5.0, "test_hd95_mm": None,
             "val_dice": 0.5, "train_time_s": 1.0, "steps": 100, "supervised_maps": 1,
             "plateau_reading": "still improving" if (variant, s) in (improving or set()) else reading}
            for variant, values in dice.items() for s in seeds]
    return Comparison(results=pd.DataFrame(), runs=pd.DataFrame(rows), models={})


def interval(d_points: np.ndarray, level: float = 0.95) -> str:
    low, high = stats.t.interval(level, len(d_points) - 1, loc=d_points.mean(), scale=stats.sem(d_points))
    return f"[{low:+.2f}, {high:+.2f}]"


def test_a_row_holds_the_paired_difference_in_dice_points_with_scipys_interval():
    d = np.array([0.040, 0.045, 0.038, 0.047])
    table = claims.paper_vs_run(comparison({"last_layer": d}))
    assert list(table.index) == ["LoMix beats last-layer supervision"]  # the other two claims were not run
    row = table.iloc[0]
    assert row["paper"] == "+4.20" and row["seeds"] == 4
    assert row["this run"] == f"{100 * d.mean():+.2f}" == "+4.25"
    assert row["95 % CI"] == interval(100 * d) == row["simultaneous CI"]  # one test: the same interval
    assert row["p"] == pytest.approx(stats.ttest_rel(LOMIX, LOMIX - d).pvalue)
    assert row["p (Holm)"] == pytest.approx(row["p"])  # one claim: nothing to correct
    assert row["budget"] == "ok" and row["paper setting"] == claims.PAPER_SETTING
    assert list(table.columns[:len(claims.COLUMNS) - 1]) == claims.COLUMNS[1:]


def test_every_claim_that_was_run_gets_a_row_in_the_claims_order():
    table = claims.paper_vs_run(comparison({"mutation": [0.01, 0.02, 0.015, 0.012],
                                            "deep_supervision": [0.02, 0.01, 0.03, 0.02],
                                            "last_layer": [0.05, 0.04, 0.06, 0.05], "nnunet": [0, 0, 0, 0.01]}))
    assert list(table["paper"]) == ["+4.20", "+2.20", "+1.50"]
    assert list(table.index) == [c.claim for c in claims.SUPERVISION_CLAIMS]


def test_no_claim_run_is_an_error():
    with pytest.raises(ValueError, match=r"none of the claims' method/baseline pairs were run; variants run: "
                                         r"\['lomix', 'nnunet'\]"):
        claims.paper_vs_run(comparison({"nnunet": [0.01, 0.02]}))
    with pytest.raises(ValueError, match="unknown metric 'dice'"):
        claims.paper_vs_run(comparison({"last_layer": [0.01, 0.02]}), metric="dice")
    with pytest.raises(ValueError, match="needs the scope they were registered under"):
        claims.paper_vs_run(comparison({"last_layer": [0.01, 0.02]}), tests=TestFamily())


@pytest.mark.parametrize("d, gain, expected", [
    ([0.040, 0.045, 0.038, 0.047], 4.2, "better; consistent with the paper"),
    ([0.010, 0.012, 0.011, 0.013], 4.2, "better, but less than the paper's +4.2"),
    ([0.090, 0.095, 0.092, 0.091], 4.2, "better, but more than the paper's +4.2"),
    ([-0.030, -0.035, -0.032, -0.031], 4.2, "worse; contradicts the paper"),
    ([0.001, -0.002, 0.0015, -0.001], 4.2, "no difference shown; rules out the paper's +4.2"),
    ([0.08, -0.07, 0.05, -0.04], 4.2, "no difference shown; paper's +4.2 not ruled out"),
    ([0.001, -0.002, 0.0015, -0.001], None, "no difference shown"),
    ([0.010, 0.012, 0.011, 0.013], None, "better; consistent with the paper"),
    ([0.05], 4.2, "no test: under two seeds, or no spread"),
])
def test_verdicts(d, gain, expected):
    table = claims.paper_vs_run(comparison({"last_layer": d}), [Claim("a claim", "last_layer", gain)])
    assert table.loc["a claim", "verdict"] == expected
    assert table.loc["a claim", "paper"] == ("+" if gain is None else f"{gain:+.2f}")


def test_one_seed_has_no_interval_and_no_p():
    row = claims.paper_vs_run(comparison({"last_layer": [0.05]})).iloc[0]
    assert row["95 % CI"] == "none (one seed)" and row["this run"] == "+5.00"
    assert np.isnan(row["p"]) and np.isnan(row["p (Holm)"])


def test_the_verdict_reads_the_simultaneous_interval_at_its_edges():
    assert claims.verdict("no difference shown", 0.0, 2.0, 4.2) == "no difference shown; rules out the paper's +4.2"
    assert claims.verdict("better", 2.0, 4.2, 4.2) == "better; consistent with the paper"  # the edge is inside
    assert claims.verdict("no difference shown", -2.0, 4.2, 4.2) == "no difference shown; paper's +4.2 not ruled out"
    verdicts = [claims.verdict(w, low, high, gain) for w in ("better", "worse", "no difference shown", "no test")
                for low, high in ((-60.0, 60.0), (9.5, 9.9), (-9.9, -9.5), (0.5, 0.9)) for gain in (9.23, 4.2, None)]
    assert max(map(len, verdicts)) <= 50  # pandas shows 50 characters of a cell: every verdict renders whole


def test_the_table_reads_the_chapters_family():
    """Holm runs over every test of the chapter, not the table's rows: a row whose p is below 0.05
    in a table of 3 claims can lose its verdict among 8 tests."""
    runs = comparison({"last_layer": [0.05, 0.04, 0.06, 0.05], "deep_supervision": [0.02, 0.01, 0.03, 0.02],
                       "mutation": [0.01, -0.02, 0.015, 0.012]})
    alone = claims.paper_vs_run(runs)
    assert list(alone["p (Holm)"]) == pytest.approx(holm(alone["p"]))
    tests = TestFamily()
    runs.register(tests, "brain_aal")
    other = comparison({"last_layer": [0.3, -0.2, 0.1, 0.0], "mutation": [0.1, -0.1, 0.05, 0.0]})
    other.register(tests, "phantom")
    chapter = claims.paper_vs_run(runs, tests=tests, scope="brain_aal")
    assert list(chapter["p (Holm)"]) == pytest.approx([tests.result("brain_aal", f"lomix - {b}")["holm_p"]
                                                       for b in ("last_layer", "deep_supervision", "mutation")])
    assert list(chapter["p"]) == pytest.approx(list(alone["p"]))  # the uncorrected p is the same number
    assert (chapter["p (Holm)"] >= alone["p (Holm)"] - 1e-12).all()
    # the simultaneous interval widens with the family: 5 tests here against 3
    width = lambda text: float(text.strip("[]").split(", ")[1]) - float(text.strip("[]").split(", ")[0])  # noqa: E731
    assert width(chapter.iloc[0]["simultaneous CI"]) > width(alone.iloc[0]["simultaneous CI"])


def test_the_budget_column_reads_the_plateau_tests():
    runs = comparison({"last_layer": [0.05, 0.04, 0.06, 0.05], "mutation": [0.01, 0.02, 0.015, 0.012]},
                      improving={("lomix", 0), ("last_layer", 1), ("last_layer", 2)})
    table = claims.paper_vs_run(runs)
    assert table.loc["LoMix beats last-layer supervision", "budget"] == "still improving: 3 of 8 runs"
    assert table.loc["LoMix beats equal-weight additive mutation", "budget"] == "still improving: 1 of 8 runs"
    assert claims.budget(runs.runs[runs.runs.preset == "mutation"]) == "ok"
    assert "2 of 2 rows involve runs whose validation Dice still rose" in claims.notes(table)
    official = comparison({"last_layer": [0.05, 0.04, 0.06, 0.05]}, reading="no validation curve")
    assert claims.paper_vs_run(official).iloc[0]["budget"] == "no validation curve"  # never "budget-limited"
    short = comparison({"last_layer": [0.05, 0.04, 0.06, 0.05]}, reading="too few epochs")
    assert claims.paper_vs_run(short).iloc[0]["budget"] == "untested: 8 of 8 runs had under 3 epochs"


def test_notes_count_the_chapters_tests_and_warn_about_one_seed():
    table = claims.paper_vs_run(comparison({"last_layer": [0.05, 0.04, 0.06, 0.05]}))
    tests = TestFamily()
    for scope in "abcdefgh":
        tests.add(scope, "lomix - last_layer", pd.Series([0.05, 0.04, 0.06, 0.05]) + 0.01 * (ord(scope) - 97))
    text = claims.notes(table, tests)
    assert text.startswith("8 paired tests corrected together (every paired test of this chapter): at alpha = 0.05, "
                           "the chance that at least one comes out 'significant' by luck alone is up to 34% if they "
                           "were independent.")
    assert "every verdict word reads it" in text and "one seed" not in text and "still rose" not in text
    assert claims.notes(table).startswith("1 paired test corrected together (this table's rows)")
    one_seed = claims.notes(claims.paper_vs_run(comparison({"last_layer": [0.05]})))
    assert one_seed.startswith("No paired test here had two or more seeds")
    assert "1 of 1 rows rest on one seed" in one_seed
    with pytest.raises(ValueError, match="notes needs a table from paper_vs_run"):
        claims.notes(pd.DataFrame({"p": [0.1]}))


def low_data(sizes: dict[int, list[float]]) -> LowData:
    return LowData({n: comparison({"last_layer": d, "nnunet": [0.0] * len(d)}) for n, d in sizes.items()},
                   {n: 8 * n for n in sizes})


def test_low_data_vs_paper():
    small, large = np.array([0.10, 0.08, 0.12, 0.09]), np.array([0.02, 0.03, 0.01, 0.02])
    low = low_data({4: list(large), 1: list(small), 2: [0.05] * 4})
    table = claims.low_data_vs_paper(low)
    assert list(table.index) == [
        "LoMix beats last-layer supervision with 1-2 labelled scans (here 1 training subject)",
        "LoMix's gain over last-layer supervision grows when labels are scarce (here 1 vs 4 subjects)"]
    at_one, growth = table.iloc[0], table.iloc[1]
    assert at_one["paper"] == "+9.23" and at_one["this run"] == f"{100 * small.mean():+.2f}"
    assert at_one["95 % CI"] == interval(100 * small) and at_one["paper setting"] == claims.PAPER_LOW_DATA_SETTING
    assert at_one["verdict"] == "better; consistent with the paper"
    # 9.23 - 4.2 is the kit's subtraction, not a number the paper prints
    assert growth["paper"] == "+5.03 (derived)" and "derived by the kit" in growth["paper setting"]
    assert growth["this run"] == f"{100 * (small - large).mean():+.2f}"
    assert growth["95 % CI"] == interval(100 * (small - large))  # paired by seed across the two sizes
    assert growth["p"] == pytest.approx(stats.ttest_1samp(small - large, 0).pvalue)
    assert list(table["p (Holm)"]) == pytest.approx(holm(table["p"]))
    tests = TestFamily()  # the chapter's family: the gains at 1 and 4 subjects and the growth (the rest have no spread)
    low.register(tests)
    chapter = claims.low_data_vs_paper(low, tests=tests)
    assert chapter.iloc[0]["p (Holm)"] == pytest.approx(tests.result("1 subject", "lomix - last_layer")["holm_p"])
    assert len(tests) == 3 and chapter.iloc[1]["p (Holm)"] >= table.iloc[1]["p (Holm)"]


def test_low_data_vs_paper_with_one_size_or_without_the_baseline():
    table = claims.low_data_vs_paper(low_data({3: [0.01, 0.02, 0.03]}))
    assert list(table.index) == ["LoMix beats last-layer supervision with 1-2 labelled scans (here 3 training "
                                 "subjects)"]  # no growth without a second size
    with pytest.raises(ValueError, match="lacks 'lomix' or 'mutation'"):
        claims.low_data_vs_paper(low_data({1: [0.01, 0.02]}), claim=Claim("x", "mutation", 1.0))
    with pytest.raises(ValueError, match="at least one training-set size"):
        claims.low_data_vs_paper(LowData({}, {}))

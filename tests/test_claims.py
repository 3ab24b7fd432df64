"""The paper-vs-run tables of chapters 03-05 (lomix_core.claims), on hand-built runs whose per-seed
differences are known."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import lomix_core as lx
from lomix_core import claims
from lomix_core.claims import Claim
from lomix_core.experiments import Comparison, LowData

LOMIX = np.array([0.60, 0.55, 0.70, 0.65])  # LoMix's test Dice on seeds 0-3


def comparison(differences: dict[str, list[float]], method: str = "lomix", last_epoch: dict | None = None,
               epochs: int = 10) -> Comparison:
    """Runs where ``method`` scores LOMIX and each baseline LOMIX minus its per-seed ``differences``
    (Dice fractions). ``last_epoch``: {(variant, seed)} whose best epoch is the last one."""
    seeds = range(len(next(iter(differences.values()))))
    dice = {method: LOMIX[list(seeds)]} | {b: LOMIX[list(seeds)] - np.array(d) for b, d in differences.items()}
    rows = [{"preset": variant, "seed": s, "test_dice": float(values[s]), "test_hd95": 5.0, "test_hd95_mm": None, "val_dice": 0.5,
             "best_epoch": epochs if (variant, s) in (last_epoch or set()) else epochs // 2, "epochs": epochs,
             "train_time_s": 1.0, "steps": 100, "supervised_maps": 1}
            for variant, values in dice.items() for s in seeds]
    return Comparison(results=pd.DataFrame(), runs=pd.DataFrame(rows), models={})


def interval(d_points: np.ndarray) -> str:
    low, high = stats.t.interval(0.95, len(d_points) - 1, loc=d_points.mean(), scale=stats.sem(d_points))
    return f"[{low:+.2f}, {high:+.2f}]"


def test_a_row_holds_the_paired_difference_in_dice_points_with_scipys_interval():
    d = np.array([0.040, 0.045, 0.038, 0.047])
    table = claims.paper_vs_run(comparison({"last_layer": d}))
    assert list(table.index) == ["LoMix beats last-layer supervision"]  # the other two claims were not run
    row = table.iloc[0]
    assert row["paper"] == "+4.20" and row["seeds"] == 4
    assert row["this run"] == f"{100 * d.mean():+.2f}" == "+4.25"
    assert row["95 % CI"] == interval(100 * d)
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


@pytest.mark.parametrize("d, gain, expected", [
    ([0.040, 0.045, 0.038, 0.047], 4.2, "reproduced: better here, consistent with the paper's +4.2"),
    ([0.010, 0.012, 0.011, 0.013], 4.2, "better here, but less than the paper's +4.2"),
    ([0.090, 0.095, 0.092, 0.091], 4.2, "better here, but more than the paper's +4.2"),
    ([-0.030, -0.035, -0.032, -0.031], 4.2, "contradicted: significantly worse here"),
    ([0.001, -0.002, 0.0015, -0.001], 4.2,
     "not reproduced: no difference shown, and the paper's +4.2 lies above the interval"),
    ([0.08, -0.07, 0.05, -0.04], 4.2, "inconclusive: the interval holds both 0 and the paper's +4.2"),
    ([0.001, -0.002, 0.0015, -0.001], None, "inconclusive: the interval holds 0"),
    ([0.010, 0.012, 0.011, 0.013], None, "reproduced: better here, consistent with the paper's direction"),
    ([0.05], 4.2, "no verdict: one seed gives no interval"),
])
def test_verdicts(d, gain, expected):
    table = claims.paper_vs_run(comparison({"last_layer": d}), [Claim("a claim", "last_layer", gain)])
    assert table.loc["a claim", "verdict"] == expected
    assert table.loc["a claim", "paper"] == ("+" if gain is None else f"{gain:+.2f}")


def test_one_seed_has_no_interval_and_no_p():
    row = claims.paper_vs_run(comparison({"last_layer": [0.05]})).iloc[0]
    assert row["95 % CI"] == "none (one seed)" and row["this run"] == "+5.00"
    assert np.isnan(row["p"]) and np.isnan(row["p (Holm)"])


def test_the_verdict_reads_the_interval_at_its_edges():
    assert claims.verdict(0.0, 2.0, 4.2, 3).startswith("not reproduced")  # 0 on the edge is inside
    assert claims.verdict(2.0, 4.2, 4.2, 3).startswith("reproduced")  # so is the paper's gain
    assert claims.verdict(-2.0, 0.0, 4.2, 3).startswith("not reproduced")


def test_holm_against_a_hand_computed_example():
    # sorted: 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 = 0.04 -> kept monotone at 0.06
    assert claims.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert claims.holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])  # capped at 1, then monotone
    nan, first, second = claims.holm([float("nan"), 0.2, 0.6])  # a missing p is not one of the tests
    assert np.isnan(nan) and (first, second) == pytest.approx((0.4, 0.6))
    assert claims.holm([]) == []


def test_the_table_applies_holm_to_its_claims():
    table = claims.paper_vs_run(comparison({"last_layer": [0.05, 0.04, 0.06, 0.05],
                                            "deep_supervision": [0.02, 0.01, 0.03, 0.02],
                                            "mutation": [0.01, -0.02, 0.015, 0.012]}))
    assert list(table["p (Holm)"]) == pytest.approx(claims.holm(table["p"]))
    p = table["p"].to_numpy()
    order = np.argsort(p)
    by_hand = np.maximum.accumulate(np.minimum(1, (len(p) - np.arange(len(p))) * p[order]))
    assert table["p (Holm)"].to_numpy()[order] == pytest.approx(by_hand)


def test_the_budget_flag_counts_the_pairs_runs_that_peaked_at_their_last_epoch():
    runs = comparison({"last_layer": [0.05, 0.04, 0.06, 0.05], "mutation": [0.01, 0.02, 0.015, 0.012]},
                      last_epoch={("lomix", 0), ("last_layer", 1), ("last_layer", 2)})
    table = claims.paper_vs_run(runs)
    assert table.loc["LoMix beats last-layer supervision", "budget"] == "budget-limited: 3 of 8 runs peaked at " \
                                                                         "their last epoch"
    assert table.loc["LoMix beats equal-weight additive mutation", "budget"] == "budget-limited: 1 of 8 runs " \
                                                                                  "peaked at their last epoch"
    assert claims.budget_flag(runs.runs[runs.runs.preset == "mutation"]) == "ok"
    assert "2 of 2 rows involve runs that peaked at their last epoch" in claims.notes(table)


def test_notes_count_the_chapters_tests_and_warn_about_one_seed():
    table = claims.paper_vs_run(comparison({"last_layer": [0.05, 0.04, 0.06, 0.05]}))
    text = claims.notes(table, tests_in_chapter=8)
    assert text.startswith("8 paired tests in this chapter: at alpha = 0.05, the chance that at least one comes out "
                           "'significant' by luck alone is up to 34% if they were independent.")
    assert "corrects the 1 claim in this table" in text and "one seed" not in text and "last epoch" not in text
    assert claims.notes(table).startswith("1 paired test in this chapter") and "up to 5%" in claims.notes(table)
    one_seed = claims.notes(claims.paper_vs_run(comparison({"last_layer": [0.05]})))
    assert "1 of 1 rows rest on one seed" in one_seed
    for bad in (0, 2.5, "8"):
        with pytest.raises(ValueError, match="tests_in_chapter must be an int >= the table's 1 rows"):
            claims.notes(table, tests_in_chapter=bad)
    with pytest.raises(ValueError, match="alpha must lie in"):
        claims.notes(table, alpha=5)
    with pytest.raises(ValueError, match="notes needs a table from paper_vs_run"):
        claims.notes(pd.DataFrame({"p": [0.1]}))


def low_data(sizes: dict[int, list[float]]) -> LowData:
    return LowData({n: comparison({"last_layer": d, "nnunet": [0.0] * len(d)}) for n, d in sizes.items()},
                   {n: 8 * n for n in sizes})


def test_low_data_vs_paper():
    small, large = np.array([0.10, 0.08, 0.12, 0.09]), np.array([0.02, 0.03, 0.01, 0.02])
    table = claims.low_data_vs_paper(low_data({4: list(large), 1: list(small), 2: [0.05] * 4}))
    assert list(table.index) == [
        "LoMix beats last-layer supervision with 1-2 labelled scans (here 1 training subject)",
        "LoMix's gain over last-layer supervision grows when labels are scarce (here 1 vs 4 subjects)"]
    at_one, growth = table.iloc[0], table.iloc[1]
    assert at_one["paper"] == "+9.23" and at_one["this run"] == f"{100 * small.mean():+.2f}"
    assert at_one["95 % CI"] == interval(100 * small) and at_one["paper setting"] == claims.PAPER_LOW_DATA_SETTING
    assert at_one["verdict"] == "reproduced: better here, consistent with the paper's +9.23"
    assert growth["paper"] == "+5.03" and growth["this run"] == f"{100 * (small - large).mean():+.2f}"
    assert growth["95 % CI"] == interval(100 * (small - large))  # paired by seed across the two sizes
    assert growth["p"] == pytest.approx(stats.ttest_1samp(small - large, 0).pvalue)
    assert list(table["p (Holm)"]) == pytest.approx(claims.holm(table["p"]))


def test_low_data_vs_paper_with_one_size_or_without_the_baseline():
    table = claims.low_data_vs_paper(low_data({3: [0.01, 0.02, 0.03]}))
    assert list(table.index) == ["LoMix beats last-layer supervision with 1-2 labelled scans (here 3 training "
                                 "subjects)"]  # no growth without a second size
    with pytest.raises(ValueError, match="lacks 'lomix' or 'mutation'"):
        claims.low_data_vs_paper(low_data({1: [0.01, 0.02]}), claim=Claim("x", "mutation", 1.0))
    with pytest.raises(ValueError, match="at least one training-set size"):
        claims.low_data_vs_paper(LowData({}, {}))

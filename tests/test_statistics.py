"""The kit's statistics (lomix_core.studies.statistics): paired tests, Holm over a chapter's family of
tests, the verdict words read from the corrected p, the simultaneous interval and the plateau test."""
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from lomix_core import statistics
from lomix_core.studies.statistics import TestFamily, holm, paired_test, plateau_test

# The README's brain_aal case (cpu profile, 3 seeds): LoMix minus last layer per seed. Paired
# t-test p 0.020 uncorrected, 0.059 after Holm over a table's 3 claims, exact Wilcoxon p 0.25.
README_LOMIX_MINUS_LAST_LAYER = [0.099, 0.157, 0.113]


def test_paired_test_matches_scipy_on_known_differences():
    d = np.array([0.10, 0.15, 0.08, 0.10])
    row = paired_test(pd.Series(d))
    half = stats.t.ppf(0.975, 3) * d.std(ddof=1) / 2
    assert row["seeds"] == 4 and row["mean_difference"] == pytest.approx(d.mean())
    assert (row["ci95_low"], row["ci95_high"]) == pytest.approx((d.mean() - half, d.mean() + half))
    assert row["t_test_p"] == pytest.approx(stats.ttest_1samp(d, 0).pvalue)
    assert row["wilcoxon_p"] == pytest.approx(2 / 2 ** 4)  # all 4 differences positive: the exact minimum
    tied = paired_test(pd.Series([0.0, 0.0, 0.0]))  # no spread: no test can be computed
    assert tied["mean_difference"] == 0 and np.isnan(tied["t_test_p"]) and np.isnan(tied["wilcoxon_p"])
    one = paired_test(pd.Series([0.1]))
    assert one["seeds"] == 1 and np.isnan(one["ci95_low"]) and np.isnan(one["t_test_p"])


@pytest.mark.parametrize("seeds, floor", [(3, 0.25), (4, 0.125), (5, 0.0625), (6, 0.03125)])
def test_the_wilcoxon_floor_is_two_over_two_to_the_seeds(seeds, floor):
    assert paired_test(pd.Series(np.linspace(0.01, 0.02, seeds)))["wilcoxon_p"] == pytest.approx(floor)


def test_holm():
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])  # capped at 1, then monotone
    nan, first, second = holm([float("nan"), 0.2, 0.6])  # a missing p is not one of the tests
    assert np.isnan(nan) and (first, second) == pytest.approx((0.4, 0.6))
    assert holm([]) == []


def test_the_verdict_word_reads_the_corrected_p():
    assert statistics.direction(+0.1, 0.01) == "better" and statistics.direction(-0.1, 0.01) == "worse"
    assert statistics.direction(+0.1, 0.059) == "no difference shown"
    assert statistics.direction(+0.1, float("nan")) == "no test"
    assert set(statistics.VERDICTS) == {"better", "worse", "no difference shown", "no test"}


def test_the_readme_case_is_significant_only_before_correction():
    alone = TestFamily()
    alone.add("brain_aal", "lomix - last_layer", pd.Series(README_LOMIX_MINUS_LAST_LAYER))
    row = alone.result("brain_aal", "lomix - last_layer")
    assert row["t_test_p"] == pytest.approx(0.0196, abs=5e-4) and row["wilcoxon_p"] == pytest.approx(0.25)
    assert row["verdict"] == "better"  # one test: nothing to correct
    table = TestFamily()  # the README's claims table: 3 claims
    table.add("brain_aal", "lomix - last_layer", pd.Series(README_LOMIX_MINUS_LAST_LAYER))
    table.add("brain_aal", "lomix - deep_supervision", pd.Series([0.12, -0.06, 0.03]))
    table.add("brain_aal", "lomix - mutation", pd.Series([0.10, -0.05, 0.024]))
    row = table.result("brain_aal", "lomix - last_layer")
    assert row["holm_p"] == pytest.approx(0.059, abs=5e-4) and row["verdict"] == "no difference shown"
    assert row["t_test_p"] < 0.05  # the uncorrected p stays in the table as a number


def test_a_family_corrects_over_every_test_and_closes_on_first_read():
    family = TestFamily()
    p = []
    for scope in ("a", "b"):
        for name, d in (("x", [0.05, 0.04, 0.06, 0.05]), ("y", [0.01, -0.02, 0.015, 0.012])):
            family.add(scope, name, pd.Series(d) * (1 if scope == "a" else 2))
            p.append(stats.ttest_1samp(d, 0).pvalue)
    family.add("a", "x", pd.Series([0.05, 0.04, 0.06, 0.05]))  # the same test again: a no-op
    assert len(family) == 4 and ("a", "y") in family
    table = family.table()
    assert list(table["holm_p"]) == pytest.approx(holm(p))
    assert list(table.index) == [("a", "x"), ("a", "y"), ("b", "x"), ("b", "y")]
    late = TestFamily()
    late.add("z", "b", pd.Series([0.1, 0.2]))
    late.add("a", "a", pd.Series([0.1, 0.3]))
    assert list(late.table().index) == [("z", "b"), ("a", "a")]  # registration order, not sorted
    with pytest.raises(ValueError, match="already read; register every test of the chapter before printing"):
        family.add("c", "x", pd.Series([0.1, 0.2]))
    with pytest.raises(ValueError, match="already registered with other differences"):
        family.add("a", "x", pd.Series([0.1, 0.2]))
    with pytest.raises(ValueError, match="no test 'z' in scope 'a' was registered"):
        family.result("a", "z")
    with pytest.raises(ValueError, match="holds no tests"):
        TestFamily().table()
    with pytest.raises(ValueError, match=r"alpha must lie in \(0, 1\)"):
        TestFamily(alpha=5)


def test_the_simultaneous_interval_is_bonferronis():
    family = TestFamily()
    d = {"x": np.array([0.05, 0.04, 0.06, 0.05]), "y": np.array([0.01, 0.03, 0.02, 0.00]), "one": np.array([0.1])}
    for name, values in d.items():
        family.add("s", name, pd.Series(values))
    row = family.result("s", "x")
    m = 2  # the one-seed test has no p, so it is not one of the tests corrected
    low, high = stats.t.interval(1 - 0.05 / m, 3, loc=d["x"].mean(), scale=stats.sem(d["x"]))
    assert (row["simultaneous_low"], row["simultaneous_high"]) == pytest.approx((low, high))
    assert row["simultaneous_low"] < row["ci95_low"] and row["ci95_high"] < row["simultaneous_high"]
    assert family.result("s", "one")["verdict"] == "no test" and np.isnan(family.result("s", "one")["simultaneous_low"])


def test_plateau_test_fires_only_on_an_interval_above_zero():
    rising = plateau_test(np.linspace(0.2, 0.8, 12) + 0.01 * np.sin(np.arange(12)))
    assert rising["reading"] == "still improving" and rising["low"] > 0 and rising["epochs"] == 4
    tail = np.arange(8, 12)
    fit = stats.linregress(tail, (np.linspace(0.2, 0.8, 12) + 0.01 * np.sin(np.arange(12)))[8:])
    assert rising["slope"] == pytest.approx(fit.slope)
    assert rising["high"] - rising["slope"] == pytest.approx(stats.t.ppf(0.975, 2) * fit.stderr)
    flat = plateau_test([0.2, 0.5, 0.7, 0.71, 0.69, 0.72, 0.70, 0.71, 0.70])  # peaks at its last epoch is not enough
    assert flat["reading"] == "no rise shown" and flat["low"] < 0 < flat["high"]
    noisy_last_best = plateau_test([0.5, 0.6, 0.55, 0.62])
    assert noisy_last_best["reading"] == "no rise shown"  # best epoch = last epoch, yet no rise shown
    falling = plateau_test(np.linspace(0.8, 0.5, 9))
    assert falling["reading"] == "no rise shown" and falling["high"] <= 0


def test_plateau_test_without_a_validation_curve_or_with_too_few_epochs():
    assert plateau_test([float("nan")] * 300)["reading"] == "no validation curve"  # the official protocol
    assert plateau_test([0.3, 0.5])["reading"] == "too few epochs"
    assert plateau_test([])["reading"] == "too few epochs"

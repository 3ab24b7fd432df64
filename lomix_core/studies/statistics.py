"""The kit's statistics: paired tests, one multiplicity policy per chapter, the verdict words,
and the plateau test that says whether a run was still improving when its budget ran out.

**One family of tests per chapter.** A chapter registers every paired test it reports in one
:class:`TestFamily`; Holm's correction runs over all of them, and every table and sentence the
chapter prints reads the corrected values from there. So the statements and the paper-vs-run
tables of a chapter always agree, and a chapter with 8 tests cannot call a p of 0.02 "significant"
because one of its tables held only 3.

**Verdict words come from the corrected p.** :func:`direction` gives one of :data:`VERDICTS`:
"better" or "worse" when the Holm-corrected paired t-test p is below alpha, "no difference
shown" otherwise, "no test" when fewer than two seeds (or no spread) leave nothing to test. The
uncorrected p and the uncorrected 95 % interval stay in the tables as numbers, never as words.

**Which interval a verdict may read.** Holm has no standard matching confidence interval, so a
verdict that compares a run with the paper's gain reads the Bonferroni *simultaneous* interval
instead: the t interval at level 1 − alpha/m for a family of m tests. All m such intervals hold
their true means together with probability at least 1 − alpha, and each is wider than the 95 %
one, so a verdict built on it never claims more than the corrected p. The two can disagree only in
the cautious direction: Holm may call a difference "better" while the simultaneous interval still
touches 0.
"""
from __future__ import annotations

import math
from typing import Hashable, Sequence

import numpy as np
import pandas as pd

ALPHA = 0.05
BETTER, WORSE, NO_DIFFERENCE, NO_TEST = "better", "worse", "no difference shown", "no test"
VERDICTS = (BETTER, WORSE, NO_DIFFERENCE, NO_TEST)


def paired_test(differences: pd.Series) -> dict[str, float]:
    """Mean of paired differences with its 95 % t interval, the t-test and exact Wilcoxon p-values.

    With n seeds the Wilcoxon test cannot go below 2/2^n (0.25 for 3 seeds, 0.0625 for 5, 0.031
    for 6). Fewer than 2 seeds give NaN."""
    from scipy import stats

    d, nan = pd.Series(differences, dtype=float).dropna(), float("nan")
    n, mean = len(d), float(d.mean()) if len(d) else nan
    if n < 2:
        return dict(seeds=n, mean_difference=mean, ci95_low=nan, ci95_high=nan, t_test_p=nan, wilcoxon_p=nan)
    half_width = stats.t.ppf(0.975, n - 1) * d.std() / n ** 0.5
    constant = bool((d == d.iloc[0]).all())  # the tests are undefined without any spread
    return dict(seeds=n, mean_difference=mean, ci95_low=mean - half_width, ci95_high=mean + half_width,
                t_test_p=nan if constant else float(stats.ttest_1samp(d, 0.0).pvalue),  # = paired t-test
                wilcoxon_p=nan if (d == 0).all() else float(stats.wilcoxon(d, method="exact").pvalue))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment: controls the chance of any false 'significant' among the m
    tests (missing p-values are not tests and stay NaN)."""
    p = pd.Series(list(p_values), dtype=float)
    order = p.dropna().sort_values()
    m, adjusted, running = len(order), pd.Series(float("nan"), index=p.index), 0.0
    for rank, (index, value) in enumerate(order.items()):
        running = max(running, min(1.0, (m - rank) * value))
        adjusted[index] = running
    return adjusted.tolist()


def direction(mean_difference: float, corrected_p: float, alpha: float = ALPHA) -> str:
    """The verdict word for a paired difference, read from its multiplicity-corrected p."""
    if math.isnan(corrected_p):
        return NO_TEST
    if corrected_p >= alpha:
        return NO_DIFFERENCE
    return BETTER if mean_difference > 0 else WORSE


class TestFamily:
    """Every paired test of one chapter, corrected together.

    Register all tests first (:meth:`add`), then read: the first read (:meth:`table`,
    :meth:`result`) closes the family, and a later :meth:`add` raises, because it would change every
    corrected p already printed. A test is named by a ``scope`` (e.g. the dataset) and a ``name``
    (e.g. "lomix - last_layer"); registering the same test again with the same differences is a
    no-op, so two tables may both register what they share."""

    __test__ = False  # not a pytest class, despite its name

    def __init__(self, alpha: float = ALPHA):
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must lie in (0, 1), got {alpha!r}")
        self.alpha = alpha
        self._differences: dict[tuple[Hashable, str], pd.Series] = {}
        self._table: pd.DataFrame | None = None

    def add(self, scope: Hashable, name: str, differences: pd.Series) -> None:
        """Register the test of ``differences`` (one per seed) as ``(scope, name)``."""
        key, differences = (scope, name), pd.Series(differences, dtype=float)
        if key in self._differences:
            if not self._differences[key].equals(differences):
                raise ValueError(f"test {key} is already registered with other differences; give it another name")
            return
        if self._table is not None:
            raise ValueError(f"cannot add test {key}: the family's corrected values were already read; register every "
                             f"test of the chapter before printing any of them")
        self._differences[key] = differences

    def __len__(self) -> int:
        """How many tests the correction counts: those with a p-value (two or more seeds, some spread)."""
        return sum(not math.isnan(paired_test(d)["t_test_p"]) for d in self._differences.values())

    def __contains__(self, key: tuple[Hashable, str]) -> bool:
        return key in self._differences

    def table(self) -> pd.DataFrame:
        """One row per test, in registration order: the uncorrected paired test (:func:`paired_test`),
        its Holm-corrected p over the whole family, the simultaneous interval and the verdict word."""
        if self._table is None:
            if not self._differences:
                raise ValueError("the family holds no tests; register them with add() first")
            self._table = self._correct()
        return self._table

    def result(self, scope: Hashable, name: str) -> pd.Series:
        """The row of test ``(scope, name)``."""
        if (scope, name) not in self._differences:
            raise ValueError(f"no test {name!r} in scope {scope!r} was registered; registered: "
                             f"{list(self._differences)}")
        return self.table().loc[(scope, name)]

    def _correct(self) -> pd.DataFrame:
        from scipy import stats

        rows = {key: paired_test(d) for key, d in self._differences.items()}
        table = pd.DataFrame(list(rows.values()),  # in registration order
                             index=pd.MultiIndex.from_tuples(list(rows), names=["scope", "test"]))
        table["holm_p"] = holm(table["t_test_p"])
        m = max(1, int(table["t_test_p"].notna().sum()))
        n = table["seeds"].astype(float)
        sd = pd.Series([self._differences[key].dropna().std() for key in rows], index=table.index)
        half = np.where(n > 1, stats.t.ppf(1 - self.alpha / (2 * m), np.maximum(n - 1, 1)) * sd / np.sqrt(n), np.nan)
        table["simultaneous_low"] = table["mean_difference"] - half
        table["simultaneous_high"] = table["mean_difference"] + half
        table["verdict"] = [direction(mean, p, self.alpha)
                            for mean, p in zip(table["mean_difference"], table["holm_p"])]
        return table[["seeds", "mean_difference", "ci95_low", "ci95_high", "t_test_p", "holm_p", "wilcoxon_p",
                      "simultaneous_low", "simultaneous_high", "verdict"]]


def plateau_test(val_dice: Sequence[float], fraction: float = 1 / 3, alpha: float = ALPHA) -> dict:
    """Was a run still improving when training stopped? The least-squares slope of validation Dice
    per epoch over the last ``fraction`` of epochs (at least 3), with its 1 − ``alpha`` t interval.

    ``reading`` is "still improving" only when the whole interval lies above 0; "no rise shown"
    otherwise; "no validation curve" when the run validated on nothing (the official protocol);
    "too few epochs" below 3 validated epochs. One run's test: a chapter flags, it does not correct."""
    from scipy import stats

    nan = float("nan")
    dice = np.asarray(list(val_dice), dtype=float)
    if len(dice) and np.isnan(dice).all():
        return dict(slope=nan, low=nan, high=nan, epochs=0, reading="no validation curve")
    tail = dice[-max(3, math.ceil(fraction * len(dice))):]
    epochs = np.arange(len(dice))[-len(tail):][~np.isnan(tail)]
    tail = tail[~np.isnan(tail)]
    if len(tail) < 3:
        return dict(slope=nan, low=nan, high=nan, epochs=len(tail), reading="too few epochs")
    fit = stats.linregress(epochs, tail)
    half = stats.t.ppf(1 - alpha / 2, len(tail) - 2) * fit.stderr
    low, high = fit.slope - half, fit.slope + half
    return dict(slope=float(fit.slope), low=float(low), high=float(high), epochs=len(tail),
                reading="still improving" if low > 0 else "no rise shown")

"""The paper's claims set against this run: one row per claim, generated from the runs.

Each row holds what the paper reports and this run's paired difference (method minus baseline,
per seed) in Dice points, with its uncorrected 95 % t interval and t-test p (as numbers), the p
corrected by Holm over every paired test of the chapter (its
:class:`~lomix_core.studies.statistics.TestFamily`), the simultaneous interval that goes with that
correction, a verdict and a budget column.

The verdict starts with the chapter's verdict word, read from the corrected p ("better", "worse",
"no difference shown", "no test"), and then sets the paper's gain against the simultaneous
interval (:mod:`lomix_core.studies.statistics` says why that interval):

* "better; consistent with the paper": the paper's gain lies inside the interval (or only the
  direction is claimed); "better, but less (more) than the paper's ...": it lies outside;
* "worse; contradicts the paper";
* "no difference shown; rules out the paper's ...": the paper's gain lies above the interval;
  "...; paper's ... not ruled out": it lies inside, and the run is too small to tell.

The budget column reads each run's plateau test (:func:`~lomix_core.studies.statistics.plateau_test`): a
run whose validation Dice still rose over its last third of epochs says as much about the budget
as about the method.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import pandas as pd

from ..studies.comparisons import Comparison, LowData, growth_scope, paired_name, size_scope
from ..studies.statistics import BETTER, NO_TEST, WORSE, TestFamily

# Where the paper's numbers come from: the deltas of its abstract (arXiv 2510.22995, "LoMix: Learnable
# Weighted Multi-Scale Logits Mixing for Medical Image Segmentation", NeurIPS 2025); the low-data
# baseline is read as the abstract's single-output (last-layer) supervision.
PAPER_SETTING = "Synapse, PVT-v2-b2 + EMCAD, 224 px, 300 epochs, all 18 training scans"
PAPER_LOW_DATA_SETTING = "Synapse, 1-2 labelled scans (5 % of the training data)"


@dataclass(frozen=True)
class Claim:
    """``method`` beats ``baseline`` by ``paper_gain`` Dice points (None: only the direction is
    claimed) in ``setting``. ``derived``: the paper does not print this number; the kit computed it
    from numbers the paper does print (the setting says how)."""

    claim: str
    baseline: str
    paper_gain: float | None
    setting: str = PAPER_SETTING
    method: str = "lomix"
    derived: bool = False


SUPERVISION_CLAIMS = (
    Claim("LoMix beats last-layer supervision", "last_layer", 4.2),
    Claim("LoMix beats deep supervision", "deep_supervision", 2.2),
    Claim("LoMix beats equal-weight additive mutation", "mutation", 1.5),
)
LOW_DATA_CLAIM = Claim("LoMix beats last-layer supervision with 1-2 labelled scans", "last_layer", 9.23,
                       PAPER_LOW_DATA_SETTING)
# The gain grows as labels get scarce. The paper gives +9.23 with 5 % of the data and +4.2 with all of
# it; the growth, 9.23 - 4.2 = 5.03, is the kit's subtraction, not a number the paper reports.
LOW_DATA_GROWTH_CLAIM = Claim("LoMix's gain over last-layer supervision grows when labels are scarce",
                              "last_layer", round(LOW_DATA_CLAIM.paper_gain - SUPERVISION_CLAIMS[0].paper_gain, 2),
                              "derived by the kit from two paper numbers: Synapse, +9.23 with 5 % of the data "
                              "minus +4.2 with all of it", derived=True)
# The two halves of LoMix's step from equal-weight add-mutation; the paper gives one number (+1.5)
# for both together, so here only the direction is claimed.
COMPONENT_CLAIMS = (
    Claim("learned softplus weights beat equal weights (all four operators)", "equal", None,
          "LoMix's design; the paper's +1.5 over mutation includes it", method="softplus"),
    Claim("all four operators beat add alone (softplus weights)", "only add", None,
          "LoMix's design; the paper's +1.5 over mutation includes it", method="all"),
)

COLUMNS = ["claim", "paper", "this run", "95 % CI", "seeds", "p", "p (Holm)", "simultaneous CI", "verdict", "budget"]


def verdict(word: str, low: float, high: float, paper_gain: float | None) -> str:
    """A claim's verdict: the chapter's verdict ``word`` (from the corrected p), then the paper's
    gain set against the simultaneous interval ``[low, high]`` (Dice points)."""
    if word == NO_TEST:
        return "no test: under two seeds, or no spread"
    gain = "" if paper_gain is None else f"the paper's {paper_gain:+g}"
    if word == BETTER:
        if paper_gain is None or low <= paper_gain <= high:
            return "better; consistent with the paper"
        return f"better, but {'less' if paper_gain > high else 'more'} than {gain}"
    if word == WORSE:
        return "worse; contradicts the paper"
    if paper_gain is None:
        return word
    # short enough for pandas' 50-character cells: a verdict must render whole
    return f"{word}; rules out {gain}" if paper_gain > high else f"{word}; {gain[4:]} not ruled out"


def budget(runs: pd.DataFrame) -> str:
    """What the plateau tests of ``runs`` (rows of :attr:`Comparison.runs`) say about the budget:
    "ok", how many runs were still improving, or that the runs had no validation curve."""
    readings = runs["plateau_reading"]
    if (readings == "no validation curve").all():
        return "no validation curve"
    improving = int((readings == "still improving").sum())
    if improving:
        return f"still improving: {improving} of {len(runs)} runs"
    if (readings == "too few epochs").any():
        return f"untested: {int((readings == 'too few epochs').sum())} of {len(runs)} runs had under 3 epochs"
    return "ok"


def _row(claim: Claim, test: pd.Series, runs: pd.DataFrame) -> dict:
    points = 100 * test[["mean_difference", "ci95_low", "ci95_high", "simultaneous_low", "simultaneous_high"]]
    seeds = int(test["seeds"])
    paper = "+" if claim.paper_gain is None else f"{claim.paper_gain:+.2f}" + " (derived)" * claim.derived
    return {"claim": claim.claim, "paper": paper, "this run": f"{points['mean_difference']:+.2f}",
            "95 % CI": "none (one seed)" if seeds < 2 else f"[{points['ci95_low']:+.2f}, {points['ci95_high']:+.2f}]",
            "seeds": seeds, "p": test["t_test_p"], "p (Holm)": test["holm_p"],
            "simultaneous CI": "none" if seeds < 2 else f"[{points['simultaneous_low']:+.2f}, "
                                                       f"{points['simultaneous_high']:+.2f}]",
            "verdict": verdict(test["verdict"], points["simultaneous_low"], points["simultaneous_high"],
                               claim.paper_gain),
            "budget": budget(runs), "paper setting": claim.setting}


def _pair_runs(comparison: Comparison, claim: Claim) -> pd.DataFrame:
    return comparison.runs[comparison.runs[comparison.by].isin([claim.method, claim.baseline])]


def _check_ran(comparison: Comparison, claim: Claim, where: str) -> None:
    variants = set(comparison.runs[comparison.by])
    if not {claim.method, claim.baseline} <= variants:
        raise ValueError(f"{where} lacks {claim.method!r} or {claim.baseline!r} (the claim's method and baseline); "
                         f"variants run: {sorted(variants)}")


def paper_vs_run(comparison: Comparison, claims: Sequence[Claim] = SUPERVISION_CLAIMS, metric: str = "test_dice",
                 tests: TestFamily | None = None, scope: str | None = None) -> pd.DataFrame:
    """One row per claim whose method and baseline ``comparison`` ran (others are skipped).

    ``tests``: the chapter's family, in which ``comparison.register(tests, scope, method)`` was
    called for each claim's method; None corrects over this table's claims only."""
    if metric not in comparison.runs.columns:
        raise ValueError(f"unknown metric {metric!r}; expected a column of comparison.runs, e.g. 'test_dice'")
    variants = set(comparison.runs[comparison.by])
    run = [c for c in claims if {c.method, c.baseline} <= variants]
    if not run:
        raise ValueError(f"none of the claims' method/baseline pairs were run; variants run: {sorted(variants)}")
    if tests is None:
        tests, scope = TestFamily(), "this table"
        for c in run:
            differences = comparison.paired_differences(c.method, metric)[c.baseline]
            tests.add(scope, paired_name(c.method, c.baseline), differences)
    elif scope is None:
        raise ValueError("paper_vs_run with the chapter's tests needs the scope they were registered under")
    rows = [_row(c, tests.result(scope, paired_name(c.method, c.baseline)), _pair_runs(comparison, c)) for c in run]
    return pd.DataFrame(rows).set_index("claim")


def low_data_vs_paper(low: LowData, claim: Claim = LOW_DATA_CLAIM, growth: Claim = LOW_DATA_GROWTH_CLAIM,
                      metric: str = "test_dice", tests: TestFamily | None = None) -> pd.DataFrame:
    """The low-data claim at the smallest training set, and whether the gain grows from the largest
    to the smallest set (per seed: gain with the fewest subjects minus gain with the most; this row
    needs at least two sizes). ``tests``: the chapter's family, in which
    ``low.register(tests, claim.method, growth.baseline)`` was called; None corrects over these rows."""
    if not low.comparisons:
        raise ValueError("low_data_vs_paper needs a LowData with at least one training-set size; got none")
    smallest, largest = min(low.comparisons), max(low.comparisons)
    small, large = low.comparisons[smallest], low.comparisons[largest]
    for n in (smallest, largest):
        _check_ran(low.comparisons[n], claim, f"the sweep's runs on {n} training subject(s)")
    name = paired_name(claim.method, claim.baseline)
    if tests is None:
        tests = TestFamily()
        tests.add(size_scope(smallest), name, small.paired_differences(claim.method, metric)[claim.baseline])
        if largest > smallest:
            tests.add(growth_scope(low), paired_name(growth.method, growth.baseline),
                      low.gain_growth(growth.method, growth.baseline, metric))
    rows = [_row(Claim(f"{claim.claim} (here {smallest} training subject{'s' * (smallest > 1)})", claim.baseline,
                       claim.paper_gain, claim.setting, claim.method, claim.derived),
                 tests.result(size_scope(smallest), name), _pair_runs(small, claim))]
    if largest > smallest:
        both = pd.concat([_pair_runs(small, claim), _pair_runs(large, claim)])
        rows.append(_row(Claim(f"{growth.claim} (here {smallest} vs {largest} subjects)", growth.baseline,
                               growth.paper_gain, growth.setting, growth.method, growth.derived),
                         tests.result(growth_scope(low), paired_name(growth.method, growth.baseline)), both))
    return pd.DataFrame(rows).set_index("claim")


def notes(table: pd.DataFrame, tests: TestFamily | None = None) -> str:
    """What to keep in mind when reading ``table`` (from :func:`paper_vs_run` or
    :func:`low_data_vs_paper`): how many tests the correction counts, the seeds, and the budget.

    ``tests``: the chapter's family the table read (None: the table corrected its own rows)."""
    if not isinstance(table, pd.DataFrame) or not {"seeds", "budget"} <= set(table.columns):
        raise ValueError("notes needs a table from paper_vs_run or low_data_vs_paper (columns 'seeds' and 'budget')")
    alpha = 0.05 if tests is None else tests.alpha
    m = int(table["p"].notna().sum()) if tests is None else len(tests)
    where = "this table's rows" if tests is None else "every paired test of this chapter"
    if m:
        lines = [f"{m} paired test{'s' * (m != 1)} corrected together ({where}): at alpha = {alpha}, the chance that "
                 f"at least one comes out 'significant' by luck alone is up to {1 - (1 - alpha) ** m:.0%} if they were "
                 f"independent. 'p (Holm)' corrects for that, and every verdict word reads it; 'p' and '95 % CI' are "
                 f"uncorrected, shown as numbers only."]
    else:
        lines = ["No paired test here had two or more seeds with some spread: nothing to correct, and no verdict."]
    if (table["seeds"] < 2).any():
        lines.append(f"{int((table['seeds'] < 2).sum())} of {len(table)} rows rest on one seed: no interval and no "
                     f"test exist there. Run more seeds (SEEDS) before reading anything into them.")
    improving = table["budget"].str.startswith("still improving")
    if improving.any():
        lines.append(f"{int(improving.sum())} of {len(table)} rows involve runs whose validation Dice still rose over "
                     f"their last third of epochs (the slope's 95 % interval above 0): a longer budget could change "
                     f"these verdicts.")
    return "\n".join(lines)

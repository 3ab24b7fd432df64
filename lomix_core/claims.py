"""The paper's claims set against this run: one row per claim, generated from the runs.

Each row holds what the paper reports, this run's paired difference (method minus baseline,
per seed) in Dice points with its 95 % t interval, the t-test p-value with and without Holm's
correction for the number of claims tested, a verdict, and a budget flag. A run whose best
validation epoch is its last one was still improving when training stopped: its number says as
much about the budget as about the method.

The verdict reads the interval, not the p-value alone:

* the interval lies above 0: the method is better here; is the paper's gain inside it?
* it lies below 0: the method is worse here, which contradicts the paper;
* it holds 0: no difference shown. If the paper's gain lies above the interval, this run rules
  out a gain that large; if it lies inside, the run is too small to tell.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Sequence

import pandas as pd

from .experiments import Comparison, LowData, paired_test

# Where the paper's numbers come from: the deltas of its abstract (arXiv 2510.22995), as DESIGN.md §1 gives
# them; the low-data baseline is read as the abstract's single-output (last-layer) supervision.
PAPER_SETTING = "Synapse, PVT-v2-b2 + EMCAD, 224 px, 300 epochs, all 18 training scans"
PAPER_LOW_DATA_SETTING = "Synapse, 1-2 labelled scans (5 % of the training data)"


@dataclass(frozen=True)
class Claim:
    """``method`` beats ``baseline`` by ``paper_gain`` Dice points (None: only the direction is
    claimed) in ``setting``."""

    claim: str
    baseline: str
    paper_gain: float | None
    setting: str = PAPER_SETTING
    method: str = "lomix"


SUPERVISION_CLAIMS = (
    Claim("LoMix beats last-layer supervision", "last_layer", 4.2),
    Claim("LoMix beats deep supervision", "deep_supervision", 2.2),
    Claim("LoMix beats equal-weight additive mutation", "mutation", 1.5),
)
LOW_DATA_CLAIM = Claim("LoMix beats last-layer supervision with 1-2 labelled scans", "last_layer", 9.23,
                       PAPER_LOW_DATA_SETTING)
# The gain grows as labels get scarce: 9.23 with 5 % of the data against 4.2 with all of it.
LOW_DATA_GROWTH_CLAIM = Claim("LoMix's gain over last-layer supervision grows when labels are scarce",
                              "last_layer", round(LOW_DATA_CLAIM.paper_gain - SUPERVISION_CLAIMS[0].paper_gain, 2),
                              "Synapse: +9.23 with 5 % of the data against +4.2 with all of it")
# The two halves of LoMix's step from equal-weight add-mutation; the paper gives one number (+1.5)
# for both together, so here only the direction is claimed.
COMPONENT_CLAIMS = (
    Claim("learned softplus weights beat equal weights (all four operators)", "equal", None,
          "LoMix's design; the paper's +1.5 over mutation includes it", method="softplus"),
    Claim("all four operators beat add alone (softplus weights)", "only add", None,
          "LoMix's design; the paper's +1.5 over mutation includes it", method="all"),
)

COLUMNS = ["claim", "paper", "this run", "95 % CI", "seeds", "p", "p (Holm)", "verdict", "budget"]


def verdict(low: float, high: float, paper_gain: float | None, seeds: int) -> str:
    """A plain reading of a paired difference's 95 % interval ``[low, high]`` (in Dice points)."""
    if seeds < 2:
        return "no verdict: one seed gives no interval"
    paper = "the paper's direction" if paper_gain is None else f"the paper's {paper_gain:+g}"
    if low > 0:
        if paper_gain is None or low <= paper_gain <= high:
            return f"reproduced: better here, consistent with {paper}"
        return f"better here, but {'less' if paper_gain > high else 'more'} than {paper}"
    if high < 0:
        return "contradicted: significantly worse here"
    if paper_gain is not None and paper_gain > high:
        return f"not reproduced: no difference shown, and {paper} lies above the interval"
    if paper_gain is None:
        return "inconclusive: the interval holds 0"
    return f"inconclusive: the interval holds both 0 and {paper}"


def budget_flag(runs: pd.DataFrame) -> str:
    """How many of ``runs`` (rows with ``best_epoch`` and ``epochs``) peaked at their last epoch."""
    last = int((runs["best_epoch"] == runs["epochs"]).sum())
    return f"budget-limited: {last} of {len(runs)} runs peaked at their last epoch" if last else "ok"


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment: controls the chance of any false 'significant' among m tests."""
    p = pd.Series(list(p_values), dtype=float)
    order = p.dropna().sort_values()
    m, adjusted, running = len(order), pd.Series(float("nan"), index=p.index), 0.0
    for rank, (index, value) in enumerate(order.items()):
        running = max(running, min(1.0, (m - rank) * value))
        adjusted[index] = running
    return adjusted.tolist()


def _row(claim: Claim, differences: pd.Series, runs: pd.DataFrame) -> dict:
    test = paired_test(100 * differences)  # Dice points, as the paper reports them
    mean, low, high, seeds = test["mean_difference"], test["ci95_low"], test["ci95_high"], test["seeds"]
    interval = "none (one seed)" if seeds < 2 else f"[{low:+.2f}, {high:+.2f}]"
    return {"claim": claim.claim, "paper": "+" if claim.paper_gain is None else f"{claim.paper_gain:+.2f}",
            "this run": f"{mean:+.2f}", "95 % CI": interval, "seeds": seeds,
            "p": test["t_test_p"], "verdict": verdict(low, high, claim.paper_gain, seeds),
            "budget": budget_flag(runs), "paper setting": claim.setting}


def _table(rows: list[dict]) -> pd.DataFrame:
    table = pd.DataFrame(rows)
    table.insert(table.columns.get_loc("p") + 1, "p (Holm)", holm(table["p"]))
    return table.set_index("claim")


def _pair_runs(comparison: Comparison, claim: Claim) -> pd.DataFrame:
    return comparison.runs[comparison.runs[comparison.by].isin([claim.method, claim.baseline])]


def _check_ran(comparison: Comparison, claim: Claim, where: str) -> None:
    variants = set(comparison.runs[comparison.by])
    if not {claim.method, claim.baseline} <= variants:
        raise ValueError(f"{where} lacks {claim.method!r} or {claim.baseline!r} (the claim's method and baseline); "
                         f"variants run: {sorted(variants)}")


def paper_vs_run(comparison: Comparison, claims: Sequence[Claim] = SUPERVISION_CLAIMS,
                 metric: str = "test_dice") -> pd.DataFrame:
    """One row per claim whose method and baseline ``comparison`` ran (others are skipped)."""
    if metric not in comparison.runs.columns:
        raise ValueError(f"unknown metric {metric!r}; expected a column of comparison.runs, e.g. 'test_dice'")
    variants = set(comparison.runs[comparison.by])
    rows = [_row(c, comparison.paired_differences(c.method, metric)[c.baseline], _pair_runs(comparison, c))
            for c in claims if {c.method, c.baseline} <= variants]
    if not rows:
        raise ValueError(f"none of the claims' method/baseline pairs were run; variants run: {sorted(variants)}")
    return _table(rows)


def low_data_vs_paper(low: LowData, claim: Claim = LOW_DATA_CLAIM, growth: Claim = LOW_DATA_GROWTH_CLAIM,
                      metric: str = "test_dice") -> pd.DataFrame:
    """The low-data claim at the smallest training set, and whether the gain grows from the largest
    to the smallest set (per seed: gain with the fewest subjects minus gain with the most; this row
    needs at least two sizes)."""
    if not low.comparisons:
        raise ValueError("low_data_vs_paper needs a LowData with at least one training-set size; got none")
    smallest, largest = min(low.comparisons), max(low.comparisons)
    small, large = low.comparisons[smallest], low.comparisons[largest]
    for n in (smallest, largest):
        _check_ran(low.comparisons[n], claim, f"the sweep's runs on {n} training subject(s)")
    gain_small = small.paired_differences(claim.method, metric)[claim.baseline]
    rows = [_row(Claim(f"{claim.claim} (here {smallest} training subject{'s' * (smallest > 1)})", claim.baseline,
                       claim.paper_gain, claim.setting, claim.method), gain_small, _pair_runs(small, claim))]
    if largest > smallest:
        gain_large = large.paired_differences(claim.method, metric)[claim.baseline]
        both = pd.concat([_pair_runs(small, claim), _pair_runs(large, claim)])
        rows.append(_row(Claim(f"{growth.claim} (here {smallest} vs {largest} subjects)", growth.baseline,
                               growth.paper_gain, growth.setting, growth.method), gain_small - gain_large, both))
    return _table(rows)


def notes(table: pd.DataFrame, tests_in_chapter: int | None = None, alpha: float = 0.05) -> str:
    """What to keep in mind when reading ``table`` (from :func:`paper_vs_run` or
    :func:`low_data_vs_paper`): how many tests were run, the seeds, and the budget.

    ``tests_in_chapter``: every paired test the chapter shows (None: the table's rows)."""
    if not isinstance(table, pd.DataFrame) or not {"seeds", "budget"} <= set(table.columns):
        raise ValueError("notes needs a table from paper_vs_run or low_data_vs_paper (columns 'seeds' and 'budget')")
    m = len(table) if tests_in_chapter is None else tests_in_chapter
    if not isinstance(m, numbers.Integral) or isinstance(m, bool) or m < len(table):
        raise ValueError(f"tests_in_chapter must be an int >= the table's {len(table)} rows, got {tests_in_chapter!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha!r}")
    lines = [f"{m} paired test{'s' * (m > 1)} in this chapter: at alpha = {alpha}, the chance that at least one "
             f"comes out 'significant' by luck alone is up to {1 - (1 - alpha) ** m:.0%} if they were independent. "
             f"'p (Holm)' corrects the {len(table)} claim{'s' * (len(table) > 1)} in this table for that."]
    if (table["seeds"] < 2).any():
        lines.append(f"{int((table['seeds'] < 2).sum())} of {len(table)} rows rest on one seed: no interval and no "
                     f"test exist there. Run more seeds (SEEDS) before reading anything into them.")
    limited = table["budget"] != "ok"
    if limited.any():
        lines.append(f"{int(limited.sum())} of {len(table)} rows involve runs that peaked at their last epoch: "
                     f"they were still improving, so a longer budget could change these verdicts.")
    return "\n".join(lines)

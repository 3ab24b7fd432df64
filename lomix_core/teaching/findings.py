"""Findings: the plain-language answers a chapter prints and hands to the series report, generated
from its tables.

Every direction a finding states ("better", "worse", "no difference shown") is the verdict word
of :mod:`lomix_core.studies.statistics`, read from the p-value corrected over all of the chapter's tests
(its :class:`~lomix_core.studies.statistics.TestFamily`). Uncorrected p-values and intervals appear as
numbers only. A finding given no family corrects over the tests it reads itself, and says so.
"""
from __future__ import annotations

import math

import pandas as pd

from ..studies.comparisons import Comparison, LowData, growth_scope, paired_name, size_scope
from ..studies.statistics import BETTER, NO_TEST, WORSE, TestFamily, paired_test


def _family(tests: TestFamily | None, scope: str | None, register) -> tuple[TestFamily, str, str]:
    """The family to read, the scope of the tests, and how to name the correction."""
    if tests is None:
        tests, scope = TestFamily(), scope or "this comparison"
        register(tests, scope)
        return tests, scope, _correction(len(tests), "these", " only")
    if scope is None:
        raise ValueError("a finding that reads a chapter's TestFamily needs the scope its tests were registered under")
    return tests, scope, _correction(len(tests), "the chapter's", "")


def _correction(m: int, whose: str, only: str) -> str:
    return f"Holm-corrected over {whose} {m} paired test{'s' * (m != 1)}{only}" if m else "no paired test to correct"


def _numbers(test: pd.Series) -> str:
    """A test's numbers in a sentence: mean difference, uncorrected interval and p, corrected p."""
    if test["seeds"] < 2:
        return f"{test['mean_difference']:+.3f} (one seed: no interval, no test)"
    if math.isnan(test["t_test_p"]):  # every seed gave the same difference
        return f"{test['mean_difference']:+.3f} (the same on every seed: no spread, no test)"
    return (f"{test['mean_difference']:+.3f} (95 % CI {test['ci95_low']:+.3f} to {test['ci95_high']:+.3f} and paired "
            f"t-test p = {test['t_test_p']:.3g}, both uncorrected; Holm p = {test['holm_p']:.3g}; Wilcoxon p = "
            f"{test['wilcoxon_p']:.3g})")


def _who(words: dict[str, str], method: str, where: str, correction: str) -> str:
    """One sentence naming the baselines ``method`` was better and worse than."""
    better = [b for b, w in words.items() if w == BETTER]
    worse = [b for b, w in words.items() if w == WORSE]
    if all(w == NO_TEST for w in words.values()):
        return f"No paired test was possible{where} (one seed, or the same difference on every seed): no verdict."
    if not better and not worse:
        return f"No difference shown between {method} and any baseline{where} ({correction})."
    parts = [f"better than {', '.join(better)}"] * bool(better) + [f"worse than {', '.join(worse)}"] * bool(worse)
    rest = "; no difference shown against the others" if len(better) + len(worse) < len(words) else ""
    return f"{method} was {' and '.join(parts)}{where} ({correction}){rest}."


def statement(comparison: Comparison, label: str, tests: TestFamily | None = None, scope: str | None = None,
              method: str = "lomix", unit: str = "seed") -> str:
    """A plain-language answer to "was ``method`` better than the baselines?" with mean ± sd, the
    paired differences, their intervals and p-values, whatever the answer is. ``tests``: the
    chapter's family, in which ``comparison.register(tests, scope, method)`` was called. ``unit``
    names what the runs pair by ("replicate" for nnU-Net's unseeded runs)."""
    tests, scope, correction = _family(tests, scope, lambda family, s: comparison.register(family, s, method))
    summary = comparison.summary()
    own = summary.loc[method]
    seeds = f"{own.seeds:.0f} {unit}" + ("" if own.seeds == 1 else "s")
    words, lines = {}, []
    for baseline in summary.index.drop(method):
        test = tests.result(scope, paired_name(method, baseline))
        words[baseline] = test["verdict"]
        row = summary.loc[baseline]
        lines.append(f"- vs {baseline} ({row.test_dice_mean:.3f} ± {row.test_dice_std:.3f}): {_numbers(test)}: "
                     f"{test['verdict']}.")
    head = (f"On {label} with {seeds}, {method} scored {own.test_dice_mean:.3f} ± {own.test_dice_std:.3f} test Dice. "
            + _who(words, method, "", correction))
    return "\n".join([head, *lines])


def low_data_statement(low: LowData, label: str, tests: TestFamily | None = None, method: str = "lomix",
                       growth_baseline: str = "last_layer") -> str:
    """Does ``method``'s gain over each baseline grow as the training set shrinks (the paper's
    claim)? First whether less data cost Dice at all (if not, the sweep cannot test the claim), then
    the paired differences at the smallest and the largest size and the growth test. ``tests``: the
    chapter's family, in which ``low.register(tests, method, growth_baseline)`` was called."""
    tests, _, correction = _family(tests, "", lambda family, s: low.register(family, method, growth_baseline))
    smallest, largest = min(low.comparisons), max(low.comparisons)
    dice = low.runs.groupby("train_subjects")["test_dice"].mean()
    head = [f"Low data on {label}: mean test Dice over all presets was {dice[smallest]:.3f} with {smallest} "
            f"subject(s) and {dice[largest]:.3f} with {largest}."]
    if smallest == largest:
        head.append("One training-set size only: nothing can grow, so the sweep cannot test the paper's claim.")
    else:
        head.append(_data_cost(low, smallest, largest))
    baselines = [b for b in low.comparisons[smallest].summary().index if b != method]
    words, lines = {}, []
    for baseline in baselines:
        small = tests.result(size_scope(smallest), paired_name(method, baseline))
        words[baseline] = small["verdict"]
        text = f"- vs {baseline}: {_numbers(small)} with {smallest} subject(s): {small['verdict']}"
        if largest > smallest:
            large = tests.result(size_scope(largest), paired_name(method, baseline))
            text += f"; {_numbers(large)} with {largest}: {large['verdict']}"
        lines.append(text + ".")
    head.append(_who(words, method, f" with {smallest} subject(s)", correction))
    if largest > smallest:
        growth = tests.result(growth_scope(low), paired_name(method, growth_baseline))
        grew = {BETTER: " (the gain grew)", WORSE: " (the gain shrank)"}.get(growth["verdict"], "")
        lines.append(f"- {method}'s gain over {growth_baseline} with {smallest} minus its gain with {largest}, per "
                     f"seed: {_numbers(growth)}: {growth['verdict']}{grew}.")
    return "\n".join([" ".join(head), *lines])


def _data_cost(low: LowData, smallest: int, largest: int) -> str:
    """Whether less data cost Dice: per seed, the mean over presets with the most subjects minus with
    the fewest, and its 95 % t interval. A gain that grows when labels are scarce needs scarcity to
    cost Dice first; a cost within seed noise cannot show that data is what limits the sweep."""
    per_seed = low.runs.groupby(["train_subjects", "seed"])["test_dice"].mean().unstack("train_subjects")
    cost = paired_test(per_seed[largest] - per_seed[smallest])
    difference = (f"mean test Dice over the presets with {largest} subjects minus with {smallest}, per seed: "
                  f"{cost['mean_difference']:+.3f}")
    if cost["seeds"] < 2:
        return (f"The {difference} with one seed, which cannot tell a cost from seed noise, so the sweep cannot "
                f"test the paper's low-data claim.")
    difference += f" (95 % CI {cost['ci95_low']:+.3f} to {cost['ci95_high']:+.3f} over seeds)"
    if cost["ci95_low"] > 0:
        return f"Less data cost Dice: the {difference}, so the sweep can test the paper's claim."
    return (f"Less data cost no Dice beyond seed noise: the {difference}. The sweep is limited by its budget or "
            f"network, not shown to be limited by data, and cannot test the paper's low-data claim either way.")


def ablation_statement(comparison: Comparison, label: str, tests: TestFamily | None = None, scope: str | None = None,
                       method: str = "all") -> str:
    """What an ablation table (``method`` minus each variant, per seed) says about each part, read
    from its sign and the corrected p: ``without X`` scoring lower means X helped, ``only X``
    scoring lower means X alone falls short of ``method``."""
    tests, scope, correction = _family(tests, scope, lambda family, s: comparison.register(family, s, method))
    lines = [f"Ablation on {label}: {method} minus each variant, per seed; a positive difference means {method} scored "
             f"higher ({correction})."]
    for variant in comparison.paired_differences(method).columns:
        test = tests.result(scope, paired_name(method, variant))
        word, part = test["verdict"], variant.split(" ", 1)[-1]
        if variant.startswith("without "):
            meaning = {BETTER: f"leaving {part} out cost Dice: {part} helped",
                       WORSE: f"leaving {part} out raised Dice: {part} hurt"}.get(word, f"so no effect of {part} shown")
        elif variant.startswith("only "):
            meaning = {BETTER: f"{part} alone fell short of {method}", WORSE: f"{part} alone beat {method}"}.get(
                word, f"so {part} alone is not shown to differ from {method}")
        else:
            meaning = {BETTER: f"{method} scored higher than {variant}",
                       WORSE: f"{variant} scored higher than {method}"}.get(word)
        if word == NO_TEST:
            reading = f"{word}: nothing to read"
        elif word in (BETTER, WORSE):
            reading = f"{word}: {meaning}"
        else:  # the verdict already says no difference was shown; the meaning names the part
            reading = f"{word}, {meaning}" if meaning else word
        lines.append(f"- {method} minus {variant}: {_numbers(test)}: {reading}.")
    return "\n".join(lines)


def plateau_statement(comparison: Comparison, label: str) -> str:
    """Whether the runs of ``comparison`` had stopped improving when their budget ran out, from each
    run's plateau test (:func:`~lomix_core.studies.statistics.plateau_test`: the slope of validation Dice over
    its last third of epochs, with a 95 % interval). One test per run, uncorrected: a flag, not a verdict."""
    runs = comparison.runs
    readings = runs["plateau_reading"]
    steps = "/".join(str(s) for s in sorted(set(runs["steps"])))
    if (readings == "no validation curve").all():
        return (f"{label}: the runs validated on nothing (they train on their validation subjects), so no "
                f"plateau test says whether {steps} steps were enough.")
    untested = int((readings == "too few epochs").sum())
    improving = runs[readings == "still improving"]
    tested = len(runs) - untested
    skipped = f" ({untested} of {len(runs)} had under 3 epochs: untested)" if untested else ""
    if not tested:
        return f"{label}: every run had under 3 epochs, too few for a plateau test of its {steps} steps."
    if improving.empty:
        return (f"{label}: none of the {tested} tested runs was still improving after {steps} steps (for each, the "
                f"95 % interval of the slope of validation Dice over its last third of epochs reaches 0 or below)"
                f"{skipped}: no run shows that its budget was too short.")
    who = "; ".join(f"{variant} seed{'s' * (len(seeds) > 1)} {', '.join(str(s) for s in seeds)}"
                    for variant, seeds in improving.groupby(comparison.by, sort=False)["seed"].agg(list).items())
    return (f"{label}: {len(improving)} of {tested} tested runs were still improving after {steps} steps (the 95 % "
            f"interval of the slope of validation Dice over the last third of epochs lies above 0): {who}"
            f"{skipped}. A verdict on those runs holds for this budget only.")

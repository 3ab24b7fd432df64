"""The generated findings (lomix_core.teaching.findings): every direction they state is the verdict word
of the chapter's corrected p, and it flips when the table's sign flips."""
import re

import numpy as np
import pandas as pd
import pytest

from lomix_core import claims, findings
from lomix_core.studies.comparisons import Comparison, LowData
from lomix_core.studies.statistics import TestFamily

# The cpu run of docs/results.md on brain_aal, 3 seeds: LoMix minus each baseline per seed. last_layer is
# its own list (+0.123, p 0.020 uncorrected, Holm 0.059 over the table's 3 claims, Wilcoxon
# 0.25); the others are reconstructed to its means and p-values (0.58, 0.94, 0.59).
LOMIX = np.array([0.43, 0.41, 0.444, 0.40])  # the first three: mean 0.428, as there
README_BRAIN_AAL = {"last_layer": [0.099, 0.157, 0.113], "deep_supervision": [0.12, -0.06, 0.03],
                    "nnunet": [0.07, -0.06, -0.001], "mutation": [0.10, -0.05, 0.022]}
# Its phantom: LoMix behind every baseline, none significantly (p 0.12-0.27).
README_PHANTOM = {"last_layer": [-0.03, -0.24, -0.087], "deep_supervision": [-0.06, -0.18, -0.081],
                  "nnunet": [0.01, -0.17, -0.053], "mutation": [-0.06, -0.22, -0.104]}
OVERSTATING = re.compile(r"significant|better|beat|reproduc|grew", re.IGNORECASE)


def comparison(differences: dict[str, list[float]], method: str = "lomix", by: str = "preset") -> Comparison:
    """Runs where ``method`` scores LOMIX and each baseline LOMIX minus its per-seed ``differences``."""
    seeds = range(len(next(iter(differences.values()))))
    dice = {method: LOMIX[list(seeds)]} | {b: LOMIX[list(seeds)] - np.array(d) for b, d in differences.items()}
    rows = [{by: variant, "seed": s, "test_dice": float(v[s]), "test_hd95": 5.0, "test_hd95_mm": None,
             "supervised_maps": 1, "train_time_s": 1.0, "plateau_reading": "no rise shown"}
            for variant, v in dice.items() for s in seeds]
    return Comparison(results=pd.DataFrame(), runs=pd.DataFrame(rows), models={}, by=by)


def chapter_03(flip: bool = False) -> tuple[TestFamily, dict[str, Comparison]]:
    sign = -1 if flip else 1
    comparisons = {name: comparison({b: list(sign * np.array(d)) for b, d in table.items()})
                   for name, table in (("brain_aal", README_BRAIN_AAL), ("phantom", README_PHANTOM))}
    tests = TestFamily()
    for name, c in comparisons.items():
        c.register(tests, name)
    return tests, comparisons


def test_the_readme_case_is_not_called_significant_or_better_anywhere():
    tests, comparisons = chapter_03()
    assert len(tests) == 8
    row = tests.result("brain_aal", "lomix - last_layer")
    assert row["t_test_p"] == pytest.approx(0.020, abs=5e-4) and row["wilcoxon_p"] == pytest.approx(0.25)
    assert row["holm_p"] > 0.05
    for name, c in comparisons.items():
        text = findings.statement(c, name, tests, name)
        table = claims.paper_vs_run(c, tests=tests, scope=name)
        assert not OVERSTATING.search(text), text
        assert not table["verdict"].str.contains(OVERSTATING).any(), table["verdict"].tolist()
        assert "No difference shown between lomix and any baseline" in text
    text = findings.statement(comparisons["brain_aal"], "brain_aal", tests, "brain_aal")
    assert "p = 0.0196, both uncorrected; Holm p = " in text  # the uncorrected p stays, as a number
    # The same claims table alone (3 claims, as the README's was) gives Holm 0.059: still no word.
    alone = claims.paper_vs_run(comparisons["brain_aal"])
    assert alone.loc["LoMix beats last-layer supervision", "p (Holm)"] == pytest.approx(0.059, abs=5e-4)
    assert alone.loc["LoMix beats last-layer supervision", "verdict"].startswith("no difference shown")


def test_statement_and_claims_table_agree_and_flip_with_the_sign():
    clear = {"last_layer": [0.10, 0.09, 0.11, 0.10], "deep_supervision": [0.01, -0.02, 0.015, 0.0],
             "mutation": [-0.10, -0.11, -0.09, -0.10]}
    for flip in (False, True):
        sign = -1 if flip else 1
        c = comparison({b: list(sign * np.array(d)) for b, d in clear.items()})
        tests = TestFamily()
        c.register(tests, "x")
        text = findings.statement(c, "x", tests, "x")
        table = claims.paper_vs_run(c, tests=tests, scope="x")
        better, worse = ("mutation", "last_layer") if flip else ("last_layer", "mutation")
        assert f"lomix was better than {better} and worse than {worse}" in text
        assert "no difference shown against the others" in text
        assert f"- vs {better} " in text and text.split(f"- vs {better} ")[1].split("\n")[0].endswith(": better.")
        verdicts = table["verdict"].str.split(r"[:;,]").str[0]
        rows = {c.baseline: c.claim for c in claims.SUPERVISION_CLAIMS}
        assert verdicts[rows[better]] == "better" and verdicts[rows[worse]] == "worse"
        assert verdicts[rows["deep_supervision"]] == "no difference shown"


def test_statement_without_a_family_corrects_its_own_tests_and_says_so():
    noisy = comparison({"last_layer": [0.05, -0.05, 0.02]})
    text = findings.statement(noisy, "brain_aal")
    assert text.startswith("On brain_aal with 3 seeds, lomix scored 0.428 ± 0.017 test Dice. No difference shown")
    assert "Holm-corrected over these 1 paired test only" in text and "Wilcoxon p = " in text
    with pytest.raises(ValueError, match="needs the scope its tests were registered under"):
        findings.statement(noisy, "x", TestFamily())
    one_seed = findings.statement(comparison({"last_layer": [0.05]}), "y")
    assert "No paired test was possible (one seed, or the same difference on every seed): no verdict." in one_seed
    assert "no paired test to correct" not in one_seed
    ablation = findings.ablation_statement(comparison({"without add": [0.05]}, method="all", by="operators"), "z")
    assert "(no paired test to correct)" in ablation and ": no test: nothing to read." in ablation


def low_data(sizes: dict[int, list[float]], dice_shift: dict[int, float]) -> LowData:
    """A sweep where LoMix minus last layer is ``sizes[n]`` per seed, every run shifted by ``dice_shift[n]``."""
    def shifted(n):
        c = comparison({"last_layer": sizes[n], "nnunet": [0.0] * len(sizes[n])})
        c.runs["test_dice"] += dice_shift[n]
        return c
    return LowData({n: shifted(n) for n in sizes}, {n: 8 * n for n in sizes})


def test_low_data_statement_calls_a_loss_a_loss_and_flips_with_the_sign():
    small, large = [0.10, 0.08, 0.12, 0.09], [0.01, 0.02, 0.0, 0.01]
    for flip in (False, True):
        sign = -1 if flip else 1
        low = low_data({1: list(sign * np.array(small)), 12: list(sign * np.array(large))}, {1: -0.2, 12: 0.0})
        tests = TestFamily()
        low.register(tests)
        text = findings.low_data_statement(low, "the phantom", tests)
        dice = low.runs.groupby("train_subjects")["test_dice"].mean()
        assert (f"Less data cost Dice: the mean test Dice over the presets with 12 subjects minus with 1, per seed: "
                f"{dice[12] - dice[1]:+.3f} (95 % CI ") in text
        assert "so the sweep can test the paper's claim." in text
        word = "worse" if flip else "better"
        assert f"lomix was {word} than last_layer with 1 subject(s)" in text
        assert f"(the gain {'shrank' if flip else 'grew'})." in text
        if flip:
            assert "better" not in text and "grew" not in text


def test_low_data_statement_says_untestable_when_less_data_does_not_cost_dice():
    low = low_data({1: [0.10, 0.08, 0.12, 0.09], 12: [0.01, 0.02, 0.0, 0.01]}, {1: +0.04, 12: 0.0})
    text = findings.low_data_statement(low, "the phantom")
    dice = low.runs.groupby("train_subjects")["test_dice"].mean()
    assert f"Less data cost no Dice beyond seed noise: the mean test Dice over the presets with 12 subjects minus with " \
           f"1, per seed: {dice[12] - dice[1]:+.3f} (95 % CI" in text and dice[12] < dice[1]
    assert "cannot test the paper's low-data claim" in text
    # a small cost within seed noise (the cpu run's phantom: 0.008) cannot test it either
    noisy = low_data({1: [0.10, 0.08, 0.12, 0.09], 12: [0.01, 0.02, 0.0, 0.01]}, {1: 0.0, 12: 0.0})
    noisy.comparisons[12].runs["test_dice"] += [0.05, -0.04, 0.03, -0.02, 0.05, -0.04, 0.03, -0.02, 0.05, -0.04,
                                                0.03, -0.02][:len(noisy.comparisons[12].runs)]
    text = findings.low_data_statement(noisy, "the phantom")
    assert "no Dice beyond seed noise" in text and "cannot test the paper's low-data claim" in text
    one = findings.low_data_statement(low_data({3: [0.01, 0.02, 0.03]}, {3: 0.0}), "x")
    assert "One training-set size only" in one


def test_the_ablation_reading_follows_the_sign_of_its_table():
    """Chapter 05's table is all minus each variant: a positive 'without X' means X helped."""
    table = {"without add": [0.22, 0.20, 0.24, 0.21], "only mul": [0.38, 0.36, 0.40, 0.37],
             "without wf": [0.05, -0.04, 0.02, -0.01]}
    for flip in (False, True):
        sign = -1 if flip else 1
        operators = comparison({v: list(sign * np.array(d)) for v, d in table.items()}, method="all", by="operators")
        tests = TestFamily()
        operators.register(tests, "operators", "all")
        text = findings.ablation_statement(operators, "the phantom", tests, "operators")
        assert "a positive difference means all scored higher" in text
        if flip:
            assert "leaving add out raised Dice: add hurt." in text and "mul alone beat all." in text
            assert "add helped" not in text
        else:
            assert "leaving add out cost Dice: add helped." in text and "mul alone fell short of all." in text
            assert "add hurt" not in text
        assert "no difference shown, so no effect of wf shown." in text


def test_the_plateau_statement_names_the_runs_still_improving():
    c = comparison(README_BRAIN_AAL)
    c.runs["steps"] = 1950
    assert "none of the 15 tested runs was still improving after 1950 steps" in findings.plateau_statement(c, "x")
    c.runs.loc[(c.runs["preset"] == "lomix") & c.runs["seed"].isin([0, 2]), "plateau_reading"] = "still improving"
    c.runs.loc[c.runs["preset"] == "nnunet", "plateau_reading"] = "too few epochs"
    text = findings.plateau_statement(c, "brain_aal")
    assert text.startswith("brain_aal: 2 of 12 tested runs were still improving after 1950 steps")
    assert "lomix seeds 0, 2" in text and "(3 of 15 had under 3 epochs: untested)" in text
    c.runs["plateau_reading"] = "no validation curve"
    assert "validated on nothing" in findings.plateau_statement(c, "full")


def test_statement_names_what_the_runs_pair_by():
    c = comparison(README_BRAIN_AAL)
    assert " with 3 seeds, lomix scored " in findings.statement(c, "brain_aal")
    assert " with 3 replicates, lomix scored " in findings.statement(c, "brain_aal", unit="replicate")

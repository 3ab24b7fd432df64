"""Comparisons: many runs of one base config, each variant with each seed under one budget,
gathered into tidy tables (:class:`Comparison`), and the low-data sweep, one comparison per
training-set size (:class:`LowData`).

A variant is a name for a set of config overrides: a supervision preset (chapter 03), an operator
subset or a weighting (chapter 05). Runs with the same seed share data order and initial network,
so variants are compared seed by seed (:meth:`Comparison.paired_differences`), and a chapter
registers those tests in one :class:`~lomix_core.studies.statistics.TestFamily`
(:meth:`Comparison.register`).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import pandas as pd

from .. import data
from ..fusion import OPERATORS
from .runs import run_many
from .statistics import TestFamily, paired_test, plateau_test
from ..supervision import WEIGHTINGS
from ..pipeline.config import epoch_steps
from ..pipeline.training import Run, TrainConfig, training_data


# How far into a run learning_curves reads validation Dice: an eighth, a quarter, half and all of its steps.
CURVE_FRACTIONS = (1 / 8, 1 / 4, 1 / 2, 1.0)


@dataclass
class Comparison:
    """Results of training every variant of one base config with every seed under one budget.

    A variant is a name for a set of config overrides: a supervision preset (``by="preset"``), an
    operator subset or a weighting (chapter 05).
    """

    # tidy test results at native resolution: <by>, seed, volume, class_name, dice, hd95 (voxels), hd95_mm, gt_present
    results: pd.DataFrame
    runs: pd.DataFrame  # one row per run: <by>, seed, test/val Dice, train time, maps, plateau test
    models: dict[tuple[str, int], Run]
    by: str = "preset"

    @classmethod
    def from_runs(cls, runs: Mapping[tuple[str, int], Run], by: str = "preset") -> "Comparison":
        results, rows = [], []
        for (variant, seed), run in runs.items():
            results.append(run.test.assign(**{by: variant, "seed": seed}))
            metrics = run.record["metrics"]
            rows.append({by: variant, "seed": seed, "test_dice": metrics["test_dice"],
                         "test_hd95": metrics["test_hd95"], "test_hd95_mm": metrics.get("test_hd95_mm"),
                         "val_dice": metrics["val_dice"], "best_epoch": metrics["best_epoch"], "epochs": run.config.epochs,
                         "test_dice_if_selected_on_test": metrics["test_dice_if_selected_on_test"],
                         "train_time_s": metrics["train_time_s"], "steps": metrics["steps"],
                         "supervised_maps": metrics["num_supervised_maps"],
                         **{f"plateau_{k}": v for k, v in plateau_test(run.epochs["val_dice"]).items()}})
        results = pd.concat(results, ignore_index=True)[[by, "seed", "volume", "class_name", "dice", "hd95",
                                                           "hd95_mm", "gt_present"]]
        return cls(results, pd.DataFrame(rows), dict(runs), by)

    def summary(self) -> pd.DataFrame:
        """Mean ± std over seeds of each run's mean test Dice and HD95 (``test_hd95_*`` in voxels,
        ``test_hd95_mm_*`` in mm, NaN where the data state no spacing), one row per variant."""
        grouped = self.runs.groupby(self.by, sort=False)
        return pd.DataFrame({
            "test_dice_mean": grouped["test_dice"].mean(), "test_dice_std": grouped["test_dice"].std(),
            "test_hd95_mean": grouped["test_hd95"].mean(), "test_hd95_std": grouped["test_hd95"].std(),
            "test_hd95_mm_mean": grouped["test_hd95_mm"].mean(), "test_hd95_mm_std": grouped["test_hd95_mm"].std(),
            "seeds": grouped["seed"].count(), "supervised_maps": grouped["supervised_maps"].first(),
            "train_time_s": grouped["train_time_s"].mean(),
        })

    def paired_differences(self, method: str = "lomix", metric: str = "test_dice") -> pd.DataFrame:
        """``method`` minus each other variant, per seed. Runs with the same seed share data order
        and initial network, so the per-seed difference removes most of the seed-to-seed noise."""
        by_seed = self.runs.pivot(index="seed", columns=self.by, values=metric)
        return by_seed.drop(columns=method).rsub(by_seed[method], axis=0)

    def paired_tests(self, method: str = "lomix", metric: str = "test_dice") -> pd.DataFrame:
        """Per baseline: the mean paired difference (``method`` minus baseline) with its 95 % t
        interval, the paired t-test's p-value and the exact Wilcoxon signed-rank p-value.

        With n seeds the Wilcoxon test cannot go below 2/2^n (0.25 for 3 seeds): few seeds can
        show a consistent sign, never significance. Fewer than 2 seeds give NaN.
        """
        table = pd.DataFrame.from_dict({baseline: paired_test(d) for baseline, d in
                                        self.paired_differences(method, metric).items()}, orient="index")
        table.index.name = f"{method} minus"
        return table

    def register(self, tests: TestFamily, scope: str, method: str = "lomix", metric: str = "test_dice") -> None:
        """Register ``method`` minus every other variant, paired by seed, in the chapter's ``tests``
        as ``(scope, "<method> - <variant>")``."""
        for baseline, d in self.paired_differences(method, metric).items():
            tests.add(scope, paired_name(method, baseline), d)

    def selection_bias(self) -> pd.DataFrame:
        """Per variant, mean over seeds: the test Dice of the epoch chosen on validation, the test
        Dice of the epoch that is best *on test* (the official protocol), and the optimism of the
        latter. Needs runs trained with ``track_test=True``."""
        if self.runs["test_dice_if_selected_on_test"].isna().any():
            raise ValueError("selection_bias needs runs trained with TrainConfig(track_test=True)")
        grouped = self.runs.groupby(self.by, sort=False)
        table = pd.DataFrame({"selected_on_validation": grouped["test_dice"].mean(),
                              "selected_on_test": grouped["test_dice_if_selected_on_test"].mean()})
        table["optimism"] = table["selected_on_test"] - table["selected_on_validation"]
        return table

    def per_class(self, metric: str = "dice") -> pd.DataFrame:
        """Mean test ``metric`` ("dice" or "hd95") per variant (rows) and class (columns), over seeds
        and the volumes whose ground truth holds the class."""
        present = self.results[self.results["gt_present"]]
        return present.pivot_table(index=self.by, columns="class_name", values=metric, aggfunc="mean", sort=False)

    def per_class_summary(self, metric: str = "dice") -> pd.DataFrame:
        """``mean ± std`` over seeds of each run's per-class test ``metric``: variants × classes, as text."""
        present = self.results[self.results["gt_present"]]
        per_run = present.groupby([self.by, "seed", "class_name"], sort=False)[metric].mean()
        stats = per_run.groupby([self.by, "class_name"], sort=False).agg(["mean", "std"])
        digits = 3 if metric == "dice" else 2
        text = stats.apply(lambda r: f"{r['mean']:.{digits}f} ± {r['std']:.{digits}f}", axis=1)
        return text.unstack("class_name")[list(dict.fromkeys(present["class_name"]))].loc[list(dict.fromkeys(self.runs[self.by]))]


    def learning_curves(self, seed: int, fractions: Sequence[float] = CURVE_FRACTIONS) -> pd.DataFrame:
        """Validation Dice of each variant's run with ``seed`` after ``fractions`` of its steps, from
        :func:`dice_at_steps`: one column per step count reached (fractions that land in the same
        epoch share one)."""
        rows = {}
        for (variant, run_seed), run in self.models.items():
            if run_seed == seed:
                total = int(run.history["step"].max())
                at = dice_at_steps(run, [max(1, math.ceil(f * total)) for f in fractions])
                rows[variant] = at.drop_duplicates("steps").set_index("steps")["val_dice"]
        if not rows:
            raise ValueError(f"no run with seed {seed}; the comparison's seeds are {sorted(set(self.runs['seed']))}")
        table = pd.DataFrame(rows).T
        table.columns = [f"{s} steps" for s in table.columns]
        table.index.name = self.by
        return table


def dice_at_steps(run: Run, steps: Sequence[int]) -> pd.DataFrame:
    """Validation Dice of ``run`` after each of ``steps`` optimiser steps, from its records: a run
    validates at the end of every epoch, so each step count reads the first epoch ending at or after
    it (``steps`` in the result: where that epoch ended). Steps past the run's end are an error."""
    ends = run.history.groupby("epoch")["step"].max()  # the step count at each epoch's end
    if any(s < 1 or s > ends.max() for s in steps):
        raise ValueError(f"steps must lie in [1, {ends.max()}] (the run's steps), got {list(steps)}")
    epochs = run.epochs.set_index("epoch")["val_dice"]
    rows = []
    for asked in steps:
        epoch = int(ends.index[ends >= asked][0])
        rows.append({"asked": asked, "epoch": epoch, "steps": int(ends[epoch]), "val_dice": float(epochs[epoch])})
    return pd.DataFrame(rows)


def paired_name(method: str, baseline: str) -> str:
    """How a chapter's :class:`~lomix_core.studies.statistics.TestFamily` names ``method`` minus ``baseline``."""
    return f"{method} - {baseline}"


def weight_drift(history: pd.DataFrame) -> dict[str, float]:
    """How the map weights moved over a run (from ``run.history``): their mean at the first and
    last step, and the smallest and largest weight at the end."""
    weights = history.filter(like="w:")
    return {"mean_first_step": float(weights.iloc[0].mean()), "mean_last_step": float(weights.iloc[-1].mean()),
            "min_last_step": float(weights.iloc[-1].min()), "max_last_step": float(weights.iloc[-1].max()),
            "steps": len(weights)}


def compare(base: TrainConfig, variants: Mapping[str, Mapping[str, Any]], seeds: Sequence[int],
            by: str = "variant", jobs: int | None = None) -> Comparison:
    """Train ``base`` with each variant's overrides and each seed: same data, budget and initial network."""
    keys = [(name, seed) for name in variants for seed in seeds]
    configs = comparison_configs(base, variants, seeds)
    return Comparison.from_runs(dict(zip(keys, run_many(configs, jobs))), by=by)


def comparison_configs(base: TrainConfig, variants: Mapping[str, Mapping[str, Any]],
                       seeds: Sequence[int]) -> list[TrainConfig]:
    """The runs :func:`compare` trains, variant by variant and seed by seed (for planning, e.g.
    :func:`lomix_core.studies.runtime.estimate`)."""
    return [dataclasses.replace(base, **variants[name], seed=seed, run_name=None) for name in variants for seed in seeds]


def preset_variants(presets: Sequence[str]) -> dict[str, dict[str, Any]]:
    """One variant per supervision preset, named after it."""
    return {preset: {"supervision": preset} for preset in presets}


def compare_supervision(base: TrainConfig, presets: Sequence[str], seeds: Sequence[int],
                        jobs: int | None = None) -> Comparison:
    """Train ``base`` once per preset and seed: same data, same budget, same initial network."""
    return compare(base, preset_variants(presets), seeds, by="preset", jobs=jobs)


def operator_variants(operators: Sequence[str] = OPERATORS) -> dict[str, dict[str, Any]]:
    """LoMix with all operators (the paper), each operator alone, and each one left out."""
    variants: dict[str, dict[str, Any]] = {"all": {}}
    variants |= {f"only {op}": {"operators": [op]} for op in operators}
    variants |= {f"without {op}": {"operators": [o for o in operators if o != op]} for op in operators}
    return variants


def weighting_variants(weightings: Sequence[str] = WEIGHTINGS) -> dict[str, dict[str, Any]]:
    """LoMix under each map weighting; the paper's softplus is the preset's default (no override),
    so its runs are the same runs as chapter 03's."""
    return {w: {} if w == "softplus" else {"weighting": w} for w in weightings}


DATA_FRACTIONS = (0.05, 0.10, 0.25, 0.50, 1.0)


def subset_sizes(num_subjects: int, fractions: Sequence[float] = DATA_FRACTIONS,
                 counts: Sequence[int] = (1, 2)) -> pd.DataFrame:
    """How many whole training subjects each low-data setting keeps: ``counts`` subjects, and each
    fraction rounded up (a subject is never split). Settings that land on the same count share runs."""
    rows = [{"setting": f"{n} subject{'s' * (n > 1)}", "train_subjects": n} for n in counts if n <= num_subjects]
    rows += [{"setting": f"{f:.0%}", "train_subjects": max(1, math.ceil(round(f * num_subjects, 9)))}
             for f in fractions]
    return pd.DataFrame(rows)


@dataclass
class LowData:
    """One :class:`Comparison` of the presets per training-set size (in whole subjects)."""

    comparisons: dict[int, Comparison]
    train_slices: dict[int, int]

    @property
    def runs(self) -> pd.DataFrame:
        return pd.concat([c.runs.assign(train_subjects=n, train_slices=self.train_slices[n])
                          for n, c in self.comparisons.items()], ignore_index=True)

    def curve(self, metric: str = "test_dice") -> pd.DataFrame:
        """Per size and preset: mean, std and 95 % t interval of ``metric`` over seeds."""
        from scipy import stats

        grouped = self.runs.groupby(["train_subjects", "preset"], sort=False)[metric]
        table = grouped.agg(["mean", "std", "count"]).reset_index()
        t = table["count"].map(lambda n: stats.t.ppf(0.975, n - 1) if n > 1 else float("nan"))
        half_width = t * table["std"] / table["count"] ** 0.5
        return table.assign(ci95_low=table["mean"] - half_width, ci95_high=table["mean"] + half_width)

    def gains(self, method: str = "lomix", metric: str = "test_dice") -> pd.DataFrame:
        """Per size and baseline: ``method`` minus baseline, paired by seed (:func:`paired_test`)."""
        frames = [c.paired_tests(method, metric).reset_index().rename(columns={f"{method} minus": "baseline"})
                  .assign(train_subjects=n, train_slices=self.train_slices[n]) for n, c in self.comparisons.items()]
        return pd.concat(frames, ignore_index=True)

    def gain_growth(self, method: str = "lomix", baseline: str = "last_layer", metric: str = "test_dice") -> pd.Series:
        """Per seed: ``method``'s gain over ``baseline`` with the fewest subjects minus its gain with the
        most (the paper's "the gain grows when labels are scarce", as a paired difference)."""
        smallest, largest = min(self.comparisons), max(self.comparisons)
        gain = {n: self.comparisons[n].paired_differences(method, metric)[baseline] for n in (smallest, largest)}
        return gain[smallest] - gain[largest]

    def register(self, tests: TestFamily, method: str = "lomix", growth_baseline: str = "last_layer",
                 metric: str = "test_dice") -> None:
        """Register in the chapter's ``tests`` every paired gain (scope ``"<n> subjects"``) and, with two
        sizes or more, the growth of the gain over ``growth_baseline`` (scope :func:`growth_scope`)."""
        for n, comparison in self.comparisons.items():
            comparison.register(tests, size_scope(n), method, metric)
        if len(self.comparisons) > 1:
            tests.add(growth_scope(self), paired_name(method, growth_baseline),
                      self.gain_growth(method, growth_baseline, metric))


def size_scope(subjects: int) -> str:
    """The scope of a low-data sweep's tests at one training-set size."""
    return f"{subjects} subject{'s' * (subjects > 1)}"


def growth_scope(low: LowData) -> str:
    """The scope of the growth test: the fewest against the most training subjects."""
    return f"gain growth, {min(low.comparisons)} vs {max(low.comparisons)} subjects"


def low_data(base: TrainConfig, presets: Sequence[str], subject_counts: Sequence[int], seeds: Sequence[int],
             jobs: int | None = None, same_steps: bool = True) -> LowData:
    """Train every preset on ``subject_counts`` whole training subjects, with every seed.

    With ``same_steps`` (the kit's choice) every run makes the same number of optimiser steps as a
    run on the full training set (the subsets set ``steps_per_epoch``), so that a difference comes
    from the data, not from training length. Without it a subset's epoch is one pass over the
    subset, as the official trainer's would be: 300 epochs of a loader that small make about
    ``full / subset`` times fewer steps. The full-set runs are ``base`` itself, shared with
    :func:`compare_supervision`. The subset of each size is the loader's (its ``split_seed``), the
    same for every seed and preset.
    """
    configs = low_data_configs(base, presets, subject_counts, seeds, same_steps)  # checks subject_counts
    counts = sorted(set(subject_counts))
    keys = [(n, preset, seed) for n in counts for preset in presets for seed in seeds]
    runs = dict(zip(keys, run_many(configs, jobs)))
    slices = {n: runs[n, presets[0], seeds[0]].record["data"]["train_slices"] for n in counts}
    comparisons = {n: Comparison.from_runs({(p, s): runs[n, p, s] for p in presets for s in seeds})
                   for n in counts}
    return LowData(comparisons, slices)


def low_data_configs(base: TrainConfig, presets: Sequence[str], subject_counts: Sequence[int],
                     seeds: Sequence[int], same_steps: bool = True) -> list[TrainConfig]:
    """The runs :func:`low_data` trains: per subject count (ascending), preset and seed. Loads the
    training split to count its subjects and, with ``same_steps``, the set a full run trains on
    (:func:`~lomix_core.pipeline.training.training_data`) to give every subset its epoch's steps."""
    num_subjects = len(data.load(base.dataset, split="train", **base.data_kwargs).subject_slices())
    steps = epoch_steps(base, len(training_data(base)[0])) if same_steps else None
    counts = sorted(set(subject_counts))
    if not counts or counts[0] < 1 or counts[-1] > num_subjects:
        raise ValueError(f"subject_counts must lie in [1, {num_subjects}] (the training subjects of "
                         f"{base.dataset!r}), got {list(subject_counts)}")
    configs = []
    for n in counts:
        config = base if n == num_subjects else dataclasses.replace(
            base, data_kwargs={**base.data_kwargs, "num_train_subjects": n}, steps_per_epoch=steps)
        configs += [dataclasses.replace(config, supervision=preset, seed=seed, run_name=None)
                    for preset in presets for seed in seeds]
    return configs

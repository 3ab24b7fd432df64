"""Experiments: many runs of one base config, each trained once, gathered into tidy tables.

Every run trains in a folder named after its config and a digest of the kit's source code
(:func:`keyed`). A finished run is read back instead of retrained, an interrupted one resumes,
and the notebooks share runs: chapter 03's runs are chapter 04's 100 % point and chapter 05's
reference, and chapter 06 reads 03's LoMix models. Changing the kit's code changes the digest,
so a stale result is never reused.

On a CPU several runs train at once, one process and one thread each (``jobs``): small networks
keep two threads only partly busy, so two single-threaded runs on two cores finish sooner than
the same runs one after the other.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from . import data, executors
from .fusion import OPERATORS
from .supervision import WEIGHTINGS
from .executors import default_jobs, is_finished  # noqa: F401  (part of this module's interface)
from .training import RESUMABLE_CHANGES, Run, TrainConfig, encoder_weights, load_run


@functools.lru_cache(maxsize=1)
def source_digest() -> str:
    """A digest of every Python file of the kit: results trained by other code are not reused."""
    digest = hashlib.sha1()
    package = Path(__file__).parent
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def run_key(config: TrainConfig) -> str:
    """Ten hex digits that identify what a run computes: its config (less where it is written and
    whether it shows progress), the ImageNet weights a pretrained encoder starts from (a file by its
    sha256) and the kit's source."""
    settings = {k: v for k, v in dataclasses.asdict(config).items() if k not in (*RESUMABLE_CHANGES, "run_name")}
    if (weights := encoder_weights(config)) is not None:  # $LOMIX_WEIGHTS is not in the config
        settings["encoder_weights"] = weights
    text = json.dumps(settings, sort_keys=True, default=str) + source_digest()
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def keyed(config: TrainConfig) -> TrainConfig:
    """``config`` with a run name that ends in its :func:`run_key`."""
    return dataclasses.replace(config, run_name=f"{config.name}-{run_key(config)}")


def run_many(configs: Sequence[TrainConfig], jobs: int | None = None, executor: str | None = None,
             retries: int = 2, **options) -> list[Run]:
    """Train every config that has not finished yet and read every run back.

    Returns the runs in the order of ``configs``; repeated configs are trained once. ``executor``
    ("local", "submitit", "ray"; default ``$LOMIX_EXECUTOR``, else local) says where they train,
    ``jobs`` how many at once on the local one, ``options`` go to the engine
    (:mod:`lomix_core.executors`). A failed run is tried ``retries`` more times, resuming where it
    stopped; the others go on, and :class:`~lomix_core.executors.SweepError` then names every run that
    still failed. With the local executor and more than one job the runs train in spawned processes,
    so a script (not a notebook) that calls this needs Python's ``if __name__ == "__main__":`` guard.
    """
    configs = [keyed(c) for c in configs]
    todo = list({c.name: c for c in configs if not is_finished(c)}.values())
    if todo:
        print(f"training {len(todo)} of {len(configs)} runs ({len(configs) - len(todo)} read back) "
              f"with the {executors.resolve(executor)} executor", flush=True)
        failures = executors.run(todo, executor, jobs, retries, **options)
        if failures:
            raise executors.SweepError(f"{len(failures)} of {len(todo)} runs failed: "
                                       + "; ".join(f"{name}: {error}" for name, error in failures.items()))
    return [load_run(Path(c.out_dir) / c.name) for c in configs]


@dataclass
class Comparison:
    """Results of training every variant of one base config with every seed under one budget.

    A variant is a name for a set of config overrides: a supervision preset (``by="preset"``), an
    operator subset or a weighting (chapter 05).
    """

    # tidy test results at native resolution: <by>, seed, volume, class_name, dice, hd95 (voxels), hd95_mm, gt_present
    results: pd.DataFrame
    runs: pd.DataFrame  # one row per run: <by>, seed, test/val Dice, train time, maps
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
                         "supervised_maps": metrics["num_supervised_maps"]})
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

    def verdict(self, method: str = "lomix") -> dict[str, str]:
        """A plain-language reading of the paired differences, for as many seeds as were run."""
        verdicts = {}
        for baseline, d in self.paired_differences(method).items():
            if len(d) < 2:
                consistency = "one seed only: no claim can be made"
            elif (d > 0).all() or (d < 0).all():
                consistency = f"same sign on all {len(d)} seeds"
            else:
                consistency = f"sign changes across {len(d)} seeds: no consistent difference"
            verdicts[f"{method} - {baseline}"] = (f"{d.mean():+.4f} mean Dice (paired sd {d.std():.4f}); "
                                                   f"{consistency}")
        return verdicts

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


def paired_test(differences: pd.Series) -> dict[str, float]:
    """Mean of paired differences with its 95 % t interval, the t-test and exact Wilcoxon p-values."""
    from scipy import stats

    d, nan = differences.dropna(), float("nan")
    n, mean = len(d), float(d.mean()) if len(d) else nan
    if n < 2:
        return dict(seeds=n, mean_difference=mean, ci95_low=nan, ci95_high=nan, t_test_p=nan, wilcoxon_p=nan)
    half_width = stats.t.ppf(0.975, n - 1) * d.std() / n ** 0.5
    constant = bool((d == d.iloc[0]).all())  # the tests are undefined without any spread
    return dict(seeds=n, mean_difference=mean, ci95_low=mean - half_width, ci95_high=mean + half_width,
                t_test_p=nan if constant else float(stats.ttest_1samp(d, 0.0).pvalue),  # = paired t-test
                wilcoxon_p=nan if (d == 0).all() else float(stats.wilcoxon(d, method="exact").pvalue))


def statement(comparison: Comparison, label: str, method: str = "lomix", alpha: float = 0.05) -> str:
    """A plain-language answer to "did ``method`` beat the baselines?", with mean ± sd, the paired
    differences, their intervals and p-values, whatever the answer is."""
    summary, tests = comparison.summary(), comparison.paired_tests(method)
    own = summary.loc[method]
    seeds = f"{own.seeds:.0f} seed" + ("" if own.seeds == 1 else "s")
    lines = [f"On {label} with {seeds}, {method} scored {own.test_dice_mean:.3f} ± {own.test_dice_std:.3f} "
             f"test Dice."]
    significant_wins, significant_losses = [], []
    for baseline, t in tests.iterrows():
        row = summary.loc[baseline]
        significant = t.t_test_p < alpha
        reading = ("significant" if significant else "not significant") + f" at {alpha}"
        if significant:
            (significant_wins if t.mean_difference > 0 else significant_losses).append(baseline)
        lines.append(f"- vs {baseline} ({row.test_dice_mean:.3f} ± {row.test_dice_std:.3f}): "
                     f"{t.mean_difference:+.3f} (95 % CI {t.ci95_low:+.3f} to {t.ci95_high:+.3f}; paired t-test "
                     f"p = {t.t_test_p:.3g}, Wilcoxon p = {t.wilcoxon_p:.3g}): {reading}.")
    if len(significant_wins) == len(tests):
        verdict = f"{method} beat every baseline significantly."
    elif significant_wins or significant_losses:
        verdict = (f"{method} beat {', '.join(significant_wins) or 'no baseline'} significantly"
                   f"{' and lost significantly to ' + ', '.join(significant_losses) if significant_losses else ''}; "
                   f"the other differences are within seed noise.")
    else:
        verdict = f"{method} did not beat any baseline significantly: every difference is within seed noise."
    return "\n".join([lines[0] + " " + verdict, *lines[1:]])


def low_data_statement(low: LowData, label: str, method: str = "lomix", alpha: float = 0.05) -> str:
    """Does ``method``'s gain over each baseline grow as the training set shrinks (the paper's
    claim)? The gain at the smallest and the largest size, with intervals and p-values."""
    gains = low.gains(method)
    smallest, largest = gains["train_subjects"].min(), gains["train_subjects"].max()
    lines, grows = [], []
    for baseline, rows in gains.groupby("baseline", sort=False):
        small, large = (rows[rows["train_subjects"] == n].iloc[0] for n in (smallest, largest))
        grows.append(small.mean_difference > large.mean_difference)
        lines.append(f"- vs {baseline}: {small.mean_difference:+.3f} with {smallest} subject(s) "
                     f"(95 % CI {small.ci95_low:+.3f} to {small.ci95_high:+.3f}, t p = {small.t_test_p:.3g}) against "
                     f"{large.mean_difference:+.3f} with {largest} (CI {large.ci95_low:+.3f} to {large.ci95_high:+.3f}, "
                     f"p = {large.t_test_p:.3g}).")
    significant_small = int((gains[gains["train_subjects"] == smallest]["t_test_p"] < alpha).sum())
    # Unless less data costs Dice, the sweep is limited by its training budget, not by data, and
    # cannot test the claim: say so first.
    dice = low.runs.groupby("train_subjects")["test_dice"].mean()
    head = (f"Low data on {label}: mean test Dice over all presets was {dice[smallest]:.3f} with {smallest} "
            f"subject(s) and {dice[largest]:.3f} with {largest}. {method}'s mean gain is larger with {smallest} "
            f"subject(s) than with {largest} for {sum(grows)} of {len(grows)} baselines, and significant "
            f"(p < {alpha}) at the smallest size for {significant_small} of them.")
    return "\n".join([head, *lines])


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
    :func:`lomix_core.runtime.estimate`)."""
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


def low_data(base: TrainConfig, presets: Sequence[str], subject_counts: Sequence[int], seeds: Sequence[int],
             jobs: int | None = None) -> LowData:
    """Train every preset on ``subject_counts`` whole training subjects, with every seed.

    Every run makes the same number of optimiser steps as a run on the full training set (the
    subsets set ``steps_per_epoch``), so that a difference comes from the data, not from training
    length. The full-set runs are ``base`` itself, shared with :func:`compare_supervision`. The
    subset of each size is the loader's (its ``split_seed``), the same for every seed and preset.
    """
    configs = low_data_configs(base, presets, subject_counts, seeds)  # checks subject_counts
    counts = sorted(set(subject_counts))
    keys = [(n, preset, seed) for n in counts for preset in presets for seed in seeds]
    runs = dict(zip(keys, run_many(configs, jobs)))
    slices = {n: runs[n, presets[0], seeds[0]].record["data"]["train_slices"] for n in counts}
    comparisons = {n: Comparison.from_runs({(p, s): runs[n, p, s] for p in presets for s in seeds})
                   for n in counts}
    return LowData(comparisons, slices)


def low_data_configs(base: TrainConfig, presets: Sequence[str], subject_counts: Sequence[int],
                     seeds: Sequence[int]) -> list[TrainConfig]:
    """The runs :func:`low_data` trains: per subject count (ascending), preset and seed. Loads the
    training split once to count its subjects and the full set's steps per epoch."""
    full = data.load(base.dataset, split="train", **base.data_kwargs)
    num_subjects = len(full.subject_slices())
    # What one full-set epoch makes: fit drops the last batch, unless the profile fixes the epoch's
    # length (full on Synapse: the paper's 369 steps).
    steps = base.steps_per_epoch or max(1, len(full) // base.batch_size)
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

"""Experiments that train several runs and gather their results into tidy tables."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import pandas as pd

from .train import Run, TrainConfig, train


@dataclass
class Comparison:
    """Results of training every preset with every seed under one budget."""

    results: pd.DataFrame  # tidy test results: preset, seed, volume, class_name, dice, hd95, gt_present
    runs: pd.DataFrame  # one row per run: preset, seed, test/val Dice, train time, maps
    models: dict[tuple[str, int], Run]

    def summary(self) -> pd.DataFrame:
        """Mean ± std over seeds of each run's mean test Dice and HD95, one row per preset."""
        grouped = self.runs.groupby("preset", sort=False)
        return pd.DataFrame({
            "test_dice_mean": grouped["test_dice"].mean(), "test_dice_std": grouped["test_dice"].std(),
            "test_hd95_mean": grouped["test_hd95"].mean(), "test_hd95_std": grouped["test_hd95"].std(),
            "seeds": grouped["seed"].count(), "supervised_maps": grouped["supervised_maps"].first(),
            "train_time_s": grouped["train_time_s"].mean(),
        })

    def paired_differences(self, method: str = "lomix", metric: str = "test_dice") -> pd.DataFrame:
        """``method`` minus each other preset, per seed. Runs with the same seed share data order
        and initial network, so the per-seed difference removes most of the seed-to-seed noise."""
        by_seed = self.runs.pivot(index="seed", columns="preset", values=metric)
        return by_seed.drop(columns=method).rsub(by_seed[method], axis=0)

    def paired_tests(self, method: str = "lomix", metric: str = "test_dice") -> pd.DataFrame:
        """Per baseline: the mean paired difference (``method`` minus baseline) with its 95 % t
        interval, the paired t-test's p-value and the exact Wilcoxon signed-rank p-value.

        With n seeds the Wilcoxon test cannot go below 2/2^n (0.25 for 3 seeds): few seeds can
        show a consistent sign, never significance. Fewer than 2 seeds give NaN.
        """
        from scipy import stats

        rows = {}
        for baseline, d in self.paired_differences(method, metric).items():
            n, mean = len(d), d.mean()
            if n < 2:
                rows[baseline] = dict(seeds=n, mean_difference=mean, ci95_low=float("nan"), ci95_high=float("nan"),
                                      t_test_p=float("nan"), wilcoxon_p=float("nan"))
                continue
            half_width = stats.t.ppf(0.975, n - 1) * d.std() / n ** 0.5
            constant = bool((d == d.iloc[0]).all())  # the tests are undefined without any spread
            rows[baseline] = dict(
                seeds=n, mean_difference=mean, ci95_low=mean - half_width, ci95_high=mean + half_width,
                t_test_p=float("nan") if constant else float(stats.ttest_1samp(d, 0.0).pvalue),  # = paired t-test
                wilcoxon_p=float("nan") if (d == 0).all() else float(stats.wilcoxon(d, method="exact").pvalue))
        table = pd.DataFrame.from_dict(rows, orient="index")
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
        """Per preset, mean over seeds: the test Dice of the epoch chosen on validation, the test
        Dice of the epoch that is best *on test* (the official protocol), and the optimism of the
        latter. Needs runs trained with ``track_test=True``."""
        if self.runs["test_dice_if_selected_on_test"].isna().any():
            raise ValueError("selection_bias needs runs trained with TrainConfig(track_test=True)")
        grouped = self.runs.groupby("preset", sort=False)
        table = pd.DataFrame({"selected_on_validation": grouped["test_dice"].mean(),
                              "selected_on_test": grouped["test_dice_if_selected_on_test"].mean()})
        table["optimism"] = table["selected_on_test"] - table["selected_on_validation"]
        return table

    def per_class(self, metric: str = "dice") -> pd.DataFrame:
        """Mean test ``metric`` ("dice" or "hd95") per preset (rows) and class (columns), over seeds
        and the volumes whose ground truth holds the class."""
        present = self.results[self.results["gt_present"]]
        return present.pivot_table(index="preset", columns="class_name", values=metric, aggfunc="mean", sort=False)


def compare_supervision(base: TrainConfig, presets: Sequence[str], seeds: Sequence[int]) -> Comparison:
    """Train ``base`` once per preset and seed: same data, same budget, same initial network."""
    results, rows, models = [], [], {}
    for preset in presets:
        for seed in seeds:
            run = train(dataclasses.replace(base, supervision=preset, seed=seed, run_name=None))
            models[preset, seed] = run
            results.append(run.test.assign(preset=preset, seed=seed))
            metrics = run.record["metrics"]
            rows.append({"preset": preset, "seed": seed, "test_dice": metrics["test_dice"],
                         "test_hd95": metrics["test_hd95"],
                         "val_dice": metrics["val_dice"], "best_epoch": metrics["best_epoch"],
                         "test_dice_if_selected_on_test": metrics["test_dice_if_selected_on_test"],
                         "train_time_s": metrics["train_time_s"], "steps": metrics["steps"],
                         "supervised_maps": metrics["num_supervised_maps"]})
    results = pd.concat(results, ignore_index=True)[["preset", "seed", "volume", "class_name", "dice", "hd95",
                                                       "gt_present"]]
    return Comparison(results, pd.DataFrame(rows), models)

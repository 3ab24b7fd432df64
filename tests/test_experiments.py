import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

matplotlib.use("Agg")

import lomix_core as lx  # noqa: E402

TINY = dict(epochs=1, max_steps_per_epoch=2, batch_size=8, lr=3e-3, progress=False, model_kwargs={"width": 8},
            data_kwargs=dict(num_subjects=6, num_slices=8, size=32, num_val=1, num_test=1))


@pytest.fixture(scope="module")
def comparison(tmp_path_factory):
    base = lx.TrainConfig(out_dir=str(tmp_path_factory.mktemp("runs")), track_test=True, **TINY)
    return lx.experiments.compare_supervision(base, ["last_layer", "lomix"], seeds=[0, 1])


def test_comparison_tables(comparison):
    runs = comparison.runs
    assert len(runs) == 4 and set(runs["preset"]) == {"last_layer", "lomix"}
    summary = comparison.summary()
    assert list(summary.index) == ["last_layer", "lomix"]
    assert summary.loc["lomix", "supervised_maps"] == 48 and summary.loc["lomix", "seeds"] == 2
    lomix = runs[runs.preset == "lomix"]["test_dice"]
    assert summary.loc["lomix", "test_dice_mean"] == pytest.approx(lomix.mean())
    assert summary.loc["lomix", "test_dice_std"] == pytest.approx(lomix.std())
    hd95 = runs[runs.preset == "lomix"]["test_hd95"]
    assert summary.loc["lomix", "test_hd95_mean"] == pytest.approx(hd95.mean()) and (hd95 >= 0).all()
    per_class = comparison.per_class()
    assert per_class.shape == (2, 8) and "aorta" in per_class.columns
    assert comparison.per_class("hd95").shape == (2, 8)
    assert set(comparison.results.columns) >= {"volume", "class_name", "dice", "hd95", "gt_present"}
    diffs = comparison.paired_differences("lomix")
    by = runs.set_index(["preset", "seed"])["test_dice"]
    assert diffs.loc[1, "last_layer"] == pytest.approx(by["lomix", 1] - by["last_layer", 1])
    tests = comparison.paired_tests("lomix")
    assert list(tests.index) == ["last_layer"] and tests.loc["last_layer", "seeds"] == 2
    assert tests.loc["last_layer", "mean_difference"] == pytest.approx(diffs["last_layer"].mean())
    verdict = comparison.verdict("lomix")
    assert list(verdict) == ["lomix - last_layer"] and "mean Dice (paired sd" in verdict["lomix - last_layer"]


def test_same_seed_means_same_initial_network(tmp_path, monkeypatch):
    """Presets trained with one seed start from identical weights: only the supervision differs."""
    initial, build = [], lx.models.build

    def build_and_capture(*args, **kwargs):
        model = build(*args, **kwargs)
        initial.append({k: v.clone() for k, v in model.state_dict().items()})
        return model

    monkeypatch.setattr(lx.models, "build", build_and_capture)
    base = lx.TrainConfig(out_dir=str(tmp_path), **TINY)
    lx.experiments.compare_supervision(base, ["last_layer", "lomix"], seeds=[3], jobs=1)  # trains in this process
    # Two builds to train, then two more to read the finished runs back.
    assert len(initial) == 4 and all(torch.equal(initial[0][k], initial[1][k]) for k in initial[0])


def test_plots(comparison):
    run = comparison.models["lomix", 0]
    originals, mutants = lx.viz.map_weight_table(run.loss_fn)
    assert list(originals.index) == ["p4", "p3", "p2", "p1"]
    assert mutants.shape == (4, 11) and list(mutants.index) == ["add", "mul", "concat", "wf"]
    assert mutants.columns[0] == "p4,p3" and mutants.columns[-1] == "p4,p3,p2,p1"
    assert mutants.loc["wf", "p2,p1"] == pytest.approx(run.loss_fn.map_weights()["wf(p2,p1)"])
    figures = [lx.viz.plot_test_metrics(comparison.runs), lx.viz.plot_map_weights(run.loss_fn),
               lx.viz.plot_weight_trajectories(run.history),
               lx.viz.plot_training_curves({"lomix": run}),
               lx.viz.plot_slices(lx.data.load("synthetic", split="val", **TINY["data_kwargs"]), [0, 3])]
    assert len(figures[1].axes) == 3  # decoder maps, mutants, colour bar
    assert len(figures[2].axes[0].lines) == 48
    assert len(figures[0].axes) == 2  # Dice and HD95
    assert len(figures[4].axes) == 4


def test_selection_bias_is_never_negative(comparison):
    bias = comparison.selection_bias()
    assert list(bias.columns) == ["selected_on_validation", "selected_on_test", "optimism"]
    # the best-on-test epoch can only match or beat the validation-selected one on test
    assert (bias["optimism"] >= 0).all()


def test_selection_bias_needs_tracked_test(tmp_path):
    base = lx.TrainConfig(out_dir=str(tmp_path), **{**TINY, "track_test": False})
    untracked = lx.experiments.compare_supervision(base, ["last_layer"], seeds=[0])
    with pytest.raises(ValueError, match="track_test=True"):
        untracked.selection_bias()


def test_paired_tests_match_scipy_on_known_differences():
    runs = pd.DataFrame({"preset": ["lomix"] * 4 + ["last_layer"] * 4 + ["mutation"] * 4, "seed": [0, 1, 2, 3] * 3,
                         "test_dice": [0.50, 0.60, 0.70, 0.80, 0.40, 0.45, 0.62, 0.70, 0.50, 0.60, 0.70, 0.80]})
    table = lx.experiments.Comparison(results=pd.DataFrame(), runs=runs, models={}).paired_tests("lomix")
    d = np.array([0.10, 0.15, 0.08, 0.10])
    row = table.loc["last_layer"]
    assert row.seeds == 4 and row.mean_difference == pytest.approx(d.mean())
    half = stats.t.ppf(0.975, 3) * d.std(ddof=1) / 2
    assert (row.ci95_low, row.ci95_high) == pytest.approx((d.mean() - half, d.mean() + half))
    assert row.t_test_p == pytest.approx(stats.ttest_rel(runs.test_dice[:4], runs.test_dice[4:8]).pvalue)
    assert row.wilcoxon_p == pytest.approx(2 / 2 ** 4)  # all 4 differences positive: the exact minimum
    tied = table.loc["mutation"]  # identical runs: no difference, and no test can be computed
    assert tied.mean_difference == 0 and np.isnan(tied.t_test_p) and np.isnan(tied.wilcoxon_p)

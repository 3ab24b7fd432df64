"""Comparisons of variants trained with the same seeds, and the low-data sweep (lomix_core.studies.comparisons)."""
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
    return lx.comparisons.compare_supervision(base, ["last_layer", "lomix"], seeds=[0, 1])


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
    assert set(runs["plateau_reading"]) == {"too few epochs"}  # one epoch: no slope to test


def test_same_seed_means_same_initial_network(tmp_path, monkeypatch):
    """Presets trained with one seed start from identical weights: only the supervision differs."""
    initial, build = [], lx.models.build

    def build_and_capture(*args, **kwargs):
        model = build(*args, **kwargs)
        initial.append({k: v.clone() for k, v in model.state_dict().items()})
        return model

    monkeypatch.setattr(lx.models, "build", build_and_capture)
    base = lx.TrainConfig(out_dir=str(tmp_path), **TINY)
    lx.comparisons.compare_supervision(base, ["last_layer", "lomix"], seeds=[3], jobs=1)  # trains in this process
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
    untracked = lx.comparisons.compare_supervision(base, ["last_layer"], seeds=[0])
    with pytest.raises(ValueError, match="track_test=True"):
        untracked.selection_bias()


def test_paired_tests_and_registration_read_the_per_seed_differences():
    runs = pd.DataFrame({"preset": ["lomix"] * 4 + ["last_layer"] * 4 + ["mutation"] * 4, "seed": [0, 1, 2, 3] * 3,
                         "test_dice": [0.50, 0.60, 0.70, 0.80, 0.40, 0.45, 0.62, 0.70, 0.50, 0.60, 0.70, 0.80]})
    comparison = lx.comparisons.Comparison(results=pd.DataFrame(), runs=runs, models={})
    table = comparison.paired_tests("lomix")
    d = np.array([0.10, 0.15, 0.08, 0.10])
    assert list(table.index) == ["last_layer", "mutation"] and table.index.name == "lomix minus"
    assert table.loc["last_layer"].to_dict() == pytest.approx(lx.statistics.paired_test(pd.Series(d)), nan_ok=True)
    paired = stats.ttest_rel(runs.test_dice[:4], runs.test_dice[4:8])
    assert table.loc["last_layer", "t_test_p"] == pytest.approx(paired.pvalue)
    family = lx.statistics.TestFamily()
    comparison.register(family, "brain_aal")
    assert list(family.table().index) == [("brain_aal", "lomix - last_layer"), ("brain_aal", "lomix - mutation")]
    assert family.result("brain_aal", "lomix - last_layer")["mean_difference"] == pytest.approx(d.mean())


def test_low_data_registers_every_gain_and_the_growth():
    def comparison(d):
        dice = {"lomix": [0.6, 0.5, 0.7], "last_layer": list(np.subtract([0.6, 0.5, 0.7], d))}
        rows = [{"preset": p, "seed": s, "test_dice": v} for p, values in dice.items() for s, v in enumerate(values)]
        return lx.comparisons.Comparison(results=pd.DataFrame(), runs=pd.DataFrame(rows), models={})

    small, large = np.array([0.10, 0.05, 0.12]), np.array([0.01, 0.02, 0.00])
    low = lx.comparisons.LowData({1: comparison(small), 4: comparison(large)}, {1: 8, 4: 32})
    assert list(low.gain_growth()) == pytest.approx(small - large)
    family = lx.statistics.TestFamily()
    low.register(family)
    assert list(family.table().index) == [("1 subject", "lomix - last_layer"), ("4 subjects", "lomix - last_layer"),
                                          ("gain growth, 1 vs 4 subjects", "lomix - last_layer")]


def test_subset_sizes_are_whole_subjects():
    brain = lx.comparisons.subset_sizes(7)
    assert list(brain["setting"]) == ["1 subject", "2 subjects", "5%", "10%", "25%", "50%", "100%"]
    assert list(brain["train_subjects"]) == [1, 2, 1, 1, 2, 4, 7]
    assert list(lx.comparisons.subset_sizes(12)["train_subjects"]) == [1, 2, 1, 2, 3, 6, 12]
    assert list(lx.comparisons.subset_sizes(1)["train_subjects"]) == [1, 1, 1, 1, 1, 1]  # "2 subjects" cannot exist


def test_variants_share_the_papers_runs():
    operators = lx.comparisons.operator_variants()
    assert operators["all"] == {} and operators["only mul"] == {"operators": ["mul"]}
    assert operators["without wf"] == {"operators": ["add", "mul", "concat"]} and len(operators) == 9
    assert lx.comparisons.weighting_variants() == {"softplus": {}, "equal": {"weighting": "equal"},
                                                 "softmax": {"weighting": "softmax"},
                                                 "uncertainty": {"weighting": "uncertainty"}}


def test_weight_drift():
    history = pd.DataFrame({"step": [1, 2, 3], "loss": [1.0, 0.9, 0.8], "w:p1": [0.7, 0.6, 0.5], "w:p2": [0.7, 0.5, 0.3]})
    assert lx.comparisons.weight_drift(history) == pytest.approx(
        {"mean_first_step": 0.7, "mean_last_step": 0.4, "min_last_step": 0.3, "max_last_step": 0.5, "steps": 3})


def test_chapter_04s_low_data_configs_under_full_keep_the_official_epoch(tmp_path):
    """Under full (protocol="official") a full run trains on the training and validation cases together, with the
    last partial batch: a subset's runs get that epoch's steps, and with same_steps=False one pass of their own."""
    from lomix_core.data import synapse
    from test_data_synapse import SUBSET, make_raw

    root = synapse.prepare(make_raw(tmp_path / "raw"), tmp_path / "synapse", cases=SUBSET)
    base, _ = lx.profiles.comparison("full", dataset="synapse", data_kwargs={"root": str(root), "size": 32},
                                     model_kwargs={})
    assert base.protocol == "official" and base.epochs == 300
    # 2 training cases + 1 validation case of 6 slices each: 18 slices in batches of 6, none dropped
    assert len(lx.training.training_data(base)[0]) == 18 and lx.config.epoch_steps(base, 18) == 3
    configs = lx.comparisons.low_data_configs(base, ["last_layer", "lomix"], [1, 2], [0, 1])
    assert len(configs) == 8
    subset = [c for c in configs if c.data_kwargs.get("num_train_subjects") == 1]
    assert {c.steps_per_epoch for c in subset} == {3}
    assert all(c.epochs * lx.config.epoch_steps(c, 6) == 300 * 3 for c in subset)
    full = [c for c in configs if "num_train_subjects" not in c.data_kwargs]
    assert all(c.epochs * lx.config.epoch_steps(c, 18) == 300 * 3 for c in full)
    own = lx.comparisons.low_data_configs(base, ["lomix"], [1], [0], same_steps=False)
    assert own[0].steps_per_epoch is None and lx.config.epoch_steps(own[0], 6) == 1


def _run_with_curve(val_dice: list[float], steps_per_epoch: int) -> lx.training.Run:
    epochs = len(val_dice)
    history = pd.DataFrame({"step": np.arange(1, epochs * steps_per_epoch + 1),
                            "epoch": np.repeat(np.arange(1, epochs + 1), steps_per_epoch)})
    per_epoch = pd.DataFrame({"epoch": range(1, epochs + 1), "val_dice": val_dice})
    return lx.training.Run(None, None, None, history, per_epoch, None, {}, None)


def test_validation_dice_at_step_counts_reads_the_epoch_that_reaches_them():
    run = _run_with_curve([0.1, 0.3, 0.5, 0.6, 0.62, 0.63, 0.63, 0.64], steps_per_epoch=13)  # 104 steps
    at = lx.comparisons.dice_at_steps(run, [13, 14, 52, 104])
    assert at["epoch"].tolist() == [1, 2, 4, 8] and at["steps"].tolist() == [13, 26, 52, 104]
    assert at["val_dice"].tolist() == [0.1, 0.3, 0.6, 0.64]
    with pytest.raises(ValueError, match=r"steps must lie in \[1, 104\]"):
        lx.comparisons.dice_at_steps(run, [105])
    other = _run_with_curve([0.2, 0.25, 0.3, 0.3, 0.3, 0.31, 0.31, 0.3], steps_per_epoch=13)
    c = lx.comparisons.Comparison(pd.DataFrame(), pd.DataFrame({"preset": ["lomix", "last_layer"], "seed": [0, 0]}),
                                  {("lomix", 0): run, ("last_layer", 0): other})
    curves = c.learning_curves(seed=0)  # 1/8, 1/4, 1/2 and all of 104 steps: epochs 1, 2, 4, 8
    assert list(curves.columns) == ["13 steps", "26 steps", "52 steps", "104 steps"]
    assert curves.loc["lomix"].tolist() == [0.1, 0.3, 0.6, 0.64] and curves.loc["last_layer", "104 steps"] == 0.3
    with pytest.raises(ValueError, match="no run with seed 3"):
        c.learning_curves(seed=3)
    short = lx.comparisons.Comparison(pd.DataFrame(), pd.DataFrame({"preset": ["lomix"], "seed": [0]}),
                                      {("lomix", 0): _run_with_curve([0.1, 0.2], steps_per_epoch=3)})
    assert list(short.learning_curves(seed=0).columns) == ["3 steps", "6 steps"]  # 1/8 to 1/2 all end epoch 1

"""The machinery behind chapters 04–06 and the series report: shared runs, low-data sweeps,
ablation variants, per-map evaluation, the findings and their plots."""
import dataclasses
import json

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch

matplotlib.use("Agg")

import lomix_core as lx  # noqa: E402
from lomix_core import experiments  # noqa: E402
from lomix_core.evaluation import evaluate, evaluate_maps, mean_dice, predict_slices, slice_scores  # noqa: E402
from lomix_core.training import load_run  # noqa: E402

DATA = dict(num_subjects=6, num_slices=8, size=32, num_val=1, num_test=1)  # 4 training subjects
TINY = dict(epochs=2, max_steps_per_epoch=2, batch_size=8, lr=3e-3, progress=False, model_kwargs={"width": 8},
            data_kwargs=DATA, track_test=True)


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="module")
def base(runs_dir):
    return lx.TrainConfig(out_dir=str(runs_dir), **TINY)


@pytest.fixture(scope="module")
def low(base):
    return experiments.low_data(base, ["last_layer", "lomix"], [1, 4], seeds=[0, 1], jobs=2)


def test_run_key_names_what_a_run_computes(base):
    key = experiments.run_key(base)
    assert len(key) == 10 and experiments.keyed(base).name.endswith(key)
    # where a run is written and whether it shows progress do not change what it computes
    assert experiments.run_key(dataclasses.replace(base, out_dir="/elsewhere", progress=True, run_name="x")) == key
    assert experiments.run_key(dataclasses.replace(base, seed=1)) != key
    assert experiments.run_key(dataclasses.replace(base, weighting="equal")) != key


def test_finished_runs_are_read_back_not_retrained(base, monkeypatch):
    first = experiments.run_many([base], jobs=1)[0]
    assert (first.run_dir / "best.pt").is_file() and not (first.run_dir / "last.pt").exists()  # only for resuming

    def must_not_train(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(lx.executors, "train", must_not_train)
    again = experiments.run_many([base, base], jobs=2)  # a repeated config is one run
    assert [r.run_dir for r in again] == [first.run_dir] * 2
    assert again[0].record == first.record
    assert all(torch.equal(a, b) for a, b in zip(first.model.state_dict().values(), again[0].model.state_dict().values()))


def test_a_changed_source_is_a_different_run(base, monkeypatch):
    key = experiments.run_key(base)
    monkeypatch.setattr(experiments, "source_digest", lambda: "another version of the kit")
    assert experiments.run_key(base) != key


def test_load_run_gives_back_the_selected_model(base, tmp_path):
    run = lx.train(dataclasses.replace(base, out_dir=str(tmp_path), supervision="lomix"))
    loaded = load_run(run.run_dir)
    assert loaded.config == run.config and loaded.record == json.loads((run.run_dir / "record.json").read_text())
    for module, other in ((run.model, loaded.model), (run.loss_fn, loaded.loss_fn)):
        assert all(torch.equal(a, b) for a, b in zip(module.state_dict().values(), other.state_dict().values()))
    pd.testing.assert_frame_equal(loaded.test, run.test, check_dtype=False)
    assert list(loaded.history.columns) == list(run.history.columns)
    val = lx.data.load("synthetic", split="val", **DATA)
    assert loaded.maps(val.images[:2]).shape == (48, 2, 9, 32, 32)  # 8 organs and background
    (run.run_dir / "best.pt").unlink()
    with pytest.raises(FileNotFoundError, match="best.pt missing"):
        load_run(run.run_dir)


def test_steps_per_epoch_keeps_the_step_budget_on_a_small_subset(tmp_path):
    config = lx.TrainConfig(out_dir=str(tmp_path), **{**TINY, "max_steps_per_epoch": None, "steps_per_epoch": 3,
                                                      "data_kwargs": {**DATA, "num_train_subjects": 1}})
    run = lx.train(config)  # one subject is 8 slices: one batch, yet every epoch makes 3 steps
    assert len(run.history) == 2 * 3 and list(run.history.groupby("epoch").size()) == [3, 3]
    with pytest.raises(ValueError, match="steps_per_epoch must be >= 1"):
        dataclasses.replace(config, steps_per_epoch=0)


def test_subset_sizes_are_whole_subjects():
    brain = experiments.subset_sizes(7)
    assert list(brain["setting"]) == ["1 subject", "2 subjects", "5%", "10%", "25%", "50%", "100%"]
    assert list(brain["train_subjects"]) == [1, 2, 1, 1, 2, 4, 7]
    assert list(experiments.subset_sizes(12)["train_subjects"]) == [1, 2, 1, 2, 3, 6, 12]
    assert list(experiments.subset_sizes(1)["train_subjects"]) == [1, 1, 1, 1, 1, 1]  # "2 subjects" cannot exist


def test_low_data_sweep(low, base):
    runs = low.runs
    assert sorted(runs["train_subjects"].unique()) == [1, 4] and len(runs) == 2 * 2 * 2
    assert set(runs["train_slices"]) == {8, 32}
    assert runs["steps"].nunique() == 1  # the same step budget on every subset
    curve = low.curve()
    assert len(curve) == 4 and (curve["ci95_low"] <= curve["mean"]).all() and (curve["mean"] <= curve["ci95_high"]).all()
    gains = low.gains("lomix")
    assert list(gains["baseline"]) == ["last_layer", "last_layer"] and list(gains["train_subjects"]) == [1, 4]
    one = runs[runs.train_subjects == 1].set_index(["preset", "seed"])["test_dice"]
    assert gains.iloc[0]["mean_difference"] == pytest.approx((one["lomix"] - one["last_layer"]).mean())
    # the full-set runs are those of the supervision comparison: read back, the same folders
    full = experiments.compare_supervision(base, ["lomix"], seeds=[0])
    assert full.models["lomix", 0].run_dir == low.comparisons[4].models["lomix", 0].run_dir
    with pytest.raises(ValueError, match=r"subject_counts must lie in \[1, 4\]"):
        experiments.low_data(base, ["lomix"], [5], seeds=[0])
    text = experiments.low_data_statement(low, "the phantom")
    assert "with 1 subject(s) than with 4" in text and "vs last_layer" in text
    assert f"mean test Dice over all presets was {runs[runs.train_subjects == 1]['test_dice'].mean():.3f}" in text


def test_variants_share_the_papers_runs():
    operators = experiments.operator_variants()
    assert operators["all"] == {} and operators["only mul"] == {"operators": ["mul"]}
    assert operators["without wf"] == {"operators": ["add", "mul", "concat"]} and len(operators) == 9
    assert experiments.weighting_variants() == {"softplus": {}, "equal": {"weighting": "equal"},
                                                 "softmax": {"weighting": "softmax"},
                                                 "uncertainty": {"weighting": "uncertainty"}}


def fake_comparison(dice: dict[str, list[float]]) -> experiments.Comparison:
    rows = [{"preset": p, "seed": s, "test_dice": d, "test_hd95": 5.0, "test_hd95_mm": None, "supervised_maps": 1, "train_time_s": 1.0}
            for p, values in dice.items() for s, d in enumerate(values)]
    return experiments.Comparison(results=pd.DataFrame(), runs=pd.DataFrame(rows), models={})


def test_statement_says_not_significant_when_it_is_not():
    noisy = fake_comparison({"lomix": [0.50, 0.60, 0.40], "last_layer": [0.45, 0.65, 0.38]})
    text = experiments.statement(noisy, "brain_aal")
    assert text.startswith("On brain_aal with 3 seeds, lomix scored 0.500 ± 0.100 test Dice.")
    assert "did not beat any baseline significantly" in text and "not significant at 0.05" in text
    assert "0.500 ± 0.100" in text and "Wilcoxon p = " in text
    clear = fake_comparison({"lomix": [0.60, 0.70, 0.50, 0.65], "last_layer": [0.50, 0.61, 0.40, 0.56],
                             "deep_supervision": [0.60, 0.71, 0.49, 0.66]})
    text = experiments.statement(clear, "x")
    assert "beat last_layer significantly" in text and "deep_supervision" in text


def test_evaluate_maps_scores_p1_as_the_evaluation_does(low):
    run = low.comparisons[4].models["lomix", 0]
    val = lx.data.load("synthetic", split="val", **DATA)
    table = evaluate_maps(run.model, run.loss_fn, val)
    assert list(table.index) == run.loss_fn.map_names and len(table) == 48
    assert table.loc["p1", "dice"] == pytest.approx(mean_dice(evaluate(run.model, val, with_hd95=False)))
    assert table.loc["add(p4,p3)", "weight"] == pytest.approx(run.loss_fn.map_weights()["add(p4,p3)"])
    assert set(table["operator"]) == {"decoder", "add", "mul", "concat", "wf"}
    assert run.model.training  # left in the mode it was found in


def test_slice_scores():
    val = lx.data.load("synthetic", split="val", **DATA)
    perfect = slice_scores(val.labels.clone(), val)
    assert len(perfect) > 0 and (perfect["dice"] == 1).all()
    assert (slice_scores(torch.zeros_like(val.labels), val)["dice"] == 0).all()


def test_weight_drift():
    history = pd.DataFrame({"step": [1, 2, 3], "loss": [1.0, 0.9, 0.8], "w:p1": [0.7, 0.6, 0.5], "w:p2": [0.7, 0.5, 0.3]})
    assert experiments.weight_drift(history) == pytest.approx(
        {"mean_first_step": 0.7, "mean_last_step": 0.4, "min_last_step": 0.3, "max_last_step": 0.5, "steps": 3})


def test_series_plots_and_browser(low):
    import matplotlib.pyplot as plt

    assert len(lx.viz.plot_low_data(low.curve()).axes[0].lines) == 2  # one line per preset
    assert len(lx.viz.plot_gains(low.gains()).axes[0].containers) == 1  # one baseline's error bars
    run = low.comparisons[4].models["lomix", 0]
    val = lx.data.load("synthetic", split="val", **DATA)
    fig = lx.viz.plot_map_dice(evaluate_maps(run.model, run.loss_fn, val))
    assert "Spearman" in fig.axes[0].get_title()
    histories = {"softplus": run.history, "equal": run.history}
    assert len(lx.viz.plot_weightings(histories).axes) == 2
    predictions = {"lomix": predict_slices(run.model, val.images), "truth": val.labels}
    fig = lx.viz.plot_predictions(val, predictions, [0, 3])
    assert len(fig.axes) == 2 * 4  # image, ground truth and two predictions per row
    browser = lx.widgets.prediction_browser(val, predictions)
    volume, position = browser.children[0].children
    before = len(plt.get_fignums())
    position.value = 2
    assert len(plt.get_fignums()) == before + 1


def test_profiles_for_the_series():
    quick = lx.profiles.quickstart("cpu")
    assert quick.dataset == "brain_aal" and quick.supervision == "lomix" and quick.data_kwargs == {"size": 48}
    assert lx.profiles.quickstart("smoke", dataset="synthetic").data_kwargs["num_subjects"] == 6
    assert lx.profiles.ablation_dataset("cpu") == "synthetic" and lx.profiles.ablation_dataset("full") == "synapse"
    with pytest.raises(ValueError, match="unknown dataset"):
        lx.profiles.quickstart("cpu", dataset="nope")


def test_per_class_summary(low):
    table = low.comparisons[4].per_class_summary("dice")
    assert list(table.index) == ["last_layer", "lomix"] and "aorta" in table.columns
    assert all(" ± " in cell for cell in table.to_numpy().ravel())


def test_report_puts_findings_first(tmp_path):
    from lomix_core.reproduce import NotebookResult, write_report

    lx.report.record(tmp_path, "03_x", findings=["LoMix did not beat any baseline significantly."],
                     headline={"a": 1}, tables={"t": pd.DataFrame({"x": [1.0]})})
    text = write_report(tmp_path, "cpu", [NotebookResult("03_x", True, 2.0)], 60).read_text()
    assert tmp_path.joinpath("REPORT.md").exists()
    assert text.index("## Findings") < text.index("## 03_x")
    assert "LoMix did not beat any baseline significantly. ([03_x](03_x.ipynb))" in text
    assert "Wall time: 1.0 min" in text


def test_headless_widgets_draw_a_plain_figure(monkeypatch):
    import matplotlib.pyplot as plt

    monkeypatch.setenv("LOMIX_HEADLESS", "1")
    val = lx.data.load("synthetic", split="val", **DATA)
    before = len(plt.get_fignums())
    assert lx.widgets.slice_browser(val) is None and len(plt.get_fignums()) == before + 1
    title = plt.figure(plt.get_fignums()[-1]).axes[0].get_title()
    assert title.startswith(f"{val.subjects[0]}, slice 0")


def test_reproduce_sets_headless_only_for_its_kernels(monkeypatch):
    from lomix_core.reproduce import headless_kernels

    monkeypatch.delenv("LOMIX_HEADLESS", raising=False)
    with headless_kernels():
        assert lx.widgets.headless()
    assert "LOMIX_HEADLESS" not in __import__("os").environ

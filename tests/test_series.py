"""The machinery behind chapters 04–06 and the series report: shared runs, low-data sweeps,
ablation variants, per-map evaluation, the findings and their plots."""
import dataclasses
import json

import matplotlib
import pandas as pd
import pytest
import torch

matplotlib.use("Agg")

import lomix_core as lx  # noqa: E402
from lomix_core import comparisons, findings  # noqa: E402
from lomix_core.pipeline.evaluation import evaluate, evaluate_maps, mean_dice, predict_slices, slice_scores  # noqa: E402
from lomix_core.pipeline.training import load_run  # noqa: E402

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
    return comparisons.low_data(base, ["last_layer", "lomix"], [1, 4], seeds=[0, 1], jobs=2)


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
    full = comparisons.compare_supervision(base, ["lomix"], seeds=[0])
    assert full.models["lomix", 0].run_dir == low.comparisons[4].models["lomix", 0].run_dir
    with pytest.raises(ValueError, match=r"subject_counts must lie in \[1, 4\]"):
        comparisons.low_data(base, ["lomix"], [5], seeds=[0])
    text = findings.low_data_statement(low, "the phantom")
    assert "- vs last_layer: " in text and " with 1 subject(s): " in text and " with 4: " in text
    assert "Less data cost " in text and " subjects minus with " in text and " (95 % CI " in text  # two seeds: an interval
    assert "so the sweep can test the paper's claim" in text or "cannot test the paper's low-data claim" in text
    assert f"mean test Dice over all presets was {runs[runs.train_subjects == 1]['test_dice'].mean():.3f}" in text


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
    from lomix_core.teaching.reproduce import NotebookResult, write_report

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
    from lomix_core.teaching.reproduce import headless_kernels

    monkeypatch.delenv("LOMIX_HEADLESS", raising=False)
    with headless_kernels():
        assert lx.widgets.headless()
    assert "LOMIX_HEADLESS" not in __import__("os").environ

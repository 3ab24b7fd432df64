"""The teaching pieces of chapter 02 and 05/06: wf's attention, the mutant explorer and the
weight slider (headless they draw one plain figure; live they are ipywidgets that redraw)."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import lomix_core as lx  # noqa: E402
from lomix_core.fusion import WeightedFusion  # noqa: E402

C, H, W = 5, 12, 10


def slice_logits(seed=0, batch=1):
    g = torch.Generator().manual_seed(seed)
    return [3 * torch.randn(batch, C, H, W, generator=g) for _ in range(4)]


@pytest.fixture
def loss_fn():
    torch.manual_seed(0)
    return lx.LoMixLoss(num_maps=4, num_classes=C)


@pytest.fixture
def live(monkeypatch):
    monkeypatch.delenv("LOMIX_HEADLESS", raising=False)


@pytest.fixture
def headless(monkeypatch):
    monkeypatch.setenv("LOMIX_HEADLESS", "1")


def newest_figure() -> plt.Figure:
    return plt.figure(plt.get_fignums()[-1])


# ---- wf attention ------------------------------------------------------------------------------
def test_weighted_fusion_forward_is_the_attention_weighted_sum():
    torch.manual_seed(1)
    wf = WeightedFusion(3, C)
    maps = slice_logits(batch=2)[:3]
    alpha = wf.attention(maps)
    assert alpha.shape == (2, 3, H, W)
    torch.testing.assert_close(alpha.sum(dim=1), torch.ones(2, H, W))
    torch.testing.assert_close(wf(maps), sum(alpha[:, j:j + 1] * m for j, m in enumerate(maps)))
    with pytest.raises(ValueError, match="has 3 members, got 2 maps"):
        wf.attention(maps[:2])


@pytest.mark.parametrize("subset", [(0, 1), (1, 3), (0, 2, 3), (0, 1, 2, 3)])
def test_wf_attention_rebuilds_the_wf_mutant(loss_fn, subset):
    logits = slice_logits(batch=2)
    stacked = torch.stack(logits)
    with torch.no_grad():
        alpha = loss_fn.mutant_generator.wf_attention(stacked, subset)
        mutant = loss_fn.mutants(logits)[loss_fn.map_names.index(lx.fusion.mutant_name("wf", subset, 4))]
    assert alpha.shape == (2, len(subset), H, W)
    torch.testing.assert_close(alpha.sum(dim=1), torch.ones(2, H, W))
    torch.testing.assert_close(sum(alpha[:, j:j + 1] * logits[i] for j, i in enumerate(subset)), mutant)


def test_subsets_by_name_and_bad_subsets(loss_fn):
    generator = loss_fn.mutant_generator
    stacked = torch.stack(slice_logits())
    assert generator.subset("p4,p2,p1") == (0, 2, 3) and generator.subset([1, 3]) == (1, 3)
    torch.testing.assert_close(generator.wf_attention(stacked, "p3,p1"), generator.wf_attention(stacked, (1, 3)))
    assert isinstance(generator.learned("concat", "p4,p3"), lx.fusion.LearnedConcat)
    with pytest.raises(ValueError, match=r"unknown map name\(s\) \['p9'\]"):
        generator.subset("p4,p9")
    with pytest.raises(ValueError, match="is not a subset of 2..4 maps in increasing order"):
        generator.subset((3, 1))
    with pytest.raises(ValueError, match="no learned module for operator 'add'"):
        generator.learned("add", (0, 1))
    with pytest.raises(ValueError, match=r"stacked must be the 4 decoder maps as one tensor \[n,B,C,H,W\]"):
        generator.wf_attention(slice_logits(), (0, 1))
    without_wf = lx.LoMixLoss(num_maps=4, num_classes=C, operators=["add", "concat"]).mutant_generator
    with pytest.raises(ValueError, match=r"expected one of \['concat'\]"):
        without_wf.wf_attention(stacked, (0, 1))


# ---- mutant explorer ---------------------------------------------------------------------------
def test_mutant_explorer_headless_draws_wf_with_its_attention(loss_fn, headless):
    before = len(plt.get_fignums())
    assert lx.widgets.mutant_explorer(loss_fn, slice_logits(), image=np.zeros((H, W))) is None
    assert len(plt.get_fignums()) == before + 1
    titles = [ax.get_title() for ax in newest_figure().axes]
    assert titles[:5] == ["p4", "p3", "p2", "p1", "wf(p4,p3,p2,p1)"]
    assert titles[5] == f"class probabilities at pixel (row {H // 2}, column {W // 2})"
    assert sum(t.startswith("α of ") for t in titles) == 4  # one attention panel per member
    bars = newest_figure().axes[5]
    heights = np.array([p.get_height() for p in bars.patches]).reshape(5, C)  # 4 members + the mutant
    np.testing.assert_allclose(heights.sum(axis=1), 1.0, rtol=1e-5)  # softmax probabilities per map


def test_mutant_explorer_live_redraws_on_every_control(loss_fn, live):
    logits = slice_logits()
    widget = lx.widgets.mutant_explorer(loss_fn, logits, operator="add", subset="p4,p3")
    operator, subset, row, column = widget.children[0].children
    assert list(operator.options) == ["add", "mul", "concat", "wf"] and len(subset.options) == 11
    assert (row.max, column.max) == (H - 1, W - 1)

    def probabilities():
        return bar_heights(newest_figure().axes[3])  # p4, p3, add(p4,p3): three panels, then the bars

    first = probabilities()
    row.value, column.value = 0, 0  # another pixel: other probabilities
    assert probabilities() != first
    with torch.no_grad():
        maps = loss_fn.mutants(logits)[:, 0]
    expected = maps[loss_fn.map_names.index("add(p4,p3)"), :, 0, 0].softmax(0)
    np.testing.assert_allclose(probabilities()[-C:], expected.numpy(), rtol=1e-5)
    operator.value, subset.value = "wf", "p2,p1"
    titles = [ax.get_title() for ax in newest_figure().axes]
    assert titles[:3] == ["p2", "p1", "wf(p2,p1)"] and sum(t.startswith("α of ") for t in titles) == 2
    operator.value = "mul"
    assert not any(ax.get_title().startswith("α of ") for ax in newest_figure().axes)  # attention is wf's alone


def test_mutant_explorer_names_the_classes_on_its_bars(loss_fn, headless):
    names = [f"organ {c}" for c in range(C)]
    lx.widgets.mutant_explorer(loss_fn, slice_logits(), class_names=names)
    bars = newest_figure().axes[5]
    assert [tick.get_text() for tick in bars.get_xticklabels()] == names
    lx.widgets.mutant_explorer(loss_fn, slice_logits())  # without names: numbered
    assert [tick.get_text() for tick in newest_figure().axes[5].get_xticklabels()] == [str(c) for c in range(C)]


def test_mutant_explorer_rejects_bad_input(loss_fn):
    with pytest.raises(ValueError, match=f"class_names has 2 names; expected one per class, {C}"):
        lx.widgets.mutant_explorer(loss_fn, slice_logits(), class_names=["a", "b"])
    with pytest.raises(ValueError, match="for ONE slice, got 4 maps of shape"):
        lx.widgets.mutant_explorer(loss_fn, slice_logits(batch=2))
    with pytest.raises(ValueError, match="logits must be the model's list of 4 maps"):
        lx.widgets.mutant_explorer(loss_fn, torch.stack(slice_logits()))
    with pytest.raises(ValueError, match="needs a LoMixLoss that builds mutants"):
        lx.widgets.mutant_explorer(lx.LoMixLoss(4, C, supervision="deep_supervision"), slice_logits())
    with pytest.raises(ValueError, match="unknown subset 'p1,p4'"):
        lx.widgets.mutant_explorer(loss_fn, slice_logits(), subset="p1,p4")
    with pytest.raises(ValueError, match="operator 'wf' is not built by this loss"):
        lx.widgets.mutant_explorer(lx.LoMixLoss(4, C, supervision="mutation"), slice_logits(), operator="wf")


# ---- weight slider -----------------------------------------------------------------------------
def fake_history(loss_fn, steps=12):
    rows = np.arange(steps)
    history = pd.DataFrame({"step": rows + 1, "epoch": rows // 4 + 1, "loss": np.ones(steps)})
    for i, name in enumerate(loss_fn.map_names):
        history[f"w:{name}"] = 0.693 - 1e-3 * rows * (1 + i % 5)  # every weight falls, at its own pace
    return history


def bar_heights(ax):
    return [p.get_height() for p in ax.patches]


def test_weight_slider_headless_draws_the_last_step(loss_fn, headless):
    history = fake_history(loss_fn)
    before = len(plt.get_fignums())
    assert lx.widgets.weight_slider(history) is None and len(plt.get_fignums()) == before + 1
    weights, change = newest_figure().axes
    np.testing.assert_allclose(bar_heights(weights), history.iloc[-1, 3:].to_numpy(dtype=float))
    assert weights.get_title().startswith("Map weights at step 12 of 12, epoch 3")
    assert all(h < 0 for h in bar_heights(change))


def test_weight_slider_live_moves_the_bars_on_a_fixed_axis(loss_fn, live):
    history = fake_history(loss_fn)
    widget = lx.widgets.weight_slider(history)
    (slider,) = widget.children[0].children
    assert (slider.min, slider.max, slider.value) == (1, 12, 12)
    last = bar_heights(newest_figure().axes[0])
    limits = newest_figure().axes[0].get_ylim()
    slider.value = 1
    first = bar_heights(newest_figure().axes[0])
    assert first != last and newest_figure().axes[0].get_ylim() == limits
    np.testing.assert_allclose(first, 0.693)
    assert newest_figure().axes[0].get_title().startswith("Map weights at step 1 of 12")


def test_weight_slider_on_a_real_run_history(tmp_path, headless):
    run = lx.train(lx.profiles.demo("smoke", out_dir=str(tmp_path), epochs=2, max_steps_per_epoch=2))
    lx.widgets.weight_slider(run.history)
    assert len(newest_figure().axes[0].patches) == 48
    assert run.config.dataset == "brain_aal"  # the teaching demo looks at a real brain slice


def test_weight_slider_rejects_what_is_not_a_history(loss_fn):
    with pytest.raises(ValueError, match="history must be run.history"):
        lx.widgets.weight_slider(loss_fn.map_weights())
    with pytest.raises(ValueError, match="no 'w:<map>' weight columns"):
        lx.widgets.weight_slider(pd.DataFrame({"step": [1, 2], "loss": [1.0, 0.9]}))

"""Official scoring: ``evaluate(..., method="zoom")`` gives the official ``test_single_volume``'s
prediction, pixel for pixel, and its Dice and HD95.

The fixture ``fixtures/official_scoring.pt`` was made once by running ``test_single_volume`` and
``calculate_metric_percase`` of github.com/SLDGroup/LoMix ``utils/utils.py`` at commit 464a945
(their source taken out of the file with ``ast`` and executed; no official code is in the kit), with
torch 2.14.1+cu130 (CPU), numpy 2.4.6, scipy 1.17.1, medpy 0.5.2 and Python 3.11.7:

    git --git-dir=/work/.mirror/SLDGroup+LoMix/repo archive 464a945 | tar -x -C /tmp/lomix_official_scoring
    .venv/bin/python tests/fixtures/make_official_scoring_fixture.py /tmp/lomix_official_scoring

It holds a fake 4-slice scan of 120 × 90 pixels with its labels, a fixed network's state, the
32 × 32 slices the official code fed that network, the official prediction at 120 × 90 and the
official metrics (see the script's docstring). The official code takes the argmax at the model grid
and enlarges it with ``scipy.ndimage.zoom(order=0)``, which maps pixels differently from torch's
nearest neighbour and, at some sizes, blanks the last row: here the last of 120 rows.

The network's input is taken from the fixture, so this checks scoring only: from the model's
logits to the metrics. How the official code brings a slice to the model (a cubic spline,
stretched to the square) is a separate step.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage

from lomix_core.data.preprocessing import (Preprocessing, native_argmax, to_model_grid, to_native_grid,
                                            zoom_indices)
from lomix_core.data.slices import NativeGrid, SliceDataset
from lomix_core.pipeline.evaluation import evaluate, predict_native

FIXTURES = Path(__file__).parent / "fixtures"
CLASS_NAMES = ("background", "organ_1", "organ_2", "organ_3", "blob")


def fixture_maker():
    """The fixture script as a module: it defines the network the fixture was made with."""
    spec = importlib.util.spec_from_file_location("make_official_scoring_fixture",
                                                  FIXTURES / "make_official_scoring_fixture.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def fixture():
    return torch.load(FIXTURES / "official_scoring.pt")


@pytest.fixture(scope="module")
def model(fixture):
    network = fixture_maker().IntensityReader(len(CLASS_NAMES))
    network.load_state_dict(fixture["state_dict"], strict=True)
    return network.eval()


@pytest.fixture(scope="module")
def test_set(fixture):
    """The fixture's scan as the kit's test split: the official model-grid slices, the labels never
    resampled as the native grid, stretched to the square as the official code does."""
    images, label = fixture["model_inputs"], fixture["label"]
    size = fixture["patch_size"]
    return SliceDataset(images, to_model_grid(label, size, label=True, aspect="stretch"), ["fake"] * len(label),
                        list(range(len(label))), CLASS_NAMES, name="fake", split="test",
                        native={"fake": NativeGrid(label)},
                        preprocessing=Preprocessing(size=size, class_names=CLASS_NAMES, aspect="stretch"))


def test_the_fixture_is_what_the_docstring_says(fixture):
    assert fixture["official_commit"].startswith("464a945")
    assert tuple(fixture["label"].shape) == tuple(fixture["image"].shape) == (4, 120, 90)
    assert tuple(fixture["model_inputs"].shape) == (4, 1, 32, 32)
    assert tuple(fixture["metrics"].shape) == (len(CLASS_NAMES) - 1, 4)  # Dice, HD95, Jaccard, ASD
    prediction = fixture["prediction"]
    assert (prediction[:, -1] == 0).all() and (prediction[:, -2] != 0).any()  # scipy blanked the last row
    assert (prediction[:, :, -1] != 0).any()  # but not the last column
    assert not (fixture["label"] == 4).any() and (prediction == 4).any()  # the blob: predicted, never labelled


@pytest.mark.parametrize("source", [1, 2, 7, 8, 32, 64, 224])
def test_zoom_indices_are_scipys(source):
    values = np.arange(1, source + 1, dtype=np.float64)  # 0 is scipy's fill value
    for target in [*range(1, 130), 217, 405, 512, 576]:
        enlarged = ndimage.zoom(values, target / source, order=0)
        assert enlarged.shape == (target,), (source, target)
        copied = np.append(values, 0)[zoom_indices(source, target).numpy()]
        assert np.array_equal(enlarged, copied), (source, target)


def test_zoom_indices_blank_where_scipy_does():
    assert (zoom_indices(32, 120) == 32).sum() == 1  # the last pixel: the fill value
    assert (zoom_indices(224, 512) < 224).all()  # Synapse's 512: nothing blanked


def test_the_kit_predicts_the_official_label_volume(fixture, model, test_set):
    images = test_set.images[test_set.subject_slices()["fake"]]
    zoom = predict_native(model, images, (120, 90), aspect="stretch", method="zoom")
    assert torch.equal(zoom, fixture["prediction"])
    # torch's nearest neighbour maps pixels otherwise, and the kit's default resamples the logits.
    for method in ("nearest", "logits"):
        other = predict_native(model, images, (120, 90), aspect="stretch", method=method)
        assert (other != fixture["prediction"]).sum() > 100, method


def test_one_slice_at_a_time_as_the_official_loop_gives_the_same(fixture, model, test_set):
    images = test_set.images[test_set.subject_slices()["fake"]]
    assert torch.equal(predict_native(model, images, (120, 90), aspect="stretch", batch_size=1, method="zoom"),
                       fixture["prediction"])


def test_the_kit_scores_the_official_dice_and_hd95(fixture, model, test_set):
    results = evaluate(model, test_set, method="zoom").set_index("class_index")
    official = fixture["metrics"].numpy()
    assert list(results.index) == [1, 2, 3, 4]
    np.testing.assert_allclose(results["dice"], official[:, 0], rtol=1e-12, atol=0)
    np.testing.assert_allclose(results["hd95"], official[:, 1], rtol=1e-12, atol=0)
    # Class 4 is predicted where the ground truth has none: both say Dice 1, HD95 0 (the kit's means
    # then leave it out, by its gt_present flag).
    assert results.loc[4, "dice"] == 1 and results.loc[4, "hd95"] == 0 and not results.loc[4, "gt_present"]
    # Scored the kit's default way the same model loses Dice, so the equality above is not a coincidence.
    default = evaluate(model, test_set).set_index("class_index")
    assert not np.allclose(default["dice"], official[:, 0], rtol=1e-6)


def test_native_argmax_zoom_pads_and_crops_like_the_other_methods():
    # A wide 10 × 20 scan padded to 20 × 20 and shrunk to 8 × 8: class 1 where the scan sits.
    logits = torch.zeros(1, 2, 8, 8)
    logits[:, 1, 2:6] = 1
    pred = native_argmax(logits, (10, 20), aspect="pad", method="zoom")
    assert pred.shape == (1, 10, 20) and pred.dtype == torch.uint8
    padded = np.zeros((8, 8), np.uint8)
    padded[2:6] = 1
    assert np.array_equal(pred[0].numpy(), ndimage.zoom(padded, 20 / 8, order=0)[5:15])
    for shape in ((10, 20), (8, 8)):  # also when nothing needs resizing
        with pytest.raises(ValueError, match="mode must be 'bilinear', 'nearest' or 'zoom', got 'cubic'"):
            to_native_grid(logits, shape, mode="cubic")

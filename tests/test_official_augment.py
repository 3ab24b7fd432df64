"""``augment="official"``: the official RandomGenerator's geometry (LoMix utils/dataset_synapse.py).

Its branch probabilities and parameter ranges are counted over many draws (draws only, cheap);
its geometry is compared with the numpy/scipy calls the official code makes, and so is its order:
augment the slice as stored, then zoom it to the model grid.
"""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from scipy import ndimage

import lomix_core as lx
from lomix_core.data.augment import OfficialRotFlip, RandomRotFlip, make_transform

DRAWS = 20_000


def within(count: int, p: float, n: int = DRAWS, sigmas: float = 5.0) -> bool:
    """A binomial count within 5 standard deviations of n·p (a false alarm about once in 3.5 million)."""
    return abs(count - n * p) <= sigmas * (n * p * (1 - p)) ** 0.5


def chi_square_uniform(counts: Counter, values: range) -> float:
    total = sum(counts.values())
    expected = total / len(values)
    return sum((counts[v] - expected) ** 2 / expected for v in values)


@pytest.fixture(scope="module")
def draws() -> list[dict]:
    torch.manual_seed(0)
    transform = OfficialRotFlip()
    return [transform.draw() for _ in range(DRAWS)]


def test_branches_occur_half_quarter_quarter(draws):
    branches = Counter("rot_flip" if "k" in d else "rotate" if "angle" in d else "none" for d in draws)
    assert within(branches["rot_flip"], 0.5) and within(branches["rotate"], 0.25) and within(branches["none"], 0.25)
    # 5 σ is 354 draws at p = 0.5 and 306 at 0.25: a 0.5/0.5 split of the rest would be 1250 off.
    assert set(branches) == {"rot_flip", "rotate", "none"}


def test_rot90_and_flip_parameters_are_uniform(draws):
    flips = [d for d in draws if "k" in d]
    ks, axes = Counter(d["k"] for d in flips), Counter(d["axis"] for d in flips)
    assert set(ks) == {0, 1, 2, 3} and set(axes) == {0, 1}
    # χ² with 3 degrees of freedom: 16.27 is its 0.999 quantile; with 1, 10.83.
    assert chi_square_uniform(ks, range(4)) < 16.27
    assert chi_square_uniform(axes, range(2)) < 10.83


def test_angles_are_integers_uniform_in_minus_20_to_19(draws):
    angles = [d["angle"] for d in draws if "angle" in d]
    assert all(isinstance(a, int) for a in angles)
    counts = Counter(angles)
    assert set(counts) == set(range(-20, 20))  # 20 never drawn (numpy's randint(-20, 20))
    # χ² with 39 degrees of freedom: 72.06 is its 0.999 quantile.
    assert chi_square_uniform(counts, range(-20, 20)) < 72.06


def test_rot90_and_flip_equal_numpy():
    image, label = torch.rand(2, 6, 7), torch.randint(0, 5, (6, 7))
    for k in range(4):
        for axis in range(2):
            out_image, out_label = OfficialRotFlip().apply(image, label, {"k": k, "axis": axis})
            expected = np.flip(np.rot90(label.numpy(), k), axis=axis)
            assert np.array_equal(out_label.numpy(), expected)
            for c in range(2):
                assert np.array_equal(out_image[c].numpy(), np.flip(np.rot90(image[c].numpy(), k), axis=axis))


def test_rotation_is_nearest_keeps_label_aligned_and_equals_scipy():
    label = torch.zeros(32, 32, dtype=torch.long)
    label[6:20, 9:26], label[18:28, 4:12] = 3, 7
    image = torch.stack([label.float() * 0.1, label.float()])  # channel 1 is the label as float
    for angle in (-20, -7, 13, 19):
        out_image, out_label = OfficialRotFlip().apply(image, label, {"angle": angle})
        assert out_label.dtype == torch.long and out_image.dtype == torch.float32
        assert set(out_image.unique().tolist()) <= set(image.unique().tolist())  # nearest: no new values
        assert torch.equal(out_image[1], out_label.float())  # the label moved exactly like the image
        assert not torch.equal(out_label, label)
        # The official 2-D call, on one slice.
        official = ndimage.rotate(label.numpy(), angle, order=0, reshape=False)
        assert np.array_equal(out_label.numpy(), official)
    # Rotating a smooth image leaves zeros in the corners and no value that was not there.
    smooth = torch.rand(1, 16, 16)
    rotated, _ = OfficialRotFlip().apply(smooth, torch.zeros(16, 16, dtype=torch.long), {"angle": 15})
    assert rotated[0, 0, 0] == 0 and set(rotated.unique().tolist()) <= set(smooth.unique().tolist()) | {0.0}


def test_no_branch_returns_the_inputs():
    image, label = torch.rand(1, 5, 5), torch.randint(0, 3, (5, 5))
    out_image, out_label = OfficialRotFlip().apply(image, label, {})
    assert torch.equal(out_image, image) and torch.equal(out_label, label)


def test_call_draws_from_torch_global_rng():
    image, label = torch.rand(1, 8, 8), torch.randint(0, 3, (8, 8))
    torch.manual_seed(3)
    first = [OfficialRotFlip()(image, label) for _ in range(20)]
    torch.manual_seed(3)
    second = [OfficialRotFlip()(image, label) for _ in range(20)]
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, second))
    assert any(not torch.equal(a[0], image) for a in first)


def test_make_transform_maps_each_choice():
    assert make_transform(False) is None and make_transform(None) is None
    assert isinstance(make_transform(True), RandomRotFlip) and isinstance(make_transform("kit"), RandomRotFlip)
    assert isinstance(make_transform(np.bool_(True)), RandomRotFlip)
    assert isinstance(make_transform("official"), OfficialRotFlip)
    for bad in ("Official", "yes", 1.5):
        with pytest.raises(ValueError, match=r"unknown augment .*expected one of .*'kit', 'official'") as error:
            make_transform(bad)
        assert "\n" not in str(error.value)


def test_load_with_official_augmentation():
    small = dict(num_subjects=4, num_slices=2, size=32, num_val=1, num_test=1)
    dataset = lx.data.load("synthetic", split="train", augment="official", **small)
    assert isinstance(dataset.transform, OfficialRotFlip)
    assert isinstance(lx.data.load("synthetic", split="train", augment=True, **small).transform, RandomRotFlip)
    assert lx.data.load("synthetic", split="train", **small).transform is None
    torch.manual_seed(0)
    image, label = dataset[0]
    assert image.shape == (1, 32, 32) and label.shape == (32, 32) and label.dtype == torch.long
    with pytest.raises(ValueError, match="unknown augment"):
        lx.data.load("synthetic", split="train", augment="offical", **small)


def _drawing(params: dict) -> int:
    """A seed after which OfficialRotFlip's next draw is ``params``."""
    for seed in range(2000):
        torch.manual_seed(seed)
        if OfficialRotFlip().draw() == params:
            return seed
    raise AssertionError(f"no seed below 2000 draws {params}")


def _official_order(image: np.ndarray, label: np.ndarray, params: dict, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The official RandomGenerator's calls, in its order, for drawn ``params``: geometry, then zoom."""
    if "k" in params:
        image, label = np.rot90(image, params["k"]), np.rot90(label, params["k"])
        image, label = np.flip(image, axis=params["axis"]).copy(), np.flip(label, axis=params["axis"]).copy()
    elif "angle" in params:
        image = ndimage.rotate(image, params["angle"], order=0, reshape=False)
        label = ndimage.rotate(label, params["angle"], order=0, reshape=False)
    x, y = image.shape
    return ndimage.zoom(image, (size / x, size / y), order=3), ndimage.zoom(label, (size / x, size / y), order=0)


@pytest.mark.parametrize("aspect", ["stretch", "pad"])
def test_the_official_augmentation_runs_on_the_stored_slice_then_zooms(aspect):
    """Rotate at the stored grid, then zoom (the official order), not zoom, then rotate."""
    from lomix_core.data.preprocessing import Preprocessing
    from lomix_core.data.volumes import stack_subjects

    rng = np.random.default_rng(1)
    image = rng.random((2, 30, 24)).astype(np.float32)  # two slices, not square: "pad" squares them first
    label = (image > 0.6).astype(np.uint8) + (image > 0.9)
    grid = Preprocessing(size=12, class_names=("a", "b", "c"), intensity=({"kind": "unit"},), aspect=aspect)
    dataset = stack_subjects([("s", image, label)], grid, "check", "train", augment="official")
    assert dataset.stored[0][0].shape == ((1, 30, 30) if aspect == "pad" else (1, 30, 24))
    as_stored = lx.data.preprocessing.stored_grid
    for params in ({"angle": 13}, {"angle": -20}, {"k": 1, "axis": 0}, {"k": 3, "axis": 1}, {}):
        torch.manual_seed(_drawing(params))
        kit_image, kit_label = dataset[1]
        stored_image = as_stored(image, label=False, aspect=aspect)[1, 0].numpy()
        stored_label = as_stored(label, label=True, aspect=aspect)[1].numpy()
        official_image, official_label = _official_order(stored_image, stored_label, params, 12)
        assert kit_image.shape == (1, 12, 12) and kit_label.dtype == torch.long
        np.testing.assert_allclose(kit_image[0].numpy(), official_image, atol=1e-6)
        assert np.array_equal(kit_label.numpy(), official_label)
        if "angle" in params:  # on the model grid the nearest rotation's staircase is 2.5x coarser: other pixels
            zoomed_first = OfficialRotFlip().apply(dataset.images[1], dataset.labels[1].long(), params)[0]
            assert np.abs(zoomed_first[0].numpy() - official_image).max() > 0.1


def test_the_official_protocol_trains_on_stored_slices_and_the_kit_on_the_model_grid():
    official = lx.TrainConfig(dataset="brain_aal", protocol="official", data_kwargs={"size": 32})
    train_set, val_set = lx.training.training_data(official)
    assert val_set is None and train_set.stored is not None  # validation subjects joined, as stored
    separate = lx.data.load("brain_aal", split="train", size=32)
    assert len(train_set.stored[0]) == len(train_set) > len(separate)
    assert train_set.stored[0][0].shape[-2:] != (32, 32) and train_set[0][0].shape == (1, 32, 32)
    kit_train, kit_val = lx.training.training_data(lx.TrainConfig(dataset="brain_aal", data_kwargs={"size": 32}))
    assert kit_train.stored is None and kit_val is not None
    with pytest.raises(ValueError, match="only one keeps its slices as stored"):
        lx.data.load("brain_aal", split="train", augment="official", size=32).joined(kit_val)

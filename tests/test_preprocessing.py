"""The one way from a scan's grid to the model's and back (lomix_core.data.preprocessing).

Training, evaluation and predict share these steps, so each is pinned down here on small arrays:
slicing and its inverse, spacing order, padding to a square and cropping back, resampling to the
model grid and back, the two ways to take the argmax at native resolution, intensity scaling,
and the recipe's round trip through a checkpoint's JSON.
"""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import lomix_core as lx
from lomix_core.data import brain_aal
from lomix_core.data.preprocessing import (Preprocessing, crop_square, native_argmax, scale_intensity, square_pad,
                                           to_model_grid, to_native_grid)

AXES_AND_ORIENTATIONS = [(axis, orientation) for axis in (0, 1, 2) for orientation in ("voxel", "radiological")]


def recipe(**kwargs):
    return Preprocessing(**{"size": 16, "class_names": ("bg", "a", "b"), **kwargs})


def one_line_error(error_type, call, match):
    with pytest.raises(error_type, match=match) as error:
        call()
    assert "\n" not in str(error.value)


# ---------------------------------------------------------------- slicing

@pytest.mark.parametrize("axis, orientation", AXES_AND_ORIENTATIONS)
def test_slices_and_unslice_are_inverse_for_every_axis_and_orientation(axis, orientation):
    steps = recipe(axis=axis, orientation=orientation)
    volume = np.random.default_rng(axis).integers(0, 3, (5, 6, 7)).astype(np.uint8)
    stack = steps.slices(volume)
    in_plane = [n for a, n in enumerate(volume.shape) if a != axis]
    expected = (volume.shape[axis], *(in_plane[::-1] if orientation == "radiological" else in_plane))
    assert stack.shape == expected and stack.flags.c_contiguous
    np.testing.assert_array_equal(steps.unslice(stack), volume)
    for k in (0, volume.shape[axis] - 1):  # slice k is the k-th plane along the axis
        plane = np.take(volume, k, axis=axis)
        np.testing.assert_array_equal(stack[k], plane[::-1, ::-1].T if orientation == "radiological" else plane)


@pytest.mark.parametrize("axis, orientation", AXES_AND_ORIENTATIONS)
def test_channels_are_sliced_like_a_single_channel(axis, orientation):
    steps = recipe(axis=axis, orientation=orientation, intensity=({"kind": "unit"},) * 2)
    volume = np.random.default_rng(0).random((2, 5, 6, 7)).astype(np.float32)
    stack = steps.slices(volume)
    assert stack.shape[1] == 2
    for c in range(2):
        np.testing.assert_array_equal(stack[:, c], steps.slices(volume[c]))


def test_radiological_slices_are_brain_aal_planes():
    volume = np.random.default_rng(0).random((9, 11, 4))
    stack = recipe(axis=2, orientation="radiological").slices(volume)
    for z in range(volume.shape[2]):
        np.testing.assert_array_equal(stack[z], volume[::-1, ::-1, z].T)


@pytest.mark.parametrize("axis, orientation", AXES_AND_ORIENTATIONS)
def test_slice_spacing_follows_the_slices_axes(axis, orientation):
    steps = recipe(axis=axis, orientation=orientation)
    zooms = (0.7, 0.8, 3.0)
    # Which voxel axis each output axis runs along: slice a volume that holds, per voxel, its index on each axis.
    shape = (3, 4, 5)
    grids = np.meshgrid(*map(np.arange, shape), indexing="ij")
    runs_along = []
    for out_axis in range(3):
        moved = [a for a in range(3) if np.ptp(steps.slices(grids[a]), axis=out_axis).any()]
        assert len(moved) == 1
        runs_along.append(moved[0])
    assert steps.slice_spacing(zooms) == tuple(zooms[a] for a in runs_along)


def test_slice_spacing_examples():
    zooms = (0.7, 0.8, 3.0, 1.0)  # a 4th zoom (time) is ignored
    assert recipe(axis=2).slice_spacing(zooms) == (3.0, 0.7, 0.8)
    assert recipe(axis=0).slice_spacing(zooms) == (0.7, 0.8, 3.0)
    assert recipe(axis=1).slice_spacing(zooms) == (0.8, 0.7, 3.0)
    assert recipe(axis=2, orientation="radiological").slice_spacing(zooms) == (3.0, 0.8, 0.7)


# ---------------------------------------------------------------- square padding

@pytest.mark.parametrize("shape", [(5, 8), (8, 5), (7, 4), (4, 7), (6, 6), (3, 8), (8, 3), (1, 2)])
def test_square_pad_and_crop_square_are_inverse(shape):
    stack = torch.arange(1, 2 * np.prod(shape) + 1, dtype=torch.float32).view(2, *shape)
    padded = square_pad(stack)
    side = max(shape)
    assert padded.shape == (2, side, side)
    assert torch.equal(crop_square(padded, shape), stack)
    # Centred, with the odd pixel (if any) after, and zeros around.
    top, left = (side - shape[0]) // 2, (side - shape[1]) // 2
    assert torch.equal(padded[:, top:top + shape[0], left:left + shape[1]], stack)
    assert padded.sum() == stack.sum() and (padded != 0).sum() == stack.numel()


# ---------------------------------------------------------------- the model grid and back

def test_to_model_grid_keeps_uint8_images_and_exact_labels():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (3, 20, 28)).astype(np.uint8)
    out = to_model_grid(image, 16, label=False)
    assert out.dtype == torch.uint8 and out.shape == (3, 1, 16, 16)
    as_float = to_model_grid(image.astype(np.float32), 16, label=False)
    assert as_float.dtype == torch.float32
    assert (out.float() - as_float).abs().max() <= 0.5 + 1e-4  # the same image, rounded
    assert to_model_grid(image.astype(np.float64), 16, label=False).dtype == torch.float32

    label = rng.integers(0, 5, (3, 20, 28)).astype(np.int64)
    small = to_model_grid(label, 16, label=True)
    assert small.dtype == torch.uint8 and small.shape == (3, 16, 16)
    assert set(small.unique().tolist()) <= set(np.unique(label).tolist()) | {0}
    # At the padded square's own size nothing is resampled; at twice it every pixel becomes 2x2.
    assert torch.equal(to_model_grid(label, 28, label=True), square_pad(torch.from_numpy(label)).to(torch.uint8))
    doubled = to_model_grid(label, 56, label=True)
    expected = square_pad(torch.from_numpy(label)).repeat_interleave(2, -1).repeat_interleave(2, -2)
    assert torch.equal(doubled, expected.to(torch.uint8))


def test_to_model_grid_stretch_ignores_the_aspect_ratio():
    label = np.zeros((1, 10, 20), np.uint8)
    label[:, :, 10:] = 1  # the right half
    assert torch.equal(to_model_grid(label, 20, label=True, aspect="stretch")[0, :, 10:], torch.ones(20, 10))
    padded = to_model_grid(label, 20, label=True)
    assert padded[0, :5].sum() == 0 and padded[0, 15:].sum() == 0  # the padding rows


@pytest.mark.parametrize("shape", [(40, 56), (56, 40), (33, 33)])
def test_back_to_the_native_grid_recovers_a_smooth_image_and_a_label_map(shape):
    rows, columns = np.meshgrid(np.linspace(0, 1, shape[0]), np.linspace(0, 1, shape[1]), indexing="ij")
    image = (0.5 + 0.25 * np.sin(3 * rows) * np.cos(2 * columns))[None].astype(np.float32)
    side = max(shape)
    back = to_native_grid(to_model_grid(image, 2 * side, label=False), shape)
    assert back.shape == (1, 1, *shape)
    error = (back[0, 0] - torch.from_numpy(image[0])).abs()
    # The rows (or columns) that touch the zero padding blend with it, by up to an eighth of their value at this scale; the rest
    # comes back almost exactly.
    padded_axis = int(np.argmin(shape))
    inner = error.narrow(padded_axis, 1, min(shape) - 2) if shape[0] != shape[1] else error
    assert inner.max() < 0.01 and (error <= torch.from_numpy(image[0]) / 8 + 1e-3).all()
    # Shrinking loses detail, but a smooth image comes back close.
    coarse = to_native_grid(to_model_grid(image, side // 2, label=False), shape)
    assert (coarse[0, 0] - torch.from_numpy(image[0])).abs().narrow(padded_axis, 2, min(shape) - 4).max() < 0.05

    label = np.random.default_rng(0).integers(0, 4, (2, *shape)).astype(np.uint8)
    for size in (side, 2 * side, 3 * side):  # whole multiples of the square: nearest neighbour is exact
        model = to_model_grid(label, size, label=True)
        restored = to_native_grid(model[:, None], shape, mode="nearest")[:, 0]
        assert torch.equal(restored, torch.from_numpy(label)), size


def test_native_argmax_both_methods_recover_labels_given_at_twice_the_size():
    label = np.random.default_rng(1).integers(0, 3, (2, 10, 14)).astype(np.uint8)
    model = to_model_grid(label, 28, label=True).long()
    logits = 5.0 * F.one_hot(model, 3).permute(0, 3, 1, 2).float()
    for method in ("logits", "nearest"):
        pred = native_argmax(logits, (10, 14), method=method)
        assert pred.dtype == torch.uint8 and pred.shape == (2, 10, 14)
        assert torch.equal(pred, torch.from_numpy(label)), method


def test_native_argmax_from_logits_follows_a_smooth_boundary_that_nearest_turns_to_stairs():
    # Two classes split by the line u - v = 0.1, logits linear in (u, v) at the 8x8 model grid's pixel centres.
    model_centres = (np.arange(8) + 0.5) / 8
    u, v = np.meshgrid(model_centres, model_centres, indexing="ij")
    difference = torch.from_numpy(u - v - 0.1).float()
    logits = torch.stack([-difference, difference])[None]  # class 1 where u - v > 0.1
    native_centres = (np.arange(64) + 0.5) / 64
    nu, nv = np.meshgrid(native_centres, native_centres, indexing="ij")
    truth = torch.from_numpy(nu - nv > 0.1)
    smooth = native_argmax(logits, (64, 64), method="logits")[0].bool()
    stairs = native_argmax(logits, (64, 64), method="nearest")[0].bool()
    # Bilinear resampling of a linear function is exact away from the outermost half model pixel (4 native
    # pixels), where it holds the edge value, so the boundary lands where it should; the enlarged argmax is
    # off by up to half a model pixel all along it.
    inner = (slice(4, -4), slice(4, -4))
    assert (smooth != truth)[inner].sum() == 0 and (smooth != truth).sum() < 16
    assert (stairs != truth)[inner].sum() > 64
    blocks = stairs.view(8, 8, 8, 8)
    assert (blocks.amax((1, 3)) == blocks.amin((1, 3))).all()  # constant on every 8x8 block
    with pytest.raises(ValueError, match="method must be one of"):
        native_argmax(logits, (64, 64), method="bicubic")


def test_native_argmax_crops_the_padding_of_a_wide_scan():
    logits = torch.zeros(1, 2, 16, 16)
    logits[:, 1, 4:12] = 1  # class 1 exactly where a 10x20 scan sits in its padded 20x20 square at 16
    pred = native_argmax(logits, (10, 20))
    assert pred.shape == (1, 10, 20) and pred.all()


# ---------------------------------------------------------------- intensities

def test_scale_intensity_every_kind():
    hu = np.array([-1000, -125, 75, 275, 3000], np.int16)
    np.testing.assert_allclose(scale_intensity(hu, {"kind": "ct_window", "window": [-125, 275]}),
                               [0, 0, 0.5, 1, 1])
    mri = np.arange(1000, dtype=np.float64)
    mri[0] = 1e9  # one hot voxel
    scaled = scale_intensity(mri, {"kind": "percentile", "percentiles": [0.5, 99.5]})
    low, high = np.percentile(mri, [0.5, 99.5])
    np.testing.assert_allclose(scaled, (np.clip(mri, low, high) - low) / (high - low), rtol=1e-5, atol=1e-6)
    assert scaled.min() == 0 and scaled.max() == 1 and 0.45 < np.median(scaled) < 0.55
    np.testing.assert_allclose(scale_intensity(np.array([0, 50, 200]), {"kind": "max"}), [0, 0.25, 1])
    # A volume whose maximum is under 1 is divided by 1, not stretched.
    np.testing.assert_allclose(scale_intensity(np.array([0, 0.25, 0.5]), {"kind": "max"}), [0, 0.25, 0.5])
    np.testing.assert_allclose(scale_intensity(np.array([0, 51, 255]), {"kind": "divide", "by": 255}), [0, 0.2, 1])
    np.testing.assert_allclose(scale_intensity(np.array([-0.5, 0.3, 1.5]), {"kind": "unit"}), [0, 0.3, 1],
                               rtol=1e-6)
    for spec in ({"kind": "ct_window", "window": [-125, 275]}, {"kind": "max"}, {"kind": "unit"},
                 {"kind": "percentile", "percentiles": [0.5, 99.5]}, {"kind": "divide", "by": 255}):
        assert scale_intensity(np.array([1, 2], np.int16), spec).dtype == np.float32


def test_a_constant_volume_scales_to_zeros():
    constant = np.full((3, 4, 5), 7.0)
    out = scale_intensity(constant, {"kind": "percentile", "percentiles": [0.5, 99.5]})
    assert out.dtype == np.float32 and out.shape == constant.shape and not out.any()
    assert not scale_intensity(np.zeros((2, 2)), {"kind": "max"}).any()


def test_unknown_intensity_kind_is_one_line():
    one_line_error(ValueError, lambda: scale_intensity(np.zeros(3), {"kind": "z_score"}),
                   "unknown intensity kind 'z_score'; expected one of")


def test_a_chained_spec_applies_its_second_step_to_the_first_ones_result():
    hu = np.random.default_rng(0).normal(40, 300, size=(6, 8, 8)).astype(np.float32)
    window = {"kind": "ct_window", "window": [-125, 275]}
    chained = scale_intensity(hu, {**window, "then": {"kind": "zscore", "clip": 3}})
    assert np.array_equal(chained, scale_intensity(scale_intensity(hu, window), {"kind": "zscore", "clip": 3}))
    assert not np.allclose(chained, scale_intensity(hu, window))
    one_line_error(ValueError, lambda: Preprocessing(size=8, class_names=["b", "f"],
                                                     intensity=({**window, "then": {"kind": "z"}},)),
                   "unknown intensity kind 'z'")


# ---------------------------------------------------------------- the recipe

@pytest.mark.parametrize("size", [64, (48, 64)])
def test_preprocessing_round_trips_through_json(size):
    steps = Preprocessing(size=size, class_names=["background", "liver"],
                          intensity=({"kind": "ct_window", "window": [-125, 275]},
                                     {"kind": "percentile", "percentiles": [0.5, 99.5]}),
                          axis=1, orientation="radiological", aspect="stretch", eight_bit=True)
    assert steps.class_names == ("background", "liver") and steps.in_channels == 2
    restored = Preprocessing.from_dict(json.loads(json.dumps(steps.to_dict())))
    assert restored == steps and restored.size == size
    assert Preprocessing.from_dict(recipe().to_dict()) == recipe()


@pytest.mark.parametrize("field, value, match", [
    ("aspect", "crop", r"aspect must be one of \('pad', 'stretch'\), got 'crop'"),
    ("orientation", "neurological", r"orientation must be one of \('voxel', 'radiological'\), got 'neurological'"),
    ("axis", 3, "axis must be 0, 1 or 2 .*got 3"),
    ("axis", -1, "axis must be 0, 1 or 2 .*got -1"),
])
def test_bad_settings_are_one_line_errors(field, value, match):
    one_line_error(ValueError, lambda: recipe(**{field: value}), match)


def test_to_model_grid_rejects_a_bad_aspect_or_shape():
    one_line_error(ValueError, lambda: to_model_grid(np.zeros((1, 4, 4)), 8, label=True, aspect="crop"),
                   "aspect must be one of")
    one_line_error(ValueError, lambda: to_model_grid(np.zeros((4, 4)), 8, label=True), r"must be \[D,H,W\]")
    one_line_error(ValueError, lambda: to_model_grid(np.zeros((4, 4)), 8, label=False), r"\[D,H,W\] or \[D,C,H,W\]")


def test_model_input_scales_slices_and_resizes_like_the_dataset():
    steps = recipe(size=16, intensity=({"kind": "divide", "by": 100},), axis=2, eight_bit=True)
    volume = np.random.default_rng(0).integers(0, 101, (20, 12, 3))
    stack, shape = steps.model_input(volume)
    assert shape == (20, 12) and stack.shape == (3, 1, 16, 16) and stack.dtype == torch.uint8
    expected = to_model_grid(np.round(steps.slices(volume / 100) * 255).astype(np.uint8)[:, None], 16, label=False)
    assert torch.equal(stack, expected)
    one_line_error(ValueError, lambda: steps.model_input(np.zeros((2, 20, 12, 3))),
                   "the scan has 2 channels; the model expects 1")


# ---------------------------------------------------------------- brain_aal's native grid

def test_brain_aal_native_grid_is_the_plane_without_padding():
    dataset = lx.data.load("brain_aal", split="test", size=224)
    with np.load(brain_aal.DATASET_FILE) as archive:
        labels, slab = archive["label"], archive["slab"]
    top, left = (224 - 217) // 2, (224 - 181) // 2
    for subject in sorted(set(dataset.subjects)):
        native = dataset.native_grid(subject)
        assert native.shape == (217, 181) and native.spacing == (1.0, 1.0, 1.0)
        stored = labels[slab == int(subject.split("_")[1])]
        cropped = stored[:, top:top + 217, left:left + 181]
        assert stored.sum(dtype=np.int64) == cropped.sum(dtype=np.int64)  # the padding held no label
        np.testing.assert_array_equal(native.labels.numpy(), cropped)
    assert dataset.resolution == "native" and dataset.preprocessing.orientation == "radiological"


def test_zscore_and_percentile_scaling_ignore_a_scan_s_scale_offset_and_hot_voxel_where_max_does_not():
    """A scanner that writes every intensity ×3 + 100, with one hot voxel, must give the model the same image."""
    rng = np.random.default_rng(0)
    volume = rng.gamma(2.0, 50.0, (24, 20, 6)).astype(np.float32)
    other = volume * 3 + 100
    other[0, 0, 0] = other.max() * 20  # one hot voxel
    for spec in ({"kind": "zscore", "clip": 3}, {"kind": "percentile", "percentiles": [0.5, 99.5]}):
        a, b = scale_intensity(volume, spec), scale_intensity(other, spec)
        assert a.min() >= 0 and a.max() <= 1 and a.std() > 0.1
        assert np.abs(a - b)[1:].max() < 0.02, spec  # the hot voxel's own row aside
    by_max = scale_intensity(volume, {"kind": "max"}), scale_intensity(other, {"kind": "max"})
    assert np.abs(by_max[0] - by_max[1]).mean() > 0.1  # what happened to brain_aal's heads saved as NIfTI
    zscore = Preprocessing(size=8, class_names=("a", "b"), intensity=({"kind": "zscore", "clip": 3},))
    assert Preprocessing.from_dict(json.loads(json.dumps(zscore.to_dict()))) == zscore  # recorded in checkpoints


def test_intensity_augmentation_changes_brightness_and_contrast_but_never_the_label_or_range():
    from lomix_core.data.augment import IntensityJitter, make_transform

    torch.manual_seed(0)
    image = torch.linspace(0, 1, 32 * 32).reshape(1, 32, 32)
    label = (image[0] > 0.5).long()
    jitter = IntensityJitter(p=1.0)
    changed = [jitter(image.clone(), label.clone()) for _ in range(20)]
    for out, out_label in changed:
        assert torch.equal(out_label, label) and out.min() >= 0 and out.max() <= 1
    assert min((out - image).abs().mean().item() for out, _ in changed) > 1e-3  # every draw moved the image
    torch.manual_seed(1)
    first = make_transform("intensity")(image.clone(), label.clone())
    torch.manual_seed(1)
    again = make_transform("intensity")(image.clone(), label.clone())
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])  # seeded runs repeat
    assert IntensityJitter(p=0.0)(image, label)[0].equal(image)
    with pytest.raises(ValueError, match="unknown augment 'bright'"):
        make_transform("bright")

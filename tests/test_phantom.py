"""Tests for the procedural abdominal phantom (lomix_core.data.phantom)."""

from functools import lru_cache

import numpy as np
import pytest

from lomix_core.data.phantom import CLASS_NAMES, _upsample_axis, make_subject

NUM_SEEDS = 30
NUM_CLASSES = len(CLASS_NAMES)
LIVER, AORTA, GALLBLADDER = (CLASS_NAMES.index(n) for n in ("liver", "aorta", "gallbladder"))


@lru_cache(maxsize=None)
def _subjects(num_slices: int = 16, size: int = 64) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """The first NUM_SEEDS subjects, generated once and shared by the statistical tests."""
    return tuple(make_subject(seed, num_slices, size) for seed in range(NUM_SEEDS))


def _centroid_x(label: np.ndarray, cls: int) -> float:
    """Mean column of a class, in normalised units (-1 image left, +1 image right)."""
    columns = np.nonzero(label == cls)[2]
    return (columns.mean() + 0.5) * 2.0 / label.shape[-1] - 1.0


def test_class_names_follow_synapse_order():
    assert CLASS_NAMES == (
        "background", "spleen", "right_kidney", "left_kidney", "gallbladder",
        "pancreas", "liver", "stomach", "aorta",
    )


@pytest.mark.parametrize(("num_slices", "size"), [(16, 96), (8, 64), (5, 33)])
def test_shapes_dtypes_and_ranges(num_slices, size):
    image, label = make_subject(3, num_slices, size)
    assert image.shape == label.shape == (num_slices, size, size)
    assert image.dtype == np.float32 and label.dtype == np.uint8
    assert np.isfinite(image).all()
    assert image.min() >= 0.0 and image.max() <= 1.0
    assert label.max() < NUM_CLASSES
    assert image.std() > 0.05  # a real picture, not a constant


def test_same_arguments_give_identical_arrays():
    image_a, label_a = make_subject(7, 12, 48)
    image_b, label_b = make_subject(7, 12, 48)
    assert np.array_equal(image_a, image_b)
    assert np.array_equal(label_a, label_b)


def test_different_seeds_give_different_subjects():
    image_a, label_a = make_subject(1)
    image_b, label_b = make_subject(2)
    assert not np.array_equal(label_a, label_b)
    assert np.abs(image_a - image_b).mean() > 0.01


def test_same_seed_gives_same_anatomy_at_another_resolution():
    # Pixel (3j + 1) at size 96 has the same centre as pixel j at size 32.
    _, fine = make_subject(5, 16, 96)
    _, coarse = make_subject(5, 16, 32)
    assert (fine[:, 1::3, 1::3] == coarse).mean() > 0.99


@pytest.mark.parametrize("num_slices", [8, 16])
def test_every_organ_appears_in_at_least_two_slices(num_slices):
    for seed, (_, label) in enumerate(_subjects(num_slices, 64)):
        slices_with_class = (label[..., None] == np.arange(NUM_CLASSES)).any(axis=(1, 2)).sum(0)
        assert slices_with_class.min() >= 2, (seed, dict(zip(CLASS_NAMES, slices_with_class)))


def test_organ_sizes_span_scales():
    counts = np.mean(
        [np.bincount(label.ravel(), minlength=NUM_CLASSES) for _, label in _subjects()], axis=0
    )
    organ_counts = counts[1:]
    smallest_three = set(np.argsort(organ_counts)[:3] + 1)
    assert np.argmax(organ_counts) + 1 == LIVER
    assert {AORTA, GALLBLADDER} <= smallest_three
    assert counts[LIVER] > 8 * counts[AORTA]


def test_liver_takes_a_fifth_of_the_body_where_present():
    shares = []
    for image, label in _subjects():
        body = (image > 0.12).sum(axis=(1, 2))  # air is ~0.02, the fat rim ~0.25
        liver = (label == LIVER).sum(axis=(1, 2))
        shares.extend(liver[liver > 0] / body[liver > 0])
    assert 0.12 < np.median(shares) < 0.28


def test_aorta_is_a_small_circle_near_the_midline():
    for _, label in _subjects():
        area = (label == AORTA).sum(axis=(1, 2))
        radius = np.sqrt(area / np.pi) / label.shape[-1]
        assert 0.02 < radius.mean() < 0.06
        assert abs(_centroid_x(label, AORTA)) < 0.15


def test_organs_sit_on_their_anatomical_side():
    # Image right is patient left, as in radiology.
    image_left = ("liver", "right_kidney", "gallbladder")
    image_right = ("spleen", "stomach", "left_kidney")
    for _, label in _subjects():
        for name in image_left:
            assert _centroid_x(label, CLASS_NAMES.index(name)) < 0, name
        for name in image_right:
            assert _centroid_x(label, CLASS_NAMES.index(name)) > 0, name


def test_liver_and_spleen_look_alike():
    differences = []
    for image, label in _subjects():
        liver = image[label == LIVER].mean()
        spleen = image[label == CLASS_NAMES.index("spleen")].mean()
        differences.append(abs(liver - spleen))
    assert np.mean(differences) < 0.05


def test_brightest_structure_is_the_unlabelled_spine():
    for image, label in _subjects():
        brightest = image > 0.92
        assert brightest.sum() > 0
        assert (label[brightest] == 0).mean() > 0.9


def test_slices_vary_smoothly():
    subjects = _subjects()
    adjacent = np.mean([(label[1:] != label[:-1]).mean() for _, label in subjects])
    rng = np.random.default_rng(0)
    unrelated = []
    for _ in range(100):
        a, b = rng.choice(len(subjects), size=2, replace=False)
        i, j = rng.integers(0, subjects[0][1].shape[0], size=2)
        unrelated.append((subjects[a][1][i] != subjects[b][1][j]).mean())
    assert adjacent < 0.25 * np.mean(unrelated)


def test_upsample_axis_is_linear_interpolation():
    ramp = np.array([[0.0, 1.0, 4.0]])
    resampled = _upsample_axis(ramp, 5, axis=1)
    assert np.allclose(resampled, [[0.0, 0.5, 1.0, 2.5, 4.0]])
    assert np.array_equal(_upsample_axis(ramp, 3, axis=1), ramp)

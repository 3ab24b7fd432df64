import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import lomix_core as lx
from lomix_core.data import SliceDataset
from lomix_core.pipeline.evaluation import dice_per_class, hd95, predict_slices, volume_metrics

medpy_binary = pytest.importorskip("medpy.metric.binary")


def test_dice_per_class_convention():
    target = torch.zeros(2, 4, 4, dtype=torch.long)
    pred = torch.zeros_like(target)
    target[0, :2, :2] = 1          # class 1: 4 voxels, prediction overlaps 2 of them, adds 2 more
    pred[0, :2, 1:3] = 1
    pred[1, 0, 0] = 2              # class 2: predicted, absent from ground truth -> 1
    target[1, 3, 3] = 3            # class 3: present, never predicted -> 0
                                   # class 4: absent from both -> 0 (TransUNet convention)
    dice = dice_per_class(pred, target, num_classes=5)
    assert dice.tolist() == pytest.approx([2 * 2 / (4 + 4), 1.0, 0.0, 0.0])


class Oracle(nn.Module):
    """Returns the true labels as the finest map and garbage as the coarser ones."""

    def __init__(self, dataset):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))
        self.num_classes = dataset.num_classes

    def forward(self, x):
        fine = 10 * torch.nn.functional.one_hot(x[:, 0].round().long(), self.num_classes).permute(0, 3, 1, 2).float()
        return [torch.randn_like(fine), -fine, fine]


def make_dataset():
    labels = torch.randint(0, 3, (6, 8, 8))
    return SliceDataset(labels[:, None].float(), labels, ["a", "a", "a", "b", "b", "b"], [0, 1, 2, 2, 1, 0],
                        ["bg", "x", "y"])


def test_evaluate_uses_only_the_finest_map_and_restores_mode():
    dataset = make_dataset()
    model = Oracle(dataset).train()
    results = lx.evaluate(model, dataset, batch_size=4)
    assert model.training
    assert isinstance(results, pd.DataFrame)
    assert list(results.columns) == ["volume", "class_index", "class_name", "dice", "hd95", "hd95_mm", "gt_present"]
    assert len(results) == 2 * 2 and (results["dice"] == 1.0).all() and (results["hd95"] == 0.0).all()
    assert lx.mean_dice(results) == 1.0 and lx.mean_hd95(results) == 0.0
    assert "TransUNet" in results.attrs["convention"]


def test_predict_stacks_subject_slices_in_order():
    dataset = make_dataset()
    order = dataset.subject_slices()
    assert order == {"a": [0, 1, 2], "b": [5, 4, 3]}
    pred = predict_slices(Oracle(dataset), dataset.images[order["b"]])
    assert torch.equal(pred, dataset.labels[[5, 4, 3]])


def transunet_case(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    """TransUNet's calculate_metric_percase, on medpy: the reference our numbers must match."""
    if pred.sum() > 0 and gt.sum() > 0:
        return medpy_binary.dc(pred, gt), medpy_binary.hd95(pred, gt)
    if pred.sum() > 0:
        return 1.0, 0.0
    return 0.0, 0.0


def random_blobs(rng, shape, num_classes):
    """Label volumes made of a few random boxes per class, so surfaces are non-trivial."""
    volume = np.zeros(shape, dtype=np.int64)
    for c in range(1, num_classes):
        for _ in range(rng.integers(0, 3)):
            lo = [rng.integers(0, n) for n in shape]
            hi = [rng.integers(l + 1, min(n, l + 1 + max(2, n // 2)) + 1) for l, n in zip(lo, shape)]
            volume[tuple(slice(a, b) for a, b in zip(lo, hi))] = c
    noise = rng.random(shape) < 0.02  # stray voxels make HD95 differ from the box distances
    volume[noise] = rng.integers(0, num_classes, noise.sum())
    return volume


@pytest.mark.parametrize("seed", range(12))
def test_dice_and_hd95_match_medpy_on_random_volumes(seed):
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(1, 6)), int(rng.integers(5, 24)), int(rng.integers(5, 24)))
    num_classes = 5
    pred, gt = random_blobs(rng, shape, num_classes), random_blobs(rng, shape, num_classes)
    gt[gt == 4] = 0  # class 4: never in the ground truth, so the empty-truth rules are exercised
    ours = volume_metrics(torch.from_numpy(pred), torch.from_numpy(gt), num_classes)
    for row in ours.itertuples():
        expected_dice, expected_hd95 = transunet_case(pred == row.class_index, gt == row.class_index)
        assert row.dice == pytest.approx(expected_dice, abs=1e-12)
        assert row.hd95 == pytest.approx(expected_hd95, abs=1e-9)
        assert row.gt_present == bool((gt == row.class_index).any())


@pytest.mark.parametrize("case", ["both_empty", "pred_empty", "gt_empty", "single_voxels", "edge_touching"])
def test_empty_and_edge_cases_follow_the_convention(case):
    pred, gt = np.zeros((3, 9, 9), dtype=np.int64), np.zeros((3, 9, 9), dtype=np.int64)
    if case == "pred_empty":
        gt[1, 2:5, 2:5] = 1
    elif case == "gt_empty":
        pred[0, 0, 0] = 1
    elif case == "single_voxels":
        pred[0, 0, 0], gt[2, 8, 8] = 1, 1
    elif case == "edge_touching":  # medpy erodes with a zero border: masks on the edge keep their edge surface
        pred[:, :, :4], gt[:, :, 2:] = 1, 1
    row = volume_metrics(torch.from_numpy(pred), torch.from_numpy(gt), 2).iloc[0]
    assert (row.dice, row.hd95) == pytest.approx(transunet_case(pred == 1, gt == 1))


def test_hd95_uses_the_spacing_like_medpy():
    rng = np.random.default_rng(0)
    pred, gt = rng.random((4, 12, 10)) < 0.2, rng.random((4, 12, 10)) < 0.2
    spacing = (2.5, 0.7, 0.9)
    assert hd95(pred, gt, spacing) == pytest.approx(medpy_binary.hd95(pred, gt, voxelspacing=spacing))


def test_means_leave_out_classes_absent_from_the_ground_truth():
    results = pd.DataFrame({"volume": ["a", "a", "b", "b"], "class_index": [1, 2, 1, 2],
                            "class_name": ["x", "y", "x", "y"], "dice": [0.8, 0.0, 0.6, 1.0],
                            "hd95": [2.0, 0.0, 4.0, 0.0], "gt_present": [True, True, True, False]})
    # y in b is a false positive on an empty truth (Dice 1 by the convention): it must not count.
    assert lx.mean_dice(results) == pytest.approx(((0.8 + 0.6) / 2 + 0.0) / 2)
    assert lx.mean_hd95(results) == pytest.approx((3.0 + 0.0) / 2)

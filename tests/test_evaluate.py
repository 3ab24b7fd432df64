import pandas as pd
import pytest
import torch
from torch import nn

import lomix_core as lx
from lomix_core.data import SliceDataset
from lomix_core.evaluate import dice_per_class, predict


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
    assert isinstance(results, pd.DataFrame) and list(results.columns) == ["subject", "class_index", "class_name", "dice"]
    assert len(results) == 2 * 2 and (results["dice"] == 1.0).all()
    assert lx.mean_dice(results) == 1.0
    assert "TransUNet" in results.attrs["convention"]


def test_predict_stacks_subject_slices_in_order():
    dataset = make_dataset()
    order = dataset.subject_slices()
    assert order == {"a": [0, 1, 2], "b": [5, 4, 3]}
    pred = predict(Oracle(dataset), dataset.images[order["b"]])
    assert torch.equal(pred, dataset.labels[[5, 4, 3]])

"""The readable loss (lomix_core.reference), checked against values worked by hand."""
import math

import torch

import lomix_core as lx
from lomix_core import reference
from lomix_core.map_loss import DICE_SMOOTH


def test_dice_loss_of_a_two_pixel_example_worked_by_hand():
    # two pixels, two classes; logits (0, 0) give p = (½, ½); logits (ln 3, 0) give p = (¾, ¼)
    logits = torch.tensor([[[[0.0, math.log(3.0)]], [[0.0, 0.0]]]])  # [B=1, C=2, H=1, W=2]
    target = torch.tensor([[[0, 0]]])
    # class 0: I = ½ + ¾, P = ¼ + 9/16, Y = 2;  class 1: I = 0, P = ¼ + 1/16, Y = 0
    dice0 = (2 * 1.25 + DICE_SMOOTH) / (0.8125 + 2 + DICE_SMOOTH)
    dice1 = DICE_SMOOTH / (0.3125 + DICE_SMOOTH)
    want = ((1 - dice0) + (1 - dice1)) / 2
    assert abs(reference.dice_loss(logits, target).item() - want) < 1e-6


def test_add_and_mul_mutants_are_sums_and_products():
    a, b, c = (torch.full((1, 2, 1, 1), v) for v in (2.0, 3.0, 5.0))
    assert reference.mutant("add", [a, b, c]).flatten().tolist() == [10.0, 10.0]
    assert reference.mutant("mul", [a, b, c]).flatten().tolist() == [30.0, 30.0]


def test_maps_come_in_the_loss_modules_name_order():
    loss_fn = lx.LoMixLoss(3, 2, supervision="mutation", operators=("add", "mul"))
    logits = [torch.full((1, 2, 1, 1), float(v)) for v in (1, 2, 3)]
    maps = reference.maps(loss_fn, logits)
    assert len(maps) == len(loss_fn.map_names)
    named = dict(zip(loss_fn.map_names, (m.flatten()[0].item() for m in maps)))
    assert [named[n] for n in loss_fn.map_names[:3]] == [1.0, 2.0, 3.0]  # the originals first
    assert max(named.values()) == 6.0  # 1 · 2 · 3 and 1 + 2 + 3 are both among the mutants

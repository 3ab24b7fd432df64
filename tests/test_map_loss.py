"""CE + soft Dice of a map stack with its closed-form backward (lomix_core.map_loss)."""
import pytest
import torch
import torch.nn.functional as F

from lomix_core import reference
from lomix_core.map_loss import ce_dice_losses


def test_closed_form_gradient_matches_autograd():
    torch.manual_seed(0)
    maps = torch.randn(3, 2, 4, 5, 6, dtype=torch.float64, requires_grad=True)
    target = torch.randint(0, 4, (2, 5, 6))
    assert torch.autograd.gradcheck(lambda z: ce_dice_losses(z, target, 0.3, 0.7), (maps,))


@pytest.mark.parametrize("weights", [(0.3, 0.7), (1.0, 0.0), (0.0, 1.0)])
def test_every_map_gets_the_readable_formula(weights):
    torch.manual_seed(1)
    maps = torch.randn(4, 2, 3, 6, 5)
    target = torch.randint(0, 3, (2, 6, 5))
    a, b = weights
    want = torch.stack([a * F.cross_entropy(m, target) + b * reference.dice_loss(m, target) for m in maps])
    torch.testing.assert_close(ce_dice_losses(maps, target, a, b), want, rtol=1e-6, atol=1e-7)


def test_half_precision_maps_are_scored_in_fp32():
    maps = torch.randn(2, 1, 3, 4, 4).half()
    target = torch.randint(0, 3, (1, 4, 4))
    assert ce_dice_losses(maps, target, 0.3, 0.7).dtype == torch.float32

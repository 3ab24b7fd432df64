"""The readable reference LoMix loss: a plain loop over maps and classes, as the paper states it.

The kit's vectorised loss must match this to 1e-5 relative. Nothing here is fast on purpose.
"""
import torch
import torch.nn.functional as F

from lomix_core.map_loss import DICE_SMOOTH
from lomix_core.official_style import OfficialStyleLoMixLoss


def reference_maps(loss_fn, logits):
    """Every supervised map, built one subset at a time from the per-subset modules (the loop
    the official-style baseline also uses)."""
    return OfficialStyleLoMixLoss(loss_fn).maps(logits)


def reference_dice_loss(logits, target):
    """TransUNet's DiceLoss(softmax=True): a loop over classes."""
    probs = logits.softmax(dim=1)
    num_classes = logits.shape[1]
    total = 0.0
    for c in range(num_classes):
        p, y = probs[:, c], (target == c).float()
        intersect = (p * y).sum()
        dice = (2 * intersect + DICE_SMOOTH) / ((p * p).sum() + (y * y).sum() + DICE_SMOOTH)
        total = total + (1 - dice)
    return total / num_classes


def reference_per_map_losses(loss_fn, logits, target):
    return torch.stack([loss_fn.ce_weight * F.cross_entropy(m, target) + loss_fn.dice_weight * reference_dice_loss(m, target)
                        for m in reference_maps(loss_fn, logits)])

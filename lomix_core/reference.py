"""The readable LoMix loss: a plain loop over maps, subsets and classes, as the paper states it.

Every mutant is built one subset at a time from its own module, every map's loss is a
cross-entropy plus a Dice loop over classes. Nothing here is fast on purpose: it is what the
fast paths of :mod:`lomix_core.supervision` are tested against (values and gradients), and the
timing baseline of the benchmarks.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from .map_loss import DICE_SMOOTH


def mutant(operator: str, members: Sequence[torch.Tensor], module: torch.nn.Module | None = None) -> torch.Tensor:
    """One mutant from its member maps; ``module`` is the subset's trained module for concat and wf."""
    if operator == "add":
        return sum(members[1:], members[0])
    if operator == "mul":
        out = members[0]
        for m in members[1:]:
            out = out * m
        return out
    return module(members)  # LearnedConcat or WeightedFusion: their forward is the one-subset definition


def maps(loss_fn, logits: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Every map ``loss_fn`` supervises, in ``loss_fn.map_names`` order, built one at a time."""
    out = [logits[i] for i in loss_fn.original_indices]
    generator = loss_fn.mutant_generator
    if generator is None:
        return out
    for operator in generator.operators:
        for subset in generator.subsets:
            module = generator.learned(operator, subset) if operator in ("concat", "wf") else None
            out.append(mutant(operator, [logits[i] for i in subset], module))
    return out


def dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """TransUNet's DiceLoss(softmax=True): ``1 - (2 Σpy + ε) / (Σp² + Σy² + ε)`` per class over the
    whole batch, averaged over classes (background included)."""
    probs = logits.softmax(dim=1)
    num_classes = logits.shape[1]
    total = 0.0
    for c in range(num_classes):
        p, y = probs[:, c], (target == c).float()
        intersect = (p * y).sum()
        dice = (2 * intersect + DICE_SMOOTH) / ((p * p).sum() + (y * y).sum() + DICE_SMOOTH)
        total = total + (1 - dice)
    return total / num_classes


def per_map_losses(loss_fn, logits: Sequence[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
    """``ce_weight·CE + dice_weight·Dice`` of every supervised map, ``[M]``."""
    return torch.stack([loss_fn.ce_weight * F.cross_entropy(m, target) + loss_fn.dice_weight * dice_loss(m, target)
                        for m in maps(loss_fn, logits)])


def total(loss_fn, logits: Sequence[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
    """The loss as :class:`~lomix_core.supervision.LoMixLoss` defines it: ``Σ w_i L_i``, plus
    ``½ Σ log σ_i²`` for the uncertainty weighting."""
    return loss_fn.weighting(per_map_losses(loss_fn, logits, target))

"""The LoMix loss written the way the official code computes it: a timing baseline only.

One map at a time: cross-entropy, then a Dice loss that loops over classes and calls
``.item()`` on every class Dice for logging, which forces a host synchronisation per class
(48 maps × 9 classes = 432 per step). The mutants are the readable loop's
(:mod:`lomix_core.reference`), built from the kit's per-subset modules, so only the loss
arithmetic differs from the kit's.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from . import reference


class OfficialStyleLoMixLoss:
    def __init__(self, loss_fn):
        self.loss_fn = loss_fn  # a lomix_core.LoMixLoss: supplies maps, weights and fusion modules

    def maps(self, logits):
        return reference.maps(self.loss_fn, logits)

    def dice_loss(self, logits, target):
        probs = torch.softmax(logits, dim=1)
        num_classes = logits.shape[1]
        onehot = F.one_hot(target, num_classes).permute(0, 3, 1, 2).float()
        loss, class_wise = 0.0, []
        for c in range(num_classes):
            p, y = probs[:, c], onehot[:, c]
            intersect = (p * y).sum()
            dice = 1 - (2 * intersect + 1e-5) / ((p * p).sum() + (y * y).sum() + 1e-5)
            class_wise.append(1.0 - dice.item())  # the official code logs every class: a sync each
            loss = loss + dice
        return loss / num_classes

    def __call__(self, logits, target):
        weights = self.loss_fn.weighting.weights()
        total = 0.0
        for i, m in enumerate(self.maps(logits)):
            ce = F.cross_entropy(m, target)
            total = total + weights[i] * (self.loss_fn.ce_weight * ce + self.loss_fn.dice_weight * self.dice_loss(m, target))
        return total


def untrained_concat(maps):
    """The official concat mutant: a *new* randomly initialised 1×1 conv on every call.

    It is never registered, trained or saved, so each call returns different noise. Shown in
    notebook 02 next to the kit's learned concat.
    """
    conv = torch.nn.Conv2d(sum(m.shape[1] for m in maps), maps[0].shape[1], kernel_size=1).to(maps[0].device)
    return conv(torch.cat(list(maps), dim=1))

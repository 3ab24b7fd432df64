"""LoMix as a MONAI loss: :class:`LoMixDeepSupervisionLoss` for ``DynUNet``'s deep-supervision output.

``monai.networks.nets.DynUNet(..., deep_supervision=True, deep_supr_num=k)`` returns, in training
mode, one tensor ``[B, 1+k, C, *spatial]``: index 0 is the full-resolution output, index i the
i-th supervision head, each one decoder level coarser than the one before (fine → coarse), already
resized to the full resolution by nearest-neighbour interpolation. The kit's :class:`~lomix_core.LoMixLoss`
reads its maps coarse → fine, so this loss reverses them; a list of maps of different sizes is
taken in the same fine → coarse order and every map is upsampled to the largest one (bilinear, or
trilinear in 3-D, as the kit's models do), because LoMix fuses all maps at the target's size.

MONAI's conventions, and where this loss differs:

* ``to_onehot_y=True``: the target holds class indices ``[B, 1, *spatial]`` (or ``[B, *spatial]``);
  ``to_onehot_y=False``: the target is one-hot ``[B, C, *spatial]`` and is read back with argmax.
* The maps are always logits and always go through a softmax (MONAI's ``softmax=True``): the
  mutants fuse logits, so there is no ``sigmoid`` or ``other_act``.
* Each map's loss is ``lambda_ce·CE + lambda_dice·Dice``, which equals MONAI's
  ``DiceCELoss(to_onehot_y=True, softmax=True, include_background=True, squared_pred=True,
  batch=True, smooth_nr=1e-5, smooth_dr=1e-5, lambda_ce=…, lambda_dice=…)`` (checked in the tests).
  Other Dice variants (no background, per-sample Dice) are not offered.
* The result is one scalar (MONAI's ``reduction="mean"``): there is no per-sample or per-class output,
  because the learned weights act on whole maps.
* 3-D maps work: every operator is pointwise (1×1 convolutions at most) and both loss terms pool
  over all voxels of the batch, so a volume ``[B, C, D, H, W]`` is scored as ``[B, C, D·H, W]``.

The learnable parameters (the map weights and the concat / wf modules) live in this module:
give ``loss.parameters()`` to the optimiser with the network's.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from . import require
from ..supervision import LoMixLoss

MONAI_SUPPORTED = ("1.6.1", "1.7")


class LoMixDeepSupervisionLoss(nn.Module):
    """LoMix (or another kit preset) on MONAI deep-supervision outputs.

    Args:
        num_maps: maps the network emits, ``1 + deep_supr_num`` for a ``DynUNet``.
        num_classes: C, background included.
        supervision, operators, weighting, wf_sharing: as :class:`~lomix_core.LoMixLoss`.
        to_onehot_y: the target holds class indices (True) or is one-hot (False), as in MONAI.
        lambda_ce, lambda_dice: the weights of the two terms of every map's loss (the kit's 0.3 and 0.7).
        check_values: check labels and logits (one host sync per call; turn off when it costs).
    """

    def __init__(self, num_maps: int, num_classes: int, supervision: str = "lomix",
                 operators: Sequence[str] | None = None, weighting=None, to_onehot_y: bool = True,
                 lambda_ce: float = 0.3, lambda_dice: float = 0.7, wf_sharing: str = "subset",
                 check_values: bool = True):
        super().__init__()
        if not isinstance(to_onehot_y, bool):
            raise TypeError(f"to_onehot_y must be True (class-index target) or False (one-hot target), got {to_onehot_y!r}")
        self.to_onehot_y = to_onehot_y
        self.lomix = LoMixLoss(num_maps, num_classes, supervision=supervision, operators=operators,
                               weighting=weighting, ce_weight=lambda_ce, dice_weight=lambda_dice,
                               check_values=check_values, wf_sharing=wf_sharing)

    @property
    def num_maps(self) -> int:
        return self.lomix.num_maps

    @property
    def num_classes(self) -> int:
        return self.lomix.num_classes

    def maps_coarse_to_fine(self, outputs: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """The network's maps (stacked ``[B, M, C, *spatial]`` or a list, both fine → coarse) as the
        kit's list, coarse → fine, every map at the finest map's size."""
        if isinstance(outputs, torch.Tensor):
            if outputs.dim() not in (5, 6):
                raise ValueError(f"expected DynUNet's stacked output [B, 1+deep_supr_num, C, H, W] (or 3-D "
                                 f"[B, M, C, D, H, W]) or a list of maps, got a tensor of shape {tuple(outputs.shape)}")
            maps = list(outputs.unbind(dim=1))
        else:
            maps = list(outputs)
        if len(maps) != self.num_maps:
            raise ValueError(f"got {len(maps)} maps, expected num_maps={self.num_maps} (1 + deep_supr_num for a DynUNet)")
        for i, m in enumerate(maps):
            if not isinstance(m, torch.Tensor) or m.dim() not in (4, 5) or m.dim() != maps[0].dim():
                raise ValueError(f"map {i} must be a tensor [B, C, H, W] or [B, C, D, H, W] like map 0, got "
                                 f"{getattr(m, 'shape', type(m))}")
        size = maps[0].shape[2:]
        mode = "bilinear" if maps[0].dim() == 4 else "trilinear"
        resized = [m if m.shape[2:] == size else F.interpolate(m, size=size, mode=mode, align_corners=False)
                   for m in maps]
        return resized[::-1]

    def class_indices(self, target: torch.Tensor, spatial: torch.Size) -> torch.Tensor:
        """The target as class indices ``[B, *spatial]``."""
        if not isinstance(target, torch.Tensor):
            raise TypeError(f"target must be a tensor, got {type(target).__name__}")
        if self.to_onehot_y:
            if target.dim() == len(spatial) + 2 and target.shape[1] == 1:
                target = target[:, 0]
            if tuple(target.shape[1:]) != tuple(spatial):
                raise ValueError(f"target has shape {tuple(target.shape)}, expected class indices [B, 1, "
                                 f"{', '.join(map(str, spatial))}] (to_onehot_y=True) at the output's size")
            if target.dtype.is_floating_point:  # MONAI pipelines load labels as float
                target = target.round()
            return target.long()
        if target.dim() != len(spatial) + 2 or target.shape[1] != self.num_classes or tuple(target.shape[2:]) != tuple(spatial):
            raise ValueError(f"target has shape {tuple(target.shape)}, expected one-hot [B, {self.num_classes}, "
                             f"{', '.join(map(str, spatial))}] (to_onehot_y=False)")
        return target.argmax(dim=1)

    def forward(self, outputs: torch.Tensor | Sequence[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        maps = self.maps_coarse_to_fine(outputs)
        spatial = maps[0].shape[2:]
        labels = self.class_indices(target, spatial)
        if len(spatial) == 3:  # pointwise operators and pooled losses: depth folds into the rows
            maps = [m.flatten(2, 3) for m in maps]
            labels = labels.flatten(1, 2)
        return self.lomix(maps, labels)

    def map_weights(self) -> dict[str, float]:
        return self.lomix.map_weights()


def monai_per_map_loss(lambda_ce: float = 0.3, lambda_dice: float = 0.7):
    """MONAI's ``DiceCELoss`` configured to equal the kit's per-map loss ``a·CE + b·Dice`` (softmax,
    background included, squared probabilities in the denominator, Dice pooled over the batch, 1e-5 smoothing)."""
    require("monai", "monai", MONAI_SUPPORTED)
    from monai.losses import DiceCELoss

    return DiceCELoss(to_onehot_y=True, softmax=True, include_background=True, squared_pred=True, batch=True,
                      smooth_nr=1e-5, smooth_dr=1e-5, lambda_ce=lambda_ce, lambda_dice=lambda_dice)

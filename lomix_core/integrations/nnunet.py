"""LoMix in nnU-Net v2: trainers whose deep-supervision outputs are supervised as a kit preset says.

``nnUNetTrainerLoMix`` is nnU-Net's own ``nnUNetTrainer`` (same plans, network, augmentation, SGD
and poly schedule, sliding-window validation) with one change: :meth:`_build_loss` returns a
:class:`NnUNetLoMixLoss` instead of nnU-Net's ``DeepSupervisionWrapper(DC_and_CE_loss)``.
One trainer per kit preset: ``nnUNetTrainerLoMix`` (lomix), ``nnUNetTrainerLoMix_mutation``,
``nnUNetTrainerLoMix_deep_supervision`` and ``nnUNetTrainerLoMix_nnunet`` (the kit's per-map loss with
nnU-Net's 1/2^i weights, to tell the weighting from the per-map loss). ``last_layer`` has no trainer:
nnU-Net ships it as ``nnUNetTrainerNoDeepSupervision``.

Scales
------
nnU-Net's network returns one logits map per decoder level, fine → coarse (``output[0]`` at the
patch size, ``output[i]`` downsampled by the i-th pooling), and its data loader downsamples the
target to each scale, so that its loss scores every map at that map's own resolution. LoMix cannot
work that way: its mutants add, multiply, concatenate and attend across maps pixel by pixel, so all
maps must share one grid. The kit fuses at the target's full resolution (its models upsample every
head to the input size), and so do these trainers: every coarse map is upsampled bilinearly
(``align_corners=False``) to ``output[0]``'s size and all maps are scored against the full-resolution
target ``target[0]``; the downsampled targets nnU-Net also builds go unused. Fusing at a coarse
scale instead would discard exactly the fine detail the finest map adds.

Only the ``lomix_num_maps`` finest outputs are supervised (4, the paper's decoder maps; nnU-Net's 2D
plans often have 5–7 levels, whose coarsest maps are a few pixels wide and which nnU-Net's own
weights nearly ignore: 1/2^i, and 0 for the coarsest). The number of mutants grows as 2^M, so all
levels would cost much more for maps that carry little.

Learnable parameters
--------------------
nnU-Net builds its optimiser (:meth:`configure_optimizers`) before its loss, so the loss is built
there. Its parameters (map weights, concat and wf modules) do **not** join nnU-Net's SGD: they get an
AdamW of their own at the paper's lr and weight decay (1e-4 each; the paper trains everything with
AdamW), stepped after every SGD step and left alone by nnU-Net's poly schedule. In SGD with
nnU-Net's lr 0.01 and momentum 0.99, each softplus weight's θ, whose gradient σ(θ)·L is positive
and as large as its map's loss, fell by several units within the first epoch: every map weight went
to about 0, the training loss to 0.01, and the network learned nothing (validation Dice 0 after 250
iterations, where nnU-Net's own trainer reached 0.40 on one class). Under AdamW θ moves at most about
its lr per step, as in the paper. With a gradient scaler (CUDA), the loss's gradients are unscaled
here and its step skipped when they are not finite, as the scaler does for nnU-Net's.
The checkpoint (``checkpoint_final.pth``, ``checkpoint_best.pth``, ``checkpoint_latest.pth``) gets
two more keys, ``lomix_loss_state`` and ``lomix_loss_optimizer_state``, restored by
:meth:`load_checkpoint` (``--c`` continues a run with its learned weights and their AdamW moments).
Inference reads ``network_weights`` only, so ``nnUNetv2_predict`` works unchanged (it finds the trainer
class by name: install the shim, see :mod:`lomix_core.integrations.nnunet_shim`).

Budgets
-------
``<trainer>_5epochs`` is 5 epochs of nnU-Net's 250 iterations (as nnU-Net's ``nnUNetTrainer_5epochs``);
``<trainer>_<E>epochs_<I>its`` (see :data:`BUDGETS`) also shortens the epoch, for CPUs and tests.
``nnUNetTrainerBudget_<...>`` is nnU-Net's default trainer at the same budgets, the baseline to compare with.
"""
from __future__ import annotations

import os
import tempfile

import torch
import torch.nn.functional as F
from torch import nn

from . import require
from ..supervision import LoMixLoss

NNUNET_SUPPORTED = ("2.8.1", "2.9")
require("nnunetv2", "nnunet", NNUNET_SUPPORTED)

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer  # noqa: E402

LOSS_STATE_KEY = "lomix_loss_state"
LOSS_OPTIMIZER_KEY = "lomix_loss_optimizer_state"
# name suffix → (epochs, iterations per epoch, validation iterations per epoch); None keeps nnU-Net's
BUDGETS = {
    "5epochs": (5, None, None),
    "1epoch_2its": (1, 2, 1),      # the unit tests and the smoke profile: seconds
    "4epochs_10its": (4, 10, 2),
    "10epochs_25its": (10, 25, 5),
    "20epochs_50its": (20, 50, 5),  # the cpu profile's chapter 08: 1,000 iterations
}


class NnUNetLoMixLoss(nn.Module):
    """A :class:`~lomix_core.LoMixLoss` on nnU-Net's deep-supervision outputs and targets.

    ``forward(outputs, targets)`` takes nnU-Net's lists (fine → coarse; targets ``[B, 1, H, W]``),
    keeps the ``num_maps`` finest outputs, upsamples them to ``outputs[0]``'s size, reverses them to
    the kit's coarse → fine order, and scores them against ``targets[0]``. A single tensor (deep
    supervision off) is one map.
    """

    def __init__(self, num_maps: int, num_classes: int, supervision: str = "lomix", **loss_kwargs):
        super().__init__()
        self.lomix = LoMixLoss(num_maps, num_classes, supervision=supervision, **loss_kwargs)

    @property
    def num_maps(self) -> int:
        return self.lomix.num_maps

    def kit_maps(self, outputs) -> list[torch.Tensor]:
        """The supervised outputs as the kit takes them: coarse → fine, all at the finest map's size."""
        outputs = [outputs] if isinstance(outputs, torch.Tensor) else list(outputs)
        if len(outputs) < self.num_maps:
            raise ValueError(f"the network gives {len(outputs)} deep-supervision outputs, expected at least "
                             f"num_maps={self.num_maps}; build the loss with fewer maps")
        finest = outputs[:self.num_maps]
        size = finest[0].shape[2:]
        mode = "bilinear" if len(size) == 2 else "trilinear"
        return [m if m.shape[2:] == size else F.interpolate(m, size=size, mode=mode, align_corners=False)
                for m in finest][::-1]

    def forward(self, outputs, targets) -> torch.Tensor:
        maps = self.kit_maps(outputs)
        target = targets[0] if isinstance(targets, (list, tuple)) else targets
        if target.dim() != maps[0].dim() or target.shape[1] != 1 or target.shape[2:] != maps[0].shape[2:]:
            raise ValueError(f"target has shape {tuple(target.shape)}, expected nnU-Net's [B, 1, "
                             f"{', '.join(map(str, maps[0].shape[2:]))}] at the finest output's size")
        labels = target[:, 0].round().long() if target.dtype.is_floating_point else target[:, 0].long()
        if labels.dim() == 4:  # 3-D: every operator is pointwise and the losses pool all voxels
            maps, labels = [m.flatten(2, 3) for m in maps], labels.flatten(1, 2)
        return self.lomix(maps, labels)


class nnUNetTrainerLoMix(nnUNetTrainer):
    """nnU-Net's trainer with LoMix supervision (the module docstring says what changes and why)."""

    lomix_supervision = "lomix"
    lomix_num_maps = 4
    lomix_ce_weight, lomix_dice_weight = 0.3, 0.7  # the kit's (and the paper's) per-map loss
    lomix_loss_lr, lomix_loss_weight_decay = 1e-4, 1e-4  # the paper's AdamW, for the loss's own parameters

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.lomix_loss: NnUNetLoMixLoss | None = None
        self.lomix_optimizer: torch.optim.Optimizer | None = None

    # ---- the loss ------------------------------------------------------------------------------
    def build_lomix_loss(self) -> NnUNetLoMixLoss:
        labels = self.label_manager
        if labels.has_regions:
            raise ValueError(f"{type(self).__name__} supervises mutually exclusive classes (softmax); this dataset "
                             f"is region-based, expected a dataset.json without regions")
        if labels.ignore_label is not None:
            raise ValueError(f"{type(self).__name__} has no ignore label; expected a dataset.json without "
                             f"'ignore' (found label {labels.ignore_label})")
        levels = len(self._get_deep_supervision_scales()) if self.enable_deep_supervision else 1
        num_maps = min(self.lomix_num_maps, levels)
        if self.lomix_supervision != "last_layer" and num_maps < 2:
            raise ValueError(f"{type(self).__name__} needs at least 2 deep-supervision outputs; the plan gives {levels}")
        return NnUNetLoMixLoss(num_maps, labels.num_segmentation_heads, supervision=self.lomix_supervision,
                               ce_weight=self.lomix_ce_weight, dice_weight=self.lomix_dice_weight,
                               check_values=False).to(self.device)

    def configure_optimizers(self):
        # nnU-Net builds the optimiser before the loss: the loss is made here, with an AdamW of its own
        # (the module docstring says why not nnU-Net's SGD); the network keeps nnU-Net's SGD and schedule.
        if self.lomix_loss is None:
            self.lomix_loss = self.build_lomix_loss()
        self.lomix_optimizer = torch.optim.AdamW(self.lomix_loss.parameters(), lr=self.lomix_loss_lr,
                                                 weight_decay=self.lomix_loss_weight_decay)
        return super().configure_optimizers()

    def train_step(self, batch: dict) -> dict:
        scale = self.grad_scaler.get_scale() if self.grad_scaler is not None else 1.0  # the one backward uses
        result = super().train_step(batch)  # nnU-Net's step: the loss's parameters get gradients, not a step
        gradients = [p.grad for p in self.lomix_loss.parameters() if p.grad is not None]
        if scale != 1.0:
            for g in gradients:
                g.div_(scale)
        if all(bool(torch.isfinite(g).all()) for g in gradients):
            self.lomix_optimizer.step()
        self.lomix_optimizer.zero_grad(set_to_none=True)
        return result

    def _build_loss(self):
        if self.lomix_loss is None:
            self.lomix_loss = self.build_lomix_loss()
        return self.lomix_loss

    def on_train_epoch_end(self, train_outputs):
        super().on_train_epoch_end(train_outputs)
        weights = self.lomix_loss.lomix.map_weights()
        top = sorted(weights.items(), key=lambda kv: -kv[1])[:3]
        self.print_to_log_file("LoMix map weights, largest: " + ", ".join(f"{k} {v:.4f}" for k, v in top))

    # ---- checkpoints ---------------------------------------------------------------------------
    def save_checkpoint(self, filename: str) -> None:
        super().save_checkpoint(filename)
        if self.local_rank != 0 or self.disable_checkpointing or not os.path.isfile(filename):
            return
        # nnU-Net writes its dict in one torch.save; the loss's state is added to that file, and the
        # file replaced atomically, so a crash leaves nnU-Net's checkpoint or the complete one.
        checkpoint = torch.load(filename, map_location="cpu", weights_only=False)
        checkpoint[LOSS_STATE_KEY] = {k: v.detach().cpu() for k, v in self.lomix_loss.state_dict().items()}
        checkpoint[LOSS_OPTIMIZER_KEY] = self.lomix_optimizer.state_dict()
        folder = os.path.dirname(os.path.abspath(filename))
        handle, temporary = tempfile.mkstemp(dir=folder, prefix=".lomix-", suffix=".pth")
        os.close(handle)
        try:
            torch.save(checkpoint, temporary)
            os.replace(temporary, filename)
        finally:
            if os.path.exists(temporary):
                os.remove(temporary)

    def load_checkpoint(self, filename_or_checkpoint) -> None:
        # nnU-Net 2.8's load_checkpoint reads a file name only (a dict leaves its variable unset)
        super().load_checkpoint(filename_or_checkpoint)
        checkpoint = (torch.load(filename_or_checkpoint, map_location=self.device, weights_only=False)
                      if isinstance(filename_or_checkpoint, str) else filename_or_checkpoint)
        if LOSS_STATE_KEY not in checkpoint:
            raise ValueError(f"checkpoint has no {LOSS_STATE_KEY!r}: it was not written by {type(self).__name__}; "
                             f"expected one of this trainer's checkpoints")
        self.lomix_loss.load_state_dict(checkpoint[LOSS_STATE_KEY])
        if LOSS_OPTIMIZER_KEY in checkpoint:  # absent from checkpoints written before the loss had its own AdamW
            self.lomix_optimizer.load_state_dict(checkpoint[LOSS_OPTIMIZER_KEY])


class nnUNetTrainerLoMix_mutation(nnUNetTrainerLoMix):
    """The kit's ``mutation`` preset (decoder maps and their add-mutants, equal weights) in nnU-Net."""
    lomix_supervision = "mutation"


class nnUNetTrainerLoMix_deep_supervision(nnUNetTrainerLoMix):
    """The kit's ``deep_supervision`` preset (the decoder maps, equal weights, all at full resolution)."""
    lomix_supervision = "deep_supervision"


class nnUNetTrainerLoMix_nnunet(nnUNetTrainerLoMix):
    """nnU-Net's 1/2^i weights (coarsest 0) on the kit's per-map loss at full resolution."""
    lomix_supervision = "nnunet"


PRESET_TRAINERS = (nnUNetTrainerLoMix, nnUNetTrainerLoMix_mutation, nnUNetTrainerLoMix_deep_supervision,
                   nnUNetTrainerLoMix_nnunet)


def with_budget(base: type, suffix: str) -> type:
    """``base`` trained for the budget :data:`BUDGETS` names ``suffix``, as a class nnU-Net can find by name."""
    if suffix not in BUDGETS:
        raise ValueError(f"unknown budget {suffix!r}; expected one of {list(BUDGETS)}")
    epochs, iterations, val_iterations = BUDGETS[suffix]

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        base.__init__(self, plans, configuration, fold, dataset_json, device)
        self.num_epochs = epochs
        if iterations is not None:
            self.num_iterations_per_epoch, self.num_val_iterations_per_epoch = iterations, val_iterations

    name = f"{'nnUNetTrainerBudget' if base is nnUNetTrainer else base.__name__}_{suffix}"
    return type(name, (base,), {"__init__": __init__, "__module__": __name__,
                                "__doc__": f"{base.__name__} for {epochs} epochs"
                                           + (f" of {iterations} iterations" if iterations else "") + "."})


def _all_trainers() -> dict[str, type]:
    trainers = {cls.__name__: cls for cls in PRESET_TRAINERS}
    for base in (nnUNetTrainer, *PRESET_TRAINERS):
        for suffix in BUDGETS:
            cls = with_budget(base, suffix)
            trainers[cls.__name__] = cls
    return trainers


TRAINERS = _all_trainers()
globals().update(TRAINERS)  # nnU-Net looks trainers up as module attributes, by name
__all__ = ["NnUNetLoMixLoss", "TRAINERS", "BUDGETS", *TRAINERS]

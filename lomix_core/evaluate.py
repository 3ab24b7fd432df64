"""Evaluation: per-subject 3-D Dice of the finest map, one row per (subject, foreground class).

Slices are predicted in 2-D, stacked back into each subject's volume in slice order, and scored
as one 3-D volume per subject, as in TransUNet. Only ``logits[-1]`` (the finest map) is used:
the mutants and coarse heads exist for training alone.
"""
from __future__ import annotations

import pandas as pd
import torch
from torch import nn

from .data.slices import SliceDataset

DICE_CONVENTION = ("3-D Dice per subject and foreground class (TransUNet/medpy convention): "
                   "prediction and ground truth both present -> Dice; prediction present and "
                   "ground truth empty -> 1; prediction empty -> 0")


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 16, amp: bool = False) -> torch.Tensor:
    """Class index per pixel ``[N, H, W]`` from the model's finest map, on ``images``' device."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    preds = []
    try:
        for start in range(0, images.shape[0], batch_size):
            batch = images[start:start + batch_size].to(device)
            with torch.autocast(device.type, enabled=amp and device.type == "cuda"):
                preds.append(model(batch)[-1].argmax(dim=1).to(images.device))
    finally:
        model.train(was_training)
    return torch.cat(preds)


def dice_per_class(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Dice of every foreground class (1..C-1) between two label volumes, by :data:`DICE_CONVENTION`."""
    confusion = torch.bincount((pred.reshape(-1) * num_classes + target.reshape(-1)).long(),
                               minlength=num_classes * num_classes).view(num_classes, num_classes)
    overlap = confusion.diag()[1:].double()
    in_pred, in_target = confusion.sum(1)[1:].double(), confusion.sum(0)[1:].double()
    dice = 2 * overlap / (in_pred + in_target).clamp(min=1)
    dice = torch.where(in_target == 0, torch.ones_like(dice), dice)
    return torch.where(in_pred == 0, torch.zeros_like(dice), dice)


def evaluate(model: nn.Module, dataset: SliceDataset, batch_size: int = 16, amp: bool = False) -> pd.DataFrame:
    """Tidy results: columns ``subject, class_index, class_name, dice``; the convention in ``.attrs``."""
    rows = []
    for subject, indices in dataset.subject_slices().items():
        pred = predict(model, dataset.images[indices], batch_size=batch_size, amp=amp)
        dice = dice_per_class(pred, dataset.labels[indices], dataset.num_classes)
        rows += [{"subject": subject, "class_index": c, "class_name": dataset.class_names[c], "dice": float(d)}
                 for c, d in enumerate(dice.tolist(), start=1)]
    frame = pd.DataFrame(rows)
    frame.attrs["convention"] = DICE_CONVENTION
    return frame


def mean_dice(results: pd.DataFrame) -> float:
    """Mean over subjects of the mean over foreground classes (the paper's headline DSC)."""
    return float(results.groupby("subject")["dice"].mean().mean())

"""Evaluation: per-volume 3-D Dice and HD95 of the finest map, one row per (volume, foreground class).

Slices are predicted in 2-D, stacked back into each volume in slice order, and scored as one
3-D volume, as in TransUNet. Only ``logits[-1]`` (the finest map) is used: the mutants and the
coarse heads exist for training alone.

Each (volume, class) pair follows TransUNet's ``calculate_metric_percase`` (built on medpy):

* prediction and ground truth both present → medpy's ``dc`` and ``hd95``;
* prediction present, ground truth empty → Dice 1, HD95 0;
* prediction empty → Dice 0, HD95 0.

The rules for an empty ground truth reward a false positive and punish a correct "absent", so
the means leave out the pairs whose ground truth is empty. On Synapse every test volume holds
every organ, so nothing is left out and the means equal TransUNet's.

**Resolution.** Scores are taken at each scan's own in-plane resolution against labels that were
never resampled, as in the paper: the model predicts at its input size, and its logits are brought
back to the scan's grid (:func:`~lomix_core.data.preprocessing.native_argmax`). ``hd95`` is in
voxels of that grid (TransUNet's convention: every axis counts 1), ``hd95_mm`` in millimetres where
the source gives a spacing (NaN otherwise). The results' ``attrs["resolution"]`` says which grid
was scored.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from scipy import ndimage
from torch import nn

from ..data.preprocessing import as_float, native_argmax
from ..data.slices import SliceDataset

CONVENTION = ("3-D Dice and HD95 per volume and foreground class (TransUNet/medpy convention), scored at each "
              "scan's own resolution against labels never resampled: both present -> medpy dc and hd95; "
              "prediction present, ground truth empty -> 1, 0; prediction empty -> 0, 0. Means: per class over "
              "the volumes whose ground truth holds it, then over classes. HD95 in voxels of the scan's grid "
              "(hd95) and in mm where the spacing is known (hd95_mm).")


@torch.no_grad()
def finest_logits(model: nn.Module, images: torch.Tensor, batch_size: int = 16, amp: bool = False,
                  tta: bool = False) -> Iterator[torch.Tensor]:
    """The model's finest map for ``images`` (uint8 or float, on the model grid), ``batch_size``
    slices at a time, as float32 on the CPU. ``tta`` averages the softmax of the image and its
    left-right and up-down flips (test-time augmentation; the result is then probabilities)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        for start in range(0, images.shape[0], batch_size):
            batch = as_float(images[start:start + batch_size]).to(device)
            with torch.autocast(device.type, enabled=amp and device.type == "cuda"):
                if not tta:
                    yield model(batch)[-1].float().cpu()
                    continue
                probabilities = model(batch)[-1].float().softmax(1)
                for dims in ((-1,), (-2,)):
                    probabilities += model(batch.flip(dims))[-1].float().softmax(1).flip(dims)
                yield (probabilities / 3).cpu()
    finally:
        model.train(was_training)


def predict_slices(model: nn.Module, images: torch.Tensor, batch_size: int = 16, amp: bool = False) -> torch.Tensor:
    """Class index per pixel ``[N, H, W]`` on the model grid, from the model's finest map."""
    return torch.cat([logits.argmax(dim=1) for logits in finest_logits(model, images, batch_size, amp)])


def predict_native(model: nn.Module, images: torch.Tensor, shape: Sequence[int], aspect: str = "pad",
                   batch_size: int = 16, amp: bool = False, tta: bool = False, method: str = "logits") -> torch.Tensor:
    """Class index per pixel ``[N, H, W]`` (uint8) at the scan's in-plane ``shape`` from model-grid
    ``images``: each batch's logits are brought back (:func:`native_argmax`) before the next is run,
    so a 512² volume never holds all its logits at once."""
    return torch.cat([native_argmax(logits, shape, aspect, method)
                      for logits in finest_logits(model, images, batch_size, amp, tta)])


def dice_per_class(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Dice of every foreground class (1..C-1) between two label volumes, by :data:`CONVENTION`."""
    confusion = torch.bincount(pred.reshape(-1).long() * num_classes + target.reshape(-1).long(),
                               minlength=num_classes * num_classes).view(num_classes, num_classes)
    overlap = confusion.diag()[1:].double()
    in_pred, in_target = confusion.sum(1)[1:].double(), confusion.sum(0)[1:].double()
    dice = 2 * overlap / (in_pred + in_target).clamp(min=1)
    dice = torch.where(in_target == 0, torch.ones_like(dice), dice)
    return torch.where(in_pred == 0, torch.zeros_like(dice), dice)


def _border(mask: np.ndarray) -> np.ndarray:
    """The mask's voxels that touch the outside along a face (medpy's surface definition)."""
    return mask ^ ndimage.binary_erosion(mask, structure=ndimage.generate_binary_structure(mask.ndim, 1))


def hd95(pred: np.ndarray, target: np.ndarray, spacing: Sequence[float] | None = None) -> float:
    """95th percentile of the symmetric surface distances, as medpy's ``hd95``; both masks non-empty.

    Distances are measured inside the bounding box of both masks. That is exact (every surface
    voxel and its nearest partner lie inside, and a mask voxel on the box's edge is a surface
    voxel either way) and far cheaper than the whole volume.
    """
    pred, target = np.asarray(pred, bool), np.asarray(target, bool)
    if not pred.any() or not target.any():
        raise ValueError("hd95 needs both masks non-empty; the convention decides empty cases")
    corners = np.argwhere(pred | target)
    box = tuple(slice(lo, hi + 1) for lo, hi in zip(corners.min(0), corners.max(0)))
    pred, target = pred[box], target[box]
    pred_border, target_border = _border(pred), _border(target)
    to_target = ndimage.distance_transform_edt(~target_border, sampling=spacing)[pred_border]
    to_pred = ndimage.distance_transform_edt(~pred_border, sampling=spacing)[target_border]
    return float(np.percentile(np.hstack((to_target, to_pred)), 95))


def volume_metrics(pred: torch.Tensor, target: torch.Tensor, num_classes: int, with_hd95: bool = True,
                   spacing: Sequence[float] | None = None) -> pd.DataFrame:
    """Dice, HD95 (voxels, and mm when ``spacing`` is given) and ground-truth presence of classes
    1..C-1 between two label volumes."""
    pred, target = torch.as_tensor(pred).long(), torch.as_tensor(target).long()
    pred_np, target_np = pred.cpu().numpy(), target.cpu().numpy()
    rows = []
    for c, dice in enumerate(dice_per_class(pred, target, num_classes).tolist(), start=1):
        in_pred, in_target = pred_np == c, target_np == c
        present, predicted = bool(in_target.any()), bool(in_pred.any())
        voxels = mm = float("nan")
        if with_hd95:
            both = present and predicted  # otherwise the convention says 0
            voxels = hd95(in_pred, in_target) if both else 0.0
            if spacing is not None:
                mm = hd95(in_pred, in_target, spacing) if both else 0.0
        rows.append({"class_index": c, "dice": dice, "hd95": voxels, "hd95_mm": mm, "gt_present": present})
    return pd.DataFrame(rows)


def evaluate(model: nn.Module, dataset: SliceDataset, batch_size: int = 16, amp: bool = False,
             with_hd95: bool = True, method: str = "logits", tta: bool = False) -> pd.DataFrame:
    """Tidy results at each scan's own resolution, one row per volume and foreground class.

    Columns: ``volume, class_index, class_name, dice, hd95, hd95_mm, gt_present``; in ``.attrs``,
    :data:`CONVENTION` (``"convention"``) and the grid scored (``"resolution"``). ``with_hd95=False``
    skips the distance transforms (model selection needs Dice only) and leaves the HD95 columns NaN.
    ``method`` brings predictions back to the scan's grid (:func:`native_argmax`).
    """
    frames = []
    for volume, indices in dataset.subject_slices().items():
        native = dataset.native_grid(volume, indices)
        pred = predict_native(model, dataset.images[indices], native.shape, dataset.preprocessing.aspect,
                              batch_size=batch_size, amp=amp, tta=tta, method=method)
        metrics = volume_metrics(pred, native.labels, dataset.num_classes, with_hd95=with_hd95, spacing=native.spacing)
        metrics.insert(0, "volume", volume)
        metrics.insert(2, "class_name", [dataset.class_names[c] for c in metrics["class_index"]])
        frames.append(metrics)
    frame = pd.concat(frames, ignore_index=True)
    frame.attrs.update(convention=CONVENTION, resolution=dataset.resolution)
    return frame


def per_class(results: pd.DataFrame) -> pd.DataFrame:
    """Mean Dice and HD95 (voxels, and mm) per class over the volumes whose ground truth holds the class."""
    present = results[results["gt_present"]]
    columns = [c for c in ("dice", "hd95", "hd95_mm") if c in present]
    return present.groupby("class_name", sort=False)[columns].mean()


def mean_dice(results: pd.DataFrame) -> float:
    """The headline DSC: mean over classes of each class's mean over volumes (see the module doc)."""
    return float(per_class(results)["dice"].mean())


def mean_hd95(results: pd.DataFrame, unit: str = "voxels") -> float:
    """The headline HD95 in ``unit`` ("voxels", TransUNet's, or "mm"), averaged like :func:`mean_dice`;
    NaN in mm when a volume's spacing is unknown."""
    if unit not in ("voxels", "mm"):
        raise ValueError(f"unit must be 'voxels' or 'mm', got {unit!r}")
    return float(per_class(results)["hd95" if unit == "voxels" else "hd95_mm"].mean(skipna=False))


@torch.no_grad()
def evaluate_maps(model: nn.Module, loss_fn: nn.Module, dataset: SliceDataset, batch_size: int = 16) -> pd.DataFrame:
    """Every supervised map scored as if it were the prediction: one row per map of
    ``loss_fn.map_names`` with its mean 3-D Dice on ``dataset`` (at native resolution, averaged
    like :func:`mean_dice`) and the weight the loss gives it. Shows whether a map's learned weight
    says how good it is."""
    was_training = model.training, loss_fn.training
    model.eval(), loss_fn.eval()
    device = next(model.parameters()).device
    rows = []
    try:
        for volume, indices in dataset.subject_slices().items():
            native = dataset.native_grid(volume, indices)
            preds = []
            for i in range(0, len(indices), batch_size):
                maps = loss_fn.mutants(model(dataset.image_batch(indices[i:i + batch_size]).to(device))).cpu()
                preds.append(torch.stack([native_argmax(m, native.shape, dataset.preprocessing.aspect) for m in maps]))
            pred, labels = torch.cat(preds, dim=1).long(), native.labels.long()  # [M, N, H, W], [N, H, W]
            present = foreground_present(labels, dataset.num_classes)
            for name, map_pred in zip(loss_fn.map_names, pred):
                rows += [{"map": name, "volume": volume, "class_index": c + 1, "dice": d}
                         for c, d in enumerate(dice_per_class(map_pred, labels, dataset.num_classes).tolist())
                         if present[c]]
    finally:
        model.train(was_training[0]), loss_fn.train(was_training[1])
    per_class = pd.DataFrame(rows).groupby(["map", "class_index"], sort=False)["dice"].mean()
    table = per_class.groupby("map", sort=False).mean().to_frame("dice")
    table["weight"] = pd.Series(loss_fn.map_weights())
    table["operator"] = [name.split("(")[0] if "(" in name else "decoder" for name in table.index]
    return table


def foreground_present(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Which foreground classes (1..C-1) occur in ``labels``: a boolean ``[C-1]``."""
    return torch.bincount(labels.reshape(-1).long(), minlength=num_classes)[1:] > 0


def slice_dice(pred: torch.Tensor, label: torch.Tensor, num_classes: int) -> float | None:
    """Mean 2-D Dice of one slice over the foreground classes its label holds (None if none)."""
    present = foreground_present(label, num_classes)
    return dice_per_class(pred, label, num_classes)[present].mean().item() if present.any() else None


def slice_scores(predictions: torch.Tensor, dataset: SliceDataset) -> pd.DataFrame:
    """:func:`slice_dice` of every slice with foreground, for picking the best and worst
    predictions to look at. ``predictions [N, H, W]`` are class indices for every slice."""
    rows = [{"index": i, "volume": dataset.subjects[i], "slice": dataset.slice_index[i],
             "dice": slice_dice(pred, label, dataset.num_classes),
             "classes": int(foreground_present(label, dataset.num_classes).sum())}
            for i, (pred, label) in enumerate(zip(predictions, dataset.labels))]
    return pd.DataFrame([row for row in rows if row["dice"] is not None]).set_index("index")

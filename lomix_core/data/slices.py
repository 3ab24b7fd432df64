"""The dataset every loader returns: 2-D slices that remember which 3-D subject they came from."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch.utils.data import Dataset

from .preprocessing import Preprocessing, as_float


@dataclass(frozen=True)
class NativeGrid:
    """A subject as it was scanned: its labels on the scan's own in-plane grid, never resampled, and
    the voxel spacing in mm ``(slice, row, column)`` where the source states it."""

    labels: torch.Tensor  # uint8 [D, H, W]
    spacing: tuple[float, float, float] | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.labels.shape[-2:])


class SliceDataset(Dataset):
    """Images ``[N, channels, H, W]`` and labels ``[N, H, W]`` on the model's grid, one row per slice.

    Storage is compact: labels are uint8, and images are uint8 (0..255) where the source is 8-bit,
    float32 in [0, 1] otherwise; ``dataset[i]`` and :meth:`image_batch` give float32 in [0, 1]
    and int64 labels. 352-px polyp images take 0.4 MB a slice instead of 2.0 MB.

    ``stored`` (a training set loaded with ``augment="official"``) keeps each slice as it was stored,
    before resizing (512² on Synapse), because the official augmentation runs there and zooms itself.

    ``subjects[i]`` and ``slice_index[i]`` place slice i in its volume, so evaluation can stack
    a subject's slices back into a 3-D volume and score it as one. ``native[subject]`` holds that
    volume's labels at the scan's own resolution (:class:`NativeGrid`), which evaluation scores
    against; ``preprocessing`` says how scans became these slices (and how ``predict`` must treat a
    new one). A dataset without ``native`` is scored on its own grid.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, subjects: Sequence[str],
                 slice_index: Sequence[int], class_names: Sequence[str],
                 transform: Callable | None = None, name: str = "", split: str = "",
                 native: dict[str, NativeGrid] | None = None, preprocessing: Preprocessing | None = None,
                 stored: tuple[Sequence[torch.Tensor], Sequence[torch.Tensor]] | None = None):
        if not isinstance(images, torch.Tensor) or not isinstance(labels, torch.Tensor):
            raise TypeError(f"images and labels must be torch tensors, got {type(images).__name__} and "
                            f"{type(labels).__name__} (use torch.from_numpy)")
        if images.dim() != 4 or labels.dim() != 3 or images.shape[0] != labels.shape[0] \
                or images.shape[-2:] != labels.shape[-2:]:
            raise ValueError(f"images must be [N,channels,H,W] and labels [N,H,W] with matching N,H,W; "
                             f"got {tuple(images.shape)} and {tuple(labels.shape)}")
        if not (len(subjects) == len(slice_index) == images.shape[0]):
            raise ValueError(f"subjects and slice_index need one entry per slice: got {len(subjects)} and "
                             f"{len(slice_index)} for {images.shape[0]} slices")
        where = f"{name or 'dataset'}" + (f"/{split}" if split else "")
        _check_values(images, labels, len(class_names), subjects, slice_index, where)
        if len(class_names) > 256:
            raise ValueError(f"{where}: {len(class_names)} classes do not fit uint8 labels; expected at most 256")
        self.images = images if images.dtype == torch.uint8 else images.float()
        self.labels = labels.to(torch.uint8)
        self.subjects, self.slice_index = list(subjects), list(slice_index)
        self.class_names = tuple(class_names)
        self.transform, self.name, self.split = transform, name, split
        if native is not None and set(native) != set(self.subjects):
            raise ValueError(f"{where}: native grids are given for {sorted(native)[:3]}..., expected one per subject")
        self.native = native
        if stored is not None and not (len(stored[0]) == len(stored[1]) == len(self)):
            raise ValueError(f"{where}: stored slices are given for {len(stored[0])} images and {len(stored[1])} "
                             f"labels; expected one of each per slice ({len(self)})")
        self.stored = None if stored is None else (list(stored[0]), list(stored[1]))
        self.preprocessing = preprocessing or Preprocessing(size=tuple(images.shape[-2:]), class_names=class_names,
                                                            intensity=({"kind": "unit"},) * images.shape[1])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def in_channels(self) -> int:
        return self.images.shape[1]

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.stored is not None and getattr(self.transform, "needs_stored_grid", False):
            # the official augmentation: on the slice as stored, then its own zoom to the model grid
            image, label = as_float(self.stored[0][i]), self.stored[1][i].long()
        else:
            image, label = as_float(self.images[i]), self.labels[i].long()
        if self.transform is not None:
            image, label = self.transform(image, label)
        return image, label

    def image_batch(self, indices=None) -> torch.Tensor:
        """Images ``indices`` (all when None) as float32 in [0, 1], ``[B, channels, H, W]``, without augmentation."""
        return as_float(self.images if indices is None else self.images[indices])

    def joined(self, other: "SliceDataset") -> "SliceDataset":
        """This dataset and ``other``'s slices in one, with this one's augmentation (the official
        protocol trains on the training and validation subjects together). Both must come from the
        same preprocessing and share no subject; the result keeps no native grids (it is trained on,
        not scored)."""
        if other.preprocessing != self.preprocessing or other.images.dtype != self.images.dtype:
            raise ValueError(f"cannot join {other!r} to {self!r}: they were prepared differently; expected two "
                             f"splits of one dataset loaded with the same settings")
        shared = sorted(set(self.subjects) & set(other.subjects))
        if shared:
            raise ValueError(f"cannot join {other!r} to {self!r}: both hold subjects {shared[:3]}; expected "
                             f"disjoint splits")
        if (self.stored is None) != (other.stored is None):
            raise ValueError(f"cannot join {other!r} to {self!r}: only one keeps its slices as stored (loaded with "
                             f"augment='official'); expected both loaded with the same augment")
        stored = None if self.stored is None else (self.stored[0] + other.stored[0], self.stored[1] + other.stored[1])
        return SliceDataset(torch.cat([self.images, other.images]), torch.cat([self.labels, other.labels]),
                            self.subjects + other.subjects, self.slice_index + other.slice_index, self.class_names,
                            transform=self.transform, name=self.name, split=f"{self.split}+{other.split}",
                            preprocessing=self.preprocessing, stored=stored)

    def native_grid(self, subject: str, indices: list[int] | None = None) -> NativeGrid:
        """``subject`` at the scan's own resolution; a dataset without ``native`` is its own grid
        (``indices``, the subject's slices in order, saves looking them up)."""
        if self.native is not None:
            return self.native[subject]
        return NativeGrid(self.labels[self.subject_slices()[subject] if indices is None else indices])

    @property
    def resolution(self) -> str:
        """Where evaluation scores this dataset: "native" (each scan's own grid) or "model grid HxW"."""
        return "native" if self.native is not None else "model grid {}x{}".format(*self.images.shape[-2:])

    def subject_slices(self) -> dict[str, list[int]]:
        """Subject → indices of its slices in slice order (for 3-D evaluation)."""
        out: dict[str, list[int]] = {}
        for i in sorted(range(len(self)), key=lambda i: (self.subjects[i], self.slice_index[i])):
            out.setdefault(self.subjects[i], []).append(i)
        return out

    def busiest_slice(self) -> int:
        """Index of the slice showing the most classes: a good one to look at."""
        present = torch.zeros(len(self), self.num_classes, dtype=torch.bool)
        present.scatter_(1, self.labels.flatten(1).long(), True)
        return int(present.sum(1).argmax())

    def class_statistics(self) -> "pd.DataFrame":
        """Per class: its voxels, their share of all voxels, and how many slices and volumes show it."""
        import pandas as pd

        one_hot = torch.zeros(len(self), self.num_classes, dtype=torch.long)
        flat = self.labels.flatten(1).long()
        one_hot.scatter_add_(1, flat, torch.ones_like(flat))
        subject_ids = torch.tensor([sorted(set(self.subjects)).index(s) for s in self.subjects])
        shown = one_hot > 0
        volumes = [int(subject_ids[shown[:, c]].unique().numel()) for c in range(self.num_classes)]
        voxels = one_hot.sum(0)
        return pd.DataFrame({"class_name": self.class_names, "voxels": voxels.numpy(),
                             "fraction": (voxels / voxels.sum()).numpy(), "slices": shown.sum(0).numpy(),
                             "volumes": volumes})

    def __repr__(self) -> str:
        return (f"SliceDataset({self.name!r}, split={self.split!r}, slices={len(self)}, "
                f"subjects={len(set(self.subjects))}, size={tuple(self.images.shape[-2:])}, "
                f"classes={self.num_classes})")


def _check_values(images: torch.Tensor, labels: torch.Tensor, num_classes: int, subjects: Sequence[str],
                  slice_index: Sequence[int], where: str) -> None:
    """Raise one line, naming the first bad slice, on a NaN or inf in the images, or a label that is not an
    integer in ``[0, num_classes)``. A few passes over the data, once, when the dataset is built."""
    def place(i: int) -> str:
        return f"slice {slice_index[i]} of subject {subjects[i]!r}"

    if images.is_floating_point() and len(images):
        # Chunked, so a large dataset needs no second image-sized (boolean) copy.
        finite = torch.cat([torch.isfinite(chunk).flatten(1).all(1) for chunk in images.split(256)])
        if not finite.all():
            bad = int((~finite).nonzero()[0])
            count = int((~torch.isfinite(images[bad])).sum())
            raise ValueError(f"{where}: the image of {place(bad)} holds {count} NaN or inf values; "
                             f"expected finite intensities")
    if labels.is_floating_point():
        whole = labels == labels.round()
        if not whole.all():
            bad = int((~whole.flatten(1).all(1)).nonzero()[0])
            raise ValueError(f"{where}: the label of {place(bad)} holds non-integer values; expected class indices "
                             f"in [0, {num_classes})")
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        outside = ((labels < 0) | (labels >= num_classes)).flatten(1).any(1)
        bad = int(outside.nonzero()[0])
        values = labels[bad][(labels[bad] < 0) | (labels[bad] >= num_classes)].unique()[:10].tolist()
        raise ValueError(f"{where}: the label of {place(bad)} holds values {values}; expected class indices in "
                         f"[0, {num_classes - 1}] for {num_classes} classes")

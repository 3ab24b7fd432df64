"""Where a NIfTI volume's voxels lie in the scanner's space, and how two volumes' grids compare.

A NIfTI file's affine maps voxel indices to millimetres. It splits into a **spacing** (the voxel
size along each array axis), an **origin** (where voxel (0, 0, 0) lies) and a **direction** (the
unit vector each array axis points along). An image and its label must agree on all four with the
shape: a label with the same shape but a mirrored direction, another spacing or a shifted origin
covers different anatomy, and a model trained on it learns masks that miss the organs.

The **orientation** is the direction rounded to the nearest patient axes, as nibabel's axis
codes: each letter names where an array axis points, so ``RAS`` is x → right, y → anterior,
z → superior (NIfTI's world frame), and ``LPS`` (DICOM's) is x → left, y → posterior, z → superior.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Iterable

import numpy as np

# Spacing is compared relative to its size, direction cosines absolutely, the origin in units of
# the smallest voxel side: float32 affines written by different tools agree far closer than this.
TOLERANCE = 1e-3


@dataclass(frozen=True)
class Geometry:
    shape: tuple[int, ...]
    spacing: tuple[float, float, float]  # mm along each array axis
    origin: tuple[float, float, float]  # mm, of voxel (0, 0, 0)
    direction: tuple[tuple[float, ...], ...]  # rows: the unit vector of each array axis, in RAS+ mm

    @classmethod
    def of(cls, shape, affine) -> "Geometry":
        affine = np.asarray(affine, dtype=np.float64)
        columns = affine[:3, :3]
        spacing = np.linalg.norm(columns, axis=0)
        direction = (columns / np.where(spacing > 0, spacing, 1)).T
        return cls(tuple(int(n) for n in shape), tuple(float(v) for v in spacing),
                   tuple(float(v) for v in affine[:3, 3]), tuple(tuple(float(v) for v in row) for row in direction))

    @property
    def orientation(self) -> str:
        """Axis codes, e.g. ``"RAS"`` or ``"LPS"`` (nibabel's ``aff2axcodes``)."""
        import nibabel as nib

        return "".join(nib.orientations.ornt2axcodes(nib.orientations.io_orientation(self.axes_affine())))

    def axes_affine(self) -> np.ndarray:
        affine = np.eye(4)
        affine[:3, :3] = np.asarray(self.direction).T * np.asarray(self.spacing)
        affine[:3, 3] = self.origin
        return affine


def _shown(values) -> tuple:
    """``values`` (numbers, or rows of them) rounded for a message: float32 affines carry noise in the 7th digit."""
    if values and isinstance(values[0], tuple):
        return tuple(_shown(row) for row in values)
    return tuple(round(float(v), 4) + 0.0 for v in values)  # + 0.0 turns -0.0 into 0.0


def grid_faults(image: Geometry, label: Geometry, image_name: str, label_name: str) -> list[str]:
    """One line per way the label's grid differs from its image's, naming both files and values."""
    faults = []
    if image.shape != label.shape:
        return [f"{image_name} has shape {image.shape} but its label {label_name} has shape {label.shape}"]
    if not np.allclose(image.spacing, label.spacing, rtol=TOLERANCE, atol=0):
        faults.append(f"{image_name} has spacing {_shown(image.spacing)} mm but its label {label_name} has "
                      f"{_shown(label.spacing)} mm (resample the label onto the image's grid)")
    if not np.allclose(image.direction, label.direction, rtol=0, atol=TOLERANCE):
        faults.append(f"{image_name} has direction {_shown(image.direction)} ({image.orientation}) but its label "
                      f"{label_name} has {_shown(label.direction)} ({label.orientation}): the label's voxels are "
                      f"mirrored or rotated against the image's (resample the label onto the image's grid)")
    if not np.allclose(image.origin, label.origin, rtol=0, atol=TOLERANCE * min(image.spacing)):
        faults.append(f"{image_name} has origin {_shown(image.origin)} mm but its label {label_name} has "
                      f"{_shown(label.origin)} mm (the label is shifted; resample it onto the image's grid)")
    return faults


def orientation_of(affine) -> str:
    """The axis codes of a voxel-to-mm ``affine``, e.g. ``"RAS"`` or ``"LPS"``."""
    import nibabel as nib

    return "".join(nib.orientations.aff2axcodes(np.asarray(affine)))


def most_common_orientation(orientations: Iterable[str]) -> str:
    """The axis codes most of ``orientations`` share, the first in sorted order on a tie: the
    orientation a set of scans is brought to when no one is asked for."""
    counts = Counter(orientations)
    if not counts:
        raise ValueError("no orientation to choose from: expected the axis codes of at least one scan")
    return min(counts, key=lambda codes: (-counts[codes], codes))


@dataclass(frozen=True)
class Reorientation:
    """Flips and a transpose of the three voxel axes that bring a volume stored in ``source`` axis
    codes to ``target`` ones; no voxel is resampled, so :meth:`undo` gives back the stored array."""
    source: str
    target: str

    def __post_init__(self):
        for codes in (self.source, self.target):
            if len(codes) != 3 or sorted(_axis_of(c) for c in codes) != [0, 1, 2]:
                raise ValueError(f"axis codes must name each of L/R, P/A, I/S once, e.g. 'RAS', got {codes!r}")

    @property
    def identity(self) -> bool:
        return self.source == self.target

    def _ornt(self, forward: bool) -> np.ndarray:
        import nibabel as nib

        start, end = (nib.orientations.axcodes2ornt(tuple(c)) for c in (self.source, self.target))
        return nib.orientations.ornt_transform(start, end) if forward else nib.orientations.ornt_transform(end, start)

    def apply(self, volume: np.ndarray) -> np.ndarray:
        """``volume [X, Y, Z, ...]`` in ``source`` order → in ``target`` order (trailing axes kept)."""
        return self._turn(volume, forward=True)

    def undo(self, volume: np.ndarray) -> np.ndarray:
        """The inverse of :meth:`apply`: back to the stored voxel order."""
        return self._turn(volume, forward=False)

    def _turn(self, volume: np.ndarray, forward: bool) -> np.ndarray:
        import nibabel as nib

        if self.identity:
            return volume
        return np.ascontiguousarray(nib.orientations.apply_orientation(volume, self._ornt(forward)))

    def spacing(self, spacing) -> tuple[float, float, float]:
        """Voxel sizes of the stored axes, in the order of the reoriented ones."""
        moved = [0.0, 0.0, 0.0]
        for axis, (new_axis, _) in enumerate(self._ornt(True)):
            moved[int(new_axis)] = float(spacing[axis])
        return tuple(moved)


def _axis_of(code: str) -> int:
    for axis, pair in enumerate(("LR", "PA", "IS")):
        if code in pair:
            return axis
    return -1

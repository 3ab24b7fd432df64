"""Augmentation: geometry applied identically to an image and its label, and intensity to the image.

Three recipes, picked by :func:`make_transform` from a loader's ``augment`` argument:
``"kit"`` (or True) is :class:`RandomRotFlip`, ``"official"`` is :class:`OfficialRotFlip`, and
``"intensity"`` is :class:`RandomRotFlip` then :class:`IntensityJitter`, for models that must read
scans from other scanners. The official protocol never gets the intensity one: its code has none.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

AUGMENTS = (False, True, "kit", "official", "intensity")


class RandomRotFlip:
    """A random rot90, a random flip and a small random rotation, as in TransUNet's pipeline.

    Draws from torch's global RNG, so a seeded run with ``num_workers=0`` repeats exactly. The
    label is resampled with nearest neighbour, so it keeps integer class values.
    """

    def __init__(self, p_rot90: float = 0.5, p_flip: float = 0.5, p_rotate: float = 0.5, max_degrees: float = 20.0):
        self.p_rot90, self.p_flip, self.p_rotate, self.max_degrees = p_rot90, p_flip, p_rotate, max_degrees

    def __call__(self, image: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if torch.rand(()) < self.p_rot90:
            k = int(torch.randint(1, 4, ()))
            image, label = image.rot90(k, dims=(-2, -1)), label.rot90(k, dims=(-2, -1))
        if torch.rand(()) < self.p_flip:
            dim = -1 if torch.rand(()) < 0.5 else -2
            image, label = image.flip(dim), label.flip(dim)
        if torch.rand(()) < self.p_rotate:
            degrees = (torch.rand(()) * 2 - 1).item() * self.max_degrees
            image, label = rotate(image, label, degrees)
        return image.contiguous(), label.contiguous()


def rotate(image: torch.Tensor, label: torch.Tensor, degrees: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate ``image [C,H,W]`` (bilinear) and ``label [H,W]`` (nearest) about the centre."""
    a = math.radians(degrees)
    theta = torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]])
    grid = F.affine_grid(theta[None], [1, 1, *image.shape[-2:]], align_corners=False)
    image = F.grid_sample(image[None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0]
    label = F.grid_sample(label[None, None].float(), grid, mode="nearest", padding_mode="zeros",
                          align_corners=False)[0, 0].long()
    return image, label


class OfficialRotFlip:
    """The official code's ``RandomGenerator`` (LoMix ``utils/dataset_synapse.py``): its geometry on
    the slice as stored, then its zoom to the model grid.

    With probability 0.5 a rot90 by k ∈ {0, 1, 2, 3} then a flip along one of the two in-plane
    axes (each uniform); otherwise, with probability 0.5 (0.25 overall), a rotation by an integer
    angle uniform in [-20, 19] degrees (numpy's ``randint(-20, 20)``) with nearest-neighbour
    interpolation for the image as well as the label, zeros outside (``scipy.ndimage.rotate``,
    ``order=0, reshape=False``, exactly as the official code calls it); otherwise (0.25) nothing.
    Then, where the slice is not ``output_size`` already, the official zoom to it: the image with
    ``scipy.ndimage.zoom(order=3)`` (a cubic spline, which smooths a rotation's nearest-neighbour
    staircase), the label with ``order=0``. A loader built on :func:`~lomix_core.data.volumes.stack_subjects`
    keeps its training slices as stored (512² on Synapse) for this transform
    (:attr:`needs_stored_grid`), so the order is the official one: augment at 512, then zoom to 224.

    Difference on purpose: the official code draws from Python's and numpy's RNGs; this draws
    from torch's global RNG like :class:`RandomRotFlip`, so seeded and resumed runs repeat.

    :meth:`draw` picks the parameters, :meth:`apply` uses them and :meth:`resize` zooms, so each can
    be checked alone.
    """

    needs_stored_grid = True  # SliceDataset hands it the slice as stored, not the model-grid copy

    def __init__(self, output_size: int | tuple[int, int] | None = None):
        self.output_size = (output_size, output_size) if isinstance(output_size, int) else output_size

    def draw(self) -> dict:
        """``{"k", "axis"}`` for rot90 + flip, ``{"angle"}`` for a rotation, or ``{}`` for nothing."""
        if torch.rand(()) > 0.5:
            return {"k": int(torch.randint(0, 4, ())), "axis": int(torch.randint(0, 2, ()))}
        if torch.rand(()) > 0.5:
            return {"angle": int(torch.randint(-20, 20, ()))}
        return {}

    def apply(self, image: torch.Tensor, label: torch.Tensor, params: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """``image [C,H,W]`` and ``label [H,W]`` moved by ``params`` from :meth:`draw`, on their own grid."""
        if "k" in params:
            # np.rot90(a, k) and np.flip(a, axis) of the official 2-D slice, on the last two dims.
            dim = params["axis"] - 2
            image = image.rot90(params["k"], dims=(-2, -1)).flip(dim)
            label = label.rot90(params["k"], dims=(-2, -1)).flip(dim)
        elif "angle" in params:
            # ndimage.rotate's default plane of a 2-D array is axes (1, 0): here (-1, -2).
            turn = dict(angle=params["angle"], axes=(-1, -2), order=0, reshape=False, mode="constant", cval=0)
            image = torch.from_numpy(ndimage.rotate(image.numpy(), **turn))
            label = torch.from_numpy(ndimage.rotate(label.numpy(), **turn))
        return image.contiguous(), label.contiguous()

    def resize(self, image: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The official zoom of ``image [C,H,W]`` (cubic, channel by channel) and ``label [H,W]``
        (nearest) to ``output_size``; unchanged where they are that size already (or none is set)."""
        height, width = label.shape[-2:]
        if self.output_size is None or (height, width) == tuple(self.output_size):
            return image, label
        factors = (self.output_size[0] / height, self.output_size[1] / width)
        image = torch.from_numpy(np.stack([ndimage.zoom(channel, factors, order=3)
                                           for channel in image.numpy().astype(np.float32)]))
        label = torch.from_numpy(ndimage.zoom(label.numpy(), factors, order=0))
        return image, label

    def __call__(self, image: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.resize(*self.apply(image, label, self.draw()))


class IntensityJitter:
    """A random change of brightness and contrast, as another scanner or protocol would give.

    Each, with probability ``p``: a gamma in [0.7, 1.5] (on the image's own range, so the darkest
    and brightest voxels stay put), a contrast factor in [0.75, 1.25] about the image's mean, a
    scale in [0.75, 1.25] and a shift in [-0.1, 0.1] (images are in [0, 1]); the result is
    clipped to [0, 1], the range every loader gives. The ranges are nnU-Net's (gamma, contrast,
    multiplicative brightness) plus a shift for an offset window. The label is untouched.
    """

    def __init__(self, p: float = 0.3, gamma=(0.7, 1.5), contrast=(0.75, 1.25), scale=(0.75, 1.25),
                 shift=(-0.1, 0.1)):
        self.p, self.gamma, self.contrast, self.scale, self.shift = p, gamma, contrast, scale, shift

    def _draw(self, bounds) -> float | None:
        if torch.rand(()) >= self.p:
            return None
        low, high = bounds
        return float(low + (high - low) * torch.rand(()))

    def __call__(self, image: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        gamma = self._draw(self.gamma)
        if gamma is not None:
            low, high = image.min(), image.max()
            if high > low:
                image = low + (high - low) * ((image - low) / (high - low)) ** gamma
        contrast = self._draw(self.contrast)
        if contrast is not None:
            mean = image.mean()
            image = (image - mean) * contrast + mean
        scale = self._draw(self.scale)
        if scale is not None:
            image = image * scale
        shift = self._draw(self.shift)
        if shift is not None:
            image = image + shift
        return image.clamp(0, 1), label


class Compose:
    def __init__(self, *transforms):
        self.transforms = transforms

    def __call__(self, image: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for transform in self.transforms:
            image, label = transform(image, label)
        return image, label


def recipe(augment: bool | str | None) -> str | None:
    """The recipe a loader's ``augment`` names: None, "kit", "official" or "intensity"."""
    if isinstance(augment, (bool, np.bool_)) or augment is None:
        return "kit" if augment else None
    if not isinstance(augment, str) or augment not in AUGMENTS:
        raise ValueError(f"unknown augment {augment!r}; expected one of {AUGMENTS} (True means 'kit')")
    return augment


def make_transform(augment: bool | str | None, size: int | tuple[int, int] | None = None):
    """The training transform a loader's ``augment`` asks for: None for False/None,
    :class:`RandomRotFlip` for True or ``"kit"``, :class:`OfficialRotFlip` zooming to ``size`` for
    ``"official"``, :class:`RandomRotFlip` then :class:`IntensityJitter` for ``"intensity"``."""
    augment = recipe(augment)
    if augment is None:
        return None
    if augment == "kit":
        return RandomRotFlip()
    if augment == "official":
        return OfficialRotFlip(size)
    return Compose(RandomRotFlip(), IntensityJitter())  # "intensity"

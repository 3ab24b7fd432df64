"""From a scan's own grid to the model's and back, in one place.

Training, evaluation and ``predict`` all bring a scan to the model the same way, so a prediction
on a new file is made exactly as the test split was scored:

1. **Intensities** to [0, 1] (:func:`scale_intensity`): a fixed Hounsfield window for CT, the
   volume's own 0.5th-99.5th percentiles for MRI, or a division for 8-bit sources.
2. **Slices**: the volume is cut along ``axis`` of the file's voxel order, and turned to the
   dataset's display ``orientation`` (``"voxel"``: rows and columns as stored; ``"radiological"``:
   anterior up and the patient's right on the image left, as ``brain_aal`` is stored).
3. **Model grid** (:func:`to_model_grid`): each slice is zero-padded, centred, to a square and then
   resized to ``size`` × ``size`` (``aspect="pad"``), so anatomy keeps its proportions;
   ``aspect="stretch"`` resizes straight to the square, as the official code does.

Back to the scan (:func:`native_argmax`): the logits are resized bilinearly to the padded square
at the scan's own resolution, the padding is cropped, and then the argmax is taken. The
alternative, the argmax at the model grid enlarged by nearest neighbour, gives staircase edges at
the model's pixel size: ``method="zoom"`` does it as TransUNet and the official LoMix code do, with
``scipy.ndimage.zoom(order=0)``; ``method="nearest"`` with torch's pixel-centred nearest neighbour.
Labels are never resampled for scoring.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

ASPECTS = ("pad", "stretch")
ORIENTATIONS = ("voxel", "radiological")
INTENSITY_KINDS = ("ct_window", "percentile", "zscore", "max", "divide", "unit")
NATIVE_METHODS = ("logits", "nearest", "zoom")


# ---------------------------------------------------------------- intensities

def scale_intensity(volume: np.ndarray, spec: dict) -> np.ndarray:
    """``volume`` as float32 in [0, 1] by ``spec``, one of

    * ``{"kind": "ct_window", "window": [low, high]}``: clip to a fixed HU window (same for every scan);
    * ``{"kind": "percentile", "percentiles": [0.5, 99.5]}``: clip to the volume's own percentiles,
      since MRI has no fixed scale and a few hot voxels would squash the rest;
    * ``{"kind": "zscore", "clip": 3}``: subtract the volume's mean, divide by its standard
      deviation, clip to ±``clip`` and map that to [0, 1] (nnU-Net's normalisation for MRI), with
      mean and deviation taken over the voxels between its 0.5th and 99.5th percentiles, so that
      a few hot voxels do not set them; a rescaled or offset scan gives the same result;
    * ``{"kind": "max"}``: divide by the volume's maximum;
    * ``{"kind": "divide", "by": 255}``: a fixed divisor (8-bit photos);
    * ``{"kind": "unit"}``: already in [0, 1] (the phantom).

    A spec may carry ``"then": {...}``, a second spec applied to the first one's result: a CT window
    followed by a z-score (``abdomen_ct``'s ``intensity="zscore"``) keeps the HU clip and then takes
    each scan's own contrast, and ``predict`` repeats both from the checkpoint.
    """
    if "then" in spec:
        first = {key: value for key, value in spec.items() if key != "then"}
        return scale_intensity(scale_intensity(volume, first), spec["then"])
    kind = spec.get("kind")
    volume = np.asarray(volume, dtype=np.float32)
    if kind == "ct_window":
        low, high = spec["window"]
    elif kind == "percentile":
        low, high = np.percentile(volume, spec["percentiles"])
    elif kind == "zscore":
        bulk = np.clip(volume, *np.percentile(volume, [0.5, 99.5]))
        mean, std, clip = float(bulk.mean()), float(bulk.std()), float(spec.get("clip", 3))
        low, high = mean - clip * std, mean + clip * std
    elif kind == "max":
        low, high = 0.0, max(float(volume.max()), 1.0)
    elif kind == "divide":
        low, high = 0.0, float(spec["by"])
    elif kind == "unit":
        low, high = 0.0, 1.0
    else:
        raise ValueError(f"unknown intensity kind {kind!r}; expected one of {INTENSITY_KINDS}")
    if high <= low:  # a constant volume carries no contrast to scale
        return np.zeros(volume.shape, np.float32)
    # The last clip: float rounding may put the top a hair above 1.
    return np.clip((np.clip(volume, low, high) - low) / (high - low), 0, 1).astype(np.float32)


# ---------------------------------------------------------------- the model's grid and back

def square_pad(stack: torch.Tensor) -> torch.Tensor:
    """``stack [..., H, W]`` zero-padded, centred, to ``[..., S, S]`` with ``S = max(H, W)``."""
    height, width = stack.shape[-2:]
    side = max(height, width)
    top, left = (side - height) // 2, (side - width) // 2
    return F.pad(stack, (left, side - width - left, top, side - height - top))


def crop_square(stack: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """The inverse of :func:`square_pad`: the centred ``shape`` ``(H, W)`` of ``[..., S, S]``."""
    height, width = shape
    side = stack.shape[-1]
    top, left = (side - height) // 2, (side - width) // 2
    return stack[..., top:top + height, left:left + width]


def stored_grid(stack: np.ndarray | torch.Tensor, label: bool, aspect: str = "pad") -> torch.Tensor:
    """``stack`` as :func:`to_model_grid` has it just before resizing: labels uint8 ``[D, H, W]``,
    images ``[D, C, H, W]`` (uint8 kept, else float32), squared by padding where ``aspect="pad"``.
    The official augmentation runs on these slices, then zooms them itself."""
    if aspect not in ASPECTS:
        raise ValueError(f"aspect must be one of {ASPECTS}, got {aspect!r}")
    tensor = torch.as_tensor(np.ascontiguousarray(stack) if isinstance(stack, np.ndarray) else stack)
    if label:
        tensor = tensor.to(torch.uint8)
    else:
        tensor = tensor[:, None] if tensor.dim() == 3 else tensor
        tensor = tensor if tensor.dtype == torch.uint8 else tensor.float()
    return square_pad(tensor) if aspect == "pad" else tensor


def to_model_grid(stack: np.ndarray | torch.Tensor, size: int | tuple[int, int], label: bool,
                  aspect: str = "pad") -> torch.Tensor:
    """Every slice of ``stack`` on the model's ``size`` grid; the slice axis is untouched.

    ``stack`` is ``[D, H, W]`` or ``[D, C, H, W]``. Labels come back uint8 ``[D, h, w]`` (nearest,
    so class values stay exact). Images come back ``[D, C, h, w]``: bilinear, antialiased when
    shrinking; a uint8 stack stays uint8 (rounded), so 8-bit data keeps a quarter of the memory.
    """
    if aspect not in ASPECTS:
        raise ValueError(f"aspect must be one of {ASPECTS}, got {aspect!r}")
    size = (size, size) if isinstance(size, int) else tuple(size)
    tensor = torch.as_tensor(np.ascontiguousarray(stack) if isinstance(stack, np.ndarray) else stack)
    if label:
        if tensor.dim() != 3:
            raise ValueError(f"a label stack must be [D,H,W], got {tuple(tensor.shape)}")
        tensor = square_pad(tensor) if aspect == "pad" else tensor
        if tuple(tensor.shape[-2:]) != size:
            tensor = F.interpolate(tensor[:, None].float(), size=size, mode="nearest-exact")[:, 0]
        return tensor.to(torch.uint8)
    if tensor.dim() == 3:
        tensor = tensor[:, None]
    if tensor.dim() != 4:
        raise ValueError(f"an image stack must be [D,H,W] or [D,C,H,W], got {tuple(tensor.shape)}")
    eight_bit = tensor.dtype == torch.uint8
    tensor = square_pad(tensor) if aspect == "pad" else tensor
    if tuple(tensor.shape[-2:]) == size:
        return tensor if eight_bit else tensor.float()
    # In chunks, so that a large uint8 stack never has a whole float copy.
    out = torch.empty((tensor.shape[0], tensor.shape[1], *size), dtype=torch.uint8 if eight_bit else torch.float32)
    for start in range(0, tensor.shape[0], 64):
        chunk = F.interpolate(tensor[start:start + 64].float(), size=size, mode="bilinear", align_corners=False,
                              antialias=True)
        out[start:start + 64] = chunk.round().clamp(0, 255) if eight_bit else chunk
    return out


def zoom_indices(source: int, target: int) -> torch.Tensor:
    """For each of ``target`` pixels, the one of ``source`` pixels that ``scipy.ndimage.zoom(order=0)``
    copies, or ``source`` (one past the end) where scipy writes its fill value 0 instead.

    scipy (``grid_mode=False``) lines up the centres of the first and the last pixels, so target
    pixel ``o`` reads source coordinate ``o · (source − 1) / (target − 1)``, rounded half up: the two
    edge blocks are about half as wide as the others, where torch's "nearest-exact" makes every block
    equally wide. When rounding puts that coordinate a hair past the last pixel (224 → 405, 407, ...;
    not 224 → 512), scipy's "constant" mode treats it as outside and writes 0, the background. The
    arithmetic is scipy's own (float64, in this order), so the indices are the same bit for bit.
    """
    step = (source - 1) / (target - 1) if target > 1 else 1.0
    coordinate = np.arange(target) * step
    index = np.floor(coordinate + 0.5)
    index[coordinate > source - 1] = source
    return torch.from_numpy(index.astype(np.int64))


def to_native_grid(maps: torch.Tensor, shape: Sequence[int], aspect: str = "pad",
                   mode: str = "bilinear") -> torch.Tensor:
    """``maps [B, C, s, s]`` on the model grid back to the scan's in-plane ``shape (H, W)``: the inverse
    of :func:`to_model_grid`. ``mode`` is "bilinear" for logits; for class maps "nearest" (torch's
    pixel-centred nearest neighbour) or "zoom" (``scipy.ndimage.zoom(order=0)``'s, :func:`zoom_indices`)."""
    if mode not in ("bilinear", "nearest", "zoom"):
        raise ValueError(f"mode must be 'bilinear', 'nearest' or 'zoom', got {mode!r}")
    height, width = shape
    target = (max(height, width),) * 2 if aspect == "pad" else (height, width)
    if tuple(maps.shape[-2:]) != target:
        if mode == "bilinear":
            maps = F.interpolate(maps.float(), size=target, mode="bilinear", align_corners=False)
        elif mode == "nearest":
            maps = F.interpolate(maps, size=target, mode="nearest-exact")
        else:
            rows, columns = (zoom_indices(s, t).to(maps.device) for s, t in zip(maps.shape[-2:], target))
            padded = F.pad(maps, (0, 1, 0, 1))  # the extra row and column hold scipy's fill value 0
            maps = padded.index_select(-2, rows).index_select(-1, columns)
    return crop_square(maps, shape) if aspect == "pad" else maps


def native_argmax(logits: torch.Tensor, shape: Sequence[int], aspect: str = "pad",
                  method: str = "logits") -> torch.Tensor:
    """Class index per pixel ``[B, H, W]`` (uint8) at the scan's own ``shape`` from model-grid logits
    ``[B, C, s, s]``: resample the logits, then argmax (``"logits"``), or argmax, then enlarge by
    nearest neighbour, pixel-centred (``"nearest"``) or as the official code and TransUNet do with
    ``scipy.ndimage.zoom(order=0)`` after an argmax of the softmax (``"zoom"``)."""
    if method == "logits":
        return to_native_grid(logits, shape, aspect).argmax(dim=1).to(torch.uint8)
    if method in ("nearest", "zoom"):
        # The softmax changes no winner except where float32 rounding ties two nearly equal scores;
        # "zoom" keeps it so that its ties fall as the official code's do.
        scores = logits.float().softmax(dim=1) if method == "zoom" else logits
        classes = scores.argmax(dim=1, keepdim=True).to(torch.uint8)
        return to_native_grid(classes, shape, aspect, mode=method)[:, 0]
    raise ValueError(f"method must be one of {NATIVE_METHODS}, got {method!r}")


# ---------------------------------------------------------------- the whole recipe, saved with a model

@dataclass(frozen=True)
class Preprocessing:
    """How a dataset's scans became model input; saved in every checkpoint, so ``predict`` can
    treat a new file exactly as the training data were treated.

    ``intensity`` has one spec per input channel (:func:`scale_intensity`). ``eight_bit``: the
    dataset keeps images as uint8 (0..255) after resizing, as 8-bit sources are stored.
    ``axcodes``: the voxel orientation (nibabel axis codes, e.g. ``"RAS"``) every scan was brought
    to before slicing, so ``predict`` brings a new scan there too; None where the loader reads
    arrays as stored. ``spacing``: the training data's in-plane voxel size (mm, row and column of
    a slice), so ``predict`` can say when a scan's differs; None where unknown.
    """

    size: int | tuple[int, int]
    class_names: tuple[str, ...]
    intensity: tuple[dict, ...] = ({"kind": "unit"},)
    axis: int = 2
    orientation: str = "voxel"
    aspect: str = "pad"
    eight_bit: bool = False
    axcodes: str | None = None
    spacing: tuple[float, float] | None = None

    def __post_init__(self):
        if self.aspect not in ASPECTS:
            raise ValueError(f"aspect must be one of {ASPECTS}, got {self.aspect!r}")
        if self.orientation not in ORIENTATIONS:
            raise ValueError(f"orientation must be one of {ORIENTATIONS}, got {self.orientation!r}")
        if self.axis not in (0, 1, 2):
            raise ValueError(f"axis must be 0, 1 or 2 (the voxel axis slices are cut along), got {self.axis}")
        chained = [step for spec in self.intensity for step in (spec, spec.get("then") or {"kind": "unit"})]
        unknown = [spec.get("kind") for spec in chained if spec.get("kind") not in INTENSITY_KINDS]
        if unknown:
            raise ValueError(f"unknown intensity kind {unknown[0]!r}; expected one of {INTENSITY_KINDS}")
        object.__setattr__(self, "class_names", tuple(self.class_names))
        object.__setattr__(self, "intensity", tuple(dict(spec) for spec in self.intensity))

    @property
    def in_channels(self) -> int:
        return len(self.intensity)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "Preprocessing":
        values = dict(values)
        for field in ("size", "spacing"):
            if isinstance(values.get(field), list):
                values[field] = tuple(values[field])
        return cls(**values)

    # -- a volume in the file's voxel order <-> slices first, in the dataset's orientation

    def slices(self, volume: np.ndarray) -> np.ndarray:
        """``volume [X, Y, Z]`` (or ``[C, X, Y, Z]``) → ``[D, H, W]`` (or ``[D, C, H, W]``)."""
        channels = volume.ndim == 4
        stack = np.moveaxis(volume, self.axis + channels, 0)
        if self.orientation == "radiological":  # rows anterior → posterior, columns patient right → left
            stack = np.swapaxes(stack[..., ::-1, ::-1], -1, -2)
        return np.ascontiguousarray(stack)

    def unslice(self, stack: np.ndarray) -> np.ndarray:
        """The inverse of :meth:`slices` for a label stack ``[D, H, W]``: back to the voxel order."""
        if self.orientation == "radiological":
            stack = np.swapaxes(stack, -1, -2)[..., ::-1, ::-1]
        return np.ascontiguousarray(np.moveaxis(stack, 0, self.axis))

    def slice_spacing(self, zooms: Sequence[float]) -> tuple[float, float, float]:
        """Voxel spacing in the order of :meth:`slices`' output ``(slice, row, column)``."""
        zooms = [float(z) for z in zooms[:3]]
        order = [self.axis] + [a for a in range(3) if a != self.axis]
        slice_z, row, column = (zooms[a] for a in order)
        return (slice_z, column, row) if self.orientation == "radiological" else (slice_z, row, column)

    def model_input(self, volume: np.ndarray) -> tuple[torch.Tensor, tuple[int, int]]:
        """A raw volume ``[X, Y, Z]`` / ``[C, X, Y, Z]`` (a 2-D image is ``[C, H, W, 1]``) → model-grid
        slices as the dataset stores them, and the in-plane shape."""
        if volume.ndim == 3:
            volume = volume[None]
        if volume.shape[0] != self.in_channels:
            raise ValueError(f"the scan has {volume.shape[0]} channels; the model expects {self.in_channels}")
        scaled = np.stack([scale_intensity(channel, spec) for channel, spec in zip(volume, self.intensity)])
        if self.eight_bit:
            scaled = np.round(scaled * 255).astype(np.uint8)
        stack = self.slices(scaled)
        return to_model_grid(stack, self.size, label=False, aspect=self.aspect), tuple(stack.shape[-2:])


def as_float(images: torch.Tensor) -> torch.Tensor:
    """Stored images (uint8 0..255 or float in [0, 1]) as the float32 the model takes."""
    return images.float() / 255 if images.dtype == torch.uint8 else images.float()

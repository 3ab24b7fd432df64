"""Apply a trained model to new scans: ``lx.predict`` and ``python -m lomix_core predict``.

A checkpoint (``best.pt``) holds the weights, the run's config and the :class:`Preprocessing` its
training data went through. A new scan goes through the same steps (intensity, slicing, pad and
resize) and the finest map's logits come back to the scan's own grid, so the label map written
has the input's shape, affine and header. Predicting the test cases' files and scoring them
gives the same Dice as ``evaluate`` on those cases (``tests/test_inference.py`` checks it).

Inputs: one NIfTI file, a folder of NIfTI files (nnU-Net's ``<case>_0000.nii.gz`` channel
files are grouped by case), or a folder of 2-D images (PNG, JPEG, ...). For each case the output
folder gets ``<case>.nii.gz`` (or ``<case>.png``: class index per pixel) and ``<case>.json``, a
sidecar with the class names, what made the file and whether the scan was reoriented to predict it
(``"reoriented"``). Both are written atomically and the sidecar last, so an interrupted run leaves
whole files only, and a rerun skips the cases already done with the same checkpoint and options.
"""
from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import models
from ..data.images import IMAGE_SUFFIXES, open_image
from ..data.geometry import Geometry, Reorientation
from ..data.nifti_folder import convert_hint, group_channels, nifti_stem
from ..data.preprocessing import Preprocessing
from ..data.volumes import read_nifti
from .evaluation import predict_native
from ..foundations.records import atomic_write, save_json
from . import checkpoints


@dataclass
class TrainedModel:
    """A model read back from a checkpoint, with what ``predict`` needs to use it."""

    model: nn.Module
    preprocessing: Preprocessing
    config: dict[str, Any]
    path: Path
    digest: str  # of the checkpoint file: a sidecar names the exact weights that made its label map


def load_checkpoint(path: str | Path, device: str = "auto") -> TrainedModel:
    """The selected model of a run from its ``best.pt`` (or ``last.pt``), in eval mode on ``device``."""
    from ..foundations.machine import resolve_device

    path = Path(path)
    blob = checkpoints.file_bytes(path)  # read once: for the weights and for the digest
    checkpoint = checkpoints.read_bytes(blob, path)
    config = checkpoint["config"]
    if "preprocessing" not in checkpoint:
        raise ValueError(f"checkpoint {path} records no preprocessing (it predates native-resolution scoring); "
                         f"train it again with this version of the kit")
    preprocessing = Preprocessing.from_dict(checkpoint["preprocessing"])
    # The network the weights were trained in (training decides it, official form included), with no
    # ImageNet weights fetched for its encoder again.
    run_config = checkpoints.saved_config(config)
    model = models.build(run_config.model, preprocessing.in_channels, len(preprocessing.class_names),
                         **checkpoints.model_kwargs(run_config))
    checkpoints.restore(model, None, checkpoint)
    digest = hashlib.sha1(blob).hexdigest()[:12]
    return TrainedModel(model.to(resolve_device(device)).eval(), preprocessing, config, path, digest)


# A scan's in-plane voxels this much larger or smaller than the training data's earn a note.
SPACING_NOTE_RATIO = 1.2


def predict(model: nn.Module | TrainedModel, volume: np.ndarray, preprocessing: Preprocessing | None = None,
            tta: bool = False, batch_size: int = 16, affine: np.ndarray | None = None,
            name: str = "the scan") -> np.ndarray:
    """Class index per voxel (uint8) of a raw scan, on the scan's own grid.

    ``volume`` is as stored in the file: ``[X, Y, Z]``, or ``[C, X, Y, Z]`` for several channels;
    a 2-D image is ``[C, H, W, 1]``. ``preprocessing`` is the training data's (a
    :class:`TrainedModel` brings its own). ``tta`` averages the image with its two flips.

    With the file's ``affine``, a scan stored in another voxel orientation than the training data
    (``preprocessing.axcodes``) is turned to theirs (flips and a transpose, nothing resampled),
    predicted there and turned back, and a note naming ``name`` is printed; so is one when its
    in-plane spacing differs from the training data's by more than 20%. Without an affine the
    array is taken to be in the training orientation.
    """
    if isinstance(model, TrainedModel):
        model, preprocessing = model.model, preprocessing or model.preprocessing
    if preprocessing is None:
        raise ValueError("predict needs the training data's preprocessing: pass a TrainedModel from "
                         "load_checkpoint, or preprocessing=Preprocessing(...)")
    volume = np.asarray(volume)
    if volume.ndim not in (3, 4):
        raise ValueError(f"expected a volume [X, Y, Z] or [C, X, Y, Z], got shape {volume.shape}")
    if not np.isfinite(volume).all():
        raise ValueError(f"the scan holds {int((~np.isfinite(volume)).sum())} NaN or inf values; expected finite "
                         f"intensities")
    turn = _reorientation(preprocessing, volume, affine, name)
    volume = np.stack([turn.apply(channel) for channel in volume]) if volume.ndim == 4 else turn.apply(volume)
    stack, shape = preprocessing.model_input(volume)
    labels = predict_native(model, stack, shape, preprocessing.aspect, batch_size=batch_size, tta=tta)
    return turn.undo(preprocessing.unslice(labels.numpy()))


def _reorientation(preprocessing: Preprocessing, volume: np.ndarray, affine: np.ndarray | None,
                   name: str) -> Reorientation:
    """How to bring the scan to the training data's voxel orientation, with a note for each change."""
    if affine is None or preprocessing.axcodes is None:  # taken as stored (2-D images have no affine)
        return Reorientation("RAS", "RAS")  # the identity
    grid = Geometry.of(volume.shape[-3:], affine)
    turn = Reorientation(grid.orientation, preprocessing.axcodes)
    if not turn.identity:
        print(f"predict: {name}: note: stored {turn.source}, reoriented to {turn.target} as the training data "
              f"were; the label map is written back in {turn.source} on the scan's own grid")
    if preprocessing.spacing is not None:
        spacing = preprocessing.slice_spacing(turn.spacing(grid.spacing))[1:]
        ratios = np.asarray(spacing) / np.asarray(preprocessing.spacing)
        if (ratios > SPACING_NOTE_RATIO).any() or (ratios < 1 / SPACING_NOTE_RATIO).any():
            print(f"predict: {name}: note: in-plane spacing {spacing[0]:g}×{spacing[1]:g} mm, the training data's "
                  f"{preprocessing.spacing[0]:g}×{preprocessing.spacing[1]:g} mm; not resampled, since each slice "
                  f"is padded to a square and resized to the model's size: what the model sees is the field of view "
                  f"(docs/data.md)")
    return turn


def _reorientation_done(preprocessing: Preprocessing, volume: np.ndarray, affine: np.ndarray) -> dict | None:
    """What a sidecar says of the turn :func:`predict` made: ``{"stored": "LPS", "predicted_in": "RAS"}``,
    or None where the scan was predicted as stored."""
    if preprocessing.axcodes is None:
        return None
    stored = Geometry.of(volume.shape[-3:], affine).orientation
    return None if stored == preprocessing.axcodes else {"stored": stored, "predicted_in": preprocessing.axcodes}


# ---------------------------------------------------------------- files

def find_cases(source: str | Path, in_channels: int) -> tuple[str, dict[str, list[Path]]]:
    """``("nifti" | "image", {case: [file per channel]})`` for a NIfTI file or a folder of scans or images."""
    source = Path(source)
    if source.is_file():
        files = [source]
    elif source.is_dir():
        files = sorted(p for p in source.iterdir() if p.is_file() and not p.name.startswith("."))
    else:
        raise FileNotFoundError(f"input {source} does not exist; expected a NIfTI file, or a folder of NIfTI "
                                f"files or 2-D images")
    nifti = [p for p in files if p.name.endswith((".nii", ".nii.gz"))]
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    if not nifti and not images:
        hint = next((convert_hint(p) for p in files if convert_hint(p)), "")
        raise FileNotFoundError(f"no .nii/.nii.gz files or images ({', '.join(IMAGE_SUFFIXES)}) in {source}{hint}")
    if nifti and images:
        raise ValueError(f"{source} mixes NIfTI files and 2-D images; expected one kind")
    if images:
        return "image", {p.stem: [p] for p in images}
    stems: dict[str, Path] = {}
    for path in nifti:
        if nifti_stem(path.name) in stems:
            raise ValueError(f"{path} and {stems[nifti_stem(path.name)]} are the same case")
        stems[nifti_stem(path.name)] = path
    cases, problems = group_channels(stems)
    if problems:
        raise ValueError(problems[0])
    for case, channels in cases.items():
        if sorted(channels) != list(range(in_channels)):
            raise ValueError(f"case {case!r} has channels {[f'{c:04d}' for c in sorted(channels)]}; the model takes "
                             f"{in_channels} (files <case>_0000 to _{in_channels - 1:04d})")
    return "nifti", {case: [channels[c] for c in sorted(channels)] for case, channels in cases.items()}


def _read_scan(files: list[Path]):
    """The channels of one NIfTI case as ``[C, X, Y, Z]``, and the first file's header (for its geometry).
    A 4-D file of one frame is squeezed."""
    import nibabel as nib

    volumes = [read_nifti(path)[0].astype(np.float32, copy=False) for path in files]
    volumes = [v.reshape(v.shape[:3]) if v.ndim > 3 and all(n == 1 for n in v.shape[3:]) else v for v in volumes]
    for path, volume in zip(files, volumes):
        if volume.ndim != 3:
            raise ValueError(f"{path}: {volume.ndim}-D array of shape {volume.shape}, expected a 3-D volume")
        if volume.shape != volumes[0].shape:
            raise ValueError(f"{path} has shape {volume.shape} but {files[0]} has {volumes[0].shape}; "
                             f"a case's channels must share one grid")
    return np.stack(volumes), nib.load(str(files[0]))  # the header only: the data were read above


def _read_picture(path: Path, in_channels: int) -> np.ndarray:
    """A 2-D image as ``[C, H, W, 1]``: RGB for a 3-channel model, grey for a 1-channel one."""
    if in_channels not in (1, 3):
        raise ValueError(f"2-D images can feed a 1- or 3-channel model; this one takes {in_channels}")
    array = np.asarray(open_image(path, "RGB" if in_channels == 3 else "L"))
    array = array[..., None] if array.ndim == 2 else array
    return np.moveaxis(array, -1, 0)[..., None]


def _save_nifti(labels: np.ndarray, like, path: Path) -> None:
    import nibabel as nib

    image = nib.Nifti1Image(labels.astype(np.uint8), like.affine, like.header.copy())
    image.set_data_dtype(np.uint8)
    image.header.set_slope_inter(1, 0)  # class indices as they are, whatever scaling the scan had
    data = image.to_bytes()
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(gzip.compress(data, 6) if path.suffix == ".gz" else data))


def _save_png(labels: np.ndarray, path: Path) -> None:
    from PIL import Image

    atomic_write(path, lambda tmp: Image.fromarray(labels.astype(np.uint8)).save(tmp, format="PNG"))


def predict_files(checkpoint: str | Path | TrainedModel, source: str | Path, out_dir: str | Path,
                  tta: bool = False, overwrite: bool = False, progress: bool = True,
                  device: str = "auto") -> list[Path]:
    """Label maps for every case in ``source``, written to ``out_dir``; returns their paths.

    A case whose sidecar already names this checkpoint and these options is skipped (resuming an
    interrupted run) unless ``overwrite``.
    """
    from tqdm.auto import tqdm

    trained = checkpoint if isinstance(checkpoint, TrainedModel) else load_checkpoint(checkpoint, device)
    kind, cases = find_cases(source, trained.preprocessing.in_channels)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sidecar_base = {"class_names": {str(i): name for i, name in enumerate(trained.preprocessing.class_names)},
                    "checkpoint": str(trained.path), "checkpoint_sha1": trained.digest, "tta": tta,
                    "model": trained.config["model"], "supervision": trained.config["supervision"],
                    "trained_on": trained.config["dataset"]}
    written = []
    for case, files in tqdm(sorted(cases.items()), desc="predict", unit="case", disable=not progress):
        target = out_dir / (f"{case}.png" if kind == "image" else f"{case}.nii.gz")
        sidecar = out_dir / f"{case}.json"
        if not overwrite and target.is_file() and _same_run(sidecar, sidecar_base):
            written.append(target)
            continue
        if kind == "image":
            labels = predict(trained, _read_picture(files[0], trained.preprocessing.in_channels), tta=tta)
            _save_png(labels[..., 0], target)
            turned = None
        else:
            volume, like = _read_scan(files)
            _save_nifti(predict(trained, volume, tta=tta, affine=like.affine, name=case), like, target)
            turned = _reorientation_done(trained.preprocessing, volume, like.affine)
        save_json({**sidecar_base, "source": [str(f) for f in files], "label_map": target.name,
                   "reoriented": turned}, sidecar)
        written.append(target)
    return written


def _same_run(sidecar: Path, expected: dict) -> bool:
    try:
        saved = json.loads(sidecar.read_text())
    except (OSError, ValueError):
        return False
    return all(saved.get(key) == value for key, value in expected.items() if key != "checkpoint")

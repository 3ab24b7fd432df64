"""From prepared files on disk to a :class:`SliceDataset` at model size.

Every loader goes through here, so they share one rule for where data lives, one set of error
messages for bad files, and one way to the model's grid (:mod:`.preprocessing`: padded to a
square, then images bilinear and labels nearest neighbour, slice by slice in-plane only).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from .augment import make_transform, recipe
from .geometry import Geometry, Reorientation, grid_faults, most_common_orientation, orientation_of
from .preprocessing import Preprocessing, stored_grid, to_model_grid
from .slices import NativeGrid, SliceDataset

DATA_ROOT_ENV = "LOMIX_DATA"


class SplitNotPresent(FileNotFoundError):
    """A split that a dataset has none of by design (a folder without test cases, ``num_val=0``):
    training goes on without it, where any other missing data is an error."""


CHECKOUT = Path(__file__).resolve().parents[2]  # the folder that holds lomix_core/


def data_root() -> Path:
    """Where prepared datasets live: ``$LOMIX_DATA``; else, when the kit runs from its source
    checkout, the checkout's ``data/`` (so that ``make``, the scripts and the notebooks, whose
    kernels start in ``notebooks/``, find the same folder); else ``./data``."""
    if os.environ.get(DATA_ROOT_ENV):
        return Path(os.environ[DATA_ROOT_ENV])
    if (CHECKOUT / "pyproject.toml").is_file() and (CHECKOUT / "lomix_core").is_dir():
        return CHECKOUT / "data"
    return Path("data")


def dataset_folder(name: str, root: str | os.PathLike | None) -> Path:
    """Where dataset ``name`` lives: ``root``, or ``data_root() / name`` when None."""
    return Path(root) if root is not None else data_root() / name


def prepared_dir(name: str, root: str | os.PathLike | None, how_to_get: str) -> Path:
    """The folder of dataset ``name``, or a one-line error that ends with ``how_to_get``.

    ``how_to_get`` is the whole advice, such as "prepare it with `python data_scripts/...`",
    since a prepared benchmark and a folder the user brings are made in different ways.
    """
    folder = dataset_folder(name, root)
    if not folder.is_dir():
        raise FileNotFoundError(f"dataset {name!r} not found at {folder}: {how_to_get}, "
                                f"or pass root=<folder> (or set ${DATA_ROOT_ENV})")
    if not any(folder.iterdir()):
        raise FileNotFoundError(f"dataset {name!r} folder {folder} is empty: {how_to_get}")
    return folder


def one_line(error: BaseException | str) -> str:
    """``error``'s message on one line: third-party messages (nibabel, h5py, PIL) may span several."""
    return " ".join(str(error).split())


def read_nifti(path: str | os.PathLike) -> tuple[np.ndarray, tuple[float, ...]]:
    """A NIfTI volume as an array in the file's voxel order, and its voxel spacing (mm).

    A missing, truncated or non-NIfTI file raises one line naming the file.
    """
    array, header = _load_nifti(path)
    return array, tuple(float(s) for s in header.header.get_zooms()[:array.ndim])


def read_nifti_affine(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """A NIfTI volume as an array in the file's voxel order, and its 4×4 voxel-to-mm affine."""
    array, image = _load_nifti(path)
    return array, np.asarray(image.affine, dtype=np.float64)


def _load_nifti(path: str | os.PathLike):
    image = _open_nifti(path)
    try:
        array = np.asarray(image.dataobj)
    except Exception as error:  # nibabel raises many types; the user needs the file name
        raise _unreadable(path, error) from None
    return array, image


def _open_nifti(path: str | os.PathLike):
    """The file's header and affine; its voxels stay on disk until read."""
    import nibabel as nib

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"NIfTI file {path} does not exist")
    try:
        return nib.load(str(path))
    except Exception as error:
        raise _unreadable(path, error) from None


def _unreadable(path, error: Exception) -> ValueError:
    return ValueError(f"cannot read NIfTI file {path}: {type(error).__name__}: {one_line(error)} "
                      f"(expected a valid .nii or .nii.gz)")


# A float label this close to whole numbers was written by a tool that stored class indices as
# floats (and maybe resampled them linearly by a hair); farther off, it holds probabilities or blends.
LABEL_ROUNDING = 1e-3


def round_label(label: np.ndarray, where: str) -> tuple[np.ndarray, str | None]:
    """A float ``label`` within :data:`LABEL_ROUNDING` of integers, rounded, with a one-line note;
    any other label as it is (:func:`check_labels` then names a non-integer value)."""
    if not np.issubdtype(label.dtype, np.floating) or label.size == 0 or not np.isfinite(label).all():
        return label, None
    offset = float(np.abs(label - np.round(label)).max())
    if offset == 0 or offset > LABEL_ROUNDING:
        return label, None
    return np.round(label), (f"{where}: note: float label values lie within {offset:.1g} of integers; "
                             f"rounded to class indices")


def check_labels(label: np.ndarray, num_classes: int, where: str) -> None:
    """Raise one line if ``label`` holds a value outside ``[0, num_classes)`` or a non-integer."""
    if label.size == 0:
        raise ValueError(f"{where}: label is empty")
    if np.issubdtype(label.dtype, np.floating) and not np.array_equal(label, np.round(label)):
        wrong = label != np.round(label)  # NaN too
        voxel = tuple(int(i) for i in np.argwhere(wrong)[0])
        raise ValueError(f"{where}: label holds {int(wrong.sum())} non-integer values, e.g. {label[voxel]:g} at "
                         f"voxel {voxel}; expected class indices in [0, {num_classes}) (a label resampled with "
                         f"linear interpolation needs nearest neighbour instead)")
    low, high = label.min(), label.max()
    if low < 0 or high >= num_classes:
        unexpected = np.unique(label[(label < 0) | (label >= num_classes)])[:10].tolist()
        raise ValueError(f"{where}: label values span [{low}, {high}], expected [0, {num_classes - 1}] "
                         f"for {num_classes} classes (unexpected values: {unexpected})")


def check_finite(image: np.ndarray, where: str) -> None:
    if not np.isfinite(image).all():
        raise ValueError(f"{where}: image holds {int((~np.isfinite(image)).sum())} NaN or inf values; "
                         f"expected finite intensities")


def check_volume(image: np.ndarray, label: np.ndarray, num_classes: int, where: str) -> None:
    """Raise one line if a prepared image ``[D,(C,)H,W]`` and label ``[D,H,W]`` differ in shape, the image
    holds NaN or inf, or the label a value outside ``[0, num_classes)``; ``where`` names the file."""
    check_same_grid(image.shape, label.shape, where)
    check_finite(image, where)
    check_labels(label, num_classes, where)


def check_same_grid(image_shape: Sequence[int], label_shape: Sequence[int], where: str) -> None:
    """Raise one line unless image ``[D,(C,)H,W]`` and label ``[D,H,W]`` have the same slices and in-plane size."""
    image_shape, label_shape = tuple(image_shape), tuple(label_shape)
    if len(label_shape) != 3 or len(image_shape) not in (3, 4) or image_shape[0] != label_shape[0] \
            or image_shape[-2:] != label_shape[-2:]:
        raise ValueError(f"{where}: image is {image_shape} but label is {label_shape}; expected image [D,H,W] or "
                         f"[D,C,H,W] and label [D,H,W] with the same D, H and W")


def read_labelled_volume(image_path: Path, label_path: Path, num_classes: int,
                         axcodes: str | None = None) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """A checked 3-D image and label, slices first as TransUNet stores them: NIfTI ``[x, y, z]``
    becomes ``[z, x, y]``, so slice k is the k-th axial plane with rows along x; nothing is resampled.
    The third value is the voxel spacing in mm in that order ``(z, x, y)``. With ``axcodes`` (e.g.
    ``"LPS"``), a pair stored in another voxel orientation is first turned to it (flips and a
    transpose of the voxel axes, :class:`~lomix_core.data.geometry.Reorientation`).

    Two grids that differ (in shape, spacing, direction or origin), a NaN or inf in the image, or a
    label outside ``[0, num_classes)`` raise one line naming the file.
    """
    image, stored = _load_nifti(image_path)
    label, label_affine = read_nifti_affine(label_path)
    if image.ndim != 3 or image.shape != label.shape:
        raise ValueError(f"{image_path.name} is {image.shape} and {label_path.name} is {label.shape}; "
                         f"expected two 3-D volumes on the same grid")
    faults = grid_faults(Geometry.of(image.shape, stored.affine), Geometry.of(label.shape, label_affine),
                         str(image_path), str(label_path))
    if faults:
        raise ValueError(faults[0])
    check_finite(image, str(image_path))
    check_labels(label, num_classes, str(label_path))
    zooms = tuple(float(s) for s in stored.header.get_zooms()[:3])
    if axcodes is not None:
        turn = Reorientation(orientation_of(stored.affine), axcodes)
        image, label, zooms = turn.apply(image), turn.apply(label), turn.spacing(zooms)
    return np.transpose(image, (2, 0, 1)), np.transpose(label, (2, 0, 1)), (zooms[2], zooms[0], zooms[1])


def common_orientation(dataset: str, images: dict[str, Path]) -> tuple[str | None, dict[str, str]]:
    """The voxel orientation most of ``images`` (name → NIfTI file) are stored in, from their headers
    (the first in sorted order on a tie), and the ones stored otherwise with their own axis codes; a
    note for each of those, which the caller turns to the common orientation as it reads them
    (:func:`read_labelled_volume`'s ``axcodes``), so that every slice a model sees lies the same way.
    A file whose header cannot be read is left out here (None if none can): reading it raises its
    own one-line error, in the order the caller reads the files."""
    stored = {}
    for name, path in images.items():
        try:
            stored[name] = orientation_of(_open_nifti(path).affine)
        except (FileNotFoundError, ValueError):  # its own line comes, in its turn, when the file is read
            continue
    if not stored:
        return None, {}
    axcodes = most_common_orientation(stored.values())
    others = {name: codes for name, codes in stored.items() if codes != axcodes}
    for name, codes in others.items():
        print(f"{dataset}: {name}: note: stored {codes}, turned to {axcodes} as the other scans are stored")
    return axcodes, others


def stack_subjects(subjects: Iterable[tuple], preprocessing: Preprocessing, name: str, split: str,
                   augment: bool = False, keep_native: bool | None = None) -> SliceDataset:
    """One SliceDataset from ``(subject_id, image [D,(C,)H,W], label [D,H,W][, spacing])`` tuples.

    Slices go to the model grid as ``preprocessing`` says (:func:`to_model_grid`). Each subject's
    slices keep their order, so evaluation can restack them into the volume. With ``keep_native``
    (default: every split but train, which is never scored) the labels are also kept as they came,
    uint8 on the scan's own grid with its ``spacing`` (mm, slice-row-column, or None), so that
    evaluation scores at native resolution. A 2-D dataset (polyp, skin) passes every image as a
    one-slice subject.
    """
    keep_native = split != "train" if keep_native is None else keep_native
    # The official augmentation runs on each slice as stored, then zooms it to the model grid itself.
    keep_stored = recipe(augment) == "official"
    images, labels, subject_ids, slice_index, native = [], [], [], [], {}
    stored_images, stored_labels = [], []
    for subject, image, label, *spacing in subjects:
        check_same_grid(image.shape, label.shape, f"{name}/{subject}")  # before resizing hides a mismatch
        if keep_native:
            native[subject] = NativeGrid(torch.as_tensor(np.ascontiguousarray(label)).to(torch.uint8),
                                         tuple(spacing[0]) if spacing and spacing[0] is not None else None)
        if keep_stored:
            stored_images += list(stored_grid(image, label=False, aspect=preprocessing.aspect))
            stored_labels += list(stored_grid(label, label=True, aspect=preprocessing.aspect))
        images.append(to_model_grid(image, preprocessing.size, label=False, aspect=preprocessing.aspect))
        labels.append(to_model_grid(label, preprocessing.size, label=True, aspect=preprocessing.aspect))
        subject_ids += [subject] * images[-1].shape[0]
        slice_index += list(range(images[-1].shape[0]))
    if not images:
        raise ValueError(f"dataset {name!r} split {split!r} has no subjects")
    channels = {image.shape[1] for image in images}
    if len(channels) != 1:
        raise ValueError(f"dataset {name!r}: subjects have different channel counts {sorted(channels)}")
    return SliceDataset(torch.cat(images), torch.cat(labels), subject_ids, slice_index, preprocessing.class_names,
                        transform=make_transform(augment, preprocessing.size), name=name, split=split,
                        native=native if keep_native else None, preprocessing=preprocessing,
                        stored=(stored_images, stored_labels) if keep_stored else None)


def pick_subjects(subjects: Sequence[str], count: int | None, seed: int) -> list[str]:
    """``count`` of ``subjects`` chosen by ``seed`` (all when None), in their original order.

    Low-data subsets take whole subjects, never a fraction of one subject's slices.
    """
    if count is None:
        return list(subjects)
    if not 1 <= count <= len(subjects):
        raise ValueError(f"num_train_subjects must be in [1, {len(subjects)}], got {count}")
    keep = set(np.random.default_rng(seed).permutation(len(subjects))[:count].tolist())
    return [s for i, s in enumerate(subjects) if i in keep]

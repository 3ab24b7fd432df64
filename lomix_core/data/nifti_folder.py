"""``nifti``: bring your own data as a folder of NIfTI image/label pairs (nnU-Net-like).

The folder::

    my_dataset/
      dataset.json                 {"labels": {"background": 0, "liver": 1, "spleen": 2},
                                    "modality": "CT",            (or "MRI", ...; optional)
                                    "ct_window": [-125, 275]}    (optional, CT only)
      imagesTr/liver_001_0000.nii.gz   one 3-D image per case; "_0000" is nnU-Net's channel
      imagesTr/liver_002.nii.gz        suffix and may be left out for single-channel data
      labelsTr/liver_001.nii.gz        the label of each case, same shape, values 0..C-1
      labelsTr/liver_002.nii.gz
      imagesTs/liver_101_0000.nii.gz   the test cases, same layout (optional)
      labelsTs/liver_101.nii.gz

``dataset.json`` follows nnU-Net: ``"labels"`` maps name → value (v2) or value → name (v1 / MSD);
the values must be 0, 1, ..., C-1 with 0 the background. The modality comes from ``"modality"``
or nnU-Net v2's ``"channel_names"``, as one name (``"CT"``) or one per channel
(``{"0": "T1", "1": "T2"}``); several channels need the per-channel form and files
``<case>_0000``, ``<case>_0001``, ... of the same shape. Files are ``.nii`` or ``.nii.gz``.
Other keys (``"name"``, ``"file_ending"``, ``"numTraining"``, ...) are ignored.

What the loader does with it:

- **Splits.** train and val are the ``imagesTr`` cases, split by whole case: after sorting by
  name, a permutation seeded by ``split_seed`` sends ``num_val`` cases (default 20%, at least 1)
  to val and the rest to train. With fewer than 3 cases and ``num_val`` unset, every case trains
  and gives one eighth of its slices at one end to val instead, ``GAP`` = 3 slices away from its
  training slices (as ``abdomen_ct`` holds out a slab of its one training scan), so one labelled
  scan is enough. ``num_val=0`` holds out nothing: there is no val split and training keeps its
  last epoch. Either is said in one line when the train split loads. test is
  ``imagesTs``/``labelsTs``; a folder without them trains and reports validation only.
- **Orientation.** Every case is first brought to one voxel orientation (``axcodes``, default
  the most common among the training cases), by flips and a transpose of its voxel axes, nothing
  resampled, with a note for each case turned; checkpoints record it, so ``predict`` turns new
  scans the same way.
- **Slicing.** Each 3-D volume is cut into 2-D slices along ``axis`` of the array in that
  orientation (default the last axis: axial slices for RAS-like scans; ``orientation="radiological"``
  flips and transposes each slice as ``brain_aal`` shows its). Every slice is kept, with or
  without foreground, as TransUNet does. Slices are padded to a square and resized to ``size`` ×
  ``size`` in-plane, keep the case name as subject id, so evaluation can stack them back into the
  volume, and are scored at the file's own grid.
- **Test-only folders.** A folder with only ``imagesTs/`` and ``labelsTs/`` is enough to score a
  trained model on new scans (``python -m lomix_core evaluate CHECKPOINT --dataset nifti``).
- **Intensities** go to [0, 1]. CT (any case): clipped to ``ct_window`` (Hounsfield units, default
  [-125, 275], TransUNet's abdominal window), the same for every scan. Any other modality:
  clipped per volume and channel to its 0.5th and 99.5th percentiles, since MRI intensities
  have no fixed scale and a few hot voxels would otherwise squash the rest.

Check a folder before training with ``python -m lomix_core check PATH``: it lists every problem
at once (:func:`check_folder`); the loader stops at the first one.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .registry import register
from .slices import SliceDataset
from .geometry import Geometry, Reorientation, grid_faults, most_common_orientation, orientation_of
from .preprocessing import Preprocessing, scale_intensity
from .volumes import SplitNotPresent, check_finite, check_labels, pick_subjects, prepared_dir, read_nifti_affine, round_label, stack_subjects

HOW_TO_GET = ("lay out image/label pairs as `help(lomix_core.data.nifti_folder)` shows, then check them with "
              "`python -m lomix_core check <folder>`")
DEFAULT_CT_WINDOW = (-125.0, 275.0)
# With fewer training cases than this, whole-case validation would leave one case or none to train
# on, so each case gives its last (or first) eighth of slices to validation behind a gap instead.
MIN_CASES_FOR_CASE_VALIDATION = 3
VAL_SLAB_FRACTION = 1 / 8
GAP = 3  # slices used by neither side, so validation slices are not near-copies of training ones
CHANNEL_SUFFIX = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")
# Other volume formats that SimpleITK (or nibabel, for .mgz) converts to NIfTI in one line.
CONVERTIBLE = (".nrrd", ".nhdr", ".mha", ".mhd", ".mgz", ".dcm")


@dataclass(frozen=True)
class FolderSpec:
    """What ``dataset.json`` declares."""
    class_names: tuple[str, ...]
    modalities: tuple[str, ...]  # one per image channel
    ct_window: tuple[float, float]


@dataclass(frozen=True)
class Case:
    images: tuple[Path, ...]  # one file per channel, in channel order
    label: Path


def _collect(problems: list[str], check: Callable, *args):
    """Run ``check``; on a one-line error keep its message and go on, so all problems surface at once."""
    try:
        return check(*args)
    except (ValueError, FileNotFoundError) as error:
        problems.append(str(error))
        return None


# ---------------------------------------------------------------- dataset.json

def _class_names(meta: dict, path: Path) -> tuple[str, ...]:
    labels = meta.get("labels")
    if not isinstance(labels, dict) or not labels:
        raise ValueError(f'{path}: missing "labels"; expected e.g. {{"background": 0, "liver": 1}}')
    if all(isinstance(name, str) for name in labels.values()):  # nnU-Net v1 / MSD: value -> name
        labels = {name: value for value, name in labels.items()}
    try:
        by_value = {int(value): name for name, value in labels.items()}
    except (TypeError, ValueError):
        raise ValueError(f'{path}: "labels" values must be single integers, got {list(labels.values())} '
                         f"(region-based labels are not supported)") from None
    if sorted(by_value) != list(range(len(labels))) or len(labels) < 2:
        raise ValueError(f'{path}: "labels" values are {sorted(by_value)}, expected 0, 1, ..., C-1 '
                         f"(0 = background, at least one foreground class, no gaps or repeats)")
    return tuple(by_value[value] for value in range(len(by_value)))


def _modalities(meta: dict, path: Path) -> tuple[str, ...]:
    declared = meta.get("channel_names", meta.get("modality", "unspecified"))
    if isinstance(declared, str):
        return (declared,)
    if isinstance(declared, dict) and declared and set(declared) == {str(i) for i in range(len(declared))}:
        return tuple(str(declared[str(i)]) for i in range(len(declared)))
    raise ValueError(f'{path}: "modality"/"channel_names" must be a name like "CT" or {{"0": "T1", "1": "T2"}}, '
                     f"got {declared!r}")


def _ct_window(meta: dict, path: Path) -> tuple[float, float]:
    window = meta.get("ct_window", DEFAULT_CT_WINDOW)
    if not (isinstance(window, (list, tuple)) and len(window) == 2
            and all(isinstance(v, (int, float)) for v in window) and window[0] < window[1]):
        raise ValueError(f'{path}: "ct_window" must be [low, high] in HU with low < high, got {window!r}')
    return float(window[0]), float(window[1])


def _read_spec(root: Path) -> tuple[FolderSpec | None, list[str]]:
    path = root / "dataset.json"
    if not path.is_file():
        return None, [f'missing {path}: expected {{"labels": {{"background": 0, ...}}, "modality": "CT" or "MRI" ...}}']
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        return None, [f"{path} is not valid JSON: {error}"]
    if not isinstance(meta, dict):
        return None, [f"{path} must hold a JSON object, got {type(meta).__name__}"]
    problems: list[str] = []
    fields = [_collect(problems, parse, meta, path) for parse in (_class_names, _modalities, _ct_window)]
    if problems:
        return None, problems
    return FolderSpec(*fields), []


# ---------------------------------------------------------------- files and cases

def nifti_stem(file_name: str) -> str | None:
    for ending in (".nii.gz", ".nii"):
        if file_name.endswith(ending):
            return file_name[:-len(ending)]
    return None


def _nifti_files(folder: Path) -> tuple[dict[str, Path], list[str]]:
    """File stem (name without .nii/.nii.gz) → path, and the problems of the folder's listing."""
    files, problems = {}, []
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):  # .DS_Store and other hidden files are not data
            continue
        stem = nifti_stem(path.name)
        if stem is None or not path.is_file():
            problems.append(f"{path} is not a .nii or .nii.gz file{convert_hint(path)}")
        elif stem in files:
            problems.append(f"{path} and {files[stem]} are the same case")
        else:
            files[stem] = path
    if not files and not problems:
        problems.append(f"{folder} is empty: expected .nii.gz files")
    return files, problems


def convert_hint(path: Path) -> str:
    """How to turn ``path`` into NIfTI, when it is a volume format the kit does not read."""
    if not path.name.lower().endswith(CONVERTIBLE):
        return ""
    stem = path.name.split(".")[0]
    return (f"; convert it to NIfTI, e.g. with SimpleITK: sitk.WriteImage(sitk.ReadImage('{path.name}'), "
            f"'{stem}.nii.gz'), which keeps its spacing, origin and direction")


def _has_part(root: Path, part: str) -> bool:
    return (root / f"images{part}").exists() or (root / f"labels{part}").exists()


def group_channels(image_files: dict[str, Path]) -> tuple[dict[str, dict[int, Path]], list[str]]:
    """Image files by case and channel (nnU-Net's ``<case>_0000``; no suffix is channel 0), and the
    problems: two files for one channel of a case."""
    channels: dict[str, dict[int, Path]] = {}
    problems = []
    for stem, path in image_files.items():
        match = CHANNEL_SUFFIX.match(stem)
        case, channel = (match["case"], int(match["channel"])) if match else (stem, 0)
        if channel in channels.setdefault(case, {}):
            problems.append(f"{path} and {channels[case][channel]} are both channel {channel} of case {case!r}")
        channels[case][channel] = path
    return channels, problems


def _pair_cases(root: Path, part: str, spec: FolderSpec | None) -> tuple[dict[str, Case], list[str]]:
    """The image/label pairs of ``images{part}/`` and ``labels{part}/`` ("Tr" or "Ts"), and what is wrong.

    Either part may be missing (a training-only folder, or a test-only one to evaluate on), not both.
    """
    images_dir, labels_dir = root / f"images{part}", root / f"labels{part}"
    other = "Ts" if part == "Tr" else "Tr"
    if not _has_part(root, part) and _has_part(root, other):
        return {}, []
    missing = [f"missing folder {folder}" for folder in (images_dir, labels_dir) if not folder.is_dir()]
    if missing:
        return {}, missing
    image_files, problems = _nifti_files(images_dir)
    label_files, label_problems = _nifti_files(labels_dir)
    problems += label_problems

    channels, channel_problems = group_channels(image_files)
    problems += channel_problems
    num_channels = len(spec.modalities) if spec is not None else None

    cases = {}
    for case in sorted(channels):
        found = sorted(channels[case])
        if case not in label_files:
            problems.append(f"{channels[case][found[0]]} has no label: expected {labels_dir / case}.nii.gz")
        elif num_channels is not None and found != list(range(num_channels)):
            problems.append(f"{images_dir}/{case}: found channels {[f'{c:04d}' for c in found]}, dataset.json "
                            f"declares {num_channels} (expected _0000 to _{num_channels - 1:04d})")
        else:
            cases[case] = Case(tuple(channels[case][c] for c in found), label_files[case])
    problems += [f"{path} has no image: expected {images_dir / stem}_0000.nii.gz"
                 for stem, path in label_files.items() if stem not in channels]
    return cases, problems


def _read_volume(path: Path, notes: list[str]) -> tuple[np.ndarray, Geometry]:
    """A 3-D volume and its grid; trailing axes of size 1 (a 4-D file of one frame) are squeezed with a note."""
    array, affine = read_nifti_affine(path)
    if array.ndim > 3 and all(n == 1 for n in array.shape[3:]):
        notes.append(f"{path}: note: {array.ndim}-D array of shape {array.shape} squeezed to {array.shape[:3]}")
        array = array.reshape(array.shape[:3])
    if array.ndim != 3:
        hint = (" (put each channel in its own file: _0000, _0001, ...)" if array.ndim > 3 else
                " (one slice: save it with a third axis of size 1)" if array.ndim == 2 else "")
        raise ValueError(f"{path}: {array.ndim}-D array of shape {array.shape}, expected a 3-D volume{hint}")
    return array, Geometry.of(array.shape, affine)


@dataclass
class ReadCase:
    """One case's volumes as stored, with every problem found in them and every fix made (notes)."""
    channels: list[np.ndarray]
    label: np.ndarray | None
    geometry: Geometry | None  # the label's
    problems: list[str]
    notes: list[str]


def _read_case(case: Case, spec: FolderSpec | None) -> ReadCase:
    problems: list[str] = []
    notes: list[str] = []
    channels = [_collect(problems, _read_volume, path, notes) for path in case.images]
    label = _collect(problems, _read_volume, case.label, notes)
    if problems:
        return ReadCase([], None, None, problems, notes)
    label, label_grid = label
    for path, (image, image_grid) in zip(case.images, channels):
        problems += grid_faults(image_grid, label_grid, str(path), str(case.label))
        _collect(problems, check_finite, image, str(path))
    label, note = round_label(label, str(case.label))
    notes += [note] if note else []
    if spec is not None:
        _collect(problems, check_labels, label, len(spec.class_names), str(case.label))
    return ReadCase([image for image, _ in channels], label, label_grid, problems, notes)


def _stop_at(problem: str, root: Path):
    raise ValueError(f"{problem} (run `python -m lomix_core check {root}` to list every problem)")


def reference_grid(cases: list[Case], axcodes: str | None = None) -> tuple[str | None, tuple[float, ...] | None]:
    """The voxel orientation every case is brought to (``axcodes``, else the most common among
    ``cases``, the first in sorted order on a tie) and the cases' median voxel spacing in it, from
    the headers alone; ``(None, None)`` without a readable header."""
    import nibabel as nib

    affines = []
    for case in cases:
        try:
            affines.append(nib.load(str(case.label)).affine)
        except Exception:  # an unreadable file stops the loader with its own line when it is read
            continue
    if not affines:
        return axcodes, None
    if axcodes is None:
        axcodes = most_common_orientation(orientation_of(affine) for affine in affines)
    spacings = [Reorientation(orientation_of(a), axcodes).spacing(Geometry.of((1, 1, 1), a).spacing) for a in affines]
    return axcodes, tuple(float(v) for v in np.median(spacings, axis=0))


def preprocessing(spec: FolderSpec, size: int | tuple[int, int], axis: int, aspect: str = "pad",
                  orientation: str = "voxel", intensity: dict | None = None, axcodes: str | None = None,
                  spacing: tuple[float, ...] | None = None) -> Preprocessing:
    """Intensities to [0, 1] per channel: CT (any case) clipped to the folder's HU window, the same
    for every scan; any other modality clipped per volume to its 0.5th and 99.5th percentiles.
    ``intensity`` (a :func:`~.preprocessing.scale_intensity` spec) overrides both for every channel."""
    if intensity is not None:
        intensity = (dict(intensity),) * len(spec.modalities)
    else:
        intensity = tuple({"kind": "ct_window", "window": list(spec.ct_window)} if modality.upper() == "CT"
                          else {"kind": "percentile", "percentiles": [0.5, 99.5]} for modality in spec.modalities)
    steps = Preprocessing(size=size, class_names=spec.class_names, intensity=intensity, axis=axis, aspect=aspect,
                          orientation=orientation, axcodes=axcodes)
    if spacing is None:
        return steps
    return dataclasses.replace(steps, spacing=steps.slice_spacing(spacing)[1:])


def _slices(case: Case, spec: FolderSpec, steps: Preprocessing,
            root: Path) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """Image ``[D, C, H, W]`` in [0, 1], label ``[D, H, W]`` and spacing, slicing as ``steps`` says."""
    read = _read_case(case, spec)
    if read.problems:
        _stop_at(read.problems[0], root)
    turn = Reorientation(read.geometry.orientation, steps.axcodes or read.geometry.orientation)
    if not turn.identity:
        read.notes.append(f"{case.label}: note: stored {turn.source}, "
                          f"reoriented to {turn.target} as every case is")
    for note in read.notes:
        say(f"nifti: {note}")
    image = np.stack([scale_intensity(turn.apply(volume), intensity)
                      for volume, intensity in zip(read.channels, steps.intensity)])
    return (steps.slices(image), steps.slices(turn.apply(read.label).astype(np.uint8)),
            steps.slice_spacing(turn.spacing(read.geometry.spacing)))


# ---------------------------------------------------------------- public API

def check_folder(root: str | os.PathLike) -> list[str]:
    """Every problem in the dataset folder ``root``, one line each; empty when it is ready to load."""
    return inspect_folder(root)[0]


def inspect_folder(root: str | os.PathLike) -> tuple[list[str], list[str]]:
    """Every problem in the dataset folder ``root`` and every note on what the loader will fix
    (a squeezed 4-D file, a rounded float label), one line each.

    Reads every file once, so it takes about as long as loading the data.
    """
    root = Path(root)
    if not root.is_dir():
        return [f"{root} is not a folder: expected dataset.json, imagesTr/ and labelsTr/, or imagesTs/ and "
                f"labelsTs/, or both"], []
    spec, problems = _read_spec(root)
    notes: list[str] = []
    for part in ("Tr", "Ts"):
        cases, pairing_problems = _pair_cases(root, part, spec)
        problems += pairing_problems
        for case in cases.values():
            read = _read_case(case, spec)
            problems += read.problems
            notes += read.notes
    return problems, notes


def folder_summary(root: str | os.PathLike) -> str:
    """One line on a folder that :func:`check_folder` passed: case counts and class names."""
    root = Path(root)
    spec, _ = _read_spec(root)
    num_train, num_test = (len(_pair_cases(root, part, spec)[0]) for part in ("Tr", "Ts"))
    return (f"ok: {num_train} training cases, {num_test} test cases, "
            f"{len(spec.class_names)} classes ({', '.join(spec.class_names)})")


def split_train_val(cases: list[str], num_val: int | None, split_seed: int) -> dict[str, list[str]]:
    """Whole cases to train and val: ``num_val`` (default 20%, at least 1) by a seeded permutation."""
    num_val = max(1, round(0.2 * len(cases))) if num_val is None else num_val
    if not 0 <= num_val < len(cases):
        raise ValueError(f"num_val={num_val} must leave at least one of the {len(cases)} training cases to train on "
                         f"(leave num_val unset to validate on a slab of each case, or set 0 for no validation)")
    val = set(np.random.default_rng(split_seed).permutation(len(cases))[:num_val].tolist())
    return {"train": [c for i, c in enumerate(cases) if i not in val],
            "val": [c for i, c in enumerate(cases) if i in val]}


def validation_kind(num_cases: int, num_val: int | None) -> str:
    """How the training cases give up a validation set: ``"cases"`` (whole cases), ``"slabs"``
    (a slab of every case, when they are too few and ``num_val`` is unset) or ``"none"`` (``num_val=0``)."""
    if num_val == 0:
        return "none"
    return "slabs" if num_val is None and num_cases < MIN_CASES_FOR_CASE_VALIDATION else "cases"


def hold_out_slab(label: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Slice indices ``(train, val)`` of one case's label stack ``[D, H, W]``: val is the eighth of
    the slices (at least 1) at the end whose slab holds more foreground classes (the far end on a
    tie), :data:`GAP` slices separate it from train, and train is the rest."""
    depth = len(label)
    size = max(1, round(depth * VAL_SLAB_FRACTION))
    if depth < size + GAP + 1:
        raise ValueError(f"{where} has {depth} slices; holding out a validation slab needs at least {size + GAP + 1} "
                         f"({size} to validate, a {GAP}-slice gap, 1 to train), or set num_val=0 for no validation")
    def classes(rows): return len(set(np.unique(label[rows]).tolist()) - {0})
    rows = np.arange(depth)
    if classes(rows[-size:]) >= classes(rows[:size]):
        return rows[:depth - size - GAP], rows[depth - size:]
    return rows[size + GAP:], rows[:size]


_SAID: set[str] = set()


def say(line: str) -> None:
    """Print ``line`` the first time this process says it: a run loads the train, val and test
    splits (and evaluation may load one again), and each load would repeat the same notes."""
    if line not in _SAID:
        _SAID.add(line)
        print(line)


def _announce(kind: str, num_cases: int, axis: int) -> None:
    if kind == "slabs":
        say(f"nifti: {num_cases} training case(s), too few to hold whole cases out: validation is one eighth of "
              f"each case's slices along axis {axis}, {GAP} slices from its training slices (num_val=N holds out "
              f"N whole cases)")
    elif kind == "none":
        say("nifti: num_val=0: no validation split, so training keeps its last epoch")


@register("nifti")
def load_nifti_folder(split: str, augment: bool = False, root: str | os.PathLike | None = None, size: int = 224,
                      num_val: int | None = None, num_train_subjects: int | None = None, split_seed: int = 0,
                      axis: int = 2, aspect: str = "pad", orientation: str = "voxel",
                      intensity: dict | None = None, axcodes: str | None = None) -> SliceDataset:
    """The ``split`` of the NIfTI folder ``root`` (default ``$LOMIX_DATA/nifti``); see the module docstring.

    ``num_train_subjects`` keeps that many training cases (chosen by ``split_seed``) for
    low-data runs; val and test stay whole. To score a model trained on other data, read the
    folder as that data were read: ``orientation="radiological"`` shows RAS scans as ``brain_aal``
    stores its slices, and ``intensity={"kind": "max"}`` scales them as it does (``evaluate``
    names any difference). ``axcodes`` (e.g. ``"RAS"``) is the voxel orientation every case is
    brought to before slicing; by default the most common among the training cases (the test
    cases in a test-only folder), so ``axis`` counts in it.
    """
    if axis not in (0, 1, 2, -1):
        raise ValueError(f"axis must be 0, 1 or 2 (the NIfTI voxel axis to slice along), got {axis}")
    folder = prepared_dir("nifti", root, HOW_TO_GET)
    spec, problems = _read_spec(folder)
    part = "Ts" if split == "test" else "Tr"
    cases, pairing_problems = _pair_cases(folder, part, spec)
    problems += pairing_problems
    if problems:
        _stop_at(problems[0], folder)
    if not cases:
        if split == "test":
            raise SplitNotPresent(f"{folder} has no imagesTs/ and labelsTs/: the test split needs labelled test cases")
        raise FileNotFoundError(f"{folder} has no imagesTr/ and labelsTr/: it holds test cases only, which evaluation "
                                f"can score but the {split} split needs training cases")
    names = sorted(cases)
    kind = "test" if split == "test" else validation_kind(len(names), num_val)
    if kind == "none" and split == "val":
        raise SplitNotPresent(f"{folder}: num_val=0 holds out no validation cases, so there is no val split")
    if kind == "cases":
        names = split_train_val(names, num_val, split_seed)[split]
    if split == "train":
        names = pick_subjects(names, num_train_subjects, split_seed)
        _announce(kind, len(names), axis % 3)
    reference = list(_pair_cases(folder, "Tr", spec)[0].values()) or list(cases.values())
    steps = preprocessing(spec, size, axis % 3, aspect, orientation, intensity, *reference_grid(reference, axcodes))
    # A generator, so only one case's raw volumes are in memory at a time.
    subjects = ((name, *_slices(cases[name], spec, steps, folder)) for name in names)
    if kind == "slabs":
        subjects = _slab_subjects(subjects, split)
    return stack_subjects(subjects, steps, "nifti", split, augment)


def _slab_subjects(subjects, split: str):
    """Each case's training slices (subject: the case) or its validation slab (subject: ``<case>_val``)."""
    for name, image, label, spacing in subjects:
        train, val = hold_out_slab(label, f"case {name!r}")
        if split == "train":
            yield name, image[train], label[train], spacing
        else:
            yield f"{name}_val", image[val], label[val], spacing

"""``acdc``: cardiac cine-MRI, 3 structures, with the 70 / 10 / 20 patient split of MT-UNet and EMCAD.

Source
    Automated Cardiac Diagnosis Challenge (MICCAI 2017), https://www.creatis.insa-lyon.fr/Challenge/acdc/
    (data on the Human Heart Project platform, https://humanheart-project.creatis.insa-lyon.fr/database/ ;
    research use, non-commercial, CC BY-NC-SA 4.0 as distributed there; cite Bernard et al.,
    IEEE TMI 37(11), 2018). This kit ships none of it. Unzipped, ``database/training`` holds
    100 patients: ``patient001/Info.cfg`` (its ``ED:`` and ``ES:`` lines give the two labelled
    frames) and ``patient001/patient001_frame01.nii.gz`` with ``patient001_frame01_gt.nii.gz``.

Classes
    The ground-truth values as the challenge defines them: 0 background, 1 right-ventricle
    cavity, 2 left-ventricle myocardium, 3 left-ventricle cavity.

Split
    MT-UNet's lists, which EMCAD (and so LoMix) reuses with MT-UNet's loader (the copy read here:
    sotiraslab/AgileFormer ``lists/lists_ACDC/{train,valid,test}.txt``): ``VAL_PATIENTS``
    (10), ``TEST_PATIENTS`` (20), and the other 70 of ``database/training`` for training.
    ``database/testing`` (patients 101-150) is not used.

Subjects
    Each patient gives two volumes, end-diastole and end-systole, scored as separate 3-D
    subjects ``patient001_ED`` and ``patient001_ES``, as in MT-UNet's test lists. Low-data
    subsets (``num_train_subjects``) count patients, so both frames of a patient stay together.

Prepared layout (``prepare``)::

    volumes/patient001_ED.h5   datasets image [D,H,W] float32 in [0,1], label [D,H,W] uint8 in 0..3
    prepared.json              the manifest (splits by patient), written last

ACDC volumes are small (about 10 slices each), so every split is stored as whole volumes.
Intensities: each volume is clipped at its own 0.5th and 99.5th percentiles and scaled to
[0, 1], which removes the scanner-dependent MRI scale and the few very bright voxels. A NIfTI
volume ``[x, y, z]`` is transposed to ``[z, x, y]`` (short-axis slices first), as for Synapse;
nothing is resampled here, and the loader resizes slices to the model size whatever their
pixel spacing.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import numpy as np

from .prepared import already_prepared, load_volume_h5, open_prepared, save_volume_h5, split_subjects, start_writing, write_manifest
from .registry import register
from .slices import SliceDataset
from .preprocessing import Preprocessing, scale_intensity
from .volumes import check_volume, common_orientation, read_labelled_volume, stack_subjects

SOURCE_URL = "https://www.creatis.insa-lyon.fr/Challenge/acdc/"
DOWNLOAD = (f"download the ACDC database from {SOURCE_URL} (Human Heart Project platform; research use, "
            f"CC BY-NC-SA 4.0) and unzip it")
PREPARE_COMMAND = "python data_scripts/prepare_acdc.py --raw <database folder>"

CLASS_NAMES = ("background", "right_ventricle", "myocardium", "left_ventricle")
PHASES = ("ED", "ES")
PERCENTILES = (0.5, 99.5)

VAL_PATIENTS = tuple(f"patient{n:03d}" for n in (19, 21, 29, 33, 41, 50, 61, 71, 76, 80))
TEST_PATIENTS = tuple(f"patient{n:03d}" for n in (2, 3, 8, 9, 12, 14, 17, 24, 42, 48, 49, 53, 55, 64, 67, 79,
                                                   81, 88, 92, 95))
TRAIN_PATIENTS = tuple(f"patient{n:03d}" for n in range(1, 101)
                       if f"patient{n:03d}" not in VAL_PATIENTS + TEST_PATIENTS)


# --- Preparation ----------------------------------------------------------------------------

def _training_dir(raw_dir: Path) -> Path:
    folder = raw_dir / "training"
    if not folder.is_dir():
        raise FileNotFoundError(f"ACDC raw data not found: expected {folder}/patient001/Info.cfg and "
                                f"patient001_frameNN[_gt].nii.gz; {DOWNLOAD}")
    return folder


def _choose_patients(training: Path, patients: Iterable[str] | None) -> list[str]:
    """All 100 listed patients (``patients=None``), or the explicit subset; every one must exist."""
    listed = set(TRAIN_PATIENTS + VAL_PATIENTS + TEST_PATIENTS)
    found = {path.name for path in training.glob("patient*") if path.is_dir()}
    for patient in sorted(found - listed):
        print(f"acdc: note: skipping {patient}, which is in none of the split lists")
    wanted = listed if patients is None else set(patients)
    if wanted - listed:
        raise ValueError(f"unknown ACDC patients {sorted(wanted - listed)}: expected patient001 … patient100")
    missing = sorted(wanted - found)
    if missing:
        subset = "; or pass patients=[...] (--patients) to prepare only a subset" if patients is None else ""
        raise FileNotFoundError(f"{len(missing)} ACDC patient folder(s) missing under {training}: "
                                f"{', '.join(missing)}; {DOWNLOAD}{subset}")
    return sorted(wanted)


def _labelled_frames(patient_dir: Path) -> dict[str, int]:
    """``{"ED": frame, "ES": frame}`` from the patient's ``Info.cfg`` (lines like ``ED: 1``)."""
    info = patient_dir / "Info.cfg"
    if not info.is_file():
        raise FileNotFoundError(f"{info} does not exist; expected the ACDC patient file with 'ED:' and 'ES:' lines")
    fields = dict(line.split(":", 1) for line in info.read_text().splitlines() if ":" in line)
    try:
        return {phase: int(fields[phase]) for phase in PHASES}
    except (KeyError, ValueError):
        raise ValueError(f"{info}: expected integer 'ED:' and 'ES:' lines, got {sorted(fields)}") from None


PREPROCESSING = {"intensity": ({"kind": "percentile", "percentiles": list(PERCENTILES)},), "axis": 2,
                 "orientation": "voxel"}


def _read_volume(image_path: Path, label_path: Path,
                 axcodes: str | None = None) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """One labelled frame: image [D,H,W] float32 in [0,1], label [D,H,W] uint8, spacing (z, x, y) in mm;
    turned to ``axcodes`` first if stored otherwise."""
    image, label, spacing = read_labelled_volume(image_path, label_path, len(CLASS_NAMES), axcodes)
    return scale_intensity(image, PREPROCESSING["intensity"][0]), label.astype(np.uint8), spacing


def prepare(raw_dir: str | os.PathLike, out_dir: str | os.PathLike, force: bool = False,
            patients: Iterable[str] | None = None) -> Path:
    """Convert the ACDC ``database`` folder into ``out_dir`` (see the module docstring).

    ``patients=None`` converts all 100 listed patients and fails if any is missing; a list such
    as ``["patient001", "patient019", "patient002"]`` converts only those (quick trials, tests).
    A finished ``out_dir`` is left alone unless ``force``.
    """
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    if already_prepared("acdc", out_dir, force):
        return out_dir
    training = _training_dir(raw_dir)
    chosen = _choose_patients(training, patients)
    start_writing(out_dir, ("volumes",))

    frames = {patient: _labelled_frames(training / patient) for patient in chosen}
    files = {f"{patient}_{phase}": (training / patient / f"{patient}_frame{frame:02d}.nii.gz",
                                    training / patient / f"{patient}_frame{frame:02d}_gt.nii.gz")
             for patient in chosen for phase, frame in frames[patient].items()}
    axcodes, reoriented = common_orientation("acdc", {volume: image for volume, (image, _) in files.items()})
    spacing = {}
    for patient in chosen:
        for phase in frames[patient]:
            volume = f"{patient}_{phase}"
            image, label, spacing[volume] = _read_volume(*files[volume], axcodes)
            save_volume_h5(out_dir / "volumes" / f"{volume}.h5", image, label)
        print(f"acdc: {patient}: ED frame {frames[patient]['ED']}, ES frame {frames[patient]['ES']}")

    splits = {"train": [p for p in chosen if p in TRAIN_PATIENTS],
              "val": [p for p in chosen if p in VAL_PATIENTS],
              "test": [p for p in chosen if p in TEST_PATIENTS]}
    write_manifest(out_dir, {
        "dataset": "acdc", "source": SOURCE_URL, "raw_dir": str(raw_dir.resolve()),
        "class_names": list(CLASS_NAMES), "intensity_percentiles": list(PERCENTILES),
        "splits": splits, "frames": frames,
        "spacing": spacing,  # mm per volume, (z, x, y): the order of the stored [D, H, W] arrays
        # The NIfTI voxel orientation every volume was brought to, which predict turns new scans to,
        # and the volumes stored otherwise (with their own codes).
        "axcodes": axcodes, "reoriented": reoriented,
    })
    print(f"acdc: prepared {len(chosen)} patients in {out_dir}: "
          + ", ".join(f"{len(v)} {k}" for k, v in splits.items()))
    return out_dir


# --- Loading --------------------------------------------------------------------------------

@register("acdc")
def load_acdc(split: str, augment: bool = False, root: str | os.PathLike | None = None, size: int = 224,
              num_train_subjects: int | None = None, split_seed: int = 0) -> SliceDataset:
    """The ``split`` of prepared ACDC, resized in-plane to ``size``; subjects are ``patientNNN_ED|ES``.

    ``num_train_subjects`` keeps that many whole training patients (both frames), chosen by
    ``split_seed`` (the train/val/test split itself is fixed).
    """
    folder, manifest = open_prepared("acdc", root, CLASS_NAMES, PREPARE_COMMAND)
    patients = split_subjects(manifest, split, num_train_subjects, split_seed)

    def volumes():
        for patient in patients:
            for phase in PHASES:
                subject = f"{patient}_{phase}"
                path = folder / "volumes" / f"{subject}.h5"
                image, label = load_volume_h5(path)
                check_volume(image, label, len(CLASS_NAMES), str(path))
                # Folders prepared before the spacing was recorded score HD95 in voxels only.
                yield subject, image, label, manifest.get("spacing", {}).get(subject)

    # Folders prepared before the orientation was recorded (no "axcodes") predict new scans as stored.
    preprocessing = Preprocessing(size=size, class_names=CLASS_NAMES, axcodes=manifest.get("axcodes"), **PREPROCESSING)
    return stack_subjects(volumes(), preprocessing, "acdc", split, augment)

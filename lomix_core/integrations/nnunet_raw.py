"""A kit dataset as an nnU-Net v2 raw dataset: ``python -m lomix_core nnunet export DATASET OUT``.

nnU-Net's raw format (``$nnUNet_raw/DatasetXXX_NAME/``) is a ``dataset.json`` and one NIfTI file per
case and channel: ``imagesTr/CASE_0000.nii.gz`` with ``labelsTr/CASE.nii.gz``, and ``imagesTs/``.
Here every 3-D subject of the kit's dataset is one case (a brain_aal slab, a CT scan; a polyp or skin
image is a one-slice case), read through the kit's own loader at the kit's model grid (``size``),
so nnU-Net and the kit see the same pixels:

* the kit's ``train`` and ``val`` subjects go to ``imagesTr``/``labelsTr``, its ``test`` subjects to
  ``imagesTs`` and, for scoring, ``labelsTs`` (nnU-Net ignores that folder);
* ``kit_splits.json`` holds one fold, the kit's train/val split. nnU-Net would otherwise draw its own
  five folds; :func:`use_kit_split` copies it to ``$nnUNet_preprocessed/DatasetXXX_NAME/splits_final.json``
  after planning, so that fold 0 trains on the kit's training subjects and validates on its validation ones;
* volumes are written ``[H, W, D]`` (slices last) with 1 mm voxels: the kit's model grid has no
  physical spacing, and with equal spacings nnU-Net's 2D configuration cuts along the slice axis;
* images are the kit's intensities in [0, 1] as float32, one file per channel; nnU-Net normalises
  them again (z-score, channel name "image"). Labels are uint8 class indices.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np

from .. import data
from ..foundations.records import save_json

SPLIT_FOLDERS = {"train": ("imagesTr", "labelsTr"), "val": ("imagesTr", "labelsTr"), "test": ("imagesTs", "labelsTs")}
SPLITS_FILE = "kit_splits.json"


def dataset_name(dataset: str, dataset_id: int) -> str:
    """nnU-Net's folder name ``DatasetXXX_name`` (three digits, 1..999)."""
    if not isinstance(dataset_id, int) or isinstance(dataset_id, bool) or not 1 <= dataset_id <= 999:
        raise ValueError(f"dataset id must be an integer in [1, 999] (nnU-Net's DatasetXXX), got {dataset_id!r}")
    return f"Dataset{dataset_id:03d}_{re.sub(r'[^A-Za-z0-9_]+', '_', dataset)}"


def case_id(subject: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", subject).strip("_") or "case"


def export(dataset: str, out: str | os.PathLike, dataset_id: int = 901, size: int | None = None,
           overwrite: bool = False, **data_kwargs) -> Path:
    """Write ``dataset`` as ``out/DatasetXXX_Name`` in nnU-Net's raw format; returns that folder.

    ``size`` and ``data_kwargs`` go to the kit's loader (:func:`lomix_core.data.load`). A split the
    dataset lacks by design (no test scans) is left out. The folder is built beside its final place
    and renamed into it, so a crash never leaves half a dataset under the name nnU-Net reads.
    """
    import nibabel as nib

    target = Path(out) / dataset_name(dataset, dataset_id)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; pass overwrite=True (--overwrite) to replace it")
    kwargs = dict(data_kwargs, **({"size": size} if size is not None else {}))
    building = target.with_name(f".{target.name}.building")
    shutil.rmtree(building, ignore_errors=True)
    cases: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    class_names, channels = None, None
    for split, (image_folder, label_folder) in SPLIT_FOLDERS.items():
        try:
            slices = data.load(dataset, split=split, **kwargs)
        except data.SplitNotPresent:
            continue
        class_names, channels = slices.class_names, slices.in_channels
        (building / image_folder).mkdir(parents=True, exist_ok=True)
        (building / label_folder).mkdir(parents=True, exist_ok=True)
        for subject, rows in slices.subject_slices().items():
            case = case_id(f"{dataset}_{subject}")
            images = slices.image_batch(rows).numpy()  # [D, channels, H, W]
            label = slices.labels[rows].numpy()  # [D, H, W]
            for channel in range(channels):
                volume = np.ascontiguousarray(images[:, channel].transpose(1, 2, 0), dtype=np.float32)
                nib.save(nib.Nifti1Image(volume, np.eye(4)), building / image_folder / f"{case}_{channel:04d}.nii.gz")
            nib.save(nib.Nifti1Image(np.ascontiguousarray(label.transpose(1, 2, 0)).astype(np.uint8), np.eye(4)),
                     building / label_folder / f"{case}.nii.gz")
            cases[split].append(case)
    if not cases["train"]:
        raise ValueError(f"dataset {dataset!r} gave no training subjects; expected at least one to export")
    save_json({
        "channel_names": {str(c): "image" for c in range(channels)},
        "labels": {name: index for index, name in enumerate(class_names)},
        "numTraining": len(cases["train"]) + len(cases["val"]),
        "file_ending": ".nii.gz",
        "name": target.name,
        "description": f"lomix-kit dataset {dataset!r} ({', '.join(f'{k}={v!r}' for k, v in kwargs.items()) or 'defaults'}),"
                       f" exported by `python -m lomix_core nnunet export`",
    }, building / "dataset.json")
    save_json([{"train": cases["train"], "val": cases["val"]}], building / SPLITS_FILE)
    if target.exists():
        shutil.rmtree(target)
    os.replace(building, target)
    return target


def use_kit_split(raw_folder: str | os.PathLike, preprocessed_folder: str | os.PathLike) -> Path:
    """Copy the export's ``kit_splits.json`` to nnU-Net's ``splits_final.json`` (fold 0 = the kit's split)."""
    source = Path(raw_folder) / SPLITS_FILE
    if not source.is_file():
        raise FileNotFoundError(f"{source} is missing; expected a folder written by `python -m lomix_core nnunet export`")
    folds = json.loads(source.read_text())
    if not folds[0]["val"]:
        raise ValueError(f"{source} has no validation cases; nnU-Net needs some (export a dataset with a val split)")
    destination = Path(preprocessed_folder) / "splits_final.json"
    if not destination.parent.is_dir():
        raise FileNotFoundError(f"{destination.parent} does not exist; run nnUNetv2_plan_and_preprocess first")
    save_json(folds, destination)
    return destination

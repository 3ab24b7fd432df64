"""``isic2018``: skin lesion segmentation, ISIC 2018 Task 1 (dermoscopy photos, one lesion each).

**Source.** https://challenge.isic-archive.com/data/#2018 — Task 1 "Training Data" (2594 images)
and its ground truth are required; the Validation (100) and Test (1000) images and ground truth are
optional.

**Licence.** CC BY-NC 4.0 (non-commercial, attribution): cite Codella et al. 2019 (ISIC 2018
challenge) and Tschandl et al. 2018 (HAM10000). Nothing here redistributes the images.

**Raw layout** (``--raw`` points at the folder holding the unzipped downloads)::

    ISIC2018_Task1-2_Training_Input/ISIC_0000000.jpg
    ISIC2018_Task1_Training_GroundTruth/ISIC_0000000_segmentation.png
    ISIC2018_Task1-2_Validation_Input/, ISIC2018_Task1_Validation_GroundTruth/   (optional)
    ISIC2018_Task1-2_Test_Input/,       ISIC2018_Task1_Test_GroundTruth/         (optional)

**Classes.** ``("background", "lesion")``; mask pixels >= 128 are lesion.

**Splits** (``protocol=``):

* ``"random"`` (default). EMCAD's released code has no ISIC script; its authors' earlier
  G-CASCADE merges the Validation images into the Training images, validation first, and splits
  them 80:10:10 into train/val/test with ``np.random.seed(42)`` (``utils/lesion/make_dataset.py``
  in SLDGroup/G-CASCADE, after Double U-Net). With
  ``split_seed=42`` and the same folders this gives the same images in each split: 2156/269/269
  from 2694 images, or 2076/259/259 from Training alone. The Test folder is not used.
* ``"official"``: the challenge's own Training / Validation / Test; needs all three prepared.

**Size.** 384×384, G-CASCADE's ``img_size`` for ISIC 2018. G-CASCADE first stores 512×384 (keeping
the 4:3 aspect) and then squeezes to 384×384 when loading; this kit zero-pads each photo, centred,
to a square and resizes it once to 384×384, so lesions keep their shape. Val and test are scored
at each photo's original size against its original mask, kept 1 bit a pixel (a 12-megapixel
mask takes 1.5 MB of memory).

**Prepared layout** (see :mod:`lomix_core.data.images`)::

    data/isic2018/Training.npz  (and Validation.npz, Test.npz when present)
    data/isic2018/prepared.json                written last
"""
from __future__ import annotations

import os
from pathlib import Path

from .images import FORMAT, check_format, find_pairs, low_data_subset, part_ids, split_indices, to_dataset, write_prepared
from .prepared import already_prepared, open_prepared
from .registry import register
from .slices import SliceDataset

CLASS_NAMES = ("background", "lesion")
PARTS = ("Training", "Validation", "Test")
SIZE = 384
MASK_SUFFIX = "_segmentation"
DOWNLOAD = ("the ISIC 2018 Task 1 data from https://challenge.isic-archive.com/data/#2018 "
            "(licence CC BY-NC 4.0)")
PREPARE_COMMAND = "python data_scripts/prepare_isic.py --raw <folder with the ISIC2018_Task1* folders>"


def raw_folders(raw_dir: Path, part: str) -> tuple[Path, Path]:
    """The image and ground-truth folders of one part of the challenge download."""
    return raw_dir / f"ISIC2018_Task1-2_{part}_Input", raw_dir / f"ISIC2018_Task1_{part}_GroundTruth"


def prepare(raw_dir: str | os.PathLike, out_dir: str | os.PathLike, force: bool = False, size: int = SIZE) -> Path:
    """Read the ISIC 2018 Task 1 folders under ``raw_dir`` and write the prepared arrays to ``out_dir``."""
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    if already_prepared("isic2018", out_dir, force, size=size, **FORMAT):
        return out_dir
    parts = {}
    for part in PARTS:
        images, masks = raw_folders(raw_dir, part)
        if images.is_dir() != masks.is_dir() or (part == "Training" and not images.is_dir()):
            missing = masks if images.is_dir() else images
            raise FileNotFoundError(f"ISIC 2018 raw data: expected folder {missing}; download {DOWNLOAD} "
                                    f"and unzip it into {raw_dir}")
        if images.is_dir():
            parts[part] = find_pairs(images, masks, MASK_SUFFIX)
    info = {"dataset": "isic2018", "class_names": list(CLASS_NAMES), "raw_dir": str(raw_dir.resolve())}
    write_prepared(out_dir, parts, size, info)
    return out_dir


@register("isic2018")
def load_isic2018(split: str, augment: bool = False, root: str | os.PathLike | None = None, size: int = SIZE,
                  num_train_subjects: int | None = None, split_seed: int = 42,
                  protocol: str = "random") -> SliceDataset:
    """The ``split`` of the prepared ISIC 2018 data at ``size`` under ``protocol`` ("random" or
    "official"); ``split_seed`` draws the random split and the ``num_train_subjects`` subset."""
    folder, manifest = open_prepared("isic2018", root, CLASS_NAMES, PREPARE_COMMAND)
    check_format(folder, manifest, PREPARE_COMMAND)
    if protocol == "random":
        # Validation first, then Training: the order G-CASCADE shuffles, so seed 42 matches its split.
        parts = [part for part in ("Validation", "Training") if part in manifest["parts"]]
        ids_of = {part: part_ids(folder, part, manifest["size"]) for part in parts}
        ids = [i for part in parts for i in ids_of[part]]
        keep = split_indices(len(ids), 0.1, 0.1, split_seed)[split]
        if split == "train":
            keep = low_data_subset(ids, keep, num_train_subjects, split_seed)
        selection, start = [], 0
        for part in parts:  # rows of the joined list back to rows of each part
            end = start + len(ids_of[part])
            selection.append((part, [i - start for i in keep if start <= i < end]))
            start = end
    elif protocol == "official":
        part = {"train": "Training", "val": "Validation", "test": "Test"}[split]
        if part not in manifest["parts"]:
            raise FileNotFoundError(f"protocol='official' needs the {part} images, which {folder} lacks: add the "
                                    f"{part} folders from {DOWNLOAD} and run "
                                    f"`{PREPARE_COMMAND} --out {folder} --force`")
        rows = None
        if split == "train":
            ids = part_ids(folder, part, manifest["size"])
            rows = low_data_subset(ids, list(range(len(ids))), num_train_subjects, split_seed)
        selection = [(part, rows)]
    else:
        raise ValueError(f"unknown ISIC protocol {protocol!r}; expected 'random' or 'official'")
    return to_dataset(folder, manifest, selection, CLASS_NAMES, "isic2018", split, augment, size)

"""``synapse``: abdominal CT, 8 organs, in the TransUNet layout that LoMix and EMCAD report on.

Source
    MICCAI 2015 Multi-Atlas Abdomen Labeling Challenge ("Beyond the Cranial Vault"),
    https://www.synapse.org/#!Synapse:syn3193805/wiki/ : download ``RawData.zip`` (a free
    Synapse account and acceptance of the challenge's data-use terms are required; the data
    are for research only and must not be redistributed, so this kit ships none of it).
    Unzipped, ``RawData/Training`` holds 30 labelled CT volumes,
    ``img/img0001.nii.gz`` … with ``label/label0001.nii.gz`` ….

Classes
    The raw labels name 13 organs (``RAW_LABELS``). The paper scores 8 of them, in the class
    order of the EMCAD code that LoMix builds on (SLDGroup/EMCAD ``test_synapse.py`` and
    ``utils/dataset_synapse.py``): spleen, right kidney, left kidney, gallbladder, pancreas,
    liver, stomach, aorta. Raw 11 (pancreas) becomes class 5; the other five organs
    (esophagus, vena cava, portal/splenic vein, adrenal glands) become background.
    Papers' tables list the same organs alphabetically (aorta, gallbladder, …); that is a
    display order, not the class index.

Split
    TransUNet's 18 training / 12 test cases (Beckschen/TransUNet ``lists/lists_Synapse``).
    TransUNet has no validation split; we select models on validation, never on test, so
    the two highest-numbered training cases (``VAL_CASES``) are held out as val: 16 / 2 / 12.

Prepared layout (``prepare``; TransUNet's names, keys and axis order)::

    train_npz/case0005_slice000.npz   image [H,W] float32 in [0,1], label [H,W] uint8 in 0..8
    test_vol_h5/case0001.npy.h5       datasets image, label: [D,H,W]
    lists/train.txt                   one slice name per line (train and val cases)
    lists/test_vol.txt                one case per line
    prepared.json                     the manifest, written last

Images are HU clipped to [-125, 275] and scaled to [0, 1]. Like TransUNet, a NIfTI volume
``[x, y, z]`` is transposed to ``[z, x, y]``: slice k is the k-th axial plane, with rows
along x; nothing is resampled. Files are compressed; ``np.load`` and ``h5py`` read them as usual.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import numpy as np

from ..foundations.records import save_npz, save_text
from .prepared import already_prepared, load_volume_h5, open_prepared, save_volume_h5, split_subjects, start_writing, write_manifest
from .registry import register
from .slices import SliceDataset
from .preprocessing import Preprocessing, scale_intensity
from .volumes import check_volume, common_orientation, one_line, read_labelled_volume, stack_subjects

SOURCE_URL = "https://www.synapse.org/#!Synapse:syn3193805/wiki/"
DOWNLOAD = (f"download RawData.zip from {SOURCE_URL} (free Synapse account; accept the challenge's data-use "
            f"terms: research only, no redistribution) and unzip it")
PREPARE_COMMAND = "python data_scripts/prepare_synapse.py --raw <RawData folder>"

RAW_LABELS = {1: "spleen", 2: "right_kidney", 3: "left_kidney", 4: "gallbladder", 5: "esophagus", 6: "liver",
              7: "stomach", 8: "aorta", 9: "inferior_vena_cava", 10: "portal_and_splenic_vein", 11: "pancreas",
              12: "right_adrenal_gland", 13: "left_adrenal_gland"}
CLASS_NAMES = ("background", "spleen", "right_kidney", "left_kidney", "gallbladder", "pancreas", "liver",
               "stomach", "aorta")
# LABEL_MAP[raw value] = class index; organs outside CLASS_NAMES fall to 0 (background).
LABEL_MAP = np.array([0] + [CLASS_NAMES.index(name) if name in CLASS_NAMES else 0 for name in RAW_LABELS.values()],
                     dtype=np.uint8)

TRAIN_CASES = ("case0005", "case0006", "case0007", "case0009", "case0010", "case0021", "case0023", "case0024",
               "case0026", "case0027", "case0028", "case0030", "case0031", "case0033", "case0034", "case0037",
               "case0039", "case0040")
TEST_CASES = ("case0001", "case0002", "case0003", "case0004", "case0008", "case0022", "case0025", "case0029",
              "case0032", "case0035", "case0036", "case0038")
VAL_CASES = ("case0039", "case0040")

HU_WINDOW = (-125.0, 275.0)


# --- Preparation ----------------------------------------------------------------------------

def _find_raw_cases(raw_dir: Path) -> dict[str, tuple[Path, Path]]:
    """Case id -> (image, label) path for every ``img*.nii.gz`` in ``<raw>/Training/img``."""
    image_dir, label_dir = raw_dir / "Training" / "img", raw_dir / "Training" / "label"
    if not image_dir.is_dir() or not label_dir.is_dir():
        raise FileNotFoundError(f"Synapse raw data not found: expected {image_dir}/img0001.nii.gz … and "
                                f"{label_dir}/label0001.nii.gz …; {DOWNLOAD}")
    return {"case" + path.name[3:7]: (path, label_dir / ("label" + path.name[3:]))
            for path in sorted(image_dir.glob("img*.nii.gz"))}


def _choose_cases(found: dict[str, tuple[Path, Path]], cases: Iterable[str] | None, raw_dir: Path) -> list[str]:
    """All 30 listed cases (``cases=None``), or the explicit subset ``cases``; every one must exist."""
    listed = set(TRAIN_CASES + TEST_CASES)
    for case in sorted(set(found) - listed):
        print(f"synapse: note: skipping {case}, which is in neither TransUNet list")
    wanted = listed if cases is None else set(cases)
    if wanted - listed:
        raise ValueError(f"unknown Synapse cases {sorted(wanted - listed)}: expected ids from the TransUNet lists, "
                         f"such as case0005 (train) or case0001 (test)")
    missing = sorted(case for case in wanted if case not in found or not found[case][1].is_file())
    if missing:
        subset = "; or pass cases=[...] (--cases) to prepare only a subset" if cases is None else ""
        raise FileNotFoundError(f"{len(missing)} Synapse case(s) lack an image or label under {raw_dir}/Training: "
                                f"{', '.join(missing)}; {DOWNLOAD}{subset}")
    return sorted(wanted)


PREPROCESSING = {"intensity": ({"kind": "ct_window", "window": list(HU_WINDOW)},), "axis": 2, "orientation": "voxel"}


def _read_case(image_path: Path, label_path: Path,
               axcodes: str | None = None) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """A raw case as TransUNet stores it: image [D,H,W] float32 in [0,1], label [D,H,W] uint8 classes,
    and the voxel spacing (z, x, y) in mm; turned to ``axcodes`` first if stored otherwise."""
    image, label, spacing = read_labelled_volume(image_path, label_path, len(LABEL_MAP), axcodes)
    return scale_intensity(image, PREPROCESSING["intensity"][0]), LABEL_MAP[label.astype(np.int64)], spacing


def prepare(raw_dir: str | os.PathLike, out_dir: str | os.PathLike, force: bool = False,
            cases: Iterable[str] | None = None) -> Path:
    """Convert Synapse ``RawData`` into the TransUNet layout in ``out_dir`` (see the module docstring).

    ``cases=None`` converts all 30 listed cases and fails if any is missing; a list such as
    ``["case0005", "case0040", "case0001"]`` converts only those (quick trials, tests).
    A finished ``out_dir`` is left alone unless ``force``.
    """
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    if already_prepared("synapse", out_dir, force):
        return out_dir
    found = _find_raw_cases(raw_dir)
    chosen = _choose_cases(found, cases, raw_dir)
    start_writing(out_dir, ("train_npz", "test_vol_h5", "lists"))

    axcodes, reoriented = common_orientation("synapse", {case: found[case][0] for case in chosen})
    num_slices, spacing = {}, {}
    for case in chosen:
        image, label, spacing[case] = _read_case(*found[case], axcodes)
        if case in TEST_CASES:
            save_volume_h5(out_dir / "test_vol_h5" / f"{case}.npy.h5", image, label)
        else:
            for z in range(image.shape[0]):
                save_npz({"image": image[z], "label": label[z]}, out_dir / "train_npz" / f"{case}_slice{z:03d}.npz")
        num_slices[case] = image.shape[0]
        print(f"synapse: {case}: {image.shape[0]} slices -> {'test_vol_h5' if case in TEST_CASES else 'train_npz'}")

    splits = {"train": [c for c in chosen if c in TRAIN_CASES and c not in VAL_CASES],
              "val": [c for c in chosen if c in VAL_CASES],
              "test": [c for c in chosen if c in TEST_CASES]}
    save_text("".join(f"{c}_slice{z:03d}\n" for c in splits["train"] + splits["val"] for z in range(num_slices[c])),
              out_dir / "lists" / "train.txt")
    save_text("".join(f"{c}\n" for c in splits["test"]), out_dir / "lists" / "test_vol.txt")
    write_manifest(out_dir, {
        "dataset": "synapse", "source": SOURCE_URL, "raw_dir": str(raw_dir.resolve()),
        "class_names": list(CLASS_NAMES), "label_map": {raw: int(LABEL_MAP[raw]) for raw in RAW_LABELS},
        "hu_window": list(HU_WINDOW), "splits": splits, "num_slices": num_slices,
        "spacing": spacing,  # mm per case, (z, x, y): the order of the stored [D, H, W] arrays
        # The NIfTI voxel orientation every case was brought to, which predict turns new scans to,
        # and the cases stored otherwise (with their own codes).
        "axcodes": axcodes, "reoriented": reoriented,
    })
    print(f"synapse: prepared {len(chosen)} cases in {out_dir}: "
          + ", ".join(f"{len(v)} {k}" for k, v in splits.items()))
    return out_dir


# --- Loading --------------------------------------------------------------------------------

def check_prepared(root: str | os.PathLike | None = None) -> Path:
    """The prepared folder, or one line saying how to prepare it (without loading any slice)."""
    return open_prepared("synapse", root, CLASS_NAMES, PREPARE_COMMAND)[0]


def _load_slices(train_dir: Path, case: str, num_slices: int) -> tuple[np.ndarray, np.ndarray]:
    """A training case restacked from its ``npz`` slices: image and label [D,H,W]."""
    images, labels = [], []
    for z in range(num_slices):
        path = train_dir / f"{case}_slice{z:03d}.npz"
        try:
            with np.load(path) as data:
                images.append(data["image"])
                labels.append(data["label"])
        except Exception as error:  # numpy raises OSError, KeyError, BadZipFile, ...
            raise ValueError(f"cannot read {path}: {type(error).__name__}: {one_line(error)} (expected an .npz with "
                             f"'image' and 'label'; re-run the prepare script with --force)") from None
    return np.stack(images), np.stack(labels)


@register("synapse")
def load_synapse(split: str, augment: bool = False, root: str | os.PathLike | None = None, size: int = 224,
                 num_train_subjects: int | None = None, split_seed: int = 0) -> SliceDataset:
    """The ``split`` of prepared Synapse, resized in-plane to ``size``; subjects are case ids.

    ``num_train_subjects`` keeps that many whole training cases, chosen by ``split_seed``
    (the train/val/test split itself is fixed).
    """
    folder, manifest = open_prepared("synapse", root, CLASS_NAMES, PREPARE_COMMAND)
    cases = split_subjects(manifest, split, num_train_subjects, split_seed)

    def volumes():
        for case in cases:
            if split == "test":
                where = folder / "test_vol_h5" / f"{case}.npy.h5"
                image, label = load_volume_h5(where)
            else:
                where = folder / "train_npz" / f"{case}_slice*.npz"
                image, label = _load_slices(folder / "train_npz", case, manifest["num_slices"][case])
            check_volume(image, label, len(CLASS_NAMES), str(where))
            # Folders prepared before the spacing was recorded score HD95 in voxels only.
            yield case, image, label, manifest.get("spacing", {}).get(case)

    # Folders prepared before the orientation was recorded (no "axcodes") predict new scans as stored.
    preprocessing = Preprocessing(size=size, class_names=CLASS_NAMES, axcodes=manifest.get("axcodes"), **PREPROCESSING)
    return stack_subjects(volumes(), preprocessing, "synapse", split, augment)

"""``polyp``: colonoscopy polyp segmentation in PraNet's train/test release.

**Source.** PraNet (Fan et al., MICCAI 2020, https://github.com/DengPingFan/PraNet) packs five public
datasets into one training and one test download, the split nearly every later polyp paper uses
(G-CASCADE's ``train_polyp.py`` reads exactly these folders):

* ``TrainDataset.zip`` https://drive.google.com/file/d/1lODorfB33jbd-im-qrtUgWnZXxB94F55/view
* ``TestDataset.zip``  https://drive.google.com/file/d/1o8OfBvYE6K-EpDyvzsmMPndnUMwb540R/view

The original datasets: Kvasir-SEG (https://datasets.simula.no/kvasir-seg/), CVC-ClinicDB
(https://polyp.grand-challenge.org/CVCClinicDB/), CVC-ColonDB, ETIS-LaribPolypDB
(https://polyp.grand-challenge.org/EtisLarib/) and EndoScene's test part, CVC-300.

**Terms.** Research and educational use only; commercial use needs the owners' permission. Cite the
original dataset papers and PraNet. Nothing here redistributes the images.

**Raw layout** (``--raw`` points at the folder holding both)::

    TrainDataset/{images,masks}/       1450 = 900 Kvasir-SEG + 550 CVC-ClinicDB
    TestDataset/<set>/{images,masks}/  Kvasir 100, CVC-ClinicDB 62, CVC-ColonDB 380,
                                       ETIS-LaribPolypDB 196, CVC-300 60

An image and its mask share a file name (``masks/1.png`` for ``images/1.png``).

**Classes.** ``("background", "polyp")``; mask pixels >= 128 are polyp.

**Splits.**

* ``test``: one of the five test sets, chosen with ``test_set=``. Papers report each set
  separately (Kvasir and ClinicDB are "seen" sources; ColonDB, ETIS and CVC-300 test
  generalisation to unseen hospitals), so there is no pooled test split.
* ``val``: PraNet has no validation set, and G-CASCADE keeps the checkpoint with the best mean
  Dice on four of the test sets, i.e. it selects on test. This kit selects on validation only
  (as everywhere in the kit), so ``val`` is 10 % of TrainDataset drawn by ``split_seed`` and ``train`` is the
  rest. ClinicDB's 612 images are frames of 31 videos, so neighbouring frames land on both sides
  and validation Dice reads optimistic; use it to rank checkpoints, not to report.
* EMCAD's paper reports ClinicDB, ColonDB, ETIS, Kvasir and BKAI each trained and tested on its
  own split of that one dataset; that per-dataset protocol is not implemented here.

**Size.** 352×352, PraNet's and G-CASCADE's ``trainsize``. Each photo is zero-padded, centred, to a
square before it is resized (PraNet stretches it instead), so polyps keep their shape. As in
PraNet's and EMCAD's evaluation, val and test are scored at each photo's original size against
its original mask: the prediction is brought back to that size (``lx.evaluate``, whose results
say ``attrs["resolution"] == "native"``).

**Prepared layout** (see :mod:`lomix_core.data.images`)::

    data/polyp/train.npz                       TrainDataset
    data/polyp/test_<set>.npz                  one per test set
    data/polyp/prepared.json                   written last
"""
from __future__ import annotations

import os
from pathlib import Path

from .images import FORMAT, check_format, find_pairs, low_data_subset, part_ids, split_indices, to_dataset, write_prepared
from .prepared import already_prepared, open_prepared
from .registry import register
from .slices import SliceDataset

CLASS_NAMES = ("background", "polyp")
TEST_SETS = ("Kvasir", "CVC-ClinicDB", "CVC-ColonDB", "ETIS-LaribPolypDB", "CVC-300")
SIZE = 352
VAL_FRACTION = 0.1
DOWNLOAD = ("PraNet's TrainDataset.zip https://drive.google.com/file/d/1lODorfB33jbd-im-qrtUgWnZXxB94F55/view "
            "and TestDataset.zip https://drive.google.com/file/d/1o8OfBvYE6K-EpDyvzsmMPndnUMwb540R/view "
            "(listed at https://github.com/DengPingFan/PraNet; original data: Kvasir-SEG "
            "https://datasets.simula.no/kvasir-seg/, CVC-ClinicDB https://polyp.grand-challenge.org/CVCClinicDB/; "
            "research and educational use only)")
PREPARE_COMMAND = "python data_scripts/prepare_polyp.py --raw <folder with TrainDataset/, TestDataset/>"


def prepare(raw_dir: str | os.PathLike, out_dir: str | os.PathLike, force: bool = False, size: int = SIZE) -> Path:
    """Read PraNet's folders under ``raw_dir`` and write the prepared arrays to ``out_dir``."""
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    if already_prepared("polyp", out_dir, force, size=size, **FORMAT):
        return out_dir
    folders = {"train": raw_dir / "TrainDataset"} | {f"test_{name}": raw_dir / "TestDataset" / name
                                                      for name in TEST_SETS}
    for folder in folders.values():
        for sub in ("images", "masks"):
            if not (folder / sub).is_dir():
                raise FileNotFoundError(f"polyp raw data: expected folder {folder / sub}; download {DOWNLOAD} "
                                        f"and unzip both into {raw_dir}")
    parts = {part: find_pairs(folder / "images", folder / "masks") for part, folder in folders.items()}
    info = {"dataset": "polyp", "class_names": list(CLASS_NAMES), "raw_dir": str(raw_dir.resolve())}
    write_prepared(out_dir, parts, size, info)
    return out_dir


@register("polyp")
def load_polyp(split: str, augment: bool = False, root: str | os.PathLike | None = None, size: int = SIZE,
               num_train_subjects: int | None = None, split_seed: int = 0, test_set: str = "Kvasir") -> SliceDataset:
    """The ``split`` of the prepared polyp data at ``size``; ``test_set`` picks the test set,
    ``split_seed`` the validation images and the ``num_train_subjects`` low-data subset."""
    folder, manifest = open_prepared("polyp", root, CLASS_NAMES, PREPARE_COMMAND)
    check_format(folder, manifest, PREPARE_COMMAND)
    if split == "test":
        if test_set not in TEST_SETS:
            raise ValueError(f"unknown polyp test_set {test_set!r}; expected one of {TEST_SETS}")
        selection = [(f"test_{test_set}", None)]
    else:
        ids = part_ids(folder, "train", manifest["size"])
        keep = split_indices(len(ids), VAL_FRACTION, 0.0, split_seed)[split]
        if split == "train":
            keep = low_data_subset(ids, keep, num_train_subjects, split_seed)
        selection = [("train", keep)]
    return to_dataset(folder, manifest, selection, CLASS_NAMES, "polyp", split, augment, size)

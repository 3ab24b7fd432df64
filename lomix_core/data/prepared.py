"""A prepared dataset folder: files written atomically, a manifest written last so a half-prepared
folder never looks finished, and the check that makes preparation idempotent.

The paper benchmarks (synapse, acdc, polyp, isic2018) convert their raw downloads once into such a
folder, in four steps:

1. :func:`already_prepared`: a folder with a manifest is finished, and is left alone unless forced;
2. :func:`start_writing`: the old manifest goes first, so a rebuild that stops half way is not
   mistaken for a finished one;
3. the dataset's own files, each written atomically (:mod:`lomix_core.foundations.records`), so a crash leaves
   the old file or the new one, never a torn one;
4. :func:`write_manifest`: what was prepared (dataset, classes, splits, settings), last.

The loaders open the folder with :func:`open_prepared`, which accepts only a finished preparation
of the dataset they expect.
"""
from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Sequence

import numpy as np

from ..foundations.records import atomic_write, save_json
from .volumes import dataset_folder, one_line, pick_subjects, prepared_dir

MANIFEST = "prepared.json"


def already_prepared(name: str, out_dir: Path, force: bool, **settings) -> bool:
    """True (and says so) when ``out_dir`` holds a finished preparation and ``force`` is off.

    ``settings`` such as ``size=352`` are compared with the manifest's, so that a folder prepared
    with other settings is pointed out rather than silently kept.
    """
    path = out_dir / MANIFEST
    if force or not path.is_file():
        return False
    manifest = _read_manifest(path, "pass force=True (--force) to rebuild the folder")
    differences = "".join(f" with {key}={manifest.get(key)}, not {value}"
                          for key, value in settings.items() if manifest.get(key) != value)
    print(f"{name}: already prepared in {out_dir}{differences} (force=True or --force rebuilds it)")
    return True


def start_writing(out_dir: Path, folders: Sequence[str] = ()) -> None:
    """Create ``out_dir`` and its ``folders``, and drop any old manifest."""
    for folder in (out_dir, *(out_dir / name for name in folders)):
        folder.mkdir(parents=True, exist_ok=True)
    (out_dir / MANIFEST).unlink(missing_ok=True)


def write_manifest(out_dir: Path, manifest: dict) -> None:
    """The manifest, stamped with its time; it must name ``dataset`` and ``class_names``,
    which :func:`open_prepared` checks."""
    save_json({**manifest, "created": datetime.now().isoformat(timespec="seconds")}, out_dir / MANIFEST)


def open_prepared(name: str, root: str | os.PathLike | None, class_names: Sequence[str],
                  prepare_command: str) -> tuple[Path, dict]:
    """The finished preparation of ``name`` and its manifest, or one line saying how to make one.

    ``prepare_command`` is the script call without ``--out``; the folder is added to it, so the
    advice can be pasted as it stands.
    """
    command = f"{prepare_command} --out {dataset_folder(name, root)}"
    folder = prepared_dir(name, root, f"prepare it with `{command}`")
    path = folder / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{folder} has no {MANIFEST}, so it is not a finished {name} preparation: "
                                f"run `{command} --force`")
    manifest = _read_manifest(path, f"run `{command} --force`")
    if manifest.get("dataset") != name or manifest.get("class_names") != list(class_names):
        raise ValueError(f"{path} describes dataset {manifest.get('dataset')!r} with classes "
                         f"{manifest.get('class_names')}, expected {name!r} with {list(class_names)}: "
                         f"run `{command} --force`")
    return folder, manifest


def _read_manifest(path: Path, advice: str) -> dict:
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({one_line(error)}), so the preparation is damaged: "
                         f"{advice}") from None
    if not isinstance(manifest, dict):
        raise ValueError(f"{path} holds a JSON {type(manifest).__name__}, expected an object: {advice}")
    return manifest


def split_subjects(manifest: dict, split: str, num_train_subjects: int | None, split_seed: int) -> list[str]:
    """The subjects the manifest's ``splits`` lists for ``split``; for a low-data run, training keeps
    ``num_train_subjects`` of them, chosen by ``split_seed``."""
    subjects = manifest["splits"][split]
    return pick_subjects(subjects, num_train_subjects, split_seed) if split == "train" else subjects


def save_volume_h5(path: Path, image: np.ndarray, label: np.ndarray) -> None:
    """``image`` and ``label`` as the gzip-compressed datasets of one HDF5 file, TransUNet's volume format."""
    import h5py

    def write(temporary: str) -> None:
        with h5py.File(temporary, "w") as file:
            file.create_dataset("image", data=image, compression="gzip")
            file.create_dataset("label", data=label, compression="gzip")

    atomic_write(path, write)


def load_volume_h5(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``image`` and ``label`` of an HDF5 volume; a missing or damaged file raises one line naming it."""
    import h5py

    try:
        with h5py.File(path, "r") as file:
            return file["image"][()], file["label"][()]
    except Exception as error:  # h5py raises OSError, KeyError, ...; the user needs the file name
        raise ValueError(f"cannot read HDF5 file {path}: {type(error).__name__}: {one_line(error)} "
                         f"(expected datasets 'image' and 'label'; re-run the prepare script with --force)") from None

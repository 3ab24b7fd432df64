"""``brain_aal``: a real T1 MRI head, parcellated into lobes. It ships with the kit, so it works offline.

Source
------
Debian's ``mricron-data`` package (``/usr/share/mricron/templates``) holds two files drawn on the
same 181×217×181 grid at 1 mm:

* ``ch2.nii.gz``: the Colin27 "ch2" T1 head (one real subject scanned 27 times and averaged;
  Holmes et al., J Comput Assist Tomogr 1998);
* ``aal.nii.gz`` + ``aal.nii.txt``: the Automated Anatomical Labeling atlas, 116 regions drawn on
  that brain (Tzourio-Mazoyer et al., NeuroImage 2002).

The package is BSD-3-clause per its copyright file (MRIcron, Chris Rorden). The full notice and
the citations ship beside the data in ``assets/brain_aal_LICENSE.txt``.

Classes
-------
The 116 regions are grouped by name into 8 classes; a region belongs to the class whose prefix
its name starts with (each of the 116 names matches exactly one):

============  =================================================================================
class         AAL region name prefixes (each with its _L and _R regions)
============  =================================================================================
background    everything unlabelled: skull, scalp, CSF, white matter
frontal       Precentral, Frontal_*, Rolandic_Oper, Supp_Motor_Area, Olfactory, Rectus,
              Paracentral_Lobule
temporal      Heschl, Temporal_*, Fusiform
parietal      Postcentral, Parietal_*, SupraMarginal, Angular, Precuneus
occipital     Calcarine, Cuneus, Lingual, Occipital_*
limbic        Cingulum_*, Hippocampus, ParaHippocampal, Amygdala, Insula
deep_grey     Caudate, Putamen, Pallidum, Thalamus
cerebellum    Cerebelum_*, Vermis_*
============  =================================================================================

The task is multi-scale: the lobe of a patch of cortex is decided by where it sits in the whole
head (global context), while its border with white matter is a one-millimetre detail.

Slices and split
----------------
Axial slices that carry a label (146 of 181) are cut, inferior → superior, into ``NUM_SLABS = 10``
contiguous slabs. Every slab but the first drops its ``GAP = 3`` lowest slices, so two slabs never
touch: no pair of adjacent slices sits on both sides of a split. Each slab is one 3-D "subject".

* train: slabs 0, 1, 3, 6, 7, 8, 9 (83 slices);
* val:   slab 4 (12 slices), the only slab in which all 7 structures appear;
* test:  slabs 2 and 5 (24 slices); together they hold all 7 structures.

Several classes live only at some heights (the cerebellum is inferior, the deep grey nuclei
central), so a slab's ground truth can lack a class; :mod:`lomix_core.pipeline.evaluation` leaves such
(volume, class) pairs out of its means. Low-data subsets (``num_train_subjects``) take whole
training slabs, chosen by ``split_seed``.

Slices are stored as 224×224 uint8 in radiological orientation (anterior at the top, the
patient's right on the image left), the 181×217 plane centred and zero-padded to a square.
"""
from __future__ import annotations

import io
import tarfile
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from ..foundations.records import save_npz
from .registry import register
from .preprocessing import Preprocessing, crop_square, scale_intensity
from .volumes import one_line, pick_subjects, stack_subjects

CLASS_REGIONS: dict[str, tuple[str, ...]] = {
    "frontal": ("Precentral", "Frontal_", "Rolandic_Oper", "Supp_Motor_Area", "Olfactory", "Rectus",
                "Paracentral_Lobule"),
    "temporal": ("Heschl", "Temporal_", "Fusiform"),
    "parietal": ("Postcentral", "Parietal_", "SupraMarginal", "Angular", "Precuneus"),
    "occipital": ("Calcarine", "Cuneus", "Lingual", "Occipital_"),
    "limbic": ("Cingulum_", "Hippocampus", "ParaHippocampal", "Amygdala", "Insula"),
    "deep_grey": ("Caudate", "Putamen", "Pallidum", "Thalamus"),
    "cerebellum": ("Cerebelum_", "Vermis_"),  # "Cerebelum" is the atlas's own spelling
}
CLASS_NAMES: tuple[str, ...] = ("background", *CLASS_REGIONS)

NUM_SLABS, GAP = 10, 3
SPLIT_SLABS = {"train": (0, 1, 3, 6, 7, 8, 9), "val": (4,), "test": (2, 5)}
SIZE = 224
PLANE = (217, 181)  # the axial plane of the 181×217×181 MNI grid, radiological: rows y, columns x
SPACING = (1.0, 1.0, 1.0)  # mm
# How a raw T1 volume became the stored slices (build_arrays): predict treats a new scan the same way.
# The atlas files are stored RAS (MNI space): the checkpoint records it, so predict turns a new scan to RAS first.
PREPROCESSING = {"intensity": ({"kind": "max"},), "axis": 2, "orientation": "radiological", "eight_bit": True,
                 "axcodes": "RAS"}

ASSETS = Path(__file__).parent / "assets"
DATASET_FILE = ASSETS / "brain_aal.npz"
LICENSE_FILE = ASSETS / "brain_aal_LICENSE.txt"
SOURCE_FILES = ("ch2.nii.gz", "aal.nii.gz", "aal.nii.txt")
DEBIAN_TEMPLATES = Path("/usr/share/mricron/templates")


# ---------------------------------------------------------------- building the embedded file

def region_classes(region_names: list[str]) -> np.ndarray:
    """Class index of every AAL region (in atlas order), by the name prefixes of CLASS_REGIONS."""
    classes = []
    for name in region_names:
        matches = [c for c, prefixes in CLASS_REGIONS.items() if name.startswith(prefixes)]
        if len(matches) != 1:
            raise ValueError(f"AAL region {name!r} matches {len(matches)} classes {matches}; expected exactly one")
        classes.append(CLASS_NAMES.index(matches[0]))
    return np.array(classes, dtype=np.uint8)


def read_region_table(text: str) -> tuple[list[int], list[str]]:
    """``aal.nii.txt`` lines ``<value> <name> <code>`` → (values, names); blank lines are skipped."""
    values, names = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 2 or not fields[0].isdigit():
            raise ValueError(f"aal.nii.txt line {number}: {line!r} is not '<value> <name> ...'")
        values.append(int(fields[0]))
        names.append(fields[1])
    return values, names


def files_from_deb(deb: Path) -> dict[str, bytes]:
    """The three source files from a ``mricron-data`` .deb, read with the standard library.

    A .deb is an ``ar`` archive whose ``data.tar.*`` member holds the installed tree; reading it
    here means no dpkg is needed (macOS, Windows, Colab all work).
    """
    blob = deb.read_bytes()
    if not blob.startswith(b"!<arch>\n"):
        raise ValueError(f"{deb} is not a .deb (ar) archive")
    offset = 8
    while offset + 60 <= len(blob):
        name = blob[offset:offset + 16].decode().strip().rstrip("/")
        size = int(blob[offset + 48:offset + 58].decode().strip())
        body = blob[offset + 60:offset + 60 + size]
        if name.startswith("data.tar"):
            with tarfile.open(fileobj=io.BytesIO(body)) as tar:
                found = {}
                for member in tar.getmembers():
                    base = member.name.rsplit("/", 1)[-1]
                    if base in SOURCE_FILES and "mricron/templates" in member.name:
                        found[base] = tar.extractfile(member).read()
            missing = sorted(set(SOURCE_FILES) - set(found))
            if missing:
                raise ValueError(f"{deb} has no {missing} under usr/share/mricron/templates; expected mricron-data")
            return found
        offset += 60 + size + size % 2  # ar pads members to even offsets
    raise ValueError(f"{deb} has no data.tar member; expected a Debian package")


def files_from_folder(folder: Path) -> dict[str, bytes]:
    missing = [name for name in SOURCE_FILES if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder} lacks {missing}; expected ch2.nii.gz, aal.nii.gz and aal.nii.txt "
                                f"from Debian's mricron-data (`apt-get download mricron-data`)")
    return {name: (folder / name).read_bytes() for name in SOURCE_FILES}


def _nifti_from_bytes(blob: bytes, name: str) -> np.ndarray:
    import nibabel as nib

    try:
        return np.asarray(nib.Nifti1Image.from_bytes(_gunzip(blob)).dataobj)
    except Exception as error:
        raise ValueError(f"cannot read {name}: {type(error).__name__}: {one_line(error)} (expected a NIfTI-1 volume)") from None


def _gunzip(blob: bytes) -> bytes:
    import gzip

    return gzip.decompress(blob) if blob[:2] == b"\x1f\x8b" else blob


def slab_of_slice(num_labelled: int) -> np.ndarray:
    """Slab index of each labelled slice (bottom to top), or -1 for a gap slice."""
    slab = np.full(num_labelled, -1)
    for k, chunk in enumerate(np.array_split(np.arange(num_labelled), NUM_SLABS)):
        slab[chunk[0 if k == 0 else GAP:]] = k
    return slab


def _axial(volume: np.ndarray, z: int) -> np.ndarray:
    """Slice ``z`` of a RAS ``[x, y, z]`` volume, radiological, zero-padded to SIZE×SIZE."""
    plane = volume[::-1, ::-1, z].T  # rows: anterior → posterior; columns: patient right → left
    out = np.zeros((SIZE, SIZE), dtype=volume.dtype)
    top, left = (SIZE - plane.shape[0]) // 2, (SIZE - plane.shape[1]) // 2
    out[top:top + plane.shape[0], left:left + plane.shape[1]] = plane
    return out


def build_arrays(files: dict[str, bytes]) -> dict[str, np.ndarray]:
    """The embedded dataset's arrays from the three source files' bytes."""
    image = _nifti_from_bytes(files["ch2.nii.gz"], "ch2.nii.gz")
    atlas = _nifti_from_bytes(files["aal.nii.gz"], "aal.nii.gz")
    if image.shape != atlas.shape or image.ndim != 3:
        raise ValueError(f"ch2 {image.shape} and aal {atlas.shape} must be 3-D volumes on the same grid")
    if max(image.shape[:2]) > SIZE:
        raise ValueError(f"in-plane size {image.shape[:2]} exceeds {SIZE}; expected the 181×217 MNI grid")
    values, names = read_region_table(files["aal.nii.txt"].decode("utf-8", errors="replace"))
    lookup = np.zeros(int(max(values + [int(atlas.max())])) + 1, dtype=np.uint8)
    lookup[values] = region_classes(names)
    unknown = sorted(set(np.unique(atlas).tolist()) - set(values) - {0})
    if unknown:
        raise ValueError(f"aal.nii.gz holds region values {unknown[:5]} that aal.nii.txt does not list")
    label = lookup[atlas]
    labelled = np.flatnonzero((label > 0).any(axis=(0, 1)))
    if len(labelled) < NUM_SLABS * (GAP + 1):
        raise ValueError(f"only {len(labelled)} axial slices carry labels; expected at least {NUM_SLABS * (GAP + 1)}")
    image = np.round(scale_intensity(image, PREPROCESSING["intensity"][0]) * 255).astype(np.uint8)
    return {
        "image": np.stack([_axial(image, z) for z in labelled]),
        "label": np.stack([_axial(label, z) for z in labelled]),
        "z": labelled.astype(np.int16),
        "slab": slab_of_slice(len(labelled)).astype(np.int8),
        "region_names": np.array(names),
        "region_class": region_classes(names),
        "class_names": np.array(CLASS_NAMES),
    }


def build(source: Path | None = None, out: Path = DATASET_FILE, force: bool = False) -> Path:
    """Write the embedded ``brain_aal.npz`` from a folder, a ``.deb`` or the installed package.

    ``source=None`` uses Debian's installed ``/usr/share/mricron/templates``. An existing file is
    kept unless ``force``: the build is idempotent and never half-writes (temp file, then rename).
    """
    out = Path(out)
    if out.exists() and not force:
        print(f"already built: {out} (pass force=True / --force to rebuild)")
        return out
    source = Path(source) if source is not None else DEBIAN_TEMPLATES
    if source.is_file():
        files = files_from_deb(source)
    elif source.is_dir():
        files = files_from_folder(source)
    else:
        raise FileNotFoundError(f"{source} is neither a folder nor a .deb; install Debian's mricron-data "
                                f"(`apt-get install mricron-data`) or pass the .deb from `apt-get download mricron-data`")
    arrays = build_arrays(files)
    save_npz(arrays, out)
    print(f"wrote {out}: {len(arrays['image'])} axial slices, {SIZE}×{SIZE}, classes {list(CLASS_NAMES)}")
    return out


# ---------------------------------------------------------------- loading

@lru_cache(maxsize=2)
def _arrays(path: str) -> dict[str, np.ndarray]:
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"brain_aal data file {file} is missing; rebuild it with "
                                f"`python data_scripts/build_brain_aal.py` (needs Debian's mricron-data)")
    try:
        with np.load(file) as archive:
            return {key: archive[key] for key in ("image", "label", "slab", "z")}
    except Exception as error:
        raise ValueError(f"cannot read {file}: {type(error).__name__}: {one_line(error)}; rebuild it with "
                         f"`python data_scripts/build_brain_aal.py --force`") from None


def slabs(split: str, path: str | Path = DATASET_FILE) -> dict[str, np.ndarray]:
    """Slab name → indices of its slices in the file, for the slabs of ``split``."""
    slab = _arrays(str(path))["slab"]
    return {f"slab_{k}": np.flatnonzero(slab == k) for k in SPLIT_SLABS[split]}


def slab_table(path: str | Path = DATASET_FILE) -> "pd.DataFrame":
    """One row per slab: its split, its first and last axial slice (z, in the original volume), its size."""
    import pandas as pd

    arrays = _arrays(str(path))
    split_of = {k: split for split, ids in SPLIT_SLABS.items() for k in ids}
    rows = [{"slab": k, "split": split_of[k], "z_first": int(arrays["z"][arrays["slab"] == k].min()),
             "z_last": int(arrays["z"][arrays["slab"] == k].max()), "slices": int((arrays["slab"] == k).sum())}
            for k in range(NUM_SLABS)]
    return pd.DataFrame(rows).set_index("slab")


@register("brain_aal")
def load_brain_aal(split: str, augment: bool = False, size: int = SIZE, num_train_subjects: int | None = None,
                   split_seed: int = 0, path: str | Path = DATASET_FILE, aspect: str = "pad"):
    """The ``split`` of the embedded brain MRI, resized to ``size``; images scaled to [0, 1].

    ``num_train_subjects`` keeps that many whole training slabs, chosen by ``split_seed``.
    ``aspect="stretch"`` squeezes the 217×181 plane to a square instead of padding it.
    """
    arrays = _arrays(str(path))
    chosen = slabs(split, path)
    if split == "train":
        chosen = {name: chosen[name] for name in pick_subjects(list(chosen), num_train_subjects, split_seed)}
    # The file pads the 217×181 plane to 224×224; the scan's own grid is the plane without the padding.
    subjects = ((name, unpad(arrays["image"][rows]), unpad(arrays["label"][rows]), SPACING)
                for name, rows in chosen.items())
    preprocessing = Preprocessing(size=size, class_names=CLASS_NAMES, aspect=aspect, spacing=SPACING[:2],
                                  **PREPROCESSING)
    return stack_subjects(subjects, preprocessing, name="brain_aal", split=split, augment=augment)


def unpad(stack: np.ndarray) -> np.ndarray:
    """Slices of the file ``[D, 224, 224]`` without the padding: the scan's own ``[D, 217, 181]`` plane."""
    return crop_square(torch.from_numpy(stack), PLANE).numpy()

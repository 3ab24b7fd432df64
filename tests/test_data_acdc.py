"""ACDC preparation and loading, on a small fake ``database`` folder in the real file format."""
import json
import shutil
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest
import torch

import lomix_core as lx
from lomix_core.data import acdc
from script_helpers import run_script, script_error

# Two training patients, one validation patient, one test patient (MT-UNet's lists).
SUBSET = ["patient001", "patient004", "patient019", "patient002"]
SHAPE = (40, 48, 5)  # NIfTI [x, y, z]
FRAMES = {"ED": 1, "ES": 3}


def make_raw(root: Path, patients=SUBSET + ["patient101"]) -> Path:
    for i, patient in enumerate(patients):
        folder = root / "training" / patient
        folder.mkdir(parents=True)
        (folder / "Info.cfg").write_text(f"ED: {FRAMES['ED']}\nES: {FRAMES['ES']}\nGroup: NOR\nHeight: 180.0\n"
                                         f"NbFrame: 5\nWeight: 80.0\n")
        for phase, frame in FRAMES.items():
            image = np.random.default_rng(i).normal(300, 50, SHAPE)
            image[0, 0, 0] = 10_000  # one very bright voxel: the percentile clip must absorb it
            label = np.zeros(SHAPE, dtype=np.uint8)
            label[5:15, 10:30] = 1   # right ventricle
            label[18:34, 20:40] = 2  # myocardium
            label[22:30, 24:36] = 3 if phase == "ED" else 0  # left ventricle, empty at ES to tell them apart
            name = f"{patient}_frame{frame:02d}"
            nib.save(nib.Nifti1Image(image.astype(np.int16), np.eye(4)), folder / f"{name}.nii.gz")
            nib.save(nib.Nifti1Image(label, np.eye(4)), folder / f"{name}_gt.nii.gz")
    return root


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    return make_raw(tmp_path_factory.mktemp("acdc_raw"))


@pytest.fixture(scope="module")
def prepared(raw, tmp_path_factory):
    return acdc.prepare(raw, tmp_path_factory.mktemp("acdc_out") / "acdc", patients=SUBSET)


def test_split_lists_are_mt_unets():
    assert (len(acdc.TRAIN_PATIENTS), len(acdc.VAL_PATIENTS), len(acdc.TEST_PATIENTS)) == (70, 10, 20)
    assert len(set(acdc.TRAIN_PATIENTS + acdc.VAL_PATIENTS + acdc.TEST_PATIENTS)) == 100


def test_prepare_writes_normalised_volumes(prepared):
    manifest = json.loads((prepared / "prepared.json").read_text())
    assert manifest["splits"] == {"train": ["patient001", "patient004"], "val": ["patient019"], "test": ["patient002"]}
    assert manifest["frames"]["patient001"] == FRAMES
    assert len(list((prepared / "volumes").glob("*.h5"))) == 2 * len(SUBSET)
    with h5py.File(prepared / "volumes" / "patient001_ED.h5") as file:
        image, label = file["image"][()], file["label"][()]
    assert image.shape == label.shape == (SHAPE[2],) + SHAPE[:2] and image.dtype == np.float32
    # clipped at the 0.5 / 99.5 percentiles: the outlier and a few others saturate, the bulk spreads out
    assert image.min() == 0 and image.max() == 1 and image[0, 0, 0] == 1
    assert 0.002 < (image == 1).mean() < 0.01 and 0.3 < np.median(image) < 0.7
    assert (label[2, 25, 30], label[2, 10, 20], label[2, 20, 22]) == (3, 1, 2)
    assert acdc.CLASS_NAMES[3] == "left_ventricle"


def test_prepare_records_the_orientation_and_turns_a_volume_stored_otherwise(raw, prepared, tmp_path, capsys):
    manifest = json.loads((prepared / "prepared.json").read_text())
    assert manifest["axcodes"] == "RAS" and manifest["reoriented"] == {}
    assert lx.data.load("acdc", split="val", root=prepared, size=32).preprocessing.axcodes == "RAS"
    # patient004's ES frame stored LPS: both in-plane axes mirrored, and the affine saying so
    copy = tmp_path / "raw"
    shutil.copytree(raw, copy)
    for name in ("patient004_frame03.nii.gz", "patient004_frame03_gt.nii.gz"):
        path = copy / "training" / "patient004" / name
        stored = nib.load(path)
        flipped = np.ascontiguousarray(np.asarray(stored.dataobj)[::-1, ::-1])
        nib.save(nib.Nifti1Image(flipped, np.diag([-1.0, -1.0, 1.0, 1.0])), path)
    out = acdc.prepare(copy, tmp_path / "acdc", patients=SUBSET)
    assert "acdc: patient004_ES: note: stored LPS, turned to RAS as the other scans are stored" in capsys.readouterr().out
    assert json.loads((out / "prepared.json").read_text())["reoriented"] == {"patient004_ES": "LPS"}
    for volume in ("patient004_ES", "patient004_ED"):
        with h5py.File(out / "volumes" / f"{volume}.h5") as turned, h5py.File(prepared / "volumes" / f"{volume}.h5") as ras:
            assert np.array_equal(turned["image"][()], ras["image"][()]) and np.array_equal(turned["label"][()], ras["label"][()])


@pytest.mark.parametrize("split, patients", [("train", ["patient001", "patient004"]), ("val", ["patient019"]),
                                             ("test", ["patient002"])])
def test_load_every_split(prepared, split, patients):
    data = lx.data.load("acdc", split=split, root=prepared, size=32)
    assert set(data.subjects) == {f"{p}_{phase}" for p in patients for phase in ("ED", "ES")}
    assert len(data) == SHAPE[2] * 2 * len(patients)
    assert data.images.shape == (len(data), 1, 32, 32) and data.images.dtype == torch.float32
    assert data.labels.shape == (len(data), 32, 32) and data.labels.dtype == torch.uint8
    assert data.num_classes == 4 and data.class_names == acdc.CLASS_NAMES
    slices = data.subject_slices()
    assert data.labels[slices[f"{patients[0]}_ED"]].unique().tolist() == [0, 1, 2, 3]
    assert data.labels[slices[f"{patients[0]}_ES"]].unique().tolist() == [0, 1, 2]


def test_low_data_subset_takes_whole_patients(prepared):
    one = lx.data.load("acdc", split="train", root=prepared, size=32, num_train_subjects=1)
    assert len({s.split("_")[0] for s in one.subjects}) == 1 and len(set(one.subjects)) == 2


def test_prepare_is_idempotent_and_force_rebuilds(raw, tmp_path, capsys):
    out = acdc.prepare(raw, tmp_path / "acdc", patients=["patient002"])
    volume = out / "volumes" / "patient002_ES.h5"
    before = volume.stat().st_ino
    acdc.prepare(raw, out, patients=["patient002"])
    assert "already prepared" in capsys.readouterr().out and volume.stat().st_ino == before
    acdc.prepare(raw, out, force=True, patients=["patient002"])
    assert volume.stat().st_ino != before


def test_missing_raw_data_says_where_to_download(raw, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"training/patient001.*creatis") as error:
        acdc.prepare(tmp_path / "nowhere", tmp_path / "out")
    assert "\n" not in str(error.value)
    with pytest.raises(FileNotFoundError, match=r"96 ACDC patient folder\(s\).*patient003.*--patients"):
        acdc.prepare(raw, tmp_path / "out")
    with pytest.raises(ValueError, match="unknown ACDC patients.*patient101"):
        acdc.prepare(raw, tmp_path / "out", patients=["patient101"])


def test_bad_raw_files_are_named(tmp_path):
    raw = make_raw(tmp_path / "raw", patients=["patient001"])
    folder = raw / "training" / "patient001"
    nib.save(nib.Nifti1Image(np.full(SHAPE, 4, dtype=np.uint8), np.eye(4)), folder / "patient001_frame03_gt.nii.gz")
    with pytest.raises(ValueError, match=r"patient001_frame03_gt\.nii\.gz.*expected \[0, 3\]"):
        acdc.prepare(raw, tmp_path / "out", patients=["patient001"])
    image = folder / "patient001_frame01.nii.gz"
    image.write_bytes(image.read_bytes()[:200])
    with pytest.raises(ValueError, match=r"patient001_frame01\.nii\.gz"):
        acdc.prepare(raw, tmp_path / "out", patients=["patient001"])
    (folder / "Info.cfg").unlink()
    with pytest.raises(FileNotFoundError, match=r"patient001/Info\.cfg"):
        acdc.prepare(raw, tmp_path / "out", patients=["patient001"])
    assert not (tmp_path / "out" / "prepared.json").exists()


def test_loading_needs_a_finished_preparation(tmp_path):
    with pytest.raises(FileNotFoundError, match="prepare_acdc.py"):
        lx.data.load("acdc", split="train", root=tmp_path / "missing")
    (tmp_path / "half" / "volumes").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no prepared.json.*prepare_acdc.py"):
        lx.data.load("acdc", split="train", root=tmp_path / "half")


def test_script_help_names_the_download_page():
    result = run_script("prepare_acdc", "--help")
    assert result.returncode == 0 and "creatis.insa-lyon.fr" in result.stdout and "--patients" in result.stdout


def test_script_end_to_end(raw, tmp_path):
    result = run_script("prepare_acdc", "--raw", raw, "--out", tmp_path / "a", "--patients", "patient002")
    assert result.returncode == 0, result.stderr
    assert "skipping patient101" in result.stdout and (tmp_path / "a" / "prepared.json").is_file()


def test_script_reports_a_missing_raw_folder_in_one_line(tmp_path, capsys):
    error = script_error("prepare_acdc", capsys, "--raw", tmp_path / "nowhere", "--out", tmp_path / "out")
    assert "creatis" in error

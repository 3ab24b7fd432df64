"""Synapse preparation and loading, on a small fake RawData folder in the real file format."""
import json
import shutil
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest
import torch

import lomix_core as lx
from lomix_core.data import synapse
from script_helpers import run_script, script_error

# Two training cases, one of the two validation cases, one test case, and one in neither list.
SUBSET = ["case0005", "case0006", "case0040", "case0001"]
SHAPE = (40, 48, 6)  # NIfTI [x, y, z]


def make_raw(root: Path, cases=SUBSET + ["case0011"]) -> Path:
    (root / "Training" / "img").mkdir(parents=True)
    (root / "Training" / "label").mkdir(parents=True)
    for i, case in enumerate(cases):
        image = np.random.default_rng(i).normal(40, 30, SHAPE)
        image[0, 0], image[1, 0], image[2, 0] = -1000, 500, 75  # below, above and inside the HU window
        label = np.zeros(SHAPE, dtype=np.uint8)
        label[10:20, 10:20] = 6   # liver
        label[25:35, 5:15] = 5    # esophagus: not one of the 8 organs
        label[25:35, 30:40] = 11  # pancreas
        label[3:8, 30:45] = 13    # left adrenal gland: not one of the 8 organs
        number = case[4:]
        nib.save(nib.Nifti1Image(image.astype(np.int16), np.eye(4)), root / "Training" / "img" / f"img{number}.nii.gz")
        nib.save(nib.Nifti1Image(label, np.eye(4)), root / "Training" / "label" / f"label{number}.nii.gz")
    return root


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    return make_raw(tmp_path_factory.mktemp("synapse_raw"))


@pytest.fixture(scope="module")
def prepared(raw, tmp_path_factory):
    return synapse.prepare(raw, tmp_path_factory.mktemp("synapse_out") / "synapse", cases=SUBSET)


def test_prepare_writes_the_transunet_layout(prepared):
    manifest = json.loads((prepared / "prepared.json").read_text())
    assert manifest["splits"] == {"train": ["case0005", "case0006"], "val": ["case0040"], "test": ["case0001"]}
    assert sorted(p.name for p in (prepared / "test_vol_h5").iterdir()) == ["case0001.npy.h5"]
    assert len(list((prepared / "train_npz").glob("case0005_slice*.npz"))) == SHAPE[2]
    assert (prepared / "lists" / "test_vol.txt").read_text() == "case0001\n"
    assert (prepared / "lists" / "train.txt").read_text().splitlines()[:2] == ["case0005_slice000", "case0005_slice001"]

    with np.load(prepared / "train_npz" / "case0005_slice003.npz") as data:
        image, label = data["image"], data["label"]
    assert image.shape == label.shape == SHAPE[:2] and image.dtype == np.float32
    # HU clipped to [-125, 275] and scaled to [0, 1]
    assert (image[0, 0], image[1, 0], image[2, 0]) == (0.0, 1.0, 0.5)
    assert 0 <= image.min() and image.max() <= 1
    # liver keeps its class, pancreas moves from raw 11 to class 5, the unused organs become background
    assert (label[15, 15], label[30, 35], label[30, 10], label[5, 40]) == (6, 5, 0, 0)
    assert synapse.CLASS_NAMES[6] == "liver" and synapse.CLASS_NAMES[5] == "pancreas"

    with h5py.File(prepared / "test_vol_h5" / "case0001.npy.h5") as file:
        assert file["image"].shape == file["label"].shape == (SHAPE[2],) + SHAPE[:2]
    # every fake case is stored RAS (identity affine): recorded, none turned, and saved with a model
    assert manifest["axcodes"] == "RAS" and manifest["reoriented"] == {}
    assert lx.data.load("synapse", split="val", root=prepared, size=32).preprocessing.axcodes == "RAS"


@pytest.mark.parametrize("split, cases", [("train", {"case0005", "case0006"}), ("val", {"case0040"}),
                                          ("test", {"case0001"})])
def test_load_every_split(prepared, split, cases):
    data = lx.data.load("synapse", split=split, root=prepared, size=32)
    assert set(data.subjects) == cases and len(data) == SHAPE[2] * len(cases)
    assert data.images.shape == (len(data), 1, 32, 32) and data.images.dtype == torch.float32
    assert data.labels.shape == (len(data), 32, 32) and data.labels.dtype == torch.uint8
    assert data.num_classes == 9 and data.class_names[1:3] == ("spleen", "right_kidney")
    assert 0 <= data.images.min() and data.images.max() <= 1
    assert set(data.labels.unique().tolist()) == {0, 5, 6}
    assert data.labels[0, 12, 10] == 6  # the liver block, 40x48 -> 32x32
    first = data.subject_slices()[min(cases)]
    assert [data.slice_index[i] for i in first] == list(range(SHAPE[2]))


def test_a_case_stored_in_another_orientation_is_turned_to_the_others(raw, tmp_path, capsys):
    """case0006 stored transposed (ARS: x along anterior, y along right) with anisotropic voxels comes
    out exactly as the same anatomy stored RAS does: the same arrays, the same (z, x, y) spacing."""
    image_file, label_file = raw / "Training" / "img" / "img0006.nii.gz", raw / "Training" / "label" / "label0006.nii.gz"
    image, label = np.asarray(nib.load(image_file).dataobj), np.asarray(nib.load(label_file).dataobj)
    ras = np.diag([0.7, 0.8, 2.5, 1.0])
    ars = ras[:, [1, 0, 2, 3]]  # the first array axis now steps along y (anterior), the second along x (right)
    outputs = {}
    for codes, affine, turn in (("RAS", ras, (0, 1, 2)), ("ARS", ars, (1, 0, 2))):
        copy = tmp_path / codes
        shutil.copytree(raw, copy)
        for array, name in ((image, image_file), (label, label_file)):
            nib.save(nib.Nifti1Image(np.transpose(array, turn), affine), copy / "Training" / name.parent.name / name.name)
        assert lx.data.geometry.orientation_of(nib.load(copy / "Training" / "img" / "img0006.nii.gz").affine) == codes
        outputs[codes] = synapse.prepare(copy, tmp_path / f"out_{codes}", cases=SUBSET)
    assert "synapse: case0006: note: stored ARS, turned to RAS as the other scans are stored" in capsys.readouterr().out
    manifests = {codes: json.loads((out / "prepared.json").read_text()) for codes, out in outputs.items()}
    assert manifests["ARS"]["axcodes"] == "RAS" and manifests["ARS"]["reoriented"] == {"case0006": "ARS"}
    assert manifests["ARS"]["spacing"]["case0006"] == manifests["RAS"]["spacing"]["case0006"]
    assert manifests["ARS"]["spacing"]["case0006"] == pytest.approx([2.5, 0.7, 0.8])  # float32 headers
    for z in (0, SHAPE[2] - 1):
        with np.load(outputs["RAS"] / "train_npz" / f"case0006_slice{z:03d}.npz") as ras_slice, \
                np.load(outputs["ARS"] / "train_npz" / f"case0006_slice{z:03d}.npz") as turned:
            assert ras_slice["image"].shape == SHAPE[:2]
            assert np.array_equal(turned["image"], ras_slice["image"]) and np.array_equal(turned["label"], ras_slice["label"])


def test_a_folder_prepared_before_orientations_were_recorded_predicts_as_stored(prepared, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(prepared, old)
    manifest = json.loads((old / "prepared.json").read_text())
    del manifest["axcodes"], manifest["reoriented"]
    (old / "prepared.json").write_text(json.dumps(manifest))
    assert lx.data.load("synapse", split="val", root=old, size=32).preprocessing.axcodes is None


def test_low_data_subset_takes_whole_cases(prepared):
    one = lx.data.load("synapse", split="train", root=prepared, size=32, num_train_subjects=1)
    assert len(set(one.subjects)) == 1 and len(one) == SHAPE[2]
    with pytest.raises(ValueError, match="num_train_subjects"):
        lx.data.load("synapse", split="train", root=prepared, size=32, num_train_subjects=3)


def test_prepare_is_idempotent_and_force_rebuilds(raw, tmp_path, capsys):
    out = synapse.prepare(raw, tmp_path / "synapse", cases=["case0001"])
    volume = out / "test_vol_h5" / "case0001.npy.h5"
    before = volume.stat().st_ino
    synapse.prepare(raw, out, cases=["case0001"])
    assert "already prepared" in capsys.readouterr().out and volume.stat().st_ino == before
    with pytest.raises(FileNotFoundError):
        synapse.prepare(raw.parent / "nowhere", out, force=True)
    assert (out / "prepared.json").is_file()  # a rebuild that could not start keeps the old one
    synapse.prepare(raw, out, force=True, cases=["case0001"])
    assert volume.stat().st_ino != before  # rewritten (atomically, so under a new inode)
    assert not list(out.rglob("*.tmp"))


def test_missing_raw_folder_says_where_to_download(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"Training/img.*synapse\.org") as error:
        synapse.prepare(tmp_path / "nowhere", tmp_path / "out")
    assert "\n" not in str(error.value)


def test_missing_cases_are_listed_unless_a_subset_is_asked_for(raw, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"26 Synapse case\(s\).*case0002.*--cases"):
        synapse.prepare(raw, tmp_path / "out")
    with pytest.raises(ValueError, match="unknown Synapse cases.*case0011"):
        synapse.prepare(raw, tmp_path / "out", cases=["case0011"])


def test_bad_raw_files_are_named(tmp_path):
    raw = make_raw(tmp_path / "raw", cases=["case0005"])
    path = raw / "Training" / "label" / "label0005.nii.gz"
    label = np.full(SHAPE, 14, dtype=np.uint8)
    nib.save(nib.Nifti1Image(label, np.eye(4)), path)
    with pytest.raises(ValueError, match=r"label0005\.nii\.gz.*expected \[0, 13\]"):
        synapse.prepare(raw, tmp_path / "out", cases=["case0005"])
    image = raw / "Training" / "img" / "img0005.nii.gz"
    image.write_bytes(image.read_bytes()[:200])
    with pytest.raises(ValueError, match=r"img0005\.nii\.gz"):
        synapse.prepare(raw, tmp_path / "out", cases=["case0005"])
    assert not (tmp_path / "out" / "prepared.json").exists()


def test_a_label_on_another_grid_than_its_image_is_named(tmp_path):
    raw = make_raw(tmp_path / "raw", cases=["case0005"])
    path = raw / "Training" / "label" / "label0005.nii.gz"
    mirrored = np.diag([-1.0, 1.0, 1.0, 1.0])  # same shape, x mirrored: other anatomy under each voxel
    nib.save(nib.Nifti1Image(np.asarray(nib.load(path).dataobj), mirrored), path)
    with pytest.raises(ValueError, match=r"img0005\.nii\.gz has direction .* \(RAS\) but its label .*label0005\.nii\.gz "
                                         r"has .* \(LAS\): the label's voxels are mirrored"):
        synapse.prepare(raw, tmp_path / "out", cases=["case0005"])


def test_loading_needs_a_finished_preparation(prepared, tmp_path):
    with pytest.raises(FileNotFoundError, match="prepare_synapse.py"):
        lx.data.load("synapse", split="train", root=tmp_path / "missing")
    (tmp_path / "half" / "train_npz").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no prepared.json.*prepare_synapse.py"):
        lx.data.load("synapse", split="train", root=tmp_path / "half")


def test_a_damaged_test_volume_is_named(prepared, tmp_path):
    copy = shutil.copytree(prepared, tmp_path / "synapse")
    volume = copy / "test_vol_h5" / "case0001.npy.h5"
    volume.write_bytes(volume.read_bytes()[:100])
    with pytest.raises(ValueError, match=r"case0001\.npy\.h5"):
        lx.data.load("synapse", split="test", root=copy, size=32)


def test_script_help_names_the_download_page():
    result = run_script("prepare_synapse", "--help")
    assert result.returncode == 0 and "synapse.org" in result.stdout and "--cases" in result.stdout


def test_script_end_to_end(raw, tmp_path):
    result = run_script("prepare_synapse", "--raw", raw, "--out", tmp_path / "s", "--cases", "case0001", "case0040")
    assert result.returncode == 0, result.stderr
    assert "skipping case0011" in result.stdout and (tmp_path / "s" / "prepared.json").is_file()


def test_script_reports_a_missing_raw_folder_in_one_line(tmp_path, capsys):
    error = script_error("prepare_synapse", capsys, "--raw", tmp_path / "nowhere", "--out", tmp_path / "out")
    assert "synapse.org" in error

import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

import lomix_core as lx
from lomix_core.data import nifti_folder
from lomix_core.data.nifti_folder import check_folder, split_train_val

CLASSES = {"background": 0, "liver": 1, "spleen": 2}
TRAIN_SHAPES = {"case_a": (40, 48, 6), "case_b": (40, 48, 5), "case_c": (44, 40, 6), "case_d": (40, 48, 7)}
TEST_SHAPES = {"case_t1": (40, 48, 6), "case_t2": (36, 48, 4)}


def save(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(array), np.eye(4)), str(path))


def phantom(shape, seed):
    """A CT-like volume in HU with a liver (1) and a spleen (2) block."""
    rng = np.random.default_rng(seed)
    label = np.zeros(shape, np.uint8)
    label[5:20, 5:25, 1:] = 1
    label[25:35, 30:40, :-1] = 2
    image = np.choose(label, [-100, 60, 45]) + rng.normal(0, 20, shape)
    image[0, 0, 0] = -1000  # air, outside the CT window
    return image.astype(np.int16), label


@pytest.fixture(autouse=True)
def notes_unsaid():
    """The loader says each note once per process; every test starts as a fresh process would."""
    nifti_folder._SAID.clear()


def make_folder(root, modality="CT", labels=CLASSES, train=TRAIN_SHAPES, test=TEST_SHAPES, **meta):
    root.mkdir(parents=True, exist_ok=True)
    meta = {"name": "toy", "labels": labels, "modality": modality, **meta}
    (root / "dataset.json").write_text(json.dumps({key: value for key, value in meta.items() if value is not None}))
    for part, shapes in (("Tr", train), ("Ts", test)):
        for seed, (case, shape) in enumerate(shapes.items()):
            image, label = phantom(shape, seed)
            save(root / f"images{part}" / f"{case}_0000.nii.gz", image)
            save(root / f"labels{part}" / f"{case}.nii.gz", label)
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("nifti") / "toy")


def test_every_split_loads_whole_cases_with_classes_from_dataset_json(folder):
    splits = {s: lx.data.load("nifti", split=s, root=folder, size=32) for s in ("train", "val", "test")}
    for dataset in splits.values():
        assert dataset.class_names == ("background", "liver", "spleen") and dataset.in_channels == 1
        assert dataset.images.shape[1:] == (1, 32, 32) and dataset.labels.shape[1:] == (32, 32)
        assert 0 <= dataset.images.min() and dataset.images.max() <= 1
        assert set(dataset.labels.unique().tolist()) == {0, 1, 2}
        for case, slices in dataset.subject_slices().items():  # every slice kept, along the last axis
            assert len(slices) == {**TRAIN_SHAPES, **TEST_SHAPES}[case][2]
    train, val = set(splits["train"].subjects), set(splits["val"].subjects)
    assert len(val) == 1 and len(train) == 3 and train | val == set(TRAIN_SHAPES)  # 20%, at least 1
    assert set(splits["test"].subjects) == set(TEST_SHAPES)


def test_val_split_is_seeded_and_low_data_keeps_whole_training_cases(folder):
    cases = sorted(TRAIN_SHAPES)
    assert split_train_val(cases, None, 0) == split_train_val(cases, None, 0)
    assert len({tuple(split_train_val(cases, 2, seed)["val"]) for seed in range(6)}) > 1
    with pytest.raises(ValueError, match="num_val=4 must leave at least one"):
        split_train_val(cases, 4, 0)
    full = lx.data.load("nifti", split="train", root=folder, size=32, num_val=1)
    few = lx.data.load("nifti", split="train", root=folder, size=32, num_val=1, num_train_subjects=2)
    assert len(set(few.subjects)) == 2 and set(few.subjects) < set(full.subjects)
    assert len(few) == sum(TRAIN_SHAPES[case][2] for case in set(few.subjects))


def test_axis_chooses_the_slicing_direction(folder):
    dataset = lx.data.load("nifti", split="test", root=folder, size=32, axis=0)
    assert [len(s) for s in dataset.subject_slices().values()] == [40, 36]


def test_ct_window_and_percentile_scaling(tmp_path):
    shapes = {"a": (32, 32, 3), "b": (32, 32, 3)}
    ct = make_folder(tmp_path / "ct", train=shapes, test={}, ct_window=[-100, 100])
    image = np.zeros((32, 32, 3), np.int16)
    image[:, :16], image[0, 0, 0], image[1, 0, 0] = 100, -1000, 1000
    save(ct / "imagesTr" / "a_0000.nii.gz", image)
    slices = lx.data.load("nifti", split="val", root=ct, size=32, num_val=1, split_seed=1)  # val = ["a"]
    assert slices.subjects[0] == "a"
    first = slices.images[0, 0]  # size 32 = in-plane size: no resampling, exact values
    assert first[0, 0] == 0 and first[1, 0] == 1 and first[2, 0] == 1 and first[2, 20] == 0.5

    mri = make_folder(tmp_path / "mri", modality="MRI", train=shapes, test={})
    image = np.arange(32 * 32 * 3, dtype=np.float32).reshape(32, 32, 3)
    image[0, 0, 0] = 1e6  # one hot voxel must not squash the rest
    save(mri / "imagesTr" / "a_0000.nii.gz", image)
    slices = lx.data.load("nifti", split="val", root=mri, size=32, num_val=1, split_seed=1)
    assert slices.images.min() == 0 and slices.images.max() == 1
    assert 0.45 < slices.images.median() < 0.55


def test_nnunet_v1_labels_and_two_channels(tmp_path):
    root = make_folder(tmp_path / "v1", labels={"0": "background", "1": "liver", "2": "spleen"},
                       modality={"0": "CT", "1": "MRI"}, test={})
    for case, shape in TRAIN_SHAPES.items():
        save(root / "imagesTr" / f"{case}_0001.nii.gz", phantom(shape, 0)[0].astype(np.float32) * 3)
    assert check_folder(root) == []
    dataset = lx.data.load("nifti", split="val", root=root, size=32)
    assert dataset.in_channels == 2 and dataset.class_names == ("background", "liver", "spleen")
    (root / "imagesTr" / "case_a_0001.nii.gz").unlink()
    assert check_folder(root) == [f"{root}/imagesTr/case_a: found channels ['0000'], dataset.json declares 2 "
                                  f"(expected _0000 to _0001)"]


def test_files_without_channel_suffix_and_nnunet_v2_channel_names(tmp_path):
    root = make_folder(tmp_path / "v2", modality=None, channel_names={"0": "CT"}, test={})
    (root / "imagesTr" / "case_a_0000.nii.gz").rename(root / "imagesTr" / "case_a.nii.gz")
    assert check_folder(root) == []
    assert len(set(lx.data.load("nifti", split="train", root=root, size=32, num_val=1).subjects)) == 3


def test_check_folder_reports_every_problem_at_once(tmp_path, folder):
    assert check_folder(folder) == []
    root = make_folder(tmp_path / "broken", train={**TRAIN_SHAPES, "case_e": (40, 48, 6)})
    (root / "labelsTr" / "case_a.nii.gz").unlink()  # image without label
    save(root / "labelsTr" / "orphan.nii.gz", np.zeros((40, 48, 6), np.uint8))  # label without image
    save(root / "labelsTr" / "case_b.nii.gz", np.zeros((40, 48, 6), np.uint8))  # image has 5 slices
    label = phantom(TRAIN_SHAPES["case_c"], 0)[1]
    label[0, 0, 0] = 7
    save(root / "labelsTr" / "case_c.nii.gz", label)
    data = (root / "imagesTr" / "case_d_0000.nii.gz").read_bytes()
    (root / "imagesTr" / "case_d_0000.nii.gz").write_bytes(data[:len(data) // 2])
    save(root / "imagesTr" / "case_e_0000.nii.gz", np.full((40, 48, 6), np.nan, np.float32))
    save(root / "labelsTr" / "case_e.nii.gz", np.full((40, 48, 6), 0.5, np.float32))
    save(root / "imagesTs" / "case_t1_0000.nii.gz", np.zeros((40, 48), np.int16))
    save(root / "labelsTs" / "case_t2.nii.gz", np.zeros((36, 48, 4, 2), np.uint8))
    (root / "imagesTs" / "notes.txt").write_text("not an image")

    problems = check_folder(root)
    expected = [
        f"{root}/imagesTr/case_a_0000.nii.gz has no label: expected {root}/labelsTr/case_a.nii.gz",
        f"{root}/labelsTr/orphan.nii.gz has no image: expected {root}/imagesTr/orphan_0000.nii.gz",
        f"{root}/imagesTr/case_b_0000.nii.gz has shape (40, 48, 5) but its label {root}/labelsTr/case_b.nii.gz "
        f"has shape (40, 48, 6)",
        f"{root}/labelsTr/case_c.nii.gz: label values span [0, 7], expected [0, 2] for 3 classes "
        f"(unexpected values: [7])",
        f"cannot read NIfTI file {root}/imagesTr/case_d_0000.nii.gz",
        f"{root}/imagesTr/case_e_0000.nii.gz: image holds 11520 NaN or inf values",
        f"{root}/labelsTr/case_e.nii.gz: label holds 11520 non-integer values, e.g. 0.5 at voxel (0, 0, 0);",
        f"{root}/imagesTs/notes.txt is not a .nii or .nii.gz file",
        f"{root}/imagesTs/case_t1_0000.nii.gz: 2-D array of shape (40, 48), expected a 3-D volume",
        f"{root}/labelsTs/case_t2.nii.gz: 4-D array of shape (36, 48, 4, 2), expected a 3-D volume",
    ]
    for line in expected:
        assert sum(problem.startswith(line) for problem in problems) == 1, (line, problems)
    assert len(problems) == len(expected)

    other = make_folder(tmp_path / "no_json", train={"x": (8, 8, 2)}, test={})
    (other / "dataset.json").unlink()
    assert check_folder(other) == [
        f'missing {other}/dataset.json: expected {{"labels": {{"background": 0, ...}}, "modality": "CT" or "MRI" ...}}']
    (other / "dataset.json").write_text('{"labels": {"background": 0, "liver": 2}, "ct_window": [1, 0]}')
    problems = check_folder(other)
    assert len(problems) == 2 and '"labels" values are [0, 2], expected 0, 1, ..., C-1' in problems[0]
    assert '"ct_window" must be [low, high] in HU with low < high, got [1, 0]' in problems[1]


def test_loader_stops_at_the_first_problem(tmp_path):
    root = make_folder(tmp_path / "bad", test={})
    label = phantom(TRAIN_SHAPES["case_a"], 0)[1]
    label[0, 0, 0] = 7
    save(root / "labelsTr" / "case_a.nii.gz", label)
    with pytest.raises(ValueError, match=r"case_a.nii.gz: label values span \[0, 7\].*lomix_core check"):
        lx.data.load("nifti", split="train", root=root, size=32)  # case_a is in train for split_seed 0
    with pytest.raises(FileNotFoundError, match="the test split needs labelled test cases"):
        lx.data.load("nifti", split="test", root=root, size=32)
    (root / "dataset.json").write_text("{not json")
    with pytest.raises(ValueError, match="dataset.json is not valid JSON"):
        lx.data.load("nifti", split="val", root=root, size=32)


def test_missing_or_empty_folder(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="dataset 'nifti' not found at .*lomix_core check"):
        lx.data.load("nifti", root=tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="is empty"):
        lx.data.load("nifti", root=tmp_path / "empty")
    assert check_folder(tmp_path / "nowhere")[0].endswith(
        "is not a folder: expected dataset.json, imagesTr/ and labelsTr/, or imagesTs/ and labelsTs/, or both")
    empty = make_folder(tmp_path / "no_cases", train={}, test={})
    (empty / "imagesTr").mkdir()
    (empty / "labelsTr").mkdir()
    assert check_folder(empty) == [f"{empty}/imagesTr is empty: expected .nii.gz files",
                                   f"{empty}/labelsTr is empty: expected .nii.gz files"]
    make_folder(tmp_path / "nifti", train={"a": (16, 16, 2), "b": (16, 16, 3)}, test={})
    monkeypatch.setenv("LOMIX_DATA", str(tmp_path))  # root=None means $LOMIX_DATA/nifti
    assert lx.data.load("nifti", split="val", size=16, num_val=1).subjects[0] in {"a", "b"}


def test_check_command(folder, tmp_path):
    def check(path):
        return subprocess.run([sys.executable, "-m", "lomix_core", "check", str(path)], capture_output=True, text=True)

    ok = check(folder)
    assert ok.returncode == 0
    assert ok.stdout == "ok: 4 training cases, 2 test cases, 3 classes (background, liver, spleen)\n"
    broken = make_folder(tmp_path / "broken", test={})
    (broken / "labelsTr" / "case_a.nii.gz").unlink()
    save(broken / "imagesTr" / "case_b_0000.nii.gz", np.zeros((40, 48, 9), np.int16))
    bad = check(broken)
    assert bad.returncode == 1 and len(bad.stdout.splitlines()) == 2
    assert "case_a_0000.nii.gz has no label" in bad.stdout and "has shape (40, 48, 9)" in bad.stdout


# ---------------------------------------------------------------- test-only folders and the scan's own grid

def test_a_test_only_folder_checks_loads_its_test_split_and_names_what_train_needs(tmp_path):
    root = make_folder(tmp_path / "test_only", train={}, test=TEST_SHAPES)
    assert not (root / "imagesTr").exists() and not (root / "labelsTr").exists()
    assert check_folder(root) == []
    result = subprocess.run([sys.executable, "-m", "lomix_core", "check", str(root)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == "ok: 0 training cases, 2 test cases, 3 classes (background, liver, spleen)\n"
    test = lx.data.load("nifti", split="test", root=root, size=32)
    assert set(test.subjects) == set(TEST_SHAPES) and test.resolution == "native"
    for split in ("train", "val"):
        with pytest.raises(FileNotFoundError, match=f"{root} has no imagesTr/ and labelsTr/.*the {split} split "
                                                    f"needs training cases") as error:
            lx.data.load("nifti", split=split, root=root, size=32)
        assert "\n" not in str(error.value)


def test_a_non_square_volume_keeps_its_grid_and_spacing(tmp_path):
    root = make_folder(tmp_path / "wide", train={}, test={})
    shape, zooms = (40, 56, 5), (0.8, 0.9, 2.5)  # NIfTI [x, y, z] and mm
    image, label = phantom(shape, 0)
    for path, array in ((root / "imagesTs" / "wide_0000.nii.gz", image), (root / "labelsTs" / "wide.nii.gz", label)):
        path.parent.mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(array, np.diag([*zooms, 1.0])), str(path))
    assert check_folder(root) == []

    axial = lx.data.load("nifti", split="test", root=root, size=32)
    native = axial.native_grid("wide")
    assert native.shape == (40, 56) and native.labels.shape == (5, 40, 56)
    assert native.spacing == pytest.approx((2.5, 0.8, 0.9))  # (slice, row, column)
    np.testing.assert_array_equal(native.labels.numpy(), np.transpose(label, (2, 0, 1)))  # never resampled
    assert axial.images.shape == (5, 1, 32, 32)

    sagittal = lx.data.load("nifti", split="test", root=root, size=32, axis=0)
    native = sagittal.native_grid("wide")
    assert native.shape == (56, 5) and native.spacing == pytest.approx((0.8, 0.9, 2.5))
    np.testing.assert_array_equal(native.labels.numpy(), label)


# ---------------------------------------------------------------- geometry: the label must lie on its image's grid

SCAN_AFFINE = np.diag([0.78, 0.78, 6.5, 1.0])  # brain MR as the issue found it: 0.78 × 0.78 × 6.5 mm


def save_affine(path, array, affine):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(array), affine), str(path))


def one_case_folder(root, image_affine=SCAN_AFFINE, label_affine=SCAN_AFFINE, image=None, label=None):
    root = make_folder(root, train={}, test={})
    default_image, default_label = phantom((40, 48, 6), 0)
    save_affine(root / "imagesTr" / "scan_0000.nii.gz", default_image if image is None else image, image_affine)
    save_affine(root / "labelsTr" / "scan.nii.gz", default_label if label is None else label, label_affine)
    return root, root / "imagesTr" / "scan_0000.nii.gz", root / "labelsTr" / "scan.nii.gz"


def run_check(path):
    return subprocess.run([sys.executable, "-m", "lomix_core", "check", str(path)], capture_output=True, text=True)


def test_check_refuses_a_mirrored_label_grid(tmp_path):
    mirror = np.diag([-1.0, 1, 1, 1])
    mirror[0, 3] = 39  # voxel x becomes 39 - x: the same shape, the anatomy flipped left-right
    root, image, label = one_case_folder(tmp_path / "mirrored", label_affine=SCAN_AFFINE @ mirror)
    result = run_check(root)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        f"{image} has direction ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)) (RAS) but its label {label} has "
        f"((-1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)) (LAS): the label's voxels are mirrored or rotated "
        f"against the image's (resample the label onto the image's grid)",
        f"{image} has origin (0.0, 0.0, 0.0) mm but its label {label} has (30.42, 0.0, 0.0) mm (the label is "
        f"shifted; resample it onto the image's grid)"]


def test_check_refuses_a_spacing_or_origin_mismatch_naming_both_values(tmp_path):
    root, image, label = one_case_folder(tmp_path / "spacing", label_affine=np.eye(4))
    result = run_check(root)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        f"{image} has spacing (0.78, 0.78, 6.5) mm but its label {label} has (1.0, 1.0, 1.0) mm (resample the "
        f"label onto the image's grid)"]

    shifted = SCAN_AFFINE.copy()
    shifted[:3, 3] = [0, 5, 0]
    root, image, label = one_case_folder(tmp_path / "origin", label_affine=shifted)
    assert check_folder(root) == [f"{image} has origin (0.0, 0.0, 0.0) mm but its label {label} has (0.0, 5.0, 0.0) "
                                  f"mm (the label is shifted; resample it onto the image's grid)"]
    within = SCAN_AFFINE.copy()
    within[:3, 3] = [0, 1e-4, 0]  # float32 noise in a copied affine is no fault
    assert check_folder(one_case_folder(tmp_path / "noise", label_affine=within)[0]) == []


def test_a_4d_singleton_image_and_a_near_integer_float_label_pass_with_a_note_and_load(tmp_path):
    image, label = phantom((40, 48, 6), 0)
    noisy = label.astype(np.float32) + np.random.default_rng(0).uniform(-2e-4, 2e-4, label.shape).astype(np.float32)
    root, image_path, label_path = one_case_folder(tmp_path / "fixable", image=image[..., None], label=noisy)
    result = run_check(root)
    assert result.returncode == 0, result.stdout
    assert result.stdout.splitlines() == [
        f"{image_path}: note: 4-D array of shape (40, 48, 6, 1) squeezed to (40, 48, 6)",
        f"{label_path}: note: float label values lie within 0.0002 of integers; rounded to class indices",
        "ok: 1 training cases, 0 test cases, 3 classes (background, liver, spleen)"]
    train = lx.data.load("nifti", split="train", root=root, size=48, num_val=0)
    assert train.images.shape == (6, 1, 48, 48)
    np.testing.assert_array_equal(train.labels[:, 4:44, :].numpy(), np.transpose(label, (2, 0, 1)))


def test_check_lists_every_fault_of_a_folder_with_values_and_hints(tmp_path):
    root = make_folder(tmp_path / "many", train={"a": (40, 48, 6), "b": (40, 48, 6), "c": (40, 48, 6),
                                                  "d": (40, 48, 6)}, test={})
    image, label = phantom((40, 48, 6), 0)
    save_affine(root / "labelsTr" / "a.nii.gz", label, np.diag([1.0, 1, 2, 1]))  # spacing
    save_affine(root / "labelsTr" / "b.nii.gz", label.astype(np.float32) * 0.5, np.eye(4))  # probabilities
    save_affine(root / "imagesTr" / "c_0000.nii.gz", np.stack([image, image], -1), np.eye(4))  # two channels
    (root / "imagesTr" / "d_0000.nrrd").write_bytes(b"NRRD0004")  # another format
    problems = check_folder(root)
    assert problems[0] == (f"{root}/imagesTr/d_0000.nrrd is not a .nii or .nii.gz file; convert it to NIfTI, e.g. with "
                           f"SimpleITK: sitk.WriteImage(sitk.ReadImage('d_0000.nrrd'), 'd_0000.nii.gz'), which keeps "
                           f"its spacing, origin and direction")
    assert problems[1] == (f"{root}/imagesTr/a_0000.nii.gz has spacing (1.0, 1.0, 1.0) mm but its label "
                           f"{root}/labelsTr/a.nii.gz has (1.0, 1.0, 2.0) mm (resample the label onto the image's grid)")
    assert problems[2].startswith(f"{root}/labelsTr/b.nii.gz: label holds 1500 non-integer values, e.g. 0.5 at voxel "
                                  f"(5, 5, 1); expected class indices in [0, 3)")
    assert problems[3] == (f"{root}/imagesTr/c_0000.nii.gz: 4-D array of shape (40, 48, 6, 2), expected a 3-D volume "
                           f"(put each channel in its own file: _0000, _0001, ...)")
    assert len(problems) == 4
    assert run_check(root).returncode == 1


# ---------------------------------------------------------------- one or two labelled scans

def test_one_case_validates_on_a_slab_of_its_own_slices_behind_a_gap(tmp_path, capsys):
    root = make_folder(tmp_path / "one", train={"scan": (40, 48, 16)}, test={})
    label = phantom((40, 48, 16), 0)[1]  # liver in slices 1-15, spleen in 0-14: the top slab has 1 class, the bottom 1
    train = lx.data.load("nifti", split="train", root=root, size=48)
    assert capsys.readouterr().out == (
        "nifti: 1 training case(s), too few to hold whole cases out: validation is one eighth of each case's slices "
        "along axis 2, 3 slices from its training slices (num_val=N holds out N whole cases)\n")
    val = lx.data.load("nifti", split="val", root=root, size=48)
    assert set(train.subjects) == {"scan"} and set(val.subjects) == {"scan_val"}
    assert len(val) == 2 and len(train) == 16 - 2 - 3  # 16 / 8 validate, a 3-slice gap, 11 train
    stack = np.transpose(label, (2, 0, 1))
    np.testing.assert_array_equal(val.native_grid("scan_val").labels.numpy(), stack[14:])
    np.testing.assert_array_equal(train.labels[:, 4:44].numpy(), stack[:11])

    label[..., 12:] = 0  # nothing at the top: the slab moves to the bottom, where there are organs
    save(root / "labelsTr" / "scan.nii.gz", label)
    val = lx.data.load("nifti", split="val", root=root, size=48)
    np.testing.assert_array_equal(val.native_grid("scan_val").labels.numpy(), np.transpose(label, (2, 0, 1))[:2])
    assert len(lx.data.load("nifti", split="train", root=root, size=48)) == 11


def test_a_run_s_three_loads_say_each_note_once(tmp_path, capsys):
    root = make_folder(tmp_path / "one", train={"scan": (40, 48, 16)}, test={"other": (40, 48, 16)})
    flipped = np.diag([-1.0, 1.0, 1.0, 1.0])  # stored LAS: the loader turns it to the training cases' RAS
    save_affine(root / "imagesTs" / "other_0000.nii.gz", phantom((40, 48, 16), 1)[0], flipped)
    save_affine(root / "labelsTs" / "other.nii.gz", phantom((40, 48, 16), 1)[1], flipped)
    for split in ("train", "val", "test", "test"):
        lx.data.load("nifti", split=split, root=root, size=32)
    printed = capsys.readouterr().out.splitlines()
    assert [line for line in printed if "too few to hold whole cases out" in line] == [printed[0]]
    assert [line for line in printed if "note: stored LAS, reoriented to RAS" in line] == [
        f"nifti: {root / 'labelsTs' / 'other.nii.gz'}: note: stored LAS, reoriented to RAS as every case is"]
    assert len(printed) == 2


def test_num_val_0_trains_on_every_slice_and_has_no_val_split(tmp_path, capsys):
    root = make_folder(tmp_path / "one", train={"scan": (40, 48, 6)}, test={})
    assert len(lx.data.load("nifti", split="train", root=root, size=32, num_val=0)) == 6
    assert capsys.readouterr().out == "nifti: num_val=0: no validation split, so training keeps its last epoch\n"
    with pytest.raises(lx.data.SplitNotPresent, match="num_val=0 holds out no validation cases"):
        lx.data.load("nifti", split="val", root=root, size=32, num_val=0)
    with pytest.raises(lx.data.SplitNotPresent, match="has no imagesTs/ and labelsTs/"):
        lx.data.load("nifti", split="test", root=root, size=32)
    with pytest.raises(ValueError, match=r"case 'scan' has 4 slices; holding out a validation slab needs at least 5"
                                         r".*set num_val=0"):
        lx.data.load("nifti", split="val", root=make_folder(tmp_path / "thin", train={"scan": (40, 48, 4)}, test={}),
                     size=32)
    with pytest.raises(ValueError, match="num_val=1 must leave at least one of the 1 training cases.*leave num_val "
                                         "unset to validate on a slab"):
        lx.data.load("nifti", split="train", root=root, size=32, num_val=1)


def test_the_official_protocol_trains_one_scan_on_every_slice_it_labels(tmp_path):
    from lomix_core.pipeline.training import training_data

    root = make_folder(tmp_path / "one", train={"scan": (40, 48, 16)}, test={})
    for num_val, slices in ((None, 16 - 3), (0, 16)):  # the validation slab joins training; the gap stays out
        config = lx.TrainConfig(dataset="nifti", protocol="official", augment="intensity",
                                data_kwargs={"root": str(root), "size": 32, "num_val": num_val})
        train_set, val_set = training_data(config)
        assert val_set is None and len(train_set) == slices
        assert isinstance(train_set.transform, lx.data.OfficialRotFlip)  # no intensity augmentation: the official has none
    kit = training_data(lx.TrainConfig(dataset="nifti", augment="intensity", data_kwargs={"root": str(root), "size": 32}))
    image, label = kit[0][0]
    assert type(kit[0].transform).__name__ == "Compose" and 0 <= image.min() and image.max() <= 1


def test_the_most_common_orientation_wins_and_a_tie_goes_to_the_first_in_sorted_order():
    from lomix_core.data.geometry import most_common_orientation

    assert most_common_orientation(["LPS", "RAS", "LPS"]) == "LPS"
    assert most_common_orientation(["RAS", "LPS"]) == "LPS"
    with pytest.raises(ValueError, match="no orientation to choose from"):
        most_common_orientation([])

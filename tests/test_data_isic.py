import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import lomix_core as lx
from lomix_core.data import isic
from lomix_core.data.images import split_indices
from script_helpers import run_script, script_error

IDS = {"Training": [f"ISIC_00000{i:02d}" for i in range(8)],
       "Validation": ["ISIC_0012000", "ISIC_0012001"],
       "Test": ["ISIC_0036000", "ISIC_0036001", "ISIC_0036002"]}


def write_pair(raw, part, stem, width, height):
    """A skin-coloured photo with a dark lesion disc (JPEG, as ISIC) and its 0/255 mask."""
    images, masks = isic.raw_folders(raw, part)
    images.mkdir(parents=True, exist_ok=True)
    masks.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:height, :width]
    lesion = np.hypot(yy - height / 2, xx - width / 2) < min(width, height) / 3
    image = np.where(lesion[..., None], [90, 50, 40], [220, 180, 160]).astype(np.uint8)
    Image.fromarray(image).save(images / f"{stem}.jpg", quality=95)
    Image.fromarray(lesion.astype(np.uint8) * 255).save(masks / f"{stem}_segmentation.png")
    for folder in (images, masks):  # the real downloads ship these next to the images
        (folder / "LICENSE.txt").write_text("CC BY-NC 4.0")


def make_raw(root, parts=("Training", "Validation", "Test")):
    for part in parts:
        for i, stem in enumerate(IDS[part]):
            write_pair(root, part, stem, *((48, 36) if i % 2 else (36, 30)))
    return root


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    return make_raw(tmp_path_factory.mktemp("isic_raw"))


@pytest.fixture(scope="module")
def prepared(raw, tmp_path_factory):
    return isic.prepare(raw, tmp_path_factory.mktemp("isic") / "prepared", size=32)


def load(prepared, split, **kwargs):
    return lx.data.load("isic2018", split=split, root=prepared, size=32, **kwargs)


def test_random_protocol_splits_training_and_validation_80_10_10(prepared):
    splits = {s: load(prepared, s) for s in ("train", "val", "test")}
    for dataset in splits.values():
        assert dataset.images.shape[1:] == (3, 32, 32) and dataset.images.dtype == torch.uint8
        assert dataset.labels.shape[1:] == (32, 32) and dataset.labels.dtype == torch.uint8
        assert 0 <= dataset[0][0].min() and dataset[0][0].max() <= 1
        assert dataset.class_names == ("background", "lesion") and dataset.num_classes == 2
        assert (dataset.labels[:, 16, 16] == 1).all() and (dataset.labels[:, 0, 0] == 0).all()
        assert dataset.slice_index == [0] * len(dataset) and len(set(dataset.subjects)) == len(dataset)
    subjects = {s: set(d.subjects) for s, d in splits.items()}
    assert [len(subjects[s]) for s in ("train", "val", "test")] == [8, 1, 1]
    assert set.union(*subjects.values()) == set(IDS["Training"] + IDS["Validation"])  # Test is not used


def original_mask(raw, subject):
    for part in IDS:
        path = isic.raw_folders(raw, part)[1] / f"{subject}_segmentation.png"
        if path.is_file():
            return np.asarray(Image.open(path)) >= 128


def test_val_and_test_are_scored_against_the_original_masks_of_both_parts(raw, prepared):
    assert load(prepared, "train").native is None
    scored = [load(prepared, s) for s in ("val", "test")] + [load(prepared, s, protocol="official")
                                                            for s in ("val", "test")]
    for dataset in scored:
        assert dataset.resolution == "native"
        for subject in dataset.subjects:
            native = dataset.native_grid(subject).labels[0].numpy()
            assert native.shape in ((36, 48), (30, 36)) and np.array_equal(native, original_mask(raw, subject))
    # The random protocol's held-out images come from Validation and Training alike at seed 0.
    held_out = set(load(prepared, "val", split_seed=0).subjects + load(prepared, "test", split_seed=0).subjects)
    assert held_out & set(IDS["Validation"]) and held_out & set(IDS["Training"])
    for split in ("val", "test"):
        dataset = load(prepared, split, split_seed=0)
        for subject in dataset.subjects:
            assert np.array_equal(dataset.native_grid(subject).labels[0].numpy(), original_mask(raw, subject))


def g_cascade_split(validation, training, seed=42):
    """G-CASCADE's utils/lesion/make_dataset.py: validation then training, np.random.seed(42), shuffle, 80:10:10."""
    all_files = np.array([[name, name + "_gt"] for name in sorted(validation) + sorted(training)])
    test_count = int(0.1 * len(all_files))
    train_count = len(all_files) - 2 * test_count
    np.random.seed(seed)
    np.random.shuffle(all_files)
    names = all_files[:, 0].tolist()
    return {"train": set(names[:train_count]), "val": set(names[train_count:train_count + test_count]),
            "test": set(names[-test_count:])}


def test_random_protocol_reproduces_g_cascade_split(prepared):
    expected = g_cascade_split(IDS["Validation"], IDS["Training"])
    assert {s: set(load(prepared, s).subjects) for s in ("train", "val", "test")} == expected
    # At the real size too: 2594 Training + 100 Validation images.
    names = [f"v{i:03d}" for i in range(100)] + [f"t{i:04d}" for i in range(2594)]
    expected = g_cascade_split(names[:100], names[100:])
    ours = {split: {names[i] for i in rows} for split, rows in split_indices(len(names), 0.1, 0.1, 42).items()}
    assert ours == expected and [len(ours[s]) for s in ("train", "val", "test")] == [2156, 269, 269]


def test_official_protocol_uses_the_challenge_parts(prepared, raw, tmp_path):
    for split, part in (("train", "Training"), ("val", "Validation"), ("test", "Test")):
        assert load(prepared, split, protocol="official").subjects == IDS[part]
    with pytest.raises(ValueError, match="unknown ISIC protocol 'kfold'"):
        load(prepared, "train", protocol="kfold")
    training_only = isic.prepare(make_raw(tmp_path / "raw", parts=("Training",)), tmp_path / "out", size=32)
    assert len(load(training_only, "test")) == 1  # random protocol: int(0.1 * 8), at least one
    with pytest.raises(FileNotFoundError, match="protocol='official' needs the Validation images"):
        load(training_only, "val", protocol="official")


def test_low_data_subset_takes_whole_images(prepared):
    full = load(prepared, "train")
    few = load(prepared, "train", num_train_subjects=2)
    assert len(few) == 2 and set(few.subjects) < set(full.subjects)
    assert few.subjects == load(prepared, "train", num_train_subjects=2).subjects
    with pytest.raises(ValueError, match="num_train_subjects"):
        load(prepared, "train", num_train_subjects=9)


def test_prepare_is_idempotent_and_force_rewrites(raw, tmp_path, capsys):
    out = isic.prepare(raw, tmp_path / "out", size=32)
    assert sorted(p.name for p in out.iterdir()) == ["Test.npz", "Training.npz", "Validation.npz", "prepared.json"]

    def stamp():
        stat = (out / "Training.npz").stat()
        return stat.st_ino, stat.st_mtime_ns

    before = stamp()
    capsys.readouterr()
    isic.prepare(raw, out, size=32)
    assert "already prepared" in capsys.readouterr().out and stamp() == before
    isic.prepare(raw, out, force=True, size=32)
    assert stamp() != before


def test_script_help_and_end_to_end(raw, tmp_path):
    help_text = run_script("prepare_isic", "--help")
    assert help_text.returncode == 0
    assert "https://challenge.isic-archive.com/data/#2018" in help_text.stdout and "CC BY-NC" in help_text.stdout
    out = tmp_path / "out"
    run = run_script("prepare_isic", "--raw", raw, "--out", out, "--size", 32)
    assert run.returncode == 0, run.stderr
    assert lx.data.load("isic2018", split="test", root=out, protocol="official").subjects == IDS["Test"]


def test_script_reports_errors_in_one_line(tmp_path, capsys):
    error = script_error("prepare_isic", capsys, "--raw", tmp_path / "nowhere", "--out", tmp_path / "out")
    assert error.startswith("error: ISIC 2018 raw data: expected folder")


def test_missing_raw_folders_say_what_and_where_to_download(raw, tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        isic.prepare(tmp_path / "nowhere", tmp_path / "out")
    message = str(error.value)
    assert "\n" not in message and "ISIC2018_Task1-2_Training_Input" in message
    assert "https://challenge.isic-archive.com/data/#2018" in message and "CC BY-NC 4.0" in message
    half = Path(shutil.copytree(raw, tmp_path / "half"))
    shutil.rmtree(half / "ISIC2018_Task1_Validation_GroundTruth")
    with pytest.raises(FileNotFoundError, match="expected folder .*ISIC2018_Task1_Validation_GroundTruth"):
        isic.prepare(half, tmp_path / "out")


def test_bad_files_are_named(raw, tmp_path):
    corrupt = Path(shutil.copytree(raw, tmp_path / "corrupt"))
    victim = corrupt / "ISIC2018_Task1-2_Training_Input" / "ISIC_0000003.jpg"
    victim.write_bytes(victim.read_bytes()[:300])
    with pytest.raises(ValueError, match=r"cannot read image .*ISIC_0000003\.jpg"):
        isic.prepare(corrupt, tmp_path / "out1")

    mismatch = Path(shutil.copytree(raw, tmp_path / "mismatch"))
    Image.new("L", (20, 20)).save(mismatch / "ISIC2018_Task1_Test_GroundTruth" / "ISIC_0036001_segmentation.png")
    with pytest.raises(ValueError, match=r"ISIC_0036001\.jpg is 48x36 but .*ISIC_0036001_segmentation\.png is 20x20"):
        isic.prepare(mismatch, tmp_path / "out2")

    unpaired = Path(shutil.copytree(raw, tmp_path / "unpaired"))
    (unpaired / "ISIC2018_Task1_Training_GroundTruth" / "ISIC_0000005_segmentation.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"ISIC_0000005\.jpg has no mask: expected .*ISIC_0000005_segmentation"):
        isic.prepare(unpaired, tmp_path / "out3")


def test_loading_unprepared_data_names_the_prepare_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="data_scripts/prepare_isic.py"):
        lx.data.load("isic2018", split="train", root=tmp_path / "absent")

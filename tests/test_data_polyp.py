import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import lomix_core as lx
from lomix_core.data import polyp
from lomix_core.data.images import read_pair
from script_helpers import run_script, script_error

TRAIN_IDS = [f"{i}" for i in range(1, 11)]
TEST_IDS = {name: [f"{name.lower()}_{i}" for i in range(2)] for name in polyp.TEST_SETS}


def write_pair(folder, stem, width, height, suffix=".png"):
    """A reddish photo with a bright disc, and its 0/255 mask (with a grey edge ring, as in resized masks)."""
    yy, xx = np.mgrid[:height, :width]
    distance = np.hypot(yy - height / 2, xx - width / 2)
    radius = min(width, height) / 3
    mask = np.where(distance < radius, 255, np.where(distance < radius + 1, 100, 0)).astype(np.uint8)
    image = np.stack([120 + mask // 2, 60 + mask // 4, 50 + 0 * mask], axis=-1).astype(np.uint8)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(folder / "images" / f"{stem}{suffix}")
    Image.fromarray(mask).save(folder / "masks" / f"{stem}.png")


def make_raw(root):
    for i, stem in enumerate(TRAIN_IDS):  # mixed sizes and formats, as the real release
        write_pair(root / "TrainDataset", stem, *((40, 30) if i % 2 else (30, 40)), suffix=".jpg" if i % 3 else ".png")
    for name, stems in TEST_IDS.items():
        for stem in stems:
            write_pair(root / "TestDataset" / name, stem, 36, 28)
    return root


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    return make_raw(tmp_path_factory.mktemp("polyp_raw"))


@pytest.fixture(scope="module")
def prepared(raw, tmp_path_factory):
    return polyp.prepare(raw, tmp_path_factory.mktemp("polyp") / "prepared", size=32)


def copy_raw(raw, tmp_path):
    return Path(shutil.copytree(raw, tmp_path / "raw"))


def test_every_split_loads_images_as_one_slice_subjects(prepared):
    splits = {s: lx.data.load("polyp", split=s, root=prepared, size=32) for s in ("train", "val")}
    splits |= {name: lx.data.load("polyp", split="test", root=prepared, size=32, test_set=name)
               for name in polyp.TEST_SETS}
    for dataset in splits.values():
        assert dataset.images.shape[1:] == (3, 32, 32) and dataset.images.dtype == torch.uint8
        assert dataset.labels.shape[1:] == (32, 32) and dataset.labels.dtype == torch.uint8
        assert dataset.images.max() > 128 and 0 <= dataset[0][0].min() and dataset[0][0].max() <= 1
        assert dataset.class_names == ("background", "polyp") and dataset.num_classes == 2
        assert set(dataset.labels.unique().tolist()) == {0, 1}
        assert dataset.slice_index == [0] * len(dataset) and len(set(dataset.subjects)) == len(dataset)
    train, val = set(splits["train"].subjects), set(splits["val"].subjects)
    assert len(val) == 1 and not train & val and train | val == set(TRAIN_IDS)  # 10 %, at least one
    for name, stems in TEST_IDS.items():
        assert splits[name].subjects == stems
    # The disc is polyp, the corners are not.
    labels = splits["Kvasir"].labels
    assert (labels[:, 16, 16] == 1).all() and (labels[:, 0, 0] == 0).all()


def test_val_and_test_keep_each_original_mask_and_train_none(raw, prepared):
    val = lx.data.load("polyp", split="val", root=prepared, size=32)
    tests = [lx.data.load("polyp", split="test", root=prepared, size=32, test_set=name) for name in polyp.TEST_SETS]
    assert lx.data.load("polyp", split="train", root=prepared, size=32).native is None
    for dataset, folder in [(val, raw / "TrainDataset")] + [(t, raw / "TestDataset" / n)
                                                           for t, n in zip(tests, polyp.TEST_SETS)]:
        assert dataset.resolution == "native"
        for subject in dataset.subjects:
            original = np.asarray(Image.open(folder / "masks" / f"{subject}.png")) >= 128
            assert np.array_equal(dataset.native_grid(subject).labels[0].numpy(), original)


def test_masks_are_thresholded_at_128_and_01_masks_kept(tmp_path):
    image = np.zeros((32, 32, 3), np.uint8)
    Image.fromarray(image).save(tmp_path / "image.png")
    grey = np.zeros((32, 32), np.uint8)
    grey[:, 10:] = 100
    grey[:, 20:] = 200
    Image.fromarray(grey).save(tmp_path / "grey.png")
    _, mask, native = read_pair(tmp_path / "image.png", tmp_path / "grey.png", 32)
    assert mask.dtype == native.dtype == np.uint8 and np.array_equal(mask, (grey >= 128).astype(np.uint8))
    assert np.array_equal(native, mask)  # a square at the prepared size: nothing to pad or resize
    Image.fromarray((grey > 0).astype(np.uint8)).save(tmp_path / "ones.png")
    _, mask, native = read_pair(tmp_path / "image.png", tmp_path / "ones.png", 32)
    assert np.array_equal(mask, (grey > 0).astype(np.uint8)) and np.array_equal(native, mask)


def test_val_split_is_seeded_and_low_data_takes_whole_images(prepared):
    def val(seed):
        return lx.data.load("polyp", split="val", root=prepared, size=32, split_seed=seed).subjects

    assert val(0) == val(0) and len({tuple(val(seed)) for seed in range(6)}) > 1
    full = lx.data.load("polyp", split="train", root=prepared, size=32)
    few = lx.data.load("polyp", split="train", root=prepared, size=32, num_train_subjects=3)
    assert len(few) == 3 and set(few.subjects) < set(full.subjects)
    with pytest.raises(ValueError, match="num_train_subjects"):
        lx.data.load("polyp", split="train", root=prepared, size=32, num_train_subjects=10)
    with pytest.raises(ValueError, match="unknown polyp test_set 'Colon'"):
        lx.data.load("polyp", split="test", root=prepared, size=32, test_set="Colon")


def test_prepare_is_idempotent_and_force_rewrites(raw, tmp_path, capsys):
    out = polyp.prepare(raw, tmp_path / "out", size=32)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["prepared.json", "train.npz"] + [f"test_{name}.npz" for name in polyp.TEST_SETS])

    def stamp():
        stat = (out / "train.npz").stat()
        return stat.st_ino, stat.st_mtime_ns

    before = stamp()
    capsys.readouterr()
    polyp.prepare(raw, out, size=32)
    assert "already prepared" in capsys.readouterr().out and stamp() == before
    polyp.prepare(raw, out, size=24)
    assert "already prepared in" in (said := capsys.readouterr().out) and "with size=32, not 24" in said
    with pytest.raises(FileNotFoundError):  # a failed redo leaves the old preparation usable
        polyp.prepare(tmp_path / "nowhere", out, force=True, size=24)
    assert lx.data.load("polyp", split="val", root=out, size=32)
    polyp.prepare(raw, out, force=True, size=24)
    assert stamp() != before
    assert lx.data.load("polyp", split="val", root=out, size=24).images.shape[1:] == (3, 24, 24)


def test_script_help_and_end_to_end(raw, tmp_path):
    help_text = run_script("prepare_polyp", "--help")
    assert help_text.returncode == 0
    assert "https://datasets.simula.no/kvasir-seg/" in help_text.stdout and "TestDataset.zip" in help_text.stdout
    out = tmp_path / "out"
    run = run_script("prepare_polyp", "--raw", raw, "--out", out, "--size", 32)
    assert run.returncode == 0, run.stderr
    assert (out / "prepared.json").is_file() and len(lx.data.load("polyp", split="test", root=out)) == 2


def test_script_reports_errors_in_one_line(tmp_path, capsys):
    error = script_error("prepare_polyp", capsys, "--raw", tmp_path / "nowhere", "--out", tmp_path / "out")
    assert error.startswith("error: polyp raw data: expected folder")


def test_missing_raw_folder_says_what_and_where_to_download(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        polyp.prepare(tmp_path / "nowhere", tmp_path / "out")
    message = str(error.value)
    assert "\n" not in message and "TrainDataset/images" in message
    assert "https://datasets.simula.no/kvasir-seg/" in message and "research and educational use only" in message
    (tmp_path / "partial" / "TrainDataset" / "images").mkdir(parents=True)
    (tmp_path / "partial" / "TrainDataset" / "masks").mkdir()
    with pytest.raises(FileNotFoundError, match="TestDataset/Kvasir/images"):
        polyp.prepare(tmp_path / "partial", tmp_path / "out")


def test_bad_files_are_named(raw, tmp_path):
    corrupt = copy_raw(raw, tmp_path / "corrupt")
    victim = corrupt / "TestDataset" / "CVC-300" / "images" / "cvc-300_1.png"
    victim.write_bytes(victim.read_bytes()[:60])
    with pytest.raises(ValueError, match=r"cannot read image .*cvc-300_1\.png"):
        polyp.prepare(corrupt, tmp_path / "out1")

    mismatch = copy_raw(raw, tmp_path / "mismatch")
    Image.new("L", (10, 10)).save(mismatch / "TrainDataset" / "masks" / "3.png")
    with pytest.raises(ValueError, match=r"images/3\.jpg is 30x40 but .*masks/3\.png is 10x10"):
        polyp.prepare(mismatch, tmp_path / "out2")

    unpaired = copy_raw(raw, tmp_path / "unpaired")
    (unpaired / "TrainDataset" / "masks" / "4.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"images/4\.png has no mask: expected .*masks/4"):
        polyp.prepare(unpaired, tmp_path / "out3")
    assert not (tmp_path / "out3" / "prepared.json").exists()


def test_loading_unprepared_data_names_the_prepare_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="data_scripts/prepare_polyp.py"):
        lx.data.load("polyp", split="train", root=tmp_path / "absent")
    (tmp_path / "unfinished").mkdir()
    (tmp_path / "unfinished" / "train.npz").touch()
    with pytest.raises(FileNotFoundError, match="no prepared.json.*prepare_polyp.py.*--force"):
        lx.data.load("polyp", split="train", root=tmp_path / "unfinished")

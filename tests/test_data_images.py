"""The prepared format of the 2-D photo datasets: padded squares for the model, original masks for scoring.

Photos here are NOT square and differ in size, with the lesion off centre, so that a wrong
padding, a stretch, or a mask resampled once too often shows in the numbers.
"""
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import lomix_core as lx
from lomix_core.data import images as photo, polyp
from lomix_core.data.preprocessing import native_argmax, to_model_grid
from lomix_core.pipeline.evaluation import dice_per_class
from lomix_core.foundations.records import save_npz

SIZE = 32
SHAPES = [(30, 40), (50, 25), (40, 30), (25, 50), (33, 47), (64, 20), (28, 28), (45, 36), (30, 41), (52, 31)]


def photo_pair(height, width, seed):
    """A photo with an off-centre ellipse and its 0/255 mask with a grey rim (as resized masks have)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width]
    distance = np.hypot((yy - 0.35 * height) / (0.25 * height), (xx - 0.6 * width) / (0.3 * width))
    mask = np.where(distance < 1, 255, np.where(distance < 1.15, 90, 0)).astype(np.uint8)
    image = np.stack([100 + mask // 2, 40 + mask // 3, rng.integers(0, 60, mask.shape)], -1).astype(np.uint8)
    return image, mask


def write_raw(root):
    """PraNet's layout: 10 training photos and 2 per test set, each of its own shape."""
    folders = [(root / "TrainDataset", [f"{i}" for i in range(10)])]
    folders += [(root / "TestDataset" / name, [f"{name}_{i}" for i in range(2)]) for name in polyp.TEST_SETS]
    originals, seed = {}, 0
    for folder, stems in folders:
        for stem in stems:
            (folder / "images").mkdir(parents=True, exist_ok=True)
            (folder / "masks").mkdir(parents=True, exist_ok=True)
            image, mask = photo_pair(*SHAPES[seed % len(SHAPES)], seed)
            Image.fromarray(image).save(folder / "images" / f"{stem}.png")
            Image.fromarray(mask).save(folder / "masks" / f"{stem}.png")
            originals[stem] = image, mask
            seed += 1
    return originals


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos_raw")
    return root, write_raw(root)


@pytest.fixture(scope="module")
def prepared(raw, tmp_path_factory):
    return polyp.prepare(raw[0], tmp_path_factory.mktemp("photos") / "prepared", size=SIZE)


def load(prepared, split, **kwargs):
    return lx.data.load("polyp", split=split, root=prepared, size=SIZE, **kwargs)


def test_prepared_images_are_the_padded_model_grid_and_native_masks_the_originals(raw, prepared):
    _, originals = raw
    manifest = json.loads((prepared / "prepared.json").read_text())
    assert manifest["format"] == 2 and manifest["aspect"] == "pad" and manifest["size"] == SIZE
    for dataset in [load(prepared, "val"), load(prepared, "test", test_set="ETIS-LaribPolypDB")]:
        assert dataset.resolution == "native" and dataset.preprocessing.aspect == "pad"
        assert dataset.images.dtype == dataset.labels.dtype == torch.uint8
        for i, subject in enumerate(dataset.subjects):
            image, mask = originals[subject]
            # Exactly what predict does to a new photo: pad, centred, to a square, then resize.
            expected = to_model_grid(image.transpose(2, 0, 1)[None], SIZE, label=False, aspect="pad")[0]
            assert torch.equal(dataset.images[i], expected)
            native = dataset.native_grid(subject)
            assert native.spacing is None and native.shape == mask.shape
            assert native.labels.dtype == torch.uint8 and native.labels.shape == (1, *mask.shape)
            assert np.array_equal(native.labels[0].numpy(), (mask >= 128).astype(np.uint8))
            # The prepared mask is padded the same way: its top rows (or left columns) are padding.
            height, width = mask.shape
            pad_rows = round((max(mask.shape) - height) / 2 * SIZE / max(mask.shape)) - 1
            pad_cols = round((max(mask.shape) - width) / 2 * SIZE / max(mask.shape)) - 1
            assert not dataset.labels[i, :max(pad_rows, 0)].any() and not dataset.labels[i, :, :max(pad_cols, 0)].any()
            assert not dataset.images[i, :, :max(pad_rows, 0)].any()


def test_train_carries_no_native_masks_and_val_test_carry_them_packed(prepared):
    train, val = load(prepared, "train"), load(prepared, "val")
    assert train.native is None and train.resolution == f"model grid {SIZE}x{SIZE}"
    assert isinstance(val.native, photo.PackedMasks) and set(val.native) == set(val.subjects)
    pixels = sum(val.native[s].labels.numel() for s in val.native)
    assert val.native.bits.nbytes == sum((val.native[s].labels.numel() + 7) // 8 for s in val.native) < pixels / 7


class Oracle(nn.Module):
    """Answers every image with logits made from its own prepared-size mask: a perfect model at model size."""

    def __init__(self, dataset):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))  # evaluation asks the model for its device
        self.images, self.labels = dataset.images, dataset.labels

    def forward(self, batch):
        stored = (batch * 255).round().to(torch.uint8)
        rows = [int((self.images == image).flatten(1).all(1).nonzero()[0]) for image in stored]
        one_hot = nn.functional.one_hot(self.labels[rows].long(), 2).permute(0, 3, 1, 2).float()
        return [10 * one_hot - 5]


def test_an_oracle_at_model_size_scores_near_one_at_native_size(prepared):
    test = load(prepared, "test", test_set="CVC-ColonDB")
    results = lx.evaluate(Oracle(test), test)
    assert results.attrs["resolution"] == "native" and len(results) == len(test) == 2
    assert (results["dice"] > 0.9).all(), results
    # The same logits brought back as if the photo had been stretched land off target.
    for i, subject in enumerate(test.subjects):
        native = test.native_grid(subject)
        logits = Oracle(test)(test.image_batch([i]))[0]
        stretched = native_argmax(logits, native.shape, aspect="stretch")
        padded = native_argmax(logits, native.shape, aspect="pad")
        assert dice_per_class(stretched, native.labels, 2) < dice_per_class(padded, native.labels, 2) - 0.1


def test_loading_at_another_size_keeps_the_geometry_and_the_native_masks(prepared):
    val = load(prepared, "val")
    small = lx.data.load("polyp", split="val", root=prepared, size=16)
    assert small.images.shape[1:] == (3, 16, 16) and small.images.dtype == small.labels.dtype == torch.uint8
    assert small.preprocessing.size == 16 and small.subjects == val.subjects
    for subject in val.subjects:
        assert torch.equal(small.native_grid(subject).labels, val.native_grid(subject).labels)
    assert lx.mean_dice(lx.evaluate(Oracle(small), small)) > 0.8


def test_a_folder_in_the_old_format_names_the_command_that_rebuilds_it(raw, prepared, tmp_path, capsys):
    old = tmp_path / "old"
    old.mkdir()
    manifest = json.loads((prepared / "prepared.json").read_text())
    del manifest["format"], manifest["aspect"]
    (old / "prepared.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError) as error:
        load(old, "test")
    message = str(error.value)
    assert "\n" not in message and "older format" in message
    assert f"`{polyp.PREPARE_COMMAND} --out {old} --force`" in message and "prepare_polyp.py" in message
    polyp.prepare(raw[0], old, size=SIZE)  # kept, but said
    assert "with format=None, not 2" in capsys.readouterr().out
    polyp.prepare(raw[0], old, size=SIZE, force=True)
    assert load(old, "test").resolution == "native"


def test_damaged_parts_are_named(prepared, tmp_path):
    copy = shutil.copytree(prepared, tmp_path / "copy")
    part = copy / "test_Kvasir.npz"
    part.write_bytes(part.read_bytes()[:len(part.read_bytes()) // 2])
    with pytest.raises(ValueError, match=r"cannot read .*test_Kvasir\.npz: .*--force"):
        load(copy, "test")
    arrays = dict(np.load(prepared / "test_CVC-300.npz"))
    arrays["native_shapes"] = arrays["native_shapes"][:1]
    save_npz(arrays, copy / "test_CVC-300.npz")
    with pytest.raises(ValueError, match=r"test_CVC-300\.npz: 2 ids, .*native_shapes \(1, 2\)"):
        load(copy, "test", test_set="CVC-300")
    arrays = dict(np.load(prepared / "test_CVC-300.npz"))
    arrays["masks"][1, 0, 0] = 2
    save_npz(arrays, copy / "test_CVC-300.npz")
    with pytest.raises(ValueError, match=r"test_CVC-300\.npz: label values span \[0, 2\], expected \[0, 1\]"):
        load(copy, "test", test_set="CVC-300")


def test_pack_part_writes_what_the_loader_reads(tmp_path):
    natives = [np.eye(3, 5, dtype=np.uint8), np.ones((7, 2), np.uint8)]
    images = np.full((2, 3, 4, 4), 7, np.uint8)
    masks = np.zeros((2, 4, 4), np.uint8)
    arrays = photo.pack_part(["a", "b"], images, masks, natives)
    assert arrays["native_masks"].nbytes == 2 + 2 and arrays["native_shapes"].tolist() == [[3, 5], [7, 2]]
    packed = photo.PackedMasks(arrays["ids"], arrays["native_shapes"], arrays["native_masks"])
    assert [packed[s].labels[0].tolist() for s in ("a", "b")] == [n.tolist() for n in natives]
    with pytest.raises(ValueError, match="expected distinct ids and 4 bytes"):
        photo.PackedMasks(["a", "b"], arrays["native_shapes"], arrays["native_masks"][:3])

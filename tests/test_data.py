from pathlib import Path

import pytest
import torch

import lomix_core as lx
from lomix_core.data.augment import RandomRotFlip, rotate

SMALL = dict(num_subjects=8, num_slices=8, size=32, num_val=2, num_test=2)


def test_registry_lists_and_rejects():
    assert "synthetic" in lx.data.available()
    with pytest.raises(ValueError, match="unknown dataset 'no_such_dataset'"):
        lx.data.load("no_such_dataset")
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        lx.data.load("synthetic", split="dev", **SMALL)


def test_splits_are_disjoint_by_subject_and_cover_all():
    splits = {s: lx.data.load("synthetic", split=s, **SMALL) for s in ("train", "val", "test")}
    subjects = {s: set(d.subjects) for s, d in splits.items()}
    assert len(subjects["train"]) == 4 and len(subjects["val"]) == 2 and len(subjects["test"]) == 2
    assert not (subjects["train"] & subjects["val"]) and not (subjects["train"] & subjects["test"])
    assert not (subjects["val"] & subjects["test"])
    assert len(subjects["train"] | subjects["val"] | subjects["test"]) == 8
    train = splits["train"]
    image, label = train[0]
    assert image.shape == (1, 32, 32) and image.dtype == torch.float32
    assert label.shape == (32, 32) and label.dtype == torch.int64
    assert train.num_classes == 9 and train.class_names[0] == "background"
    assert len(train) == 4 * 8


def test_dataset_is_deterministic_and_split_depends_on_seed():
    a = lx.data.load("synthetic", split="test", **SMALL)
    lx.data.synthetic._volumes.cache_clear()
    b = lx.data.load("synthetic", split="test", **SMALL)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels) and a.subjects == b.subjects
    seeds = {tuple(sorted(set(lx.data.load("synthetic", split="test", split_seed=s, **SMALL).subjects))) for s in range(5)}
    assert len(seeds) > 1


def test_low_data_subset_takes_whole_subjects():
    full = lx.data.load("synthetic", split="train", **SMALL)
    one = lx.data.load("synthetic", split="train", num_train_subjects=1, **SMALL)
    assert len(set(one.subjects)) == 1 and set(one.subjects) <= set(full.subjects) and len(one) == 8
    with pytest.raises(ValueError, match="num_train_subjects"):
        lx.data.load("synthetic", split="train", num_train_subjects=9, **SMALL)


def test_augmentation_moves_image_and_label_together():
    torch.manual_seed(0)
    # An image that is its own label: any geometric transform must keep them equal.
    label = torch.zeros(24, 24, dtype=torch.long)
    label[3:9, 4:15] = 2
    label[14:20, 10:13] = 1
    image = label[None].float()
    changed = 0
    for _ in range(20):
        aug_image, aug_label = RandomRotFlip(p_rotate=0.0)(image, label)
        assert torch.equal(aug_image[0].long(), aug_label)
        changed += not torch.equal(aug_label, label)
    assert changed > 5
    rot_image, rot_label = rotate(image, label, 10.0)
    agree = (rot_image[0].round().long() == rot_label).float().mean()
    assert agree > 0.95 and set(rot_label.unique().tolist()) <= {0, 1, 2}


def test_augmented_dataset_differs_between_draws():
    train = lx.data.load("synthetic", split="train", augment=True, **SMALL)
    torch.manual_seed(1)
    draws = [train[3][1] for _ in range(8)]
    assert any(not torch.equal(draws[0], d) for d in draws[1:])


def test_busiest_slice_shows_the_most_classes():
    val = lx.data.load("synthetic", split="val", **SMALL)
    counts = [len(val.labels[i].unique()) for i in range(len(val))]
    assert counts[val.busiest_slice()] == max(counts) > 2


def test_data_root_is_the_checkouts_wherever_python_starts(monkeypatch, tmp_path):
    from lomix_core.data import volumes

    monkeypatch.delenv(volumes.DATA_ROOT_ENV, raising=False)
    for cwd in (volumes.CHECKOUT, volumes.CHECKOUT / "notebooks", tmp_path):  # make, a notebook's kernel, elsewhere
        monkeypatch.chdir(cwd)
        assert volumes.data_root() == volumes.CHECKOUT / "data"
    monkeypatch.setenv(volumes.DATA_ROOT_ENV, str(tmp_path))
    assert volumes.dataset_folder("abdomen_ct", None) == tmp_path / "abdomen_ct"
    monkeypatch.setattr(volumes, "CHECKOUT", tmp_path)  # installed from a wheel: no checkout around it
    monkeypatch.delenv(volumes.DATA_ROOT_ENV)
    assert volumes.data_root() == Path("data")

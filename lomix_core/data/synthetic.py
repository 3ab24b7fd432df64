"""``synthetic``: the procedural multi-organ phantom (see :mod:`lomix_core.data.phantom`).

Subjects are generated, then split by subject, so no volume has slices on both sides of a
split. The split depends only on ``split_seed``; the anatomy only on ``data_seed``.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from .augment import make_transform
from .phantom import CLASS_NAMES, make_subject
from .registry import register
from .preprocessing import Preprocessing
from .slices import NativeGrid, SliceDataset


@lru_cache(maxsize=4)
def _volumes(num_subjects: int, num_slices: int, size: int, data_seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    pairs = [make_subject(data_seed * 100_003 + s, num_slices=num_slices, size=size) for s in range(num_subjects)]
    images = torch.from_numpy(np.stack([img for img, _ in pairs]))  # [S, D, H, W]
    labels = torch.from_numpy(np.stack([lab for _, lab in pairs]).astype(np.uint8))
    return images, labels


def split_subjects(num_subjects: int, num_val: int, num_test: int, split_seed: int) -> dict[str, list[int]]:
    """Subject indices per split, from a seeded permutation (sorted within each split)."""
    if num_val + num_test >= num_subjects:
        raise ValueError(f"num_val={num_val} + num_test={num_test} leaves no training subject out of {num_subjects}")
    order = np.random.default_rng(split_seed).permutation(num_subjects).tolist()
    return {"test": sorted(order[:num_test]), "val": sorted(order[num_test:num_test + num_val]),
            "train": sorted(order[num_test + num_val:])}


@register("synthetic")
def load_synthetic(split: str, augment: bool = False, num_subjects: int = 20, num_slices: int = 16,
                   size: int = 96, num_val: int = 4, num_test: int = 4, num_train_subjects: int | None = None,
                   data_seed: int = 0, split_seed: int = 0) -> SliceDataset:
    """The phantom's ``split``; ``num_train_subjects`` keeps only that many training subjects
    (chosen by ``split_seed``), for low-data experiments."""
    chosen = split_subjects(num_subjects, num_val, num_test, split_seed)[split]
    if split == "train" and num_train_subjects is not None:
        if not 1 <= num_train_subjects <= len(chosen):
            raise ValueError(f"num_train_subjects must be in [1, {len(chosen)}], got {num_train_subjects}")
        picked = np.random.default_rng(split_seed + 1).permutation(len(chosen))[:num_train_subjects]
        chosen = sorted(chosen[i] for i in picked)
    images, labels = _volumes(num_subjects, num_slices, size, data_seed)
    # The phantom is drawn at the model's size, so its own grid is the model grid (no spacing in mm).
    native = None if split == "train" else {f"phantom_{s:03d}": NativeGrid(labels[s]) for s in chosen}
    return SliceDataset(
        images=images[chosen].reshape(-1, 1, size, size),
        labels=labels[chosen].reshape(-1, size, size),
        subjects=[f"phantom_{s:03d}" for s in chosen for _ in range(num_slices)],
        slice_index=[z for _ in chosen for z in range(num_slices)],
        class_names=CLASS_NAMES,
        transform=make_transform(augment),
        name="synthetic", split=split, native=native,
        preprocessing=Preprocessing(size=size, class_names=CLASS_NAMES),
    )

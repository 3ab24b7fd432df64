"""What the 2-D photo datasets (polyp, ISIC 2018) share: reading image/mask pairs and the prepared format.

Raw data are folders of RGB photos and binary masks, paired by file name. ``prepare`` turns each
folder ("part") into one compressed ``<part>.npz`` at a fixed square size, so loading takes seconds
instead of decoding and resizing thousands of JPEGs on every run:

* ``ids``    ``[N]`` str, the image's file name without suffix (the subject id);
* ``images`` ``[N, 3, S, S]`` uint8 RGB;
* ``masks``  ``[N, S, S]`` uint8, 0 = background, 1 = foreground.

The folder is written as :mod:`.prepared` describes; its manifest lists the parts and the size.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from PIL import Image

from ..records import save_npz
from .prepared import start_writing, write_manifest
from .preprocessing import Preprocessing
from .slices import SliceDataset
from .volumes import check_finite, check_labels, one_line, pick_subjects, stack_subjects

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")
MASK_THRESHOLD = 128  # masks are saved as 0/255 (with JPEG-like grey edges); foreground is the upper half


def find_pairs(image_dir: Path, mask_dir: Path, mask_suffix: str = "") -> list[tuple[str, Path, Path]]:
    """``(id, image, mask)`` for every image in ``image_dir``, sorted by id.

    The mask of ``<id>.jpg`` is ``<id><mask_suffix>.<any image suffix>`` in ``mask_dir``. Other files
    (licence and attribution texts) are ignored; an image without a mask, or a mask without an image,
    is an error.
    """
    images, masks = _by_stem(image_dir), _by_stem(mask_dir)
    pairs = []
    for stem, image in sorted(images.items()):
        mask = masks.pop(stem + mask_suffix, None)
        if mask is None:
            raise FileNotFoundError(f"image {image} has no mask: expected {mask_dir / (stem + mask_suffix)}.png")
        pairs.append((stem, image, mask))
    if masks:
        orphan = min(masks.values())
        raise FileNotFoundError(f"mask {orphan} has no image in {image_dir} ({len(masks)} such masks)")
    if not pairs:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {image_dir}")
    return pairs


def _by_stem(folder: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith("."):
            if path.stem in files:
                raise ValueError(f"two files for {path.stem!r} in {folder}: {files[path.stem].name} and {path.name}")
            files[path.stem] = path
    return files


def read_pair(image_path: Path, mask_path: Path, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One pair at ``size``×``size``: image uint8 ``[3, S, S]``, mask uint8 ``[S, S]`` in {0, 1}."""
    image, mask = _open(image_path, "RGB"), _open(mask_path, "L")
    if image.size != mask.size:
        raise ValueError(f"image/mask pair differs in size: {image_path} is {image.size[0]}x{image.size[1]} "
                         f"but {mask_path} is {mask.size[0]}x{mask.size[1]}")
    # Bilinear (antialiased when shrinking) is what torchvision's Resize does in PraNet's loader.
    image = np.asarray(image.resize((size, size), Image.BILINEAR)).transpose(2, 0, 1)
    # Resizing the binarised mask as grey and thresholding again keeps edges smooth, where
    # nearest neighbour would turn them into stairs.
    binary = Image.fromarray(binarise(np.asarray(mask)) * np.uint8(255))
    mask = np.asarray(binary.resize((size, size), Image.BILINEAR)) >= MASK_THRESHOLD
    return np.ascontiguousarray(image), mask.astype(np.uint8)


def _open(path: Path, mode: str) -> Image.Image:
    try:
        with Image.open(path) as image:
            return image.convert(mode)  # convert decodes the whole file, so truncation shows here
    except Exception as error:  # PIL raises OSError, SyntaxError, ValueError...; the user needs the name
        raise ValueError(f"cannot read image {path}: {type(error).__name__}: {one_line(error)} "
                         f"(truncated or corrupt? download it again)") from None


def binarise(mask: np.ndarray) -> np.ndarray:
    """uint8 {0, 1}: values >= 128 are foreground, or >= 1 for masks already stored as 0/1."""
    threshold = 1 if mask.max() == 1 else MASK_THRESHOLD
    return (mask >= threshold).astype(np.uint8)


def write_prepared(out_dir: Path, parts: dict[str, list[tuple[str, Path, Path]]], size: int, info: dict) -> None:
    """Read every part's pairs at ``size``, write ``<part>.npz`` each, then the manifest: ``info``
    (which names the dataset and its classes) with the size and the number of images per part."""
    start_writing(out_dir)
    for part, pairs in parts.items():
        print(f"{part}: reading {len(pairs)} image/mask pairs at {size}x{size}")
        images = np.empty((len(pairs), 3, size, size), np.uint8)
        masks = np.empty((len(pairs), size, size), np.uint8)
        # PIL releases the GIL while decoding and resizing, so threads use every core.
        with ThreadPoolExecutor() as pool:
            for i, (image, mask) in enumerate(pool.map(lambda p: read_pair(p[1], p[2], size), pairs)):
                images[i], masks[i] = image, mask
        ids = np.array([stem for stem, _, _ in pairs], dtype=str)
        save_npz({"ids": ids, "images": images, "masks": masks}, out_dir / f"{part}.npz")
    counts = {part: len(pairs) for part, pairs in parts.items()}
    write_manifest(out_dir, {**info, "size": size, "parts": counts, "mask_threshold": MASK_THRESHOLD})
    print(f"prepared {out_dir}: " + ", ".join(f"{part} {n}" for part, n in counts.items()))


def load_part(folder: Path, part: str, num_classes: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``ids``, ``images`` and ``masks`` of one prepared part."""
    path = folder / f"{part}.npz"
    redo = f"prepare {folder} again with the prepare script's --force"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the prepared folder: {redo}")
    try:
        with np.load(path, allow_pickle=False) as arrays:
            ids, images, masks = arrays["ids"].tolist(), arrays["images"], arrays["masks"]
    except Exception as error:  # numpy raises OSError, KeyError, BadZipFile, ...; the user needs the name
        raise ValueError(f"cannot read {path}: {type(error).__name__}: {one_line(error)} (expected an .npz with "
                         f"'ids', 'images' and 'masks'; {redo})") from None
    if images.ndim != 4 or masks.ndim != 3 or not len(ids) == len(images) == len(masks) \
            or images.shape[-2:] != masks.shape[-2:]:
        raise ValueError(f"{path}: {len(ids)} ids, images {images.shape} and masks {masks.shape}; expected N ids, "
                         f"images [N,3,S,S] and masks [N,S,S] ({redo})")
    if images.dtype.kind == "f":
        check_finite(images, str(path))
    check_labels(masks, num_classes, str(path))
    return ids, images, masks


def split_indices(count: int, val_fraction: float, test_fraction: float, seed: int) -> dict[str, list[int]]:
    """Indices ``0..count-1`` split at random into train/val/test, each sorted.

    The legacy ``RandomState`` shuffle is the one G-CASCADE's ISIC script uses (``np.random.seed(42)``
    then ``shuffle``), so the same seed on the same list gives its split: train first, then val,
    then test. A nonzero fraction keeps at least one image.
    """
    def share(fraction: float) -> int:
        return max(1, int(fraction * count)) if fraction > 0 else 0

    num_val, num_test = share(val_fraction), share(test_fraction)
    if num_val + num_test >= count:
        raise ValueError(f"{count} images are too few to hold out {num_val} for val and {num_test} for test")
    order = np.random.RandomState(seed).permutation(count).tolist()
    num_train = count - num_val - num_test
    return {"train": sorted(order[:num_train]), "val": sorted(order[num_train:num_train + num_val]),
            "test": sorted(order[num_train + num_val:])}


def low_data_subset(ids: Sequence[str], keep: list[int], count: int | None, seed: int) -> list[int]:
    """``count`` of the images ``keep`` (all when None), chosen by ``seed``: a low-data training set."""
    kept = set(pick_subjects([ids[i] for i in keep], count, seed))
    return [i for i in keep if ids[i] in kept]


def to_dataset(ids: Sequence[str], images: np.ndarray, masks: np.ndarray, keep: Sequence[int], size: int,
               class_names: Sequence[str], name: str, split: str, augment: bool) -> SliceDataset:
    """Rows ``keep`` as a SliceDataset at ``size``, each image a one-slice subject named by its id,
    so per-volume evaluation becomes per-image Dice."""
    def subjects() -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        for i in keep:
            yield ids[i], images[i:i + 1], masks[i:i + 1]

    preprocessing = Preprocessing(size=size, class_names=class_names, intensity=({"kind": "divide", "by": 255},) * 3,
                                  eight_bit=True)
    return stack_subjects(subjects(), preprocessing, name, split, augment)

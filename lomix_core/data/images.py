"""What the 2-D photo datasets (polyp, ISIC 2018) share: reading image/mask pairs and the prepared format.

Raw data are folders of RGB photos and binary masks of many sizes, paired by file name. The
paper's protocol (PraNet's and EMCAD's for polyps) feeds the network a fixed square and scores
the prediction brought back to each photo's ORIGINAL size against its ORIGINAL mask. So
``prepare`` turns each folder ("part") into one compressed ``<part>.npz`` holding both:

* ``ids``            ``[N]`` str, the image's file name without suffix (the subject id);
* ``images``         ``[N, 3, S, S]`` uint8 RGB on the model's grid: zero-padded, centred, to a
  square and resized to S, exactly as :func:`~.preprocessing.to_model_grid` with ``aspect="pad"``
  brings any photo to the model (``predict`` included), so that
  :func:`~.preprocessing.to_native_grid` lands a prediction back on the original pixels;
* ``masks``          ``[N, S, S]`` uint8 {0, 1}, the mask padded and resized the same way;
* ``native_shapes``  ``[N, 2]`` int, each photo's original (height, width);
* ``native_masks``   flat uint8: each original binarised mask packed 1 bit a pixel
  (``np.packbits``, row-major), one after another, each starting on a byte.

The loaders attach the original masks to the val and test splits as :class:`PackedMasks`, which
keeps them packed in memory (a 12-megapixel ISIC mask is 1.5 MB, not 12) and unpacks one when
evaluation asks for it; train never reads them. Rows are streamed out of the ``.npz`` into the
dataset's own uint8 tensors, so loading a split never holds the whole part, a float copy, or a
second copy of what it keeps (``benchmarks/dataset_memory.py`` measures the peak).

The folder is written as :mod:`.prepared` describes; the manifest records :data:`FORMAT` and the
size. A folder prepared by an older kit (photos stretched to the square, no original masks) is
refused with the command that rebuilds it.
"""
from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from PIL import Image

from ..foundations.records import save_npz
from .augment import make_transform
from .prepared import start_writing, write_manifest
from .preprocessing import Preprocessing, to_model_grid
from .slices import NativeGrid, SliceDataset
from .volumes import check_labels, one_line, pick_subjects

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")
MASK_THRESHOLD = 128  # masks are saved as 0/255 (with JPEG-like grey edges); foreground is the upper half
FORMAT = {"format": 2, "aspect": "pad"}  # in the manifest; version 1 (no key) stretched photos to the square
PART_KEYS = ("ids", "images", "masks", "native_shapes", "native_masks")
_CHUNK = 1 << 20  # bytes streamed at a time, so reading never needs a second copy of a large array


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


# ---------------------------------------------------------------- writing

def read_pair(image_path: Path, mask_path: Path, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One pair: image uint8 ``[3, S, S]`` and mask uint8 ``[S, S]`` on the model's ``size`` grid,
    and the original binarised mask uint8 ``[H, W]`` in {0, 1}."""
    image, mask = open_image(image_path, "RGB"), open_image(mask_path, "L")
    if image.size != mask.size:
        raise ValueError(f"image/mask pair differs in size: {image_path} is {image.size[0]}x{image.size[1]} "
                         f"but {mask_path} is {mask.size[0]}x{mask.size[1]}")
    native = binarise(np.asarray(mask))
    image = to_model_grid(np.asarray(image).transpose(2, 0, 1)[None], size, label=False, aspect="pad")[0]
    return image.numpy(), model_grid_mask(native, size), native


def model_grid_mask(native: np.ndarray, size: int) -> np.ndarray:
    """A binary mask ``[H, W]`` on the model's grid ``[S, S]``, padded exactly as the image.

    The mask goes through as a 0/255 grey image (bilinear, antialiased) and is thresholded again,
    which keeps edges smooth where nearest neighbour would turn them into stairs.
    """
    grey = to_model_grid(native[None] * np.uint8(255), size, label=False, aspect="pad")[0, 0]
    return (grey >= MASK_THRESHOLD).to(torch.uint8).numpy()


def open_image(path: Path, mode: str) -> Image.Image:
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


def part_arrays(ids: Sequence[str], images: np.ndarray, masks: np.ndarray, shapes: Sequence[Sequence[int]],
                packed: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """The arrays of one ``<part>.npz`` (see the module doc): model-grid ``images`` and ``masks``,
    and the original masks' ``shapes`` and ``packed`` bits (``np.packbits`` of each)."""
    return {"ids": np.array(list(ids), dtype=str), "images": images, "masks": masks,
            "native_shapes": np.asarray(shapes, np.int64).reshape(-1, 2),
            "native_masks": np.concatenate([np.zeros(0, np.uint8), *packed])}


def pack_part(ids: Sequence[str], images: np.ndarray, masks: np.ndarray,
              natives: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """:func:`part_arrays` from the original binary masks ``natives`` themselves."""
    return part_arrays(ids, images, masks, [native.shape for native in natives],
                       [np.packbits(native) for native in natives])


def write_prepared(out_dir: Path, parts: dict[str, list[tuple[str, Path, Path]]], size: int, info: dict) -> None:
    """Read every part's pairs at ``size``, write ``<part>.npz`` each, then the manifest: ``info``
    (which names the dataset and its classes) with :data:`FORMAT`, the size and the images per part."""
    start_writing(out_dir)
    # PIL and torch release the GIL while decoding and resizing, so threads use several cores; a few
    # only, since one 6748x4499 ISIC photo raises the peak memory by about 1 GB while it is padded
    # and resized (measured with ru_maxrss).
    workers = min(4, os.cpu_count() or 1)
    for part, pairs in parts.items():
        print(f"{part}: reading {len(pairs)} image/mask pairs, padding them to squares of {size}x{size}")
        images = np.empty((len(pairs), 3, size, size), np.uint8)
        masks = np.empty((len(pairs), size, size), np.uint8)
        shapes, bits = np.empty((len(pairs), 2), np.int64), []

        def read(pair):  # the original mask is packed here, so results waiting in the pool stay small
            image, mask, native = read_pair(pair[1], pair[2], size)
            return image, mask, native.shape, np.packbits(native)

        with ThreadPoolExecutor(workers) as pool:
            for i, (image, mask, shape, packed) in enumerate(pool.map(read, pairs)):
                images[i], masks[i], shapes[i] = image, mask, shape
                bits.append(packed)
        save_npz(part_arrays([stem for stem, _, _ in pairs], images, masks, shapes, bits), out_dir / f"{part}.npz")
    counts = {part: len(pairs) for part, pairs in parts.items()}
    write_manifest(out_dir, {**info, **FORMAT, "size": size, "parts": counts, "mask_threshold": MASK_THRESHOLD})
    print(f"prepared {out_dir}: " + ", ".join(f"{part} {n}" for part, n in counts.items()))


# ---------------------------------------------------------------- reading

def check_format(folder: Path, manifest: dict, prepare_command: str) -> None:
    """Refuse, in one line, a folder prepared in another format than :data:`FORMAT`."""
    if any(manifest.get(key) != value for key, value in FORMAT.items()):
        raise ValueError(f"{folder} was prepared in an older format (format {manifest.get('format', 1)}: photos "
                         f"stretched to a square, original masks not kept), expected format {FORMAT['format']}: "
                         f"run `{prepare_command} --out {folder} --force`")


class PackedMasks(Mapping):
    """Binary masks at each image's own size, kept 1 bit a pixel; ``masks[id]`` unpacks one as the
    :class:`NativeGrid` (no spacing: photos have no millimetres) that evaluation scores against."""

    def __init__(self, ids: Sequence[str], shapes: np.ndarray, bits: np.ndarray):
        self.ids, self.shapes, self.bits = [str(i) for i in ids], np.asarray(shapes, np.int64).reshape(-1, 2), bits
        self.starts = np.concatenate([[0], np.cumsum(packed_lengths(self.shapes))])
        self._index = {subject: i for i, subject in enumerate(self.ids)}
        if len(self._index) != len(self.ids) or self.starts[-1] != len(bits):
            raise ValueError(f"{len(self.ids)} ids ({len(self._index)} distinct) and {len(bits)} bytes of masks; "
                             f"expected distinct ids and {self.starts[-1]} bytes")

    def __getitem__(self, subject: str) -> NativeGrid:
        i = self._index[subject]
        height, width = self.shapes[i]
        labels = np.unpackbits(self.bits[self.starts[i]:self.starts[i + 1]], count=int(height * width))
        return NativeGrid(torch.from_numpy(labels.reshape(1, height, width)))

    def __iter__(self) -> Iterator[str]:
        return iter(self.ids)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def nbytes(self) -> int:
        return self.bits.nbytes + self.shapes.nbytes + self.starts.nbytes


def packed_lengths(shapes: np.ndarray) -> np.ndarray:
    """Bytes of each packed mask: one bit a pixel, rounded up to a whole byte."""
    return (np.asarray(shapes, np.int64).reshape(-1, 2).prod(1) + 7) // 8


class _Part:
    """One ``<part>.npz`` of a prepared folder, opened to stream some of its rows out.

    The small arrays (ids, shapes) are read whole; the large ones are read row by row from the
    compressed stream, so that only the rows asked for are ever held in memory.
    """

    def __init__(self, folder: Path, part: str, size: int):
        self.path = folder / f"{part}.npz"
        self.redo = f"prepare {folder} again with the prepare script's --force"
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path} is missing from the prepared folder: {self.redo}")
        with self._reading():
            with zipfile.ZipFile(self.path) as archive:
                self.ids = _small_array(archive, "ids").tolist()
                self.native_shapes = _small_array(archive, "native_shapes")
                shapes = {key: _header(archive, key)[0] for key in ("images", "masks", "native_masks")}
        count = len(self.ids)
        expected = {"images": (count, 3, size, size), "masks": (count, size, size),
                    "native_masks": (int(packed_lengths(self.native_shapes).sum()),)}
        if shapes != expected or self.native_shapes.shape != (count, 2):
            raise ValueError(f"{self.path}: {count} ids, images {shapes['images']}, masks {shapes['masks']}, "
                             f"native_shapes {self.native_shapes.shape} and native_masks {shapes['native_masks']}; "
                             f"expected N ids, images [N,3,S,S] and masks [N,S,S] with S={size} as the manifest "
                             f"says, native_shapes [N,2] and their packed masks ({self.redo})")

    def _reading(self):
        return _named_errors(self.path, self.redo)

    def read_rows(self, key: str, rows: Sequence[int], out: np.ndarray) -> None:
        """Rows ``rows`` (ascending) of array ``key`` into ``out`` (one row each, C-contiguous)."""
        row_bytes = out[0].nbytes if len(out) else 0
        self.read_ranges(key, [(row * row_bytes, row_bytes) for row in rows], out)

    def read_ranges(self, key: str, ranges: Sequence[tuple[int, int]], out: np.ndarray) -> None:
        """Byte ranges ``(start, length)`` (ascending) of array ``key``'s data, one after another, into ``out``."""
        target = memoryview(out.reshape(-1).view(np.uint8))
        with self._reading(), zipfile.ZipFile(self.path) as archive, archive.open(f"{key}.npy") as stream:
            _, dtype, data_start = _header_of(stream, key)
            if dtype != np.uint8:
                raise ValueError(f"{key} holds {dtype}, expected uint8")
            filled = 0
            for start, length in ranges:
                if stream.tell() != data_start + start:  # zip streams seek forward by decompressing
                    stream.seek(data_start + start)
                for offset in range(0, length, _CHUNK):
                    piece = target[filled + offset:filled + min(length, offset + _CHUNK)]
                    if stream.readinto(piece) != len(piece):
                        raise EOFError(f"{key} ends early")
                filled += length


@contextmanager
def _named_errors(path: Path, redo: str) -> Iterator[None]:
    """Whatever a damaged ``.npz`` raises (BadZipFile, zlib.error, EOFError, KeyError, ...) as one
    line naming the file and the way to rebuild it."""
    try:
        yield
    except (FileNotFoundError, MemoryError):
        raise
    except Exception as error:
        raise ValueError(f"cannot read {path}: {type(error).__name__}: {one_line(error)} (expected an .npz "
                         f"with {', '.join(repr(k) for k in PART_KEYS)}; {redo})") from None


def _small_array(archive: zipfile.ZipFile, key: str) -> np.ndarray:
    with archive.open(f"{key}.npy") as stream:
        return np.lib.format.read_array(stream, allow_pickle=False)


def _header(archive: zipfile.ZipFile, key: str) -> tuple[tuple[int, ...], np.dtype, int]:
    with archive.open(f"{key}.npy") as stream:
        return _header_of(stream, key)


def _header_of(stream: io.IOBase, key: str) -> tuple[tuple[int, ...], np.dtype, int]:
    """Shape, dtype and the offset where the data start, of the ``.npy`` member ``stream``."""
    version = np.lib.format.read_magic(stream)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran_order, dtype = read(stream)
    if fortran_order:
        raise ValueError(f"{key} is stored in Fortran order, expected C order")
    return tuple(shape), dtype, stream.tell()


def part_ids(folder: Path, part: str, size: int) -> list[str]:
    """The ids of one prepared part, in their stored order."""
    return _Part(folder, part, size).ids


def to_dataset(folder: Path, manifest: dict, selection: Sequence[tuple[str, Sequence[int] | None]],
               class_names: Sequence[str], name: str, split: str, augment: bool,
               size: int | None = None) -> SliceDataset:
    """The rows ``selection`` names (``(part, ascending rows or None for all)``, in that order) as a
    SliceDataset, each image a one-slice subject named by its id, so per-volume evaluation becomes
    per-image Dice. Images and labels stay uint8; val and test carry the original masks
    (:class:`PackedMasks`), so evaluation scores each image at its own size. ``size`` other than
    the prepared one resizes the prepared squares."""
    prepared_size = int(manifest["size"])
    parts = [(_Part(folder, part, prepared_size), rows) for part, rows in selection]
    parts = [(part, list(range(len(part.ids))) if rows is None else list(rows)) for part, rows in parts]
    count = sum(len(rows) for _, rows in parts)
    if count == 0:
        raise ValueError(f"dataset {name!r} split {split!r} has no images")
    images = torch.empty((count, 3, prepared_size, prepared_size), dtype=torch.uint8)
    labels = torch.empty((count, prepared_size, prepared_size), dtype=torch.uint8)
    ids, start = [], 0
    for part, rows in parts:
        end = start + len(rows)
        with part._reading():
            part.read_rows("images", rows, images[start:end].numpy())
            part.read_rows("masks", rows, labels[start:end].numpy())
        if rows:
            check_labels(labels[start:end].numpy(), len(class_names), str(part.path))
        ids += [part.ids[row] for row in rows]
        start = end
    native = _native_masks(parts, ids) if split != "train" else None  # train is never scored
    size = prepared_size if size is None else size
    if size != prepared_size:
        images, labels = _resize(images, size, label=False), _resize(labels, size, label=True)
    preprocessing = Preprocessing(size=size, class_names=class_names, intensity=({"kind": "divide", "by": 255},) * 3,
                                  aspect=FORMAT["aspect"], eight_bit=True)
    return SliceDataset(images, labels, ids, [0] * count, class_names,
                        transform=make_transform(augment), name=name, split=split,
                        native=native, preprocessing=preprocessing)


def _native_masks(parts: list[tuple[_Part, list[int]]], ids: list[str]) -> PackedMasks:
    """The packed original masks of the chosen rows, streamed into one buffer."""
    shapes = np.concatenate([part.native_shapes[rows].reshape(-1, 2) for part, rows in parts])
    bits = np.empty(int(packed_lengths(shapes).sum()), np.uint8)
    start = 0
    for part, rows in parts:
        lengths = packed_lengths(part.native_shapes)
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        ranges = [(int(offsets[row]), int(lengths[row])) for row in rows]
        end = start + sum(length for _, length in ranges)
        with part._reading():
            part.read_ranges("native_masks", ranges, bits[start:end])
        start = end
    return PackedMasks(ids, shapes, bits)


def _resize(stack: torch.Tensor, size: int, label: bool) -> torch.Tensor:
    """A prepared square stack at another square ``size``, in chunks, so labels never have a whole float copy."""
    out = torch.empty((stack.shape[0], *stack.shape[1:-2], size, size), dtype=torch.uint8)
    for begin in range(0, len(stack), 256):
        out[begin:begin + 256] = to_model_grid(stack[begin:begin + 256], size, label=label, aspect=FORMAT["aspect"])
    return out


# ---------------------------------------------------------------- splits

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

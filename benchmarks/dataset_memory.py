"""Peak memory of loading the 2-D photo datasets (polyp, ISIC 2018) at their real sizes.

    python benchmarks/dataset_memory.py                     # this checkout and d88fbbc (before uint8 storage)
    python benchmarks/dataset_memory.py --old d88fbbc 88ba539
    python benchmarks/dataset_memory.py --old none --quick  # this checkout only, a tenth of the images

Training holds its datasets in memory for the whole run, and a 2-core laptop or a Colab session
has little to spare, so what a loader keeps and what it needs on the way both matter. Each case
loads splits in a fresh Python process and reads its peak resident memory (``ru_maxrss``); the
peak after importing the kit (torch alone is several hundred MB) is given apart, so the difference
is what loading cost.

The prepared folders are fake but full size, written to a temporary folder: PraNet's
TrainDataset (1450 images at 352, which the loader splits into train and val) and one test set
(CVC-ColonDB, 380 images), and ISIC 2018 Training (2594 images at 384, split 80:10:10). Images
are mostly constant and stored uncompressed, so they are written fast; the loader's memory does
not depend on the pixels. The original sizes, which only val and test keep (as packed masks),
are assumptions, printed with the table. An older commit (``--old``) is checked out with
``git worktree`` and given folders in the format it reads (photos at the square size, no
original masks), so the rows compare the same loading before and after.

Columns: ``held`` is what the SliceDatasets keep (images + labels + original masks), ``as
float32+int64`` what the same slices take with float32 images and int64 labels (the layout before
uint8 storage), ``peak RSS`` the process's peak and ``load`` the peak minus the RSS after import.
MiB = 2^20 bytes.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MIB = 2 ** 20
# (images, original height, width) of each fake part. The original sizes are assumptions, not read
# from the real data; only val and test keep those masks, at h*w/8 bytes each.
POLYP_TRAIN = [(900, 576, 720), (550, 288, 384)]  # 1450 = 900 Kvasir-SEG + 550 CVC-ClinicDB
POLYP_TEST = [(380, 500, 574)]  # CVC-ColonDB
ISIC_TRAINING = [(2594, 767, 1022)]  # many ISIC photos are far larger; their masks grow with h*w
CASES = [  # dataset, splits loaded in one process (what a training run holds, then what scoring loads), options
    ("polyp", ["train", "val"], {}),
    ("polyp", ["test"], {"test_set": "CVC-ColonDB"}),
    ("isic2018", ["train", "val"], {}),
    ("isic2018", ["test"], {}),
]


# ---------------------------------------------------------------- fake prepared folders

def fake_part(parts: list[tuple[int, int, int]], size: int, native: bool, scale: float) -> dict[str, np.ndarray]:
    """One part's arrays: mostly constant images, a square lesion, and (new format) packed original masks."""
    counts = [max(1, int(count * scale)) for count, _, _ in parts]
    total = sum(counts)
    images = np.full((total, 3, size, size), 110, np.uint8)
    images[:, 0, size // 4:size // 2] = 180
    masks = np.zeros((total, size, size), np.uint8)
    masks[:, size // 4:size // 2, size // 3:size // 2] = 1
    arrays = {"ids": np.array([f"{i:05d}" for i in range(total)]), "images": images, "masks": masks}
    if native:
        shapes, bits = [], []
        for count, (_, height, width) in zip(counts, parts):
            mask = np.zeros((height, width), np.uint8)
            mask[height // 4:height // 2, width // 3:width // 2] = 1
            shapes += [(height, width)] * count
            bits.append(np.tile(np.packbits(mask), count))
        arrays |= {"native_shapes": np.array(shapes, np.int64), "native_masks": np.concatenate(bits)}
    return arrays


def write_folder(folder: str, dataset: str, new_format: bool, scale: float) -> None:
    """A finished preparation of ``dataset`` in the new format (2) or the old one (no format key)."""
    folder = Path(folder)
    folder.mkdir(parents=True)
    if dataset == "polyp":
        size, class_names, parts = 352, ["background", "polyp"], {"train": POLYP_TRAIN, "test_CVC-ColonDB": POLYP_TEST}
    else:
        size, class_names, parts = 384, ["background", "lesion"], {"Training": ISIC_TRAINING}
    counts = {}
    for part, shapes in parts.items():
        arrays = fake_part(shapes, size, new_format, scale)
        np.savez(folder / f"{part}.npz", **arrays)  # uncompressed: written in a moment
        counts[part] = len(arrays["ids"])
    manifest = {"dataset": dataset, "class_names": class_names, "size": size, "parts": counts,
                "mask_threshold": 128} | ({"format": 2, "aspect": "pad"} if new_format else {})
    (folder / "prepared.json").write_text(json.dumps(manifest))


# ---------------------------------------------------------------- one case, in a fresh process

def load_splits(code: str, folder: str, dataset: str, splits: list[str], options: dict) -> None:
    """Load ``splits`` with the kit at ``code`` and print what they hold and the peak RSS, as JSON."""
    sys.path.insert(0, code)
    import lomix_core as lx  # noqa: E402 (the kit of the commit measured)

    assert Path(lx.__file__).resolve().is_relative_to(Path(code).resolve()), lx.__file__
    after_import = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    start = time.perf_counter()
    loaded = [lx.data.load(dataset, split=split, root=folder, **options) for split in splits]
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    held = float_layout = slices = 0
    for data in loaded:
        slices += len(data)
        held += data.images.nbytes + data.labels.nbytes + native_bytes(getattr(data, "native", None))
        float_layout += data.images.numel() * 4 + data.labels.numel() * 8
    print(json.dumps({"slices": slices, "held": held, "float_layout": float_layout, "peak": peak,
                      "after_import": after_import, "seconds": seconds}))


def native_bytes(native) -> int:
    if native is None:
        return 0
    if hasattr(native, "nbytes"):  # packed masks
        return int(native.nbytes)
    return sum(grid.labels.nbytes for grid in native.values())


def in_child(task: str, *args, cwd: Path = ROOT) -> str:
    """``task(*args)`` in a fresh Python process; its stdout.

    Writing the fake folders happens in a child too: Linux carries a process's peak RSS over
    ``exec``, so a parent that had held the fake arrays would inflate every measurement.
    """
    command = [sys.executable, __file__, f"--{task}", json.dumps([str(a) if isinstance(a, Path) else a for a in args])]
    done = subprocess.run(command, capture_output=True, text=True, cwd=cwd)
    if done.returncode != 0:
        raise RuntimeError(f"{task} {args} failed:\n{done.stderr}")
    return done.stdout


# ---------------------------------------------------------------- the table

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old", nargs="*", default=["d88fbbc"],
                        help="older commits to measure too, on folders in the old format ('none' for none)")
    parser.add_argument("--quick", action="store_true", help="a tenth of the images, for a check that it runs")
    parser.add_argument("--load", help=argparse.SUPPRESS)
    parser.add_argument("--write", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.load or args.write:
        load_splits(*json.loads(args.load)) if args.load else write_folder(*json.loads(args.write))
        return 0
    olds = [ref for ref in args.old if ref != "none"]
    scale = 0.1 if args.quick else 1.0
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "lomix_core"], cwd=ROOT, capture_output=True,
                           text=True).stdout.strip()
    codes = [(f"{head.strip()}{'+changes' if dirty else ''} (this checkout)", ROOT, True)]
    with tempfile.TemporaryDirectory(prefix="dataset_memory_") as temp:
        temp = Path(temp)
        try:
            for ref in olds:
                tree = temp / f"code_{ref}"
                subprocess.run(["git", "worktree", "add", "--detach", str(tree), ref], cwd=ROOT, check=True,
                               capture_output=True)
                codes.append((ref, tree, False))
            started = time.perf_counter()
            folders = {}
            for dataset in ("polyp", "isic2018"):
                for new in {new for _, _, new in codes}:
                    folders[dataset, new] = temp / f"{dataset}_{'new' if new else 'old'}"
                    in_child("write", folders[dataset, new], dataset, new, scale)
            print(f"fake prepared folders written in {time.perf_counter() - started:.0f} s "
                  f"(original sizes assumed: polyp train {POLYP_TRAIN}, test {POLYP_TEST}, "
                  f"ISIC {ISIC_TRAINING}; (images, height, width))\n")
            rows = []
            for name, code, new in codes:
                for dataset, splits, options in CASES:
                    result = json.loads(in_child("load", code, folders[dataset, new], dataset, splits, options,
                                                 cwd=code).strip().splitlines()[-1])
                    rows.append((name, dataset, "+".join(splits), result))
                    print(f"  {name:<28} {dataset:<9} {'+'.join(splits):<15} done in {result['seconds']:.1f} s",
                          file=sys.stderr)
        finally:
            for ref in olds:
                subprocess.run(["git", "worktree", "remove", "--force", str(temp / f"code_{ref}")], cwd=ROOT,
                               capture_output=True)
    print("| code | dataset | split(s) | slices | held (MiB) | as float32+int64 (MiB) | peak RSS (MiB) "
          "| after import (MiB) | load (MiB) | load time (s) |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, dataset, splits, r in rows:
        mib = [r[key] / MIB for key in ("held", "float_layout", "peak", "after_import")]
        print(f"| {name} | {dataset} | {splits} | {r['slices']} | " + " | ".join(f"{m:.0f}" for m in mib)
              + f" | {mib[2] - mib[3]:.0f} | {r['seconds']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Two choices of native-resolution scoring, measured on brain_aal (axial plane 217×181, not square).

    python benchmarks/native_scoring.py
    python benchmarks/native_scoring.py --seeds 0 1 2 --supervisions last_layer --size 64 --out-dir /tmp/native

(a) **Aspect.** The kit pads each slice, centred, to a square before resizing it to the model's
size (``aspect="pad"``); the official code squeezes a non-square plane straight to the square
(``aspect="stretch"``). Both are trained, since the choice changes what the model sees.
(b) **Back to the scan's grid.** The kit resamples the logits bilinearly, then takes the argmax
(``method="logits"``); TransUNet takes the argmax, then enlarges the class map by nearest neighbour
(``method="nearest"``). Only scoring changes, so every trained model is scored both ways.
(c) **Grid.** The same models scored on the model grid (labels resized to it by nearest neighbour),
as the official code scores Synapse, against the native score.

Each (supervision, aspect, seed) is trained once with the cpu profile's brain_aal comparison config
(:func:`lomix_core.pipeline.profiles.comparison`: unet_small, 48 px, 30 epochs, batch 8, lr 2e-3; selected
on validation Dice), without per-epoch test tracking. Test Dice and HD95 (voxels of the grid scored,
and mm; brain_aal is 1 mm isotropic, so native voxels are mm) are means over classes as in
:func:`lomix_core.mean_dice`. The tables give mean ± sd over seeds, then the paired differences,
seed by seed. Runs go to a temporary folder unless ``--out-dir`` is given; there, a finished run is
not trained again and an interrupted one resumes from its ``last.pt`` (:func:`lomix_core.train`'s
``resume``), so a long measurement can be stopped and picked up.

Cost, measured on 2 cores of an Intel Xeon: a run takes about a minute when the cores are idle
(lomix at 48 px: 52–60 s; last_layer at 64 px: 33–37 s), so the default 12 runs take about 12 min;
while another process's test suite shared the cores, last_layer runs at 48 px took 4–6 min each.
``--size 64`` repeats the comparison with more pixels on the brain: padded, its 181 mm width gets
53 px instead of 40 (stretched, 64 instead of 48).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import lomix_core as lx  # noqa: E402
from lomix_core.data.brain_aal import PLANE  # noqa: E402
from lomix_core.pipeline.evaluation import mean_dice, mean_hd95, predict_slices, volume_metrics  # noqa: E402
from lomix_core.teaching.report import machine, markdown_table  # noqa: E402

METRICS = ("dice", "hd95", "hd95_mm")


def model_grid_spacing(aspect: str, size: int, slice_mm: float = 1.0) -> tuple[float, float, float]:
    """Millimetres per model-grid pixel: padding keeps pixels square (the long side over ``size``),
    stretching makes them as tall and as wide as each side over ``size``."""
    rows, cols = PLANE
    if aspect == "pad":
        return slice_mm, max(PLANE) / size, max(PLANE) / size
    return slice_mm, rows / size, cols / size


def headline(results: pd.DataFrame) -> dict[str, float]:
    return {"dice": mean_dice(results), "hd95": mean_hd95(results), "hd95_mm": mean_hd95(results, unit="mm")}


def score_model_grid(model, test_set: lx.data.SliceDataset, aspect: str) -> pd.DataFrame:
    """Each test subject scored on the model grid against the labels resized to it (the official way)."""
    spacing = model_grid_spacing(aspect, test_set.images.shape[-1])
    frames = []
    for subject, indices in test_set.subject_slices().items():
        pred = predict_slices(model, test_set.images[indices])
        metrics = volume_metrics(pred, test_set.labels[indices], test_set.num_classes, spacing=spacing)
        metrics.insert(0, "volume", subject)
        metrics.insert(2, "class_name", [test_set.class_names[c] for c in metrics["class_index"]])
        frames.append(metrics)
    return pd.concat(frames, ignore_index=True)


def measure(supervision: str, aspect: str, seed: int, size: int, out_dir: Path) -> list[dict]:
    """Train one model, then score it natively both ways and on the model grid."""
    base, _ = lx.profiles.comparison("cpu", "brain_aal")
    # The profile's size keeps the plain name, so runs made before --size existed still resume.
    suffix = "" if size == base.data_kwargs["size"] else f"-{size}px"
    config = dataclasses.replace(base, supervision=supervision, seed=seed, track_test=False, progress=False,
                                 data_kwargs={**base.data_kwargs, "size": size, "aspect": aspect},
                                 out_dir=str(out_dir), run_name=f"{supervision}-{aspect}{suffix}-seed{seed}")
    run = lx.train(config, resume=True)
    test_set = lx.data.load("brain_aal", split="test", **config.data_kwargs)
    metrics = run.record["metrics"]
    print(f"  {config.name}: trained in {metrics['train_time_s']:.0f} s, best epoch {metrics['best_epoch']}, "
          f"val Dice {metrics['val_dice']:.3f}", file=sys.stderr, flush=True)
    key = {"supervision": supervision, "aspect": aspect, "seed": seed, "train_s": metrics["train_time_s"]}
    rows = [{**key, "scoring": f"native, {method}", **headline(lx.evaluate(run.model, test_set, method=method))}
            for method in ("logits", "nearest")]
    rows.append({**key, "scoring": "model grid", **headline(score_model_grid(run.model, test_set, aspect))})
    return rows


def summary(scores: pd.DataFrame) -> pd.DataFrame:
    """Mean ± sd over seeds of each metric, per (supervision, aspect, scoring)."""
    groups = scores.groupby(["supervision", "aspect", "scoring"], sort=False)[list(METRICS)]
    mean, sd = groups.mean(), groups.std(ddof=1)
    table = pd.DataFrame({m: [f"{a:.3f} ± {b:.3f}" if m == "dice" else f"{a:.2f} ± {b:.2f}"
                              for a, b in zip(mean[m], sd[m])] for m in METRICS}, index=mean.index)
    table.columns = ["Dice", "HD95 (voxels)", "HD95 (mm)"]
    return table.reset_index()


# Each paired difference: a label, then the two (aspect, scoring) cells subtracted, same supervision and seed.
CONTRASTS = [
    ("pad − stretch, native logits", ("pad", "native, logits"), ("stretch", "native, logits")),
    ("pad − stretch, native nearest", ("pad", "native, nearest"), ("stretch", "native, nearest")),
    ("logits − nearest, pad", ("pad", "native, logits"), ("pad", "native, nearest")),
    ("logits − nearest, stretch", ("stretch", "native, logits"), ("stretch", "native, nearest")),
    ("native logits − model grid, pad", ("pad", "native, logits"), ("pad", "model grid")),
    ("native logits − model grid, stretch", ("stretch", "native, logits"), ("stretch", "model grid")),
]


def differences(scores: pd.DataFrame) -> pd.DataFrame:
    """Paired differences per seed, and their mean ± sd, for every contrast and supervision."""
    cells = scores.set_index(["supervision", "aspect", "scoring", "seed"])[list(METRICS)].sort_index()
    rows = []
    for supervision in scores["supervision"].unique():
        for label, first, second in CONTRASTS:
            if (supervision, *first) not in cells.index or (supervision, *second) not in cells.index:
                continue  # an aspect left out with --aspects
            diff = cells.loc[(supervision, *first)] - cells.loc[(supervision, *second)]  # indexed by seed
            row = {"supervision": supervision, "difference": label}
            # HD95 in mm only: voxels of the model grid and of the scan are different units.
            for metric, name, digits in (("dice", "Dice", 3), ("hd95_mm", "HD95 mm", 2)):
                values = diff[metric]
                row[f"{name} mean ± sd"] = f"{values.mean():+.{digits}f} ± {values.std(ddof=1):.{digits}f}"
                row[f"{name} per seed"] = " ".join(f"{v:+.{digits}f}" for v in values)
            rows.append(row)
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--supervisions", nargs="+", default=["last_layer", "lomix"], choices=list(lx.PRESETS))
    parser.add_argument("--aspects", nargs="+", default=["pad", "stretch"], choices=["pad", "stretch"])
    parser.add_argument("--size", type=int, default=None, help="model grid side (default: the profile's, 48)")
    parser.add_argument("--out-dir", type=Path, default=None, help="where runs go (default: a temporary folder)")
    args = parser.parse_args(argv)
    if len(args.seeds) < 2:
        parser.error("--seeds needs at least two seeds for a standard deviation")
    base, _ = lx.profiles.comparison("cpu", "brain_aal")
    size = args.size or base.data_kwargs["size"]

    with tempfile.TemporaryDirectory(prefix="native_scoring-") as scratch:
        out_dir = args.out_dir or Path(scratch)
        rows = [row for supervision in args.supervisions for aspect in args.aspects for seed in args.seeds
                for row in measure(supervision, aspect, seed, size, out_dir)]
    scores = pd.DataFrame(rows)
    print(f"brain_aal test split (2 slabs, 24 slices, native plane {PLANE[0]}×{PLANE[1]} at 1 mm); "
          f"{base.model} at {size} px, {base.epochs} epochs, batch {base.batch_size}, "
          f"lr {base.lr}; seeds {args.seeds}")
    print(f"machine: {machine()}")
    print(f"training time, summed over the {len(scores) // 3} runs: {scores['train_s'].sum() / 3 / 60:.0f} min\n")
    print(f"Test scores, mean ± sd over seeds (model grid: {size}², HD95 voxels of that grid)\n")
    print(markdown_table(summary(scores)))
    print("\nPaired differences (same supervision and seed), mean ± sd and each seed's value; "
          "HD95 in mm (native voxels are mm here, model-grid voxels are not)\n")
    print(markdown_table(differences(scores)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

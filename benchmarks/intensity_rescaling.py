"""Does a model survive a scan scaled differently? brain_aal's test slabs, as stored and as a new file would scale them.

    python benchmarks/intensity_rescaling.py
    python benchmarks/intensity_rescaling.py --arms divide zscore zscore+jitter --seeds 0 1 --out-dir /tmp/rescale

brain_aal's slices are 8-bit, scaled by the whole head's maximum. Saved as NIfTI slab by slab and
scaled by each file's own maximum (which is lower: a slab holds less of the head), the same test
slabs look brighter, and a model trained on the stored scaling loses Dice. Each **arm** trains the
cpu profile's brain_aal model (unet_small, LoMix, 48 px, 30 epochs, batch 8, lr 2e-3) on brain_aal
written out as a NIfTI folder (every slab a case; the training and validation slabs in imagesTr, of
which ``num_val=1`` holds one whole slab out by seed; the test slabs in imagesTs), reading it with
one intensity recipe:

- ``divide``: ÷255, exactly brain_aal's own scaling;
- ``zscore``: each slab by its own bulk of voxels (``{"kind": "zscore", "clip": 3}``);
- ``zscore+jitter``: the same, trained with ``augment="intensity"``.

Each model is then scored on the test slabs **as stored** and **rescaled** (each file multiplied by
255 / its own maximum, what reading it by its own maximum does to a model trained on the whole
head's). The table gives test Dice (mean over classes, :func:`lomix_core.mean_dice`) per arm and
seed. Runs go to a temporary folder unless ``--out-dir`` is given; there, a finished run is not
trained again.

With several seeds it also prints each arm's mean ± std and the paired tests (rescaled against
stored, each arm against ``divide``), Holm-corrected together. Cost, measured on 2 cores of an AMD
EPYC shared with other jobs: 5 to 26 min a run, depending on what shared the cores; docs/data.md
has the table.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lomix_core as lx  # noqa: E402
from lomix_core.data import brain_aal  # noqa: E402
from lomix_core.data.preprocessing import Preprocessing  # noqa: E402

ARMS = {"divide": ({"kind": "divide", "by": 255}, True),
        "zscore": ({"kind": "zscore", "clip": 3}, True),
        "zscore+jitter": ({"kind": "zscore", "clip": 3}, "intensity")}


def write_folder(root: Path, rescale: bool = False, test_only: bool = False) -> Path:
    """brain_aal as a NIfTI folder of RAS slabs (the radiological slices turned back to the file's order)."""
    import nibabel as nib

    arrays = brain_aal._arrays(str(brain_aal.DATASET_FILE))
    view = Preprocessing(size=48, class_names=brain_aal.CLASS_NAMES, orientation="radiological")
    parts = {"Ts": ["test"]} if test_only else {"Tr": ["train", "val"], "Ts": ["test"]}
    for part, splits in parts.items():
        for split in splits:
            for name, rows in brain_aal.slabs(split).items():
                image = view.unslice(brain_aal.unpad(arrays["image"][rows])).astype(np.float32)
                if rescale:
                    image *= 255 / image.max()
                label = view.unslice(brain_aal.unpad(arrays["label"][rows]))
                for folder, array, stem in ((f"images{part}", image, f"{name}_0000"), (f"labels{part}", label, name)):
                    (root / folder).mkdir(parents=True, exist_ok=True)
                    nib.save(nib.Nifti1Image(array, np.eye(4)), str(root / folder / f"{stem}.nii.gz"))
    (root / "dataset.json").write_text(json.dumps({"labels": {n: i for i, n in enumerate(brain_aal.CLASS_NAMES)},
                                                   "modality": "MRI"}))
    return root


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--out-dir", default=None)
    args = parser.parse_args(argv)
    out = Path(args.out_dir or tempfile.mkdtemp(prefix="rescale_"))
    folders = {"stored": write_folder(out / "brain_nifti"),
               "rescaled": write_folder(out / "brain_rescaled", rescale=True, test_only=True)}
    base = lx.TrainConfig(dataset="nifti", supervision="lomix", model="unet_small", epochs=30, batch_size=8, lr=2e-3,
                          progress=False, out_dir=str(out / "runs"))
    rows = []
    for arm in args.arms:
        intensity, augment = ARMS[arm]
        for seed in args.seeds:
            reading = {"size": 48, "orientation": "radiological", "intensity": intensity}
            config = dataclasses.replace(base, seed=seed, augment=augment, run_name=f"{arm}_{seed}",
                                         data_kwargs={"root": str(folders["stored"]), "num_val": 1, **reading})
            done = Path(config.out_dir) / config.name / "record.json"
            model = lx.training.load_run(done.parent).model if done.is_file() else lx.train(config).model
            row = {"arm": arm, "seed": seed}
            for condition, root in folders.items():
                test = lx.data.load("nifti", split="test", root=root, **reading)
                row[f"test Dice, {condition}"] = lx.mean_dice(lx.evaluate(model, test))
            rows.append(row)
            print(pd.DataFrame([row]).round(3).to_string(index=False), flush=True)
    table = pd.DataFrame(rows)
    print(f"\nbrain_aal test slabs, {args.seeds} seeds; runs in {out}")
    print(table.round(3).to_string(index=False))
    print(f"\nmean ± std over seeds {args.seeds}")
    print(summary(table).to_string())
    if len(args.seeds) > 1:
        print("\npaired over seeds, Holm-corrected over every test printed (lomix_core.studies.statistics)")
        print(tests(table).round(4).to_string())
    return 0


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per arm, each condition's test Dice as mean ± std over seeds."""
    conditions = [c for c in table if c.startswith("test Dice")]
    stats = table.groupby("arm", sort=False)[conditions].agg(["mean", "std"])
    return pd.DataFrame({c: [f"{m:.3f} ± {sd:.3f}" for m, sd in zip(stats[(c, "mean")], stats[(c, "std")].fillna(0))]
                         for c in conditions}, index=stats.index)


def tests(table: pd.DataFrame) -> pd.DataFrame:
    """What rescaling costs each arm (rescaled - stored), and each arm against ÷255 under both conditions."""
    from lomix_core.studies.statistics import TestFamily

    by_seed = table.set_index(["arm", "seed"])
    family = TestFamily()
    for arm in by_seed.index.unique("arm"):
        family.add(arm, "rescaled - stored", by_seed.loc[arm, "test Dice, rescaled"] - by_seed.loc[arm, "test Dice, stored"])
        if arm != "divide" and "divide" in by_seed.index.unique("arm"):
            for condition in ("stored", "rescaled"):
                column = f"test Dice, {condition}"
                family.add(arm, f"{arm} - divide, {condition}", by_seed.loc[arm, column] - by_seed.loc["divide", column])
    return family.table()[["seeds", "mean_difference", "ci95_low", "ci95_high", "t_test_p", "holm_p", "verdict"]]


if __name__ == "__main__":
    sys.exit(main())

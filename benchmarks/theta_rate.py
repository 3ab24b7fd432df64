"""How the map weights' own learning rate changes a LoMix run: the design check behind ``colab``'s
``map_weight_lr``, at the cpu profile's budget.

    python benchmarks/theta_rate.py --out-dir /tmp/theta_rate

LoMix's map weights are ``softplus(θ)``; AdamW moves θ by about its lr per step at most, so a run's
θ bound is θ's lr × steps (``lx.weight_movement``). ``colab`` trains 1,950 steps at the paper's lr
1e-4, a bound of 0.195 that keeps the weights equal in practice, so it gives θ a rate of its own:
a bound of 1.95. This script trains the cpu profile's brain_aal LoMix run (300 steps at lr 2e-3, a
bound of 0.6) with θ's lr set so that the bound is the network's 0.6, colab's 1.95 and the paper's
11.07 (1e-4 × 110,700 steps), for ``--seeds``, and prints per arm the weights' final spread
(largest / smallest), their collapse ratio, the mean final weight, and validation and test Dice of
the model selected on validation (mean ± std over seeds). Every run is single-threaded and cached in
``--out-dir``, so a second call only reads back.
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

BOUNDS = {"network's lr (0.6)": None, "colab's bound (1.95)": 1.95, "paper's bound (11.07)": 1e-4 * 110_700}


def arm_configs(bound: float | None, seeds, out: Path) -> list[lx.TrainConfig]:
    base, _ = lx.profiles.comparison("cpu", dataset="brain_aal", supervision="lomix", out_dir=str(out), progress=False)
    steps = base.epochs * lx.config.epoch_steps(base, len(lx.data.load(base.dataset, split="train", **base.data_kwargs)))
    theta_lr = None if bound is None else bound / steps
    return [dataclasses.replace(base, seed=seed, map_weight_lr=theta_lr) for seed in seeds]


def summary(runs) -> dict[str, str]:
    moved = [lx.weight_movement.run_movement(r.history, r.config.theta_lr) for r in runs]

    def mean_sd(values, digits=3):
        return f"{np.mean(values):.{digits}f} ± {np.std(values, ddof=1) if len(values) > 1 else 0:.{digits}f}"
    return {"θ's lr": f"{runs[0].config.theta_lr:.3g}", "θ bound": f"{moved[0]['theta_bound']:.3g}",
            "ratio cap": f"{moved[0]['ratio_cap']:.3g}",
            "mean weight": mean_sd([float(r.history.filter(regex='^w:').iloc[-1].mean()) for r in runs], 4),
            "spread (max/min)": mean_sd([m["spread"] for m in moved]),
            "collapse ratio": mean_sd([m["collapse_ratio"] for m in moved], 2),
            "val Dice": mean_sd([r.record["metrics"]["val_dice"] for r in runs]),
            "test Dice": mean_sd([r.record["metrics"]["test_dice"] for r in runs])}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=None, help="runs at once (default: one per core)")
    parser.add_argument("--out-dir", default=None)
    args = parser.parse_args(argv)
    out = Path(args.out_dir or tempfile.mkdtemp(prefix="theta_rate_"))
    arms = {name: arm_configs(bound, args.seeds, out) for name, bound in BOUNDS.items()}
    runs = lx.runs.run_many([c for configs in arms.values() for c in configs], jobs=args.jobs)
    by_arm = dict(zip(arms, np.split(np.array(runs, dtype=object), len(arms))))
    table = pd.DataFrame({name: summary(list(r)) for name, r in by_arm.items()}).T
    print(f"{lx.machine.summary()}; brain_aal, unet_small, cpu profile budget, seeds {args.seeds}; runs in {out}")
    print(table.to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())

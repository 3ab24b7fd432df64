"""A short run of the full profile: the paper's network trained for a few hundred steps per preset.

    python benchmarks/full_profile_steps.py --steps 300            # on a GPU: pvt_v2_b2_emcad, 224², official protocol, fp32
    python benchmarks/full_profile_steps.py --steps 2 --model unet_small --size 64 --device cpu   # plumbing check

Each preset trains from the same seed and initial network through ``lx.train`` (so validation,
model selection and the run record are the real ones) for ``--steps`` steps, and the table gives
the wall time per step, its ratio to last_layer, and the validation and test Dice reached.
Wall time per step includes data loading and the one validation pass, so it is an upper bound
on the step itself; ``benchmarks/step_time.py`` isolates the step.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys

import pandas as pd

import lomix_core as lx
from lomix_core.pipeline.timing import with_last_layer_first
from lomix_core.teaching.report import machine, markdown_table


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--dataset", default="synthetic", help="synthetic has the most slices per epoch")
    parser.add_argument("--model", default=None, help="default: the full profile's (pvt_v2_b2_emcad)")
    parser.add_argument("--size", type=int, default=None, help="default: the full profile's (224)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--presets", nargs="+", default=list(lx.PRESETS), choices=list(lx.PRESETS))
    parser.add_argument("--out-dir", default="outputs/full_profile_steps")
    parser.add_argument("--pretrained", action="store_true",
                        help="start from the ImageNet weights as the profile does (default: random init; the Dice "
                             "columns then say little, the times the same)")
    args = parser.parse_args(argv)

    official = args.model is None or lx.models.spec(args.model).has_official_form
    base, _ = lx.profiles.comparison("full", dataset=args.dataset, model=args.model, device=args.device, out_dir=args.out_dir,
                                     **({} if official else {"protocol": "kit"}))
    if not args.pretrained:  # a step costs the same from any weights, and a GPU box may have no ImageNet file
        base = dataclasses.replace(base, model_kwargs={k: v for k, v in base.model_kwargs.items() if k != "pretrained"})
    if args.size is not None:
        base = dataclasses.replace(base, data_kwargs={**base.data_kwargs, "size": args.size})
    base = dataclasses.replace(base, epochs=1, max_steps_per_epoch=args.steps, progress=False)
    rows = []
    for preset in with_last_layer_first(args.presets):
        run = lx.train(dataclasses.replace(base, supervision=preset, seed=0))
        metrics = run.record["metrics"]
        rows.append({"preset": preset, "maps": metrics["num_supervised_maps"], "steps": metrics["steps"],
                     "s_per_step": metrics["train_time_s"] / metrics["steps"],
                     "val_dice": metrics["val_dice"], "test_dice": metrics["test_dice"]})
        print(f"{preset}: {rows[-1]['s_per_step']:.3f} s/step", file=sys.stderr, flush=True)
    table = pd.DataFrame(rows)
    table["vs_last_layer"] = table["s_per_step"] / table["s_per_step"].iloc[0]
    device = run.record["environment"]["device_name"]
    init = "ImageNet init" if base.model_kwargs.get("pretrained") else "random init"
    print(f"{base.model} ({init}), batch {base.batch_size}, {base.data_kwargs['size']}², amp={base.amp}, {device}\n"
          f"{machine()}\n")
    print(markdown_table(table.set_index("preset"), digits=3))
    return 0


if __name__ == "__main__":
    sys.exit(main())

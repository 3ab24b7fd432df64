"""What protocol="official" changes in test Dice, at a CPU budget: the kit's choices against the official ones.

    python benchmarks/protocol_effect.py                         # brain_aal, pvt_v2_b0_emcad, 64 px, 3 seeds
    python benchmarks/protocol_effect.py --supervision last_layer --seeds 0 1 2 3 4

Both protocols train the same network from the same seeds with the cpu profile's brain_aal budget
(300 steps of batch 8, lr 2e-3); the official one trains on the training and validation slabs and
keeps its last epoch, the kit selects on the validation slab (see docs/official_vs_kit.md for every
difference). Two mixed runs split the difference in two: `kit + official data` is the kit's network,
loss and augmentation trained on training + validation slabs to the last epoch; `official + kit
data` is the official network, loss and augmentation trained on the training slabs and selected on
validation. Random initialisation, because ImageNet weights cannot be had offline. The table gives
test Dice per seed and each column's paired difference from the kit with its 95 % t interval: one
small budget on one brain, so it says what the switch does here, not at the paper's scale.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import torch

import lomix_core as lx
from lomix_core.studies.statistics import paired_test
from lomix_core.teaching.report import machine, markdown_table


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="pvt_v2_b0_emcad", help="an EMCAD model (the official protocol needs one)")
    parser.add_argument("--supervision", default="lomix", choices=list(lx.PRESETS))
    parser.add_argument("--size", type=int, default=64, help="divisible by 32")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out-dir", default="outputs/protocol_effect")
    args = parser.parse_args(argv)

    base, _ = lx.profiles.comparison("cpu", dataset="brain_aal", model=args.model, supervision=args.supervision,
                                     out_dir=args.out_dir, progress=False, track_test=False)
    base = dataclasses.replace(base, data_kwargs={**base.data_kwargs, "size": args.size})
    variants = {protocol: {"protocol": protocol} for protocol in ("kit", "official")}
    comparison = lx.comparisons.compare(base, variants, args.seeds, by="protocol")
    runs = comparison.runs.pivot(index="seed", columns="protocol", values="test_dice")
    mixed = [(name, dataclasses.replace(base, seed=seed)) for name in MIXED for seed in args.seeds]
    with ProcessPoolExecutor(2, mp_context=get_context("spawn"), initializer=torch.set_num_threads,
                             initargs=(max(1, (os.cpu_count() or 1) // 2),)) as pool:
        scores = list(pool.map(mixed_run, mixed))
    for (name, config), dice in zip(mixed, scores):
        runs.loc[config.seed, name] = dice
    print(f"{args.model}, {args.supervision}, brain_aal at {args.size} px, {base.epochs} epochs of batch "
          f"{base.batch_size}, lr {base.lr:g}, random init; {machine()}\n")
    print(markdown_table(runs[["kit", *MIXED, "official"]], digits=4))
    for name in (*MIXED, "official"):
        test = paired_test(runs[name] - runs["kit"])
        print(f"\n{name} - kit: {test['mean_difference']:+.4f} (95 % interval {test['ci95_low']:+.4f} to "
              f"{test['ci95_high']:+.4f}, paired t p {test['t_test_p']:.3f}, {len(runs)} seeds)")
    return 0


MIXED = ("kit + official data", "official + kit data")


def mixed_run(job: tuple[str, lx.TrainConfig]) -> float:
    """Test Dice of one half-official run, built as ``lx.train`` builds a run (same seeding order)."""
    name, config = job
    network_protocol = "kit" if name == "kit + official data" else "official"
    config = dataclasses.replace(config, protocol=network_protocol)
    lx.training.seed_everything(config.seed)
    kwargs = config.data_kwargs
    augment = "official" if network_protocol == "official" else True
    train = lx.data.load(config.dataset, split="train", augment=augment, **kwargs)
    val = lx.data.load(config.dataset, split="val", **kwargs)
    if name == "kit + official data":
        train, val = train.joined(val), None
    model, loss_fn = lx.checkpoints.build_model_and_loss(config, train.in_channels, train.num_classes, torch.device("cpu"))
    lx.training.fit(model, loss_fn, train, val, config)
    return lx.mean_dice(lx.evaluate(model, lx.data.load(config.dataset, split="test", **kwargs)))


if __name__ == "__main__":
    sys.exit(main())

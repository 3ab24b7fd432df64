"""Hours per chapter of the colab and full profiles, from their exact step counts and an assumed step time.

    python benchmarks/profile_hours.py                                  # docs/gpu.md's hours table
    python benchmarks/profile_hours.py --t4-step-s 0.12 --h200-step-s 0.06

No GPU has run these profiles yet, so the hours are estimates, and this script says how they are
made. The step and run counts are exact: they come from the profiles' budgets and the chapters'
default run lists (the same ``comparisons`` functions the notebooks call; runs that chapters share
are counted once, in the first chapter that trains them). The seconds per step are assumptions:

* T4 (free Colab), 224², batch 6, fp16: 0.15 s a last-layer step, the middle of a 0.12-0.18 s
  guess, not a measurement (no T4 has run the kit; every hour scales with it, so ``--t4-step-s
  0.18`` gives 1.2 times the hours). lomix_core.pipeline.profiles.ESTIMATED_H_COLAB, the colab plan's hours
  that each chapter prints, are this script's T4 column at the defaults (tests/test_timing.py);
* H200: 0.08 s, the official code's last-layer step measured there in fp32 for the kit;
* every other preset costs ``--preset-factor`` (1.25) times that: the vectorised LoMix loss adds
  19 ms to the official 80 ms step on an H200 (the same measurement), and relatively more on a slower card;
* evaluation: a forward pass costs a third of a training step, per slice ``step / batch / 3``,
  for validation every epoch, the test split every epoch (``track_test``) and the final test.

Synapse cannot be read here, so its slice counts are TransUNet's: 2211 training slices in 18 cases
and 1568 test slices in 12 (3779 in all); the two validation cases are taken as 2/18 of 2211.
Before it trains, every chapter prints its own estimate from steps timed on the device it runs on
(``lx.runtime.estimate``); trust that one over this table.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import sys

import pandas as pd

import lomix_core as lx
from lomix_core.studies.comparisons import operator_variants, preset_variants, subset_sizes, weighting_variants
from lomix_core.teaching.report import markdown_table
from lomix_core.pipeline.config import epoch_steps, slices_used
from lomix_core.studies.runs import keyed

PRESETS = ["last_layer", "deep_supervision", "nnunet", "mutation", "lomix"]  # the chapters' default PRESETS
SYNAPSE = {"train": round(2211 * 16 / 18), "val": round(2211 * 2 / 18), "test": 1568, "subjects": 16}


def split_sizes(config: lx.TrainConfig) -> dict[str, int]:
    """Slices per split (and training subjects) of ``config``'s dataset."""
    if config.dataset == "synapse":
        return SYNAPSE
    return _counted(config.dataset, json.dumps(config.data_kwargs, sort_keys=True))


@functools.lru_cache(maxsize=None)  # every run of a dataset asks: load its splits once
def _counted(dataset: str, data_kwargs: str) -> dict[str, int]:
    kwargs = {**json.loads(data_kwargs), "size": 32}  # counting slices needs no resolution
    splits = {split: lx.data.load(dataset, split=split, **kwargs) for split in ("train", "val", "test")}
    return {**{split: len(s) for split, s in splits.items()}, "subjects": len(splits["train"].subject_slices())}


def work(config: lx.TrainConfig) -> tuple[int, int]:
    """(training steps, evaluated slices) of one run of ``config``."""
    sizes = split_sizes(config)
    train_slices = sizes["train"]
    if config.data_kwargs.get("num_train_subjects"):
        train_slices = round(train_slices * config.data_kwargs["num_train_subjects"] / sizes["subjects"])
    trained, validated = slices_used(config, train_slices, sizes["val"])
    per_epoch = validated + (sizes["test"] if config.track_test else 0)
    return config.epochs * epoch_steps(config, trained), config.epochs * per_epoch + sizes["test"]


def chapter_runs(profile: str) -> dict[str, list[lx.TrainConfig]]:
    """The runs each chapter trains with its default parameters under ``profile``."""
    out = "/nonexistent/profile_hours"  # nothing is cached there, so every run counts
    comparison = {d: lx.profiles.comparison(profile, dataset=d, out_dir=out) for d in lx.profiles.comparison_datasets(profile)}
    ablation, seeds = lx.profiles.ablation(profile, out_dir=out)
    runs = {"00": [lx.profiles.quickstart(profile, seed=seeds[0], out_dir=out)],
            "02": [lx.profiles.demo(profile, out_dir=out)]}
    runs["03"] = [c for base, s in comparison.values()
                  for c in lx.comparisons.comparison_configs(base, preset_variants(PRESETS), s)]
    first = next(iter(comparison.values()))[0]
    runs["03"].append(dataclasses.replace(first, supervision="last_layer", seed=seeds[0], official_eval_mode_bug=True))
    split = split_sizes(ablation)
    sizes = sorted(set(subset_sizes(split["subjects"])["train_subjects"]))
    full_steps = epoch_steps(ablation, slices_used(ablation, split["train"], split["val"])[0])  # a full run's epoch
    runs["04"] = [dataclasses.replace(ablation, supervision=p, seed=s, data_kwargs={**ablation.data_kwargs, "num_train_subjects": n},
                                      steps_per_epoch=full_steps)
                  if n != split_sizes(ablation)["subjects"] else dataclasses.replace(ablation, supervision=p, seed=s)
                  for n in sizes for p in PRESETS for s in seeds]
    lomix = dataclasses.replace(ablation, supervision="lomix")
    runs["05"] = lx.comparisons.comparison_configs(lomix, {**operator_variants(), **weighting_variants()}, seeds)
    return runs


def table(profile: str, step_s: dict[str, float], preset_factor: float) -> pd.DataFrame:
    seen, rows = set(), []
    for chapter, configs in chapter_runs(profile).items():
        fresh = []
        for config in configs:
            key = keyed(config).name
            if key not in seen:
                seen.add(key)
                fresh.append(config)
        row = {"chapter": chapter, "runs": len(fresh), "steps": 0}
        for card, seconds in step_s.items():
            row[f"{card} h"] = 0.0
        for config in fresh:
            steps, slices = work(config)
            row["steps"] += steps
            factor = 1.0 if config.supervision == "last_layer" else preset_factor
            for card, seconds in step_s.items():
                row[f"{card} h"] += (steps * seconds * factor + slices * seconds / config.batch_size / 3) / 3600
        rows.append(row)
    frame = pd.DataFrame(rows).set_index("chapter")
    frame.loc["series"] = frame.sum()
    return frame


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--t4-step-s", type=float, default=0.15)
    parser.add_argument("--h200-step-s", type=float, default=0.08)
    parser.add_argument("--preset-factor", type=float, default=1.25)
    args = parser.parse_args(argv)
    cards = {"T4": args.t4_step_s, "H200": args.h200_step_s}
    for profile in ("colab", "full"):
        frame = table(profile, cards, args.preset_factor)
        print(f"\n{profile} profile (estimated; last-layer step {cards} s, other presets x{args.preset_factor}; "
              f"chapters 01, 06 and 07 train nothing):\n")
        print(markdown_table(frame.astype({"runs": int, "steps": int}), digits=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

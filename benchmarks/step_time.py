"""Training-step time, loss time and peak memory of every supervision preset.

    python benchmarks/step_time.py --setting cpu --official --floor --clock cpu  # the cpu profile's brain_aal runs, 1 thread
    python benchmarks/step_time.py --setting paper --device cuda  # the paper's network and shape
    python benchmarks/step_time.py --model unet_small --device cpu --batch 2 --size 96

``--setting cpu`` is unet_small at 48 px, batch 8, 8 classes on one thread (a cpu-profile worker);
``--setting paper`` is PVT-v2-b2 + EMCAD at 224², batch 6, 9 classes, 3 input channels, no
pretrained weights. For each preset, on one fixed random batch: the median training step
(``lomix_core.pipeline.training.Stepper``: forward, loss, backward, AdamW), its ratio to the last-layer
step in the same run, the loss-only forward + backward on fixed logits, and peak memory of each
(CUDA: the allocator's; CPU: PyTorch's allocations as the profiler records them) with the
loss's extra over last layer.
``--official`` also times the LoMix loss computed the way the official code does it (a loop over
maps and classes with a ``.item()`` per class); ``--floor`` the loss's floors (see
``lomix_core.pipeline.timing.step_times``); ``--compile`` runs the losses through
``torch.compile``. The table is printed last; ``--json`` keeps it.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

import lomix_core as lx
from lomix_core.pipeline.timing import step_times
from lomix_core.teaching.report import machine, markdown_table
from lomix_core.pipeline.training import resolve_device

SETTINGS = {
    "cpu": dict(model="unet_small", batch=8, size=48, classes=8, in_channels=1),
    "paper": dict(model="pvt_v2_b2_emcad", batch=6, size=224, classes=9, in_channels=3,
                  model_kwargs={"pretrained": False}),
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setting", choices=sorted(SETTINGS), default=None,
                        help="a named shape (overrides --model, --batch, --size, --classes, --in-channels)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (--setting cpu: 1)")
    parser.add_argument("--model", default="unet_small", choices=lx.models.available())
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--classes", type=int, default=9)
    parser.add_argument("--in-channels", type=int, default=1)
    parser.add_argument("--amp", action="store_true", help="autocast as training does it (CUDA only: bf16, or fp16 "
                                                              "with a gradient scaler where bf16 is not native)")
    parser.add_argument("--presets", nargs="+", default=list(lx.PRESETS), choices=list(lx.PRESETS))
    parser.add_argument("--steps", type=int, default=10, help="timed steps per measurement (median)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--official", action="store_true", help="also time the official-style LoMix loss loop")
    parser.add_argument("--floor", action="store_true",
                        help="also time what the LoMix loss cannot go below: softmax + CE, and the CE + Dice "
                             "statistics alone, over as many logits as its maps hold")
    parser.add_argument("--compile", action="store_true", help="run every loss through torch.compile")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="cpu: the thread's CPU time, which leaves out waiting for a core on a shared machine "
                             "(one-thread runs only: work in other threads is not counted)")
    parser.add_argument("--json", type=Path, default=None, help="write the table and setting here")
    args = parser.parse_args(argv)
    shape = dict(model=args.model, batch=args.batch, size=args.size, classes=args.classes, in_channels=args.in_channels)
    shape.update(SETTINGS.get(args.setting, {}))
    threads = args.threads or (1 if args.setting == "cpu" else None)
    if threads:
        torch.set_num_threads(threads)

    device = resolve_device(args.device)
    table = step_times(presets=args.presets, device=device, amp=args.amp, steps=args.steps, warmup=args.warmup,
                       official=args.official, compile_loss=args.compile, clock=args.clock, floor=args.floor,
                       **shape)
    setting = (f"{shape['model']}, batch {shape['batch']}, {shape['size']}², {shape['classes']} classes, "
               f"{'autocast' if args.amp else 'fp32'}, {'compiled loss' if args.compile else 'eager loss'}, "
               f"{device.type}, {torch.get_num_threads()} thread(s), {args.clock} clock")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"setting": setting, "machine": machine(),
                                         "rows": table.to_dict(orient="records")}, indent=2))
    print(f"{setting}\n{machine()}\n")
    print(markdown_table(table.set_index("preset").dropna(axis=1, how="all"), digits=2))
    lomix = table[table["official_loss_ms"].notna()]
    if len(lomix):
        row = lomix.iloc[0]
        print(f"\nLoMix loss forward + backward: official-style loop {row.official_loss_ms:.1f} ms, kit "
              f"{row.loss_ms:.1f} ms, {row.official_loss_ms / row.loss_ms:.2f}x faster")
    floors = table[table["floor_ce_ms"].notna()] if args.floor else table.iloc[:0]
    if len(floors):  # the floors are timed in the LoMix row, when lomix is among the presets
        row = floors.iloc[0]
        print(f"Over the same {row.maps} maps' logits as one stack, forward + backward: softmax + CE "
              f"{row.floor_ce_ms:.1f} ms, CE + Dice statistics alone {row.floor_stats_ms:.1f} ms; the LoMix loss "
              f"{row.loss_ms:.1f} ms is {row.loss_ms / row.floor_stats_ms:.2f}x the statistics alone")
    return 0


if __name__ == "__main__":
    sys.exit(main())

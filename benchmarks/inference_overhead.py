"""Inference cost of a model trained with each supervision preset: parameters and latency.

    python benchmarks/inference_overhead.py --model unet_small --size 96
    python benchmarks/inference_overhead.py --model pvt_v2_b2_emcad --device cuda --size 224

The mutants, fusion modules and map weights belong to the loss module, not the model, so a model
trained with LoMix has the same parameter count and the same forward cost as one trained on the
last layer alone. This prints the measurement that shows it.
"""
from __future__ import annotations

import argparse
import sys

import lomix_core as lx
from lomix_core.pipeline.timing import inference_overhead
from lomix_core.teaching.report import machine, markdown_table
from lomix_core.pipeline.training import resolve_device


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="unet_small", choices=lx.models.available())
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--classes", type=int, default=9)
    parser.add_argument("--in-channels", type=int, default=1)
    parser.add_argument("--presets", nargs="+", default=list(lx.PRESETS), choices=list(lx.PRESETS))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    table = inference_overhead(args.model, args.presets, device, batch=args.batch, size=args.size,
                               classes=args.classes, in_channels=args.in_channels, steps=args.steps,
                               warmup=args.warmup)
    print(f"{args.model}, batch {args.batch}, {args.size}², {args.classes} classes, {device.type}\n{machine()}\n")
    print(markdown_table(table.set_index("preset"), digits=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The heads' bilinear upsampling: ``F.interpolate`` against two matrix products.

    python benchmarks/upsample_time.py             # the cpu setting: unet_small's heads at 48², batch 8, 8 classes
    python benchmarks/upsample_time.py --size 96 --batch 2 --classes 9

unet_small's four heads give logits at strides 8, 4, 2 and 1, each resized to the input size.
Every multi-map preset backpropagates through the three coarse heads' resizing, which last layer
does not. For each head's shape this times the forward + backward of the resize (one thread, the
thread's CPU time, the two ways in round-robin, median of ``--steps``) by
``F.interpolate(mode="bilinear", align_corners=False)`` and by
``lomix_core.models.upsample.resize_bilinear`` (``R x Cᵀ``), and prints the largest difference
between their outputs and between their input gradients.
"""
from __future__ import annotations

import argparse
import sys

import pandas as pd
import torch
import torch.nn.functional as F

from lomix_core.models.upsample import resize_bilinear
from lomix_core.pipeline.timing import interleaved_median_ms
from lomix_core.teaching.report import machine, markdown_table


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=48)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--classes", type=int, default=8)
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)
    size = (args.size, args.size)
    ways = {"F.interpolate": lambda x: F.interpolate(x, size=size, mode="bilinear", align_corners=False),
            "resize_bilinear": lambda x: resize_bilinear(x, size)}
    rows = []
    for stride in (8, 4, 2):
        x = torch.randn(args.batch, args.classes, args.size // stride, args.size // stride, generator=generator,
                        requires_grad=True)
        upstream = torch.randn(args.batch, args.classes, *size, generator=generator)
        steps = {name: (lambda way=way, x=x, upstream=upstream: way(x).backward(upstream)) for name, way in ways.items()}
        ms = interleaved_median_ms(steps, torch.device("cpu"), args.steps, warmup=5, clock="cpu")
        (out_a, grad_a), (out_b, grad_b) = [(out, *torch.autograd.grad(out, x, upstream))
                                            for out in (way(x) for way in ways.values())]
        rows.append({"head": f"stride {stride}", "input": "×".join(map(str, x.shape)),
                     **{f"{name} ms": round(t, 3) for name, t in ms.items()},
                     "ratio": round(ms["resize_bilinear"] / ms["F.interpolate"], 2),
                     "output, max abs difference": f"{(out_a - out_b).abs().max().item():.1e}",
                     "gradient, max difference / max": f"{((grad_a - grad_b).abs().max() / grad_a.abs().max()).item():.1e}"})
    total = {name: sum(row[f"{name} ms"] for row in rows) for name in ways}
    print(f"the coarse heads' resize to {args.size}², batch {args.batch}, {args.classes} classes, forward + backward, "
          f"1 thread, CPU time, median of {args.steps}")
    print(machine())
    print()
    print(markdown_table(pd.DataFrame(rows)))
    print(f"\nall three: F.interpolate {total['F.interpolate']:.2f} ms, resize_bilinear "
          f"{total['resize_bilinear']:.2f} ms ({total['resize_bilinear'] / total['F.interpolate']:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

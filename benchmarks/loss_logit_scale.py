"""LoMix loss time against the size of the logits: an untrained network's, and a trained one's.

    python benchmarks/loss_logit_scale.py                    # the cpu setting, scales 1, 3, 10
    python benchmarks/loss_logit_scale.py --scales 1 10 --steps 30

step_time.py times the loss on an untrained network's logits, which stay within a few units of
0. A trained network's logits span tens of units, and a mul mutant multiplies four maps of them,
so most of its softmax's exp arguments are far below -87: the range where exp's result is
subnormal or 0, which vectorised exp implementations and x86 arithmetic leave to slow paths.
This script times the loss (forward + backward, ``LoMixLoss`` with the paper's operators, on
random logits ``scale · N(0, 1)`` at the cpu profile's shapes: 4 maps of batch 8, 8 classes, 48²,
one thread, the thread's CPU time), the scales in round-robin, and prints the median and the
minimum of each. It uses the public API only, so the same file times older versions of the kit
(``PYTHONPATH`` to their checkout).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

import lomix_core as lx


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0, 3.0, 10.0])
    parser.add_argument("--steps", type=int, default=20, help="timed calls per scale")
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)
    target = torch.randint(0, 8, (8, 48, 48), generator=generator)
    loss_fn = lx.LoMixLoss(4, 8)
    logits = {scale: [(scale * torch.randn(8, 8, 48, 48, generator=generator)).requires_grad_() for _ in range(4)]
              for scale in args.scales}
    times: dict[float, list[float]] = {scale: [] for scale in args.scales}
    for step in range(args.warmup + args.steps):
        for scale, maps in logits.items():
            start = time.thread_time()
            loss_fn(maps, target).backward()
            if step >= args.warmup:
                times[scale].append((time.thread_time() - start) * 1000)
    print(f"LoMix loss forward + backward, 4 maps of [8, 8, 48, 48], 1 thread, CPU time; lomix_core from "
          f"{lx.__file__}\n")
    print("| logit scale | largest logit | median (ms) | minimum (ms) |\n|---:|---:|---:|---:|")
    for scale, values in times.items():
        largest = max(float(m.detach().abs().max()) for m in logits[scale])
        print(f"| {scale:g} | {largest:.1f} | {statistics.median(values):.2f} | {min(values):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

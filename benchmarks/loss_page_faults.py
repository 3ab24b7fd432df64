"""Minor page faults and CPU time of the LoMix loss and training step, mutants fused or built.

    python benchmarks/loss_page_faults.py    # the cpu profile's brain_aal shapes, one thread

At unet_small, 48², batch 8, 8 classes: per LoMix loss step (forward + backward on fixed logits)
and per training step (``lomix_core.pipeline.training.Stepper``), the median over 10 calls of the process's
minor page faults (``getrusage``) and of the thread's CPU time, with the mutants fused into the C
kernel (:mod:`lomix_core.fused_mutants`, the default on a CPU) and with them built as tensors (the
C kernels still on), alternated twice in one process.
"""
from __future__ import annotations

import resource
import statistics
import sys
import time

import torch

import lomix_core as lx
from lomix_core import fused_mutants
from lomix_core.teaching.report import machine


def measure(fused: bool, images: torch.Tensor, target: torch.Tensor, calls: int = 10) -> dict[str, tuple[float, float]]:
    """``{"loss" | "step": (median minor faults, median CPU ms)}``."""
    applies = fused_mutants.applies
    if not fused:
        fused_mutants.applies = lambda *args: False
    try:
        torch.manual_seed(0)
        net = lx.models.build("unet_small", 1, 8)
        loss_fn = lx.LoMixLoss(net.num_maps, 8)
        stepper = lx.training.Stepper(net, loss_fn, lx.TrainConfig(lr=1e-4))
        with torch.no_grad():
            logits = [m.detach().requires_grad_() for m in net(images)]
        out = {}
        for name, fn in [("loss", lambda: loss_fn(logits, target).backward()), ("step", lambda: stepper(images, target))]:
            for _ in range(3):
                fn()
            faults, times = [], []
            for _ in range(calls):
                before, start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.thread_time()
                fn()
                times.append((time.thread_time() - start) * 1000)
                faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
            out[name] = statistics.median(faults), statistics.median(times)
        return out
    finally:
        fused_mutants.applies = applies


def main() -> int:
    torch.set_num_threads(1)
    images, target = torch.randn(8, 1, 48, 48), torch.randint(0, 8, (8, 48, 48))
    print(f"unet_small, batch 8, 48², 8 classes, 1 thread, CPU time\n{machine()}\n")
    print("| mutants | loss: minor faults | loss: ms | step: minor faults | step: ms |\n|---|---:|---:|---:|---:|")
    for _ in range(2):
        for fused in (True, False):
            m = measure(fused, images, target)
            print(f"| {'fused' if fused else 'built'} | {m['loss'][0]:.0f} | {m['loss'][1]:.1f} | {m['step'][0]:.0f} | "
                  f"{m['step'][1]:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

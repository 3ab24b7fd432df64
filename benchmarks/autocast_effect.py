"""How far a loss and its gradients under autocast land from fp32, and what autocast costs.

    python benchmarks/autocast_effect.py                 # CPU: bf16 and fp16 autocast, 1 thread
    python benchmarks/autocast_effect.py --device cuda --model pvt_v2_b2_emcad --size 224 --batch 6 --classes 9 --in-channels 3

For each preset, one fixed random batch through the same network: the loss and the gradient of
every parameter (network and loss) in fp32, then under each autocast dtype. The table gives the
loss's relative difference, the gradient's relative difference as a norm over all parameters
(‖g_amp - g_fp32‖ / ‖g_fp32‖), their cosine, and the median forward + backward time (on a CPU the
thread's CPU time, for one-thread runs on a shared machine) with its
ratio to fp32. CE and Dice always run in fp32 (``lomix_core.map_loss``); the network, its
backward and the matrix products of the loss's learned fusions (concat, wf) run in the autocast
dtype, and the logits arrive rounded to it.
"""
from __future__ import annotations

import argparse
import sys

import pandas as pd
import torch

import lomix_core as lx
from lomix_core.pipeline.timing import _build, interleaved_median_ms
from lomix_core.teaching.report import machine, markdown_table
from lomix_core.pipeline.training import resolve_device

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def loss_and_gradient(net, loss_fn, images, target, dtype):
    net.zero_grad(set_to_none=True)
    loss_fn.zero_grad(set_to_none=True)
    with torch.autocast(images.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
        loss = loss_fn(net(images), target)
    loss.backward()
    params = [p for p in [*net.parameters(), *loss_fn.parameters()] if p.grad is not None]
    return loss.detach().double(), torch.cat([p.grad.detach().double().flatten() for p in params])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="unet_small", choices=lx.models.available())
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=48)
    parser.add_argument("--classes", type=int, default=8)
    parser.add_argument("--in-channels", type=int, default=1)
    parser.add_argument("--presets", nargs="+", default=["last_layer", "lomix"], choices=list(lx.PRESETS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    torch.manual_seed(0)
    images = torch.randn(args.batch, args.in_channels, args.size, args.size, device=device)
    target = torch.randint(0, args.classes, (args.batch, args.size, args.size), device=device)

    rows, timed = [], {}
    for preset in args.presets:
        net, loss_fn = _build(args.model, preset, args.in_channels, args.classes, device)
        loss32, grad32 = loss_and_gradient(net, loss_fn, images, target, None)
        timed[preset, "fp32"] = lambda net=net, loss_fn=loss_fn: loss_and_gradient(net, loss_fn, images, target, None)
        for name, dtype in DTYPES.items():
            loss, grad = loss_and_gradient(net, loss_fn, images, target, dtype)
            rows.append({"preset": preset, "autocast": name, "loss_fp32": float(loss32),
                         "loss_rel_diff": float((loss - loss32).abs() / loss32.abs()),
                         "grad_rel_diff": float((grad - grad32).norm() / grad32.norm()),
                         "grad_cosine": float(torch.nn.functional.cosine_similarity(grad, grad32, dim=0))})
            timed[preset, name] = (lambda net=net, loss_fn=loss_fn, dtype=dtype:
                                   loss_and_gradient(net, loss_fn, images, target, dtype))
    ms = interleaved_median_ms(timed, device, args.steps, warmup=2, clock="cpu" if device.type == "cpu" else "wall")
    table = pd.DataFrame(rows)
    table["ms"] = [ms[r.preset, r.autocast] for r in table.itertuples()]
    table["ms_vs_fp32"] = [ms[r.preset, r.autocast] / ms[r.preset, "fp32"] for r in table.itertuples()]
    print(f"{args.model}, batch {args.batch}, {args.size}², {args.classes} classes, {device.type}, "
          f"{torch.get_num_threads()} thread(s); fp32 forward + backward: "
          + ", ".join(f"{p} {ms[p, 'fp32']:.1f} ms" for p in args.presets))
    print(f"{machine()}\n")
    print(markdown_table(table.set_index("preset"), digits=7))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Training-step time, loss time and peak memory of every supervision preset.

    python benchmarks/step_time.py --model unet_small --device cpu --batch 2 --size 96
    python benchmarks/step_time.py --model pvt_v2_b2_emcad --device cuda --batch 6 --size 224 --classes 9

For each preset it measures, on one fixed random batch:
  * the median time of a full training step (forward, loss, backward, AdamW step);
  * the ratio of that step to the last-layer step, measured in the same run;
  * the median loss-only forward + backward on fixed logits;
  * on CUDA, the peak memory of the step and the loss's extra memory over last-layer.
With --official it adds the LoMix loss computed the way the official code does it (a loop over
maps and classes with a .item() per class), for the loss-only comparison. Timing uses CUDA
events on GPU and perf_counter on CPU, after warm-up steps. The table is printed last; --json
writes every number. Compare numbers only within one run: these machines are noisy.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lomix_core as lx  # noqa: E402
from lomix_core.report import machine  # noqa: E402
from lomix_core.train import resolve_device  # noqa: E402
from official_style_loss import OfficialStyleLoMixLoss  # noqa: E402

PRESETS = ["last_layer", "deep_supervision", "nnunet", "mutation", "lomix"]


class Timer:
    """Median wall time of a callable: CUDA events on GPU, perf_counter on CPU."""

    def __init__(self, device: torch.device):
        self.device = device

    def median_ms(self, fn, steps: int, warmup: int) -> float:
        for _ in range(warmup):
            fn()
        times = []
        for _ in range(steps):
            if self.device.type == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                torch.cuda.synchronize(self.device)
                times.append(start.elapsed_time(end))
            else:
                start = time.perf_counter()
                fn()
                times.append((time.perf_counter() - start) * 1000)
        return statistics.median(times)


def peak_memory_mb(device: torch.device, fn) -> float | None:
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) / 2 ** 20


def measure_preset(args, preset: str, device: torch.device, timer: Timer) -> dict:
    torch.manual_seed(0)
    model = lx.models.build(args.model, args.in_channels, args.classes).to(device)
    loss_fn = lx.LoMixLoss(model.num_maps, args.classes, supervision=preset).to(device)
    optimizer = torch.optim.AdamW(list(model.parameters()) + list(loss_fn.parameters()), lr=1e-4, weight_decay=1e-4)
    images = torch.randn(args.batch, args.in_channels, args.size, args.size, device=device)
    target = torch.randint(0, args.classes, (args.batch, args.size, args.size), device=device)
    amp_dtype = torch.bfloat16

    def train_step():
        with torch.autocast(device.type, dtype=amp_dtype, enabled=args.amp):
            loss = loss_fn(model(images), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    with torch.no_grad(), torch.autocast(device.type, dtype=amp_dtype, enabled=args.amp):
        fixed = [m.float() for m in model(images)]
    logits = [m.detach().requires_grad_() for m in fixed]

    def loss_step(fn=loss_fn):
        with torch.autocast(device.type, dtype=amp_dtype, enabled=args.amp):
            loss = fn(logits, target)
        loss.backward()

    row = {"preset": preset, "maps": loss_fn.num_supervised,
           "step_ms": timer.median_ms(train_step, args.steps, args.warmup),
           "loss_ms": timer.median_ms(loss_step, args.steps, args.warmup),
           "step_peak_mb": peak_memory_mb(device, train_step),
           "loss_peak_mb": peak_memory_mb(device, loss_step)}
    if args.official and preset == "lomix":
        official = OfficialStyleLoMixLoss(loss_fn)
        row["official_loss_ms"] = timer.median_ms(lambda: loss_step(official), args.steps, args.warmup)
    return row


def fmt(value, digits=1, suffix=""):
    return "n/a" if value is None else f"{value:.{digits}f}{suffix}"


def table(rows: list[dict]) -> str:
    base = next(r for r in rows if r["preset"] == "last_layer")
    lines = ["| preset | maps | step (ms) | step / last_layer | loss fwd+bwd (ms) | peak memory (MiB) | loss extra memory (MiB) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        extra = None if r["loss_peak_mb"] is None else r["loss_peak_mb"] - base["loss_peak_mb"]
        lines.append(f"| {r['preset']} | {r['maps']} | {fmt(r['step_ms'])} | {r['step_ms'] / base['step_ms']:.2f}× | "
                     f"{fmt(r['loss_ms'])} | {fmt(r['step_peak_mb'], 0)} | {fmt(extra, 0)} |")
    lomix = next((r for r in rows if "official_loss_ms" in r), None)
    if lomix:
        lines.append(f"\nLoMix loss fwd+bwd: official-style loop {lomix['official_loss_ms']:.1f} ms, "
                     f"kit {lomix['loss_ms']:.1f} ms: {lomix['official_loss_ms'] / lomix['loss_ms']:.2f}× faster")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="unet_small", choices=lx.models.available())
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--classes", type=int, default=9)
    parser.add_argument("--in-channels", type=int, default=1)
    parser.add_argument("--amp", action="store_true", help="bf16 autocast")
    parser.add_argument("--presets", nargs="+", default=PRESETS, choices=list(lx.PRESETS))
    parser.add_argument("--steps", type=int, default=10, help="timed steps per measurement (median)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--official", action="store_true", help="also time the official-style LoMix loss loop")
    parser.add_argument("--json", type=Path, default=None, help="write every number here")
    args = parser.parse_args(argv)
    if "last_layer" not in args.presets:
        args.presets = ["last_layer", *args.presets]

    device = resolve_device(args.device)
    timer = Timer(device)
    rows = []
    for preset in args.presets:
        rows.append(measure_preset(args, preset, device, timer))
        print(f"{preset}: step {rows[-1]['step_ms']:.1f} ms, loss {rows[-1]['loss_ms']:.1f} ms", file=sys.stderr, flush=True)
    setting = (f"{args.model}, batch {args.batch}, {args.size}², {args.classes} classes, "
               f"{'bf16 autocast' if args.amp else 'fp32'}, {device.type}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"setting": setting, "machine": machine(), "rows": rows,
                                         "python": platform.python_version()}, indent=2))
    print(f"\n{setting}\n{machine()}\n\n{table(rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

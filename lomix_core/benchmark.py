"""Measurements of cost: training-step time and memory per preset, and inference overhead.

Used by ``benchmarks/*.py`` (command line, tables) and notebook 07 (plots). Every measurement
runs the presets one after another in the same process, so compare them as ratios within one
run: absolute times on shared machines are noisy. Timing uses CUDA events on a GPU and
``perf_counter`` on a CPU, after warm-up steps, and reports the median.
"""
from __future__ import annotations

import statistics
import time
from typing import Callable, Sequence

import pandas as pd
import torch

from . import models
from .official_style import OfficialStyleLoMixLoss
from .supervision import PRESETS, LoMixLoss


def median_ms(fn: Callable[[], None], device: torch.device, steps: int = 10, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize(device)
            times.append(start.elapsed_time(end))
        else:
            start = time.perf_counter()
            fn()
            times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def peak_memory_mib(fn: Callable[[], None], device: torch.device) -> float | None:
    """Peak CUDA memory allocated while ``fn`` runs; None on a CPU (no allocator statistics)."""
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) / 2 ** 20


def step_times(model: str = "unet_small", presets: Sequence[str] = tuple(PRESETS), device: str | torch.device = "cpu",
               batch: int = 2, size: int = 96, classes: int = 9, in_channels: int = 1, amp: bool = False,
               steps: int = 10, warmup: int = 3, official: bool = False) -> pd.DataFrame:
    """One row per preset: training-step and loss-only times, memory, and ratios to last_layer.

    The training step is forward, loss, backward and an AdamW step on one fixed random batch.
    The loss-only time is the loss's forward + backward on fixed logits from that model. With
    ``official``, the LoMix row also times the official-style loop over maps and classes.
    """
    device = torch.device(device)
    presets = ["last_layer", *[p for p in presets if p != "last_layer"]]
    images = torch.randn(batch, in_channels, size, size, device=device)
    target = torch.randint(0, classes, (batch, size, size), device=device)
    rows = []
    for preset in presets:
        torch.manual_seed(0)
        net = models.build(model, in_channels, classes).to(device)
        loss_fn = LoMixLoss(net.num_maps, classes, supervision=preset).to(device)
        optimizer = torch.optim.AdamW(list(net.parameters()) + list(loss_fn.parameters()), lr=1e-4)

        def train_step():
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                loss = loss_fn(net(images), target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = [m.detach().requires_grad_() for m in net(images)]

        def loss_step(fn=loss_fn):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                loss = fn(logits, target)
            loss.backward()

        row = {"preset": preset, "maps": loss_fn.num_supervised,
               "step_ms": median_ms(train_step, device, steps, warmup),
               "loss_ms": median_ms(loss_step, device, steps, warmup),
               "step_peak_mib": peak_memory_mib(train_step, device),
               "loss_peak_mib": peak_memory_mib(loss_step, device),
               "official_loss_ms": None}
        if official and preset == "lomix":
            row["official_loss_ms"] = median_ms(lambda: loss_step(OfficialStyleLoMixLoss(loss_fn)), device, steps, warmup)
        rows.append(row)
    table = pd.DataFrame(rows)
    base = table.iloc[0]
    table["step_vs_last_layer"] = table["step_ms"] / base["step_ms"]
    if device.type == "cuda":
        table["loss_extra_mib"] = table["loss_peak_mib"] - base["loss_peak_mib"]
    return table


def inference_overhead(model: str = "unet_small", presets: Sequence[str] = tuple(PRESETS),
                       device: str | torch.device = "cpu", batch: int = 1, size: int = 96, classes: int = 9,
                       in_channels: int = 1, steps: int = 10, warmup: int = 3) -> pd.DataFrame:
    """Parameters and eval-mode forward latency of a model after one training step per preset.

    The mutants, their fusion modules and the map weights live in the loss module, so the model
    that is deployed is the same network whatever the preset; this measures that it is.
    """
    device = torch.device(device)
    images = torch.randn(batch, in_channels, size, size, device=device)
    target = torch.randint(0, classes, (batch, size, size), device=device)
    rows = []
    for preset in presets:
        torch.manual_seed(0)
        net = models.build(model, in_channels, classes).to(device)
        loss_fn = LoMixLoss(net.num_maps, classes, supervision=preset).to(device)
        optimizer = torch.optim.AdamW(list(net.parameters()) + list(loss_fn.parameters()), lr=1e-4)
        loss_fn(net(images), target).backward()
        optimizer.step()
        net.eval()

        @torch.no_grad()
        def infer():
            net(images)[-1].argmax(dim=1)

        rows.append({"preset": preset, "model_parameters": sum(p.numel() for p in net.parameters()),
                     "training_only_parameters": sum(p.numel() for p in loss_fn.parameters()),
                     "inference_ms": median_ms(infer, device, steps, warmup)})
    table = pd.DataFrame(rows)
    table["inference_vs_last_layer"] = table["inference_ms"] / table["inference_ms"].iloc[0]
    return table

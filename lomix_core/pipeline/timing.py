"""Measurements of cost: training-step time and memory per preset, and inference overhead.

Used by ``benchmarks/*.py`` (command line, tables) and notebook 07 (plots). All presets are
built first and then timed in round-robin, after warm-up rounds, so that drift of the machine
hits them alike; compare them as ratios within one run. Timing uses CUDA events on a GPU and
``perf_counter`` on a CPU and reports the median.
"""
from __future__ import annotations

import contextlib
import itertools
import os
import statistics
import sys
import time
from typing import Callable, Sequence

import pandas as pd
import torch

from .. import models
from ..map_loss import ce_dice_losses
from ..official_style import OfficialStyleLoMixLoss
from ..supervision import PRESETS, LoMixLoss
from .training import Stepper, TrainConfig


def _time_once_ms(fn: Callable[[], None], device: torch.device, clock: str = "wall") -> float:
    """``clock="cpu"`` (CPU only) counts the calling thread's CPU time: on a shared machine it
    leaves out the time spent waiting for a core, but also any work done in other threads, so it
    is meant for one-thread runs."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize(device)
        return start.elapsed_time(end)
    now = time.thread_time if clock == "cpu" else time.perf_counter
    start = now()
    fn()
    return (now() - start) * 1000


def interleaved_median_ms(fns: dict[str, Callable[[], None]], device: torch.device, steps: int = 10,
                          warmup: int = 3, clock: str = "wall") -> dict[str, float]:
    """Median time of each callable, measured in round-robin so that drift of the machine
    (clock, caches, a neighbour's load) hits every candidate alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(steps):
        for name, fn in fns.items():
            times[name].append(_time_once_ms(fn, device, clock))
    return {name: statistics.median(t) for name, t in times.items()}


@contextlib.contextmanager
def _native_stderr_silenced():
    """File descriptor 2 pointed at /dev/null for a while. The CPU profiler's native library writes
    its start and stop lines, a failed GPU probe ("ERROR ... gpuGetDeviceCount") and an allocator
    warning straight to it, past Python's ``sys.stderr``: noise under every table that measures
    memory, saying nothing about the measurement."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def peak_memory_mib(fn: Callable[[], None], device: torch.device) -> float:
    """Memory ``fn`` allocates at its peak on top of what was already allocated (weights,
    optimiser state). CUDA: the allocator's peak. CPU: PyTorch's allocations and frees as the
    profiler records them, summed in order (the process's resident set cannot tell: the C
    allocator keeps freed memory resident and reuses it)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        resident = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - resident) / 2 ** 20
    with _native_stderr_silenced(), torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
                                                           profile_memory=True) as profile:
        fn()
    events = sorted(profile.events(), key=lambda event: event.time_range.start)
    # An op's own allocations net of its own frees; "[memory]" events are frees outside any op.
    changes = [e.cpu_memory_usage if e.name == "[memory]" else e.self_cpu_memory_usage for e in events]
    return max(itertools.accumulate(changes, initial=0)) / 2 ** 20


def step_times(model: str = "unet_small", presets: Sequence[str] = tuple(PRESETS), device: str | torch.device = "cpu",
               batch: int = 2, size: int = 96, classes: int = 9, in_channels: int = 1, amp: bool = False,
               steps: int = 10, warmup: int = 3, official: bool = False, compile_loss: bool = False,
               model_kwargs: dict | None = None, clock: str = "wall", floor: bool = False) -> pd.DataFrame:
    """One row per preset: training-step and loss times, peak memory, and ratios to last_layer.

    The training step is :class:`lomix_core.pipeline.training.Stepper`, the step training takes (forward,
    loss, backward, AdamW; with ``amp`` on CUDA its autocast dtype and gradient scaler), on one
    fixed random batch. ``loss_ms`` is the loss's forward + backward on fixed logits from that
    model, under the same autocast. With ``official``, the LoMix row also times the
    official-style loop over maps and classes. With ``compile_loss``, every loss runs through
    ``torch.compile`` (value checks off: their host sync would split the graph); where
    compilation fails the error propagates, so a table never silently mixes compiled and eager rows.
    ``clock="cpu"``: see :func:`_time_once_ms`.
    With ``floor``, two more columns time, in the LoMix row, what its loss cannot go below, forward + backward over
    as many logits as its maps hold (``M·B·C·H·W``), given as one stack: ``floor_ce_ms``, PyTorch's
    softmax + cross-entropy (one fused op); ``floor_stats_ms``, the CE + Dice statistics alone
    (:func:`lomix_core.map_loss.ce_dice_losses`, the C kernel on a CPU), no mutant built.
    """
    device = torch.device(device)
    if clock not in ("wall", "cpu"):
        raise ValueError(f"unknown clock {clock!r}; expected 'wall' or 'cpu' (the thread's CPU time)")
    presets = with_last_layer_first(presets)
    images = torch.randn(batch, in_channels, size, size, device=device)
    target = torch.randint(0, classes, (batch, size, size), device=device)
    train_steps, loss_steps, maps = {}, {}, {}
    for preset in presets:
        net, loss_fn = _build(model, preset, in_channels, classes, device, check_values=not compile_loss,
                              model_kwargs=model_kwargs)
        loss = torch.compile(loss_fn) if compile_loss else loss_fn
        stepper = Stepper(net, loss, TrainConfig(amp=amp, lr=1e-4))
        autocast = (lambda stepper=stepper: torch.autocast(device.type, dtype=stepper.amp_dtype, enabled=stepper.amp))
        with torch.no_grad(), autocast():
            logits = [m.detach().requires_grad_() for m in net(images)]
        train_steps[preset] = (lambda stepper=stepper: stepper(images, target))
        loss_steps[preset] = _loss_step(loss, logits, target, autocast)
        if official and preset == "lomix":
            loss_steps["official"] = _loss_step(OfficialStyleLoMixLoss(loss_fn), logits, target, autocast)
        if floor and preset == "lomix":
            loss_steps.update(_floor_steps(loss_fn.num_supervised, logits[-1], target))
        maps[preset] = loss_fn.num_supervised
    step_ms = interleaved_median_ms(train_steps, device, steps, warmup, clock)
    loss_ms = interleaved_median_ms(loss_steps, device, steps, warmup, clock)
    table = pd.DataFrame({
        "preset": presets, "maps": [maps[p] for p in presets],
        "step_ms": [step_ms[p] for p in presets], "loss_ms": [loss_ms[p] for p in presets],
        "official_loss_ms": [loss_ms["official"] if p == "lomix" and official else None for p in presets],
        **{f"{name}_ms": [loss_ms[name] if p == "lomix" else None for p in presets]
           for name in ("floor_ce", "floor_stats") if floor},
        "step_peak_mib": [peak_memory_mib(train_steps[p], device) for p in presets],
        "loss_peak_mib": [peak_memory_mib(loss_steps[p], device) for p in presets],
    })
    table["step_vs_last_layer"] = table["step_ms"] / table["step_ms"].iloc[0]
    table["loss_vs_last_layer"] = table["loss_ms"] / table["loss_ms"].iloc[0]
    table["loss_extra_mib"] = table["loss_peak_mib"] - table["loss_peak_mib"].iloc[0]
    return table


def with_last_layer_first(presets: Sequence[str]) -> list[str]:
    """The presets with last_layer added if missing and put first: every ratio is against it."""
    return ["last_layer", *[p for p in presets if p != "last_layer"]]


def _build(model: str, preset: str, in_channels: int, classes: int, device: torch.device, check_values: bool = True,
           model_kwargs: dict | None = None):
    """A fresh network (same initial weights for every preset) and its loss."""
    torch.manual_seed(0)
    net = models.build(model, in_channels, classes, **(model_kwargs or {})).to(device)
    loss_fn = LoMixLoss(net.num_maps, classes, supervision=preset, check_values=check_values).to(device)
    return net, loss_fn


def _loss_step(loss_fn, logits, target, autocast: Callable) -> Callable[[], None]:
    def step():
        with autocast():
            loss = loss_fn(logits, target)
        loss.backward()
    return step


def _floor_steps(num_maps: int, like: torch.Tensor, target: torch.Tensor) -> dict[str, Callable[[], None]]:
    """The loss-only floors of :func:`step_times`: a ``[num_maps, B, C, H, W]`` stack of logits."""
    stack = torch.randn(num_maps, *like.shape, device=like.device, requires_grad=True)
    flat_target = target.repeat(num_maps, 1, 1)

    def softmax_ce():
        torch.nn.functional.cross_entropy(stack.flatten(0, 1), flat_target).backward()

    def statistics():
        ce_dice_losses(stack, target, 0.3, 0.7).sum().backward()
    return {"floor_ce": softmax_ce, "floor_stats": statistics}


def inference_overhead(model: str = "unet_small", presets: Sequence[str] = tuple(PRESETS),
                       device: str | torch.device = "cpu", batch: int = 1, size: int = 96, classes: int = 9,
                       in_channels: int = 1, steps: int = 10, warmup: int = 3) -> pd.DataFrame:
    """Parameters and eval-mode forward latency of a model after one training step per preset.

    The mutants, their fusion modules and the map weights live in the loss module, so the model
    that is deployed is the same network whatever the preset; this measures that it is.
    """
    device = torch.device(device)
    presets = with_last_layer_first(presets)
    images = torch.randn(batch, in_channels, size, size, device=device)
    target = torch.randint(0, classes, (batch, size, size), device=device)
    inferences, rows = {}, []
    for preset in presets:
        net, loss_fn = _build(model, preset, in_channels, classes, device)
        Stepper(net, loss_fn, TrainConfig(lr=1e-4))(images, target)
        inferences[preset] = _inference(net.eval(), images)
        rows.append({"preset": preset, "model_parameters": sum(p.numel() for p in net.parameters()),
                     "training_only_parameters": sum(p.numel() for p in loss_fn.parameters())})
    latency = interleaved_median_ms(inferences, device, steps, warmup)
    table = pd.DataFrame(rows)
    table["inference_ms"] = [latency[p] for p in presets]
    table["inference_vs_last_layer"] = table["inference_ms"] / table["inference_ms"].iloc[0]
    return table


def _inference(net, images) -> Callable[[], None]:
    @torch.no_grad()
    def infer():
        net(images)[-1].argmax(dim=1)
    return infer

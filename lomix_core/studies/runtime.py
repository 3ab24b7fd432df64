"""How long runs will take here, measured before they train.

A chapter plans its runs (:func:`~lomix_core.studies.comparisons.comparison_configs`,
:func:`~lomix_core.studies.comparisons.low_data_configs`), prints ``estimate(configs)`` and then trains
them. The estimate leaves out the runs :func:`~lomix_core.studies.runs.run_many` would read back,
and times a few real training steps per setting (network, supervision, batch, image shape, AMP,
device) on the device the runs will use, so it holds for whatever machine the notebook runs on.

What it counts per run: its optimiser steps (as :func:`~lomix_core.pipeline.training.fit` makes them), and
its evaluated slices (validation every epoch, the test split too with ``track_test``, and the
final test). What it leaves out: loading and augmenting batches (about 1 ms a batch on the cpu
profile; under ``protocol="official"`` each training slice is augmented as stored and zoomed to the
model grid, 56-134 ms a 512² slice on 2 contended CPU cores, docs/official_vs_kit.md), writing
checkpoints, the final test's HD95, starting worker processes and reading runs back, a few seconds
per run on a CPU. Measured on 2 Intel Xeon cores, cpu profile, brain_aal's
last_layer and lomix runs side by side: estimated 104 s, trained in 98 s. Other programs busy
on the same cores slow the runs down after the estimate was taken.
"""
from __future__ import annotations

import contextlib
import functools
import dataclasses
import heapq
import json
import os
import statistics
from dataclasses import dataclass
from typing import Sequence

import pandas as pd
import torch

from .. import data
from ..pipeline.timing import _time_once_ms
from ..pipeline.config import TrainConfig, epoch_steps, fields_where, slices_used
from ..pipeline.evaluation import evaluate
from .executors import default_jobs, is_finished
from .runs import keyed
from ..foundations.machine import device_name, resolve_device
from ..supervision import LoMixLoss
from ..pipeline.checkpoints import build_model_and_loss
from ..pipeline.training import Stepper

@dataclass
class RunTime:
    """What :func:`estimate` returns; ``str()`` gives one line to print."""

    seconds: float  # wall time of the runs left to train, as run_many schedules them
    # per setting: setting, runs, steps, s_per_step, eval_slices, s_per_eval_slice, seconds (of its
    # runs one after the other)
    table: pd.DataFrame
    runs: pd.DataFrame  # per run left to train: name, setting, steps, eval_slices, seconds
    to_train: int
    read_back: int
    device: str
    steps: int  # steps measured per setting
    jobs: int = 1  # runs training at once
    # The most a learned loss weight's parameter can move in the runs left to train: Adam moves a
    # parameter by about its lr per step at most, so θ's lr x steps (None: no run learns its weights).
    weight_bound: float | None = None

    @property
    def text(self) -> str:
        total = self.to_train + self.read_back
        if not self.to_train:
            return f"all {total} runs are finished: nothing to train ({total} read back)"
        rows = list(self.table.itertuples())
        settings = ", ".join(f"{r.setting} {r.s_per_step:.2g} s/step" for r in rows[:4])
        settings += f", ... ({len(rows)} settings)" if len(rows) > 4 else ""
        at_once = f", {self.jobs} runs at a time" if self.jobs > 1 else ""
        bound = "" if self.weight_bound is None else (
            f"\nlearned loss weights: each parameter (softplus θ from 0, w = 0.693) can move about θ's lr x steps = "
            f"{self.weight_bound:.3g} at most in these runs")
        return (f"{self.to_train} of {total} runs to train ({self.read_back} read back): about "
                f"{duration(self.seconds)} on {self.device}{at_once}, from {self.steps} measured steps per "
                f"setting ({settings}){bound}")

    def __str__(self) -> str:
        return self.text


def estimate(configs: Sequence[TrainConfig], steps: int = 3, warmup: int = 1, jobs: int | None = None) -> RunTime:
    """Estimated wall time of ``run_many(configs, jobs)``, from ``steps`` timed training steps
    (after ``warmup`` untimed ones) per setting and one timed validation volume per network and
    dataset.

    Runs that would be read back cost nothing and nothing is measured when none is left. On a
    CPU with several jobs the steps are timed with the threads each job gets, and the runs are
    spread over the jobs in order, as :func:`~lomix_core.studies.runs.run_many` does.
    """
    if steps < 1 or warmup < 0:
        raise ValueError(f"steps must be >= 1 and warmup >= 0, got steps={steps}, warmup={warmup}")
    configs = [keyed(c) for c in configs]
    todo = list({c.name: c for c in configs if not is_finished(c)}.values())  # run_many's order
    jobs = default_jobs(len(todo)) if jobs is None else jobs
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    parallel = jobs > 1 and len(todo) > 1  # as run_many decides
    devices = dict.fromkeys(resolve_device(c.device) for c in (todo or configs))
    devices_in_words = " and ".join(device_name(d) for d in devices) or "no device"
    if not todo:
        return RunTime(0.0, pd.DataFrame(), pd.DataFrame(), 0, len(configs), devices_in_words, steps)

    splits = _SplitCache()
    settings: dict[str, list[TrainConfig]] = {}
    for config in todo:
        settings.setdefault(_setting_key(config, splits.get(config)[0]), []).append(config)
    names = _describe([json.loads(key) for key in settings], [[c.dataset for c in runs] for runs in settings.values()])
    loss_only = set(fields_where("step_cost")) - set(fields_where("eval_cost"))
    measured, eval_times = {}, {}  # setting -> (s/step, s/evaluated slice); network and data -> s/slice
    # run_many gives each of its parallel runs this many threads; one run in-process keeps them all.
    threads = max(1, (os.cpu_count() or 1) // jobs) if parallel else None
    with _num_threads(threads), torch.random.fork_rng(devices=range(torch.cuda.device_count())):
        for (key, runs), name in zip(settings.items(), names):
            train_set, val_set, _ = splits.get(runs[0])
            # Evaluation runs the network alone: settings that differ only in their loss share its time.
            network = json.dumps([{k: v for k, v in json.loads(key).items() if k not in loss_only},
                                  runs[0].dataset, runs[0].data_kwargs], sort_keys=True, default=str)
            s_step, eval_times[network] = _measure(runs[0], train_set, val_set, steps, warmup, eval_times.get(network))
            measured[name] = s_step, eval_times[network]
            if torch.cuda.is_available():
                torch.cuda.empty_cache()  # the measured model is gone: hand its memory back
    setting_of = {c.name: name for runs, name in zip(settings.values(), names) for c in runs}
    per_run = pd.DataFrame([_run_row(c, setting_of[c.name], *splits.get(c), *measured[setting_of[c.name]])
                            for c in todo])
    table = per_run.groupby("setting", sort=False).agg(
        runs=("name", "size"), steps=("steps", "sum"), eval_slices=("eval_slices", "sum"),
        seconds=("seconds", "sum")).reset_index()
    table.insert(3, "s_per_step", table["setting"].map(lambda n: measured[n][0]))
    table.insert(5, "s_per_eval_slice", table["setting"].map(lambda n: measured[n][1]))
    learning = [c.theta_lr * steps for c, steps in zip(todo, per_run["steps"]) if _learns_weights(c)]
    return RunTime(_schedule(per_run["seconds"], jobs if parallel else 1), table, per_run, len(todo),
                   len(configs) - len(todo), devices_in_words, steps, min(jobs, len(todo)) if parallel else 1,
                   max(learning, default=None))


@functools.lru_cache(maxsize=None)
def _learns(supervision: str, operators: tuple[str, ...] | None, weighting: str | tuple[float, ...] | None) -> bool:
    loss = LoMixLoss(num_maps=4, num_classes=2, supervision=supervision,
                     operators=None if operators is None else list(operators),
                     weighting=list(weighting) if isinstance(weighting, tuple) else weighting)
    return any(p.requires_grad for p in loss.weighting.parameters())


def _learns_weights(config: TrainConfig) -> bool:
    """Whether ``config``'s loss learns its map weights (the loss module says, not a list kept here)."""
    weighting = tuple(config.weighting) if isinstance(config.weighting, list) else config.weighting
    return _learns(config.supervision, None if config.operators is None else tuple(config.operators), weighting)


def _run_row(config: TrainConfig, setting: str, train_set: data.SliceDataset, val_set: data.SliceDataset,
             test_set: data.SliceDataset, s_per_step: float, s_per_slice: float) -> dict:
    """One run's steps, evaluated slices (validation each epoch, test too with ``track_test``, and
    the final test) and seconds, on the slices training uses (config.slices_used)."""
    trained, validated = slices_used(config, len(train_set), len(val_set))
    run_steps = config.epochs * epoch_steps(config, trained)
    slices = config.epochs * (validated + (len(test_set) if config.track_test else 0)) + len(test_set)
    return {"name": config.name, "setting": setting, "steps": run_steps, "eval_slices": slices,
            "seconds": run_steps * s_per_step + slices * s_per_slice}


def duration(seconds: float) -> str:
    """``seconds`` as a person reads it: "40 s", "12 min", "3.5 h"."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 90 * 60 else f"{seconds / 3600:.1f} h"


class _SplitCache:
    """Each (dataset, data_kwargs)'s train, val and test splits, loaded once."""

    def __init__(self):
        self._splits: dict[str, tuple[data.SliceDataset, ...]] = {}

    def get(self, config: TrainConfig) -> tuple[data.SliceDataset, ...]:
        key = json.dumps([config.dataset, config.data_kwargs], sort_keys=True, default=str)
        if key not in self._splits:
            self._splits[key] = tuple(data.load(config.dataset, split=split, **config.data_kwargs)
                                      for split in ("train", "val", "test"))
        return self._splits[key]


def _setting_key(config: TrainConfig, train_set: data.SliceDataset) -> str:
    """What one training step's cost depends on, as text: runs with the same key are timed once."""
    height, width = train_set.images.shape[-2:]
    fields = {k: v for k, v in dataclasses.asdict(config).items() if k in fields_where("step_cost")}
    return json.dumps({**fields, "size": f"{height} px" if height == width else f"{height}x{width} px",
                       "in_channels": train_set.in_channels, "num_classes": train_set.num_classes,
                       "device": str(resolve_device(config.device))}, sort_keys=True, default=str)


def _describe(keys: list[dict], datasets: list[list[str]]) -> list[str]:
    """Each setting as its network and supervision, plus whatever else tells it from the others
    (its runs' datasets rather than their channels and classes)."""
    keys = [{**d, "data": "+".join(dict.fromkeys(names))} for d, names in zip(keys, datasets)]
    differ = [k for k in keys[0] if k not in ("model", "supervision") and len({json.dumps(d[k], sort_keys=True)
                                                                               for d in keys}) > 1]
    if "data" in differ:
        differ = [k for k in differ if k not in ("in_channels", "num_classes")]
    return [" ".join([d["model"], d["supervision"], *(str(d[k]) if k in ("data", "size") else f"{k}={d[k]}"
                                                      for k in differ)]) for d in keys]


def _measure(config: TrainConfig, train_set: data.SliceDataset, val_set: data.SliceDataset, steps: int,
             warmup: int, s_per_slice: float | None = None) -> tuple[float, float]:
    """Median seconds of one training step of ``config`` on a random batch of the data's shape,
    and seconds per slice of evaluating the first validation volume as fit() does each epoch
    (unless ``s_per_slice`` is known already)."""
    device = resolve_device(config.device)
    model, loss_fn = build_model_and_loss(config, train_set.in_channels, train_set.num_classes, device)
    step_once = Stepper(model, loss_fn, config)  # what fit() runs each step
    height, width = train_set.images.shape[-2:]
    images = torch.rand(config.batch_size, train_set.in_channels, height, width, device=device)
    labels = torch.randint(train_set.num_classes, (config.batch_size, height, width), device=device)

    def train_step():
        step_once(images, labels)

    for _ in range(warmup):
        train_step()
    step_s = statistics.median(_time_once_ms(train_step, device) for _ in range(steps)) / 1000
    if s_per_slice is None:
        volume = _first_volume(val_set)
        evaluation = lambda: evaluate(model, volume, amp=step_once.amp, with_hd95=False)  # noqa: E731
        for _ in range(min(warmup, 1)):  # the first call pays one-off costs (eval-mode kernels, resampling)
            evaluation()
        s_per_slice = _time_once_ms(evaluation, device) / 1000 / len(volume)
    return step_s, s_per_slice


def _first_volume(dataset: data.SliceDataset) -> data.SliceDataset:
    """The first subject of ``dataset`` alone: timing its evaluation costs one volume, not a split."""
    subject, indices = next(iter(dataset.subject_slices().items()))
    return data.SliceDataset(dataset.images[indices], dataset.labels[indices], [subject] * len(indices),
                             [dataset.slice_index[i] for i in indices], dataset.class_names, name=dataset.name,
                             split=dataset.split, preprocessing=dataset.preprocessing,
                             native=None if dataset.native is None else {subject: dataset.native[subject]})


def _schedule(seconds: Sequence[float], jobs: int) -> float:
    """Wall time of runs taken in order by ``jobs`` workers, each starting the next run when free."""
    free_at = [0.0] * jobs
    for s in seconds:
        heapq.heappush(free_at, heapq.heappop(free_at) + s)
    return max(free_at)


@contextlib.contextmanager
def _num_threads(threads: int | None):
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


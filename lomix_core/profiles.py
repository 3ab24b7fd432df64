"""Run profiles: one name picks every budget, so a notebook runs in seconds or at paper scale.

* ``smoke`` — seconds to a few minutes on a CPU; what CI and nbval run. Numbers are meaningless.
* ``cpu``   — meaningful results on a 2-core laptop: the whole series in under 30 minutes.
* ``colab`` — the paper's network (PVT-v2-b2 + EMCAD, ImageNet-pretrained, 224²) on the real brain
  MRI, with budgets cut so that the whole series fits one free Colab session on a T4 (target 2 h).
* ``full``  — the paper's setting: that network on Synapse's 8 organs, 300 epochs (about 110k steps
  of batch 6), lr 1e-4 constant, five seeds. Hours to days; meant for a cluster.
* ``auto``  — ``colab`` when CUDA is available, else ``cpu``; never ``full``, which must be asked for.
"""
from __future__ import annotations

import copy
import dataclasses
import os
from pathlib import Path

import torch

from . import data, models
from .arguments import reject_unknown_options
from .benchmark import step_times
from .training import TrainConfig

PROFILES = ("smoke", "cpu", "colab", "full", "auto")
OUTPUT_ENV = "LOMIX_OUTPUT_DIR"


def resolve(profile: str) -> str:
    if not isinstance(profile, str) or profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; expected one of {PROFILES}")
    if profile == "auto":
        return "colab" if torch.cuda.is_available() else "cpu"
    return profile


# The longest a notebook cell may run under `reproduce` before it is reported as hung: several
# times the slowest cell measured (notebook 03's comparison: 9.8 min on 2 Intel Xeon cores); none on a GPU,
# where training legitimately runs for an hour (colab) or days (full).
_CELL_TIMEOUT = {"smoke": 600, "cpu": 3600, "colab": None, "full": None}


def cell_timeout(profile: str) -> int | None:
    """Seconds a notebook cell may run under ``profile`` (None: no limit)."""
    return _CELL_TIMEOUT[resolve(profile)]


# Image size per profile, for every dataset; the phantom also sets how many subjects it draws.
_SIZE = {"smoke": 32, "cpu": 64, "colab": 224, "full": 224}
_PHANTOM = {
    "smoke": dict(num_subjects=6, num_slices=8, num_val=1, num_test=1),
    "cpu": dict(num_subjects=20, num_slices=16, num_val=4, num_test=4),
    "colab": dict(num_subjects=20, num_slices=16, num_val=4, num_test=4),
    "full": dict(num_subjects=48, num_slices=24, num_val=8, num_test=8),
}


# On a CPU the series must fit in 30 min on two cores: brain_aal's lobes survive 48 px, the
# phantom's organs 32 px, and a LoMix step at those sizes costs half (48 px) or a third (32 px) of one
# at 64 px (measured on 2 CPU cores).
_DATASET_SIZE = {("brain_aal", "cpu"): 48, ("synthetic", "cpu"): 32}


def data_kwargs(profile: str, dataset: str) -> dict:
    """Keyword arguments for ``lx.data.load(dataset, ...)`` under ``profile``."""
    profile = resolve(profile)
    _check_dataset(dataset)
    size = _DATASET_SIZE.get((dataset, profile), _SIZE[profile])
    return {"size": size, **(_PHANTOM[profile] if dataset == "synthetic" else {})}


# The datasets of the supervision comparison (chapter 03): real data on the GPU profiles, the
# paper's own (Synapse) on full.
_COMPARISON_DATASETS = {"smoke": ["brain_aal", "synthetic"], "cpu": ["brain_aal", "synthetic"],
                        "colab": ["brain_aal"], "full": ["synapse"]}


def comparison_datasets(profile: str) -> list[str]:
    """The datasets chapter 03 compares the presets on under ``profile`` unless told otherwise."""
    return list(_COMPARISON_DATASETS[resolve(profile)])


# Budgets of the supervision comparison (notebook 03): a TrainConfig template and the seeds.
# cpu and smoke use lr 1e-3 instead of the paper's 1e-4 so that a few epochs get somewhere.
# The paper's network always starts from ImageNet weights (the official code loads them too).
_PAPER_NETWORK = dict(model="pvt_v2_b2_emcad", model_kwargs={"pretrained": True}, batch_size=6, lr=1e-4, amp=True)
_COMPARISON = {
    "smoke": (dict(epochs=2, max_steps_per_epoch=3, batch_size=8, lr=1e-3, model_kwargs={"width": 8}), [0]),
    "cpu": (dict(epochs=8, batch_size=8, lr=1e-3), [0, 1, 2]),
    # 20 epochs of brain_aal's 13 batches are 260 steps a run; chapters 03-05 train 94 runs (24.7k
    # steps): about 1.5 h of a T4 at the 0.15 s a step estimated for it (benchmarks/profile_hours.py),
    # which leaves room in the 2-hour target for installing, loading and evaluating.
    "colab": (dict(_PAPER_NETWORK, epochs=20), [0, 1, 2]),
    # The paper: 300 epochs (Synapse: 2211 slices, 368 batches of 6 an epoch, about 110k steps),
    # constant lr 1e-4; five seeds, because three cannot reach a Wilcoxon p below 0.25.
    "full": (dict(_PAPER_NETWORK, epochs=300), [0, 1, 2, 3, 4]),
}
# brain_aal has 83 training slices and 8 classes with millimetre borders: on a CPU it needs
# about 300 steps (30 epochs of 10 batches) at a higher rate before the four presets separate from noise.
# The phantom's 192 training slices: 6 epochs are 144 steps. Its learning rate was chosen on
# validation Dice among 1e-3, 2e-3 and 3e-3 (last_layer, deep_supervision and lomix, 3 seeds each:
# 3e-3 was best for all three); brain_aal's 2e-3 beat 3e-3 the same way.
# On full, brain_aal gets the pilot's budget (DESIGN §8: about 1200 steps of batch 16): 100 epochs
# of 13 batches of 6 are 1300 steps; the phantom 30 epochs.
# On Synapse, full makes the paper's steps: its 300 epochs of 2211 slices in (undropped) batches of 6
# are 300 x 369 = 110,700 steps. The kit holds 2 of the 18 cases out for validation, so an epoch
# is fixed at 369 steps rather than one pass over the 16 cases left.
# abdomen_ct trains on one scan's 42 slices (5 batches of 8): 60 epochs are 300 steps, brain_aal's
# budget, at brain_aal's rate (not tuned on abdomen_ct).
_DATASET_BUDGET = {("brain_aal", "cpu"): dict(epochs=30, lr=2e-3), ("synthetic", "cpu"): dict(epochs=6, lr=3e-3),
                   ("abdomen_ct", "cpu"): dict(epochs=60, lr=2e-3),
                   ("brain_aal", "full"): dict(epochs=100), ("synthetic", "full"): dict(epochs=30),
                   ("synapse", "full"): dict(steps_per_epoch=369)}


def comparison(profile: str, dataset: str = "brain_aal", model: str | None = None,
               **overrides) -> tuple[TrainConfig, list[int]]:
    """The base config and seeds of the supervision comparison on ``dataset`` under ``profile``.

    ``model=None`` keeps the profile's network (``unet_small``, or the pretrained
    ``pvt_v2_b2_emcad`` on colab and full); another model drops the profile's model options.
    """
    profile = resolve(profile)
    _check_dataset(dataset)
    _check_fields(overrides)
    settings, seeds = copy.deepcopy(_COMPARISON[profile])  # configs must not share the tables' dicts
    settings |= _DATASET_BUDGET.get((dataset, profile), {})
    config = TrainConfig(**settings, dataset=dataset, data_kwargs=data_kwargs(profile, dataset), track_test=True,
                         progress=profile != "smoke")
    return dataclasses.replace(config, **_with_model(config, model), **overrides), list(seeds)


def _with_model(config: TrainConfig, model: str | None) -> dict:
    """Overrides that swap in ``model``: the profile's model options (e.g. ``width``) belong to its own model."""
    if model is None or model == config.model:
        return {}
    if model not in models.available():
        raise ValueError(f"unknown model {model!r}; expected one of {models.available()} (or None for the "
                         f"profile's network)")
    return {"model": model, "model_kwargs": {}}


# The datasets of the two ablation chapters (04, 05). On a CPU they use the phantom: its 12
# training subjects give more low-data sizes than brain_aal's 7 slabs, and its runs cost about a
# quarter as much, which is what lets both chapters run 3 seeds within the series' 30 minutes.
# On a GPU, real data: brain_aal on colab, and on full the paper's Synapse, whose 16 training
# cases give the paper's one- and two-scan regimes.
_ABLATION_DATASET = {"smoke": "synthetic", "cpu": "synthetic", "colab": "brain_aal", "full": "synapse"}


def ablation_dataset(profile: str) -> str:
    """The dataset chapters 04 and 05 use under ``profile`` unless told otherwise."""
    return _ABLATION_DATASET[resolve(profile)]


# The one short run of the quickstart (chapter 00): LoMix on brain_aal.
_QUICKSTART = {
    "smoke": dict(epochs=1, max_steps_per_epoch=3, batch_size=8, lr=1e-3, model_kwargs={"width": 8}),
    "cpu": dict(epochs=10, batch_size=8, lr=2e-3),
    "colab": dict(_PAPER_NETWORK, epochs=20),
    "full": dict(_PAPER_NETWORK, epochs=20),
}


def quickstart(profile: str, dataset: str = "brain_aal", model: str | None = None, **overrides) -> TrainConfig:
    """A LoMix run short enough for a first look (under a minute on a laptop's CPU)."""
    profile = resolve(profile)
    _check_dataset(dataset)
    _check_fields(overrides)
    settings = {**copy.deepcopy(_QUICKSTART[profile]), "dataset": dataset, "supervision": "lomix",
                "data_kwargs": data_kwargs(profile, dataset), "progress": profile != "smoke"}
    config = TrainConfig(**settings)
    return dataclasses.replace(config, **_with_model(config, model), **overrides)


# A briefly trained model whose logits the teaching notebook looks at (notebook 02): LoMix on
# brain_aal, so wf's attention can be drawn on a real brain slice. cpu: 6 epochs of 10 steps at
# 48 px, 60 % of the quickstart's budget.
_DEMO = {
    "smoke": dict(epochs=1, max_steps_per_epoch=3, batch_size=8, lr=1e-3, model_kwargs={"width": 8}),
    "cpu": dict(epochs=6, batch_size=8, lr=2e-3),
    "colab": dict(_PAPER_NETWORK, epochs=10),
    "full": dict(_PAPER_NETWORK, epochs=10),
}


def demo(profile: str, **overrides) -> TrainConfig:
    """A short LoMix training run on brain_aal, for looking at real multi-scale logits."""
    profile = resolve(profile)
    _check_fields(overrides)
    settings = {**copy.deepcopy(_DEMO[profile]), "dataset": "brain_aal", "data_kwargs": data_kwargs(profile, "brain_aal"),
                "supervision": "lomix", "progress": profile != "smoke"}
    return TrainConfig(**{**settings, **overrides})


# Settings of the cost benchmarks (notebook 07 and benchmarks/*.py).
_BENCHMARK = {
    "smoke": dict(model="unet_small", batch=2, size=32, steps=2, warmup=1),
    "cpu": dict(model="unet_small", batch=2, size=96, steps=10, warmup=3),
    "colab": dict(model="pvt_v2_b2_emcad", batch=6, size=224, steps=20, warmup=5, amp=True),
    "full": dict(model="pvt_v2_b2_emcad", batch=6, size=224, steps=50, warmup=10, amp=True),
}


def benchmark(profile: str, **overrides) -> dict:
    """Keyword arguments for :func:`lomix_core.benchmark.step_times` under ``profile``."""
    settings = _BENCHMARK[resolve(profile)]
    reject_unknown_options(step_times, overrides, "the benchmark", reserved=())
    return {**settings, **overrides}


def _check_dataset(dataset: str) -> None:
    if not isinstance(dataset, str) or dataset not in data.available():
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {data.available()}")


def _check_fields(overrides: dict) -> None:
    """One line on a keyword that is not a TrainConfig field, listing the fields."""
    fields = sorted(f.name for f in dataclasses.fields(TrainConfig))
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise ValueError(f"unknown TrainConfig fields {unknown}; expected some of {fields}")


# Wall time of each chapter under `make reproduce`, measured on the reference machine below with no
# runs cached (the whole cpu series: 26.7 min). A chapter whose runs already sit in OUTPUT_DIR/runs
# reads them back in seconds. No GPU has run the colab or full series yet: before it trains, each
# chapter prints an estimate from steps it times on the device at hand (lx.runtime.estimate).
REFERENCE_MACHINE = "2 cores of an Intel Xeon CPU, no GPU"
_MEASURED_S = {
    "smoke": {"00": 16, "01": 11, "02": 13, "03": 25, "04": 15, "05": 31, "06": 12, "07": 9},
    "cpu": {"00": 33, "01": 9, "02": 28, "03": 630, "04": 464, "05": 390, "06": 20, "07": 27},
}


def estimate(chapter: str, profile: str) -> str:
    """A sentence on how long ``chapter`` ("03") takes under ``profile``, from measured times."""
    seconds = _MEASURED_S.get(resolve(profile), {}).get(chapter)
    if seconds is None:
        return "run time not measured on a reference machine yet; each training cell estimates it from timed steps"
    amount = f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"
    # A figure from one machine, labelled with it: on another machine, or this one under load, the
    # estimate a chapter prints before it trains (timed here and now) is the one that counts.
    return (f"took {amount} on {REFERENCE_MACHINE} (nothing cached); a chapter that trains estimates its "
            f"time on this machine before it starts")


def device_name(device: torch.device | None = None) -> str:
    """``device`` (default: the one training will use) in words: the GPU's name, or the CPU's with its
    core count."""
    if device is None:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        return f"GPU {torch.cuda.get_device_name(device)}"
    from .report import cpu_name

    return f"CPU {cpu_name()}, {os.cpu_count()} cores"


def preflight(profile: str, datasets: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Check, in seconds, what ``profile`` needs before anything trains; one line of error if missing.

    ``datasets`` are those about to be trained on (none: nothing trains, nothing is checked). A
    profile that trains the pretrained encoder needs its ImageNet weights (see
    :mod:`lomix_core.models.weights`), and Synapse must be prepared where a chapter trains on it.
    Returns one line per thing checked, saying where it comes from.
    """
    from .models import weights

    profile = resolve(profile)
    found = []
    if datasets and _COMPARISON[profile][0].get("model_kwargs", {}).get("pretrained"):
        arch = _PAPER_NETWORK["model"].removesuffix("_emcad")
        found.append(f"{arch} ImageNet weights: {weights.check_available(arch, f'the {profile} profile')}")
    if "synapse" in datasets:
        from .data import synapse

        try:
            found.append(f"Synapse: {synapse.check_prepared()}")
        except FileNotFoundError as error:
            raise FileNotFoundError(f"the {profile} profile trains on Synapse's 8 organs: {error}; to get RawData, "
                                    f"{synapse.DOWNLOAD}") from None
    return found


def series_datasets(profile: str) -> list[str]:
    """Every dataset the notebook series trains on under ``profile``."""
    return sorted({"brain_aal", *comparison_datasets(profile), ablation_dataset(profile)})


def output_folder(profile: str, output_dir: str | os.PathLike | None = None) -> Path:
    """Where a chapter writes: ``output_dir``; else ``$LOMIX_OUTPUT_DIR/<profile>`` (e.g. a Google Drive
    folder, so that a disconnected Colab session resumes its runs); else ``outputs/<profile>``."""
    if output_dir:
        return Path(output_dir)
    return Path(os.environ.get(OUTPUT_ENV) or "outputs") / resolve(profile)


def start(chapter: str, profile: str, output_dir: str | None = None,
          datasets: list[str] | tuple[str, ...] = ()) -> tuple[str, Path]:
    """Resolve a chapter's profile and output folder, check what it needs (:func:`preflight`) and
    say where it runs and for how long.

    ``chapter`` is the two-digit number ("03"); ``datasets`` those the chapter trains on. Returns
    ``(profile, output_dir)``, with ``auto`` resolved and the folder from :func:`output_folder`."""
    profile = resolve(profile)
    output = output_folder(profile, output_dir)
    found = preflight(profile, datasets)
    print(f"chapter {chapter} | profile {profile} | {device_name()} | {estimate(chapter, profile)}"
          + "".join(f"\n{line}" for line in found))
    return profile, output

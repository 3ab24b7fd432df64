"""Run profiles: one name picks every budget, so a notebook runs in seconds or at paper scale.

* ``smoke`` — seconds to a few minutes on a CPU; what CI and nbval run. Numbers are meaningless.
* ``cpu``   — meaningful results on a 2-core laptop: the whole series in under 30 minutes; six seeds
  for chapter 03's comparison and three for the ablations.
* ``colab`` — the paper's network (PVT-v2-b2 + EMCAD, ImageNet-pretrained, 224²) on the real brain
  MRI, about 2,000 steps a run (near brain_aal's plateau), six seeds for chapter 03's comparison and
  three for the ablations; planned as one free Colab T4 session per block of chapters (:attr:`Profile.sessions`),
  which resume each other's runs from Google Drive.
* ``full``  — the paper's setting: that network on Synapse's 8 organs, 300 epochs (about 110k steps
  of batch 6), lr 1e-4 constant, five seeds. Hours to days; meant for a cluster.
* ``auto``  — ``colab`` when CUDA is available, else ``cpu``; never ``full``, which must be asked for.

Each profile is one :class:`Profile` record (:data:`PROFILE_RECORDS`); the functions below read a
chapter's settings out of it. Chapter start-up (banner, checks, output folder) is
:mod:`lomix_core.teaching.chapter`'s.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

import torch

from .. import data, models
from ..foundations.arguments import reject_unknown_options
from .timing import step_times
from .config import TrainConfig

PROFILES = ("smoke", "cpu", "colab", "full", "auto")


def _frozen(mapping: Mapping) -> Mapping:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class Profile:
    """Every budget one profile sets. The TrainConfig templates (``comparison``, ``quickstart``,
    ``demo``) are field overrides; ``dataset_budgets`` adds overrides per dataset on top of
    ``comparison``."""

    name: str
    size: int  # image size of every dataset, unless dataset_sizes says otherwise
    comparison: Mapping[str, Any]  # chapter 03's runs (and 04-06's), as TrainConfig overrides
    seeds: tuple[int, ...]
    comparison_datasets: tuple[str, ...]  # chapter 03's datasets
    ablation_dataset: str  # chapters 04 and 05's dataset
    quickstart: Mapping[str, Any]  # chapter 00's one run
    demo: Mapping[str, Any]  # chapter 02's briefly trained model
    benchmark: Mapping[str, Any]  # lomix_core.pipeline.timing.step_times's arguments (chapter 07, benchmarks/)
    phantom: Mapping[str, Any]  # how many subjects and slices the phantom draws
    dataset_sizes: Mapping[str, int] = field(default_factory=dict)
    dataset_budgets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    cell_timeout: int | None = None  # seconds a notebook cell may run under `reproduce` (None: no limit)
    # Wall time of each chapter under `make reproduce` with no runs cached, on chapter.REFERENCE_MACHINE.
    measured_s: Mapping[str, float] = field(default_factory=dict)
    ablation_seeds: tuple[int, ...] | None = None  # chapters 04 and 05's seeds (None: ``seeds``)
    # A GPU profile's plan: the chapters each session runs (one Colab runtime each; later sessions read
    # earlier sessions' runs back from Drive), and each chapter's hours on ``planned_on`` as estimated
    # by benchmarks/profile_hours.py from an assumed step time (tests/test_timing.py keeps them equal).
    sessions: tuple[tuple[str, ...], ...] = ()
    estimated_h: Mapping[str, float] = field(default_factory=dict)
    planned_on: str = ""  # the card estimated_h is for, and the step time it assumes
    session_limit_h: float | None = None  # the most hours one session may be estimated at

    def __post_init__(self):
        for name in ("comparison", "quickstart", "demo", "benchmark", "phantom", "dataset_sizes", "measured_s",
                     "estimated_h"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))
        object.__setattr__(self, "dataset_budgets", _frozen({k: _frozen(v) for k, v in self.dataset_budgets.items()}))


# Hours per chapter of the colab plan on a T4, as benchmarks/profile_hours.py estimates them (its default
# step times); chapters 01, 06 and 07 train nothing and take minutes.
ESTIMATED_H_COLAB = {"00": 0.01, "02": 0.01, "03": 3.40, "04": 4.95, "05": 3.77}

_TINY = dict(max_steps_per_epoch=3, batch_size=8, lr=1e-3, model_kwargs={"width": 8})
# The paper's network always starts from ImageNet weights (the official code loads them too).
_PAPER_NETWORK = dict(model="pvt_v2_b2_emcad", model_kwargs={"pretrained": True}, batch_size=6, lr=1e-4, amp=True)

PROFILE_RECORDS: Mapping[str, Profile] = _frozen({profile.name: profile for profile in [
    Profile(
        "smoke", size=32,
        comparison=dict(_TINY, epochs=2), seeds=(0,), comparison_datasets=("brain_aal", "synthetic"),
        ablation_dataset="synthetic",
        quickstart=dict(_TINY, epochs=1), demo=dict(_TINY, epochs=1),
        benchmark=dict(model="unet_small", batch=2, size=32, steps=2, warmup=1),
        phantom=dict(num_subjects=6, num_slices=8, num_val=1, num_test=1),
        cell_timeout=600,
        measured_s={"00": 16, "01": 11, "02": 13, "03": 25, "04": 15, "05": 31, "06": 12, "07": 9}),
    Profile(
        # The series must fit in 30 min on two cores, at lr 1e-3 rather than the paper's 1e-4 so that a
        # few epochs get somewhere. brain_aal's lobes survive 48 px, the phantom's organs 32 px, and a
        # LoMix step at those sizes costs half (48 px) or a third (32 px) of one at 64 px (measured on 2
        # CPU cores).
        # Chapter 03's comparison has six seeds, as colab's: the fewest whose exact two-sided Wilcoxon p
        # can fall below 0.05 (with three it cannot go below 0.25). They were bought with the LoMix
        # loss's speed-up (a LoMix step 1.47x a last-layer step before, 1.28-1.32x after, and every
        # step faster by the fused AdamW): the series went from 16.3 to 18.9 minutes on idle cores
        # (18.2 at 2172c82, whose heads resize by matrix products).
        "cpu", size=64,
        comparison=dict(epochs=8, batch_size=8, lr=1e-3), seeds=(0, 1, 2, 3, 4, 5), ablation_seeds=(0, 1, 2),
        comparison_datasets=("brain_aal", "synthetic"),
        # The ablations use the phantom: its 12 training subjects give more low-data sizes than
        # brain_aal's 7 slabs, and its runs cost about a quarter as much, which is what lets both
        # chapters run 3 seeds within the series' 30 minutes.
        ablation_dataset="synthetic",
        quickstart=dict(epochs=10, batch_size=8, lr=2e-3),
        demo=dict(epochs=6, batch_size=8, lr=2e-3),  # 6 epochs of 10 steps at 48 px: 60 % of the quickstart
        benchmark=dict(model="unet_small", batch=2, size=96, steps=10, warmup=3),
        phantom=dict(num_subjects=20, num_slices=16, num_val=4, num_test=4),
        dataset_sizes={"brain_aal": 48, "synthetic": 32},
        # brain_aal has 83 training slices and 8 classes with millimetre borders: on a CPU it needs
        # about 300 steps (30 epochs of 10 batches) at a higher rate before the four presets separate
        # from noise. The phantom's 192 training slices: 6 epochs are 144 steps. Its learning rate was
        # chosen on validation Dice among 1e-3, 2e-3 and 3e-3 (last_layer, deep_supervision and lomix, 3
        # seeds each: 3e-3 was best for all three); brain_aal's 2e-3 beat 3e-3 the same way.
        # abdomen_ct trains on one scan's 42 slices (5 batches of 8): 60 epochs are 300 steps, brain_aal's
        # budget, at brain_aal's rate (not tuned on abdomen_ct).
        dataset_budgets={"brain_aal": dict(epochs=30, lr=2e-3), "synthetic": dict(epochs=6, lr=3e-3),
                         "abdomen_ct": dict(epochs=60, lr=2e-3)},
        # Several times the slowest cell measured (chapter 03's comparison: 9.8 min on 2 Intel Xeon cores).
        cell_timeout=3600,
        measured_s={"00": 17, "01": 19, "02": 19, "03": 634, "04": 223, "05": 151, "06": 13, "07": 16}),
    Profile(
        # Sized from the kit's own measurements rather than to a total. On CPU (brain_aal, unet_small,
        # 3 seeds) 300 steps left every preset 0.04-0.14 Dice below its plateau and the ranking changed
        # between 300, 1,320 and 5,280 steps: a run here is 150 epochs of brain_aal's 13 batches of 6,
        # 1,950 steps, at the paper's lr 1e-4. At that lr a learned weight's θ could move lr x steps =
        # 0.195 at most, which keeps every weight within 1.15x of every other (weight_movement.room:
        # equal weights in practice; the paper's 110,700 steps allow 11). So the map weights get a rate of
        # their own, 1e-3: a θ bound of 1.95, room for one weight to reach 5.2x another, while their
        # common fall shrinks the loss at most 5.2x over a run (at the paper's bound it could shrink it
        # 44,000x, in 1,950 steps, faster than Adam's second moment follows), and the network keeps 1e-4.
        # Chapter 03's comparison has six seeds, the fewest whose exact two-sided Wilcoxon p can fall
        # below 0.05 (2/2^6 = 0.031); the ablations (04, 05) three, which can show a sign, not a
        # significant one. Chapters 04 and 05 share chapter 03's full-data runs of their seeds.
        "colab", size=224,
        comparison=dict(_PAPER_NETWORK, epochs=150, map_weight_lr=1e-3), seeds=(0, 1, 2, 3, 4, 5),
        ablation_seeds=(0, 1, 2),
        comparison_datasets=("brain_aal",), ablation_dataset="brain_aal",
        quickstart=dict(_PAPER_NETWORK, epochs=20), demo=dict(_PAPER_NETWORK, epochs=10),
        benchmark=dict(model="pvt_v2_b2_emcad", batch=6, size=224, steps=20, warmup=5, amp=True),
        phantom=dict(num_subjects=20, num_slices=16, num_val=4, num_test=4),
        # One Colab runtime per session, Drive mounted: a session reads the runs of those before it back,
        # and one cut short resumes where it stopped when its chapter is run again.
        sessions=(("00", "01", "02", "03"), ("04",), ("05", "06", "07")),
        estimated_h=ESTIMATED_H_COLAB, planned_on="a T4 (a last-layer step assumed at 0.15 s, not measured)",
        # Colab's free runtimes last at most 12 h and often much less (GPU time is rationed): a session
        # is planned at no more than half of that, so a slower card than assumed still finishes.
        session_limit_h=6.0),
    Profile(
        # The paper's protocol (config.PROTOCOLS["official"]): all 18 training cases, the official
        # network, augmentation and epoch (Synapse: 2211 slices in batches of 6, the last one partial:
        # 369 steps, 110,700 in 300 epochs), constant lr 1e-4, fp32 as the official trainer runs;
        # the last epoch is kept and best-on-test is reported beside it. Five seeds: with n seeds the
        # exact two-sided Wilcoxon p cannot fall below 2/2^n (0.25 with 3, 0.125 with 4, 0.0625 with 5,
        # so five cannot reach 0.05 either; 0.031 with 6).
        "full", size=224,
        comparison=dict(_PAPER_NETWORK, epochs=300, protocol="official", amp=False), seeds=(0, 1, 2, 3, 4),
        comparison_datasets=("synapse",),
        # Synapse's 16 training cases give the paper's one- and two-scan regimes.
        ablation_dataset="synapse",
        quickstart=dict(_PAPER_NETWORK, epochs=20), demo=dict(_PAPER_NETWORK, epochs=10),
        benchmark=dict(model="pvt_v2_b2_emcad", batch=6, size=224, steps=50, warmup=10, amp=True),
        phantom=dict(num_subjects=48, num_slices=24, num_val=8, num_test=8),
        # brain_aal gets the budget of the kit's pilot run on one H200 (about 1200 steps of batch 16): 100 epochs of 14
        # batches of 6 (its 83 slices with the last batch kept) are 1400 steps; the phantom 30 epochs.
        dataset_budgets={"brain_aal": dict(epochs=100), "synthetic": dict(epochs=30)}),
]})


def session(profile: str, chapter: str) -> tuple[int, tuple[str, ...]] | None:
    """(number from 1, its chapters) of the session of ``profile``'s plan that runs ``chapter``
    ("03"); None where the profile plans no sessions."""
    for number, chapters in enumerate(get(profile).sessions, 1):
        if chapter in chapters:
            return number, chapters
    return None


def resolve(profile: str) -> str:
    if not isinstance(profile, str) or profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; expected one of {PROFILES}")
    if profile == "auto":
        return "colab" if torch.cuda.is_available() else "cpu"
    return profile


def get(profile: str) -> Profile:
    """The record of ``profile`` (``auto`` resolved)."""
    return PROFILE_RECORDS[resolve(profile)]


def cell_timeout(profile: str) -> int | None:
    """Seconds a notebook cell may run under ``profile`` (None: no limit)."""
    return get(profile).cell_timeout


def data_kwargs(profile: str, dataset: str) -> dict:
    """Keyword arguments for ``lx.data.load(dataset, ...)`` under ``profile``."""
    record = get(profile)
    _check_dataset(dataset)
    return {"size": record.dataset_sizes.get(dataset, record.size),
            **(dict(record.phantom) if dataset == "synthetic" else {})}


def comparison_datasets(profile: str) -> list[str]:
    """The datasets chapter 03 compares the presets on under ``profile`` unless told otherwise."""
    return list(get(profile).comparison_datasets)


def ablation_dataset(profile: str) -> str:
    """The dataset chapters 04 and 05 use under ``profile`` unless told otherwise."""
    return get(profile).ablation_dataset


def comparison(profile: str, dataset: str = "brain_aal", model: str | None = None,
               **overrides) -> tuple[TrainConfig, list[int]]:
    """The base config and seeds of the supervision comparison on ``dataset`` under ``profile``.

    ``model=None`` keeps the profile's network (``unet_small``, or the pretrained
    ``pvt_v2_b2_emcad`` on colab and full); another model drops the profile's model options.
    """
    record = get(profile)
    _check_dataset(dataset)
    _check_fields(overrides)
    settings = {**_thawed(record.comparison), **_thawed(record.dataset_budgets.get(dataset, {}))}
    config = TrainConfig(**settings, dataset=dataset, data_kwargs=data_kwargs(profile, dataset), track_test=True,
                         progress=record.name != "smoke")
    config = dataclasses.replace(config, **_with_model(config, model), **overrides)
    if config.rules.official_network and not models.spec(config.model).has_official_form:
        raise ValueError(f"the {record.name} profile runs protocol={config.protocol!r}, which builds the official "
                         f"network, and model {config.model!r} has no official form; pass protocol='kit' to train it "
                         f"under the kit's protocol")
    return config, list(record.seeds)


def ablation(profile: str, dataset: str | None = None, model: str | None = None,
             **overrides) -> tuple[TrainConfig, list[int]]:
    """The base config and seeds of chapters 04 and 05 under ``profile``: :func:`comparison`'s config
    on ``dataset`` (default: :func:`ablation_dataset`), with the profile's ablation seeds."""
    dataset = ablation_dataset(profile) if dataset is None else dataset
    config, seeds = comparison(profile, dataset=dataset, model=model, **overrides)
    record = get(profile)
    return config, list(seeds if record.ablation_seeds is None else record.ablation_seeds)


def quickstart(profile: str, dataset: str = "brain_aal", model: str | None = None, **overrides) -> TrainConfig:
    """A LoMix run short enough for a first look (under a minute on a laptop's CPU)."""
    record = get(profile)
    _check_dataset(dataset)
    _check_fields(overrides)
    config = TrainConfig(**_thawed(record.quickstart), dataset=dataset, supervision="lomix",
                         data_kwargs=data_kwargs(profile, dataset), progress=record.name != "smoke")
    return dataclasses.replace(config, **_with_model(config, model), **overrides)


def demo(profile: str, **overrides) -> TrainConfig:
    """A short LoMix training run on brain_aal, for looking at real multi-scale logits."""
    record = get(profile)
    _check_fields(overrides)
    settings = {**_thawed(record.demo), "dataset": "brain_aal", "data_kwargs": data_kwargs(profile, "brain_aal"),
                "supervision": "lomix", "progress": record.name != "smoke"}
    return TrainConfig(**{**settings, **overrides})


def benchmark(profile: str, **overrides) -> dict:
    """Keyword arguments for :func:`lomix_core.pipeline.timing.step_times` under ``profile``."""
    reject_unknown_options(step_times, overrides, "the benchmark", reserved=())
    return {**get(profile).benchmark, **overrides}


def series_datasets(profile: str) -> list[str]:
    """Every dataset the notebook series trains on under ``profile``."""
    return sorted({"brain_aal", *comparison_datasets(profile), ablation_dataset(profile)})


def _thawed(settings: Mapping[str, Any]) -> dict[str, Any]:
    """A record's settings as a new dict, deep-copied: configs must not share the record's dicts."""
    return copy.deepcopy({k: dict(v) if isinstance(v, Mapping) else v for k, v in settings.items()})


def _with_model(config: TrainConfig, model: str | None) -> dict:
    """Overrides that swap in ``model``: the profile's model options (e.g. ``width``) belong to its own model."""
    if model is None or model == config.model:
        return {}
    if model not in models.available():
        raise ValueError(f"unknown model {model!r}; expected one of {models.available()} (or None for the "
                         f"profile's network)")
    return {"model": model, "model_kwargs": {}}


def _check_dataset(dataset: str) -> None:
    if not isinstance(dataset, str) or dataset not in data.available():
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {data.available()}")


def _check_fields(overrides: dict) -> None:
    """One line on a keyword that is not a TrainConfig field, listing the fields."""
    fields = sorted(f.name for f in dataclasses.fields(TrainConfig))
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise ValueError(f"unknown TrainConfig fields {unknown}; expected some of {fields}")

"""What defines a run: :class:`TrainConfig`, the protocols, and the steps an epoch makes.

Each field of :class:`TrainConfig` says what it is to the rest of the kit (:func:`setting`):
whether a resumed run may change it, whether it changes what one training step or one evaluated
slice costs, whether it is part of what a run computes (its run key), and how it appears on the
command line. Training, the run cache, the runtime estimate and the CLI read these answers here
instead of keeping their own lists, so a new field is described once.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Callable

from .. import data, models
from ..data.augment import AUGMENTS
from ..supervision import PRESETS, WEIGHTINGS


def setting(default: Any = dataclasses.MISSING, *, default_factory: Callable[[], Any] | None = None, help: str,
            step_cost: bool = False, eval_cost: bool = False, resumable: bool = False, identity: bool = True,
            cli: dict[str, Any] | None = None, choices: Callable[[], Any] | None = None):
    """A :class:`TrainConfig` field and what it means to the kit.

    ``step_cost``: changes what one training step costs (the runtime estimate times each such
    setting). ``eval_cost``: changes what evaluating one slice costs (the network, not the loss).
    ``resumable``: a resumed run may change it. ``identity``: part of what the run computes, so
    of its run key. ``cli``: extra argparse keywords for its ``train`` option (None: no option).
    ``choices``: the allowed values, asked for when the CLI is built (registries fill late).
    """
    metadata = dict(help=help, step_cost=step_cost or eval_cost, eval_cost=eval_cost, resumable=resumable,
                    identity=identity, cli=cli, choices=choices)
    if default_factory is not None:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def switch_or_name(text: str) -> bool | str:
    """A command-line value that is either a switch (true/false, yes/no, on/off, 1/0) or a name."""
    switches = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}
    return switches.get(text.lower(), text)


@dataclass(frozen=True)
class Protocol:
    """The choices a protocol makes, read in one place by training and inference.

    "official" reproduces the official code's choices that are not defects; the kit's own ("kit")
    differ on purpose. The official defects stay fixed under both: concat is trained, the model
    returns to train mode after validation, and nothing is ever selected on the test split.
    """

    name: str
    # Train on the training and validation subjects together (Synapse: all 18 TransUNet training
    # cases) and keep the last epoch, since nothing is left to select on.
    joins_validation: bool
    # None: the config's augment as it is (True: the kit's rotations and flips; "intensity": those and an
    # intensity jitter); "official": the official rotations and flips whenever augment is on.
    augment: str | None
    official_network: bool  # EMCAD models get ReLU6 in MSCB, the official init and grey-to-RGB stem
    wf_sharing: str  # "subset": one wf module per subset; "size": one per subset size, as the official code
    # Drop an epoch's last partial batch (the kit: every step averages a full batch); the official
    # loader keeps it (Synapse: 2211 slices in batches of 6 make 369 steps, the last of 3 slices).
    drop_last_batch: bool
    # How a test prediction returns to the scan's grid (evaluation.evaluate's ``method``): "logits"
    # resamples the logits, then takes the argmax; "zoom" takes the argmax on the model grid and
    # enlarges it with scipy's zoom(order=0) mapping, pixel for pixel as the official test_single_volume.
    scoring: str


PROTOCOLS = {
    "kit": Protocol("kit", joins_validation=False, augment=None, official_network=False, wf_sharing="subset",
                    drop_last_batch=True, scoring="logits"),
    "official": Protocol("official", joins_validation=True, augment="official", official_network=True,
                         wf_sharing="size", drop_last_batch=False, scoring="zoom"),
}


@dataclass
class TrainConfig:
    """Everything that defines a run. Defaults follow the paper (AdamW, lr 1e-4, wd 1e-4)."""

    supervision: str = setting("lomix", step_cost=True, help="supervision preset",
                               cli={}, choices=lambda: list(PRESETS))
    model: str = setting("unet_small", eval_cost=True, help="network", cli={}, choices=models.available)
    dataset: str = setting("synthetic", help="dataset", cli={}, choices=data.available)
    operators: list[str] | None = setting(None, step_cost=True, help="fusion operators (default: per preset)",
                                          cli=dict(nargs="+"))
    weighting: str | list[float] | None = setting(
        None, step_cost=True, help=f"one of {WEIGHTINGS} (default: per preset)", cli={})
    epochs: int = setting(10, help="epochs", cli={})
    steps_per_epoch: int | None = setting(
        None, cli={}, help="draw this many batches every epoch, reshuffling through the training set as often as "
                           "needed (default: one pass over the set), so a low-data run can keep the full set's step "
                           "budget and validation schedule")
    max_steps_per_epoch: int | None = setting(None, help="cut every epoch after this many steps", cli={})
    batch_size: int = setting(8, step_cost=True, help="batch size", cli={})
    lr: float = setting(1e-4, help="learning rate (AdamW, constant)", cli={})
    weight_decay: float = setting(1e-4, help="AdamW weight decay", cli={})
    map_weight_lr: float | None = setting(
        None, cli={}, help="learning rate of the learned map weights' θ alone (default: lr, as the paper): AdamW "
                           "moves θ about this much per step at most, so a short run needs a larger one for its "
                           "weights to become unequal")
    seed: int = setting(0, help="seed of the network's initialisation, the data order and augmentation", cli={})
    device: str = setting("auto", help="auto | cpu | cuda | cuda:N", cli={})
    amp: bool = setting(False, eval_cost=True, help="mixed precision on CUDA", cli={})
    augment: bool | str = setting(
        True, cli=dict(type=switch_or_name, metavar="{true,false,intensity}"),
        help="augment the training images: true (rotations and flips; under the official protocol the official "
             "ones), intensity (rotations, flips and a gamma, contrast, scale and shift jitter), false")
    model_kwargs: dict[str, Any] = setting(default_factory=dict, eval_cost=True,
                                           help='JSON for the network, e.g. \'{"width": 8}\'', cli={})
    data_kwargs: dict[str, Any] = setting(default_factory=dict, help='JSON for the dataset, e.g. \'{"size": 64}\'',
                                          cli={})
    track_test: bool = setting(
        False, cli={}, help="score the test split after every epoch too, for reporting only: it shows how much "
                            "picking the epoch by test Dice (as the official code does) flatters a method; never "
                            "used to select")
    official_eval_mode_bug: bool = setting(
        False, cli={}, help="reproduce the official code's defect, for demonstration: after the first validation the "
                            "model stays in eval mode, so BatchNorm statistics freeze and drop-path switches off")
    protocol: str = setting("kit", eval_cost=True, cli={}, choices=lambda: list(PROTOCOLS),
                            help="official: the official code's choices that are not defects (all training subjects, "
                                 "last epoch, ReLU6, official init, shared wf, official augmentation; EMCAD models only)")
    out_dir: str = setting("outputs/runs", resumable=True, identity=False, help="folder of run folders", cli={})
    run_name: str | None = setting(None, identity=False, help="the run folder's name (default: from the config)",
                                   cli={})
    progress: bool = setting(True, resumable=True, identity=False, help="show a progress bar", cli={})

    def __post_init__(self):
        for field_name in ("epochs", "batch_size"):
            if getattr(self, field_name) < 1:
                raise ValueError(f"{field_name} must be >= 1, got {getattr(self, field_name)}")
        for field_name in ("steps_per_epoch", "max_steps_per_epoch"):
            if getattr(self, field_name) is not None and getattr(self, field_name) < 1:
                raise ValueError(f"{field_name} must be >= 1 or None, got {getattr(self, field_name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.map_weight_lr is not None and not self.map_weight_lr > 0:
            raise ValueError(f"map_weight_lr must be > 0 or None (the network's lr), got {self.map_weight_lr}")
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {self.protocol!r}; expected one of {tuple(PROTOCOLS)}")
        # bool or one of the names, checked by type too: 1 == True would pass a plain membership test
        if not (isinstance(self.augment, bool) or (isinstance(self.augment, str) and self.augment in AUGMENTS)):
            raise ValueError(f"augment must be one of {AUGMENTS}, got {self.augment!r}")

    @property
    def name(self) -> str:
        return self.run_name or f"{self.dataset}-{self.model}-{self.supervision}-seed{self.seed}"

    @property
    def theta_lr(self) -> float:
        """The learning rate of the learned map weights' θ: ``map_weight_lr``, else ``lr``."""
        return self.lr if self.map_weight_lr is None else self.map_weight_lr

    @property
    def rules(self) -> Protocol:
        """The choices of this run's protocol."""
        return PROTOCOLS[self.protocol]


def fields_where(flag: str, value: bool = True) -> tuple[str, ...]:
    """The names of :class:`TrainConfig`'s fields whose ``flag`` (e.g. "resumable") is ``value``."""
    return tuple(f.name for f in dataclasses.fields(TrainConfig) if bool(f.metadata[flag]) == value)


# Settings a resumed run may change: where the run folder lies and whether a progress bar shows.
# Any other difference would make the resumed run a different experiment.
RESUMABLE_CHANGES = fields_where("resumable")


def identity(config: TrainConfig) -> dict[str, Any]:
    """The fields that make up what ``config`` computes (less where it is written, its name and
    whether it shows progress): the run key's part of the config."""
    return {k: v for k, v in dataclasses.asdict(config).items() if k in fields_where("identity")}


def trains_on_validation(config: TrainConfig) -> bool:
    """Whether ``config`` trains on its validation subjects too: the official protocol does, except
    in a low-data run, whose subjects come from the training split alone."""
    return config.rules.joins_validation and config.data_kwargs.get("num_train_subjects") is None


def slices_used(config: TrainConfig, train_slices: int, val_slices: int) -> tuple[int, int]:
    """(slices a run of ``config`` trains on, slices it validates every epoch), from the sizes of
    its training and validation splits, as :func:`~lomix_core.pipeline.training.training_data` uses them."""
    if not config.rules.joins_validation:
        return train_slices, val_slices
    return train_slices + (val_slices if trains_on_validation(config) else 0), 0


def drops_last_batch(config: TrainConfig, train_slices: int) -> bool:
    """Whether one pass over ``train_slices`` drops its last partial batch: where the protocol says
    so and there is more than one batch."""
    return config.rules.drop_last_batch and train_slices > config.batch_size


def epoch_steps(config: TrainConfig, train_slices: int) -> int:
    """The optimiser steps one epoch of ``config`` makes on ``train_slices`` training slices.

    ``steps_per_epoch`` batches when it is set; else one pass over the set, which drops the last
    partial batch when there is more than one batch and the protocol says so; either way at most
    ``max_steps_per_epoch``."""
    if config.steps_per_epoch is not None:
        batches = config.steps_per_epoch
    elif drops_last_batch(config, train_slices):
        batches = train_slices // config.batch_size
    else:
        batches = math.ceil(train_slices / config.batch_size)
    return min(batches, config.max_steps_per_epoch or batches)

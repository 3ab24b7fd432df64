"""The checkpoint format: what a run's ``best.pt`` and ``last.pt`` hold, how they are written and
read, and how the network and loss module that their weights fit are built again.

- ``best.pt`` is the selected epoch (:func:`selected_state`): the network's and the loss module's
  weights, the epoch, its validation Dice, the run's config and the training data's
  preprocessing. ``predict`` needs nothing else.
- ``last.pt`` is everything the next epoch depends on (:func:`training_state`): the same, plus the
  optimiser, the gradient scaler, every RNG, the history so far and the current ``best.pt``. A run
  resumes from it only if it was written with the same config (:func:`read_training_state`).

Both are written atomically (``records.save_torch``): a kill leaves the old file or the new one.
"""
from __future__ import annotations

import dataclasses
import io
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import models
from ..data.volumes import one_line
from ..foundations.records import save_torch
from ..supervision import LoMixLoss
from .config import RESUMABLE_CHANGES, TrainConfig

BEST, LAST = "best.pt", "last.pt"


class ResumeError(ValueError):
    """``last.pt`` was written by a run with a different config."""


# -- the network a config trains ---------------------------------------------------------------

def model_kwargs(config: TrainConfig) -> dict[str, Any]:
    """The keyword arguments ``models.build`` gets for ``config``: its ``model_kwargs``, plus
    ``official=True`` under the official protocol (only EMCAD models have an official form)."""
    if not config.rules.official_network:
        return dict(config.model_kwargs)
    if not models.spec(config.model).has_official_form:
        official = [name for name in models.available() if models.spec(name).has_official_form]
        raise ValueError(f"protocol='official' reproduces the official EMCAD network, but model {config.model!r} "
                         f"has no official form; expected one of {official}")
    return {**config.model_kwargs, "official": True}


def build_model_and_loss(config: TrainConfig, in_channels: int, num_classes: int,
                         device: torch.device) -> tuple[nn.Module, LoMixLoss]:
    """The network and the loss module a run with ``config`` trains (or a checkpoint's weights fit)."""
    model = models.build(config.model, in_channels, num_classes, **model_kwargs(config)).to(device)
    loss_fn = LoMixLoss(model.num_maps, num_classes, supervision=config.supervision,
                        operators=config.operators, weighting=config.weighting,
                        wf_sharing=config.rules.wf_sharing).to(device)
    return model, loss_fn


def saved_config(config: TrainConfig | dict[str, Any]) -> TrainConfig:
    """A saved run's config as its checkpoint's weights are loaded into: the same network, whose
    encoder is not given its ImageNet weights again (the checkpoint holds trained ones)."""
    if isinstance(config, dict):  # a checkpoint's: fields added since have their defaults, removed ones are dropped
        known = {f.name for f in dataclasses.fields(TrainConfig)}
        config = TrainConfig(**{k: v for k, v in config.items() if k in known})
    kwargs = {k: v for k, v in config.model_kwargs.items() if k not in ("pretrained", "weights")}
    return dataclasses.replace(config, model_kwargs=kwargs)


# -- writing ---------------------------------------------------------------------------------

def _cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def selected_state(model: nn.Module, loss_fn: LoMixLoss, epoch: int, val_dice: float, config: TrainConfig,
                   preprocessing: dict[str, Any]) -> dict[str, Any]:
    """What ``best.pt`` holds: a copy on the CPU, so later epochs do not change it."""
    return {"model": _cpu_state(model), "loss_fn": _cpu_state(loss_fn), "epoch": epoch, "val_dice": val_dice,
            "config": dataclasses.asdict(config), "preprocessing": preprocessing}


def training_state(epoch: int, config: TrainConfig, model: nn.Module, loss_fn: LoMixLoss,
                   preprocessing: dict[str, Any], optimizer: torch.optim.Optimizer, scaler: Any,
                   rng: dict[str, Any], best: dict[str, Any], step_losses: list, step_weights: list,
                   step_map_losses: list, epochs: list[dict[str, Any]]) -> dict[str, Any]:
    """What ``last.pt`` holds: everything the next epoch depends on."""
    return {"epoch": epoch, "config": dataclasses.asdict(config), "model": model.state_dict(),
            "preprocessing": preprocessing, "loss_fn": loss_fn.state_dict(), "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict(), "rng": rng, "best": best,
            "step_losses": step_losses, "step_weights": step_weights, "step_map_losses": step_map_losses,
            "epochs": epochs}


def save(state: dict[str, Any], path: Path) -> None:
    save_torch(state, path)


# -- reading ---------------------------------------------------------------------------------

def read(path: str | Path) -> dict[str, Any]:
    """A checkpoint's contents, or one line saying why ``path`` is not a checkpoint of this kit."""
    return read_bytes(file_bytes(path), Path(path))


def file_bytes(path: str | Path) -> bytes:
    """The checkpoint file's bytes (``predict`` hashes them too), or one line if there is no file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist; expected a {BEST} written by train "
                                f"(outputs/runs/<run name>/{BEST})")
    return path.read_bytes()


def read_bytes(blob: bytes, path: Path) -> dict[str, Any]:
    """:func:`read` for a file already in memory."""
    try:
        checkpoint = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=False)
        checkpoint["config"], checkpoint["model"]  # a torch file train did not write lacks them: KeyError
    except Exception as error:  # torch raises many types for a truncated or foreign file
        raise ValueError(f"cannot read checkpoint {path}: {type(error).__name__}: {one_line(error)} "
                         f"(expected a {BEST} or {LAST} written by train)") from None
    return checkpoint


def read_training_state(path: Path, config: TrainConfig) -> dict[str, Any]:
    """The training state in ``last.pt``, if a run with ``config`` wrote it; else :class:`ResumeError`."""
    last = torch.load(path, map_location="cpu", weights_only=False)
    wanted = dataclasses.asdict(config)
    # A field added to TrainConfig after the run started has its default there.
    saved = {**dataclasses.asdict(TrainConfig()), **last["config"]}
    differ = [f"{k}={wanted[k]!r} (saved {saved[k]!r})" for k in wanted
              if k not in RESUMABLE_CHANGES and saved[k] != wanted[k]]
    if differ:
        raise ResumeError(f"cannot resume {path}: it was written with a different config: {', '.join(differ)}")
    return last


def restore(model: nn.Module, loss_fn: LoMixLoss | None, state: dict[str, Any]) -> None:
    """Load a checkpoint's weights into the network (and the loss module, when given)."""
    model.load_state_dict(state["model"])
    if loss_fn is not None:
        loss_fn.load_state_dict(state["loss_fn"])

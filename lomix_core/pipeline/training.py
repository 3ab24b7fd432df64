"""Training: one entry point for any registered model, dataset and supervision preset.

``train(TrainConfig(...))`` seeds everything, builds the data, model and loss, runs :func:`fit`,
reloads the checkpoint with the best **validation** Dice, scores it on the test split and
writes the run record under ``outputs/``. :func:`fit` is the loop itself.

A run can be resumed: at the end of every epoch :func:`fit` writes ``last.pt``, which holds
everything the next epoch depends on (weights, optimiser, RNG states, history), and
``train(config, resume=True)`` continues from it. An interrupted epoch is replayed from its
start, so on the same device a resumed run ends bit-identical to an uninterrupted one.

Two defects of the official code are fixed here: the model is selected on a validation split
(the official code picks the checkpoint with the best *test* Dice), and the model goes back to
train mode after each validation (the official code leaves it in eval mode from the first
validation on, which freezes BatchNorm statistics and disables drop-path for the rest of
training).
"""
from __future__ import annotations

import dataclasses
import json
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, RandomSampler
from tqdm.auto import tqdm

from .. import data, models
from . import checkpoints
from .checkpoints import ResumeError, build_model_and_loss
from .config import TrainConfig, drops_last_batch, epoch_steps, trains_on_validation
from .evaluation import CONVENTION, evaluate, mean_dice, mean_hd95, per_class
from ..foundations.machine import autocast_dtype, environment, resolve_device
from ..foundations.records import save_csv, save_json
from ..supervision import LoMixLoss


@dataclass
class Run:
    """What :func:`train` returns: the selected model and loss module, and the run's records."""

    config: TrainConfig
    model: nn.Module
    loss_fn: LoMixLoss
    history: pd.DataFrame  # one row per step: loss, every map weight (w:) and every map's unweighted loss (L:)
    epochs: pd.DataFrame  # one row per epoch: train loss, validation Dice, time
    test: pd.DataFrame | None  # tidy test results of the selected model; None without a test split
    record: dict[str, Any]
    run_dir: Path

    @torch.no_grad()
    def maps(self, images: torch.Tensor) -> torch.Tensor:
        """Every supervised map for ``images [B, C_in, H, W]``: ``[M, B, C, H, W]`` in
        ``loss_fn.map_names`` order (decoder maps, then mutants), from the model in eval mode."""
        was_training = self.model.training
        self.model.eval()
        try:
            return self.loss_fn.mutants(self.model(images.to(next(self.model.parameters()).device))).cpu()
        finally:
            self.model.train(was_training)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Stepper:
    """One optimiser step of ``model`` and ``loss_fn`` as ``config`` sets it: AdamW over both (the
    loss's learnable weights and fusion convs train in the same group as the network, unless
    ``map_weight_lr`` gives the weights' θ a rate of their own), and on CUDA
    with ``amp`` autocast with a gradient scaler where the dtype is fp16.

    After a call, :attr:`map_losses` holds that step's unweighted loss of every supervised map
    (``[M]``, detached, on the device): the gradient each learned weight's parameter saw is
    computed from them, which is what chapter 05 predicts the weights' fall from. (None when
    ``loss_fn`` is a wrapper, such as ``torch.compile``'s, rather than a :class:`LoMixLoss`.)"""

    def __init__(self, model: nn.Module, loss_fn: LoMixLoss, config: TrainConfig):
        self.model, self.loss_fn = model, loss_fn
        device = next(model.parameters()).device
        self.device_type = device.type
        self.amp = config.amp and device.type == "cuda"
        self.amp_dtype = autocast_dtype(device) if self.amp else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp and self.amp_dtype == torch.float16)
        parameters = list(model.parameters()) + list(loss_fn.parameters())
        thetas = list(loss_fn.weighting.parameters()) if isinstance(loss_fn, LoMixLoss) else []
        if config.map_weight_lr is not None and thetas:
            # The map weights' θ in a group of their own, at their own rate; everything else as before.
            rest = [p for p in parameters if all(p is not t for t in thetas)]
            parameters = [{"params": rest}, {"params": thetas, "lr": config.map_weight_lr}]
        # Fused: one kernel per step where PyTorch's default on a CPU runs a dozen ops per tensor,
        # and LoMix's θ, concat and wf convs add 79 small tensors to the network's 70. The same update
        # to rounding (3e-8 after 40 steps); at the cpu setting the optimiser step alone went from 6.9
        # to 1.4 ms with last layer and from 8.6 to 1.6 ms with LoMix (docs/network_and_cost.md).
        self.optimizer = torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay,
                                           fused=device.type in ("cpu", "cuda"))

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device_type, dtype=self.amp_dtype, enabled=self.amp):
            if isinstance(self.loss_fn, LoMixLoss):
                # Its forward in two halves, to keep the per-map losses the weights multiply.
                map_losses = self.loss_fn.per_map_losses(self.model(images), labels)
                loss = self.loss_fn.weighting(map_losses)
            else:  # a wrapped loss (torch.compile's, in the benchmarks): its own forward, nothing kept per map
                loss, map_losses = self.loss_fn(self.model(images), labels), None
        self.map_losses = None if map_losses is None else map_losses.detach()
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss


def fit(model: nn.Module, loss_fn: LoMixLoss, train_set: data.SliceDataset, val_set: data.SliceDataset | None,
        config: TrainConfig, checkpoint_path: Path | None = None,
        test_set: data.SliceDataset | None = None, last_path: Path | None = None,
        resume: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train ``model`` with ``loss_fn``; validate each epoch; keep the best-validation weights.

    Returns the per-step history and the per-epoch table. On return, ``model`` and ``loss_fn``
    hold the state of the best validation epoch; without a ``val_set`` (the official protocol),
    of the last epoch. A ``test_set`` is only scored and reported per epoch (``test_dice``
    column), never used to select.

    ``last_path`` receives the full training state at the end of every epoch; with ``resume``,
    training continues from it when it exists (a finished run trains no further epoch).
    """
    device = next(model.parameters()).device
    step_once = Stepper(model, loss_fn, config)
    use_amp, optimizer, scaler = step_once.amp, step_once.optimizer, step_once.scaler
    # The sampler draws each epoch's order from this generator alone, so its saved state lets a
    # resumed run draw the same orders as an uninterrupted one.
    generator = torch.Generator().manual_seed(config.seed)
    if config.steps_per_epoch is None:
        loader = DataLoader(train_set, batch_size=config.batch_size, shuffle=True, generator=generator,
                            drop_last=drops_last_batch(config, len(train_set)))
    else:  # consecutive permutations of the set, cut into exactly steps_per_epoch batches
        sampler = RandomSampler(train_set, num_samples=config.steps_per_epoch * config.batch_size, generator=generator)
        loader = DataLoader(train_set, batch_size=config.batch_size, sampler=sampler)
    steps_per_epoch = epoch_steps(config, len(train_set))

    # Per finished epoch: the step losses [S], the step map weights and map losses [S, M] (CPU) and a table row.
    step_losses, step_weights, step_map_losses, epoch_rows = [], [], [], []
    best_dice, best_state, first_epoch = -1.0, None, 1
    if resume and last_path is not None and last_path.exists():
        last = checkpoints.read_training_state(last_path, config)
        checkpoints.restore(model, loss_fn, last)
        optimizer.load_state_dict(last["optimizer"])
        scaler.load_state_dict(last["scaler"])
        _set_rng_states(last["rng"], generator)
        step_losses, step_weights, epoch_rows = last["step_losses"], last["step_weights"], last["epochs"]
        step_map_losses = last["step_map_losses"]
        best_state, first_epoch = last["best"], last["epoch"] + 1
        best_dice = best_state["val_dice"]
        if checkpoint_path is not None:
            # A kill between the two writes below can leave best.pt one epoch ahead of last.pt,
            # and on a GPU the replayed epoch need not come out best again: make them agree.
            checkpoints.save(best_state, checkpoint_path)
    # Wall time since training began, counted across resumptions (an interrupted epoch's lost
    # work is not counted; its replay is).
    began = time.perf_counter() - (epoch_rows[-1]["elapsed_s"] if epoch_rows else 0.0)
    progress = tqdm(total=config.epochs * steps_per_epoch, initial=(first_epoch - 1) * steps_per_epoch,
                    disable=not config.progress, desc=config.name)
    for epoch in range(first_epoch, config.epochs + 1):
        frozen = config.official_eval_mode_bug and epoch > 1
        model.train(not frozen)
        loss_fn.train()
        start, epoch_losses, epoch_weights, epoch_map_losses = time.perf_counter(), [], [], []
        for step, (images, labels) in enumerate(loader):
            if step == steps_per_epoch:
                break
            images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            loss = step_once(images, labels)
            # Kept on the device: reading them back every step would sync the GPU.
            epoch_losses.append(loss.detach())
            epoch_weights.append(loss_fn.weighting.weights().detach())
            epoch_map_losses.append(step_once.map_losses)
            progress.update()
        step_losses.append(torch.stack(epoch_losses).float().cpu())
        step_weights.append(torch.stack(epoch_weights).float().cpu())
        step_map_losses.append(torch.stack(epoch_map_losses).float().cpu())
        train_time = time.perf_counter() - start

        # Selection needs Dice only; HD95's distance transforms are kept for the final test.
        if val_set is not None:
            val_dice = mean_dice(evaluate(model, val_set, amp=use_amp, with_hd95=False))  # model stays in train mode
            is_best = val_dice > best_dice
        else:  # nothing to select on: every epoch replaces the last, so the last one is kept
            val_dice, is_best = float("nan"), True
        if is_best:
            best_dice = val_dice
            best_state = checkpoints.selected_state(model, loss_fn, epoch, val_dice, config,
                                                    train_set.preprocessing.to_dict())
            if checkpoint_path is not None:
                checkpoints.save(best_state, checkpoint_path)
        epoch_rows.append({"epoch": epoch, "train_loss": float(step_losses[-1].mean()), "val_dice": val_dice,
                           "best": is_best, "train_time_s": train_time})
        if test_set is not None:
            epoch_rows[-1]["test_dice"] = mean_dice(evaluate(model, test_set, amp=use_amp, with_hd95=False,
                                                             method=config.rules.scoring))
        epoch_rows[-1]["elapsed_s"] = time.perf_counter() - began
        if last_path is not None:
            checkpoints.save(checkpoints.training_state(
                epoch, config, model, loss_fn, train_set.preprocessing.to_dict(), optimizer, scaler,
                _rng_states(generator), best_state, step_losses, step_weights, step_map_losses, epoch_rows), last_path)
        progress.set_postfix(loss=f"{float(step_losses[-1][-1]):.3f}", val_dice=f"{val_dice:.3f}")
    progress.close()

    checkpoints.restore(model, loss_fn, best_state)
    losses = torch.cat(step_losses)
    history = pd.concat([pd.DataFrame(torch.cat(step_weights).numpy(), columns=[f"w:{n}" for n in loss_fn.map_names]),
                         pd.DataFrame(torch.cat(step_map_losses).numpy(), columns=[f"L:{n}" for n in loss_fn.map_names])],
                        axis=1)
    history.insert(0, "loss", losses.numpy())
    history.insert(0, "epoch", np.repeat(np.arange(1, config.epochs + 1), [len(x) for x in step_losses]))
    history.insert(0, "step", np.arange(1, len(losses) + 1))
    return history, pd.DataFrame(epoch_rows)


def _rng_states(loader_generator: torch.Generator) -> dict[str, Any]:
    # Augmentation and dropout draw from torch's global RNG, the shuffle from the loader's own;
    # numpy's and Python's are saved too so that no code path can make a resumed run diverge.
    return {"torch": torch.get_rng_state(), "loader": loader_generator.get_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "numpy": np.random.get_state(), "python": random.getstate()}


def _set_rng_states(states: dict[str, Any], loader_generator: torch.Generator) -> None:
    torch.set_rng_state(states["torch"])
    loader_generator.set_state(states["loader"])
    if states["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])



def train(config: TrainConfig, resume: bool = False) -> Run:
    """Build everything from ``config``, fit, select on validation, test once, save the record.

    With ``resume``, a run whose folder holds a ``last.pt`` continues from it (its config must
    match, else :class:`ResumeError`). A finished run then trains nothing: its best weights are
    scored on the test split again and the same records rewritten. Without ``last.pt`` the run
    starts fresh.
    """
    seed_everything(config.seed)
    device = resolve_device(config.device)
    train_set, val_set = training_data(config)
    test_set = _split_or_none(config, "test")
    model, loss_fn = build_model_and_loss(config, train_set.in_channels, train_set.num_classes, device)

    run_dir = Path(config.out_dir) / config.name
    history, epochs = fit(model, loss_fn, train_set, val_set, config, checkpoint_path=run_dir / checkpoints.BEST,
                          test_set=test_set if config.track_test else None, last_path=run_dir / checkpoints.LAST,
                          resume=resume)
    # evaluate uses autocast on CUDA only; a folder without test cases reports validation only
    test = evaluate(model, test_set, amp=config.amp, method=config.rules.scoring) if test_set is not None else None

    best = epochs.loc[epochs["best"]].iloc[-1]
    record = {
        "config": dataclasses.asdict(config),
        "metrics": {
            "best_epoch": int(best["epoch"]), "val_dice": _number_or_none(float(best["val_dice"])),
            "selected_on": "validation Dice" if val_set is not None else "last epoch (no validation split)",
            **_test_metrics(test),
            "test_dice_if_selected_on_test": float(epochs["test_dice"].max()) if config.track_test else None,
            "train_time_s": float(epochs["elapsed_s"].iloc[-1]), "steps": len(history),
            "num_supervised_maps": loss_fn.num_supervised,
            "model_parameters": sum(p.numel() for p in model.parameters()),
            "loss_parameters": sum(p.numel() for p in loss_fn.parameters()),
        },
        "data": {"in_channels": train_set.in_channels, "num_classes": train_set.num_classes,
                 "class_names": list(train_set.class_names), "train_slices": len(train_set),
                 "preprocessing": train_set.preprocessing.to_dict()},
        "map_weights_at_best_epoch": loss_fn.map_weights(),
        "evaluation": CONVENTION,
        "environment": {**environment(device), "encoder_weights": encoder_weights(config)},
    }
    save_json(record, run_dir / "record.json")
    save_csv(history, run_dir / "history.csv")
    save_csv(epochs, run_dir / "epochs.csv")
    if test is not None:
        save_csv(test, run_dir / "test.csv")
    return Run(config, model, loss_fn, history, epochs, test, record, run_dir)


def _test_metrics(test: pd.DataFrame | None) -> dict[str, Any]:
    if test is None:
        return dict.fromkeys(("test_dice", "test_hd95", "test_hd95_mm", "test_dice_per_class", "test_hd95_per_class",
                              "scored_at"))
    return {"test_dice": mean_dice(test), "test_hd95": mean_hd95(test),
            "test_hd95_mm": _number_or_none(mean_hd95(test, unit="mm")),
            "test_dice_per_class": per_class(test)["dice"].to_dict(),
            "test_hd95_per_class": per_class(test)["hd95"].to_dict(), "scored_at": test.attrs["resolution"]}


def _split_or_none(config: TrainConfig, split: str, augment: bool | str = False) -> data.SliceDataset | None:
    """The ``split``, or None where the dataset has none by design (``data.SplitNotPresent``)."""
    try:
        return data.load(config.dataset, split=split, augment=augment, **config.data_kwargs)
    except data.SplitNotPresent:
        return None


def _number_or_none(value: float) -> float | None:
    """JSON has no NaN: an unknown value (HD95 in mm without a spacing) is written as null."""
    return None if np.isnan(value) else value


def training_data(config: TrainConfig) -> tuple[data.SliceDataset, data.SliceDataset | None]:
    """The training set and the validation set that selects the model.

    The official protocol has no validation set: it trains on the training and validation subjects
    together (Synapse: all 18 training cases), with the official augmentation. A low-data run
    (``num_train_subjects``) draws its subjects from the training split alone either way.
    """
    rules = config.rules
    augment = (config.augment if rules.augment is None else rules.augment) if config.augment else False
    train_set = data.load(config.dataset, split="train", augment=augment, **config.data_kwargs)
    if not rules.joins_validation:
        return train_set, _split_or_none(config, "val")
    # trained on, so loaded as the training split is (the official augmentation keeps the slices as stored)
    val_set = _split_or_none(config, "val", augment=augment) if trains_on_validation(config) else None
    if val_set is not None:
        train_set = train_set.joined(val_set)
    return train_set, None


def load_run(run_dir: str | Path, device: str = "auto") -> Run:
    """A finished run read back from its folder: the selected model and loss module (the
    best-validation epoch, from ``best.pt``) and the tables and record :func:`train` wrote
    (``test`` is None for a run whose data had no test split)."""
    run_dir = Path(run_dir)
    missing = [name for name in ("record.json", checkpoints.BEST, "history.csv", "epochs.csv")
               if not (run_dir / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{run_dir} is not a finished run: {', '.join(missing)} missing")
    record = json.loads((run_dir / "record.json").read_text())
    config = TrainConfig(**record["config"])
    model, loss_fn = build_model_and_loss(checkpoints.saved_config(config), record["data"]["in_channels"],
                                          record["data"]["num_classes"], resolve_device(device))
    checkpoints.restore(model, loss_fn, checkpoints.read(run_dir / checkpoints.BEST))
    tables = {name: pd.read_csv(run_dir / f"{name}.csv") if (run_dir / f"{name}.csv").is_file() else None
              for name in ("history", "epochs", "test")}
    return Run(config, model, loss_fn, tables["history"], tables["epochs"], tables["test"], record, run_dir)


def encoder_weights(config: TrainConfig) -> str | None:
    """Which ImageNet weights the run's encoder starts from (:func:`lomix_core.models.weights.source`);
    None when it starts from random weights."""
    kwargs = config.model_kwargs
    encoder = models.spec(config.model).encoder
    if not (kwargs.get("pretrained") or kwargs.get("weights")) or encoder is None:
        return None
    from ..models import weights

    return weights.source(encoder, kwargs.get("weights"))

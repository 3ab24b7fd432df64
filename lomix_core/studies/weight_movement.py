"""How far LoMix's learned map weights can move, how far they moved, and what moved them.

Each map weight is ``w = softplus(θ)`` with θ from 0 (w = log 2). Every θ's gradient is
``σ(θ)·L > 0``, so every θ falls. Under AdamW a step moves θ by ``lr·m̂/√v̂``, about lr at most
(it exceeds lr only while the gradient grows), so after T steps θ has moved at most about
``lr × T``: the *θ bound* of a run. The bound caps how unequal the weights can become: in the
most unequal case one θ stays at 0 while another falls the whole bound, so the largest weight
can be at most ``log 2 / softplus(-bound)`` times the smallest (:func:`ratio_cap`).

* A profile whose bound lets that ratio reach :data:`LEARNED_RATIO` gives the weighting room to
  learn; one whose bound keeps every weight within :data:`EQUAL_RATIO` of every other trains an
  equal-weight loss in practice (:func:`room`, :func:`profile_rooms`).
* The weights *collapse* when they move together more than apart: their common fall
  (log 2 − mean weight) exceeds their spread (largest − smallest weight) (:func:`collapse_ratio`).
  A common factor of all weights changes almost nothing under Adam, which divides every gradient
  by its own running size; only their relative spread reweights the maps.
* :func:`fall_predictions` predicts each θ's fall from the run's own per-step map losses (the
  history's ``L:`` columns) three ways (Adam's constant-rate rule, AdamW replayed on the recorded
  gradients, and plain SGD as the loss-size control) and :func:`fall_statement` says which agree.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from .. import data
from ..pipeline import profiles
from ..pipeline.config import TrainConfig, epoch_steps, slices_used

LOG2 = math.log(2)
LEARNED_RATIO = 2.0  # the bound lets one weight reach twice another: the weighting can really learn
EQUAL_RATIO = 1.25  # the bound keeps every weight within 25 % of every other: equal weights in practice
AGREEMENT = 0.10  # a prediction of the fall agrees when it is within 10 % of the measured fall on every map
# Synapse cannot be read everywhere: the official lists' 2211 training slices (18 cases, of which the
# kit holds 2 out for validation in proportion).
SYNAPSE_SLICES = {"train": round(2211 * 16 / 18), "val": round(2211 * 2 / 18)}

ROOM_LEARNED, ROOM_PARTLY, ROOM_EQUAL = "learned", "partly learned", "equal weights in practice"


def softplus(x):
    return np.logaddexp(0, x)


def softplus_inverse(w):
    """θ with softplus(θ) = w, for w > 0."""
    w = np.asarray(w, dtype=float)
    return w + np.log(-np.expm1(-w))  # log(e^w - 1) without overflow


def ratio_cap(bound: float) -> float:
    """The largest max/min weight ratio a run whose θ moved at most ``bound`` can reach."""
    return LOG2 / float(softplus(-bound))


def theta_for_ratio(ratio: float) -> float:
    """The θ move the most unequal case needs to make the largest weight ``ratio`` times the smallest."""
    if not ratio >= 1:
        raise ValueError(f"ratio must be >= 1 (largest over smallest weight), got {ratio!r}")
    return float(-softplus_inverse(LOG2 / ratio))


def room(bound: float) -> str:
    """Whether a θ bound lets the weighting learn: :data:`ROOM_LEARNED`, :data:`ROOM_PARTLY` or :data:`ROOM_EQUAL`."""
    if not bound >= 0:
        raise ValueError(f"the θ bound (lr × steps) must be >= 0, got {bound!r}")
    cap = ratio_cap(bound)
    return ROOM_LEARNED if cap >= LEARNED_RATIO else ROOM_EQUAL if cap < EQUAL_RATIO else ROOM_PARTLY


def _weights(history: pd.DataFrame) -> pd.DataFrame:
    columns = [c for c in getattr(history, "columns", []) if str(c).startswith("w:")]
    if not columns or history.empty:
        raise ValueError("history must be a run's history: a DataFrame with rows and one 'w:<map>' weight column "
                         "per map (run.history of a run that learns its weights)")
    return history[columns]


def collapse_ratio(weights: Sequence[float], start: float = LOG2) -> float:
    """Spread over common fall, ``(max − min) / (start − mean)``: below 1 the weights have moved more
    together than apart (collapse); inf while they have not fallen at all."""
    w = np.asarray(weights, dtype=float)
    fall = start - w.mean()
    return float(np.ptp(w) / fall) if fall > 0 else math.inf


def movement(history: pd.DataFrame, lr: float) -> pd.DataFrame:
    """Step by step, how far the weights have moved against how far they could have: ``lr_steps``
    (lr × steps so far, the θ bound), the mean and largest θ move, the weights' max/min ratio
    (``spread``) and :func:`collapse_ratio`."""
    weights = _weights(history).to_numpy(dtype=float)
    theta = softplus_inverse(weights)
    steps = np.arange(1, len(weights) + 1)
    return pd.DataFrame({"step": steps, "lr_steps": lr * steps, "mean_theta_move": -theta.mean(axis=1),
                         "max_theta_move": np.abs(theta).max(axis=1),
                         "spread": weights.max(axis=1) / weights.min(axis=1),
                         "collapse_ratio": [collapse_ratio(w) for w in weights]})


def run_movement(history: pd.DataFrame, lr: float) -> dict[str, float]:
    """The last row of :func:`movement` with the run's bound, its :func:`ratio_cap` and :func:`room`."""
    last = movement(history, lr).iloc[-1]
    bound = float(last["lr_steps"])
    return {"lr": lr, "steps": int(last["step"]), "theta_bound": bound, "ratio_cap": ratio_cap(bound),
            "room": room(bound), "mean_theta_move": float(last["mean_theta_move"]),
            "max_theta_move": float(last["max_theta_move"]), "bound_used": float(last["max_theta_move"]) / bound,
            "spread": float(last["spread"]), "collapse_ratio": float(last["collapse_ratio"])}


def _count_slices(config: TrainConfig) -> dict[str, int]:
    if config.dataset == "synapse":
        try:
            kwargs = {**config.data_kwargs, "size": 32}
            return {split: len(data.load("synapse", split=split, **kwargs)) for split in ("train", "val")}
        except (FileNotFoundError, OSError, ValueError):
            return dict(SYNAPSE_SLICES)
    kwargs = {**config.data_kwargs, "size": 32}  # counting slices needs no resolution
    return {split: len(data.load(config.dataset, split=split, **kwargs)) for split in ("train", "val")}


def profile_rooms(names: Sequence[str] = ("smoke", "cpu", "colab", "full"),
                  count_slices: Callable[[TrainConfig], Mapping[str, int]] = _count_slices) -> pd.DataFrame:
    """One row per profile and dataset that chapters 03–06 train LoMix on: θ's lr (``map_weight_lr``,
    else the network's), steps per run, the θ bound lr × steps, :func:`ratio_cap` and :func:`room`,
    read from the profiles' records now.
    ``count_slices(config)`` gives ``{"train": n, "val": n}`` slices of the config's dataset."""
    rows = []
    for name in names:
        for dataset in dict.fromkeys([*profiles.comparison_datasets(name), profiles.ablation_dataset(name)]):
            config, seeds = profiles.comparison(name, dataset=dataset, supervision="lomix")
            sizes = count_slices(config)
            steps = config.epochs * epoch_steps(config, slices_used(config, sizes["train"], sizes["val"])[0])
            bound = config.theta_lr * steps
            rows.append({"profile": name, "dataset": dataset, "lr": config.theta_lr, "epochs": config.epochs,
                         "steps": steps, "theta_bound": bound, "ratio_cap": ratio_cap(bound), "room": room(bound)})
    return pd.DataFrame(rows)


def rooms_statement(rooms: pd.DataFrame) -> str:
    """Which profiles give the learned weighting room to learn, from :func:`profile_rooms`'s table."""
    if rooms.empty:
        raise ValueError("no profile rows: pass profile_rooms()'s table")
    parts = []
    for verdict in (ROOM_LEARNED, ROOM_PARTLY, ROOM_EQUAL):
        rows = rooms[rooms["room"] == verdict]
        if len(rows):
            listed = ", ".join(f"{r.profile} on {r.dataset} (lr × steps = {r.lr:g} × {r.steps} = {r.theta_bound:.3g}: "
                               f"at most {r.ratio_cap:.3g}×)" for r in rows.itertuples())
            parts.append(f"{verdict}: {listed}")
    return (f"How unequal the learned weights can become (largest over smallest weight, if one θ stayed at 0 and "
            f"another fell the whole bound; learned needs at least {LEARNED_RATIO:g}×, equal weights in practice is "
            f"below {EQUAL_RATIO:g}×). " + "; ".join(parts) + ".")


def map_gradients(history: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(the gradient every θ saw at every step, ``[T, M]``; θ after every step, ``[T, M]``), from the
    history's per-step map losses (``L:``) and weights (``w:``): ∂L/∂θ_i = σ(θ_i)·L_i with θ before the step."""
    weights = _weights(history)
    loss_columns = ["L:" + c[2:] for c in weights.columns]
    missing = [c for c in loss_columns if c not in history.columns]
    if missing:
        raise ValueError(f"history has no per-map losses ({missing[0]!r} and {len(missing) - 1} more missing); "
                         f"expected run.history of a run trained by this kit, which records one 'L:<map>' column per map")
    theta = softplus_inverse(weights.to_numpy(dtype=float))
    before = np.vstack([np.zeros(theta.shape[1]), theta[:-1]])
    return 1 / (1 + np.exp(-before)) * history[loss_columns].to_numpy(dtype=float), theta


def adamw_path(gradients: np.ndarray, lr: float, weight_decay: float = 0.0, betas=(0.9, 0.999),
               eps: float = 1e-8) -> np.ndarray:
    """θ after every step of AdamW from θ = 0, given the gradient of every step (``[T, M]``)."""
    theta, m, v = np.zeros(gradients.shape[1]), 0.0, 0.0
    path = np.empty_like(gradients, dtype=float)
    for t, g in enumerate(gradients, start=1):
        m = betas[0] * m + (1 - betas[0]) * g
        v = betas[1] * v + (1 - betas[1]) * g**2
        theta = theta * (1 - lr * weight_decay) - lr * (m / (1 - betas[0]**t)) / (np.sqrt(v / (1 - betas[1]**t)) + eps)
        path[t - 1] = theta
    return path


def fall_predictions(history: pd.DataFrame, lr: float, weight_decay: float = 0.0) -> pd.DataFrame:
    """Per map: the measured fall of θ over the run, and three predictions from its recorded gradients.

    * ``adam_rule``: Adam's constant rate, lr × T × r_i with r_i = mean(g_i) / rms(g_i) over the run
      (exact for a gradient whose distribution does not change);
    * ``adam_replay``: AdamW replayed on the recorded gradients (it follows how they changed);
    * ``sgd``: plain SGD at the same lr, lr × Σ_t g_i,t: the fall proportional to the loss's size.

    The replay uses the very gradients that moved θ, so its agreement checks that AdamW on σ(θ)·L
    moved θ and nothing else; the rule's error then measures what a trend in the gradients did
    (``gradient_first_third`` and ``gradient_last_third`` are their means over the run's first and
    last third of steps).
    """
    gradients, theta = map_gradients(history)
    r = gradients.mean(axis=0) / np.sqrt((gradients**2).mean(axis=0))
    names = [c[2:] for c in _weights(history).columns]
    third = max(1, len(gradients) // 3)
    return pd.DataFrame({"measured": -theta[-1], "adam_rule": lr * len(gradients) * r,
                         "adam_replay": -adamw_path(gradients, lr, weight_decay)[-1],
                         "sgd": lr * gradients.sum(axis=0), "r": r, "mean_gradient": gradients.mean(axis=0),
                         "gradient_first_third": gradients[:third].mean(axis=0),
                         "gradient_last_third": gradients[-third:].mean(axis=0)},
                        index=pd.Index(names, name="map"))


PREDICTIONS = {"adam_rule": "Adam's constant-rate rule (lr × steps × r_i)",
               "adam_replay": "AdamW replayed on the recorded gradients",
               "sgd": "plain SGD at the same lr (the loss-size control)"}


def prediction_errors(table: pd.DataFrame) -> pd.DataFrame:
    """Per prediction: mean predicted over mean measured fall, the worst map's relative error, the
    max/min ratio of the per-map falls, and whether it agrees (every map within :data:`AGREEMENT`)."""
    measured = table["measured"].to_numpy(dtype=float)
    rows = {}
    for column in PREDICTIONS:
        predicted = table[column].to_numpy(dtype=float)
        worst = float(np.max(np.abs(predicted - measured) / np.abs(measured)))
        rows[column] = {"mean_ratio": predicted.mean() / measured.mean(), "worst_error": worst,
                        "fall_spread": predicted.max() / predicted.min(), "agrees": worst <= AGREEMENT}
    errors = pd.DataFrame(rows).T
    errors.loc["measured"] = {"mean_ratio": 1.0, "worst_error": 0.0, "fall_spread": measured.max() / measured.min(),
                              "agrees": True}
    return errors


def fall_statement(table: pd.DataFrame, lr: float, steps: int) -> str:
    """What a run's fall of θ over ``steps`` steps at ``lr`` agrees with, from :func:`fall_predictions`'s
    table; agreement is claimed only for a prediction within :data:`AGREEMENT` of the measured fall
    on every map."""
    errors = prediction_errors(table)
    per_step = table["measured"] / (steps * lr)
    head = (f"θ fell {per_step.mean():.2f} × lr per step on average (maps {per_step.min():.2f} to {per_step.max():.2f} "
            f"× lr; the fastest map fell {errors.loc['measured', 'fall_spread']:.2f}× as far as the slowest).")
    parts = [f"{PREDICTIONS[c]} predicts {errors.loc[c, 'mean_ratio']:.2f}× the measured mean fall, worst map "
             f"off by {100 * errors.loc[c, 'worst_error']:.0f} %, fastest/slowest {errors.loc[c, 'fall_spread']:.2f}×"
             for c in PREDICTIONS]
    agree = [c for c in PREDICTIONS if errors.loc[c, "agrees"]]
    within = f"within {100 * AGREEMENT:.0f} % on every map"
    if not agree:
        verdict = f"No prediction agrees {within}, so this run does not say which mechanism set the fall."
    elif agree == ["sgd"]:
        verdict = (f"Only the loss-size (SGD) control agrees {within}: this run's fall looks like plain gradient "
                   f"descent, not Adam's.")
    elif "sgd" in agree:
        verdict = f"Adam and the loss-size (SGD) control both agree {within}, so this run cannot tell them apart."
    else:
        which = " and ".join(PREDICTIONS[c] for c in agree)
        verdict = (f"{which[0].upper() + which[1:]} agree{'s' * (len(agree) == 1)} {within} and the loss-size (SGD) "
                   f"control does not: Adam's normalised step, not the loss's size, set the fall.")
    trend = ""
    if errors.loc["adam_replay", "agrees"] and not errors.loc["adam_rule", "agrees"]:
        first, last = table["gradient_first_third"], table["gradient_last_third"]
        direction = "fell" if (last < first).mean() > 0.5 else "rose"
        sign = "over" if errors.loc["adam_rule", "mean_ratio"] > 1 else "under"
        trend = (f" The constant-rate rule {sign}estimates because it ignores the trend: the gradients {direction} "
                 f"during the run (mean over maps {first.mean():.3g} in the first third of steps, {last.mean():.3g} "
                 f"in the last), and Adam's √v̂ averages g² over about 1,000 steps while m̂ follows the last 10.")
    return f"{head} " + "; ".join(parts) + f". {verdict}{trend}"


SAME_BOUND = 1.25  # runs moved alike when the largest of their values is within 25 % of the smallest


def same_bound_statement(paths: Mapping[str, pd.DataFrame]) -> str:
    """Whether runs at different lr and steps moved alike at the same lr × steps, from their
    :func:`movement` tables: the mean θ move and the weights' spread beyond equal (max/min − 1) of
    every run at the largest lr × steps all of them reached, compared by their max/min ratio."""
    if len(paths) < 2:
        raise ValueError(f"need the movement tables of at least 2 runs to compare, got {len(paths)}")
    bound = min(float(path["lr_steps"].iloc[-1]) for path in paths.values())
    at = {name: {column: float(np.interp(bound, path["lr_steps"], path[column]))
                 for column in ("mean_theta_move", "spread")} for name, path in paths.items()}
    moves = np.array([v["mean_theta_move"] for v in at.values()])
    beyond = np.array([v["spread"] - 1 for v in at.values()])
    # The verdict compares the spread beyond equal, so that is what is printed (at 4 decimals of the
    # ratio itself, two small spreads 25 % apart would both read 1.0000×).
    listed = "; ".join(f"{name}: mean θ move {v['mean_theta_move']:.3g}, spread beyond equal {v['spread'] - 1:.3g}"
                       for name, v in at.items())
    alike = moves.min() > 0 and beyond.min() > 0 and moves.max() / moves.min() <= SAME_BOUND \
        and beyond.max() / beyond.min() <= SAME_BOUND
    verdict = ("they moved alike (within 25 % on both): lr × steps, not the lr or the step count alone, set how far "
               "the weights got" if alike else
               "they did not move alike (more than 25 % apart on at least one): lr × steps bounds how far the weights "
               "can get, but it did not alone set how far they got")
    return f"At the same lr × steps ({bound:.3g}): {listed}. So {verdict}."

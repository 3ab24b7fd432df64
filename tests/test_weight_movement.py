"""lomix_core.studies.weight_movement: the θ bound, collapse, and the predictions of the weights' fall."""
import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

import lomix_core as lx
from lomix_core import weight_movement as wm
from lomix_core.pipeline.config import epoch_steps


def trained_history(optimizer_cls, mean_losses, steps=200, lr=1e-2, noise=0.05, seed=0, decay_to=0.5, **options):
    """A run's history (w: and L: columns) of softplus weights trained alone on noisy, falling map losses."""
    rng = np.random.default_rng(seed)
    decay = np.linspace(1.0, decay_to, steps)[:, None]  # the losses fall during training, as real ones do
    losses = np.maximum(mean_losses * decay + noise * rng.standard_normal((steps, len(mean_losses))), 1e-3)
    theta = torch.zeros(len(mean_losses), dtype=torch.float64, requires_grad=True)
    optimizer = optimizer_cls([theta], lr=lr, **options)
    weights = []
    for row in torch.from_numpy(losses):
        optimizer.zero_grad()
        (F.softplus(theta) * row).sum().backward()
        optimizer.step()
        weights.append(F.softplus(theta).detach().numpy().copy())
    names = [f"m{i}" for i in range(len(mean_losses))]
    return pd.concat([pd.DataFrame({"step": np.arange(1, steps + 1), "loss": 0.0}),
                      pd.DataFrame(np.array(weights), columns=[f"w:{n}" for n in names]),
                      pd.DataFrame(losses, columns=[f"L:{n}" for n in names])], axis=1)


MEAN_LOSSES = np.array([0.2, 0.5, 1.0, 2.0])


def test_ratio_cap_and_theta_for_ratio_are_inverse_and_room_reads_the_thresholds():
    assert wm.ratio_cap(0.0) == pytest.approx(1.0)
    assert wm.ratio_cap(wm.theta_for_ratio(2.0)) == pytest.approx(2.0)
    assert wm.theta_for_ratio(2.0) == pytest.approx(-math.log(math.expm1(math.log(2) / 2)))
    assert wm.room(wm.theta_for_ratio(wm.LEARNED_RATIO) + 1e-6) == wm.ROOM_LEARNED
    assert wm.room(wm.theta_for_ratio(wm.EQUAL_RATIO) - 1e-6) == wm.ROOM_EQUAL
    assert wm.room(0.5) == wm.ROOM_PARTLY  # between the two: cap 1.44
    with pytest.raises(ValueError, match="must be >= 1"):
        wm.theta_for_ratio(0.5)
    with pytest.raises(ValueError, match="lr × steps"):
        wm.room(-1.0)


def test_collapse_ratio_is_spread_over_common_fall():
    assert wm.collapse_ratio([0.5, 0.6]) == pytest.approx(0.1 / (math.log(2) - 0.55))
    assert wm.collapse_ratio([math.log(2)] * 3) == math.inf


def test_movement_measures_theta_from_the_weights():
    theta = np.array([[-0.1, -0.2], [-0.3, -0.5]])
    history = pd.DataFrame(wm.softplus(theta), columns=["w:a", "w:b"]).assign(step=[1, 2])
    moved = wm.movement(history, lr=0.5)
    assert moved["lr_steps"].tolist() == [0.5, 1.0]
    assert moved["mean_theta_move"].tolist() == pytest.approx([0.15, 0.4])
    assert moved["max_theta_move"].tolist() == pytest.approx([0.2, 0.5])
    assert moved["spread"].iloc[-1] == pytest.approx(wm.softplus(-0.3) / wm.softplus(-0.5))
    summary = wm.run_movement(history, lr=0.5)
    assert summary["theta_bound"] == 1.0 and summary["bound_used"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="'w:<map>'"):
        wm.movement(pd.DataFrame({"step": [1]}), lr=0.1)


def test_adam_replay_reproduces_torch_adamw_and_the_statement_credits_adam():
    history = trained_history(torch.optim.AdamW, MEAN_LOSSES, lr=1e-2, weight_decay=1e-4)
    table = wm.fall_predictions(history, lr=1e-2, weight_decay=1e-4)
    np.testing.assert_allclose(table["adam_replay"], table["measured"], rtol=1e-6)
    errors = wm.prediction_errors(table)
    assert errors.loc["adam_replay", "agrees"] and not errors.loc["sgd", "agrees"]
    text = wm.fall_statement(table, lr=1e-2, steps=len(history))
    assert "the loss-size (SGD) control does not: Adam's normalised step" in text
    assert "looks like plain gradient descent" not in text
    assert "the gradients fell during the run" in text and "rule overestimates" in text


def test_the_trend_sentence_follows_the_gradients_direction():
    rising = trained_history(torch.optim.AdamW, MEAN_LOSSES, lr=1e-2, decay_to=20.0, weight_decay=0.0)  # growing losses
    text = wm.fall_statement(wm.fall_predictions(rising, lr=1e-2), lr=1e-2, steps=len(rising))
    assert "the gradients rose during the run" in text and "rule underestimates" in text


def test_the_statement_flips_when_the_weights_were_trained_by_plain_sgd():
    history = trained_history(torch.optim.SGD, MEAN_LOSSES, lr=1e-2)
    table = wm.fall_predictions(history, lr=1e-2)
    np.testing.assert_allclose(table["sgd"], table["measured"], rtol=0.05)  # σ(θ) barely moves here
    text = wm.fall_statement(table, lr=1e-2, steps=len(history))
    assert "Only the loss-size (SGD) control agrees" in text and "Adam's normalised step" not in text


def test_no_agreement_is_claimed_when_no_prediction_fits():
    table = wm.fall_predictions(trained_history(torch.optim.AdamW, MEAN_LOSSES, lr=1e-2), lr=1e-2)
    table["measured"] *= 3  # a fall that neither mechanism explains
    assert "No prediction agrees" in wm.fall_statement(table, lr=1e-2, steps=200)


def test_fall_predictions_need_the_per_map_losses():
    history = trained_history(torch.optim.AdamW, MEAN_LOSSES, steps=5).drop(columns=["L:m1"])
    with pytest.raises(ValueError, match="no per-map losses"):
        wm.fall_predictions(history, lr=1e-2)


def test_profile_rooms_reads_lr_and_steps_from_the_profiles_records():
    sizes = {"train": 100, "val": 10}
    rooms = wm.profile_rooms(("smoke", "colab", "full"), count_slices=lambda config: sizes)
    for row in rooms.itertuples():
        config, _ = lx.profiles.comparison(row.profile, dataset=row.dataset, supervision="lomix")
        trained = lx.config.slices_used(config, sizes["train"], sizes["val"])[0]
        assert row.steps == config.epochs * epoch_steps(config, trained) and row.lr == config.theta_lr
        assert row.theta_bound == pytest.approx(row.lr * row.steps) and row.room == wm.room(row.theta_bound)
    assert set(rooms["profile"]) == {"smoke", "colab", "full"}
    colab, _ = lx.profiles.comparison("colab", dataset="brain_aal")
    assert rooms.set_index("profile").loc["colab", "lr"] == colab.map_weight_lr != colab.lr


def test_colab_gives_the_map_weights_room_to_learn_on_brain_aal():
    # brain_aal's 83 training slices in batches of 6 (the last partial one dropped): 13 steps an epoch. At
    # the network's lr the 150 epochs would keep the weights equal in practice; at their own rate they learn.
    config, _ = lx.profiles.comparison("colab", dataset="brain_aal", supervision="lomix")
    steps = config.epochs * epoch_steps(config, 83)
    assert steps == 1950
    assert wm.room(config.lr * steps) == wm.ROOM_EQUAL
    assert wm.room(config.theta_lr * steps) == wm.ROOM_LEARNED
    assert lx.profiles.comparison("full", dataset="synapse")[0].map_weight_lr is None  # the paper's one rate


def test_rooms_statement_follows_the_table():
    table = pd.DataFrame([{"profile": "a", "dataset": "d", "lr": 1e-4, "steps": 100, "theta_bound": 0.01,
                           "ratio_cap": wm.ratio_cap(0.01), "room": wm.room(0.01)}])
    assert "equal weights in practice: a on d" in wm.rooms_statement(table)
    table = table.assign(steps=100_000, theta_bound=10.0, ratio_cap=wm.ratio_cap(10.0), room=wm.room(10.0))
    text = wm.rooms_statement(table)
    assert "learned: a on d" in text and "equal weights in practice: a" not in text


def test_same_bound_statement_compares_runs_at_the_same_lr_steps():
    # Steady losses with a different noise per map: each θ falls at its own constant rate lr·r_i,
    # so at the same lr × steps both runs have moved alike.
    noise = np.array([0.05, 0.2, 0.5, 1.0])
    slow = trained_history(torch.optim.AdamW, MEAN_LOSSES, steps=2000, lr=1e-4, noise=noise, decay_to=1.0)
    fast = trained_history(torch.optim.AdamW, MEAN_LOSSES, steps=400, lr=5e-4, noise=noise, decay_to=1.0)
    paths = {"slow": wm.movement(slow, 1e-4), "fast": wm.movement(fast, 5e-4)}
    text = wm.same_bound_statement(paths)
    assert "At the same lr × steps (0.2)" in text and "they moved alike" in text
    # the same run against one whose weights moved twice as far: the wording flips
    twice = slow.copy()
    columns = [c for c in slow.columns if c.startswith("w:")]
    twice[columns] = wm.softplus(2 * wm.softplus_inverse(slow[columns].to_numpy()))
    text = wm.same_bound_statement({"slow": paths["slow"], "twice": wm.movement(twice, 1e-4)})
    assert "they did not move alike" in text and "they moved alike" not in text
    with pytest.raises(ValueError, match="at least 2 runs"):
        wm.same_bound_statement({"slow": paths["slow"]})

import dataclasses
import json
import math

import pandas as pd
import pytest
import torch

import lomix_core as lx
from lomix_core.foundations.records import git_state
from lomix_core.pipeline.training import fit

TINY_DATA = dict(num_subjects=6, num_slices=8, size=32, num_val=1, num_test=1)


def tiny_config(tmp_path, **overrides):
    settings = dict(epochs=2, batch_size=8, lr=3e-3, progress=False, out_dir=str(tmp_path),
                    model_kwargs={"width": 8}, data_kwargs=TINY_DATA)
    settings.update(overrides)
    return lx.TrainConfig(**settings)


@pytest.fixture(scope="module")
def lomix_run(tmp_path_factory):
    return lx.train(tiny_config(tmp_path_factory.mktemp("runs"), supervision="lomix", epochs=3))


def test_training_lowers_the_loss(lomix_run):
    epochs = lomix_run.epochs
    assert list(epochs["epoch"]) == [1, 2, 3]
    assert epochs["train_loss"].iloc[-1] < epochs["train_loss"].iloc[0]
    assert 0.0 <= lomix_run.record["metrics"]["test_dice"] <= 1.0


def test_history_records_loss_and_every_map_weight_per_step(lomix_run):
    history = lomix_run.history
    weight_columns = [c for c in history.columns if c.startswith("w:")]
    assert len(weight_columns) == 48 and "w:wf(p4,p3,p2,p1)" in weight_columns
    assert len(history) == lomix_run.record["metrics"]["steps"] == 3 * 4  # 32 slices / batch 8
    assert history["loss"].notna().all()
    # softplus weights start at log 2 and are trained, so they move (down) from the first step
    assert history["w:p1"].iloc[0] < math.log(2) and history["w:p1"].iloc[-1] < history["w:p1"].iloc[0]


def test_history_records_every_maps_unweighted_loss_per_step(lomix_run):
    """The L: columns are the losses the weights multiplied: their weighted sum is the step's loss
    (weights before the step: softplus(0) on step 1, then the w: row of the step before)."""
    history = lomix_run.history
    names = lomix_run.loss_fn.map_names
    map_losses = history[[f"L:{n}" for n in names]].to_numpy(dtype=float)
    weights = history[[f"w:{n}" for n in names]].to_numpy(dtype=float)
    before = [[math.log(2)] * len(names)] + weights[:-1].tolist()
    assert (map_losses > 0).all()
    assert ((before * map_losses).sum(axis=1) == pytest.approx(history["loss"].to_numpy(), rel=1e-4))


def test_loss_parameters_are_trained(lomix_run):
    fresh = lx.LoMixLoss(4, 9, supervision="lomix")
    trained = lomix_run.loss_fn.state_dict()
    for key in ("weighting.theta", "mutant_generator.concat.0_1.conv.weight", "mutant_generator.wf.0_1.scorers.0.weight"):
        assert key in trained
    assert not torch.equal(trained["weighting.theta"].cpu(), fresh.state_dict()["weighting.theta"])


def test_run_record_is_written_and_model_is_selected_on_validation(lomix_run):
    run_dir = lomix_run.run_dir
    for name in ("record.json", "history.csv", "epochs.csv", "test.csv", "best.pt"):
        assert (run_dir / name).exists(), name
    record = json.loads((run_dir / "record.json").read_text())
    assert record["config"]["supervision"] == "lomix" and record["metrics"]["num_supervised_maps"] == 48
    assert "TransUNet" in record["evaluation"]
    epochs = pd.read_csv(run_dir / "epochs.csv")
    best = int(epochs["val_dice"].idxmax())
    assert record["metrics"]["best_epoch"] == epochs["epoch"][best]
    # the returned model is the selected one: re-scoring validation reproduces its Dice
    val = lx.data.load("synthetic", split="val", **TINY_DATA)
    assert lx.mean_dice(lx.evaluate(lomix_run.model, val)) == pytest.approx(epochs["val_dice"][best])
    checkpoint = torch.load(run_dir / "best.pt", weights_only=False)
    assert checkpoint["epoch"] == record["metrics"]["best_epoch"]
    assert torch.load(run_dir / "last.pt", weights_only=False)["epoch"] == 3


def test_run_record_names_its_environment_and_source(lomix_run):
    environment = json.loads((lomix_run.run_dir / "record.json").read_text())["environment"]
    assert environment["lomix_core"] == lx.__version__ and environment["torch"] == torch.__version__
    for key in ("python", "numpy", "timm", "device", "device_name"):
        assert environment[key], key
    if environment["git_commit"] is None:  # the kit is not a git checkout here
        assert environment["git_dirty"] is None
    else:
        assert len(environment["git_commit"]) == 40 and isinstance(environment["git_dirty"], bool)


def test_git_state_of_a_folder_outside_any_checkout_is_none(tmp_path):
    assert git_state(tmp_path) == (None, None)
    assert git_state(tmp_path / "missing") == (None, None)


@pytest.mark.parametrize("official_bug", [False, True])
def test_model_returns_to_train_mode_after_validation(tmp_path, official_bug):
    config = tiny_config(tmp_path, supervision="deep_supervision", epochs=3, official_eval_mode_bug=official_bug)
    torch.manual_seed(0)
    train_set = lx.data.load("synthetic", split="train", **TINY_DATA)
    val_set = lx.data.load("synthetic", split="val", **TINY_DATA)
    model = lx.models.build("unet_small", 1, 9, width=8)
    calls = []
    model.register_forward_pre_hook(lambda module, args: calls.append((torch.is_grad_enabled(), module.training)))
    bn = model.encoder[0][1]
    running_means = []
    model.encoder[0].register_forward_hook(
        lambda module, args, out: running_means.append(bn.running_mean.clone()) if module.training else None)
    fit(model, lx.LoMixLoss(4, 9, supervision="deep_supervision"), train_set, val_set, config)
    training_calls = [mode for grad, mode in calls if grad]
    validation_calls = [mode for grad, mode in calls if not grad]
    assert len(training_calls) == 3 * 4 and all(training_calls[:4])
    assert validation_calls and not any(validation_calls)
    if official_bug:
        # the official defect: eval mode from epoch 2 on, BatchNorm statistics frozen
        assert not any(training_calls[4:]) and len(running_means) == 4
    else:
        assert all(training_calls[4:])
        # BatchNorm keeps updating its statistics after the first validation (epochs 2 and 3)
        assert not torch.equal(running_means[4], running_means[-1])


def test_every_preset_trains(tmp_path):
    for preset in lx.PRESETS:
        run = lx.train(tiny_config(tmp_path, supervision=preset, epochs=1, max_steps_per_epoch=2))
        assert len(run.history) == 2 and run.record["metrics"]["num_supervised_maps"] == run.loss_fn.num_supervised
        assert math.isfinite(run.history["loss"].iloc[-1])


def test_same_seed_same_result(tmp_path):
    a = lx.train(tiny_config(tmp_path / "a", supervision="mutation", epochs=2, max_steps_per_epoch=2))
    b = lx.train(tiny_config(tmp_path / "b", supervision="mutation", epochs=2, max_steps_per_epoch=2))
    assert_same_run(a, b)


def assert_same_run(a: lx.Run, b: lx.Run):
    """Bit-identical selected weights and records; only the timings may differ."""
    for module_a, module_b in [(a.model, b.model), (a.loss_fn, b.loss_fn)]:
        state_a, state_b = module_a.state_dict(), module_b.state_dict()
        assert state_a.keys() == state_b.keys()
        for key in state_a:
            assert torch.equal(state_a[key], state_b[key]), key
    timings = ["train_time_s", "elapsed_s"]
    pd.testing.assert_frame_equal(a.history, b.history)
    pd.testing.assert_frame_equal(a.epochs.drop(columns=timings), b.epochs.drop(columns=timings))
    pd.testing.assert_frame_equal(a.test, b.test)
    assert {**a.record["metrics"], "train_time_s": 0} == {**b.record["metrics"], "train_time_s": 0}
    assert a.record["map_weights_at_best_epoch"] == b.record["map_weights_at_best_epoch"]


@pytest.mark.parametrize("field, value", [("epochs", 0), ("batch_size", 0), ("lr", 0.0), ("max_steps_per_epoch", 0)])
def test_bad_config_is_rejected(field, value):
    with pytest.raises(ValueError, match=field):
        lx.TrainConfig(**{field: value})


def test_trains_a_timm_encoder_model(tmp_path):
    run = lx.train(tiny_config(tmp_path, model="pvt_v2_b0_emcad", supervision="lomix", epochs=1,
                               max_steps_per_epoch=2, model_kwargs={}))
    assert run.record["metrics"]["model_parameters"] > 3_000_000 and len(run.history) == 2


def test_comparison_profile_takes_a_model():
    config, _ = lx.profiles.comparison("smoke", model="pvt_v2_b2_emcad")
    assert config.model == "pvt_v2_b2_emcad"
    assert lx.profiles.comparison("smoke")[0].model == "unet_small"
    assert lx.profiles.comparison("full")[0].model == "pvt_v2_b2_emcad"
    assert lx.profiles.comparison("full")[0].data_kwargs["size"] == 224
    full, seeds = lx.profiles.comparison("full", dataset="brain_aal")
    assert full.epochs == 100 and len(seeds) == 5  # more steps and seeds than cpu
    assert lx.profiles.comparison("full", dataset="synthetic")[0].epochs == 30


def test_comparison_profile_takes_a_dataset():
    brain, _ = lx.profiles.comparison("cpu")
    assert brain.dataset == "brain_aal" and brain.data_kwargs == {"size": 48} and brain.epochs == 30
    phantom, _ = lx.profiles.comparison("cpu", dataset="synthetic")
    assert phantom.data_kwargs["num_subjects"] == 20 and phantom.data_kwargs["size"] == 32 and phantom.epochs == 6
    assert lx.profiles.comparison("cpu", dataset="synapse")[0].data_kwargs == {"size": 64}
    assert lx.profiles.comparison("smoke", dataset="synapse")[0].data_kwargs == {"size": 32}


def test_tracked_test_is_reported_but_never_selects(tmp_path):
    run = lx.train(tiny_config(tmp_path, supervision="last_layer", epochs=3, track_test=True))
    epochs = run.epochs
    assert "test_dice" in epochs.columns
    best = epochs.loc[epochs["best"]].iloc[-1]
    assert best["val_dice"] == epochs["val_dice"].max()  # selected on validation
    assert run.record["metrics"]["test_dice"] == pytest.approx(best["test_dice"])
    assert run.record["metrics"]["test_dice_if_selected_on_test"] == epochs["test_dice"].max()


def test_profile_configs_do_not_share_mutable_settings():
    first, _ = lx.profiles.comparison("smoke")
    first.data_kwargs["size"] = 999
    first.model_kwargs["width"] = 999
    second, _ = lx.profiles.comparison("smoke")
    assert second.data_kwargs["size"] == 32 and second.model_kwargs["width"] == 8
    assert lx.profiles.demo("smoke").data_kwargs["size"] == 32


@pytest.mark.parametrize("map_weight_lr", [None, 0.05])
def test_map_weight_lr_moves_the_map_weights_theta_at_its_own_rate(tmp_path, map_weight_lr):
    # Adam's first step moves every parameter by its lr exactly (m/sqrt(v) = ±1): θ by map_weight_lr
    # where it is set, the network's parameters by lr either way.
    config = tiny_config(tmp_path, supervision="lomix", lr=1e-3, weight_decay=0.0, map_weight_lr=map_weight_lr)
    torch.manual_seed(0)
    model = lx.models.build("unet_small", in_channels=1, num_classes=3, width=8)
    loss_fn = lx.LoMixLoss(num_maps=4, num_classes=3, supervision="lomix")
    stepper = lx.training.Stepper(model, loss_fn, config)
    before_net = [p.detach().clone() for p in model.parameters()]
    stepper(torch.randn(2, 1, 32, 32), torch.randint(0, 3, (2, 32, 32)))
    theta_move = loss_fn.weighting.theta.detach().abs()
    torch.testing.assert_close(theta_move, torch.full_like(theta_move, config.theta_lr), rtol=1e-4, atol=0)
    net_moves = torch.cat([(p.detach() - b).abs().flatten() for p, b in zip(model.parameters(), before_net)])
    assert net_moves.max() == pytest.approx(1e-3, rel=1e-3)  # the network keeps lr
    assert config.theta_lr == (map_weight_lr or 1e-3)


def test_map_weight_lr_must_be_positive():
    with pytest.raises(ValueError, match="map_weight_lr must be > 0"):
        lx.TrainConfig(map_weight_lr=0.0)

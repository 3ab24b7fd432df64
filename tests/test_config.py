"""TrainConfig's fields describe themselves once; the CLI, resumption, run keys and the runtime
estimate read those descriptions, and one function gives the steps of an epoch."""
import dataclasses

import pytest

import lomix_core as lx
from lomix_core import config as cfg
from lomix_core.__main__ import parser

TINY_DATA = dict(num_subjects=6, num_slices=8, size=32, num_val=1, num_test=1)


def test_every_field_says_what_it_is():
    for f in dataclasses.fields(lx.TrainConfig):
        assert {"help", "step_cost", "eval_cost", "resumable", "identity", "cli", "choices"} <= set(f.metadata), f.name
        assert f.metadata["help"], f.name


def test_what_a_resumed_run_may_change_and_what_a_run_key_leaves_out():
    assert cfg.RESUMABLE_CHANGES == ("out_dir", "progress")
    assert set(cfg.identity(lx.TrainConfig())) == {f.name for f in dataclasses.fields(lx.TrainConfig)} - {
        "out_dir", "run_name", "progress"}


def test_step_cost_fields_are_the_ones_a_training_step_depends_on():
    # Everything else (seed, budget, data, where it is written, device, which is timed apart) costs the same per step.
    assert set(cfg.fields_where("step_cost")) == {"supervision", "model", "operators", "weighting", "batch_size",
                                                  "amp", "model_kwargs", "protocol"}
    assert set(cfg.fields_where("eval_cost")) == {"model", "amp", "model_kwargs", "protocol"}


def test_the_cli_has_every_option_with_the_configs_defaults():
    args = parser().parse_args(["train"])
    cli_fields = {f.name for f in dataclasses.fields(lx.TrainConfig) if f.metadata["cli"] is not None}
    assert {"steps_per_epoch", "augment", "track_test"} <= cli_fields  # the ones a hand-written list had missed
    assert {name: getattr(args, name) for name in cli_fields} == {
        name: value for name, value in dataclasses.asdict(lx.TrainConfig()).items() if name in cli_fields}


def test_cli_options_parse_to_the_fields_types():
    args = parser().parse_args(["train", "--steps-per-epoch", "7", "--lr", "0.002", "--augment", "false", "--track-test",
                                "--operators", "add", "wf", "--weighting", "equal", "--data-kwargs", '{"size": 32}',
                                "--protocol", "official", "--amp"])
    assert (args.steps_per_epoch, args.lr, args.augment, args.track_test) == (7, 0.002, False, True)
    assert (args.operators, args.weighting, args.data_kwargs, args.protocol, args.amp) == (
        ["add", "wf"], "equal", {"size": 32}, "official", True)
    assert parser().parse_args(["train", "--augment", "intensity"]).augment == "intensity"
    assert parser().parse_args(["train", "--augment", "yes"]).augment is True


def test_protocols_are_read_from_one_table():
    assert lx.TrainConfig().rules == cfg.PROTOCOLS["kit"]
    official = lx.TrainConfig(protocol="official").rules
    assert (official.joins_validation, official.augment, official.official_network, official.wf_sharing,
            official.drop_last_batch, official.scoring) == (True, "official", True, "size", False, "zoom")
    with pytest.raises(ValueError, match=r"unknown protocol 'paper'; expected one of \('kit', 'official'\)"):
        lx.TrainConfig(protocol="paper")


def test_epoch_steps():
    config = lx.TrainConfig(batch_size=8)
    assert cfg.epoch_steps(config, 83) == 10  # the last partial batch is dropped
    assert cfg.epoch_steps(config, 5) == 1  # one short batch: nothing to drop
    assert cfg.epoch_steps(dataclasses.replace(config, max_steps_per_epoch=3), 83) == 3
    assert cfg.epoch_steps(dataclasses.replace(config, steps_per_epoch=20), 5) == 20
    assert cfg.epoch_steps(dataclasses.replace(config, steps_per_epoch=20, max_steps_per_epoch=7), 5) == 7
    assert cfg.epoch_steps(dataclasses.replace(config, protocol="official"), 83) == 11  # the official loader keeps the partial batch


@pytest.mark.parametrize("overrides", [{}, {"steps_per_epoch": 3}])
def test_training_makes_the_steps_epoch_steps_gives(tmp_path, overrides):
    config = lx.TrainConfig(supervision="last_layer", epochs=2, batch_size=4, model_kwargs={"width": 8},
                            data_kwargs=TINY_DATA, out_dir=str(tmp_path), progress=False, **overrides)
    run = lx.train(config)
    train_slices = run.record["data"]["train_slices"]
    assert run.record["metrics"]["steps"] == config.epochs * cfg.epoch_steps(config, train_slices)


def test_slices_used_follow_training_data():
    kit, official = lx.TrainConfig(), lx.TrainConfig(protocol="official")
    assert cfg.slices_used(kit, 1966, 245) == (1966, 245)
    assert cfg.slices_used(official, 1966, 245) == (2211, 0)  # all 18 Synapse cases, nothing to validate on
    low = dataclasses.replace(official, data_kwargs={"num_train_subjects": 1})
    assert cfg.slices_used(low, 120, 245) == (120, 0)  # a low-data subset comes from the training split alone
    assert not cfg.drops_last_batch(official, 2211) and cfg.drops_last_batch(kit, 2211)
    assert not cfg.drops_last_batch(kit, 5)  # one short batch: nothing to drop


@pytest.mark.parametrize("augment", ["jitter", "True", 1, None])
def test_an_unknown_augment_is_refused_when_the_config_is_made(augment):
    with pytest.raises(ValueError, match=r"augment must be one of \(False, True, 'kit', 'official', 'intensity'\), "
                                         rf"got {augment!r}$"):
        lx.TrainConfig(augment=augment)
    for allowed in (False, True, "kit", "official", "intensity"):
        assert lx.TrainConfig(augment=allowed).augment == allowed

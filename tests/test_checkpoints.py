"""The checkpoint format: what best.pt and last.pt hold, how they are read back, and the network
their weights fit (lomix_core.pipeline.checkpoints)."""
import dataclasses

import pytest
import torch

import lomix_core as lx
from lomix_core.pipeline import checkpoints


def small(**overrides):
    return lx.TrainConfig(**{"model": "unet_small", "model_kwargs": {"width": 4}, "supervision": "lomix", **overrides})


def test_a_selected_state_is_a_copy_later_epochs_do_not_change():
    config = small()
    model, loss_fn = checkpoints.build_model_and_loss(config, 1, 3, torch.device("cpu"))
    state = checkpoints.selected_state(model, loss_fn, epoch=2, val_dice=0.5, config=config, preprocessing={})
    before = {k: v.clone() for k, v in state["model"].items()}
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(1.0)
    assert all(torch.equal(before[k], state["model"][k]) for k in before)
    assert state["config"] == dataclasses.asdict(config) and state["epoch"] == 2


def test_a_saved_checkpoint_restores_network_and_loss(tmp_path):
    config = small()
    model, loss_fn = checkpoints.build_model_and_loss(config, 1, 3, torch.device("cpu"))
    with torch.no_grad():
        for parameter in loss_fn.parameters():
            parameter.fill_(0.25)
    checkpoints.save(checkpoints.selected_state(model, loss_fn, 1, 0.1, config, {}), tmp_path / checkpoints.BEST)
    saved = checkpoints.read(tmp_path / checkpoints.BEST)
    again, again_loss = checkpoints.build_model_and_loss(checkpoints.saved_config(saved["config"]), 1, 3,
                                                         torch.device("cpu"))
    checkpoints.restore(again, again_loss, saved)
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
    assert all(torch.all(p == 0.25) for p in again_loss.parameters())


def test_reading_a_missing_or_foreign_file_says_what_was_expected(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"does not exist; expected a best\.pt written by train"):
        checkpoints.read(tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"^cannot read checkpoint .*junk\.pt: .*expected a best\.pt or last\.pt"):
        checkpoints.read(tmp_path / "junk.pt")
    torch.save({"weights": 1}, tmp_path / "foreign.pt")  # a torch file, but not one train wrote
    with pytest.raises(ValueError, match=r"KeyError"):
        checkpoints.read(tmp_path / "foreign.pt")


def test_a_training_state_resumes_only_a_run_with_the_same_config(tmp_path):
    config = small(lr=3e-3)
    model, loss_fn = checkpoints.build_model_and_loss(config, 1, 3, torch.device("cpu"))
    optimizer = torch.optim.AdamW([*model.parameters(), *loss_fn.parameters()])
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    state = checkpoints.training_state(1, config, model, loss_fn, {}, optimizer, scaler, rng={}, best={},
                                       step_losses=[], step_weights=[], step_map_losses=[], epochs=[])
    checkpoints.save(state, tmp_path / checkpoints.LAST)
    assert checkpoints.read_training_state(tmp_path / checkpoints.LAST, config)["epoch"] == 1
    # where the run writes (a resumable change) may differ; its learning rate may not
    assert checkpoints.read_training_state(tmp_path / checkpoints.LAST, dataclasses.replace(config, out_dir="x"))
    with pytest.raises(checkpoints.ResumeError, match=r"different config: lr=0\.01 \(saved 0\.003\)$"):
        checkpoints.read_training_state(tmp_path / checkpoints.LAST, dataclasses.replace(config, lr=0.01))


def test_only_models_with_an_official_form_build_under_the_official_protocol():
    with pytest.raises(ValueError, match=r"model 'unet_small' has no official form; expected one of"):
        checkpoints.model_kwargs(small(protocol="official"))


def test_a_checkpoint_is_rebuilt_without_fetching_imagenet_weights_again():
    saved = {**dataclasses.asdict(lx.TrainConfig(model="pvt_v2_b0_emcad", protocol="official",
                                                 model_kwargs={"pretrained": True, "weights": "x.pth", "drop_path_rate": 0.2})),
             "a_field_removed_since": 1}
    config = checkpoints.saved_config(saved)
    assert config.model_kwargs == {"drop_path_rate": 0.2}
    assert checkpoints.model_kwargs(config) == {"drop_path_rate": 0.2, "official": True}  # one rule for both readers

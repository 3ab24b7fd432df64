import pytest
import torch

import lomix_core as lx


def test_registry_lists_and_rejects():
    assert "unet_small" in lx.models.available()
    with pytest.raises(ValueError, match=r"unknown model 'unet_big'; expected one of \[.*'unet_small'"):
        lx.models.build("unet_big", 1, 9)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_unet_small_returns_four_maps_coarse_to_fine_at_input_size(mode):
    torch.manual_seed(0)
    model = lx.models.build("unet_small", in_channels=1, num_classes=9)
    getattr(model, mode)()
    out = model(torch.randn(2, 1, 64, 48))
    assert isinstance(out, list) and len(out) == model.num_maps == 4
    assert all(o.shape == (2, 9, 64, 48) for o in out)
    # coarse → fine: the coarsest head sees stride 8, so its map is smoother than the finest
    roughness = [(o[..., 1:] - o[..., :-1]).abs().mean().item() for o in out]
    assert roughness[0] < roughness[-1]


def test_unet_small_size_and_input_check():
    model = lx.models.build("unet_small", 1, 9)
    assert 1_000_000 <= sum(p.numel() for p in model.parameters()) <= 2_000_000
    with pytest.raises(ValueError, match="divisible by 16"):
        model(torch.randn(1, 1, 60, 64))


def test_model_feeds_the_loss_end_to_end():
    torch.manual_seed(0)
    model = lx.models.build("unet_small", 3, 4, width=8)
    loss_fn = lx.LoMixLoss(model.num_maps, 4, supervision="lomix")
    loss = loss_fn(model(torch.randn(2, 3, 32, 32)), torch.randint(0, 4, (2, 32, 32)))
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_unknown_model_option_is_named():
    with pytest.raises(ValueError, match=r"model 'unet_small' does not take \['pretrained'\]; its options are \['width'\]"):
        lx.models.build("unet_small", 1, 9, pretrained=True)

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


@pytest.mark.parametrize("size_in, size_out", [((6, 6), (48, 48)), ((12, 24), (48, 48)), ((5, 7), (13, 22)),
                                               ((7, 7), (224, 224)), ((48, 40), (20, 17))])
def test_resize_bilinear_equals_interpolate_in_value_and_gradient(size_in, size_out):
    from lomix_core.models.upsample import resize_bilinear

    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, *size_in, generator=g, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(2, 3, *size_out, generator=g, dtype=torch.float64)
    expected = torch.nn.functional.interpolate(x, size=size_out, mode="bilinear", align_corners=False)
    resized = resize_bilinear(x, size_out)
    torch.testing.assert_close(resized, expected, rtol=0, atol=1e-12)
    (grad_expected,) = torch.autograd.grad(expected, x, upstream)
    (grad,) = torch.autograd.grad(resized, x, upstream)
    torch.testing.assert_close(grad, grad_expected, rtol=0, atol=1e-12)


def test_resize_bilinear_in_float32_and_at_the_same_size():
    from lomix_core.models.upsample import interpolation_matrix, resize_bilinear

    x = torch.randn(8, 8, 6, 6)
    expected = torch.nn.functional.interpolate(x, size=(48, 48), mode="bilinear", align_corners=False)
    assert (resize_bilinear(x, (48, 48)) - expected).abs().max() < 2e-6
    assert resize_bilinear(x, torch.Size([6, 6])) is x
    # ×8: every weight is a multiple of 1/16, so exact; each row sums to 1
    matrix = interpolation_matrix(6, 48)
    assert torch.equal(matrix * 16, (matrix * 16).round()) and torch.equal(matrix.sum(1), torch.ones(48))
    with pytest.raises(ValueError, match=r"size must be \(height, width\), got \(48,\)"):
        resize_bilinear(x, (48,))

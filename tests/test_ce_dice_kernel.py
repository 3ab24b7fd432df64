"""The loss's C kernel against its PyTorch path, and its fallback."""
import pytest
import torch

from lomix_core import ce_dice_kernel
from lomix_core.map_loss import ce_dice_losses


@pytest.fixture
def pytorch_path(monkeypatch):
    """Switch the kernel off for the duration of a call."""
    def run(fn):
        monkeypatch.setenv(ce_dice_kernel.SWITCH, "0")
        ce_dice_kernel.load.cache_clear()
        try:
            return fn()
        finally:
            monkeypatch.delenv(ce_dice_kernel.SWITCH)
            ce_dice_kernel.load.cache_clear()
    return run


def loss_and_grads(maps, target, mix, upstream):
    maps = maps.clone().requires_grad_()
    losses = ce_dice_losses(maps, target, *mix)
    (upstream * losses).sum().backward()
    return losses.detach(), maps.grad


def test_the_kernel_builds_on_this_machine():
    assert ce_dice_kernel.load() is not None, "no C compiler? the loss would run in PyTorch"
    assert ce_dice_kernel.applies(torch.zeros(1, 1, 2, 1, 1))
    assert not ce_dice_kernel.applies(torch.zeros(1, 1, 2, 1, 1, dtype=torch.float64))


@pytest.mark.parametrize("shape", [(1, 1, 2, 1, 1), (3, 2, 5, 7, 9), (48, 2, 8, 16, 16), (2, 1, 9, 11, 65)])
@pytest.mark.parametrize("scale", [1.0, 30.0])
def test_kernel_equals_the_pytorch_path_and_fp64(shape, scale, pytorch_path):
    """Blocks cut at odd pixel counts, one class pair up to 9 classes, saturated logits; the
    kernel must agree with the PyTorch path and be no further from fp64 than it."""
    g = torch.Generator().manual_seed(sum(shape))
    maps = scale * torch.randn(shape, generator=g)
    target = torch.randint(0, shape[2], (shape[1], *shape[3:]), generator=g)
    upstream, mix = torch.rand(shape[0], generator=g), (0.3, 0.7)
    kernel = loss_and_grads(maps, target, mix, upstream)
    eager = pytorch_path(lambda: loss_and_grads(maps, target, mix, upstream))
    exact = loss_and_grads(maps.double(), target, mix, upstream.double())
    torch.testing.assert_close(kernel[0], eager[0], rtol=1e-5, atol=1e-6)
    scale_g = float(exact[1].abs().max())
    torch.testing.assert_close(kernel[1], eager[1], rtol=0, atol=1e-5 * scale_g)
    # at most 1e-6 of the largest value away from fp64
    assert float((kernel[0].double() - exact[0]).abs().max()) <= 1e-6 * float(exact[0].abs().max()) + 1e-7
    assert float((kernel[1].double() - exact[1]).abs().max()) <= 1e-6 * scale_g


def test_switched_off_the_kernel_is_not_loaded(pytorch_path):
    assert pytorch_path(ce_dice_kernel.load) is None

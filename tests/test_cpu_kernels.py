"""The loss's C kernels against their PyTorch paths, and the fallback."""
import pytest
import torch

from lomix_core import cpu_kernels
from lomix_core.map_loss import ce_dice_losses


@pytest.fixture
def pytorch_path(monkeypatch):
    """Switch the kernel off for the duration of a call."""
    def run(fn):
        monkeypatch.setenv(cpu_kernels.SWITCH, "0")
        cpu_kernels.load.cache_clear()
        try:
            return fn()
        finally:
            monkeypatch.delenv(cpu_kernels.SWITCH)
            cpu_kernels.load.cache_clear()
    return run


def loss_and_grads(maps, target, mix, upstream):
    maps = maps.clone().requires_grad_()
    losses = ce_dice_losses(maps, target, *mix)
    (upstream * losses).sum().backward()
    return losses.detach(), maps.grad


def test_the_kernel_builds_on_this_machine():
    assert cpu_kernels.load() is not None, "no C compiler? the loss would run in PyTorch"
    assert cpu_kernels.applies(torch.zeros(1, 1, 2, 1, 1))
    assert not cpu_kernels.applies(torch.zeros(1, 1, 2, 1, 1, dtype=torch.float64))


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
    assert pytorch_path(cpu_kernels.load) is None


@pytest.mark.parametrize("num_maps", [2, 4, 5])
def test_weighted_sum_equals_pytorch_values_and_gradients(num_maps):
    from lomix_core.fusion import MutantGenerator

    g = torch.Generator().manual_seed(num_maps)
    member = MutantGenerator(num_maps, 3, ("wf",)).membership
    scores = torch.randn(member.shape[0], num_maps, 2, 5, 7, generator=g).masked_fill(~member[:, :, None, None, None],
                                                                                     float("-inf"))
    alpha = scores.softmax(dim=1).requires_grad_()
    x = torch.randn(num_maps, 2, 3, 5, 7, generator=g, requires_grad=True)
    upstream = torch.randn(member.shape[0], 2, 3, 5, 7, generator=g)
    got = cpu_kernels.WeightedSum.apply(alpha, x, member)
    want = sum(alpha[:, i, :, None] * x[i] for i in range(num_maps))
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    got_grads = torch.autograd.grad((got * upstream).sum(), [alpha, x])
    want_grads = torch.autograd.grad((want * upstream).sum(), [alpha, x])
    members = member[:, :, None, None, None].expand_as(alpha)  # off the members α is a constant 0
    torch.testing.assert_close(got_grads[0][members], want_grads[0][members], rtol=1e-5, atol=1e-5)
    assert (got_grads[0][~members] == 0).all()
    torch.testing.assert_close(got_grads[1], want_grads[1], rtol=1e-5, atol=1e-5)


def test_kernel_reads_a_permuted_stack_without_copying_and_matches(pytorch_path):
    """concat's mutants arrive as a permuted view [s, B, O, H, W] of a [s, O, B, H, W] tensor."""
    g = torch.Generator().manual_seed(5)
    base = torch.randn(6, 5, 3, 7, 9, generator=g)  # [M, C, B, H, W]
    maps = base.transpose(1, 2)  # [M, B, C, H, W], not contiguous
    target = torch.randint(0, 5, (3, 7, 9), generator=g)
    upstream = torch.rand(6, generator=g)
    assert cpu_kernels._pixels_contiguous(maps).data_ptr() == maps.data_ptr()
    kernel = loss_and_grads(maps, target, (0.3, 0.7), upstream)
    eager = pytorch_path(lambda: loss_and_grads(maps.contiguous(), target, (0.3, 0.7), upstream))
    torch.testing.assert_close(kernel[0], eager[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(kernel[1], eager[1], rtol=1e-4, atol=1e-6)


def test_a_failed_build_warns_once_and_the_loss_runs_in_pytorch(monkeypatch, tmp_path):
    import lomix_core as lx

    monkeypatch.setenv("CC", "false")  # a "compiler" that always fails
    monkeypatch.setenv("LOMIX_CACHE", str(tmp_path))
    cpu_kernels.load.cache_clear()
    try:
        with pytest.warns(UserWarning, match="did not build"):
            assert cpu_kernels.load() is None
        logits = [torch.randn(2, 4, 6, 6, requires_grad=True) for _ in range(4)]
        loss = lx.LoMixLoss(4, 4, supervision="lomix")(logits, torch.randint(0, 4, (2, 6, 6)))
        loss.backward()
        assert torch.isfinite(loss) and all(m.grad is not None for m in logits)
    finally:
        cpu_kernels.load.cache_clear()

"""The loss's fast path (on a CPU: the fused mutant kernel and the C CE + Dice kernel) against the readable loop of
``lomix_core.reference``, in fp32: the loss and the gradient of every input and parameter agree
to 1e-6, relative (as a norm: ``‖fast - loop‖ / ‖loop‖``, per tensor).

One exception: the gradient of a wf scorer's bias is a sum over pixels of terms that cancel (the
softmax's gradients sum to 0 over its members), so its value is ~1e-4 where its terms are ~1e-2,
and fp32 rounding of either computation is larger relative to it: measured against the same loop
in fp64, the fp32 loop missed such a bias by up to 8.3e-6 and the fast path by up to 7.8e-6. Its
error is measured against the norm of its scorer's whole gradient (weight and bias) instead.
"""
import copy
import platform
from itertools import combinations

import pytest
import torch

import lomix_core as lx
from lomix_core import cpu_kernels, fused_mutants, reference
from lomix_core.fusion import OPERATORS

REL = 1e-6
OPERATOR_SETS = [ops for k in range(1, len(OPERATORS) + 1) for ops in combinations(OPERATORS, k)]
CASES = ([(preset, None, None) for preset in lx.PRESETS]
         + [("lomix", ops, None) for ops in OPERATOR_SETS]
         + [("lomix", None, weighting) for weighting in ("equal", "softmax", "uncertainty", [0.5] * 48)]
         + [("lomix", ("wf", "concat", "mul"), "softmax")])  # operators out of their usual order


@pytest.fixture(autouse=True)
def single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def loss_and_gradients(loss_fn, logits, target, fn):
    value = fn(loss_fn, logits, target)
    inputs = [*logits, *loss_fn.parameters()]
    return [value, *torch.autograd.grad(value, inputs, allow_unused=True)]


def randomised_loss(num_maps, num_classes, **kwargs):
    torch.manual_seed(0)
    loss_fn = lx.LoMixLoss(num_maps, num_classes, **kwargs)
    with torch.no_grad():  # learned parameters off their initial values, so each one matters
        for p in loss_fn.parameters():
            p.add_(0.5 * torch.randn_like(p))
    return loss_fn


def assert_fast_path_equals_the_loop(loss_fn, logits, target, loop_in_fp64=False):
    names = ["loss"] + [f"logits[{i}]" for i in range(len(logits))] + [name for name, _ in loss_fn.named_parameters()]
    fast = dict(zip(names, loss_and_gradients(loss_fn, logits, target, lambda f, x, t: f(x, t))))
    if loop_in_fp64:
        loss_fn = copy.deepcopy(loss_fn).double()
        logits = [m.detach().double().requires_grad_() for m in logits]
    loop = dict(zip(names, loss_and_gradients(loss_fn, logits, target, reference.total)))
    checked = 0
    for name in names:
        got, want = fast[name], loop[name]
        assert (got is None) == (want is None), name
        if got is None:
            continue
        assert got.dtype == torch.float32, name
        scale = want.detach().double().norm()
        if ".wf." in name and name.endswith(".bias"):
            weight = loop[name.removesuffix("bias") + "weight"]
            scale = torch.cat([weight.detach().double().flatten(), want.detach().double()]).norm()
        if scale == 0:  # a map weighted 0 (nnU-Net's coarsest): no gradient on either path
            assert not got.detach().any(), name
            checked += 1
            continue
        error = float((got.detach().double() - want.detach().double()).norm() / scale)
        assert error <= REL, f"{name}: {error:.2e}"
        checked += 1
    assert checked >= 1 + 1 + len(list(loss_fn.parameters()))


@pytest.mark.parametrize("preset, operators, weighting", CASES, ids=str)
def test_fast_path_equals_the_readable_loop_to_1e6(preset, operators, weighting):
    loss_fn = randomised_loss(4, 8, supervision=preset, operators=operators, weighting=weighting)
    g = torch.Generator().manual_seed(1)
    logits = [(2 * torch.randn(2, 8, 16, 12, generator=g)).requires_grad_() for _ in range(4)]
    target = torch.randint(0, 8, (2, 16, 12), generator=g)
    assert_fast_path_equals_the_loop(loss_fn, logits, target)


@pytest.mark.parametrize("num_maps, wf_sharing, threads", [(4, "subset", 2), (5, "size", 1), (3, "subset", 3)])
def test_fused_kernel_across_blocks_threads_and_map_counts(num_maps, wf_sharing, threads):
    """480 pixels per image: one full block of the kernel and a cut one; images split over threads
    (each with its own accumulators); 3 and 5 maps; wf shared by subset size."""
    torch.set_num_threads(threads)
    loss_fn = randomised_loss(num_maps, 5, wf_sharing=wf_sharing)
    g = torch.Generator().manual_seed(num_maps)
    logits = [(2 * torch.randn(3, 5, 24, 20, generator=g)).requires_grad_() for _ in range(num_maps)]
    target = torch.randint(0, 5, (3, 24, 20), generator=g)
    assert fused_mutants.applies(loss_fn.mutant_generator, torch.stack(logits))
    assert_fast_path_equals_the_loop(loss_fn, logits, target)


def test_fused_kernel_with_logits_of_a_trained_network():
    """|logit| up to ~40: a mul mutant of four maps spans ±10^6, so most of its exp arguments
    underflow (the kernel holds them at ``EXP_FLOOR``) and some probabilities times Dice
    coefficients are subnormal (flushed to 0 inside the kernel). Still equal to the loop; and the
    kernel leaves the thread's flags as it found them (a subnormal product stays subnormal). At
    this scale the fp32 loop is the one that drifts (a wf scorer's weight: the loop 1.2e-6 from
    the loop in fp64, the fast path 1.7e-7), so the fast path is held to the loop in fp64."""
    loss_fn = randomised_loss(4, 8)
    g = torch.Generator().manual_seed(3)
    logits = [(10 * torch.randn(2, 8, 15, 13, generator=g)).requires_grad_() for _ in range(4)]
    target = torch.randint(0, 8, (2, 15, 13), generator=g)  # 195 pixels: runs of 16 (or 8) and 3 left
    product = torch.stack(logits).prod(0)
    assert (product - product.amax(1, keepdim=True) < -87).float().mean() > 0.5
    assert_fast_path_equals_the_loop(loss_fn, logits, target, loop_in_fp64=True)
    assert 0 < float(torch.tensor(1e-30) * torch.tensor(1e-10)) < 1.2e-38


@pytest.mark.skipif(platform.machine() != "x86_64", reason="-mno-avx512f is an x86 flag")
def test_fused_kernel_with_8_wide_vectors(monkeypatch, tmp_path):
    """Built without AVX-512 (as on most laptops), the kernels' register blocks hold 8 floats
    instead of 16: still equal to the loop."""
    monkeypatch.setenv("LOMIX_CACHE", str(tmp_path))
    monkeypatch.setattr(cpu_kernels, "COMPILE_FLAGS", [*cpu_kernels.COMPILE_FLAGS, "-mno-avx512f"])
    cpu_kernels.load.cache_clear()
    try:
        assert cpu_kernels.load() is not None and list(tmp_path.glob("cpu_kernels-*.so"))
        loss_fn = randomised_loss(4, 8)
        g = torch.Generator().manual_seed(4)
        logits = [(2 * torch.randn(2, 8, 15, 13, generator=g)).requires_grad_() for _ in range(4)]
        target = torch.randint(0, 8, (2, 15, 13), generator=g)  # 195 pixels: 24 runs of 8 and 3 left
        assert_fast_path_equals_the_loop(loss_fn, logits, target)
    finally:
        cpu_kernels.load.cache_clear()


def test_without_the_kernels_the_loss_is_the_same(monkeypatch):
    """The fallback (``LOMIX_CPU_KERNELS=0``: mutants built in PyTorch) gives the fused path's values."""
    loss_fn = randomised_loss(4, 8)
    g = torch.Generator().manual_seed(2)
    logits = [(2 * torch.randn(2, 8, 16, 12, generator=g)).requires_grad_() for _ in range(4)]
    target = torch.randint(0, 8, (2, 16, 12), generator=g)
    fused = loss_and_gradients(loss_fn, logits, target, lambda f, x, t: f(x, t))
    monkeypatch.setenv(cpu_kernels.SWITCH, "0")
    cpu_kernels.load.cache_clear()
    try:
        assert not fused_mutants.applies(loss_fn.mutant_generator, torch.stack(logits))
        plain = loss_and_gradients(loss_fn, logits, target, lambda f, x, t: f(x, t))
    finally:
        monkeypatch.delenv(cpu_kernels.SWITCH)
        cpu_kernels.load.cache_clear()
    for got, want in zip(fused, plain):
        torch.testing.assert_close(got, want, rtol=2e-5, atol=1e-6)

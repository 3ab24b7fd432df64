"""Property-based tests of LoMixLoss against the readable reference loop in ``lomix_core.reference``.

Hypothesis draws the configuration (preset, weighting, operators, map/class/batch counts,
non-square sizes, ce/dice mix), the size of the logits (down to ±30 saturated values) and one
integer seed; the seed drives every tensor (logits, targets, the fusion modules' initialisation
and the perturbation of the learned parameters), so a failing example reproduces from what
Hypothesis prints. ``derandomize=True`` makes every run test the same examples.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from hypothesis import example, given, settings
from hypothesis import strategies as st

import lomix_core as lx
from lomix_core.fusion import OPERATORS, subsets
from lomix_core import reference

PRESETS = list(lx.PRESETS)
WEIGHTINGS = ("softplus", "equal", "softmax", "uncertainty")
# Mix of CE and Dice (ce_weight, dice_weight): the default, each term alone, and an unnormalised mix.
MIXES = ((0.3, 0.7), (1.0, 0.0), (0.0, 1.0), (0.5, 2.0))
# Same tolerance as tests/test_supervision.py (rtol 1e-5) plus an absolute floor: the Dice term is
# ``1 - mean(dice)`` in fp32, so near-perfect maps carry a few ulp(1) ≈ 1e-7 of rounding.
RTOL, ATOL = 1e-5, 1e-6


def settings_for(examples: int):
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None)


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """The tensors here are tiny; on a shared 2-core machine intra-op threads make each op up to
    ~50x slower (thread wake-ups under contention), so run this module single-threaded."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --------------------------------------------------------------------------------------------
# Strategies
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    preset: str
    num_maps: int
    num_classes: int
    batch: int
    height: int
    width: int
    weighting: object  # None (the preset's default), a name, or a list of floats
    operators: tuple | None  # None: the preset's default operators
    mix: tuple
    logits_kind: str  # "gaussian" | "saturated" | "confident" | "confidently_wrong"
    scale: float
    param_noise: float  # std of the noise added to every learned parameter (0: initial values)
    seed: int

    def make_loss(self) -> lx.LoMixLoss:
        """The loss with its learned parameters initialised and then perturbed from the seed."""
        with torch.random.fork_rng(devices=[]):  # nn.Conv2d initialises from the global RNG
            torch.manual_seed(self.seed)
            loss_fn = lx.LoMixLoss(self.num_maps, self.num_classes, supervision=self.preset,
                                   operators=self.operators, weighting=self.weighting,
                                   ce_weight=self.mix[0], dice_weight=self.mix[1])
            with torch.no_grad():
                for p in loss_fn.parameters():
                    p.add_(self.param_noise * torch.randn_like(p))
        return loss_fn

    def make_inputs(self):
        g = torch.Generator().manual_seed(self.seed)
        shape = (self.batch, self.num_classes, self.height, self.width)
        target = torch.randint(0, self.num_classes, shape[:1] + shape[2:], generator=g)
        onehot = F.one_hot(target, self.num_classes).permute(0, 3, 1, 2).float()
        wrong = F.one_hot((target + 1) % self.num_classes, self.num_classes).permute(0, 3, 1, 2).float()
        logits = []
        for _ in range(self.num_maps):
            if self.logits_kind == "gaussian":
                m = self.scale * torch.randn(shape, generator=g)
            elif self.logits_kind == "saturated":  # exactly -30, 0 or +30: ties and saturated softmax
                m = 30.0 * torch.randint(-1, 2, shape, generator=g).float()
            elif self.logits_kind == "confident":  # near-perfect: loss close to 0
                m = 30.0 * (onehot - 0.5) + torch.randn(shape, generator=g)
            else:  # confidently wrong: large CE, Dice close to 1
                m = 30.0 * (wrong - 0.5) + torch.randn(shape, generator=g)
            logits.append(m.requires_grad_())
        return logits, target


def num_supervised(preset: str, num_maps: int, operators) -> int:
    all_originals, default_ops, _ = lx.PRESETS[preset]
    ops = default_ops if operators is None else operators
    return (num_maps if all_originals else 1) + len(ops) * len(subsets(num_maps))


@st.composite
def cases(draw):
    preset = draw(st.sampled_from(PRESETS))
    num_maps = draw(st.integers(2, 5))
    # Operators: the preset's default, or any non-empty ordered subset (also on the presets
    # without mutants: e.g. last_layer + mutants supervises p1 and the mutants).
    operators = draw(st.none() | st.lists(st.sampled_from(OPERATORS), min_size=1, max_size=4, unique=True).map(tuple))
    default_weighting = lx.PRESETS[preset][2]
    choices = [None, *WEIGHTINGS, "fixed"]
    weighting = draw(st.sampled_from(choices))
    if weighting is None and default_weighting == "nnunet" and operators:
        operators = None  # the nnunet weighting supervises the decoder maps alone
    if weighting == "fixed":
        count = num_supervised(preset, num_maps, operators)
        weighting = draw(st.lists(st.floats(0.0, 4.0, width=32), min_size=count, max_size=count))
    kind = draw(st.sampled_from(["gaussian", "gaussian", "saturated", "confident", "confidently_wrong"]))
    return Case(
        preset=preset,
        num_maps=num_maps,
        num_classes=draw(st.integers(2, 10)),
        batch=draw(st.integers(1, 3)),
        height=draw(st.integers(1, 12)),
        width=draw(st.integers(1, 12)),
        weighting=weighting,
        operators=operators,
        mix=draw(st.sampled_from(MIXES)),
        logits_kind=kind,
        scale=draw(st.sampled_from([1e-3, 1.0, 5.0, 30.0])) if kind == "gaussian" else 30.0,
        param_noise=draw(st.sampled_from([0.0, 0.3, 1.0, 3.0])),
        seed=draw(st.integers(0, 2**31 - 1)),
    )


# Fixed examples run before the random ones: every preset at its defaults on the size the other
# tests use, and the largest configuration (lomix over 5 maps: 109 supervised maps) with ±30 logits
# and far-from-initial learned parameters.
CORE_CASES = [Case(preset, 4, 9, 2, 12, 10, None, None, (0.3, 0.7), "gaussian", 1.0, 1.0, seed=i)
              for i, preset in enumerate(PRESETS)] + [
    Case("lomix", 5, 10, 3, 12, 11, "uncertainty", None, (0.3, 0.7), "gaussian", 30.0, 3.0, seed=7),
    Case("lomix", 3, 2, 1, 1, 7, "softmax", ("wf", "mul"), (0.5, 2.0), "saturated", 30.0, 1.0, seed=8),
]


def with_core_cases(test):
    for case in CORE_CASES:
        test = example(case=case)(test)
    return test


def reference_total(loss_fn, per_map):
    """The total as the loss defines it: ``Σ w_i L_i`` (+ ``½ Σ s_i`` for the uncertainty weighting)."""
    total = (loss_fn.weighting.weights() * per_map).sum()
    if loss_fn.weighting_name == "uncertainty":
        total = total + 0.5 * loss_fn.weighting.log_var.sum()
    return total


def assert_close_to_terms(got, terms, extra=0.0):
    """``got == Σ terms + extra`` to RTOL of the terms' magnitude: with learned signed terms
    (uncertainty's ½ log σ²) the total can cancel to ~0, so tolerance is scaled by Σ|terms|."""
    want = terms.sum() + extra
    magnitude = terms.abs().sum() + abs(float(extra))
    assert abs(float(got) - float(want)) <= RTOL * float(magnitude) + ATOL, (float(got), float(want))


# --------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------
@settings_for(100)
@given(case=cases())
@with_core_cases
def test_loss_and_gradients_are_finite(case):
    """1 + 2: the loss is finite, and so are its gradients w.r.t. the logits and every parameter."""
    loss_fn = case.make_loss()
    logits, target = case.make_inputs()
    loss = loss_fn(logits, target)
    assert loss.dim() == 0 and loss.dtype == torch.float32
    assert torch.isfinite(loss), loss
    loss.backward()
    used = range(case.num_maps) if loss_fn.mutant_generator is not None else loss_fn.original_indices
    for i in used:
        assert logits[i].grad is not None, f"no gradient reaches logits map {i}"
        assert torch.isfinite(logits[i].grad).all(), f"non-finite gradient on logits map {i}"
    for name, p in loss_fn.named_parameters():
        assert p.grad is not None, f"no gradient reaches {name}"
        assert torch.isfinite(p.grad).all(), f"non-finite gradient on {name}"


@settings_for(80)
@given(case=cases())
@with_core_cases
def test_loss_equals_reference_loop(case):
    """3: per-map losses and the total equal the per-map, per-class reference loop, with the
    learned parameters (weights, concat convs, wf scorers) moved off their initial values."""
    loss_fn = case.make_loss()
    logits, target = case.make_inputs()
    got = loss_fn.per_map_losses(logits, target)
    want = reference.per_map_losses(loss_fn, logits, target)
    torch.testing.assert_close(got, want, rtol=RTOL, atol=ATOL)
    with torch.no_grad():
        weights = loss_fn.weighting.weights()
        extra = 0.5 * loss_fn.weighting.log_var.sum() if loss_fn.weighting_name == "uncertainty" else 0.0
        assert_close_to_terms(loss_fn(logits, target), weights * want, extra)


@settings_for(50)
@given(case=cases())
@with_core_cases
def test_gradients_equal_autograd_of_reference_loop(case):
    """The hand-derived backward of the vectorised loss equals autograd through the reference
    loop, for every logits map and every learned parameter. Run in fp64 so that only a wrong
    formula, not fp32 rounding near a saturated softmax, can make them differ (fp32 gradients are
    checked for finiteness above)."""
    loss_fn = case.make_loss().double()
    logits32, target = case.make_inputs()
    logits = [m.detach().double().requires_grad_() for m in logits32]
    params = dict(loss_fn.named_parameters())
    inputs = list(logits) + list(params.values())
    got = torch.autograd.grad(loss_fn(logits, target), inputs, allow_unused=True)
    want = torch.autograd.grad(reference_total(loss_fn, reference.per_map_losses(loss_fn, logits, target)),
                               inputs, allow_unused=True)
    names = [f"logits[{i}]" for i in range(len(logits))] + list(params)
    for name, g, w in zip(names, got, want):
        assert (g is None) == (w is None), name
        if g is None:
            continue
        assert g.dtype == torch.float64
        scale = float(w.abs().max())
        torch.testing.assert_close(g, w, rtol=1e-7, atol=1e-9 * scale + 1e-12, msg=lambda m: f"{name}: {m}")


@settings_for(80)
@given(case=cases())
@with_core_cases
def test_per_map_losses_combine_into_the_total(case):
    """4: one non-negative per-map loss per name in ``map_names``, and the total is their
    weighted sum ``Σ w_i L_i`` (plus ``½ Σ log σ_i²`` for the uncertainty weighting)."""
    loss_fn = case.make_loss()
    logits, target = case.make_inputs()
    with torch.no_grad():
        per_map = loss_fn.per_map_losses(logits, target)
        total = loss_fn(logits, target)
        weights = loss_fn.weighting.weights()
    names = loss_fn.map_names
    assert per_map.shape == (len(names),) and len(set(names)) == len(names)
    assert loss_fn.num_supervised == len(names) == num_supervised(case.preset, case.num_maps, case.operators)
    assert list(loss_fn.map_weights()) == names and weights.shape == per_map.shape
    # CE >= 0 and the soft Dice loss is in [0, 1] (2pq <= p² + q²), so every map's loss is >= 0.
    assert (per_map >= -ATOL).all(), per_map
    if isinstance(case.weighting, list):
        assert weights.tolist() == pytest.approx(case.weighting)
    with torch.no_grad():
        extra = 0.5 * loss_fn.weighting.log_var.sum() if loss_fn.weighting_name == "uncertainty" else 0.0
    assert_close_to_terms(total, weights * per_map, extra)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@settings_for(40)
@given(case=cases())
@example(case=CORE_CASES[-2])  # lomix, 5 maps, |logits| up to ~120
def test_loss_is_finite_for_half_precision_logits_under_autocast(case, dtype):
    """What a model returns under autocast: finite logits in bf16/fp16 give a finite fp32 loss and
    finite gradients. (fp16 once overflowed in the forward pass: a product of four maps of |logit|
    20 exceeds 65504; the loss now builds its mutants in fp32.) A gradient may still overflow
    fp16 where its true value does: the mul mutants' gradient is a product of the other maps.
    GradScaler skips such steps, so the check is that every non-finite fp16 gradient is one whose
    fp32 value exceeds fp16's range."""
    loss_fn = case.make_loss()
    logits, target = case.make_inputs()
    low = [m.detach().to(dtype).requires_grad_() for m in logits]
    as_fp32 = [m.detach().float().requires_grad_() for m in low]  # the same values, full precision
    assert all(torch.isfinite(m).all() for m in low)
    with torch.autocast("cpu", dtype=dtype):
        loss = loss_fn(low, target)
    assert loss.dtype == torch.float32
    assert torch.isfinite(loss), loss
    loss.backward()
    loss_fn(as_fp32, target).backward()
    for i, (m, exact) in enumerate(zip(low, as_fp32)):
        if m.grad is None:
            continue
        overflow = ~torch.isfinite(m.grad)
        assert (exact.grad[overflow].abs() > torch.finfo(dtype).max).all(), f"non-finite gradient on map {i}"
    for name, p in loss_fn.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


INT_DTYPES = {torch.int64: (-(2**40), 2**40), torch.int32: (-(2**31), 2**31 - 1),
              torch.int16: (-(2**15), 2**15 - 1), torch.int8: (-128, 127), torch.uint8: (0, 255)}


@st.composite
def invalid_targets(draw):
    case = draw(cases())
    dtype = draw(st.sampled_from(list(INT_DTYPES)))
    lo, hi = INT_DTYPES[dtype]
    C = case.num_classes
    sides = ["high"] if lo == 0 else draw(st.sampled_from([["high"], ["low"], ["high", "low"]]))
    logits, target = case.make_inputs()
    flat = target.view(-1).clone()
    # 1-5 distinct bad pixels, alternating sides: one per side when the target has room for it
    positions = draw(st.lists(st.integers(0, flat.numel() - 1), min_size=min(len(sides), flat.numel()),
                              max_size=5, unique=True))
    for k, pos in enumerate(positions):
        side = sides[k % len(sides)]
        flat[pos] = draw(st.integers(C, hi) if side == "high" else st.integers(lo, -1))
    return case, logits, flat.view_as(target).to(dtype)


@settings_for(80)
@given(data=invalid_targets())
def test_invalid_targets_raise_a_one_line_value_error(data):
    """A label >= C or < 0 raises ValueError whose single-line message gives the valid range
    [0, C) and the offending min and max."""
    case, logits, target = data
    loss_fn = case.make_loss()
    lo, hi = int(target.long().min()), int(target.long().max())
    assert lo < 0 or hi >= case.num_classes
    for call in (loss_fn, loss_fn.per_map_losses):
        with pytest.raises(ValueError) as info:
            call(logits, target)
        message = str(info.value)
        assert "\n" not in message, message
        assert re.search(rf"\[0, {case.num_classes}\)", message), message
        assert re.search(rf"\bmin {lo}\b", message) and re.search(rf"\bmax {hi}\b", message), message

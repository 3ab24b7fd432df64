import math

import pytest
import torch
import torch.nn.functional as F

import lomix_core as lx
from lomix_core.fusion import OPERATORS, subsets
from lomix_core.supervision import PRESETS, nnunet_weights
from lomix_core import reference

B, C, H, W = 2, 5, 12, 10


def make_inputs(num_maps=4, num_classes=C, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = [torch.randn(B, num_classes, H, W, generator=g, requires_grad=True) for _ in range(num_maps)]
    target = torch.randint(0, num_classes, (B, H, W), generator=g)
    return logits, target


# ---- maps and names ----------------------------------------------------------------------------
def test_lomix_has_48_maps_with_readable_stable_names():
    loss_fn = lx.LoMixLoss(num_maps=4, num_classes=9, supervision="lomix")
    names = loss_fn.map_names
    assert len(names) == 48 and len(set(names)) == 48
    assert names[:4] == ["p4", "p3", "p2", "p1"]
    assert names[4:15] == ["add(p4,p3)", "add(p4,p2)", "add(p4,p1)", "add(p3,p2)", "add(p3,p1)", "add(p2,p1)",
                           "add(p4,p3,p2)", "add(p4,p3,p1)", "add(p4,p2,p1)", "add(p3,p2,p1)", "add(p4,p3,p2,p1)"]
    assert names[15] == "mul(p4,p3)" and names[-1] == "wf(p4,p3,p2,p1)"
    assert [n.split("(")[0] for n in names[4::11]] == list(OPERATORS)


@pytest.mark.parametrize("preset, count", [("last_layer", 1), ("deep_supervision", 4), ("nnunet", 4),
                                           ("mutation", 15), ("lomix", 48)])
def test_preset_map_counts(preset, count):
    loss_fn = lx.LoMixLoss(num_maps=4, num_classes=9, supervision=preset)
    assert loss_fn.num_supervised == count
    assert len(loss_fn.map_weights()) == count


def test_subset_counts_follow_combinatorics():
    for n in range(2, 7):
        assert len(subsets(n)) == 2 ** n - n - 1


def test_last_layer_supervises_only_the_finest_map():
    logits, target = make_inputs()
    loss_fn = lx.LoMixLoss(4, C, supervision="last_layer")
    assert loss_fn.map_names == ["p1"]
    loss_fn(logits, target).backward()
    assert all(m.grad is None for m in logits[:3]) and logits[3].grad.abs().sum() > 0
    # a NaN in a map the preset ignores does not matter
    nan = [m.detach().clone() for m in logits]
    nan[0][0, 0, 0, 0] = float("nan")
    assert torch.isfinite(loss_fn(nan, target))


def test_mutants_match_reference_construction_and_come_in_map_names_order():
    logits, _ = make_inputs()
    loss_fn = lx.LoMixLoss(4, C, supervision="lomix")
    stacked = loss_fn.mutants(logits)
    loop = torch.stack(reference.maps(loss_fn, logits))
    assert stacked.shape == (48, B, C, H, W)
    torch.testing.assert_close(stacked, loop, rtol=1e-5, atol=1e-6)
    i = loss_fn.map_names.index("mul(p4,p2,p1)")
    torch.testing.assert_close(stacked[i], logits[0] * logits[2] * logits[3])


# ---- the loss ----------------------------------------------------------------------------------
@pytest.mark.parametrize("preset", list(PRESETS))
def test_vectorised_loss_equals_reference_loop(preset):
    logits, target = make_inputs(seed=1)
    loss_fn = lx.LoMixLoss(4, C, supervision=preset)
    with torch.no_grad():  # move learned weights off their init so the weighting matters
        for p in loss_fn.parameters():
            p.add_(0.3 * torch.randn_like(p))
    got = loss_fn.per_map_losses(logits, target)
    want = reference.per_map_losses(loss_fn, logits, target)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=0)
    weights = torch.tensor(list(loss_fn.map_weights().values()))
    expected_total = (weights * want).sum()
    if loss_fn.weighting_name == "uncertainty":
        expected_total = expected_total + 0.5 * loss_fn.weighting.log_var.sum()
    torch.testing.assert_close(loss_fn(logits, target), expected_total, rtol=1e-5, atol=0)


def test_dice_term_is_transunet_soft_dice_including_background():
    logits, target = make_inputs()
    loss_fn = lx.LoMixLoss(4, C, supervision="last_layer", ce_weight=0.0, dice_weight=1.0)
    probs = logits[3].softmax(1)
    onehot = F.one_hot(target, C).permute(0, 3, 1, 2).float()
    dice = (2 * (probs * onehot).sum((0, 2, 3)) + 1e-5) / ((probs ** 2).sum((0, 2, 3)) + onehot.sum((0, 2, 3)) + 1e-5)
    torch.testing.assert_close(loss_fn(logits, target), 1 - dice.mean())


def test_perfect_prediction_has_near_zero_loss():
    target = torch.randint(0, C, (B, H, W))
    perfect = 50.0 * F.one_hot(target, C).permute(0, 3, 1, 2).float()
    loss = lx.LoMixLoss(4, C, supervision="deep_supervision")([perfect] * 4, target)
    assert loss.item() < 1e-3


def test_gradients_reach_theta_and_every_fusion_parameter():
    logits, target = make_inputs()
    loss_fn = lx.LoMixLoss(4, C, supervision="lomix")
    loss_fn(logits, target).backward()
    named = dict(loss_fn.named_parameters())
    assert "weighting.theta" in named
    assert any(k.startswith("mutant_generator.concat.") for k in named)
    assert any(k.startswith("mutant_generator.wf.") for k in named)
    for name, p in named.items():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"no gradient reaches {name}"
    assert all(m.grad.abs().sum() > 0 for m in logits)


def test_fusion_modules_are_registered_saved_and_reloaded():
    loss_fn = lx.LoMixLoss(4, C, supervision="lomix")
    state = loss_fn.state_dict()
    assert sum(k.startswith("mutant_generator.concat.") for k in state) == 2 * 11  # weight + bias per subset
    assert sum(k.startswith("mutant_generator.wf.") for k in state) == 2 * sum(len(s) for s in subsets(4))
    clone = lx.LoMixLoss(4, C, supervision="lomix")
    clone.load_state_dict(state)
    logits, target = make_inputs()
    torch.testing.assert_close(clone(logits, target), loss_fn(logits, target))
    # The official code's concat is a fresh random conv per call; ours is deterministic.
    torch.testing.assert_close(loss_fn.mutants(logits), loss_fn.mutants(logits))


# ---- weightings ----------------------------------------------------------------------------------
def test_softplus_starts_at_log2_and_only_shrinks_under_adam():
    logits, target = make_inputs()
    loss_fn = lx.LoMixLoss(4, C, supervision="lomix")
    assert all(math.isclose(w, math.log(2), rel_tol=1e-6) for w in loss_fn.map_weights().values())
    opt = torch.optim.Adam(loss_fn.weighting.parameters(), lr=1e-2)
    for _ in range(5):
        opt.zero_grad()
        loss_fn([m.detach() for m in logits], target).backward()
        opt.step()
    assert max(loss_fn.map_weights().values()) < math.log(2) - 0.01


def test_softmax_weights_keep_their_sum():
    logits, target = make_inputs()
    loss_fn = lx.LoMixLoss(4, C, supervision="lomix", weighting="softmax")
    opt = torch.optim.Adam(loss_fn.weighting.parameters(), lr=0.1)
    for _ in range(5):
        opt.zero_grad()
        loss_fn([m.detach() for m in logits], target).backward()
        opt.step()
    weights = torch.tensor(list(loss_fn.map_weights().values()))
    assert weights.std() > 0
    assert math.isclose(weights.sum().item(), 48, rel_tol=1e-5)


def test_fixed_and_nnunet_weightings():
    loss_fn = lx.LoMixLoss(4, C, supervision="deep_supervision", weighting=[1.0, 2.0, 3.0, 4.0])
    assert list(loss_fn.map_weights().values()) == [1.0, 2.0, 3.0, 4.0]
    assert list(loss_fn.parameters()) == []
    nn_weights = lx.LoMixLoss(4, C, supervision="nnunet").map_weights()
    assert nn_weights == pytest.approx(dict(zip(["p4", "p3", "p2", "p1"], nnunet_weights(4))))
    # nnU-Net v2 (nnUNetTrainer._build_loss): 1/2^i from the finest output, the coarsest set to 0, normalised
    assert list(nn_weights.values()) == pytest.approx([0, 1 / 7, 2 / 7, 4 / 7])
    assert nnunet_weights(1) == [1.0]


def test_operator_override():
    loss_fn = lx.LoMixLoss(4, C, supervision="lomix", operators=["add", "wf"])
    assert loss_fn.num_supervised == 4 + 2 * 11
    assert not hasattr(loss_fn.mutant_generator, "concat")


# ---- validation ----------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, match", [
    ({"supervision": "nope"}, "unknown supervision"),
    ({"operators": ["add", "max"]}, "unknown fusion operator"),
    ({"weighting": "magic"}, "unknown weighting"),
    ({"weighting": [1.0, 2.0]}, "2 weights"),
    ({"supervision": "mutation", "weighting": "nnunet"}, "nnunet weighting"),
])
def test_bad_configuration_is_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        lx.LoMixLoss(4, C, **kwargs)


def bad_inputs():
    logits, target = make_inputs()
    small = [F.interpolate(m, scale_factor=0.5) for m in logits]
    nan = [m.detach().clone() for m in logits]
    nan[1][0, 0, 0, 0] = float("nan")
    inf = [m.detach().clone() for m in logits]
    inf[2][1, 2, 3, 4] = float("inf")
    high, neg = target.clone(), target.clone()
    high[0, 0, 0], neg[1, 2, 3] = C, -1
    return [
        ("three maps", logits[:3], target, ValueError, "expected 4 logits maps"),
        ("one tensor", logits[0], target, TypeError, "sequence of 4 logits maps"),
        ("size differs", logits[:3] + small[3:], target, ValueError, "upsample every map"),
        ("classes differ", logits[:3] + [logits[3][:, :3]], target, ValueError, "3 classes, expected num_classes=5"),
        ("target size", logits, target[:, :6], ValueError, "target has shape"),
        ("float target", logits, target.float(), TypeError, "integer tensor"),
        ("label too high", logits, high, ValueError, r"in \[0, 5\)"),
        ("negative label", logits, neg, ValueError, "min -1"),
        ("nan logits", nan, target, ValueError, "NaN or inf"),
        ("inf logits", inf, target, ValueError, "NaN or inf"),
    ]


@pytest.mark.parametrize("case", bad_inputs(), ids=lambda case: case[0])
def test_bad_input_gives_a_clear_error(case):
    _, logits, target, error, match = case
    with pytest.raises(error, match=match):
        lx.LoMixLoss(4, C, supervision="lomix")(logits, target)


def test_large_finite_logits_pass_the_value_check():
    """The check sums the logits first; finite logits whose sum overflows are not called NaN or inf."""
    logits, target = make_inputs()
    large = [torch.full_like(m, 3e38) for m in logits]  # every sum over two of them is inf in fp32
    assert not torch.isfinite(torch.stack(large).sum())
    lx.LoMixLoss(4, C, supervision="deep_supervision")(large, target)  # no error
    large[1][0, 0, 0, 0] = float("-inf")
    with pytest.raises(ValueError, match="p3 has 0 NaN and 1 inf"):
        lx.LoMixLoss(4, C, supervision="deep_supervision")(large, target)


@pytest.mark.parametrize("preset", ["deep_supervision", "lomix"])
def test_value_checks_can_be_switched_off(preset):
    """Unchecked, a NaN logit still makes the loss NaN (on a CPU, through the C kernels)."""
    logits, target = make_inputs()
    nan = [m.detach().clone() for m in logits]
    nan[0][0, 0, 0, 0] = float("nan")
    loss = lx.LoMixLoss(4, C, supervision=preset, check_values=False)(nan, target)
    assert torch.isnan(loss)


def test_loss_accepts_other_integer_target_dtypes():
    logits, target = make_inputs()
    loss_fn = lx.LoMixLoss(4, C, supervision="mutation")
    torch.testing.assert_close(loss_fn(logits, target.to(torch.uint8)), loss_fn(logits, target))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("preset", list(PRESETS))
def test_loss_under_autocast_accumulates_in_fp32(preset, dtype):
    logits, target = make_inputs(seed=2)
    loss_fn = lx.LoMixLoss(4, C, supervision=preset)
    exact = loss_fn(logits, target)
    with torch.autocast("cpu", dtype=dtype):
        low = [m.to(dtype) for m in logits]  # what a model returns under autocast
        loss = loss_fn(low, target)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, exact, rtol=3e-2, atol=0)
    loss.backward()
    assert all(m.grad is not None and torch.isfinite(m.grad).all() for m in logits[-1:])
    assert all(torch.isfinite(p.grad).all() for p in loss_fn.parameters())


def test_no_host_reads_inside_the_loss_when_value_checks_are_off(monkeypatch):
    """With check_values=False nothing in forward or backward reads a tensor back to Python
    (on a GPU each such read is a host sync)."""
    logits, target = make_inputs()
    loss_fn = lx.LoMixLoss(4, C, supervision="lomix", check_values=False)

    def forbidden(*args, **kwargs):
        raise AssertionError("the loss read a tensor value back to the host")

    for name in ("item", "tolist", "__bool__", "__int__", "__float__", "__index__"):
        monkeypatch.setattr(torch.Tensor, name, forbidden)
    loss_fn(logits, target).backward()
    monkeypatch.undo()
    assert torch.isfinite(logits[0].grad).all()

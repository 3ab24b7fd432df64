"""``wf_sharing``: one wf module per subset (kit) or per subset size (official), and parity with
the official loss.

The fixture ``fixtures/official_wf.pt`` was made once by running the official code's own
``WeightedFusion``, ``CombinatorialMutationsLossModule`` (trainer.py) and ``DiceLoss``
(utils/utils.py) of github.com/SLDGroup/LoMix at commit 464a945, their class source taken out of
the checkout with ``ast`` and executed (the files' top-level imports need tensorboardX, h5py, cv2,
medpy...); no official code is in the kit. Command, with torch 2.14.1+cu130 (CPU), Python 3.11.7:

    git --git-dir=/work/.mirror/SLDGroup+LoMix/repo archive 464a945 | tar -x -C /tmp/lomix_official_464a945
    .venv/bin/python tests/fixtures/make_official_wf_fixture.py /tmp/lomix_official_464a945

It holds the official module's state_dict (softplus θ and size-shared wf scorers, all drawn from
N(0, 0.5²)), 4 input maps [2, 3, 8, 8] and a label, the 33 add/mul/wf maps the official forward
fuses, each supervised map's 0.3·CE + 0.7·Dice and the weighted total (see the script's docstring).
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import lomix_core as lx
from lomix_core.fusion import MutantGenerator, subsets

FIXTURE = Path(__file__).parent / "fixtures" / "official_wf.pt"
C = 3


def test_size_sharing_builds_one_module_per_size():
    generator = MutantGenerator(4, C, ("wf",), wf_sharing="size")
    assert list(generator.wf) == ["2", "3", "4"]
    assert sum(len(m.scorers) for m in generator.wf.values()) == 2 + 3 + 4
    assert generator.learned("wf", (0, 2)) is generator.learned("wf", "p2,p1") is generator.wf["2"]
    # The default keeps its per-subset keys, so old checkpoints load.
    default = MutantGenerator(4, C, ("wf",))
    assert list(default.wf) == ["_".join(map(str, s)) for s in subsets(4)]
    assert "mutant_generator.wf.0_1.scorers.0.weight" in lx.LoMixLoss(4, C).state_dict()


def test_loss_parameters_hold_each_shared_scorer_once():
    loss_fn = lx.LoMixLoss(4, C, wf_sharing="size")
    params = list(loss_fn.parameters())
    assert len({id(p) for p in params}) == len(params)
    scorers = [p for name, p in loss_fn.named_parameters() if ".wf." in name]
    assert len(scorers) == 2 * 9  # weight + bias of 9 scorers
    assert len(loss_fn.map_names) == 48


def test_vectorised_wf_equals_a_loop_over_subsets():
    torch.manual_seed(0)
    generator = MutantGenerator(4, C, ("wf",), wf_sharing="size")
    stacked = torch.randn(4, 2, C, 5, 5)
    expected = torch.stack([generator.learned("wf", s)([stacked[i] for i in s]) for s in generator.subsets])
    torch.testing.assert_close(generator(stacked), expected, atol=1e-6, rtol=1e-5)
    alpha = generator.wf_attention(stacked, (1, 3))
    torch.testing.assert_close(alpha, generator.wf["2"].attention([stacked[1], stacked[3]]))


def test_shared_scorers_get_gradient_from_every_subset_of_their_size():
    torch.manual_seed(0)
    generator = MutantGenerator(4, C, ("wf",), wf_sharing="size")
    stacked = torch.randn(4, 2, C, 5, 5)
    out = generator(stacked)
    weight = generator.wf["2"].scorers[0].weight
    grads = [torch.autograd.grad(out[row].square().sum(), weight, retain_graph=True)[0]
             for row, s in enumerate(generator.subsets) if len(s) == 2]
    assert len(grads) == 6 and all(g.abs().sum() > 0 for g in grads)
    # The vectorised backward sums them, as a loop over subsets would.
    total = torch.autograd.grad(out[:6].square().sum(), weight, retain_graph=True)[0]
    torch.testing.assert_close(total, sum(grads), atol=1e-5, rtol=1e-5)
    # A subset of another size does not touch the size-2 module.
    assert torch.autograd.grad(out[6:].square().sum(), weight)[0].abs().sum() == 0


@pytest.mark.parametrize("bad", ["shared", None, 2])
def test_bad_wf_sharing_is_one_line(bad):
    for build in (lambda: lx.LoMixLoss(4, C, wf_sharing=bad), lambda: MutantGenerator(4, C, wf_sharing=bad)):
        with pytest.raises(ValueError, match=r"wf_sharing .*expected one of \('subset', 'size'\)") as error:
            build()
        assert "\n" not in str(error.value)


def official_to_kit(state: dict, loss_fn: lx.LoMixLoss, operations: list[str]) -> dict:
    """The official module's state_dict under the kit's names (θ as one vector in map_names order)."""
    theta = [state[f"original_weights.{i}"] for i in range(4)]
    theta += [state[f"synthesized_weights.{op}.{i}"] for op in operations for i in range(len(subsets(4)))]
    kit = {"weighting.theta": torch.cat(theta)}
    for key, value in state.items():
        if key.startswith("weighted_fusion_modules."):
            kit[key.replace("weighted_fusion_modules.", "mutant_generator.wf.").replace("weight_convs", "scorers")] = value
    assert set(kit) == set(loss_fn.state_dict())
    return kit


def test_size_sharing_matches_the_official_loss():
    record = torch.load(FIXTURE)
    operations = record["operations"]
    loss_fn = lx.LoMixLoss(4, C, operators=operations, wf_sharing="size")
    loss_fn.load_state_dict(official_to_kit(record["state_dict"], loss_fn, operations))
    maps, label = list(record["maps"]), record["label"]
    with torch.no_grad():
        # rtol: the kit scores wf members with an einsum, not conv2d, so values differ by an ulp.
        torch.testing.assert_close(loss_fn.mutants(maps)[4:], record["fused"], atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(loss_fn.per_map_losses(maps, label), record["per_map_losses"], atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(loss_fn(maps, label), record["total"], atol=1e-5, rtol=0)


def test_operator_order_only_permutes_the_maps():
    """The official order add, mul, wf, concat against the kit's add, mul, concat, wf: the same
    seed gives the same modules (concat is built before wf either way) and θ starts at 0, so the
    per-map losses are a permutation and the total is the same."""
    torch.manual_seed(0)
    logits, target = [torch.randn(2, C, 6, 6) for _ in range(4)], torch.randint(0, C, (2, 6, 6))
    losses = {}
    for order in (("add", "mul", "concat", "wf"), ("add", "mul", "wf", "concat")):
        torch.manual_seed(1)
        loss_fn = lx.LoMixLoss(4, C, operators=order, wf_sharing="size")
        with torch.no_grad():
            losses[order] = (dict(zip(loss_fn.map_names, loss_fn.per_map_losses(logits, target).tolist())),
                             float(loss_fn(logits, target)))
    (kit, kit_total), (official, official_total) = losses.values()
    assert list(kit) != list(official) and kit == pytest.approx(official, abs=1e-6)
    assert kit_total == pytest.approx(official_total, abs=1e-5)


def test_official_style_loss_follows_the_sharing():
    """The timing baseline (the official loss's loop) builds its wf maps from the same shared modules."""
    from lomix_core.official_style import OfficialStyleLoMixLoss

    torch.manual_seed(0)
    loss_fn = lx.LoMixLoss(4, 3, wf_sharing="size")
    logits, target = [torch.randn(2, 3, 8, 8) for _ in range(4)], torch.randint(0, 3, (2, 8, 8))
    assert torch.allclose(OfficialStyleLoMixLoss(loss_fn)(logits, target), loss_fn(logits, target), rtol=1e-5)

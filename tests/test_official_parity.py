"""The parity switch: with the official EMCAD's weights, the kit's decoder gives its logits.

``fixtures/official_emcad.pt`` holds the official EMCAD decoder (SLDGroup/LoMix lib/decoders.py
at commit 464a945, identical to SLDGroup/EMCAD e48f54e's) with four 1×1 heads and the bilinear
upsampling of its EMCADNet.forward, at widths [16, 12, 8, 4] (coarse → fine), one class, MSCB
activation ReLU6 and the training script's other settings; its state_dict with every bias and
BatchNorm statistic made non-trivial; random encoder features for one 64×64 input; and the four
logits maps in eval and in train mode. It was made once, with torch 2.14.1+cu130, timm 1.0.31 and
Python 3.11.7 (also stored in the file), by

    git -C /work/.mirror/SLDGroup+LoMix/repo worktree add --detach /tmp/lomix_official 464a945
    .venv/bin/python tests/fixtures/make_official_emcad_fixture.py /tmp/lomix_official

Here the official keys are renamed to the kit's (``to_kit``), loaded strictly into the kit's
``EMCADDecoder(activation="relu6", init="official")``, and the logits compared. Nothing is
downloaded and the official code is not needed.
"""
import re
from pathlib import Path

import pytest
import torch
from torch import nn

import lomix_core as lx
from lomix_core.models.emcad import EMCADDecoder
from lomix_core.models.timm_unet import GrayToRGB, OfficialStem

FIXTURE = Path(__file__).parent / "fixtures" / "official_emcad.pt"

# The official code numbers its stages by depth, 4 (stride 32) to 1 (stride 4); the kit indexes
# them coarse → fine from 0. {s} is the kit's stage (4 - n), {u} its up/gate step (3 - n).
RENAMES = [
    (r"decoder\.cab(\d)\.fc1\.", "stages.{s}.cab.mlp.0."),
    (r"decoder\.cab(\d)\.fc2\.", "stages.{s}.cab.mlp.2."),
    (r"decoder\.mscb(\d)\.0\.pconv1\.", "stages.{s}.mscb.expand."),
    (r"decoder\.mscb(\d)\.0\.msdc\.dwconvs\.", "stages.{s}.mscb.depthwise."),
    (r"decoder\.mscb(\d)\.0\.pconv2\.", "stages.{s}.mscb.project."),
    (r"decoder\.eucb(\d)\.up_dwc\.", "up.{u}.up."),  # same indices: 0 upsample, 1 conv, 2 BN
    (r"decoder\.eucb(\d)\.pwc\.0\.", "up.{u}.project."),
    (r"decoder\.lgag(\d)\.W_g\.", "gates.{u}.gate."),  # W_g embeds the upsampled decoder features
    (r"decoder\.lgag(\d)\.W_x\.", "gates.{u}.skip."),  # W_x the encoder's skip
    (r"decoder\.lgag(\d)\.psi\.", "gates.{u}.attention."),
    (r"out_head(\d)\.", "heads.{s}."),
]


def to_kit(official: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official EMCADNet decoder + head keys → the kit's EMCADDecoder keys."""
    kit = {}
    for key, value in official.items():
        if key.startswith("decoder.sab."):
            # One SAB serves every stage in both; the kit's state_dict lists it under each stage.
            kit.update({key.replace("decoder.sab.", f"stages.{s}.sab."): value for s in range(4)})
            continue
        for pattern, target in RENAMES:
            match = re.match(pattern, key)
            if match:
                n = int(match.group(1))
                kit[target.format(s=4 - n, u=3 - n) + key[match.end():]] = value
                break
        else:
            raise KeyError(f"no kit name for the official key {key}")
    return kit


@pytest.fixture(scope="module")
def fixture():
    return torch.load(FIXTURE)


def kit_decoder(fixture, activation="relu6") -> EMCADDecoder:
    config = fixture["config"]
    decoder = EMCADDecoder(config["channels"][::-1], config["num_classes"], config["kernel_sizes"],
                           config["expansion_factor"], activation=activation, init="official")
    decoder.load_state_dict(to_kit(fixture["state_dict"]), strict=True)
    return decoder


def logits(decoder: EMCADDecoder, fixture, mode: str) -> list[torch.Tensor]:
    decoder.train(mode == "train")
    size = (fixture["config"]["size"],) * 2
    with torch.no_grad():
        return decoder([f.clone() for f in fixture["features"]], size)


def max_difference(ours, theirs) -> float:
    assert [o.shape for o in ours] == [t.shape for t in theirs]
    return max((o - t).abs().max().item() for o, t in zip(ours, theirs))


def test_the_fixture_is_what_the_docstring_says(fixture):
    assert fixture["commit"].startswith("464a945")
    assert fixture["config"]["activation"] == "relu6"
    assert [tuple(o.shape) for o in fixture["outputs"]["eval"]] == [(1, 1, 64, 64)] * 4


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_kit_decoder_gives_the_official_logits(fixture, mode):
    official = fixture["outputs"][mode]
    assert max_difference(logits(kit_decoder(fixture), fixture, mode), official) < 1e-5
    # ReLU6 in MSCB matters for these weights: with ReLU the same weights give other logits
    assert max_difference(logits(kit_decoder(fixture, activation="relu"), fixture, mode), official) > 1e-2


def test_the_modes_differ(fixture):
    """Eval (running statistics) and train (batch statistics) must be two distinct checks."""
    assert max_difference(fixture["outputs"]["eval"], fixture["outputs"]["train"]) > 1e-2


def decoder_blocks(decoder: EMCADDecoder):
    """Every Conv2d and BatchNorm2d of the decoder, the heads excepted."""
    return [m for blocks in (decoder.stages, decoder.up, decoder.gates) for m in blocks.modules()
            if isinstance(m, (nn.Conv2d, nn.BatchNorm2d))]


def test_official_init_in_the_blocks_and_default_init_in_the_heads():
    torch.manual_seed(0)
    widths = [64, 128, 320, 512]  # PVT-v2-b2's, so every weight tensor is large enough for a std
    official = EMCADDecoder(widths, 9, init="official")
    default = EMCADDecoder(widths, 9)
    convs = [m for m in decoder_blocks(official) if isinstance(m, nn.Conv2d)]
    weights = torch.cat([m.weight.flatten() for m in convs])
    assert abs(weights.std().item() - 0.02) < 0.0005 and abs(weights.mean().item()) < 0.0005
    assert all(m.weight.std().item() == pytest.approx(0.02, rel=0.1) for m in convs if m.weight.numel() >= 1000)
    assert all(not m.bias.any() for m in convs if m.bias is not None)
    norms = [m for m in decoder_blocks(official) if isinstance(m, nn.BatchNorm2d)]
    assert all((m.weight == 1).all() and not m.bias.any() for m in norms)
    # PyTorch's default, kaiming-uniform with a = √5: U(±1/√fan_in), std 1/√(3·fan_in)
    for head in official.heads:
        fan_in = head.in_channels
        assert head.weight.abs().max() <= fan_in ** -0.5
        assert head.weight.std().item() == pytest.approx((3 * fan_in) ** -0.5, rel=0.15)
        assert head.bias.any()
    # and the default init is not N(0, 0.02): the 1×1 expand of the 64-wide stage has std 1/√192
    assert default.stages[3].mscb.expand[0].weight.std().item() == pytest.approx(192 ** -0.5, rel=0.1)


@pytest.mark.parametrize("bad", [dict(activation="gelu"), dict(init="xavier"), dict(activation=None)])
def test_bad_decoder_choices_are_named(bad):
    (name, value), = bad.items()
    with pytest.raises(ValueError, match=f"{name} must be one of .* got {value!r}"):
        EMCADDecoder([8, 16, 32, 64], 2, **bad)


def activations(model) -> dict[str, set[type]]:
    mscb = {type(m) for stage in model.decoder.stages
            for m in [stage.mscb.expand[2], *(d[2] for d in stage.mscb.depthwise)]}
    others = {type(m) for block in (*model.decoder.up, *model.decoder.gates,
                                    *(stage.cab for stage in model.decoder.stages))
              for m in block.modules() if isinstance(m, (nn.ReLU, nn.ReLU6))}
    return {"mscb": mscb, "others": others}


def test_official_true_gives_the_official_stem_activation_and_init():
    torch.manual_seed(0)
    model = lx.models.build("pvt_v2_b0_emcad", 1, 4, official=True)
    assert isinstance(model.stem, OfficialStem)
    conv, norm, relu = model.stem
    assert (conv.in_channels, conv.out_channels, conv.kernel_size) == (1, 3, (1, 1))
    assert isinstance(norm, nn.BatchNorm2d) and norm.num_features == 3 and isinstance(relu, nn.ReLU)
    assert activations(model) == {"mscb": {nn.ReLU6}, "others": {nn.ReLU}}
    expand = model.decoder.stages[0].mscb.expand[0].weight  # 256 → 512, 131k weights
    assert expand.std().item() == pytest.approx(0.02, rel=0.05)
    model.eval()
    assert [tuple(p.shape) for p in model(torch.rand(1, 1, 64, 64))] == [(1, 4, 64, 64)] * 4

    kit = lx.models.build("pvt_v2_b0_emcad", 1, 4)
    assert isinstance(kit.stem, GrayToRGB)
    assert activations(kit) == {"mscb": {nn.ReLU}, "others": {nn.ReLU}}
    assert kit.decoder.stages[0].mscb.expand[0].weight.std().item() == pytest.approx(768 ** -0.5, rel=0.05)


def test_official_rgb_input_has_no_stem_and_bad_official_is_named():
    model = lx.models.build("resnet18_emcad", 3, 2, official=True)
    assert isinstance(model.stem, nn.Identity)
    with pytest.raises(ValueError, match="official must be True or False, got 'yes'"):
        lx.models.build("resnet18_emcad", 3, 2, official="yes")

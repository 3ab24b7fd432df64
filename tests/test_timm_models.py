"""The paper's network (timm encoder + EMCAD decoder): shapes, gradients, stems and weights.

Everything runs offline on a CPU: encoders are built with random weights, and the pretrained
path is tested by making the Hugging Face hub refuse to fetch.
"""
import huggingface_hub
import pytest
import timm
import torch

import lomix_core as lx
from lomix_core.models.timm_unet import GrayToRGB

PVT_NAMES = [f"pvt_v2_b{i}_emcad" for i in range(6)]
RESNET_NAMES = ["resnet18_emcad", "resnet34_emcad", "resnet50_emcad"]


def roughness(logits: torch.Tensor) -> float:
    """Mean absolute difference between horizontal neighbours: low for upsampled coarse maps."""
    return (logits[..., 1:] - logits[..., :-1]).abs().mean().item()


@pytest.fixture(scope="module")
def pvt_b2_gray():
    torch.manual_seed(0)
    return lx.models.build("pvt_v2_b2_emcad", in_channels=1, num_classes=9)


def test_registry_lists_all_emcad_models():
    assert set(PVT_NAMES + RESNET_NAMES) <= set(lx.models.available())


def test_pvt_v2_b2_emcad_matches_the_official_parameter_counts():
    with torch.device("meta"):  # shapes only: counting needs no memory and no initialisation
        model = lx.models.build("pvt_v2_b2_emcad", in_channels=3, num_classes=9)
    count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    assert count(model.encoder) == 24_849_856
    assert count(model.decoder) - count(model.decoder.heads) == 1_913_515


def test_pvt_v2_b2_encoder_gives_the_papers_four_feature_maps(pvt_b2_gray):
    encoder = pvt_b2_gray.encoder
    assert encoder.feature_info.channels() == [64, 128, 320, 512]
    with torch.no_grad():
        features = encoder(torch.randn(1, 3, 64, 64))
    assert [tuple(f.shape[1:]) for f in features] == [(64, 16, 16), (128, 8, 8), (320, 4, 4), (512, 2, 2)]


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_pvt_v2_b2_emcad_returns_four_maps_coarse_to_fine(pvt_b2_gray, mode):
    model = getattr(pvt_b2_gray, mode)()
    assert model.num_maps == 4 and model.stride == 32
    with torch.no_grad():
        out = model(torch.randn(2, 1, 64, 64))
    assert isinstance(out, list) and len(out) == 4
    assert all(o.shape == (2, 9, 64, 64) for o in out)
    # coarse → fine: the stride-32 map is upsampled from 2×2, the stride-4 one from 16×16
    r = [roughness(o) for o in out]
    assert r == sorted(r) and r[0] < r[-1]


def test_lomix_loss_backward_reaches_every_parameter(pvt_b2_gray):
    torch.manual_seed(0)
    model = pvt_b2_gray.train()
    model.zero_grad(set_to_none=True)
    loss_fn = lx.LoMixLoss(num_maps=4, num_classes=9, supervision="lomix")
    loss = loss_fn(model(torch.randn(2, 1, 64, 64)), torch.randint(0, 9, (2, 64, 64)))
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    # A conv bias followed by BatchNorm in train mode is cancelled by the batch mean, so its
    # gradient is zero up to rounding (the official EMCAD keeps these biases; so do we, to match
    # its parameter count). Every other parameter must get a real gradient.
    cancelled = biases_before_batchnorm(model)
    assert cancelled, "expected the LGAG convs' biases before BatchNorm"
    no_grad = [name for name, p in model.named_parameters() if name not in cancelled and not p.grad.any()]
    assert no_grad == []
    params = dict(model.named_parameters())
    assert all(params[name].grad.abs().max() < 1e-6 for name in cancelled)


def biases_before_batchnorm(model):
    names = set()
    for prefix, module in model.named_modules():
        children = list(module.named_children()) if isinstance(module, torch.nn.Sequential) else []
        for (name, first), (_, second) in zip(children, children[1:]):
            if isinstance(first, torch.nn.Conv2d) and first.bias is not None and isinstance(second, torch.nn.BatchNorm2d):
                names.add(f"{prefix}.{name}.bias" if prefix else f"{name}.bias")
    return names


@pytest.mark.parametrize("in_channels", [1, 3])
def test_grayscale_and_rgb_inputs(in_channels):
    torch.manual_seed(0)
    model = lx.models.build("pvt_v2_b0_emcad", in_channels=in_channels, num_classes=4).eval()
    x = torch.randn(2, in_channels, 64, 96)
    with torch.no_grad():
        out = model(x)
        stem_out = model.stem(x)
    assert [o.shape for o in out] == [(2, 4, 64, 96)] * 4
    if in_channels == 3:
        assert isinstance(model.stem, torch.nn.Identity)
    else:
        # the learned stem starts as the usual "repeat the gray image on R, G and B"
        assert isinstance(model.stem, GrayToRGB)
        assert torch.allclose(stem_out, x.repeat(1, 3, 1, 1))


def test_input_size_must_be_divisible_by_32(pvt_b2_gray):
    with pytest.raises(ValueError, match=r"input size \(64, 48\) must be divisible by 32 for pvt_v2_b2_emcad"):
        pvt_b2_gray(torch.randn(1, 1, 64, 48))


def test_resnet18_emcad_forward():
    torch.manual_seed(0)
    model = lx.models.build("resnet18_emcad", in_channels=1, num_classes=3).eval()
    assert model.encoder.feature_info.channels() == [64, 128, 256, 512]
    assert model.encoder.feature_info.reduction() == [4, 8, 16, 32]
    with torch.no_grad():
        out = model(torch.randn(1, 1, 64, 64))
    assert [o.shape for o in out] == [(1, 3, 64, 64)] * 4


def test_pretrained_without_network_or_cache_says_how_to_get_weights(monkeypatch, tmp_path):
    # huggingface_hub reads these at import, so patch its constants as well as the environment
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("LOMIX_WEIGHTS", raising=False)
    with pytest.raises(FileNotFoundError, match=r"weights=PATH in Python\) or set LOMIX_WEIGHTS=PATH, to a timm "
                                                r"pvt_v2_b2 state_dict.*or run once with internet") as err:
        lx.models.build("pvt_v2_b2_emcad", 1, 9, pretrained=True)
    assert "\n" not in str(err.value)


def test_weights_path_loads_an_encoder_state_dict(tmp_path):
    torch.manual_seed(1)
    saved = timm.create_model("pvt_v2_b2", features_only=True, out_indices=(0, 1, 2, 3))
    torch.save(saved.state_dict(), tmp_path / "encoder.pth")
    torch.manual_seed(2)  # so a model left at its random init would differ from the file
    model = lx.models.build("pvt_v2_b2_emcad", 1, 9, weights=tmp_path / "encoder.pth")
    loaded, expected = model.encoder.state_dict(), saved.state_dict()
    assert all(torch.equal(loaded[k], expected[k]) for k in expected)


def test_weights_path_loads_a_full_timm_classifier_checkpoint(tmp_path):
    torch.manual_seed(1)
    classifier = timm.create_model("pvt_v2_b0")
    torch.save({"state_dict": classifier.state_dict()}, tmp_path / "classifier.pth")
    model = lx.models.build("pvt_v2_b0_emcad", 3, 9, weights=tmp_path / "classifier.pth")
    assert torch.equal(model.encoder.stages_3.norm.weight, classifier.stages[3].norm.weight)
    assert torch.equal(model.encoder.patch_embed.proj.weight, classifier.patch_embed.proj.weight)


def test_weights_path_with_missing_keys_names_them(tmp_path):
    state = timm.create_model("pvt_v2_b0", features_only=True, out_indices=(0, 1, 2, 3)).state_dict()
    del state["stages_1.norm.weight"]
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(ValueError, match=r"does not fit pvt_v2_b0: 1 keys missing \['stages_1.norm.weight'\]"):
        lx.models.build("pvt_v2_b0_emcad", 3, 9, weights=tmp_path / "broken.pth")


def test_weights_in_the_original_pvt_layout_load(tmp_path):
    """The official code's pvt_v2_b2.pth (the PVT release) names layers patch_embed1, block1.0, norm1, ..."""
    import re

    torch.manual_seed(3)
    classifier = timm.create_model("pvt_v2_b0")
    original = {}
    for key, value in classifier.state_dict().items():
        key = key.replace("patch_embed.", "patch_embed1.").replace("dwconv.", "dwconv.dwconv.")
        key = re.sub(r"stages\.(\d)\.downsample", lambda m: f"patch_embed{int(m.group(1)) + 1}", key)
        key = re.sub(r"stages\.(\d)\.blocks\.(\d+)", lambda m: f"block{int(m.group(1)) + 1}.{m.group(2)}", key)
        key = re.sub(r"stages\.(\d)\.norm", lambda m: f"norm{int(m.group(1)) + 1}", key)
        original[key] = value
    assert "block1.0.mlp.dwconv.dwconv.weight" in original and "patch_embed2.proj.weight" in original
    torch.save(original, tmp_path / "pvt_v2_b0.pth")
    model = lx.models.build("pvt_v2_b0_emcad", 1, 4, weights=tmp_path / "pvt_v2_b0.pth")
    assert torch.equal(model.encoder.stages_1.blocks[0].mlp.dwconv.weight, classifier.stages[1].blocks[0].mlp.dwconv.weight)


def test_pretrained_takes_the_file_named_by_the_environment(tmp_path, monkeypatch):
    torch.manual_seed(4)
    saved = timm.create_model("pvt_v2_b0", features_only=True, out_indices=(0, 1, 2, 3))
    torch.save(saved.state_dict(), tmp_path / "pvt_v2_b0.safetensors.pth")
    monkeypatch.setenv("LOMIX_WEIGHTS", str(tmp_path / "pvt_v2_b0.safetensors.pth"))
    model = lx.models.build("pvt_v2_b0_emcad", 1, 4, pretrained=True)
    assert torch.equal(model.encoder.stages_3.norm.weight, saved.stages_3.norm.weight)
    unpretrained = lx.models.build("pvt_v2_b0_emcad", 1, 4)  # the variable is read only when weights are asked for
    assert not torch.equal(unpretrained.encoder.patch_embed.proj.weight, saved.patch_embed.proj.weight)

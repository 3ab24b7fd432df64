"""A timm encoder with the EMCAD decoder: the LoMix paper's network and its relatives.

The paper's network is PVT-v2-b2 + EMCAD (``pvt_v2_b2_emcad``). The other PVT-v2 sizes and
three ResNets are registered too, so the effect of the encoder can be studied with the same
decoder. The encoder is ``timm.create_model(..., features_only=True)``, which yields features at
strides 4, 8, 16 and 32; the decoder (:mod:`.emcad`) turns them into four logits maps.

Weights. ``pretrained=False`` (the default) never touches the network. ``pretrained=True`` asks
timm for the ImageNet weights, which come from the Hugging Face cache or the internet.
``weights=PATH`` loads a local file instead, either the ``state_dict`` of this encoder or that
of a whole timm classifier, with strict key matching. When no weights can be had the error says
how to get them; a model asked for weights is never silently left random.

``official=True`` builds the official EMCADNet's choices (SLDGroup/LoMix ``lib/networks.py``)
instead of the kit's, for runs that must match the paper's code:

* MSCB activation ReLU6 instead of ReLU (measured effect of the difference: unknown);
* decoder convs initialised N(0, 0.02) with zero bias (the official ``_init_weights``) instead
  of PyTorch's default; the logits heads keep PyTorch's init in both;
* for input that is not 3-channel, the official stem (1×1 conv → BatchNorm → ReLU, PyTorch's
  init) instead of :class:`GrayToRGB`, a 1×1 conv that starts as the channel mean so the
  pretrained filters see a familiar input on step one. 3-channel input goes straight to the
  encoder in both. (The official model applies its stem to 1-channel input only.)
* PVT-v2 encoders with stochastic depth 0.1, as the official ``lib/pvtv2.py`` builds them
  (timm's default, and the kit's, is none).
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .emcad import EMCADDecoder
from .registry import check_input, register

# timm's feature stages at strides 4, 8, 16, 32. PVT-v2 starts at stride 4; a ResNet's stage 0
# is the stride-2 stem, so its last four stages are 1..4.
ENCODERS: dict[str, tuple[int, ...]] = {
    **{f"pvt_v2_b{i}": (0, 1, 2, 3) for i in range(6)},
    **{f"resnet{depth}": (1, 2, 3, 4) for depth in (18, 34, 50)},
}


def _pretrained_error(arch: str) -> FileNotFoundError:
    from .weights import how_to_provide

    return FileNotFoundError(f"ImageNet weights for {arch} could not be downloaded nor found in the local Hugging "
                             f"Face cache: {how_to_provide(arch)}")


def create_encoder(arch: str, pretrained: bool = False, weights: str | Path | None = None,
                   **timm_kwargs) -> nn.Module:
    """A timm feature extractor giving 4 maps at strides 4, 8, 16, 32; ``weights`` wins over ``pretrained``,
    and with ``pretrained`` a file named by ``$LOMIX_WEIGHTS`` wins over timm's download."""
    import timm  # here, not at the top: importing timm takes a second and only these models need it

    from .weights import local_file

    if arch not in ENCODERS:
        raise ValueError(f"unknown encoder {arch!r}; expected one of {sorted(ENCODERS)}")

    def make(**kw) -> nn.Module:
        return timm.create_model(arch, features_only=True, out_indices=ENCODERS[arch], **timm_kwargs, **kw)

    if weights is None and pretrained:
        weights = local_file(arch)
    if weights is not None:
        return _load_encoder_weights(make, arch, Path(weights))
    if not pretrained:
        return make(pretrained=False)
    try:
        return make(pretrained=True)
    except OSError as err:  # what huggingface_hub raises offline or on a cache miss
        raise _pretrained_error(arch) from err


def _load_encoder_weights(make, arch: str, path: Path) -> nn.Module:
    """Load a local file with strict key matching, in either of the two layouts timm uses.

    The encoder's own ``state_dict`` (keys such as ``stages_0.blocks.0...``) is loaded as is. A
    whole classifier's (``stages.0.blocks.0...``, plus a head) is checked key by key against the
    classifier and then handed to timm, which loads it into the full model before cutting that
    down to the feature stages. The check is ours because timm loads feature extractors with
    ``strict=False``, which would leave any missing layer silently random.
    """
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    import timm

    state = timm.models.load_state_dict(str(path))  # unwraps "state_dict"/"model", strips "module."
    if arch.startswith("pvt_v2") and "patch_embed1.proj.weight" in state:
        # The official code's file, pretrained_pth/pvt/pvt_v2_b2.pth from the PVT release, names its
        # layers as the original PVT code did; timm's own converter renames them.
        state = timm.models.pvt_v2.checkpoint_filter_fn(state, None)
    encoder = make(pretrained=False)
    encoder_keys = set(encoder.state_dict())
    if set(state) == encoder_keys:
        encoder.load_state_dict(state)
        return encoder
    with torch.device("meta"):  # only the key names are needed, so allocate nothing
        classifier = timm.create_model(arch)
    head = classifier.pretrained_cfg["classifier"] + "."
    body_keys = {k for k in classifier.state_dict() if not k.startswith(head)}
    body_state = {k for k in state if not k.startswith(head)}
    if body_state == body_keys:
        return make(pretrained=True, pretrained_cfg_overlay=dict(state_dict=state))
    # Report against whichever layout the file resembles more, so the list is about real gaps.
    expected = max([encoder_keys, body_keys], key=lambda keys: len(keys & body_state))
    missing, unexpected = sorted(expected - body_state), sorted(body_state - expected)
    raise ValueError(
        f"{path} does not fit {arch}: {len(missing)} keys missing {missing[:4]}, {len(unexpected)} "
        f"unexpected {unexpected[:4]}; expected the state_dict of a timm {arch} (features_only encoder or "
        f"full classifier)")


class GrayToRGB(nn.Module):
    """A learned 1×1 conv from ``in_channels`` to the 3 channels an ImageNet encoder expects.

    Learned rather than a fixed repeat because medical images are not photographs: the conv can
    rescale the intensities towards what the encoder's first filters were trained on, and with
    several input channels (MRI sequences) it can learn how to mix them. It starts as the channel
    mean copied to R, G and B, which for one channel is exactly the usual repeat, so pretrained
    filters see a familiar input on step one.
    """

    def __init__(self, in_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 3, 1)
        nn.init.constant_(self.conv.weight, 1.0 / in_channels)
        nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class OfficialStem(nn.Sequential):
    """The official EMCADNet's grey → RGB stem: 1×1 conv to 3 channels, BatchNorm, ReLU.

    Unlike :class:`GrayToRGB` it starts random (PyTorch's init), and its ReLU drops whatever
    the BatchNorm maps below zero. Indices 0, 1, 2 as in the official ``conv`` Sequential, so
    its weights load by name.
    """

    def __init__(self, in_channels: int):
        super().__init__(nn.Conv2d(in_channels, 3, 1), nn.BatchNorm2d(3), nn.ReLU(inplace=True))


class EncoderDecoder(nn.Module):
    """timm encoder → EMCAD decoder; forward gives 4 logits maps at input size, coarse → fine.

    ``official=True`` swaps in the official EMCADNet's stem, MSCB activation and decoder init
    (see the module docstring).
    """

    num_maps = 4
    stride = 32

    def __init__(self, arch: str, in_channels: int, num_classes: int, pretrained: bool = False,
                 weights: str | Path | None = None, official: bool = False, **timm_kwargs):
        super().__init__()
        if not isinstance(official, bool):
            raise ValueError(f"official must be True or False, got {official!r}")
        self.name = f"{arch}_emcad"
        self.in_channels = in_channels
        self.official = official
        stem = OfficialStem if official else GrayToRGB
        self.stem = nn.Identity() if in_channels == 3 else stem(in_channels)
        if official and arch.startswith("pvt_v2"):
            # The official lib/pvtv2.py builds every PVT-v2 with stochastic depth 0.1; timm's default is 0.
            timm_kwargs.setdefault("drop_path_rate", 0.1)
        self.encoder = create_encoder(arch, pretrained, weights, **timm_kwargs)
        reductions = self.encoder.feature_info.reduction()
        # e.g. output_stride=16 passed on to timm would break the decoder's ×2 steps
        if reductions != [4, 8, 16, 32]:
            raise ValueError(f"{arch}'s features are at strides {reductions}, expected [4, 8, 16, 32]")
        choices = dict(activation="relu6", init="official") if official else {}
        self.decoder = EMCADDecoder(self.encoder.feature_info.channels(), num_classes, **choices)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        check_input(x, self.in_channels, self.stride, self.name)
        size = x.shape[-2:]
        return self.decoder(self.encoder(self.stem(x)), size)


def _register(arch: str) -> None:
    def build(in_channels: int, num_classes: int, pretrained: bool = False,
              weights: str | Path | None = None, official: bool = False, **timm_kwargs) -> EncoderDecoder:
        return EncoderDecoder(arch, in_channels, num_classes, pretrained, weights, official, **timm_kwargs)

    build.__doc__ = (f"timm {arch} encoder + EMCAD decoder; official=True for the official EMCADNet's stem, "
                     f"MSCB activation and decoder init. Extra keyword arguments go to timm.create_model "
                     f"(e.g. drop_path_rate).")
    register(f"{arch}_emcad", encoder=arch, has_official_form=True)(build)


for _arch in ENCODERS:
    _register(_arch)

"""The EMCAD decoder (Rahman et al., CVPR 2024), written from the paper's description.

EMCAD is the decoder of the LoMix paper's main network (PVT-v2-b2 + EMCAD). It reads four
encoder feature maps at strides 4, 8, 16 and 32 and refines them coarse → fine:

    stride 32:  x = MSCAM(f32)                                   → head → p4
    stride 16:  u = EUCB(x);  x = MSCAM(u + LGAG(gate=u, skip=f16)) → head → p3
    stride 8:   ... the same with f8                             → head → p2
    stride 4:   ... the same with f4                             → head → p1

MSCAM (multi-scale convolutional attention module) is channel attention, then spatial
attention, then a multi-scale convolution block. Each stage keeps its encoder feature's width,
so with PVT-v2-b2 the decoder runs at 512, 320, 128 and 64 channels. The decoder is cheap
because its only spatial convolutions are depthwise (MSCB, EUCB) or grouped (LGAG); the dense
work is all 1×1.

Every block here is small and self-contained so it can be read, tested and swapped on its own.

Two switches reproduce the official EMCAD code (SLDGroup/EMCAD, used unchanged by LoMix):
``activation="relu6"`` in MSCB's expand and depthwise convs (the official training scripts pass
``activation_mscb='relu6'``; EUCB, LGAG and CAB keep ReLU there too), and ``init="official"``,
the official ``_init_weights(scheme='normal')``: every decoder conv N(0, 0.02) with zero bias,
BatchNorm weight 1 and bias 0, the 1×1 logits heads excepted. With both, the same weights give
the official decoder's logits (``tests/test_official_parity.py``). The defaults, ReLU and
PyTorch's own init, are the kit's: what ReLU6 changes here has not been measured.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


ACTIVATIONS = {"relu": nn.ReLU, "relu6": nn.ReLU6}
INITS = ("default", "official")


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave the channels of ``groups`` equal groups (ShuffleNet's channel shuffle)."""
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class MSCB(nn.Module):
    """Multi-scale convolution block: expand, look at several scales at once, project back.

    A 1×1 conv widens the features ``expansion`` times (an inverted bottleneck, as in
    MobileNetV2) so the depthwise convs, which cannot mix channels, have more channels to work
    on. Parallel depthwise convs with kernels 1, 3 and 5 see three receptive fields of the same
    input; their outputs are summed rather than concatenated so the projection stays as cheap
    as for a single kernel. A 1×1 conv projects back to the input width and a residual keeps the
    block close to the identity at initialisation. ``activation`` ("relu" or "relu6") follows the
    expand and depthwise convs.

    The channel shuffle follows the paper. Here it is followed by a dense 1×1 conv, which can
    learn any channel order itself, so the shuffle does not change what the block can
    represent; it would matter if the projection were grouped.
    """

    def __init__(self, channels: int, kernel_sizes: Sequence[int] = (1, 3, 5), expansion: int = 2,
                 activation: str = "relu"):
        super().__init__()
        act = ACTIVATIONS[_check_choice("activation", activation, ACTIVATIONS)]
        wide = channels * expansion
        self.expand = nn.Sequential(
            nn.Conv2d(channels, wide, 1, bias=False), nn.BatchNorm2d(wide), act(inplace=True))
        self.depthwise = nn.ModuleList(
            nn.Sequential(nn.Conv2d(wide, wide, k, padding=k // 2, groups=wide, bias=False),
                          nn.BatchNorm2d(wide), act(inplace=True))
            for k in kernel_sizes)
        # No activation after the projection: the residual sum should be free to go negative.
        self.project = nn.Sequential(nn.Conv2d(wide, channels, 1, bias=False), nn.BatchNorm2d(channels))
        self.shuffle_groups = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        wide = self.expand(x)
        multi_scale = sum(conv(wide) for conv in self.depthwise)
        return x + self.project(channel_shuffle(multi_scale, self.shuffle_groups))


class EUCB(nn.Module):
    """Efficient up-convolution block: upsample ×2, depthwise 3×3, then a 1×1 to the new width.

    A transposed conv or a dense 3×3 after upsampling would cost ``9·C_in·C_out`` weights; the
    depthwise 3×3 smooths the nearest-neighbour blocks for ``9·C_in`` and the 1×1 changes the
    width for ``C_in·C_out``.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.up = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(in_channels, in_channels, 3, padding=1, groups=in_channels, bias=False),
            nn.BatchNorm2d(in_channels), nn.ReLU(inplace=True))
        self.project = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.up(x))


class LGAG(nn.Module):
    """Large-kernel grouped attention gate: let the decoder decide which skip pixels to pass.

    The attention gate of Attention U-Net, with its 1×1 convs replaced by grouped 3×3 convs so
    the gate sees a neighbourhood (context) while costing little: with ``channels // 2`` groups
    each output channel reads only two input channels. The gate (upsampled decoder features) and
    the skip (encoder features) are embedded, summed, passed through a ReLU, squeezed to one
    channel and a sigmoid, and that per-pixel map in [0, 1] scales the skip.
    """

    def __init__(self, channels: int, kernel_size: int = 3):
        super().__init__()
        inner = channels // 2

        def embed() -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(channels, inner, kernel_size, padding=kernel_size // 2, groups=inner),
                nn.BatchNorm2d(inner))

        self.gate, self.skip = embed(), embed()
        self.attention = nn.Sequential(nn.Conv2d(inner, 1, 1), nn.BatchNorm2d(1), nn.Sigmoid())

    def forward(self, gate: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return skip * self.attention(F.relu(self.gate(gate) + self.skip(skip)))


class CAB(nn.Module):
    """Channel attention (CBAM): reweight channels by what they carry over the whole image.

    Average pooling says how strongly a channel responds on average, max pooling whether it
    fires strongly anywhere; one shared bottleneck MLP (1×1 convs, ``channels // ratio`` wide)
    scores both, and the summed scores pass through a sigmoid.
    """

    def __init__(self, channels: int, ratio: int = 16):
        super().__init__()
        hidden = max(channels // ratio, 1)
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=False), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = self.mlp(F.adaptive_avg_pool2d(x, 1)) + self.mlp(F.adaptive_max_pool2d(x, 1))
        return x * torch.sigmoid(score)


class SAB(nn.Module):
    """Spatial attention (CBAM): reweight pixels by how much is happening there.

    The channel-wise mean and max give two maps; a 7×7 conv on them yields one score per pixel.
    It has no per-channel weights, so one instance can serve every decoder stage whatever its
    width (the official decoder shares one, and so do we).
    """

    def __init__(self, kernel_size: int = 7):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.conv(pooled))


class MSCAM(nn.Module):
    """Multi-scale convolutional attention module: CAB, then SAB, then MSCB.

    Attention first decides what (channels) and where (pixels) matters; the multi-scale block
    then refines what was kept.
    """

    def __init__(self, channels: int, sab: SAB, kernel_sizes: Sequence[int], expansion: int,
                 activation: str = "relu"):
        super().__init__()
        self.cab = CAB(channels)
        self.sab = sab
        self.mscb = MSCB(channels, kernel_sizes, expansion, activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mscb(self.sab(self.cab(x)))


class EMCADDecoder(nn.Module):
    """Four MSCAM stages, coarse → fine, with one 1×1 logits head per stage.

    ``encoder_channels`` lists the encoder features' widths fine → coarse (strides 4, 8, 16,
    32), the order timm returns them in; stage widths are the same list reversed. ``activation``
    ("relu" | "relu6") is MSCB's; ``init`` ("default": PyTorch's | "official": N(0, 0.02) convs,
    as the official code) applies to the decoder blocks, never to the heads.
    """

    def __init__(self, encoder_channels: Sequence[int], num_classes: int,
                 kernel_sizes: Sequence[int] = (1, 3, 5), expansion: int = 2,
                 activation: str = "relu", init: str = "default"):
        super().__init__()
        _check_choice("activation", activation, ACTIVATIONS)
        _check_choice("init", init, INITS)
        widths = list(reversed(encoder_channels))
        sab = SAB()
        self.stages = nn.ModuleList(MSCAM(w, sab, kernel_sizes, expansion, activation) for w in widths)
        self.up = nn.ModuleList(EUCB(cin, cout) for cin, cout in zip(widths[:-1], widths[1:]))
        self.gates = nn.ModuleList(LGAG(w) for w in widths[1:])
        self.heads = nn.ModuleList(nn.Conv2d(w, num_classes, 1) for w in widths)
        if init == "official":
            # The official heads are plain nn.Conv2d in networks.py, outside the decoder whose
            # blocks re-initialise themselves, so they keep PyTorch's init.
            for blocks in (self.stages, self.up, self.gates):
                blocks.apply(official_init)

    def forward(self, features: Sequence[torch.Tensor], size: Sequence[int]) -> list[torch.Tensor]:
        """``features`` fine → coarse; returns logits at ``size``, coarse → fine."""
        x = self.stages[0](features[-1])
        decoded = [x]
        for up, gate, stage, skip in zip(self.up, self.gates, self.stages[1:], reversed(features[:-1])):
            x = up(x)
            # The gated skip is added, not concatenated, so every stage keeps its width.
            x = stage(x + gate(x, skip))
            decoded.append(x)
        return [F.interpolate(head(d), size=tuple(size), mode="bilinear", align_corners=False)
                for head, d in zip(self.heads, decoded)]


def official_init(module: nn.Module) -> None:
    """The official EMCAD ``_init_weights(scheme='normal')`` for one module (use with ``.apply``):
    conv weights N(0, 0.02) whatever their fan-in (PyTorch's default scales with it), conv biases
    0, BatchNorm weight 1 and bias 0."""
    if isinstance(module, nn.Conv2d):
        nn.init.normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def _check_choice(name: str, value: str, allowed) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {sorted(allowed)}, got {value!r}")
    return value

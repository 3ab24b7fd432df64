"""A plain U-Net with a 1×1 logits head at each of its four decoder depths."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .registry import check_input, register
from .upsample import resize_bilinear


def conv_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """Encoder of five stages (strides 1–16), decoder of four, one head per decoder stage.

    The heads sit at strides 8, 4, 2 and 1; their logits are bilinearly upsampled to the input
    size and returned coarse → fine, so ``outputs[-1]`` is the map used at inference.
    """

    name = "UNet"

    def __init__(self, in_channels: int, num_classes: int, width: int = 16):
        super().__init__()
        if not isinstance(width, int) or width < 1:
            raise ValueError(f"width must be a positive integer (channels of the first stage), got {width!r}")
        self.in_channels = in_channels
        widths = [width * 2 ** i for i in range(5)]
        self.stride = 2 ** (len(widths) - 1)
        self.num_maps = len(widths) - 1
        self.encoder = nn.ModuleList(conv_block(cin, cout) for cin, cout in zip([in_channels] + widths, widths))
        self.up = nn.ModuleList(nn.ConvTranspose2d(w * 2, w, 2, stride=2) for w in reversed(widths[:-1]))
        self.decoder = nn.ModuleList(conv_block(w * 2, w) for w in reversed(widths[:-1]))
        self.heads = nn.ModuleList(nn.Conv2d(w, num_classes, 1) for w in reversed(widths[:-1]))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        check_input(x, self.in_channels, self.stride, self.name)
        size = x.shape[-2:]
        skips = []
        for i, stage in enumerate(self.encoder):
            x = stage(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        x = skips.pop()
        logits = []
        for up, stage, head in zip(self.up, self.decoder, self.heads):
            x = stage(torch.cat([up(x), skips.pop()], dim=1))
            logits.append(resize_bilinear(head(x), size))
        return logits


@register("unet_small")
def unet_small(in_channels: int, num_classes: int, width: int = 16) -> UNet:
    """About 1.9 M parameters at width 16; trains on a CPU in minutes at 64–128 px."""
    model = UNet(in_channels, num_classes, width=width)
    model.name = "unet_small"
    return model

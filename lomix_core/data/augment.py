"""Geometric augmentation applied identically to an image and its label."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


class RandomRotFlip:
    """A random rot90, a random flip and a small random rotation, as in TransUNet's pipeline.

    Draws from torch's global RNG, so a seeded run with ``num_workers=0`` repeats exactly. The
    label is resampled with nearest neighbour, so it keeps integer class values.
    """

    def __init__(self, p_rot90: float = 0.5, p_flip: float = 0.5, p_rotate: float = 0.5, max_degrees: float = 20.0):
        self.p_rot90, self.p_flip, self.p_rotate, self.max_degrees = p_rot90, p_flip, p_rotate, max_degrees

    def __call__(self, image: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if torch.rand(()) < self.p_rot90:
            k = int(torch.randint(1, 4, ()))
            image, label = image.rot90(k, dims=(-2, -1)), label.rot90(k, dims=(-2, -1))
        if torch.rand(()) < self.p_flip:
            dim = -1 if torch.rand(()) < 0.5 else -2
            image, label = image.flip(dim), label.flip(dim)
        if torch.rand(()) < self.p_rotate:
            degrees = (torch.rand(()) * 2 - 1).item() * self.max_degrees
            image, label = rotate(image, label, degrees)
        return image.contiguous(), label.contiguous()


def rotate(image: torch.Tensor, label: torch.Tensor, degrees: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate ``image [C,H,W]`` (bilinear) and ``label [H,W]`` (nearest) about the centre."""
    a = math.radians(degrees)
    theta = torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]])
    grid = F.affine_grid(theta[None], [1, 1, *image.shape[-2:]], align_corners=False)
    image = F.grid_sample(image[None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0]
    label = F.grid_sample(label[None, None].float(), grid, mode="nearest", padding_mode="zeros",
                          align_corners=False)[0, 0].long()
    return image, label

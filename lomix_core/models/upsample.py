"""Bilinear resizing of logits maps as two small matrix products.

``F.interpolate(x, size, mode="bilinear", align_corners=False)`` is separable: each output row is a
weighted sum of two input rows, each output column of two input columns. Written as matrices,
``resize(x) = R x Cᵀ`` with ``R`` ``[H_out, H_in]`` and ``C`` ``[W_out, W_in]`` holding those two
weights per row. The values are the same up to rounding (to 5e-7 on logits of order 1, tested in
``tests/test_models.py``), and the backward is two matrix products too. On a CPU that is faster
than PyTorch's ``upsample_bilinear2d`` backward, which was the largest cost a multi-map loss adds
to a U-Net step outside the loss itself: ``benchmarks/upsample_time.py`` (unet_small's three coarse
heads at the cpu profile's shapes, forward + backward, one thread) measured 2.10 ms with
``F.interpolate`` and 0.83 ms this way.
"""
from __future__ import annotations

import functools
from typing import Sequence

import torch


@functools.lru_cache(maxsize=64)
def interpolation_matrix(size_in: int, size_out: int, dtype: torch.dtype = torch.float32,
                         device: torch.device | str = "cpu") -> torch.Tensor:
    """``[size_out, size_in]``: row o holds the weights of ``align_corners=False`` bilinear
    interpolation at output position o, whose source coordinate is ``(o + ½)·size_in/size_out − ½``
    (clamped at 0; the upper neighbour clamped at the edge), as PyTorch defines it. Computed in
    float64, so a power-of-two factor's weights are exact. Cached: the returned tensor is shared,
    do not modify it."""
    source = ((torch.arange(size_out, dtype=torch.float64) + 0.5) * (size_in / size_out) - 0.5).clamp(min=0)
    lower = source.floor().long().clamp(max=size_in - 1)
    upper = (lower + 1).clamp(max=size_in - 1)
    fraction = source - lower
    rows = torch.arange(size_out)
    matrix = torch.zeros(size_out, size_in, dtype=torch.float64)
    matrix.index_put_((rows, lower), 1 - fraction, accumulate=True)  # accumulate: at the edge lower == upper
    matrix.index_put_((rows, upper), fraction, accumulate=True)
    return matrix.to(dtype=dtype, device=device)


def resize_bilinear(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """``x`` ``[..., H, W]`` resized to ``size`` ``(H_out, W_out)``, as
    ``F.interpolate(x, size, mode="bilinear", align_corners=False)`` (without antialiasing); a map
    already at ``size`` is returned as it is."""
    size = tuple(int(s) for s in size)
    if len(size) != 2:
        raise ValueError(f"size must be (height, width), got {size}")
    if tuple(x.shape[-2:]) == size:
        return x
    rows = interpolation_matrix(x.shape[-2], size[0], x.dtype, x.device)
    columns = interpolation_matrix(x.shape[-1], size[1], x.dtype, x.device)
    return rows @ x @ columns.T

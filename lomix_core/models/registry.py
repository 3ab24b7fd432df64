"""A name → constructor registry, so configs and notebooks can name models as strings."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ..foundations.arguments import is_int, reject_unknown_options

@dataclass(frozen=True)
class ModelSpec:
    """A registered model: its constructor, and what the rest of the kit needs to know about it
    without taking its name apart."""

    name: str
    constructor: Callable[..., nn.Module]
    encoder: str | None = None  # the timm encoder it builds on, whose ImageNet weights it can load
    has_official_form: bool = False  # takes official=True: the official code's network (protocol="official")


_MODELS: dict[str, ModelSpec] = {}


def register(name: str, encoder: str | None = None, has_official_form: bool = False):
    """Decorator: ``@register("unet_small")`` on a ``f(in_channels, num_classes, **kw)``."""
    def decorator(fn):
        if name in _MODELS:
            raise ValueError(f"model {name!r} is already registered")
        _MODELS[name] = ModelSpec(name, fn, encoder, has_official_form)
        return fn
    return decorator


def available() -> list[str]:
    return sorted(_MODELS)


def spec(name: str) -> ModelSpec:
    """The registry entry of model ``name``; one line naming the registered models if there is none."""
    if not isinstance(name, str) or name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {available()}")
    return _MODELS[name]


def build(name: str, in_channels: int, num_classes: int, **kwargs) -> nn.Module:
    constructor = spec(name).constructor
    if not (is_int(in_channels) and is_int(num_classes)) or in_channels < 1 or num_classes < 2:
        raise ValueError(f"need integers in_channels >= 1 and num_classes >= 2, got {in_channels!r} and {num_classes!r}")
    reject_unknown_options(constructor, kwargs, f"model {name!r}", reserved=("in_channels", "num_classes"))
    return constructor(in_channels=in_channels, num_classes=num_classes, **kwargs)


def valid_sizes(size: tuple[int, int], stride: int) -> list[tuple[int, int]]:
    """The sizes divisible by ``stride`` nearest to ``size``: each side rounded down, then up (at least ``stride``)."""
    down = tuple(max(stride, side // stride * stride) for side in size)
    up = tuple(max(stride, -(-side // stride) * stride) for side in size)
    return [down] if down == up else [down, up]


def check_input(x, in_channels: int, stride: int, name: str) -> None:
    """Raise one line if ``x`` is not a batch ``[B, in_channels, H, W]`` with H and W divisible by ``stride``.

    Shapes only: no host synchronisation, so it costs nothing per step.
    """
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        got = f"shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} expects an image batch [B, {in_channels}, H, W], got {got} "
                         f"(add the batch axis with x[None] for one image)")
    if not x.is_floating_point():
        raise ValueError(f"{name} expects float images in [0, 1], got {x.dtype} (a dataset keeps 8-bit images as "
                         f"uint8: take them with dataset.image_batch(indices) or dataset[i], which scale them)")
    if x.shape[1] != in_channels:
        raise ValueError(f"{name} was built for in_channels={in_channels} but the input has {x.shape[1]} channels "
                         f"(shape {tuple(x.shape)})")
    size = (int(x.shape[-2]), int(x.shape[-1]))
    if size[0] % stride or size[1] % stride:
        nearest = valid_sizes(size, stride)
        which = f"sizes are {nearest[0]} or {nearest[1]}" if len(nearest) == 2 else f"size is {nearest[0]}"
        square = max(stride, round(max(size) / stride) * stride)
        raise ValueError(f"input size {size} must be divisible by {stride} for {name}: the nearest valid {which} "
                         f"(load the data at such a size, e.g. size={square})")

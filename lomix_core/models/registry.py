"""A name → constructor registry, so configs and notebooks can name models as strings."""
from __future__ import annotations

import inspect
from typing import Callable

from torch import nn

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register(name: str):
    """Decorator: ``@register("unet_small")`` on a ``f(in_channels, num_classes, **kw)``."""
    def decorator(fn):
        if name in _MODELS:
            raise ValueError(f"model {name!r} is already registered")
        _MODELS[name] = fn
        return fn
    return decorator


def available() -> list[str]:
    return sorted(_MODELS)


def build(name: str, in_channels: int, num_classes: int, **kwargs) -> nn.Module:
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {available()}")
    if in_channels < 1 or num_classes < 2:
        raise ValueError(f"need in_channels >= 1 and num_classes >= 2, got {in_channels} and {num_classes}")
    constructor = _MODELS[name]
    params = inspect.signature(constructor).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(kwargs) - set(params))
        if unknown:
            options = sorted(set(params) - {"in_channels", "num_classes"})
            raise ValueError(f"model {name!r} does not take {unknown}; its options are {options}")
    return constructor(in_channels=in_channels, num_classes=num_classes, **kwargs)

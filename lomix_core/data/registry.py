"""A name → loader registry, so configs and notebooks can name datasets as strings."""
from __future__ import annotations

import inspect
from typing import Callable

from .slices import SliceDataset

SPLITS = ("train", "val", "test")
_DATASETS: dict[str, Callable[..., SliceDataset]] = {}


def register(name: str):
    """Decorator: ``@register("synthetic")`` on a ``f(split, augment=False, **kw) -> SliceDataset``."""
    def decorator(fn):
        if name in _DATASETS:
            raise ValueError(f"dataset {name!r} is already registered")
        _DATASETS[name] = fn
        return fn
    return decorator


def available() -> list[str]:
    return sorted(_DATASETS)


def load(name: str, split: str = "train", augment: bool = False, **kwargs) -> SliceDataset:
    """The ``split`` ("train" | "val" | "test") of dataset ``name`` as a torch Dataset."""
    if not isinstance(name, str) or name not in _DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {available()}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    loader = _DATASETS[name]
    params = inspect.signature(loader).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(kwargs) - set(params))
        if unknown:
            options = sorted(set(params) - {"split", "augment"})
            raise ValueError(f"dataset {name!r} does not take {unknown}; its options are {options}")
    size = kwargs.get("size")
    sides = size if isinstance(size, (tuple, list)) and len(size) == 2 else [size]
    if size is not None and not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in sides):
        raise ValueError(f"size must be a positive integer (the side of the square slices in pixels), got {size!r}")
    return loader(split=split, augment=augment, **kwargs)

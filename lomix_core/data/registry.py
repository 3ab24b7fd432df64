"""A name → loader registry, so configs and notebooks can name datasets as strings."""
from __future__ import annotations

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
    if name not in _DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {available()}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    return _DATASETS[name](split=split, augment=augment, **kwargs)

"""A name → loader registry, so configs and notebooks can name datasets as strings."""
from __future__ import annotations

from typing import Callable

from ..foundations.arguments import is_int, reject_unknown_options
from .augment import make_transform
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


def load(name: str, split: str = "train", augment: bool | str = False, **kwargs) -> SliceDataset:
    """The ``split`` ("train" | "val" | "test") of dataset ``name`` as a torch Dataset; ``augment``: False,
    True or "kit" (the kit's rotations and flips), or "official" (the official code's)."""
    if not isinstance(name, str) or name not in _DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {available()}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    make_transform(augment)  # a typo fails here, before the data is read
    loader = _DATASETS[name]
    reject_unknown_options(loader, kwargs, f"dataset {name!r}", reserved=("split", "augment"))
    size = kwargs.get("size")
    sides = size if isinstance(size, (tuple, list)) and len(size) == 2 else [size]
    if size is not None and not all(is_int(s) and s >= 1 for s in sides):
        raise ValueError(f"size must be a positive integer (the side of the square slices in pixels), got {size!r}")
    return loader(split=split, augment=augment, **kwargs)

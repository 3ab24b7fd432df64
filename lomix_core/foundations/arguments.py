"""Checks on what users pass in, shared by the registries and the loss, so every entry point
rejects a bad argument the same way: one line naming it and what was expected."""
from __future__ import annotations

import inspect
from typing import Callable


def is_int(value) -> bool:
    """An integer that is not a bool (``True`` is an ``int`` in Python, never a size or a count)."""
    return isinstance(value, int) and not isinstance(value, bool)


def reject_unknown_options(fn: Callable, options: dict, what: str, reserved: tuple[str, ...]) -> None:
    """Raise if ``options`` holds a keyword ``fn`` does not take, listing the ones it does.

    A misspelt option (``widht=8``) would otherwise surface as a TypeError deep in a constructor,
    or, for a function with ``**kwargs``, be ignored; ``reserved`` are the arguments the caller
    passes itself, which users need not see.
    """
    params = inspect.signature(fn).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    unknown = sorted(set(options) - set(params))
    if unknown:
        raise ValueError(f"{what} does not take {unknown}; its options are {sorted(set(params) - set(reserved))}")

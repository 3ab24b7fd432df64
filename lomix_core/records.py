"""Atomic writes for checkpoints and run records: a crash mid-write never leaves a torn file.

Each writer writes to a temporary file in the target's folder and then renames it over the
target; a rename within one file system is atomic, so readers see the old file or the new one.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import torch


def _atomic(path: str | Path, write: Callable[[str], None]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def save_json(obj: Any, path: str | Path) -> Path:
    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, default=str)
    return _atomic(path, write)


def save_text(text: str, path: str | Path) -> Path:
    return _atomic(path, lambda tmp: Path(tmp).write_text(text))


def save_csv(frame: pd.DataFrame, path: str | Path) -> Path:
    return _atomic(path, lambda tmp: frame.to_csv(tmp, index=False))


def save_torch(obj: Any, path: str | Path) -> Path:
    return _atomic(path, lambda tmp: torch.save(obj, tmp))

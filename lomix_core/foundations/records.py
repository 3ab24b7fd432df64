"""Atomic writes for checkpoints, run records and prepared data: a crash mid-write never leaves a torn file.

Each writer writes to a temporary file in the target's folder and then renames it over the
target; a rename within one file system is atomic, so readers see the old file or the new one.
:func:`git_state` names the source a record was written by.
"""
from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch


def atomic_write(path: str | Path, write: Callable[[str], None]) -> Path:
    """``write(temporary_name)``, then rename the result to ``path`` (creating its folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A random name of our own, not tempfile.mkstemp: mkstemp creates the file readable by its
    # owner only, and the rename would carry that over to prepared data meant to be shared.
    tmp = str(path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp"))
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
    return atomic_write(path, write)


def save_text(text: str, path: str | Path) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def save_csv(frame: pd.DataFrame, path: str | Path) -> Path:
    return atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))


def save_torch(obj: Any, path: str | Path) -> Path:
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def save_npz(arrays: dict[str, np.ndarray], path: str | Path) -> Path:
    """A compressed ``.npz``, written through an open file: given a name, numpy would append
    ``.npz`` to the temporary's name and the rename would miss it."""
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
    return atomic_write(path, write)


def git_state(folder: str | Path) -> tuple[str | None, bool | None]:
    """The commit checked out at ``folder`` and whether the checkout has uncommitted changes
    (untracked files included); ``(None, None)`` when ``folder`` holds no tracked files or git
    is missing, so a record can always be written."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, check=True,
                              timeout=30).stdout.strip()

    try:
        # Tracked files, not just an enclosing repository: an installed copy may sit in some
        # other project's checkout (its virtual environment), whose commit says nothing about it.
        if not git("ls-files", "--", "."):
            return None, None
        return git("rev-parse", "HEAD"), bool(git("status", "--porcelain"))
    except (OSError, subprocess.SubprocessError):
        return None, None

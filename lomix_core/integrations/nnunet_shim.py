"""Make the kit's trainers findable by nnU-Net's command line: ``python -m lomix_core nnunet install-trainers``.

``nnUNetv2_train … -tr NAME`` and ``nnUNetv2_predict`` find a trainer class by importing every module
under ``nnunetv2/training/nnUNetTrainer`` and taking the first with an attribute ``NAME``. The shim is
one small module there, :data:`SHIM_NAME`, that re-exports :mod:`lomix_core.integrations.nnunet`'s
trainers. Its first line marks it as the kit's, so that installing again rewrites only the kit's own
file (idempotent) and uninstalling removes only that file and its compiled copies. If the kit is
later uninstalled, the shim's import fails quietly instead of breaking nnU-Net's lookup of every
other trainer.

(nnU-Net 2.8 also searches the folders in ``$nnUNet_extTrainer``; the shim needs no variable set in
every shell and works for ``nnUNetv2_predict`` and the Python API alike.)
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from . import require

SHIM_NAME = "lomix_kit_trainers.py"
MARKER = "# lomix-kit trainer shim"
NNUNET_SUPPORTED = ("2.8.1", "2.9")  # the same bounds as lomix_core.integrations.nnunet

SHIM_TEXT = f'''{MARKER}: written by `python -m lomix_core nnunet install-trainers`; remove it with
# `python -m lomix_core nnunet uninstall-trainers`. It lets nnU-Net find the kit's trainers by name.
try:
    from lomix_core.integrations.nnunet import *  # noqa: F401,F403
except ImportError:  # the kit (or a supported nnunetv2) is gone: leave nnU-Net's other trainers alone
    pass
'''


def trainer_folder() -> Path:
    """The installed nnunetv2's trainer folder, or one line saying nnunetv2 is missing or unsupported."""
    require("nnunetv2", "nnunet", NNUNET_SUPPORTED)
    spec = importlib.util.find_spec("nnunetv2")
    folder = Path(next(iter(spec.submodule_search_locations))) / "training" / "nnUNetTrainer" / "variants"
    if not folder.is_dir():
        raise ImportError(f"nnunetv2 has no trainer folder {folder}; expected nnunetv2>={NNUNET_SUPPORTED[0]},"
                          f"<{NNUNET_SUPPORTED[1]}")
    return folder


def install_trainers(folder: str | os.PathLike | None = None) -> tuple[Path, bool]:
    """Write the shim into ``folder`` (default: nnunetv2's); returns its path and whether it changed."""
    folder = trainer_folder() if folder is None else Path(folder)
    shim = folder / SHIM_NAME
    if shim.exists():
        current = shim.read_text(errors="replace")
        if not current.startswith(MARKER):
            raise FileExistsError(f"{shim} exists and is not the kit's shim (no '{MARKER}' first line); "
                                  f"expected to own that file name, so nothing was written")
        if current == SHIM_TEXT:
            return shim, False
    temporary = shim.with_name(f".{SHIM_NAME}.tmp")
    temporary.write_text(SHIM_TEXT)
    os.replace(temporary, shim)
    return shim, True


def uninstall_trainers(folder: str | os.PathLike | None = None) -> list[Path]:
    """Remove the shim and its compiled copies from ``folder`` (default: nnunetv2's); returns what went."""
    folder = trainer_folder() if folder is None else Path(folder)
    shim = folder / SHIM_NAME
    if shim.exists() and not shim.read_text(errors="replace").startswith(MARKER):
        raise FileExistsError(f"{shim} is not the kit's shim (no '{MARKER}' first line); left in place")
    stem = SHIM_NAME[:-len(".py")]
    removed = [p for p in [shim, *(folder / "__pycache__").glob(f"{stem}.*.pyc")] if p.exists()]
    for path in removed:
        path.unlink()
    return removed


def installed(folder: str | os.PathLike | None = None) -> bool:
    folder = trainer_folder() if folder is None else Path(folder)
    shim = folder / SHIM_NAME
    return shim.is_file() and shim.read_text(errors="replace") == SHIM_TEXT

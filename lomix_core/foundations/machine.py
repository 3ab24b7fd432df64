"""The machine: which device training uses, what it is called, and what a run's numbers depend on.

Every number the kit prints names the machine that gave it, so this is the one place that turns
a device into words (:func:`device_name`), a whole machine into a line (:func:`summary`) and a
run's environment into a record (:func:`environment`). Of the kit it imports only ``records.git_state``.
"""
from __future__ import annotations

import importlib.metadata
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .records import git_state


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"``: the GPU when there is one, else the CPU; anything else as torch reads it."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def autocast_dtype(device: torch.device) -> torch.dtype:
    """bf16 where the GPU computes it natively (compute capability 8+), else fp16, whose small range
    needs GradScaler. A T4 reports bf16 as supported because it can emulate it, slowly: hence
    ``including_emulation=False``."""
    return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16


def cpu_name() -> str:
    """The processor's model name (from /proc/cpuinfo where there is one)."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def device_name(device: str | torch.device = "auto") -> str:
    """``device`` in words: the GPU's name, or the CPU's with its core count."""
    device = resolve_device(device)
    if device.type == "cuda":
        return f"GPU {torch.cuda.get_device_name(device)}"
    return f"CPU {cpu_name()}, {os.cpu_count()} cores"


def summary() -> str:
    """One line naming the hardware and software that produced the numbers."""
    device = f"GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "no GPU"
    return (f"{cpu_name()}, {os.cpu_count()} cores, {device}; Python {platform.python_version()}, "
            f"torch {torch.__version__}, {platform.system()} {platform.machine()}")


def kit_version() -> str:
    """The installed lomix-kit's version (pyproject.toml is its one source)."""
    try:
        return importlib.metadata.version("lomix-kit")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def environment(device: torch.device) -> dict[str, Any]:
    """What a run's numbers depend on besides its config: library versions, the kit's source
    (git commit, and whether the checkout had uncommitted changes) and the hardware."""
    commit, dirty = git_state(Path(__file__).parents[1])
    return {"lomix_core": kit_version(), "git_commit": commit, "git_dirty": dirty,
            "python": platform.python_version(), "torch": torch.__version__,
            "timm": importlib.metadata.version("timm"), "numpy": np.__version__, "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()}


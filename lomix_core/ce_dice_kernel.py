"""The C kernel of the CE + soft-Dice statistics (``ce_dice.c``), compiled once per machine.

PyTorch computes the loss of a ``[M, B, C, H, W]`` stack in about a dozen passes over it (log-
softmax, gather, exp, the sums, and as many backwards), each reading and writing the whole stack.
The kernel reads each block of pixels once forward and once backward and keeps its softmax in a
small buffer, so on a CPU the loss costs little more than reading the stack twice.

It is built on first use with the system's C compiler (``$CC``, else ``cc``) into
``$LOMIX_CACHE`` (default ``~/.cache/lomix_kit``), keyed by the source, the flags and the
processor, and loaded with ``ctypes``. :func:`load` returns None where that fails (no compiler,
another OS, a read-only cache), and the loss falls back to PyTorch; ``LOMIX_CE_DICE_KERNEL=0``
switches the kernel off. ``-ffast-math`` lets the compiler vectorise ``expf`` (glibc's libmvec)
and reorder the sums inside a block; it is given when compiling only, not when linking, so the
process's floating-point flags (denormals) stay untouched.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("ce_dice.c")
COMPILE_FLAGS = ["-O3", "-march=native", "-ffast-math", "-fPIC", "-std=c99"]
SWITCH = "LOMIX_CE_DICE_KERNEL"


def cache_dir() -> Path:
    return Path(os.environ.get("LOMIX_CACHE") or Path.home() / ".cache" / "lomix_kit")


def _processor() -> str:
    """What ``-march=native`` compiles for: the CPU's flags, so a shared cache never hands one
    machine's build to another."""
    try:
        return next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return platform.processor()


def _build(compiler: str) -> Path:
    key = hashlib.sha256(b"\0".join([SOURCE.read_bytes(), " ".join(COMPILE_FLAGS).encode(), compiler.encode(),
                                     _processor().encode()])).hexdigest()[:16]
    library = cache_dir() / f"ce_dice-{key}.so"
    if library.exists():
        return library
    library.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=library.parent) as tmp:
        obj, so = Path(tmp) / "ce_dice.o", Path(tmp) / "ce_dice.so"
        subprocess.run([compiler, *COMPILE_FLAGS, "-c", str(SOURCE), "-o", str(obj)], check=True, capture_output=True)
        subprocess.run([compiler, "-shared", str(obj), "-o", str(so), "-lmvec", "-lm"], check=True, capture_output=True)
        os.replace(so, library)  # atomic: a concurrent worker sees the old state or the whole library
    return library


@lru_cache(maxsize=None)
def load() -> ctypes.CDLL | None:
    """The compiled kernel, or None (with one warning saying why) where it cannot be built."""
    if os.environ.get(SWITCH) == "0" or platform.system() != "Linux":
        return None
    compiler = shutil.which(os.environ.get("CC", "cc"))
    if compiler is None:
        return None
    try:
        library = ctypes.CDLL(str(_build(compiler)))
    except (OSError, subprocess.CalledProcessError) as error:
        detail = getattr(error, "stderr", b"") or b""
        warnings.warn(f"the C kernel of the loss did not build ({error}; {detail.decode(errors='replace')[:300]}); "
                      f"the loss runs in PyTorch, slower on a CPU")
        return None
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    library.lomix_ce_dice_forward.argtypes = [ptr, ptr, i64, i64, i64, i64, i64, ptr, ptr, ptr]
    library.lomix_ce_dice_backward.argtypes = [ptr, ptr, i64, i64, i64, i64, i64, ptr, ptr, ptr, ptr]
    return library


def applies(maps: torch.Tensor) -> bool:
    """Whether the kernel can take this stack: fp32 on a CPU, and the kernel built."""
    return maps.device.type == "cpu" and maps.dtype == torch.float32 and load() is not None


def _split(num_maps: int, call) -> None:
    """Run ``call(m0, m1)`` over the maps, in as many threads as PyTorch uses (ctypes releases
    the GIL, so they run in parallel)."""
    threads = max(1, min(torch.get_num_threads(), num_maps))
    bounds = [num_maps * i // threads for i in range(threads + 1)]
    if threads == 1:
        status = [call(0, num_maps)]
    else:
        with ThreadPoolExecutor(threads) as pool:
            status = list(pool.map(call, bounds[:-1], bounds[1:]))
    if any(status):
        raise MemoryError("the loss's C kernel could not allocate its block buffer")


def statistics(maps: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(Σ -log p_y [M], I [M,C], P [M,C])`` of ``maps [M,B,C,H,W]`` (see ``map_loss``), in fp64."""
    maps, labels = maps.contiguous(), target.to(torch.int32).contiguous()
    num_maps, batch, classes = maps.shape[:3]
    pixels = maps[0, 0, 0].numel()
    ce = maps.new_empty(num_maps, dtype=torch.float64)
    inter, prob_sq = maps.new_empty(2, num_maps, classes, dtype=torch.float64)
    _split(num_maps, lambda m0, m1: load().lomix_ce_dice_forward(
        maps.data_ptr(), labels.data_ptr(), batch, classes, pixels, m0, m1, ce.data_ptr(), inter.data_ptr(),
        prob_sq.data_ptr()))
    return ce, inter, prob_sq


def gradient(maps: torch.Tensor, target: torch.Tensor, a: torch.Tensor, gamma: torch.Tensor,
             beta: torch.Tensor) -> torch.Tensor:
    """``∂(Σ g_m L_m)/∂maps`` from the folded coefficients ``a [M]``, ``γ, β [M,C]`` (see ``map_loss``)."""
    maps, labels = maps.contiguous(), target.to(torch.int32).contiguous()
    a, gamma, beta = (t.to(torch.float32).contiguous() for t in (a, gamma, beta))
    num_maps, batch, classes = maps.shape[:3]
    grad = torch.empty_like(maps)
    _split(num_maps, lambda m0, m1: load().lomix_ce_dice_backward(
        maps.data_ptr(), labels.data_ptr(), batch, classes, maps[0, 0, 0].numel(), m0, m1, a.data_ptr(),
        gamma.data_ptr(), beta.data_ptr(), grad.data_ptr()))
    return grad

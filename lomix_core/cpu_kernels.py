"""The loss's C kernels (``cpu_kernels.c``) for a CPU, compiled once per machine.

* The CE + soft-Dice statistics of a ``[M, B, C, H, W]`` stack. PyTorch computes them in about a
  dozen passes over the stack (log-softmax, gather, exp, the sums, and as many backwards), each
  reading and writing all of it. The kernel reads each block of pixels once forward and once
  backward and keeps its softmax in a small buffer.
* The mutants' CE + soft-Dice statistics and gradient, fused (:mod:`lomix_core.fused_mutants`):
  every add/mul/concat/wf mutant of a block of pixels is built in a small buffer, its statistics
  taken, and backward its gradient pushed through the operator to the decoder maps and the
  operators' parameters, so no mutant is ever written to memory.
* wf's attention-weighted sums ``Σ_n α[s,n] x[n]`` for every subset at once, forward and
  backward, over members only. In PyTorch each is a broadcast product per map whose backward
  reduces over the broadcast dimensions, the slowest part of the mutants on a CPU.

They are built on first use with the system's C compiler (``$CC``, else ``cc``) into
``$LOMIX_CACHE`` (default ``~/.cache/lomix_kit``), keyed by the source, the flags and the
processor, and loaded with ``ctypes``. :func:`load` returns None where that fails (no compiler,
another OS, a read-only cache), and the loss falls back to PyTorch; ``LOMIX_CPU_KERNELS=0``
switches the kernels off. Both compute the same formulas as the PyTorch paths (tested to agree,
and to be no further from fp64). ``-ffast-math`` lets the compiler vectorise ``logf`` and ``exp``
(glibc's libmvec) and reorder the sums inside a block; it is given when compiling only, not when
linking, so the process's floating-point flags stay untouched (the kernels flush subnormals inside
each call and restore the flags). The softmax's exp is a polynomial in the C source, inlined into
its loop.
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

SOURCE = Path(__file__).with_name("cpu_kernels.c")
COMPILE_FLAGS = ["-O3", "-march=native", "-ffast-math", "-fPIC", "-std=c99"]
SWITCH = "LOMIX_CPU_KERNELS"


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
    library = cache_dir() / f"cpu_kernels-{key}.so"
    if library.exists():
        return library
    library.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=library.parent) as tmp:
        obj, so = Path(tmp) / "cpu_kernels.o", Path(tmp) / "cpu_kernels.so"
        subprocess.run([compiler, *COMPILE_FLAGS, "-c", str(SOURCE), "-o", str(obj)], check=True, capture_output=True)
        subprocess.run([compiler, "-shared", str(obj), "-o", str(so), "-lmvec", "-lm"], check=True, capture_output=True)
        os.replace(so, library)  # atomic: a concurrent worker sees the old state or the whole library
    return library


@lru_cache(maxsize=None)
def load() -> ctypes.CDLL | None:
    """The compiled kernels, or None (with one warning saying why) where they cannot be built."""
    if os.environ.get(SWITCH) == "0" or platform.system() != "Linux":
        return None
    compiler = shutil.which(os.environ.get("CC", "cc"))
    if compiler is None:
        return None
    try:
        library = ctypes.CDLL(str(_build(compiler)))
    except (OSError, subprocess.CalledProcessError) as error:
        detail = getattr(error, "stderr", b"") or b""
        warnings.warn(f"the loss's C kernels did not build ({error}; {detail.decode(errors='replace')[:300]}); "
                      f"the loss runs in PyTorch, slower on a CPU")
        return None
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    library.lomix_ce_dice_forward.argtypes = [ptr, ptr] + [i64] * 8 + [ptr, ptr, ptr]
    library.lomix_ce_dice_backward.argtypes = [ptr, ptr] + [i64] * 8 + [ptr, ptr, ptr, ptr]
    for name in ("forward", "backward_alpha", "backward_x"):
        getattr(library, f"lomix_weighted_sum_{name}").argtypes = [ptr, ptr, ptr] + [i64] * 7 + [ptr]
    library.lomix_mutants_forward.argtypes = [ctypes.POINTER(MutantLayout), ptr, i64, i64, ptr, ptr, ptr]
    library.lomix_mutants_backward.argtypes = [ctypes.POINTER(MutantLayout), ptr, i64, i64] + [ptr] * 7
    return library


def applies(*tensors: torch.Tensor) -> bool:
    """Whether the kernels can take these tensors: fp32 on a CPU, and the kernels built."""
    return all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors) and load() is not None


def _thread_count(count: int) -> int:
    """As many threads as PyTorch uses, but no more than there are items (maps, subsets, images)."""
    return max(1, min(torch.get_num_threads(), count))


def _split(count: int, call) -> None:
    """Run ``call(i0, i1)`` over slices of ``range(count)`` (maps or subsets), in as many threads
    as PyTorch uses (ctypes releases the GIL, so they run in parallel)."""
    threads = _thread_count(count)
    bounds = [count * i // threads for i in range(threads + 1)]
    if threads == 1:
        status = [call(0, count)]
    else:
        with ThreadPoolExecutor(threads) as pool:
            status = list(pool.map(call, bounds[:-1], bounds[1:]))
    if any(status):
        raise MemoryError("a C kernel of the loss could not allocate its block buffer")


def _split_with_slots(count: int, call) -> int:
    """Like :func:`_split`, for kernels that add to per-thread accumulators: ``call(slot, i0, i1)``
    with slot = 0 .. threads - 1. Returns the number of slots used."""
    threads = _thread_count(count)
    bounds = [count * i // threads for i in range(threads + 1)]
    if threads == 1:
        status = [call(0, 0, count)]
    else:
        with ThreadPoolExecutor(threads) as pool:
            status = list(pool.map(call, range(threads), bounds[:-1], bounds[1:]))
    if any(status):
        raise MemoryError("a C kernel of the loss could not allocate its block buffers")
    return threads


def _pixels_contiguous(maps: torch.Tensor) -> torch.Tensor:
    """``maps [M,B,C,H,W]`` with each class plane contiguous, as the kernels read it. M, B and C may
    have any strides (concat's mutants come as a permuted view), so usually no copy is made."""
    height, width = maps.shape[3:]
    if maps.stride(4) == 1 and maps.stride(3) == width:
        return maps
    return maps.contiguous()


def _layout(maps: torch.Tensor) -> tuple[int, ...]:
    """``B, C, HW`` and the strides of M, B and C, as the kernels take them."""
    return (maps.shape[1], maps.shape[2], maps.shape[3] * maps.shape[4], *maps.stride()[:3])


def statistics(maps: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(Σ -log p_y [M], I [M,C], P [M,C])`` of ``maps [M,B,C,H,W]`` (see ``map_loss``), in fp64."""
    maps, labels = _pixels_contiguous(maps), target.to(torch.int32).contiguous()
    num_maps, classes = maps.shape[0], maps.shape[2]
    ce = maps.new_empty(num_maps, dtype=torch.float64)
    inter, prob_sq = maps.new_empty(2, num_maps, classes, dtype=torch.float64)
    _split(num_maps, lambda m0, m1: load().lomix_ce_dice_forward(
        maps.data_ptr(), labels.data_ptr(), *_layout(maps), m0, m1, ce.data_ptr(), inter.data_ptr(),
        prob_sq.data_ptr()))
    return ce, inter, prob_sq


def gradient(maps: torch.Tensor, target: torch.Tensor, a: torch.Tensor, gamma: torch.Tensor,
             beta: torch.Tensor) -> torch.Tensor:
    """``∂(Σ g_m L_m)/∂maps`` from the folded coefficients ``a [M]``, ``γ, β [M,C]`` (see ``map_loss``),
    laid out like ``maps``."""
    maps, labels = _pixels_contiguous(maps), target.to(torch.int32).contiguous()
    a, gamma, beta = (t.to(torch.float32).contiguous() for t in (a, gamma, beta))
    grad = torch.empty_like(maps)  # keeps maps' strides (a dense permutation)
    if grad.stride() != maps.stride():
        maps = maps.contiguous()
        grad = torch.empty_like(maps)
    _split(maps.shape[0], lambda m0, m1: load().lomix_ce_dice_backward(
        maps.data_ptr(), labels.data_ptr(), *_layout(maps), m0, m1, a.data_ptr(), gamma.data_ptr(),
        beta.data_ptr(), grad.data_ptr()))
    return grad


class WeightedSum(torch.autograd.Function):
    """``out[s] = Σ_{n ∈ s} α[s,n] x[n]``: ``alpha [S,N,B,H,W]`` (0 off the members), ``x [N,B,C,H,W]``,
    ``member [S,N]`` bool → ``[S,B,C,H,W]``."""

    @staticmethod
    def forward(ctx, alpha, x, member):
        alpha, x, member = alpha.contiguous(), x.contiguous(), member.to(torch.uint8).contiguous()
        (subsets, maps), (_, batch, classes) = member.shape, x.shape[:3]
        shape = (subsets, maps, batch, classes, x[0, 0, 0].numel())
        out = x.new_empty(subsets, *x.shape[1:])
        _split(subsets, lambda s0, s1: load().lomix_weighted_sum_forward(
            alpha.data_ptr(), x.data_ptr(), member.data_ptr(), *shape, s0, s1, out.data_ptr()))
        ctx.save_for_backward(alpha, x, member)
        return out

    @staticmethod
    def backward(ctx, grad):
        alpha, x, member = ctx.saved_tensors
        grad = grad.contiguous()
        (subsets, maps), (_, batch, classes) = member.shape, x.shape[:3]
        shape = (subsets, maps, batch, classes, x[0, 0, 0].numel())
        d_alpha, d_x = torch.empty_like(alpha), torch.empty_like(x)
        _split(subsets, lambda s0, s1: load().lomix_weighted_sum_backward_alpha(
            grad.data_ptr(), x.data_ptr(), member.data_ptr(), *shape, s0, s1, d_alpha.data_ptr()))
        _split(maps, lambda n0, n1: load().lomix_weighted_sum_backward_x(
            grad.data_ptr(), alpha.data_ptr(), member.data_ptr(), *shape, n0, n1, d_x.data_ptr()))
        return d_alpha, d_x, None


# ---- every supervised map, fused ----------------------------------------------------------------
OPERATOR_CODES = {"add": 0, "mul": 1, "concat": 2, "wf": 3}  # as cpu_kernels.c numbers them
MAX_MAPS = 16  # the kernel's map and member lists are fixed arrays of this size


class MutantLayout(ctypes.Structure):
    """``lomix_mutants`` of cpu_kernels.c: the shapes, the maps and their gradients, the originals,
    the operators and their parameters."""
    _fields_ = ([(name, ctypes.c_int64) for name in ("N", "B", "C", "HW", "S", "K", "R")]
                + [("x", ctypes.c_void_p * MAX_MAPS), ("dx", ctypes.c_void_p * MAX_MAPS)]
                + [(name, ctypes.c_void_p) for name in ("originals", "ops", "member", "cw", "cb", "ww", "wb")])


def _mutant_layout(maps, originals, operators, member, concat, wf, grads=()):
    """The C struct for the maps (each ``[B,C,H,W]``, contiguous) and, backward, their gradients'
    buffers; and the tensors it points into (kept alive by the caller while the kernel runs)."""
    codes = torch.tensor([OPERATOR_CODES[op] for op in operators] + [0], dtype=torch.int32)  # never empty
    indices = torch.tensor([*originals, 0], dtype=torch.int64)
    member = member.to(torch.uint8).contiguous()
    concat = [t.contiguous() for t in concat] if concat is not None else [None, None]
    wf = [t.contiguous() for t in wf] if wf is not None else [None, None]
    pointer = (lambda t: t.data_ptr() if t is not None else None)
    batch, classes, height, width = maps[0].shape
    layout = MutantLayout(len(maps), batch, classes, height * width, member.shape[0], len(operators), len(originals),
                          (ctypes.c_void_p * MAX_MAPS)(*map(pointer, maps)),
                          (ctypes.c_void_p * MAX_MAPS)(*map(pointer, grads)),
                          indices.data_ptr(), codes.data_ptr(), member.data_ptr(), *map(pointer, concat),
                          *map(pointer, wf))
    return layout, (codes, indices, member, *concat, *wf)


def mutant_statistics(maps, target, originals, operators, member, concat=None, wf=None):
    """``(Σ -log p_y [M], I [M,C], P [M,C])`` in fp64 of the ``M = R + len(operators) · S`` supervised
    maps: the R maps ``originals`` (indices into ``maps``) as they are, then the mutants of the N
    ``maps`` (each ``[B,C,H,W]``, fp32), without building them. ``member [S,N]`` bool;
    ``concat`` = (weight ``[S,N,C,C]``, bias ``[S,C]``) and ``wf`` = (weight ``[S,N,C]``, bias
    ``[S,N]``) as :meth:`~lomix_core.fusion.MutantGenerator.concat_parameters` and ``wf_parameters``
    give them."""
    maps, labels = [m.contiguous() for m in maps], target.to(torch.int32).contiguous()
    layout, alive = _mutant_layout(maps, originals, operators, member, concat, wf)
    batch, classes = maps[0].shape[:2]
    supervised, threads = len(originals) + len(operators) * member.shape[0], _thread_count(batch)
    ce = torch.zeros(threads, supervised, dtype=torch.float64)
    inter, prob_sq = torch.zeros(2, threads, supervised, classes, dtype=torch.float64)
    _split_with_slots(batch, lambda slot, b0, b1: load().lomix_mutants_forward(
        ctypes.byref(layout), labels.data_ptr(), b0, b1, ce[slot].data_ptr(), inter[slot].data_ptr(),
        prob_sq[slot].data_ptr()))
    return ce.sum(0), inter.sum(0), prob_sq.sum(0)


def mutant_gradient(maps, target, originals, operators, member, concat, wf, a, gamma, beta):
    """The gradient of ``Σ g_m L_m`` over the supervised maps of :func:`mutant_statistics` (``g``
    folded into ``a [M]``, ``γ, β [M,C]``): ``(d_maps, (d_concat_weight, d_concat_bias) or None,
    (d_wf_weight, d_wf_bias) or None)``, ``d_maps`` one tensor per map."""
    maps, labels = [m.contiguous() for m in maps], target.to(torch.int32).contiguous()
    d_maps = [torch.empty_like(m) for m in maps]
    layout, alive = _mutant_layout(maps, originals, operators, member, concat, wf, d_maps)
    a, gamma, beta = (t.to(torch.float32).contiguous() for t in (a, gamma, beta))
    batch = maps[0].shape[0]
    threads = _thread_count(batch)
    sums = [torch.zeros(threads, *t.shape, dtype=torch.float64) if t is not None else None
            for t in [*(concat or (None, None)), *(wf or (None, None))]]
    pointer = (lambda t, slot: t[slot].data_ptr() if t is not None else None)
    _split_with_slots(batch, lambda slot, b0, b1: load().lomix_mutants_backward(
        ctypes.byref(layout), labels.data_ptr(), b0, b1, a.data_ptr(), gamma.data_ptr(), beta.data_ptr(),
        *(pointer(t, slot) for t in sums)))
    d_concat, d_wf = ([t.sum(0).to(maps[0].dtype) for t in pair] if pair[0] is not None else None
                      for pair in (sums[:2], sums[2:]))
    return d_maps, d_concat, d_wf

"""The compiled CPU backend of the selective scan: ``core/scan_kernel.c``, built on first use with
the system C compiler and called through ``ctypes``. Optional: :func:`available` is False when no
compiler is found (or ``GLOCAL_SCAN_KERNEL=0``), and :func:`glocal.core.ssm.selective_scan` then
runs the pure-PyTorch chunked scan, which has the same chunk structure and the same results.

The kernel fuses what the PyTorch path does in separate passes (decay, state update, read-out;
in the backward the recomputation, the adjoint and every gradient) into one sweep per chunk of
steps, vectorised over blocks of 16 channels with its own vector ``exp``. Blocks are independent,
so ``torch.get_num_threads()`` Python threads run disjoint ranges of them (``ctypes`` releases the
GIL during a call). Measured with ``tools/benchmark.py --suite peers --only scan`` (B=2, L=4096,
D=768, N=16, forward + backward): see that tool's output and BASELINES.md.

Built libraries are cached in ``$GLOCAL_CACHE/kernels`` (default ``~/.cache/glocal/kernels``),
keyed by the source, the flags, the compiler and the CPU (the build targets ``-march=native``).
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

__all__ = ["available", "FusedScan"]

_SOURCE = Path(__file__).with_name("scan_kernel.c")
# no -ffast-math: the kernel's exp relies on exact rounding, and a library linked with it would
# flush denormals for the whole process
_CFLAGS = ["-O3", "-march=native", "-mprefer-vector-width=512", "-fPIC", "-std=gnu11"]
_TYPES = {torch.float32: [], torch.float64: ["-DREAL_DOUBLE"]}
_L, _P = ctypes.c_long, ctypes.c_void_p
_FORWARD_ARGS = [_P, _L, _L, _P, _L, _L, _P, _P, _P, _P, _P] + [_L] * 8
_BACKWARD_ARGS = [_P, _L, _L, _P, _L, _L, _P, _P, _P, _P, _L, _L, _P, _P, _P, _P, _P, _P] + [_L] * 8


def _cache_dir() -> Path:
    root = os.environ.get("GLOCAL_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "glocal")
    return Path(root) / "kernels"


def _cpu_id() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return "".join(line for line in f if line.startswith(("model name", "flags")))
    except OSError:
        return ""


def _build(cc: str, extra: list[str]) -> Path:
    version = subprocess.run([cc, "--version"], capture_output=True, text=True).stdout
    key = hashlib.sha256("\0".join([_SOURCE.read_text(), *_CFLAGS, *extra, version, _cpu_id()]).encode())
    lib = _cache_dir() / f"scan_kernel-{key.hexdigest()[:16]}.so"
    if lib.exists():
        return lib
    lib.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=lib.parent) as tmp:
        obj, out = Path(tmp) / "scan.o", Path(tmp) / "scan.so"
        subprocess.run([cc, *_CFLAGS, *extra, "-c", str(_SOURCE), "-o", str(obj)], check=True, capture_output=True)
        subprocess.run([cc, "-shared", str(obj), "-o", str(out), "-lm"], check=True, capture_output=True)
        os.replace(out, lib)  # atomic: a concurrent build of the same key is harmless
    return lib


@lru_cache(maxsize=None)
def _library(dtype: torch.dtype):
    """The loaded kernel for ``dtype``, or None when it cannot be built here."""
    if os.environ.get("GLOCAL_SCAN_KERNEL", "1") == "0" or dtype not in _TYPES:
        return None
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    try:
        lib = ctypes.CDLL(str(_build(cc, _TYPES[dtype])))
    except (OSError, subprocess.CalledProcessError):
        return None
    lib.scan_forward.argtypes, lib.scan_forward.restype = _FORWARD_ARGS, None
    lib.scan_backward.argtypes, lib.scan_backward.restype = _BACKWARD_ARGS, None
    lib.scan_items.argtypes, lib.scan_items.restype = [_L] * 3, _L
    return lib


def available(dtype: torch.dtype = torch.float32) -> bool:
    """Whether the compiled scan can run on CPU tensors of ``dtype`` (builds it on first call)."""
    return _library(dtype) is not None


_POOL: tuple[int, ThreadPoolExecutor] | None = None


def _pool() -> ThreadPoolExecutor:
    """The worker threads, made per process: a forked child (a data-loader worker) has none of its
    parent's threads, so it must not reuse the parent's executor."""
    global _POOL
    if _POOL is None or _POOL[0] != os.getpid():
        _POOL = (os.getpid(), ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="glocal-scan"))
    return _POOL[1]


def _ranges(items: int) -> list[tuple[int, int]]:
    k = max(1, min(torch.get_num_threads(), items))
    cuts = [items * i // k for i in range(k + 1)]
    return list(zip(cuts[:-1], cuts[1:]))


def _run(calls) -> None:
    """Run zero-argument callables, one per thread (the first on this one)."""
    futures = [_pool().submit(c) for c in calls[1:]] if len(calls) > 1 else []
    calls[0]()
    for f in futures:
        f.result()


def _ptr(t: Tensor) -> int:
    return t.data_ptr()


def contiguous_rows(t: Tensor) -> Tensor:
    """``t`` itself when its last dim is contiguous (enough for elementwise ops and the kernel), else a copy."""
    return t if t.stride(-1) == 1 else t.contiguous()


class FusedScan(torch.autograd.Function):
    """The compiled scan, with the interface of the PyTorch ``_ChunkedScan`` in core/ssm.py:
    ``x = dt * u, dt: [L, B, D]`` (channel stride 1), ``A_t: [G, N, Dg]``, ``Bm, Cm: [L, B, G, N]``,
    ``chunk`` steps between saved states -> ``y: [L, B, D]``."""

    @staticmethod
    def forward(ctx, x, dt, A_t, Bm, Cm, chunk):
        lib = _library(x.dtype)
        x, dt = contiguous_rows(x), contiguous_rows(dt)
        A_t, Bm, Cm = A_t.contiguous(), Bm.contiguous(), Cm.contiguous()
        L, Bsz, D = x.shape
        G, N, Dg = A_t.shape
        T = max(1, min(int(chunk), L))
        y = x.new_empty(L, Bsz, D)
        hs = x.new_empty(-(-L // T), Bsz, G, N, Dg)  # the state entering each chunk
        shape = (L, Bsz, G, N, Dg, T)
        _run([lambda lo=lo, hi=hi: lib.scan_forward(
            _ptr(x), x.stride(0), x.stride(1), _ptr(dt), dt.stride(0), dt.stride(1), _ptr(A_t), _ptr(Bm),
            _ptr(Cm), _ptr(y), _ptr(hs), *shape, lo, hi) for lo, hi in _ranges(lib.scan_items(Bsz, G, Dg))])
        ctx.save_for_backward(x, dt, A_t, Bm, Cm, hs)
        ctx.chunk = T
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, gy):
        x, dt, A_t, Bm, Cm, hs = ctx.saved_tensors
        lib = _library(x.dtype)
        gy = contiguous_rows(gy)
        L, Bsz, D = x.shape
        G, N, Dg = A_t.shape
        shape = (L, Bsz, G, N, Dg, ctx.chunk)
        ranges = _ranges(lib.scan_items(Bsz, G, Dg))
        gx, gdt = x.new_empty(L, Bsz, D), x.new_empty(L, Bsz, D)
        # per-thread partial sums of the gradients that reduce over channels (B, C) or steps (A)
        gB, gC = x.new_zeros(len(ranges), *Bm.shape), x.new_zeros(len(ranges), *Cm.shape)
        gA = x.new_zeros(len(ranges), *A_t.shape)
        _run([lambda i=i, lo=lo, hi=hi: lib.scan_backward(
            _ptr(x), x.stride(0), x.stride(1), _ptr(dt), dt.stride(0), dt.stride(1), _ptr(A_t), _ptr(Bm),
            _ptr(Cm), _ptr(gy), gy.stride(0), gy.stride(1), _ptr(hs), _ptr(gx), _ptr(gdt), _ptr(gB[i]),
            _ptr(gC[i]), _ptr(gA[i]), *shape, lo, hi) for i, (lo, hi) in enumerate(ranges)])
        return gx, gdt, gA.sum(0), gB.sum(0), gC.sum(0), None

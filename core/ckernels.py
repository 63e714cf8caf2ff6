"""Optional compiled CPU kernels: C sources next to this file, built on first use with the system C
compiler and called through ``ctypes``. Used by the selective scan (``scan_kernel.c``) and by
neighbourhood attention (``na_kernel.c``); each has a pure-PyTorch path computing the same thing,
which runs where no compiler is found or ``GLOCAL_KERNELS=0`` is set.

Built libraries are cached in ``$GLOCAL_CACHE/kernels`` (default ``~/.cache/glocal/kernels``),
keyed by the sources, the flags, the compiler and the CPU (the build targets ``-march=native``).
Kernels split their work into independent items; :func:`run` runs disjoint ranges of them on
``torch.get_num_threads()`` Python threads (``ctypes`` releases the GIL during a call).
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
from typing import Callable

import torch
from torch import Tensor

__all__ = ["load", "use_kernel", "run", "item_ranges", "ptr", "contiguous_rows", "BACKENDS", "LONG", "PTR", "REAL"]

_HERE = Path(__file__).parent
_HEADERS = ("simd.h",)  # shared by the kernels: part of every build's key
# no -ffast-math: the kernels' exp relies on exact rounding, and a library linked with it would
# flush denormals for the whole process
_CFLAGS = ["-O3", "-march=native", "-mprefer-vector-width=512", "-fopenmp-simd", "-fPIC", "-std=gnu11"]
_TYPES = {torch.float32: [], torch.float64: ["-DREAL_DOUBLE"]}
LONG, PTR = ctypes.c_long, ctypes.c_void_p
REAL = object()  # argtypes placeholder: the kernel's float type (float or double)
BACKENDS = ("auto", "torch", "kernel")  # what an op with a compiled kernel accepts as ``backend``


def _cache_dir() -> Path:
    root = os.environ.get("GLOCAL_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "glocal")
    return Path(root) / "kernels"


def _cpu_id() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return "".join(line for line in f if line.startswith(("model name", "flags")))
    except OSError:
        return ""


def _build(cc: str, source: Path, extra: list[str]) -> Path:
    version = subprocess.run([cc, "--version"], capture_output=True, text=True).stdout
    texts = [source.read_text()] + [(_HERE / h).read_text() for h in _HEADERS]
    key = hashlib.sha256("\0".join([*texts, *_CFLAGS, *extra, version, _cpu_id()]).encode())
    lib = _cache_dir() / f"{source.stem}-{key.hexdigest()[:16]}.so"
    if lib.exists():
        return lib
    lib.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=lib.parent) as tmp:
        obj, out = Path(tmp) / "kernel.o", Path(tmp) / "kernel.so"
        subprocess.run([cc, *_CFLAGS, *extra, f"-I{_HERE}", "-c", str(source), "-o", str(obj)],
                       check=True, capture_output=True)
        subprocess.run([cc, "-shared", str(obj), "-o", str(out), "-lm"], check=True, capture_output=True)
        os.replace(out, lib)  # atomic: a concurrent build of the same key is harmless
    return lib


@lru_cache(maxsize=None)
def load(name: str, dtype: torch.dtype, signatures: tuple[tuple, ...]):
    """The kernel ``name`` (``core/<name>.c``) for ``dtype``, with each ``(function, argtypes[,
    restype])`` of ``signatures`` declared (``REAL`` in argtypes: a C float or double; no restype:
    void); None when it cannot be built here (no compiler, a failed build, ``GLOCAL_KERNELS=0``, or
    a dtype it does not take)."""
    if os.environ.get("GLOCAL_KERNELS", "1") == "0" or dtype not in _TYPES:
        return None
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    try:
        lib = ctypes.CDLL(str(_build(cc, _HERE / f"{name}.c", _TYPES[dtype])))
    except (OSError, subprocess.CalledProcessError):
        return None
    real = ctypes.c_double if dtype == torch.float64 else ctypes.c_float
    for fn, args, *restype in signatures:
        f = getattr(lib, fn)
        f.argtypes, f.restype = [real if a is REAL else a for a in args], (restype or [None])[0]
    return lib


def use_kernel(backend: str, eligible: bool, op: str, needs: str) -> bool:
    """Whether an op runs its compiled kernel: ``backend`` one of :data:`BACKENDS`; ``eligible``:
    these inputs can take it and it builds here. ``"kernel"`` without it is an error naming what
    the kernel ``needs``."""
    if backend not in BACKENDS:
        raise ValueError(f"{op} backend must be one of {BACKENDS}; got {backend!r}")
    if backend == "kernel" and not eligible:
        from .errors import InputError

        raise InputError(f"{op}(backend='kernel') needs {needs} and a C compiler to build its kernel "
                         f"(set CC, or use backend='auto' / 'torch')")
    return backend != "torch" and eligible


_POOL: tuple[int, ThreadPoolExecutor] | None = None


def _pool() -> ThreadPoolExecutor:
    """The worker threads, made per process: a forked child (a data-loader worker) has none of its
    parent's threads, so it must not reuse the parent's executor."""
    global _POOL
    if _POOL is None or _POOL[0] != os.getpid():
        _POOL = (os.getpid(), ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="glocal-kernel"))
    return _POOL[1]


def item_ranges(items: int) -> list[tuple[int, int]]:
    """``items`` split into ``torch.get_num_threads()`` (at most ``items``) contiguous ranges."""
    k = max(1, min(torch.get_num_threads(), items))
    cuts = [items * i // k for i in range(k + 1)]
    return list(zip(cuts[:-1], cuts[1:]))


def run(call: Callable[[int, int, int], None], items: int) -> int:
    """``call(i, lo, hi)`` for each range ``i`` of :func:`item_ranges`, one per thread (the first on
    this one); returns the number of ranges (for per-range partial sums, allocate them first with
    ``len(item_ranges(items))``)."""
    ranges = item_ranges(items)
    futures = [_pool().submit(call, i, lo, hi) for i, (lo, hi) in enumerate(ranges) if i > 0]
    call(0, *ranges[0])
    for f in futures:
        f.result()
    return len(ranges)


def ptr(t: Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def contiguous_rows(t: Tensor) -> Tensor:
    """``t`` itself when its last dim is contiguous (enough for elementwise ops and the kernels), else a copy."""
    return t if t.stride(-1) == 1 else t.contiguous()

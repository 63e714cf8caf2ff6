"""The compiled CPU backend of the selective scan: ``core/scan_kernel.c``, built on first use (see
:mod:`glocal.core.ckernels`). Optional: :func:`available` is False when it cannot be built, and
:func:`glocal.core.ssm.selective_scan` then runs the pure-PyTorch chunked scan, which has the
same chunk structure and the same results.

The kernel fuses what the PyTorch path does in separate passes (decay, state update, read-out;
in the backward the recomputation, the adjoint and every gradient) into one sweep per chunk of
steps, vectorised over blocks of 16 channels with its own vector ``exp``; threads run disjoint
ranges of channel blocks. Measured with ``tools/benchmark.py --suite peers --only scan`` (B=2,
L=4096, D=768, N=16, forward + backward): see BASELINES.md.
"""
from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from .ckernels import LONG, PTR, contiguous_rows, item_ranges, load, ptr, run

__all__ = ["available", "FusedScan"]

_SIGNATURES = (
    ("scan_forward", (PTR, LONG, LONG, PTR, LONG, LONG, PTR, PTR, PTR, PTR, PTR) + (LONG,) * 8),
    ("scan_backward", (PTR, LONG, LONG, PTR, LONG, LONG, PTR, PTR, PTR, PTR, LONG, LONG, PTR, PTR, PTR, PTR, PTR, PTR)
     + (LONG,) * 8),
    ("scan_items", (LONG,) * 3, LONG),
)


def _library(dtype: torch.dtype):
    return load("scan_kernel", dtype, _SIGNATURES)


def available(dtype: torch.dtype = torch.float32) -> bool:
    """Whether the compiled scan can run on CPU tensors of ``dtype`` (builds it on first call)."""
    return _library(dtype) is not None


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
        run(lambda i, lo, hi: lib.scan_forward(
            ptr(x), x.stride(0), x.stride(1), ptr(dt), dt.stride(0), dt.stride(1), ptr(A_t), ptr(Bm), ptr(Cm),
            ptr(y), ptr(hs), L, Bsz, G, N, Dg, T, lo, hi), lib.scan_items(Bsz, G, Dg))
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
        items = lib.scan_items(Bsz, G, Dg)
        parts = len(item_ranges(items))
        gx, gdt = x.new_empty(L, Bsz, D), x.new_empty(L, Bsz, D)
        # per-thread partial sums of the gradients that reduce over channels (B, C) or steps (A)
        gB, gC = x.new_zeros(parts, *Bm.shape), x.new_zeros(parts, *Cm.shape)
        gA = x.new_zeros(parts, *A_t.shape)
        run(lambda i, lo, hi: lib.scan_backward(
            ptr(x), x.stride(0), x.stride(1), ptr(dt), dt.stride(0), dt.stride(1), ptr(A_t), ptr(Bm), ptr(Cm),
            ptr(gy), gy.stride(0), gy.stride(1), ptr(hs), ptr(gx), ptr(gdt), ptr(gB[i]), ptr(gC[i]), ptr(gA[i]),
            L, Bsz, G, N, Dg, ctx.chunk, lo, hi), items)
        return gx, gdt, gA.sum(0), gB.sum(0), gC.sum(0), None

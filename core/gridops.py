"""Layout helpers for tokens on a regular grid of any rank: padding a grid to a multiple of a
window, partitioning it into windows and back. Shared by every grid mixer and downsampler."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["pad_grid", "pad_grid_masked", "crop_grid", "window_partition", "window_reverse",
           "window_partition_heads", "window_reverse_heads"]


def _pad_spec(grid: tuple[int, ...], padded: tuple[int, ...]) -> list[int]:
    pad = []  # F.pad wants the last dim first
    for g, p in zip(reversed(grid), reversed(padded)):
        pad += [0, p - g]
    return pad


def pad_grid(x: Tensor, grid: tuple[int, ...], multiple: tuple[int, ...], value=0) -> tuple[Tensor, tuple[int, ...]]:
    """Pad ``x: [B, *grid, C]`` with ``value`` (zeros) at the end of each side to a multiple of
    ``multiple``."""
    padded = tuple(math.ceil(g / m) * m for g, m in zip(grid, multiple))
    if padded != tuple(grid):
        x = F.pad(x, [0, 0] + _pad_spec(grid, padded), value=value)
    return x, padded


def pad_grid_masked(x: Tensor, valid: Tensor | None, grid: tuple[int, ...], multiple: tuple[int, ...]):
    """:func:`pad_grid` plus the validity ``[B, *grid]`` bool (None = all valid): the padded cells
    are marked invalid. Returns ``(x [B, *padded, C], valid [B, *padded] | None, padded)``; valid
    stays None when nothing was padded and nothing was masked."""
    x, padded = pad_grid(x, grid, multiple)
    if padded != tuple(grid):
        if valid is None:
            valid = torch.ones(x.shape[0], *grid, dtype=torch.bool, device=x.device)
        valid = F.pad(valid, _pad_spec(grid, padded), value=False)
    return x, valid, padded


def crop_grid(x: Tensor, grid: tuple[int, ...]) -> Tensor:
    """Undo :func:`pad_grid`: ``[B, *padded, C] -> [B, *grid, C]``."""
    if tuple(x.shape[1:-1]) == tuple(grid):
        return x
    return x[(slice(None),) + tuple(slice(0, g) for g in grid)]


def window_partition(x: Tensor, window: tuple[int, ...]) -> Tensor:
    """``[B, *grid, C] -> [B * nW, prod(window), C]``; every grid side divisible by its window."""
    B, *grid, C = x.shape
    r = len(grid)
    shape = [B]
    for g, w in zip(grid, window):
        shape += [g // w, w]
    x = x.view(*shape, C)
    # [B, n1, w1, n2, w2, ..., C] -> [B, n1, n2, ..., w1, w2, ..., C]
    perm = [0] + [1 + 2 * i for i in range(r)] + [2 + 2 * i for i in range(r)] + [2 * r + 1]
    return x.permute(*perm).reshape(-1, math.prod(window), C)


def window_reverse(windows: Tensor, window: tuple[int, ...], grid: tuple[int, ...]) -> Tensor:
    """Inverse of :func:`window_partition`: ``[B * nW, prod(window), C] -> [B, *grid, C]``."""
    r, C = len(grid), windows.shape[-1]
    n = [g // w for g, w in zip(grid, window)]
    x = windows.view(-1, *n, *window, C)
    perm = [0]
    for i in range(r):
        perm += [1 + i, 1 + r + i]
    return x.permute(*perm, 2 * r + 1).reshape(-1, *grid, C)


def window_partition_heads(x: Tensor, window: tuple[int, ...], parts: int, heads: int) -> Tensor:
    """``[B, *grid, parts * heads * d] -> [parts, B * nW, heads, prod(window), d]`` in one copy:
    :func:`window_partition` fused with the split of a joint projection (q, k, v) into heads, so
    that every part comes out contiguous for batched matmuls."""
    B, *grid, C = x.shape
    r = len(grid)
    shape = [B]
    for g, w in zip(grid, window):
        shape += [g // w, w]
    x = x.view(*shape, parts, heads, C // (parts * heads))
    # [B, n1, w1, ..., parts, h, d] -> [parts, B, n1, n2, ..., h, w1, w2, ..., d]
    perm = ([2 * r + 1, 0] + [1 + 2 * i for i in range(r)] + [2 * r + 2]
            + [2 + 2 * i for i in range(r)] + [2 * r + 3])
    return x.permute(*perm).contiguous().view(parts, -1, heads, math.prod(window), C // (parts * heads))


def window_reverse_heads(windows: Tensor, window: tuple[int, ...], grid: tuple[int, ...]) -> Tensor:
    """Inverse of one part of :func:`window_partition_heads`, heads merged back into channels:
    ``[B * nW, heads, prod(window), d] -> [B, *grid, heads * d]`` in one copy."""
    r, (_, heads, _, d) = len(grid), windows.shape
    n = [g // w for g, w in zip(grid, window)]
    x = windows.view(-1, *n, heads, *window, d)
    # [B, n1, n2, ..., h, w1, w2, ..., d] -> [B, n1, w1, n2, w2, ..., h, d]
    perm = [0]
    for i in range(r):
        perm += [1 + i, r + 2 + i]
    return x.permute(*perm, r + 1, 2 * r + 2).reshape(-1, *grid, heads * d)

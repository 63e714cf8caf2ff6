"""Downsamplers between backbone stages. Each maps ``Tokens -> (Tokens, undo)`` where ``undo`` is
what a dense head needs to bring coarse features back to the finer tokens (for grids: the fine
grid and mask; for point pooling: the cluster of every fine point).

Grid downsamplers work on a grid of any rank and honour the mask: padded cells are zeroed before
merging, and a coarse cell is valid when any of its fine cells is.
"""
from __future__ import annotations

import math

from torch import Tensor, nn

from .block import build_norm
from .errors import InputError
from .gridops import pad_grid
from .tokens import Tokens
from .undo import GridUndo

__all__ = ["PatchMerging", "ConvDownsample", "coarse_tokens"]


def _factors(factors, rank: int) -> tuple[int, ...]:
    return (factors,) * rank if isinstance(factors, int) else tuple(factors)


def coarse_tokens(tokens: Tokens, x: Tensor, grid: tuple[int, ...], factors: tuple[int, ...]) -> tuple[Tokens, GridUndo]:
    """New tokens on the coarse ``grid`` and the undo back to ``tokens``: the mask is any-valid
    over each cell, ``pos`` the mean of the valid fine positions; structure tied to the fine tokens
    (edges, order) is not carried to the coarse level, and the undo restores it."""
    B = x.shape[0]
    mask = pos = None
    if tokens.mask is not None:
        m = tokens.mask.view(B, *tokens.grid, 1).float()
        m, _ = pad_grid(m, tokens.grid, factors)
        mask = _merge(m, grid, factors).amax(-1) > 0  # [B, L']
    if tokens.pos is not None:
        w = tokens.valid().view(B, *tokens.grid, 1).to(tokens.pos.dtype)
        p, _ = pad_grid(tokens.pos.view(B, *tokens.grid, -1) * w, tokens.grid, factors)
        w, _ = pad_grid(w, tokens.grid, factors)
        pos = _merge(p, grid, factors, split=True).sum(-2) / _merge(w, grid, factors, split=True).sum(-2).clamp_min(1)
    undo = GridUndo(tokens.grid, factors, fine=tokens)
    return Tokens(x, mask=mask, grid=grid, pos=pos, extras=tokens.extras), undo


def _merge(x: Tensor, coarse: tuple[int, ...], factors: tuple[int, ...], split: bool = False) -> Tensor:
    """``[B, *fine, C] -> [B, L', prod(f) * C]`` (or ``[B, L', prod(f), C]`` with ``split``), the
    fine cells of each coarse cell gathered with the last grid dim's offset varying slowest."""
    B, C, r = x.shape[0], x.shape[-1], len(coarse)
    shape = [B]
    for g, f in zip(coarse, factors):
        shape += [g, f]
    x = x.reshape(*shape, C)
    perm = [0] + [1 + 2 * i for i in range(r)] + [2 + 2 * i for i in reversed(range(r))] + [2 * r + 1]
    x = x.permute(*perm).reshape(B, math.prod(coarse), math.prod(factors), C)
    return x if split else x.flatten(2)


class PatchMerging(nn.Module):
    """Swin's patch merging on a grid of any rank: concatenate each ``factors`` block of cells,
    normalise, project ``prod(factors) * C -> out_dim`` without bias."""

    def __init__(self, dim: int, out_dim: int | None = None, factors=2, rank: int = 2, norm="LayerNorm"):
        super().__init__()
        self.factors = _factors(factors, rank)
        k = math.prod(self.factors)
        self.norm = build_norm(norm, k * dim)
        self.reduction = nn.Linear(k * dim, out_dim or 2 * dim, bias=False)

    def forward(self, tokens: Tokens) -> tuple[Tokens, GridUndo]:
        grid = tokens.require("grid", "PatchMerging")
        if len(grid) != len(self.factors):
            raise InputError(f"PatchMerging factors {self.factors} do not match the grid {grid}")
        B, L, C = tokens.x.shape
        x, padded = pad_grid(tokens.zero_padding(tokens.x).view(B, *grid, C), grid, self.factors)
        coarse = tuple(p // f for p, f in zip(padded, self.factors))
        x = self.reduction(self.norm(_merge(x, coarse, self.factors)))  # [B, L', out]
        return coarse_tokens(tokens, x, coarse, self.factors)


class ConvDownsample(nn.Module):
    """Strided convolution over the grid (UniFormer / ConvNeXt / MaxViT-stem style):
    ``[norm ->] conv(kernel, stride=factors) [-> norm]``; ``kernel`` defaults to ``factors``
    (non-overlapping patches); an odd larger kernel overlaps with 'same'-style padding."""

    def __init__(self, dim: int, out_dim: int | None = None, factors=2, rank: int = 2, kernel=None,
                 norm="LayerNorm", norm_first: bool = False):
        super().__init__()
        self.factors = _factors(factors, rank)
        self.kernel = self.factors if kernel is None else _factors(kernel, rank)
        out_dim = out_dim or 2 * dim
        conv = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[rank - 1]
        padding = tuple((k - f + 1) // 2 if k > f else 0 for k, f in zip(self.kernel, self.factors))
        self.conv = conv(dim, out_dim, self.kernel, stride=self.factors, padding=padding)
        self.norm_first = norm_first
        self.norm = build_norm(norm, dim if norm_first else out_dim)

    def forward(self, tokens: Tokens) -> tuple[Tokens, GridUndo]:
        grid = tokens.require("grid", "ConvDownsample")
        if len(grid) != len(self.factors):
            raise InputError(f"ConvDownsample factors {self.factors} do not match the grid {grid}")
        B, L, C = tokens.x.shape
        x = tokens.zero_padding(tokens.x)
        if self.norm_first:
            x = tokens.zero_padding(self.norm(x))
        x, padded = pad_grid(x.view(B, *grid, C), grid, self.factors)
        x = self.conv(x.movedim(-1, 1))  # [B, out, *coarse]
        coarse = tuple(x.shape[2:])
        x = x.flatten(2).transpose(1, 2)  # [B, L', out]
        if not self.norm_first:
            x = self.norm(x)
        return coarse_tokens(tokens, x, coarse, self.factors)

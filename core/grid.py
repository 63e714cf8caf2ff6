"""Grid attention (MaxViT, Tu et al., "MaxViT: Multi-Axis Vision Transformer", ECCV 2022): sparse,
global mixing on a grid of any rank.

The grid is cut into a fixed ``G x G`` lattice of *strided* groups: along a dim of length ``n``
(padded to a multiple of ``G``) with stride ``s = n / G``, the cell at ``i`` belongs to group
``i mod s`` and sits at position ``i // s`` inside it. Every group spans the whole grid, so a
token mixes with far-away tokens at a fixed stride: the dilated, global counterpart of window
attention, with the same cost. A relative position bias is indexed by the in-group offset.

Implemented as :class:`~glocal.core.attention.WindowAttention` on a re-laid-out grid: moving the
in-group coordinate of every dim to the fastest position turns the strided groups into contiguous
``G``-windows, so padding, masking and the relative position index are the window code's own.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .attention import WindowAttention
from .gridops import crop_grid, pad_grid_masked, window_partition, window_reverse
from .errors import InputError
from .tokens import Tokens

__all__ = ["GridAttention", "grid_partition", "grid_reverse", "grid_attention_ref"]


def _regroup(x: Tensor, groups: tuple[int, ...], inverse: bool = False) -> Tensor:
    """``[B, *grid, C]`` (each side a multiple of its ``G``) -> the same cells reordered so that
    strided group ``(i mod s)`` becomes the contiguous window ``(i mod s)``: cell ``i = p * s + a``
    (``p < G`` in-group position, ``a < s`` group) moves to ``a * G + p``; ``inverse`` undoes it.
    Each side splits into two axes that swap places: ``(p, a) -> (a, p)``, or back."""
    B, *grid, C = x.shape
    r = len(grid)
    shape = [B]
    for g, G in zip(grid, groups):
        shape += [g // G, G] if inverse else [G, g // G]
    perm = [0]
    for d in range(r):
        perm += [2 + 2 * d, 1 + 2 * d]
    return x.reshape(*shape, C).permute(*perm, 2 * r + 1).reshape(B, *grid, C)


def grid_partition(x: Tensor, groups: tuple[int, ...]) -> Tensor:
    """``[B, *grid, C] -> [B * n_groups, prod(groups), C]``: the strided groups, each in row-major
    order of its in-group position (every side divisible by its ``G``)."""
    return window_partition(_regroup(x, groups), groups)


def grid_reverse(parts: Tensor, groups: tuple[int, ...], grid: tuple[int, ...]) -> Tensor:
    """Inverse of :func:`grid_partition`: ``[B * n_groups, prod(groups), C] -> [B, *grid, C]``."""
    return _regroup(window_reverse(parts, groups, grid), groups, inverse=True)


def grid_attention_ref(q: Tensor, k: Tensor, v: Tensor, grid: tuple[int, ...], groups: tuple[int, ...],
                       bias_table: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
    """Reference grid attention as a dense masked attention over all ``L`` tokens (tiny inputs).

    ``q, k, v: [B, h, L, d]``; ``bias_table: [prod(2G - 1), h]``; ``mask: [B, L]``. Token ``i`` may
    attend to ``j`` iff they fall in the same strided group of the padded grid; the bias is indexed
    by their in-group offset. Returns ``[B, h, L, d]``.
    """
    G = tuple(min(G, g) for G, g in zip(groups, grid))
    padded = tuple(math.ceil(g / gg) * gg for g, gg in zip(grid, G))
    coords = torch.stack(torch.meshgrid(*[torch.arange(g) for g in grid], indexing="ij")).flatten(1)  # [r, L]
    stride = torch.tensor([p // gg for p, gg in zip(padded, G)])[:, None]
    group, inner = coords % stride, coords // stride  # [r, L]
    same = (group[:, :, None] == group[:, None, :]).all(0)  # [L, L]
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # [B, h, L, L]
    if bias_table is not None:
        rel = inner[:, :, None] - inner[:, None, :]  # query - key, as relative_position_index
        index = torch.zeros(rel.shape[1:], dtype=torch.long)
        for d, gg in enumerate(groups):
            index = index * (2 * gg - 1) + (rel[d] + gg - 1)
        scores = scores + bias_table[index.to(bias_table.device)].permute(2, 0, 1)
    allowed = same[None].to(q.device)
    if mask is not None:
        allowed = same & mask[:, None, :]
        allowed = allowed | ~allowed.any(-1, keepdim=True)
    scores = scores.masked_fill(~allowed[:, None], float("-inf"))
    return scores.softmax(-1) @ v


class GridAttention(WindowAttention):
    """Multi-head attention inside the strided groups of a ``G x G`` (x ``G``) lattice over a
    1D/2D/3D grid (MaxViT's grid attention), with a relative position bias.

    Reads ``Tokens.grid`` (required) and ``Tokens.mask``. A side that is not a multiple of ``G`` is
    padded at its end (pad cells are masked keys); a side no larger than ``G`` is one group there
    (every token along it attends to every other).

    Args:
        grid: lattice side ``G`` (int repeated over ``rank`` dims, or one per dim).
        rank: grid rank when ``grid`` is an int.
        rel_pos: learn a relative position bias table ``[prod(2G - 1), heads]``.

    Example:
        >>> import torch
        >>> from glocal.core import Tokens
        >>> ga = GridAttention(32, heads=2, grid=4)
        >>> t = Tokens(torch.randn(2, 12 * 8, 32), grid=(12, 8))
        >>> ga(t.x, t).shape
        torch.Size([2, 96, 32])
    """

    def __init__(self, dim: int, heads: int = 4, grid=7, rank: int = 2, qkv_bias: bool = True,
                 rel_pos: bool = True, attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__(dim, heads=heads, window=grid, shift=0, rank=rank, qkv_bias=qkv_bias,
                         rel_pos=rel_pos, attn_drop=attn_drop, proj_drop=proj_drop)

    @property
    def groups(self) -> tuple[int, ...]:
        return self.window

    def extra_repr(self):
        return f"heads={self.heads}, grid={self.window}"

    def _layout(self, tokens: Tokens):
        grid = tokens.require("grid", "GridAttention")
        if len(grid) != self.rank:
            raise InputError(f"GridAttention was built for rank-{self.rank} grids (grid "
                             f"{self.window}) but the tokens have grid {grid}")
        G = tuple(min(G, g) for G, g in zip(self.window, grid))
        padded = tuple(math.ceil(g / gg) * gg for g, gg in zip(grid, G))
        return grid, G, padded

    def forward(self, x: Tensor, tokens: Tokens) -> Tensor:
        grid, G, padded = self._layout(tokens)
        B, L, C = x.shape
        valid = None if tokens.mask is None else tokens.mask.view(B, *grid)
        xg, valid, _ = pad_grid_masked(x.view(B, *grid, C), valid, grid, G)
        valid = None if valid is None else valid.unsqueeze(-1)  # [B, *padded, 1]
        # strided groups -> contiguous windows of side G; window attention does the rest
        xw = _regroup(xg, G)  # [B, *padded, C]
        mask = None if valid is None else _regroup(valid, G).reshape(B, -1)
        inner = Tokens(xw.reshape(B, -1, C), mask=mask, grid=padded)
        o = super().forward(inner.x, inner).view(B, *padded, C)
        o = _regroup(o, G, inverse=True)
        return crop_grid(o, grid).reshape(B, L, C)

    def extra_macs(self, x: Tensor, tokens: Tokens) -> int:
        """QK^T and AV inside every group of the padded grid: ``2 * B * L_pad * prod(G) * C``."""
        _, G, padded = self._layout(tokens)
        B, _, C = x.shape
        return 2 * B * math.prod(padded) * math.prod(G) * C

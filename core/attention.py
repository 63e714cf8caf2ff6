"""Attention mixers: masked full attention (the quadratic reference every other mixer is checked
against) and window attention over a grid of any rank (Swin; MaxViT's "block" attention).

Both run on ``torch.nn.functional.scaled_dot_product_attention``; padded tokens are masked out as
keys, so they never influence valid tokens.
"""
from __future__ import annotations

import math
from functools import lru_cache

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from .dropout import Dropout, attention
from .errors import InputError
from .gridops import (crop_grid, pad_grid, pad_grid_masked, window_partition, window_partition_heads,
                      window_reverse, window_reverse_heads)
from .tokens import Tokens

__all__ = ["FullAttention", "WindowAttention", "biased_attention", "dense_attention",
           "relative_position_index", "window_partition", "window_reverse"]


def _key_mask(mask: Tensor) -> Tensor:
    """``[N, Lk]`` validity of keys -> boolean SDPA mask ``[N, 1, 1, Lk]``; a row with no valid key
    (a fully padded query group) attends everywhere instead of producing NaN: its output is
    padding and is never read by valid tokens."""
    mask = mask | ~mask.any(-1, keepdim=True)
    return mask[:, None, None, :]


def dense_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None,
                    bias: Tensor | None = None) -> Tensor:
    """Plain ``softmax(q k^T / sqrt(d) + bias) v`` with a boolean mask (True = may attend).

    The reference the SDPA paths are tested against. ``q, k, v: [N, h, L, d]``. A query row with
    no allowed key attends everywhere (its output is padding; this keeps it finite).
    """
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if bias is not None:
        scores = scores + bias
    if mask is not None:
        mask = mask | ~mask.any(-1, keepdim=True)
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(-1) @ v


def _scaled_bmm(a: Tensor, b: Tensor, scale: float, out: Tensor | None = None) -> Tensor:
    """``scale * a @ b`` over matching leading dims (``[..., n, m] @ [..., m, p]``), the scale
    applied inside the GEMM; ``out`` must be contiguous."""
    lead = a.shape[:-2]
    a, b = a.reshape(-1, *a.shape[-2:]), b.reshape(-1, *b.shape[-2:])
    if out is not None:
        out = out.view(a.shape[0], a.shape[1], b.shape[2])
    res = torch.baddbmm(a.new_zeros(()), a, b, beta=0, alpha=scale, out=out)
    return res.view(*lead, *res.shape[-2:])


class _BiasedAttention(torch.autograd.Function):
    """:func:`biased_attention` written out, with a backward by hand: the gradients of q, k and v
    land in one ``[3, ...]`` buffer (autograd would stack three), and the softmax scale rides in
    the matmuls."""

    @staticmethod
    def forward(ctx, qkv: Tensor, bias: Tensor) -> Tensor:
        q, k, v = qkv  # [N, h, L, d] each
        scale = q.shape[-1] ** -0.5
        attn = _scaled_bmm(q, k.transpose(-2, -1), scale).add_(bias).softmax(-1)  # [N, h, Lq, Lk]
        ctx.save_for_backward(qkv, attn)
        ctx.bias_shape = bias.shape
        return attn @ v

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):  # grad: [N, h, Lq, d]
        qkv, attn = ctx.saved_tensors
        q, k, v = qkv
        scale = q.shape[-1] ** -0.5
        grad_qkv = torch.empty_like(qkv)  # [3, N, h, L, d]
        torch.matmul(attn.transpose(-2, -1), grad, out=grad_qkv[2])
        grad_scores = torch._softmax_backward_data(grad @ v.transpose(-2, -1), attn, -1, attn.dtype)
        _scaled_bmm(grad_scores, k, scale, out=grad_qkv[0])
        _scaled_bmm(grad_scores.transpose(-2, -1), q, scale, out=grad_qkv[1])
        return grad_qkv, grad_scores.sum_to_size(ctx.bias_shape)


def biased_attention(qkv: Tensor, bias: Tensor, dropout_p: float = 0.0) -> Tensor:
    """``softmax(q k^T / sqrt(d) + bias) v`` for a joint ``qkv: [3, N, h, L, d]`` and an additive
    float ``bias`` broadcast to ``[N, h, L, L]`` (a learned position bias, ``-inf`` where a key is
    masked; every query row must keep a finite entry). Returns ``[N, h, L, d]``.

    SDPA, except where the bias needs a gradient on CPU: SDPA's CPU kernel has no gradient for its
    mask, so it falls back to a math path that scales q and k separately, adds a NaN-guarding pass
    over the scores and stacks the q, k, v gradients; :class:`_BiasedAttention` does without and is
    ~30% faster forward + backward at Swin's window sizes. :func:`dense_attention` is the reference.
    """
    q, k, v = qkv
    if dropout_p or not (bias.requires_grad and torch.is_grad_enabled() and q.device.type == "cpu"):
        return attention(q, k, v, attn_mask=bias, dropout_p=dropout_p)
    return _BiasedAttention.apply(qkv, bias)


class FullAttention(nn.Module):
    """Multi-head self-attention over all valid tokens, O(L^2) (ViT, GraphGPS's global branch).

    Reads ``Tokens.mask`` only.
    """

    def __init__(self, dim: int, heads: int = 8, qkv_bias: bool = True, attn_drop: float = 0.0,
                 proj_drop: float = 0.0):
        super().__init__()
        if dim % heads:
            raise ValueError(f"FullAttention: dim {dim} is not divisible by heads {heads}")
        self.heads, self.attn_drop = heads, attn_drop
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = Dropout(proj_drop)

    def forward(self, x: Tensor, tokens: Tokens) -> Tensor:
        B, L, C = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        mask = None  # [B, 1, 1, L] bool, True = may attend
        if tokens.mask is not None:
            mask = tokens.derived("key_mask", lambda: _key_mask(tokens.mask))
        o = attention(q, k, v, attn_mask=mask, dropout_p=self.attn_drop if self.training else 0.0)
        return self.proj_drop(self.proj(o.transpose(1, 2).reshape(B, L, C)))

    def extra_macs(self, x: Tensor, tokens: Tokens) -> int:
        """``q k^T`` and ``attn v``: ``2 * B * L^2 * C`` (padded keys included: they are computed)."""
        B, L, C = x.shape
        return 2 * B * L * L * C


# --- windows over a grid of any rank ---------------------------------------------------------------

@lru_cache(maxsize=64)
def relative_position_index(window: tuple[int, ...], table_window: tuple[int, ...]) -> Tensor:
    """``[N, N]`` index into a ``prod(2 * table_window - 1)``-row bias table for every pair of
    positions in a window of shape ``window`` (which may be smaller than ``table_window``)."""
    coords = torch.stack(torch.meshgrid(*[torch.arange(w) for w in window], indexing="ij"))
    coords = coords.flatten(1)  # [r, N]
    rel = coords[:, :, None] - coords[:, None, :]  # [r, N, N], in [-(w-1), w-1]
    index = torch.zeros(rel.shape[1:], dtype=torch.long)
    for d, tw in enumerate(table_window):
        index = index * (2 * tw - 1) + (rel[d] + tw - 1)
    return index


def _shift_regions(grid: tuple[int, ...], window: tuple[int, ...], shift: tuple[int, ...]) -> Tensor:
    """Region id of every cell after a cyclic shift (Swin): cells that came from different sides of
    the wrap-around must not attend to each other. ``[*grid]`` long."""
    ids = torch.zeros(grid, dtype=torch.long)
    for d, (g, w, s) in enumerate(zip(grid, window, shift)):
        if s == 0:
            continue
        r = torch.zeros(g, dtype=torch.long)
        r[g - w: g - s] = 1
        r[g - s:] = 2
        view = [1] * len(grid)
        view[d] = g
        ids = ids * 3 + r.view(view)
    return ids


class WindowAttention(nn.Module):
    """Multi-head attention inside non-overlapping windows of a 1D/2D/3D grid, optionally shifted
    (Swin, Liu et al. 2021; MaxViT's block attention), with a learned relative position bias.

    Reads ``Tokens.grid`` (required) and ``Tokens.mask``. Grid sides that are not a multiple of the
    window are padded internally; masked cells never act as keys, and by default neither do the
    padded ones. A grid side no larger than the window becomes one window there, unshifted (as in
    Swin and Video Swin).

    Args:
        window: window side (int, repeated over ``rank`` dims) or one side per dim.
        shift: cyclic shift per dim before partitioning (``window // 2`` for Swin's odd blocks);
            an int is repeated.
        rank: number of grid dims when ``window`` is an int.
        rel_pos: learn a relative position bias table ``[prod(2w - 1), heads]``.
        pad_keys: what the cells that pad the grid to whole windows are: ``"masked"`` (never keys,
            so a token's output does not depend on where the grid ends) or ``"zeros"`` (zero
            features after the norm, so keys with ``k`` = the qkv bias: what the reference Swin,
            Video Swin and torchvision implementations compute). Masked tokens are never keys.
        clip_bias: the bias of a window clipped to a grid side shorter than it: ``"relative"``
            (each pair by its own offset) or ``"prefix"`` (the first ``N x N`` block of the full
            window's index, as the Video Swin reference and torchvision's ``swin3d_*`` do; equal to
            ``"relative"`` when only the first dim is clipped).
    """

    def __init__(self, dim: int, heads: int = 4, window=7, shift=0, rank: int = 2,
                 qkv_bias: bool = True, rel_pos: bool = True, attn_drop: float = 0.0,
                 proj_drop: float = 0.0, pad_keys: str = "masked", clip_bias: str = "relative"):
        super().__init__()
        if dim % heads:
            raise ValueError(f"WindowAttention: dim {dim} is not divisible by heads {heads}")
        if pad_keys not in ("masked", "zeros"):
            raise ValueError(f"WindowAttention pad_keys must be 'masked' or 'zeros'; got {pad_keys!r}")
        if clip_bias not in ("relative", "prefix"):
            raise ValueError(f"WindowAttention clip_bias must be 'relative' or 'prefix'; got {clip_bias!r}")
        self.pad_keys, self.clip_bias = pad_keys, clip_bias
        self.window = (window,) * rank if isinstance(window, int) else tuple(window)
        self.rank = len(self.window)
        self.shift = (shift,) * self.rank if isinstance(shift, int) else tuple(shift)
        if len(self.shift) != self.rank:
            raise ValueError(f"WindowAttention: shift {self.shift} and window {self.window} differ in rank")
        self.heads, self.attn_drop = heads, attn_drop
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = Dropout(proj_drop)
        if rel_pos:
            rows = math.prod(2 * w - 1 for w in self.window)
            self.rel_pos_table = nn.Parameter(torch.zeros(rows, heads))
            nn.init.trunc_normal_(self.rel_pos_table, std=0.02)
        else:
            self.rel_pos_table = None

    def extra_repr(self):
        extra = "".join(f", {k}={v!r}" for k, v, default in (("pad_keys", self.pad_keys, "masked"),
                                                              ("clip_bias", self.clip_bias, "relative"))
                        if v != default)
        return f"heads={self.heads}, window={self.window}, shift={self.shift}{extra}"

    def extra_macs(self, x: Tensor, tokens: Tokens) -> int:
        """``q k^T`` and ``attn v`` in every window of the (internally padded) grid:
        ``2 * B * nW * N^2 * C`` with ``N = prod(window)`` (as Swin's own FLOP count)."""
        grid = tokens.require("grid", "WindowAttention")
        window = tuple(min(w, g) for w, g in zip(self.window, grid))
        n_windows = math.prod(math.ceil(g / w) for g, w in zip(grid, window))
        N = math.prod(window)
        return 2 * x.shape[0] * n_windows * N * N * x.shape[-1]

    def _bias(self, window: tuple[int, ...]) -> Tensor | None:  # [h, N, N]
        if self.rel_pos_table is None:
            return None
        if self.clip_bias == "prefix":  # the reference's [:N, :N] of the full window's index
            N = math.prod(window)
            idx = relative_position_index(self.window, self.window)[:N, :N]
        else:
            idx = relative_position_index(window, self.window)
        idx = idx.to(self.rel_pos_table.device)
        N = idx.shape[0]
        return self.rel_pos_table[idx.reshape(-1)].view(N, N, -1).permute(2, 0, 1)

    def forward(self, x: Tensor, tokens: Tokens) -> Tensor:
        grid = tokens.require("grid", "WindowAttention")
        if len(grid) != self.rank:
            raise InputError(f"WindowAttention was built for rank-{self.rank} grids (window "
                             f"{self.window}) but the tokens have grid {grid}")
        B, L, C = x.shape
        # a side no larger than the window is one window there, and is not shifted
        window = tuple(min(w, g) for w, g in zip(self.window, grid))
        shift = tuple(0 if g <= w else s for s, w, g in zip(self.shift, self.window, grid))
        valid = None if tokens.mask is None else tokens.mask.view(B, *grid)
        # pad at the end of every side to whole windows; the pad is masked out below (pad_keys="masked")
        if self.pad_keys == "masked":
            xg, valid, padded = pad_grid_masked(x.view(B, *grid, C), valid, grid, window)
        else:  # zero cells that act as keys: only the input mask is padded (with valid cells)
            xg, padded = pad_grid(x.view(B, *grid, C), grid, window)
            if valid is not None and padded != tuple(grid):
                valid = pad_grid(valid.unsqueeze(-1), grid, window, value=True)[0].squeeze(-1)
        dims = tuple(range(1, self.rank + 1))
        if any(shift):
            neg = tuple(-s for s in shift)
            xg = torch.roll(xg, neg, dims)
            valid = None if valid is None else torch.roll(valid, neg, dims)

        # project before partitioning (position-wise): one reorder yields contiguous per-head q, k, v
        qkv = window_partition_heads(self.qkv(xg), window, 3, self.heads)  # [3, B * nW, h, N, d]
        Bw, N = qkv.shape[1], qkv.shape[3]

        mask = None  # bool, True = may attend
        if valid is not None:  # keys that are padding (input mask or internal pad)
            mask = window_partition(valid.unsqueeze(-1), window).view(Bw, 1, 1, N)
        if any(shift):  # cells from different sides of the cyclic wrap do not attend
            regions = window_partition(_shift_regions(padded, window, shift).to(x.device)[None, ..., None],
                                       window).squeeze(-1)  # [nW, N]
            same = (regions[:, :, None] == regions[:, None, :]).repeat(B, 1, 1)[:, None]  # [B*nW,1,N,N]
            mask = same if mask is None else (mask & same)
        if mask is not None:  # a query with no valid key (padding) attends everywhere, not NaN
            mask = mask | ~mask.any(-1, keepdim=True)
        bias = self._bias(window)  # [h, N, N]
        dropout_p = self.attn_drop if self.training else 0.0
        if bias is None:
            o = attention(*qkv, attn_mask=mask, dropout_p=dropout_p)
        else:
            bias = bias.to(qkv.dtype).unsqueeze(0)  # [1, h, N, N]
            if mask is not None:
                bias = bias.masked_fill(~mask, float("-inf"))
            o = biased_attention(qkv, bias, dropout_p)  # [B * nW, h, N, d]
        og = window_reverse_heads(o, window, padded)  # [B, *padded, C]
        if any(shift):
            og = torch.roll(og, shift, dims)
        # the output projection is position-wise too: applied to the valid grid only
        return self.proj_drop(self.proj(crop_grid(og, grid).reshape(B, L, C)))

"""HiLo attention (LITv2; Pan et al., "Fast Vision Transformers with HiLo Attention", NeurIPS 2022).

The heads are split in two groups that see the same input and whose outputs are concatenated
along channels:

- **Hi-Fi** (``(1 - alpha)`` of the heads): attention inside small non-overlapping ``window``
  cells, capturing high-frequency local detail;
- **Lo-Fi** (``alpha`` of the heads): every query attends to keys/values computed from the input
  average-pooled over those cells, the low-frequency global context at ``1 / window**rank`` cost.

Rank-generic (1D/2D/3D grids). Reads ``Tokens.grid`` (required) and ``Tokens.mask``: padded
tokens are never keys in Hi-Fi windows, the Lo-Fi pool averages only valid tokens, and a cell with
no valid token is a masked Lo-Fi key. A side that is not a multiple of the window is padded at its
end, with the pad treated as masked tokens.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .attention import dense_attention
from .dropout import Dropout, attention
from .gridops import pad_grid_masked, window_partition, window_reverse
from .errors import InputError
from .tokens import Tokens

__all__ = ["HiLoAttention", "hilo_attention_ref"]


def _no_nan(mask: Tensor) -> Tensor:
    """A query group with no valid key attends everywhere instead of producing NaN (its output is
    padding and never read by valid tokens)."""
    return mask | ~mask.any(-1, keepdim=True)


class HiLoAttention(nn.Module):
    """Hi-Fi local window attention + Lo-Fi attention to window-pooled keys (LITv2).

    Args:
        heads: total heads; ``dim`` must be divisible by it.
        window: the Hi-Fi window side, which is also the Lo-Fi pooling size (int repeated over
            ``rank`` dims, or one per dim). ``window=1`` makes every head Lo-Fi with no pooling
            (plain global attention), as in LITv2.
        alpha: the fraction of heads that are Lo-Fi (``int(heads * alpha)``).
        rank: grid rank when ``window`` is an int.

    Example:
        >>> import torch
        >>> from glocal.core import Tokens
        >>> hilo = HiLoAttention(32, heads=4, window=2, alpha=0.5)
        >>> t = Tokens(torch.randn(2, 6 * 8, 32), grid=(6, 8))
        >>> hilo(t.x, t).shape
        torch.Size([2, 48, 32])
    """

    def __init__(self, dim: int, heads: int = 8, window=2, alpha: float = 0.5, rank: int = 2,
                 qkv_bias: bool = True, attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        if dim % heads:
            raise ValueError(f"HiLoAttention: dim {dim} is not divisible by heads {heads}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"HiLoAttention: alpha must be in [0, 1]; got {alpha}")
        self.window = (window,) * rank if isinstance(window, int) else tuple(window)
        self.rank = len(self.window)
        self.head_dim = dim // heads
        self.lo_heads = int(heads * alpha)
        if all(w == 1 for w in self.window):  # no pooling: every head is a (global) Lo-Fi head
            self.lo_heads = heads
        self.hi_heads = heads - self.lo_heads
        self.attn_drop = attn_drop
        hi_dim, lo_dim = self.hi_heads * self.head_dim, self.lo_heads * self.head_dim
        if self.hi_heads:
            self.hi_qkv = nn.Linear(dim, 3 * hi_dim, bias=qkv_bias)
            self.hi_proj = nn.Linear(hi_dim, hi_dim)
        if self.lo_heads:
            self.lo_q = nn.Linear(dim, lo_dim, bias=qkv_bias)
            self.lo_kv = nn.Linear(dim, 2 * lo_dim, bias=qkv_bias)
            self.lo_proj = nn.Linear(lo_dim, lo_dim)
        self.proj_drop = Dropout(proj_drop)

    def extra_repr(self):
        return f"hi_heads={self.hi_heads}, lo_heads={self.lo_heads}, window={self.window}"

    def _layout(self, tokens: Tokens):
        grid = tokens.require("grid", "HiLoAttention")
        if len(grid) != self.rank:
            raise InputError(f"HiLoAttention was built for rank-{self.rank} grids (window "
                             f"{self.window}) but the tokens have grid {grid}")
        window = tuple(min(w, g) for w, g in zip(self.window, grid))
        padded = tuple(math.ceil(g / w) * w for g, w in zip(grid, window))
        return grid, window, padded

    def forward(self, x: Tensor, tokens: Tokens) -> Tensor:
        grid, window, padded = self._layout(tokens)
        B, L, C = x.shape
        valid = None if tokens.mask is None else tokens.mask.view(B, *grid)
        # pad every side's end to whole windows; the pad is masked
        xg, valid, _ = pad_grid_masked(tokens.zero_padding(x).view(B, *grid, C), valid, grid, window)
        valid = None if valid is None else valid.unsqueeze(-1)  # [B, *padded, 1]
        win = window_partition(xg, window)  # [B * nW, N, C]
        win_valid = None if valid is None else window_partition(valid, window).squeeze(-1)  # [B*nW, N]
        outs = []
        if self.hi_heads:
            outs.append(self._hifi(win, win_valid, window, grid, padded, B))
        if self.lo_heads:
            outs.append(self._lofi(x, win, win_valid, B))
        return self.proj_drop(torch.cat(outs, -1) if len(outs) > 1 else outs[0])  # [B, L, C]

    def _sdpa(self, q, k, v, mask=None):
        return attention(q, k, v, attn_mask=mask, dropout_p=self.attn_drop if self.training else 0.0)

    def _hifi(self, win, win_valid, window, grid, padded, B) -> Tensor:
        Bw, N, _ = win.shape
        h, d = self.hi_heads, self.head_dim
        q, k, v = self.hi_qkv(win).view(Bw, N, 3, h, d).permute(2, 0, 3, 1, 4)  # [Bw, h, N, d]
        mask = None if win_valid is None else _no_nan(win_valid)[:, None, None, :]  # [Bw, 1, 1, N]
        o = self._sdpa(q, k, v, mask).transpose(1, 2).reshape(Bw, N, h * d)
        o = window_reverse(self.hi_proj(o), window, padded)  # [B, *padded, h*d]
        if padded != grid:
            o = o[(slice(None),) + tuple(slice(0, g) for g in grid)]
        return o.reshape(B, -1, h * d)

    def _lofi(self, x, win, win_valid, B) -> Tensor:
        L = x.shape[1]
        h, d = self.lo_heads, self.head_dim
        nW = win.shape[0] // B
        # average of the valid tokens of every window (win is zero at padding)
        if win_valid is None:
            pooled, key_ok = win.mean(1), None  # [B*nW, C]
        else:
            count = win_valid.sum(1, keepdim=True)  # [B*nW, 1]
            pooled = win.sum(1) / count.clamp_min(1).to(win.dtype)
            key_ok = (count > 0).view(B, nW)
        pooled = pooled.view(B, nW, -1)
        q = self.lo_q(x).view(B, L, h, d).transpose(1, 2)  # [B, h, L, d]
        k, v = self.lo_kv(pooled).view(B, nW, 2, h, d).permute(2, 0, 3, 1, 4)  # [B, h, nW, d]
        mask = None if key_ok is None else _no_nan(key_ok)[:, None, None, :]  # [B, 1, 1, nW]
        o = self._sdpa(q, k, v, mask).transpose(1, 2).reshape(B, L, h * d)
        return self.lo_proj(o)

    def extra_macs(self, x: Tensor, tokens: Tokens) -> int:
        """Hi-Fi QK^T + AV inside windows, Lo-Fi QK^T + AV against the pooled cells, and the pool
        itself (one accumulate per input element)."""
        _, window, padded = self._layout(tokens)
        B, L, C = x.shape
        Lp, N = math.prod(padded), math.prod(window)
        hi = 2 * B * Lp * N * self.hi_heads * self.head_dim
        lo = 2 * B * L * (Lp // N) * self.lo_heads * self.head_dim + (B * Lp * C if self.lo_heads else 0)
        return hi + lo


def hilo_attention_ref(module: HiLoAttention, x: Tensor, tokens: Tokens) -> Tensor:
    """Reference HiLo with ``module``'s weights, written from cell coordinates alone (no window
    partitioning): Hi-Fi is dense attention over all ``L`` tokens masked to pairs in the same
    window; Lo-Fi pools each window by an explicit masked average. For tiny inputs."""
    grid, window, padded = module._layout(tokens)
    B, L, C = x.shape
    d = module.head_dim
    coords = torch.stack(torch.meshgrid(*[torch.arange(g) for g in grid], indexing="ij")).flatten(1)
    n_win = [p // w for p, w in zip(padded, window)]
    cell = torch.zeros(L, dtype=torch.long)  # window id of every token, row-major over windows
    for dim, w in enumerate(window):
        cell = cell * n_win[dim] + coords[dim] // w
    cell = cell.to(x.device)
    valid = tokens.valid()  # [B, L]
    outs = []
    if module.hi_heads:
        h = module.hi_heads
        q, k, v = module.hi_qkv(x).view(B, L, 3, h, d).permute(2, 0, 3, 1, 4)  # [B, h, L, d]
        same = cell[:, None] == cell[None, :]  # [L, L]
        allowed = _no_nan(same & valid[:, None, :])  # [B, L, L]
        o = dense_attention(q, k, v, allowed[:, None]).transpose(1, 2).reshape(B, L, h * d)
        outs.append(module.hi_proj(o))
    if module.lo_heads:
        h = module.lo_heads
        nW = math.prod(n_win)
        member = (cell[None, :] == torch.arange(nW, device=x.device)[:, None])  # [nW, L]
        weight = member[None] & valid[:, None, :]  # [B, nW, L]
        count = weight.sum(-1, keepdim=True)  # [B, nW, 1]
        pooled = (weight.to(x.dtype) @ x) / count.clamp_min(1).to(x.dtype)  # [B, nW, C]
        q = module.lo_q(x).view(B, L, h, d).transpose(1, 2)
        k, v = module.lo_kv(pooled).view(B, nW, 2, h, d).permute(2, 0, 3, 1, 4)
        allowed = _no_nan(count.squeeze(-1) > 0)[:, None, None, :]  # [B, 1, 1, nW]
        o = dense_attention(q, k, v, allowed).transpose(1, 2).reshape(B, L, h * d)
        outs.append(module.lo_proj(o))
    return torch.cat(outs, -1) if len(outs) > 1 else outs[0]

"""Neighbourhood attention over a 1D/2D/3D grid, with dilation: NAT (Hassani et al., "Neighborhood
Attention Transformer", CVPR 2023) and DiNAT (Hassani & Shi, "Dilated Neighborhood Attention
Transformer", 2022).

Every query attends to ``kernel ** rank`` keys around it. Along each grid dim of length ``n`` with
dilation ``d``, the positions split into ``d`` interleaved groups (``i % d``); inside its group a
query at group coordinate ``i' = i // d`` sees the ``kernel`` group members starting at
``clamp(i' - kernel // 2, 0, n_g - kernel)`` (``n_g`` the group's length): the window is centred
where it can be and shifted inward at the borders, never clipped (NATTEN's semantics). A learned
relative position bias ``[heads, prod(2 * kernel - 1)]`` is indexed by the key's offset from the
query in group coordinates.

Two implementations with one signature, tested against each other:

- :func:`neighborhood_attention_ref`: the definition. Gathers each query's neighbour indices
  (``[L, kernel ** rank]``) and runs a plain softmax over them. Memory ``O(L * kernel ** rank)``.
- :func:`neighborhood_attention`: the fast path. The query grid is cut into tiles (kernel-sized by
  default); a tile's keys are the union of its queries' neighbourhoods (the tile plus a halo of
  ``kernel - 1``), and each tile runs a batched ``q k^T -> softmax -> v`` with an additive mask
  that keeps exactly each query's own neighbours (plus the bias). Interior tiles all share one
  mask; border tiles fall in a few classes. Dilation runs undilated tiles on each of the
  ``d ** rank`` interleaved sub-grids. Work runs in cache-sized blocks with a hand-written
  backward, so memory stays linear in ``L``: no ``L x L`` matrix is ever formed.
- the compiled kernel (``core/na_kernel.c``, optional, see :mod:`glocal.core.ckernels`): every
  query against exactly its own neighbours from the :func:`neighborhood_indices` table, reading
  q, k, v in place from the joint projection. The tiles compute ``(tile + kernel - 1) ** rank``
  scores per query where ``kernel ** rank`` are needed (3.4x at kernel 7 in 2D); the kernel does
  not. ``backend="auto"`` uses it on CPU whenever it builds and there is no attention dropout.

Grid rules (both paths): a dilation too large for a dim is reduced to the largest that still gives
every group ``kernel`` members (``n // kernel``, at least 1), DiNAT's "largest dilation that fits",
so small inputs run; a dim shorter than the kernel is one window (every query sees the whole dim).
Masked (padded) keys are never attended; a query with no valid neighbour (padding) attends to all
of its neighbours instead of producing NaN, and its output is never read by valid tokens.
"""
from __future__ import annotations

import itertools
import math
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from .ckernels import BACKENDS, LONG, PTR, REAL, item_ranges, load, ptr, run, use_kernel
from .dropout import Dropout, dropout_reference, keep_mask
from .errors import InputError
from .tokens import Tokens

__all__ = ["NeighborhoodAttention", "neighborhood_attention", "neighborhood_attention_ref",
           "neighborhood_indices", "effective_dilation"]


def _tuple(value, rank: int, name: str) -> tuple[int, ...]:
    out = (int(value),) * rank if isinstance(value, int) else tuple(int(v) for v in value)
    if len(out) != rank:
        raise ValueError(f"neighbourhood attention: {name} {out} does not have rank {rank}")
    return out


def effective_dilation(length: int, kernel: int, dilation: int) -> int:
    """The dilation actually used along a dim of ``length``: ``dilation``, reduced to
    ``length // kernel`` (at least 1) when the requested one leaves groups shorter than the kernel."""
    return max(1, min(dilation, length // kernel))


def _axis_windows(length: int, kernel: int, dilation: int, positions: Tensor):
    """For group coordinates ``positions [1, ...]`` (broadcast against the groups ``[d, 1, ...]``):
    the window start, the window size and the group length, all in group coordinates."""
    d = effective_dilation(length, kernel, dilation)
    g = torch.arange(d).view(d, *([1] * (positions.dim() - 1)))
    n_g = (length - g + d - 1) // d  # members of group g
    w = n_g.clamp(max=kernel)  # window size: kernel, or the whole group when it is shorter
    start = torch.minimum((positions - kernel // 2).clamp(min=0), n_g - w)
    return d, g, n_g, w, start


@lru_cache(maxsize=128)
def _axis_neighbours(length: int, kernel: int, dilation: int):
    """Per position of one dim: neighbour positions ``[n, kernel]``, relative-offset index into a
    ``2 * kernel - 1`` table ``[n, kernel]`` and validity ``[n, kernel]`` (False beyond a window
    shorter than the kernel)."""
    d = effective_dilation(length, kernel, dilation)
    i = torch.arange(length)
    gi, qi = i % d, i // d  # group and group coordinate of every position
    n_g = (length - gi + d - 1) // d
    w = n_g.clamp(max=kernel)
    start = torch.minimum((qi - kernel // 2).clamp(min=0), n_g - w)
    m = torch.arange(kernel)
    kj = start[:, None] + m  # group coordinate of each neighbour, [n, kernel]
    ok = m < w[:, None]
    pos = torch.where(ok, kj * d + gi[:, None], i[:, None])
    rel = torch.where(ok, kj - qi[:, None], 0) + kernel - 1
    return pos, rel, ok


def neighborhood_indices(grid: tuple[int, ...], kernel: tuple[int, ...], dilation: tuple[int, ...]):
    """Flattened neighbour indices of every query ``[L, K]`` (``K = prod(kernel)``), the index of
    each pair's offset in the bias table ``[L, K]`` and which neighbour slots exist ``[L, K]``."""
    r = len(grid)
    idx = rel = ok = None
    for dim in range(r):
        pos, rl, o = _axis_neighbours(grid[dim], kernel[dim], dilation[dim])
        # broadcast this dim's [n_d, k_d] over the query dims (first r) and neighbour dims (last r)
        shape = [1] * (2 * r)
        shape[dim], shape[r + dim] = grid[dim], kernel[dim]
        pos, rl, o = (t.view(*[shape[j] if j in (dim, r + dim) else 1 for j in range(2 * r)])
                      for t in (pos, rl, o))
        stride = math.prod(grid[dim + 1:])
        radix = math.prod(2 * k - 1 for k in kernel[dim + 1:])
        idx = pos * stride if idx is None else idx + pos * stride
        rel = rl * radix if rel is None else rel + rl * radix
        ok = o if ok is None else ok & o
    L, K = math.prod(grid), math.prod(kernel)
    full = tuple(grid) + tuple(kernel)
    return idx.expand(full).reshape(L, K), rel.expand(full).reshape(L, K), ok.expand(full).reshape(L, K)


def neighborhood_attention_ref(q: Tensor, k: Tensor, v: Tensor, grid: tuple[int, ...], kernel,
                               dilation=1, bias: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
    """Reference neighbourhood attention: explicit gather of each query's neighbours.

    ``q, k, v: [B, h, L, d]``; ``bias: [h, prod(2 * kernel - 1)]`` or None; ``mask: [B, L]`` bool
    (True = valid) or None. Returns ``[B, h, L, d]``.
    """
    r = len(grid)
    kernel, dilation = _tuple(kernel, r, "kernel"), _tuple(dilation, r, "dilation")
    idx, rel, ok = (t.to(q.device) for t in neighborhood_indices(tuple(grid), kernel, dilation))
    kn, vn = k[:, :, idx], v[:, :, idx]  # [B, h, L, K, d]
    scores = (q.unsqueeze(-2) * kn).sum(-1) / math.sqrt(q.shape[-1])  # [B, h, L, K]
    if bias is not None:
        scores = scores + bias[:, rel]
    allowed = ok[None]  # [1, L, K]
    if mask is not None:
        allowed = ok & mask[:, idx]  # [B, L, K]
        allowed = torch.where(allowed.any(-1, keepdim=True), allowed, ok)  # no valid neighbour
    scores = scores.masked_fill(~allowed[:, None], float("-inf"))
    return (scores.softmax(-1).unsqueeze(-1) * vn).sum(-2)


# --- fast path: tiles of queries against their halo of keys ------------------------------------------

@lru_cache(maxsize=128)
def _axis_tiles(length: int, kernel: int, dilation: int, tile: int):
    """One dim's tiling, over (group, tile) units ``U = d * n_tiles``:

    - ``qpos [U, T]``: grid position of each query slot (-1 for slots past the group's end);
    - ``kpos [U, Kt]``: grid position of each key of the tile's halo (-1 past the end);
    - ``pattern [U]``: which mask pattern the unit has (interior tiles all share one);
    - ``allowed [P, T, Kt]``: per pattern, key inside the query's window;
    - ``rel [P, T, Kt]``: per pattern, offset index ``key - query + kernel - 1`` (clamped where
      not allowed).
    """
    d = effective_dilation(length, kernel, dilation)
    n_max = -(-length // d)  # longest group
    T = min(tile, n_max)
    n_tiles = -(-n_max // T)
    Kt = min(T + kernel - 1, n_max)
    t0 = (torch.arange(n_tiles) * T).view(1, n_tiles, 1)
    qi = t0 + torch.arange(T)  # [1, nT, T] group coordinates of the query slots
    _, g, n_g, w, start = _axis_windows(length, kernel, d, qi)  # [d, nT, T]
    k0 = torch.minimum((t0 - kernel // 2).clamp(min=0), (n_g - Kt).clamp(min=0))  # [d, nT, 1]
    ki = k0 + torch.arange(Kt)  # [d, nT, Kt]
    qreal, kreal = qi < n_g, ki < n_g
    kj, qj = ki[:, :, None, :], qi[..., None]
    allowed = (kj >= start[..., None]) & (kj < (start + w)[..., None]) & kreal[:, :, None, :]
    allowed = allowed | ~allowed.any(-1, keepdim=True)  # (never for real queries: windows fit the halo)
    rel = (kj - qj).clamp(-(kernel - 1), kernel - 1) + kernel - 1
    qpos = torch.where(qreal, qi * d + g, -1)
    kpos = torch.where(kreal, ki * d + g, -1)
    U = d * n_tiles
    key = torch.cat([allowed.reshape(U, -1).long(), rel.reshape(U, -1)], 1)
    patterns, pattern = torch.unique(key, dim=0, return_inverse=True)
    P = patterns.shape[0]
    return (qpos.reshape(U, T), kpos.reshape(U, Kt), pattern,
            patterns[:, :T * Kt].bool().view(P, T, Kt), patterns[:, T * Kt:].reshape(P, T, Kt))


def _outer(parts: list[Tensor], strides: list[int]) -> Tensor:
    """``sum_d parts[d] * strides[d]`` over the outer product of per-dim ``[n_d, s_d]`` tensors:
    ``[prod n_d, prod s_d]`` (dim 0 slowest in both); -1 anywhere gives -1."""
    r = len(parts)
    out = pad = None
    for d, (t, st) in enumerate(zip(parts, strides)):
        shape = [1] * (2 * r)
        shape[d], shape[r + d] = t.shape
        t = t.view(shape)
        out = t * st if out is None else out + t * st
        pad = (t < 0) if pad is None else pad | (t < 0)
    n = math.prod(t.shape[0] for t in parts)
    return torch.where(pad, -1, out).reshape(n, -1)


def _pair(parts: list[Tensor], radix: list[int] | None = None) -> Tensor:
    """Per-dim ``[T_d, K_d]`` query/key tables -> ``[Q, K]``: AND of bools, or mixed-radix sum."""
    r = len(parts)
    out = None
    for d, t in enumerate(parts):
        shape = [1] * (2 * r)
        shape[d], shape[r + d] = t.shape
        t = t.view(shape)
        if radix is None:
            out = t if out is None else out & t
        else:
            out = t * radix[d] if out is None else out + t * radix[d]
    Q = math.prod(t.shape[0] for t in parts)
    return out.reshape(Q, -1)


@lru_cache(maxsize=64)
def _tile_groups(grid: tuple[int, ...], kernel: tuple[int, ...], dilation: tuple[int, ...],
                 tile: tuple[int, ...], device: str, merge_cap: int = 1 << 22):
    """The grid's tiles in groups: a list of ``(qidx [m, Q], kidx [m, K], allowed, rel)`` with
    flat indices into the grid (``L`` for slots past its end). Tiles with the same mask pattern
    (all interior tiles; the border ones in a few classes) share ``allowed [Q, K]`` and
    ``rel [Q, K]``; when the border classes are small (``m * Q * K <= merge_cap``) they are merged
    into one group with per-tile ``allowed [m, Q, K]`` and ``rel [m, Q, K]``, fewer but larger
    batches."""
    plans = [_axis_tiles(g, k, d, t) for g, k, d, t in zip(grid, kernel, dilation, tile)]
    L = math.prod(grid)
    strides = [math.prod(grid[d + 1:]) for d in range(len(grid))]
    radix = [math.prod(2 * k - 1 for k in kernel[d + 1:]) for d in range(len(grid))]
    groups = []
    for combo in itertools.product(*[range(p[3].shape[0]) for p in plans]):
        units = [(p[2] == c).nonzero().squeeze(1) for p, c in zip(plans, combo)]
        qidx = _outer([p[0][u] for p, u in zip(plans, units)], strides)
        kidx = _outer([p[1][u] for p, u in zip(plans, units)], strides)
        qidx, kidx = torch.where(qidx < 0, L, qidx), torch.where(kidx < 0, L, kidx)
        allowed = _pair([p[3][c] for p, c in zip(plans, combo)])
        rel = _pair([p[4][c] for p, c in zip(plans, combo)], radix)
        groups.append((qidx, kidx, allowed, rel))
    groups.sort(key=lambda grp: -grp[0].shape[0])
    rest = groups[1:]
    if len(rest) > 1 and sum(grp[0].shape[0] for grp in rest) * rest[0][2].numel() <= merge_cap:
        cat = [torch.cat(ts) for ts in zip(*[(qi, ki, a.expand(qi.shape[0], -1, -1), r.expand(qi.shape[0], -1, -1))
                                              for qi, ki, a, r in rest])]
        groups = groups[:1] + [tuple(cat)]
    return [tuple(t.to(device) for t in grp) for grp in groups]


class _Plan:
    """The tile groups cut into blocks small enough to stay in cache, with flat gather indices.

    A block is (some tiles of one group) x (some samples), all heads. Gathering with ``qidx`` /
    ``kidx`` from ``[B * h * L, d]`` lays every block's queries and halo keys out contiguous, as
    ``[samples * h * tiles, Q or K, d]``, ready for ``bmm``; ``inverse`` maps the gathered outputs
    back to ``[B * h * L]`` and ``out_rows`` the other way (``B * h * L`` for padding slots).
    """

    def __init__(self, groups, L: int, B: int, h: int, budget: int):
        N = B * h
        device = groups[0][0].device
        self.groups, self.blocks = groups, []
        q_idx, k_idx, out_rows, q_off, k_off = [], [], [], 0, 0
        for g, (qidx, kidx, allowed, rel) in enumerate(groups):
            m, Q = qidx.shape
            K = kidx.shape[1]
            per_tile = h * Q * K  # scores of one tile of one sample
            tiles = max(1, min(m, budget // per_tile))
            step = -(-m // -(-m // tiles))
            for c0 in range(0, m, step):
                qi, ki = qidx[c0:c0 + step].reshape(-1), kidx[c0:c0 + step]
                mc = ki.shape[0]
                samples = max(1, min(B, budget // (per_tile * mc)))
                bstep = -(-B // -(-B // samples))
                for b0 in range(0, B, bstep):
                    b1 = min(B, b0 + bstep)
                    rows = torch.arange(b0 * h, b1 * h, device=device)[:, None] * L  # [samples*h, 1]
                    # slots past the grid's end (index L) read token 0: their outputs are dropped
                    # and their keys lie outside every window (masked), so what they read never
                    # matters
                    q_idx.append((rows + qi % L).reshape(-1))
                    k_idx.append((rows + ki.reshape(-1) % L).reshape(-1))
                    out_rows.append(torch.where(qi < L, rows + qi, N * L).reshape(-1))
                    nq, nk = (b1 - b0) * h * qi.numel(), (b1 - b0) * h * ki.numel()
                    tiles_allowed = allowed if allowed.dim() == 2 else allowed[c0:c0 + mc]
                    self.blocks.append((g, c0, mc, b0, b1, tiles_allowed, ki % L, slice(q_off, q_off + nq),
                                        slice(k_off, k_off + nk)))
                    q_off, k_off = q_off + nq, k_off + nk
        self.qidx, self.kidx = torch.cat(q_idx), torch.cat(k_idx)
        self.out_rows = torch.cat(out_rows)
        real = self.out_rows < N * L
        self.inverse = torch.empty(N * L, dtype=torch.long, device=device)
        self.inverse[self.out_rows[real]] = torch.arange(self.out_rows.numel(), device=device)[real]


@lru_cache(maxsize=16)
def _plan(grid, kernel, dilation, tile, device: str, B: int, h: int, budget: int) -> _Plan:
    return _Plan(_tile_groups(grid, kernel, dilation, tile, device), math.prod(grid), B, h, budget)


class _TiledNeighborhoodAttention(torch.autograd.Function):
    """softmax(q k^T + bias + mask) v over the blocks of a plan, with a hand-written backward that
    works block by block in cache and writes every block's gradients in place (no full-size
    per-block buffers, no concatenation). ``q`` (already scaled), ``k``, ``v``: ``[B * h * L, d]``;
    returns ``[B * h * L, d]``."""

    @staticmethod
    def forward(ctx, q, k, v, bias, mask, plan: _Plan, h: int, dropout_p: float):
        dh = q.shape[1]
        q_all = q.index_select(0, plan.qidx)  # [slots, dh]
        k_all, v_all = k.index_select(0, plan.kidx), v.index_select(0, plan.kidx)  # [keys, dh]
        o_all = torch.empty_like(q_all)
        adds, saved, drops = {}, [], []
        for g, c0, mc, b0, b1, allowed, kidx, qs, ks in plan.blocks:
            Q, K = allowed.shape[-2:]
            if g not in adds:  # bias where the key is in the query's window, -inf elsewhere
                _, _, a, rel = plan.groups[g]
                add = bias[:, rel].to(q.dtype) if bias is not None else q.new_zeros(1, *rel.shape)
                add = add.masked_fill(~a, float("-inf"))  # [h or 1, (tiles,) Q, K]
                adds[g] = add.unsqueeze(1) if a.dim() == 2 else add
            add = adds[g] if adds[g].shape[1] == 1 else adds[g][:, c0:c0 + mc]
            s = torch.bmm(q_all[qs].view(-1, Q, dh), k_all[ks].view(-1, K, dh).transpose(1, 2))
            s5 = s.view(b1 - b0, h, mc, Q, K)
            s5 += add
            if mask is not None:  # padded keys out, unless a query has no valid neighbour at all
                kv = mask[b0:b1, kidx]  # [samples, mc, K]
                some = (allowed & kv.unsqueeze(2)).any(-1, keepdim=True)  # [samples, mc, Q, 1]
                s5.masked_fill_((~kv.unsqueeze(2) & some).unsqueeze(1), float("-inf"))
            p = torch.softmax(s, -1)  # [samples * h * mc, Q, K]
            saved.append(p)
            if dropout_p:
                keep = keep_mask(p.shape, dropout_p, p.device)
                drops.append(keep)
                p = dropout_reference(p, keep, dropout_p)
            torch.bmm(p, v_all[ks].view(-1, K, dh), out=o_all[qs].view(-1, Q, dh))
        ctx.plan, ctx.h, ctx.dropout_p, ctx.drops = plan, h, dropout_p, drops
        ctx.bias_shape = None if bias is None else bias.shape
        ctx.bias_dtype = None if bias is None else bias.dtype
        ctx.save_for_backward(q_all, k_all, v_all, *saved)
        return o_all.index_select(0, plan.inverse)

    @staticmethod
    @once_differentiable
    def backward(ctx, do):
        plan, h, dropout_p = ctx.plan, ctx.h, ctx.dropout_p
        q_all, k_all, v_all, *ps = ctx.saved_tensors
        dh = q_all.shape[1]
        do_all = F.pad(do, (0, 0, 0, 1)).index_select(0, plan.out_rows)  # slot order, pads zero
        dq_all, dk_all, dv_all = torch.empty_like(q_all), torch.empty_like(k_all), torch.empty_like(v_all)
        dadds = {}
        for i, ((g, c0, mc, b0, b1, allowed, kidx, qs, ks), p) in enumerate(zip(plan.blocks, ps)):
            Q, K = allowed.shape[-2:]
            qt, kt, vt = q_all[qs].view(-1, Q, dh), k_all[ks].view(-1, K, dh), v_all[ks].view(-1, K, dh)
            dot = do_all[qs].view(-1, Q, dh)
            pd = p if not dropout_p else dropout_reference(p, ctx.drops[i], dropout_p)
            torch.bmm(pd.transpose(1, 2), dot, out=dv_all[ks].view(-1, K, dh))
            dp = torch.bmm(dot, vt.transpose(1, 2))  # [samples * h * mc, Q, K]
            if dropout_p:
                dp = dropout_reference(dp, ctx.drops[i], dropout_p)
            ds = torch.ops.aten._softmax_backward_data(dp, p, -1, p.dtype)  # p * (dP - sum(dP p))
            if ctx.bias_shape is not None:
                rel = plan.groups[g][3]
                if g not in dadds:
                    dadds[g] = ds.new_zeros(h, *rel.shape)  # [h, (tiles,) Q, K]
                if rel.dim() == 2:
                    dadds[g] += ds.view(b1 - b0, h, mc, Q, K).sum((0, 2))
                else:
                    dadds[g][:, c0:c0 + mc] += ds.view(b1 - b0, h, mc, Q, K).sum(0)
            torch.bmm(ds, kt, out=dq_all[qs].view(-1, Q, dh))
            torch.bmm(ds.transpose(1, 2), qt, out=dk_all[ks].view(-1, K, dh))
        dq = dq_all.index_select(0, plan.inverse)  # every query sits in exactly one slot
        dk = dk_all.new_zeros(do.shape[0], dh).index_add_(0, plan.kidx, dk_all)  # keys: in a few halos
        dv = dv_all.new_zeros(do.shape[0], dh).index_add_(0, plan.kidx, dv_all)
        dbias = None
        if ctx.bias_shape is not None:
            dbias = dq.new_zeros(ctx.bias_shape)
            for g, part in dadds.items():
                dbias.index_add_(1, plan.groups[g][3].reshape(-1), part.reshape(h, -1))
            dbias = dbias.to(ctx.bias_dtype)
        return dq, dk, dv, dbias, None, None, None, None


# --- the compiled kernel: each query against exactly its own neighbours ------------------------------

_NA_SIGNATURES = (
    ("na_forward", (PTR, PTR, PTR, PTR, PTR, LONG, PTR, PTR, PTR) + (LONG,) * 5 + (REAL, LONG, LONG)),
    ("na_backward", (PTR,) * 7 + (LONG,) * 6 + (REAL, LONG, LONG)),
)


def _na_library(dtype: torch.dtype):
    return load("na_kernel", dtype, _NA_SIGNATURES)


@lru_cache(maxsize=64)
def _table(grid: tuple[int, ...], kernel: tuple[int, ...], dilation: tuple[int, ...], device: str):
    """:func:`neighborhood_indices` as the kernel reads it: int64 ``idx, rel`` and uint8 ``ok``, ``[L, K]``."""
    idx, rel, ok = neighborhood_indices(grid, kernel, dilation)
    return (idx.to(device, torch.long).contiguous(), rel.to(device, torch.long).contiguous(),
            ok.to(device, torch.uint8).contiguous())


class _FusedNeighborhoodAttention(torch.autograd.Function):
    """softmax(q k^T / sqrt(d) + bias) v over each query's own neighbours, by the compiled kernel.
    ``qkv: [B, L, 3, h, d]`` (contiguous), ``bias: [h, R]`` or None, ``mask: [B, L]`` bool or None
    -> ``[B, L, h, d]``."""

    @staticmethod
    def forward(ctx, qkv, bias, mask, table):
        lib = _na_library(qkv.dtype)
        idx, rel, ok = table
        B, L, _, h, d = qkv.shape
        K = idx.shape[1]
        b = None if bias is None else bias.detach().to(qkv.dtype).contiguous()
        m = None if mask is None else mask.to(torch.uint8).contiguous()
        R = 0 if b is None else b.shape[1]
        out, p = qkv.new_empty(B, L, h, d), qkv.new_empty(B * h, L, K)
        run(lambda i, lo, hi: lib.na_forward(ptr(qkv), ptr(idx), ptr(rel), ptr(ok), ptr(b), R, ptr(m), ptr(out),
                                             ptr(p), B, L, h, d, K, d ** -0.5, lo, hi), B * h)
        ctx.save_for_backward(qkv, p)
        ctx.table, ctx.bias_meta = table, None if bias is None else (bias.shape, bias.dtype)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, gout):
        qkv, p = ctx.saved_tensors
        lib = _na_library(qkv.dtype)
        idx, rel, _ = ctx.table
        B, L, _, h, d = qkv.shape
        K = idx.shape[1]
        gout = gout.contiguous()
        gqkv = torch.zeros_like(qkv)
        gbias, R = None, 0
        if ctx.bias_meta is not None:  # per-thread partial sums
            R = ctx.bias_meta[0][1]
            gbias = qkv.new_zeros(len(item_ranges(B * h)), h, R)
        run(lambda i, lo, hi: lib.na_backward(ptr(qkv), ptr(idx), ptr(rel), ptr(p), ptr(gout), ptr(gqkv),
                                              None if gbias is None else ptr(gbias[i]), R, B, L, h, d, K,
                                              d ** -0.5, lo, hi), B * h)
        return gqkv, None if gbias is None else gbias.sum(0).to(ctx.bias_meta[1]), None, None


def _use_kernel(backend: str, x: Tensor, dropout_p: float) -> bool:
    eligible = x.device.type == "cpu" and not dropout_p and _na_library(x.dtype) is not None
    return use_kernel(backend, eligible, "neighbourhood attention", "CPU float32/float64 tensors, no attention dropout")


def _fused(qkv: Tensor, grid, kernel, dilation, bias, mask) -> Tensor:
    """The compiled kernel on a joint projection ``qkv: [B, L, 3, h, d]`` -> ``[B, L, h, d]``."""
    table = _table(grid, kernel, dilation, str(qkv.device))
    return _FusedNeighborhoodAttention.apply(qkv.contiguous(), bias, mask, table)


def _tiled(q: Tensor, k: Tensor, v: Tensor, grid, kernel, dilation, bias, mask, tile, dropout_p: float,
           block: int) -> Tensor:
    """The PyTorch tiles on ``q, k, v: [B, h, L, d]`` -> ``[B, h, L, d]``."""
    B, h, L, dh = q.shape
    plan = _plan(grid, kernel, dilation, tile, str(q.device), B, h, block)
    flat = [t.reshape(B * h * L, dh) for t in (q * dh ** -0.5, k, v)]
    o = _TiledNeighborhoodAttention.apply(*flat, bias, mask, plan, h, float(dropout_p))
    return o.view(B, h, L, dh)


def neighborhood_attention(q: Tensor, k: Tensor, v: Tensor, grid: tuple[int, ...], kernel,
                           dilation=1, bias: Tensor | None = None, mask: Tensor | None = None,
                           tile=None, dropout_p: float = 0.0, block: int = 1 << 20,
                           backend: str = "auto") -> Tensor:
    """Fast neighbourhood attention (same contract as :func:`neighborhood_attention_ref`).

    Query tiles (side ``tile`` per dim, default the kernel) attend to their halo of keys with a
    mask that keeps each query's own window. Tiles with the same mask (all interior tiles; the
    border tiles in a few classes) run as one batch against one ``[h, Q, K]`` bias-and-mask, so no
    per-tile mask is ever materialised. Work runs in blocks of about ``block`` scores (tiles x
    samples x heads), small enough to stay in cache. ``backend``: ``"auto"`` runs the compiled
    kernel when it builds (CPU, no dropout), ``"kernel"`` requires it, ``"torch"`` the tiles.
    """
    r = len(grid)
    grid = tuple(int(g) for g in grid)
    kernel, dilation = _tuple(kernel, r, "kernel"), _tuple(dilation, r, "dilation")
    tile = _tuple(tile if tile is not None else kernel, r, "tile")
    if _use_kernel(backend, q, dropout_p):
        qkv = torch.stack((q, k, v), 2).permute(0, 3, 2, 1, 4)  # [B, L, 3, h, d]
        return _fused(qkv, grid, kernel, dilation, bias, mask).transpose(1, 2)  # [B, h, L, d]
    return _tiled(q, k, v, grid, kernel, dilation, bias, mask, tile, dropout_p, block)


class NeighborhoodAttention(nn.Module):
    """Multi-head neighbourhood attention on a 1D/2D/3D grid, optionally dilated (NAT / DiNAT).

    Reads ``Tokens.grid`` (required) and ``Tokens.mask`` (padded keys never attended).

    Args:
        kernel: neighbourhood side (odd; int repeated over ``rank`` dims, or one per dim).
        dilation: dilation per dim (int repeated); reduced where the grid is too small for it.
        rank: grid rank when ``kernel`` is an int.
        rel_pos: learn a relative position bias ``[heads, prod(2 * kernel - 1)]``.
        tile: query-tile side of the tiled path (None: the kernel).
        block: scores per block of the tiled path (tiles x samples x heads run together).
        backend: ``"auto"`` (the compiled kernel on CPU when it builds and there is no attention
            dropout, else the tiles), ``"kernel"`` or ``"torch"`` (always the tiles).

    Example:
        >>> import torch
        >>> from glocal.core import Tokens
        >>> na = NeighborhoodAttention(32, heads=2, kernel=5, dilation=2)
        >>> na(torch.randn(2, 12 * 10, 32), Tokens(torch.randn(2, 12 * 10, 32), grid=(12, 10))).shape
        torch.Size([2, 120, 32])
    """

    def __init__(self, dim: int, heads: int = 4, kernel=7, dilation=1, rank: int = 2,
                 qkv_bias: bool = True, rel_pos: bool = True, attn_drop: float = 0.0,
                 proj_drop: float = 0.0, tile=None, block: int = 1 << 20, backend: str = "auto"):
        super().__init__()
        if dim % heads:
            raise ValueError(f"NeighborhoodAttention: dim {dim} is not divisible by heads {heads}")
        self.kernel = (kernel,) * rank if isinstance(kernel, int) else tuple(kernel)
        self.rank = len(self.kernel)
        if any(k % 2 == 0 or k < 1 for k in self.kernel):
            raise ValueError(f"NeighborhoodAttention needs odd kernels; got {self.kernel}")
        self.dilation = _tuple(dilation, self.rank, "dilation")
        if any(d < 1 for d in self.dilation):
            raise ValueError(f"NeighborhoodAttention: dilation must be >= 1; got {self.dilation}")
        if backend not in BACKENDS:
            raise ValueError(f"NeighborhoodAttention backend must be one of {BACKENDS}; got {backend!r}")
        self.heads, self.attn_drop, self.tile, self.block, self.backend = heads, attn_drop, tile, block, backend
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = Dropout(proj_drop)
        if rel_pos:
            self.rel_pos_bias = nn.Parameter(torch.zeros(heads, math.prod(2 * k - 1 for k in self.kernel)))
            nn.init.trunc_normal_(self.rel_pos_bias, std=0.02)
        else:
            self.rel_pos_bias = None

    def extra_repr(self):
        return f"heads={self.heads}, kernel={self.kernel}, dilation={self.dilation}"

    def _grid(self, tokens: Tokens) -> tuple[int, ...]:
        grid = tokens.require("grid", "NeighborhoodAttention")
        if len(grid) != self.rank:
            raise InputError(f"NeighborhoodAttention was built for rank-{self.rank} grids (kernel "
                             f"{self.kernel}) but the tokens have grid {grid}")
        return grid

    def forward(self, x: Tensor, tokens: Tokens, reference: bool = False) -> Tensor:
        grid = tuple(int(g) for g in self._grid(tokens))
        B, L, C = x.shape
        qkv = self.qkv(x).view(B, L, 3, self.heads, C // self.heads)
        bias = self.rel_pos_bias
        if reference:
            q, k, v = qkv.permute(2, 0, 3, 1, 4)  # [B, h, L, d] each
            o = neighborhood_attention_ref(q, k, v, grid, self.kernel, self.dilation, bias, tokens.mask)
            o = o.transpose(1, 2)
        else:
            dropout_p = self.attn_drop if self.training else 0.0
            if _use_kernel(self.backend, qkv, dropout_p):
                o = _fused(qkv, grid, self.kernel, self.dilation, bias, tokens.mask)  # [B, L, h, d]
            else:
                tile = _tuple(self.tile if self.tile is not None else self.kernel, self.rank, "tile")
                q, k, v = qkv.permute(2, 0, 3, 1, 4)  # [B, h, L, d] each
                o = _tiled(q, k, v, grid, self.kernel, self.dilation, bias, tokens.mask, tile, dropout_p,
                           self.block).transpose(1, 2)
        return self.proj_drop(self.proj(o.reshape(B, L, C)))  # [B, L, C]

    def extra_macs(self, x: Tensor, tokens: Tokens) -> int:
        """QK^T and AV over each query's neighbours: ``2 * B * L * prod(min(kernel, side)) * C``."""
        grid = self._grid(tokens)
        B, L, C = x.shape
        return 2 * B * L * math.prod(min(k, g) for k, g in zip(self.kernel, grid)) * C

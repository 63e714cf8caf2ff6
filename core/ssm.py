"""Selective state-space scans and the Mamba mixer (Gu & Dao, "Mamba: Linear-Time Sequence
Modeling with Selective State Spaces", 2023), with the scan directions of Vision Mamba (Vim,
Zhu et al. 2024: forward + backward) and VMamba (Liu et al. 2024: 2D cross-scan).

The selective scan, per channel ``d`` and state index ``n``, with input-dependent ``dt, B, C``::

    h_t = exp(dt_t * A) * h_{t-1} + dt_t * B_t * u_t          # h: [B, D, N]
    y_t = C_t . h_t + D * u_t,        y <- y * silu(z)        # y: [B, D]

The implementations sit side by side and are tested against each other (outputs and gradients):

- :func:`selective_scan_ref`: the plain recurrence, discretising inside the loop, on autograd;
- :func:`selective_scan`: the chunked scan. The state is saved at the start of every chunk of
  ``T`` steps; the backward recomputes each chunk from its saved state and runs the adjoint
  recurrence backwards through it, so nothing larger than one chunk's work is held at once (plus
  the ``[L / T, B, D, N]`` chunk-start states). Two backends run it on CPU:

  - the compiled kernel (``core/scan_kernel.c``, built with the system C compiler on first use,
    see :mod:`glocal.core.scan_kernel`): one fused, vectorised sweep per chunk, threads over
    blocks of channels. ``backend="auto"`` picks it whenever it builds;
  - pure PyTorch (``backend="torch"``, and the fallback without a compiler): per chunk the
    discretisation (``exp(dt * A)``, ``dt * u * B``) and the read-outs (``C . h``, batched
    matmuls) run as single vectorised ops over ``[T, B, N, D]`` work buffers, and only the state
    update steps through time, one fused ``addcmul`` per step.

  When ``mamba_ssm`` is importable and the tensors are on CUDA its fused kernel is used instead;
  it is never required.

Why a per-step update inside the chunk rather than a parallel (log-space cumsum) one: A is per
``(d, n)`` in Mamba-1, so a closed form within the chunk splits the cumulative decay into
``exp(S_t) * exp(-S_s)`` factors, which overflow for strongly decaying channels (float32 past
``|S| ~ 88``); the recurrence multiplies decays ``<= 1`` only and is exact.

Speed: ``python tools/benchmark.py --suite peers --only scan`` (B=2, L=4096, D=768, N=16, forward
+ backward against the reference, in one process); BASELINES.md has the measured ratios. The
PyTorch path is bound by its elementwise passes over ``[T, B, N, D]`` and by one small op per step;
the compiled kernel does each step's work for 16 channels in registers.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from . import scan_kernel
from .ckernels import BACKENDS, use_kernel
from .ckernels import contiguous_rows as _rows
from .block import apply_norm, build_norm
from .errors import InputError
from .tokens import Tokens

__all__ = ["selective_scan", "selective_scan_ref", "scan_macs", "Mamba", "SS2D", "DIRECTIONS",
           "DEFAULT_CHUNK"]

DEFAULT_CHUNK = 16  # steps per chunk of the PyTorch path; tuned on a 2-core CPU (4 to 64 tried)
DEFAULT_FUSED_CHUNK = 16  # steps per chunk of the compiled kernel: its backward buffers stay in L2


# --- the plain reference ---------------------------------------------------------------------------

def _prepare_dt(dt: Tensor, dt_bias: Tensor | None, dt_softplus: bool) -> Tensor:
    if dt_bias is not None:
        dt = dt + dt_bias[:, None]
    return F.softplus(dt) if dt_softplus else dt


def _grouped(M: Tensor, D: int, name: str) -> Tensor:
    """``[B, N, L]`` or ``[B, G, N, L]`` -> ``[B, G, N, L]`` (channel ``d`` reads group ``d // (D / G)``)."""
    if M.dim() == 3:
        M = M.unsqueeze(1)
    if M.dim() != 4 or D % M.shape[1]:
        raise InputError(f"selective_scan: {name} must be [B, N, L] or [B, G, N, L] with G dividing "
                         f"D={D}; got {tuple(M.shape)}")
    return M


def selective_scan_ref(u: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None = None,
                       z: Tensor | None = None, dt_bias: Tensor | None = None,
                       dt_softplus: bool = True) -> Tensor:
    """The selective scan as a plain sequential loop (the reference every fast path is tested
    against). Discretises inside the loop: per step ``exp(dt_t * A)`` and ``dt_t * B_t * u_t``.

    Args:
        u: inputs ``[B, D, L]``.
        dt: step sizes ``[B, D, L]`` (before ``dt_bias`` and softplus when those are given).
        A: ``[D, N]`` (negative for a decaying state).
        B, C: ``[B, N, L]``, or ``[B, G, N, L]`` for G groups of ``D / G`` channels.
        D: skip weight ``[D]``; z: gate ``[B, D, L]`` (``y * silu(z)``).
    Returns:
        y ``[B, D, L]``.
    """
    Bsz, Dm, L = u.shape
    N = A.shape[1]
    dt = _prepare_dt(dt, dt_bias, dt_softplus)
    Bg, Cg = _grouped(B, Dm, "B"), _grouped(C, Dm, "C")
    G = Bg.shape[1]
    A4 = A.view(G, Dm // G, N)
    h = u.new_zeros(Bsz, G, Dm // G, N)
    ys = []
    # unbind (not u[:, :, t]): its backward stacks the per-step gradients once, where indexing
    # would build a full-length zero gradient at every step
    steps = zip(dt.view(Bsz, G, Dm // G, 1, L).unbind(-1), u.view(Bsz, G, Dm // G, 1, L).unbind(-1),
                Bg.unsqueeze(2).unbind(-1), Cg.unsqueeze(2).unbind(-1))
    for dt_t, u_t, B_t, C_t in steps:  # [B, G, Dg, 1], [B, G, Dg, 1], [B, G, 1, N], [B, G, 1, N]
        dA = torch.exp(dt_t * A4)  # [B, G, Dg, N]
        dBu = dt_t * B_t * u_t
        h = dA * h + dBu
        ys.append((h * C_t).sum(-1).view(Bsz, Dm))  # [B, D]
    y = torch.stack(ys, -1)  # [B, D, L]
    if D is not None:
        y = y + u * D[:, None]
    if z is not None:
        y = y * F.silu(z)
    return y


# --- the chunked scan ------------------------------------------------------------------------------
#
# Work buffers are time-major ``[T, B, G, N, Dg]`` (channels innermost): every op streams along
# contiguous channels, each step of the recurrence is one contiguous ``[B, G, N, Dg]`` slice, and
# the read-outs are batched ``[1, N] @ [N, Dg]`` products. Inputs are ``[L, B, D]``-shaped views; a
# chunk reads its own ``[T, B, D]`` block. Token-major storage (``[B, L, D]``, what a Mamba layer's
# projections produce) needs no transpose at all; channel-major ``[B, D, L]`` input is transposed
# once, in cache-sized tiles.

class _Buffers:
    """Work buffers ``[n, B, G, N, Dg]`` for chunks of ``n`` steps, with their per-step views made
    once (a chunk loop would otherwise spend a good part of its time creating views)."""

    def __init__(self, like: Tensor, shape: tuple[int, ...], count: int):
        self.shape, self.count, self.like = shape, count, like
        self._by_n: dict[int, list] = {}

    def __call__(self, n: int) -> list[tuple[Tensor, tuple[Tensor, ...]]]:
        if n not in self._by_n:
            bufs = [self.like.new_empty(n, *self.shape) for _ in range(self.count)]
            self._by_n[n] = [(b, b.unbind(0)) for b in bufs]
        return self._by_n[n]


def _chunk_states(x: Tensor, dt: Tensor, A_t: Tensor, Bm: Tensor, h0: Tensor, dA, h) -> None:
    """One chunk into the work buffers ``dA = exp(dt * A)`` and ``h``, both ``[T, B, G, N, Dg]``
    (given as ``(buffer, per-step views)``).

    ``x = dt * u`` and ``dt``: ``[T, B, G, 1, Dg]`` views; ``A_t``: ``[G, N, Dg]``; ``Bm``:
    ``[T, B, G, N, 1]``; ``h0``: the state before the chunk ``[B, G, N, Dg]``."""
    (dA, dAs), (h, hs) = dA, h
    torch.mul(dt, A_t, out=dA)
    dA.exp_()
    torch.mul(x, Bm, out=h)
    hs[0].addcmul_(dAs[0], h0)
    for t in range(1, len(hs)):  # the only sequential part: one fused op per step
        hs[t].addcmul_(dAs[t], hs[t - 1])


class _ChunkedScan(torch.autograd.Function):
    """``y_t = C_t . h_t``, ``h_t = exp(dt_t A) h_{t-1} + x_t B_t`` (``x = dt * u``).

    ``x, dt: [L, B, D]`` (views of any layout), ``A_t: [G, N, Dg]`` (A transposed per group),
    ``Bm, Cm: [L, B, G, N]`` -> ``y: [L, B, D]`` (time-major, contiguous)."""

    @staticmethod
    def forward(ctx, x, dt, A_t, Bm, Cm, chunk):
        L, Bsz, D = x.shape
        G, N, Dg = A_t.shape
        T = max(1, min(int(chunk), L))
        bufs = _Buffers(x, (Bsz, G, N, Dg), 2)
        h0 = x.new_empty(len(range(0, L, T)), Bsz, G, N, Dg)  # the state entering each chunk
        h0[0].zero_()
        y = x.new_empty(L, Bsz, D)
        for c, s in enumerate(range(0, L, T)):
            n = min(T, L - s)
            m = n * Bsz * G
            dA, (h, hs) = bufs(n)
            _chunk_states(_rows(x[s:s + n]).view(n, Bsz, G, 1, Dg), _rows(dt[s:s + n]).view(n, Bsz, G, 1, Dg),
                          A_t, Bm[s:s + n].unsqueeze(-1), h0[c], dA, (h, hs))
            torch.bmm(Cm[s:s + n].reshape(m, 1, N), h.view(m, N, Dg), out=y[s:s + n].view(m, 1, Dg))  # C . h
            if c + 1 < len(h0):
                h0[c + 1] = hs[n - 1]
        ctx.save_for_backward(x, dt, A_t, Bm, Cm, h0)
        ctx.chunk = T
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, gy):
        x, dt, A_t, Bm, Cm, h0 = ctx.saved_tensors
        T = ctx.chunk
        L, Bsz, D = x.shape
        G, N, Dg = A_t.shape
        bufs = _Buffers(x, (Bsz, G, N, Dg), 3)
        mu = x.new_zeros(Bsz, G, N, Dg)  # dLoss/dh flowing into a chunk from the next one
        gx, gdt = x.new_empty(L, Bsz, D), x.new_empty(L, Bsz, D)
        gB, gC = x.new_empty(L, Bsz, G, N), x.new_empty(L, Bsz, G, N)
        gA = x.new_zeros(min(T, L), Bsz, G, N, Dg)  # sum_{t, b} dt Q, reduced at the end
        ones = x.new_ones(min(T, L) * Bsz * G, 1, N)
        for c, s in reversed(list(enumerate(range(0, L, T)))):
            n = min(T, L - s)
            m = n * Bsz * G
            sl = slice(s, s + n)
            dA, h, lam = bufs(n)
            xc, gyc = x[sl].contiguous(), gy[sl].contiguous()  # [n, B, D]
            dtc = _rows(dt[sl]).view(n, Bsz, G, 1, Dg)
            Bc, Cc = Bm[sl].reshape(m, 1, N), Cm[sl].unsqueeze(-1)
            _chunk_states(xc.view(n, Bsz, G, 1, Dg), dtc, A_t, Bc.view(n, Bsz, G, N, 1), h0[c], dA, h)  # recompute
            (dA, dAs), (h, _), (lam, lams) = dA, h, lam
            hv, lv = h.view(m, N, Dg), lam.view(m, N, Dg)
            torch.bmm(gyc.view(m, 1, Dg), hv.transpose(1, 2), out=gC[sl].view(m, 1, N))  # sum_d h gy
            # adjoint lam_t = dLoss/dh_t = C_t gy_t + exp(dt_{t+1} A) lam_{t+1}, plus mu at the end
            torch.mul(gyc.view(n, Bsz, G, 1, Dg), Cc, out=lam)
            lams[n - 1].add_(mu)
            for t in range(n - 2, -1, -1):
                lams[t].addcmul_(dAs[t + 1], lams[t + 1])
            torch.mul(dAs[0], lams[0], out=mu)
            torch.bmm(Bc, lv, out=gx[sl].view(m, 1, Dg))  # sum_n lam B
            torch.bmm(xc.view(m, 1, Dg), lv.transpose(1, 2), out=gB[sl].view(m, 1, N))  # sum_d lam x
            # Q = lam_t * exp(dt_t A) * h_{t-1}: dLoss/d(dt_t A), elementwise
            dA[1:].mul_(h[:n - 1])
            dAs[0].mul_(h0[c])
            q = dA.mul_(lam)
            torch.mul(q, A_t, out=h)
            torch.bmm(ones[:m], hv, out=gdt[sl].view(m, 1, Dg))  # sum_n A Q
            gA[:n].addcmul_(q, dtc)
        gA = gA.sum((0, 1))  # [G, N, Dg]
        return gx, gdt, gA, gB, gC, None


def _scan_time_major(x: Tensor, dt: Tensor, A: Tensor, Bm: Tensor, Cm: Tensor, chunk: int | None,
                     fused: bool) -> Tensor:
    """The chunked scan on ``[L, B, ...]`` views: ``x = dt * u``, ``dt: [L, B, D]``, ``A: [D, N]``,
    ``Bm, Cm: [L, B, G, N]`` -> ``[L, B, D]`` (without the skip and the gate). ``fused``: the
    compiled kernel (core/scan_kernel.c) instead of PyTorch ops."""
    D, N = A.shape
    G = Bm.shape[2]
    A_t = A.reshape(G, D // G, N).transpose(1, 2).contiguous()  # [G, N, Dg]: channels innermost
    if fused:
        return scan_kernel.FusedScan.apply(x, dt, A_t, Bm, Cm, chunk or DEFAULT_FUSED_CHUNK)
    return _ChunkedScan.apply(x, dt, A_t, Bm, Cm, chunk or DEFAULT_CHUNK)


# --- layout changes for channel-major [B, D, L] inputs -----------------------------------------------

_TILE = (64, 512)  # (channels, steps) per tile: a tile's rows stay in cache while it is transposed


def _tiled(src: Tensor, out: Tensor, dim_c: int, dim_l: int) -> Tensor:
    """``out.copy_(src)`` tile by tile over dims ``dim_c`` / ``dim_l`` of ``out``: a transposing copy
    that is several times faster than one strided ``copy_`` over a long sequence."""
    idx = [slice(None)] * out.dim()
    for c0 in range(0, out.shape[dim_c], _TILE[0]):
        for l0 in range(0, out.shape[dim_l], _TILE[1]):
            idx[dim_c], idx[dim_l] = slice(c0, c0 + _TILE[0]), slice(l0, l0 + _TILE[1])
            out[tuple(idx)].copy_(src[tuple(idx)])
    return out


def _to_time_major(t: Tensor) -> Tensor:  # [B, D, L] -> [L, B, D] contiguous
    L, B, D = t.shape[2], t.shape[0], t.shape[1]
    return _tiled(t.permute(2, 0, 1), t.new_empty(L, B, D), 2, 0)


def _to_channel_major(t: Tensor) -> Tensor:  # [L, B, D] -> [B, D, L] contiguous
    L, B, D = t.shape
    return _tiled(t.permute(1, 2, 0), t.new_empty(B, D, L), 1, 2)


class _TimeMajor(torch.autograd.Function):
    """``[B, D, L]`` (channel-major storage) -> ``[L, B, D]`` contiguous, and back for the gradient."""

    @staticmethod
    def forward(ctx, t):
        return _to_time_major(t)

    @staticmethod
    def backward(ctx, g):
        return _to_channel_major(g)


class _ChannelMajor(torch.autograd.Function):
    """``[L, B, D]`` -> ``[B, D, L]`` contiguous, and back for the gradient."""

    @staticmethod
    def forward(ctx, t):
        return _to_channel_major(t)

    @staticmethod
    def backward(ctx, g):
        return _to_time_major(g)


def _mamba_ssm_kernel():
    """mamba_ssm's fused CUDA selective scan, or None when it is not installed."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except Exception:  # not installed, or built for another torch/CUDA: fall back silently
        return None
    return selective_scan_fn


def selective_scan(u: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None = None,
                   z: Tensor | None = None, dt_bias: Tensor | None = None, dt_softplus: bool = True,
                   chunk: int | None = None, backend: str = "auto") -> Tensor:
    """The selective scan, chunked (same arguments and result as :func:`selective_scan_ref`).

    ``chunk``: steps between saved states (default :data:`DEFAULT_FUSED_CHUNK` for the compiled
    kernel, :data:`DEFAULT_CHUNK` for PyTorch). ``backend``: ``"auto"`` uses mamba_ssm's CUDA
    kernel for CUDA tensors when it is importable, and on CPU the compiled kernel when it builds
    (see :mod:`glocal.core.scan_kernel`), else PyTorch; ``"kernel"`` requires the compiled kernel;
    ``"torch"`` always runs the pure-PyTorch chunks.

    Example:
        >>> import torch
        >>> u, dt = torch.randn(2, 8, 50), torch.rand(2, 8, 50)
        >>> A, B, C = -torch.rand(8, 4), torch.randn(2, 4, 50), torch.randn(2, 4, 50)
        >>> y = selective_scan(u, dt, A, B, C, chunk=16)
        >>> torch.allclose(y, selective_scan_ref(u, dt, A, B, C), atol=1e-5)
        True
    """
    if backend not in BACKENDS:  # (checked again below; here before the CUDA shortcut)
        raise ValueError(f"selective_scan backend must be one of {BACKENDS}; got {backend!r}")
    if backend == "auto" and u.is_cuda:
        kernel = _mamba_ssm_kernel()
        if kernel is not None:
            return kernel(u, dt, A, B, C, D=D, z=z, delta_bias=dt_bias, delta_softplus=dt_softplus)
    Bsz, Dm, L = u.shape
    if dt.shape != u.shape or A.dim() != 2 or A.shape[0] != Dm:
        raise InputError(f"selective_scan: u and dt must be [B, D, L] and A [D, N]; got u {tuple(u.shape)}, "
                         f"dt {tuple(dt.shape)}, A {tuple(A.shape)}")
    dt = _prepare_dt(dt, dt_bias, dt_softplus)
    Bg, Cg = _grouped(B, Dm, "B"), _grouped(C, Dm, "C")
    work = torch.promote_types(u.dtype, torch.float32)  # half inputs scan in float32
    fused = use_kernel(backend, u.device.type == "cpu" and scan_kernel.available(work), "selective_scan",
                       "CPU tensors")
    x, dt = (dt * u).to(work), dt.to(work)
    channel_major = x.stride(-1) == 1 and L > 1  # [B, D, L] storage: transpose in tiles, once
    if channel_major:
        x, dt = _TimeMajor.apply(x), _TimeMajor.apply(dt)  # [L, B, D]
    else:  # token-major storage ([B, L, D], as a Mamba layer makes it): time-major views suffice
        x, dt = x.permute(2, 0, 1), dt.permute(2, 0, 1)
    y = _scan_time_major(x, dt, A.to(work), Bg.to(work).permute(3, 0, 1, 2), Cg.to(work).permute(3, 0, 1, 2),
                         chunk, fused)  # [L, B, D]
    y = (_ChannelMajor.apply(y) if channel_major else y.permute(1, 2, 0)).to(u.dtype)  # [B, D, L]
    if D is not None:
        y = y + u * D[:, None]
    if z is not None:
        y = y * F.silu(z)
    return y


def scan_macs(batch: int, channels: int, length: int, d_state: int) -> int:
    """MACs of one selective scan over ``[batch, channels, length]`` with ``d_state`` states.

    Per step and state element: ``dt * A`` (1), ``x * B`` (1), ``dA * h + dBu`` (1: the add is
    its accumulate) and the read-out ``C . h`` (1); per step and channel: ``dt * u`` and the skip
    ``D * u`` (2). ``exp`` and softplus are not MACs.
    """
    return 4 * batch * channels * length * d_state + 2 * batch * channels * length


# --- the Mamba mixer -------------------------------------------------------------------------------

# direction -> which scan paths run (each path has its own conv / x_proj / dt_proj / A / D, as Vim)
DIRECTIONS = ("forward", "backward", "bidirectional", "grid", "order", "order_bidirectional")


def _grid_paths(grid: tuple[int, ...], device) -> list[Tensor]:
    """VMamba's cross-scan generalised to any rank: for each grid axis (last axis first), the
    flattening in which that axis varies fastest; then the same paths reversed. For an ``(H, W)``
    grid: row-major, column-major, row-major reversed, column-major reversed. Each path is ``[L]``:
    position ``j`` of the scan reads token ``path[j]``."""
    idx = torch.arange(math.prod(grid), device=device).view(grid)
    r = len(grid)
    paths = []
    for axis in reversed(range(r)):
        others = [a for a in range(r) if a != axis]
        paths.append(idx.permute(*others, axis).reshape(-1))
    return paths + [p.flip(0) for p in paths]


class _Path:
    """One scan path: ``None`` (token order), a shared ``[L]`` permutation, or a per-sample
    ``[B, L]`` permutation (``Tokens.order``). ``take`` reorders ``[B, L, C]`` into scan order and
    ``put`` undoes it."""

    def __init__(self, index: Tensor | None):
        self.index = index
        self.inverse = None if index is None else torch.argsort(index, -1)

    @staticmethod
    def _gather(x: Tensor, index: Tensor | None) -> Tensor:
        if index is None:
            return x
        if index.dim() == 1:
            return x.index_select(1, index)
        return torch.gather(x, 1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))

    def take(self, x: Tensor) -> Tensor:  # [B, L, C] -> [B, L, C] in scan order
        return self._gather(x, self.index)

    def put(self, x: Tensor) -> Tensor:  # scan order -> token order
        return self._gather(x, self.inverse)


class _Direction(nn.Module):
    """The per-direction parameters of a selective SSM: an optional causal depthwise conv along
    the scan, ``x_proj -> (dt, B, C)``, ``dt_proj``, ``A_log`` and the skip ``D`` (Mamba's names)."""

    def __init__(self, d_inner: int, d_state: int, dt_rank: int, d_conv: int | None, conv_bias: bool,
                 dt_min: float, dt_max: float, dt_init_floor: float):
        super().__init__()
        self.d_state, self.dt_rank = d_state, dt_rank
        self.conv1d = (nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner, bias=conv_bias)
                       if d_conv else None)
        self.x_proj = nn.Linear(d_inner, dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(dt_rank, d_inner, bias=True)
        # Mamba's init: dt_proj weight ~ U(+-dt_rank^-0.5); softplus(bias) log-uniform in [dt_min, dt_max]
        bound = dt_rank ** -0.5
        nn.init.uniform_(self.dt_proj.weight, -bound, bound)
        dt = torch.exp(torch.rand(d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp_min(dt_init_floor)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        # S4D-real init: A = -(1, 2, ..., N) for every channel
        A = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(d_inner, 1)
        self.A_log = nn.Parameter(torch.log(A))  # [Di, N]
        self.D = nn.Parameter(torch.ones(d_inner))  # [Di]
        self.A_log._no_weight_decay = True
        self.D._no_weight_decay = True

    def forward(self, u: Tensor, valid: Tensor | None):
        """``u [B, L, Di]`` in scan order (padding zeroed) -> ``(u, dt, B, C)`` for the scan, all
        token-major: ``u, dt [B, L, Di]``, ``B, C [B, L, N]``. Padded steps get ``dt = 0``: an
        identity step of the recurrence, so the state passes through padding unchanged."""
        if self.conv1d is not None:  # causal: pad d_conv - 1 steps on the left only
            k = self.conv1d.kernel_size[0]
            u = self.conv1d(F.pad(u.transpose(1, 2), (k - 1, 0))).transpose(1, 2)
            u = F.silu(u)
            if valid is not None:
                u = u * valid.unsqueeze(-1).to(u.dtype)
        dbc = self.x_proj(u)  # [B, L, R + 2N]
        dt, Bm, Cm = dbc.split([self.dt_rank, self.d_state, self.d_state], -1)
        dt = F.softplus(self.dt_proj(dt))  # [B, L, Di]
        if valid is not None:
            dt = dt * valid.unsqueeze(-1).to(dt.dtype)
        return u, dt, Bm, Cm


class Mamba(nn.Module):
    """Mamba's selective state-space mixer (Gu & Dao 2023) scanning the tokens along one or more
    paths: ``in_proj -> (x, z)``, a short depthwise conv, input-dependent ``dt, B, C``, the
    selective scan, ``y * silu(z)``, ``out_proj``.

    Directions (each path has its own conv, ``x_proj``, ``dt_proj``, ``A`` and ``D``; ``in_proj``
    and ``out_proj`` are shared, as in Vim's bidirectional Mamba):

    - ``"forward"`` / ``"backward"``: causal along (against) the token sequence;
    - ``"bidirectional"``: forward + backward (Vision Mamba, Zhu et al. 2024);
    - ``"grid"``: VMamba's cross-scan over ``Tokens.grid`` (Liu et al. 2024): for every axis the
      flattening in which it varies fastest, forward and backward (4 paths on an ``(H, W)`` grid,
      6 on ``(T, H, W)``);
    - ``"order"`` / ``"order_bidirectional"``: along ``Tokens.order``, a per-sample permutation
      (point-cloud / graph serialisations): gather, scan, scatter back.

    Paths are merged by ``merge`` (``"mean"``, Vim's divide-out, or ``"sum"``, VMamba).

    Padding is inert in every direction: padded tokens are zeroed before the conv and the scan
    and their scan steps are identity steps (``dt = 0``), so they never influence valid tokens,
    wherever they sit. When padding comes last along a path (sequence padding at the end; for
    ``"order"`` the adapter must put padded tokens last in ``Tokens.order``), valid tokens get
    exactly the outputs of the unpadded sample.

    Args:
        dim: channels C of ``x [B, L, C]``.
        d_state: state size N per channel; ``expand``: ``d_inner = expand * dim``.
        d_conv: conv kernel (causal 1D along each path; or, with ``conv="grid"``, an odd
            'same' depthwise kernel over the grid shared by all paths, VMamba's SS2D).
        dt_rank: rank of the ``dt`` projection, ``"auto"`` = ``ceil(dim / 16)``.
        conv: ``"causal"``, ``"grid"`` or ``None``.
        out_norm: norm (config/name) on the merged scan output before gating (VMamba), or None.
        rank: grid rank for ``conv="grid"``.
        chunk: chunk length of :func:`selective_scan`.

    Example:
        >>> import torch
        >>> from glocal.core import Tokens
        >>> m = Mamba(32, direction="grid")
        >>> m(torch.randn(2, 12, 32), Tokens(torch.randn(2, 12, 32), grid=(3, 4))).shape
        torch.Size([2, 12, 32])
    """

    def __init__(self, dim: int, d_state: int = 16, d_conv: int = 4, expand: float = 2, dt_rank="auto",
                 direction: str = "forward", merge: str = "mean", conv: str | None = "causal",
                 out_norm=None, rank: int = 2, bias: bool = False, conv_bias: bool = True,
                 dt_min: float = 0.001, dt_max: float = 0.1, dt_init_floor: float = 1e-4,
                 chunk: int | None = None):
        super().__init__()
        if direction not in DIRECTIONS:
            raise ValueError(f"Mamba direction must be one of {DIRECTIONS}; got {direction!r}")
        if merge not in ("mean", "sum"):
            raise ValueError(f"Mamba merge must be 'mean' or 'sum'; got {merge!r}")
        if conv not in ("causal", "grid", None):
            raise ValueError(f"Mamba conv must be 'causal', 'grid' or None; got {conv!r}")
        self.dim, self.direction, self.merge, self.conv = dim, direction, merge, conv
        self.d_inner = d_inner = int(expand * dim)
        self.d_state = d_state
        self.dt_rank = math.ceil(dim / 16) if dt_rank == "auto" else int(dt_rank)
        self.chunk = chunk
        n_paths = self._n_paths(rank)
        self.in_proj = nn.Linear(dim, 2 * d_inner, bias=bias)
        if conv == "grid":
            from .conv import DepthwiseConv
            self.conv_grid = DepthwiseConv(d_inner, kernel=d_conv, rank=rank, bias=conv_bias)
        else:
            self.conv_grid = None
        self.paths = nn.ModuleList(
            _Direction(d_inner, d_state, self.dt_rank, d_conv if conv == "causal" else None, conv_bias,
                       dt_min, dt_max, dt_init_floor) for _ in range(n_paths))
        self.out_norm = build_norm(out_norm, d_inner)
        self.out_proj = nn.Linear(d_inner, dim, bias=bias)

    def _n_paths(self, rank: int) -> int:
        return {"forward": 1, "backward": 1, "bidirectional": 2, "order": 1, "order_bidirectional": 2,
                "grid": 2 * rank}[self.direction]

    def extra_repr(self):
        return (f"direction={self.direction!r}, paths={len(self.paths)}, d_inner={self.d_inner}, "
                f"d_state={self.d_state}, conv={self.conv!r}, merge={self.merge!r}")

    def _scan_paths(self, tokens: Tokens, device) -> list[_Path]:
        d = self.direction
        if d == "forward":
            return [_Path(None)]
        L = tokens.x.shape[1]
        rev = torch.arange(L - 1, -1, -1, device=device)
        if d == "backward":
            return [_Path(rev)]
        if d == "bidirectional":
            return [_Path(None), _Path(rev)]
        if d == "grid":
            grid = tokens.require("grid", "Mamba(direction='grid')")
            if 2 * len(grid) != len(self.paths):
                raise InputError(f"Mamba(direction='grid') was built for rank-{len(self.paths) // 2} grids "
                                 f"({len(self.paths)} paths) but the tokens have grid {grid}")
            return [_Path(p) for p in _grid_paths(grid, device)]
        order = tokens.require("order", f"Mamba(direction={d!r})").to(device)
        paths = [_Path(order)]
        if d == "order_bidirectional":
            paths.append(_Path(order.flip(-1)))
        return paths

    def forward(self, x: Tensor, tokens: Tokens) -> Tensor:
        Bsz, L, _ = x.shape
        valid = tokens.mask  # [B, L] or None
        xs, z = self.in_proj(x).chunk(2, dim=-1)  # [B, L, Di] each
        xs = tokens.zero_padding(xs)
        if self.conv_grid is not None:  # VMamba: one 'same' depthwise conv over the grid, all paths
            xs = tokens.zero_padding(F.silu(self.conv_grid(xs, tokens)))
        paths = self._scan_paths(tokens, x.device)
        us, dts, Bs, Cs = [], [], [], []
        for path, params in zip(paths, self.paths):
            m = None if valid is None else path.take(valid.unsqueeze(-1))[..., 0]
            u, dt, Bm, Cm = params(path.take(xs), m)
            us.append(u)
            dts.append(dt)
            Bs.append(Bm)
            Cs.append(Cm)
        A = torch.cat([-torch.exp(p.A_log) for p in self.paths]).to(xs.dtype)  # [K*Di, N]
        D = torch.cat([p.D for p in self.paths])  # [K*Di]
        # all paths in one scan: channels stacked (token-major storage, [B, D, L] views), path k
        # reads B/C group k
        u, dt = torch.cat(us, -1).transpose(1, 2), torch.cat(dts, -1).transpose(1, 2)  # [B, K*Di, L]
        Bm, Cm = torch.stack(Bs, -2).permute(0, 2, 3, 1), torch.stack(Cs, -2).permute(0, 2, 3, 1)  # [B, K, N, L]
        y = selective_scan(u, dt, A, Bm, Cm, D=D, dt_softplus=False, chunk=self.chunk)  # [B, K*Di, L]
        ys = y.transpose(1, 2).split(self.d_inner, dim=-1)  # K x [B, L, Di] in scan order
        out = paths[0].put(ys[0])
        for path, yk in zip(paths[1:], ys[1:]):
            out = out + path.put(yk)
        if self.merge == "mean" and len(paths) > 1:
            out = out / len(paths)
        out = apply_norm(self.out_norm, out, tokens)
        return self.out_proj(out * F.silu(z))  # [B, L, C]

    def extra_macs(self, x: Tensor, tokens: Tokens) -> int:
        """The scans (:func:`scan_macs` per path), merging the paths and the ``silu(z)`` gate."""
        Bsz, L, _ = x.shape
        K = len(self.paths)
        return K * scan_macs(Bsz, self.d_inner, L, self.d_state) + K * Bsz * L * self.d_inner


def SS2D(dim: int, d_state: int = 16, d_conv: int = 3, expand: float = 2, dt_rank="auto", rank: int = 2,
         merge: str = "sum", out_norm="LayerNorm", chunk: int | None = None) -> Mamba:
    """VMamba's 2D selective scan (SS2D; Liu et al. 2024): a 'same' depthwise conv over the grid,
    the four-way cross-scan (rank-generic: ``2 * rank`` paths), paths summed, LayerNorm, gate."""
    return Mamba(dim, d_state=d_state, d_conv=d_conv, expand=expand, dt_rank=dt_rank, direction="grid",
                 merge=merge, conv="grid", out_norm=out_norm, rank=rank, chunk=chunk)

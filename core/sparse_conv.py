"""Submanifold sparse 3D convolution in pure PyTorch (Graham, Engelcke & van der Maaten, "3D Semantic
Segmentation with Submanifold Sparse Convolutional Networks", CVPR 2018), computed as spconv's
``SubMConv3d`` computes it, and PTv3's xCPE built on it.

A submanifold convolution has outputs at the active voxels only, and reads only active voxels:

    y[v] = bias + sum_{d in [-r, r]^3, v + d active} W[d]^T x[v + d]        (r = kernel // 2)

which is ``F.conv3d`` (a cross-correlation, zero padding) of the voxelised grid, read at the active
voxels: :func:`submconv3d_reference` computes exactly that, densely, and is the test's reference.

The fast path (:func:`submconv3d`):

1. a :class:`Rulebook` (spconv's "indice pairs") per voxel set and kernel size: every voxel
   ``(batch, x, y, z)`` encoded into one int64 key, the keys sorted once (``torch.unique``), and
   for each of the ``k^3`` offsets the neighbour keys looked up with ``torch.searchsorted``, giving
   the pairs ``(input row, output row)`` that offset connects;
2. per offset: gather the input rows, one matmul with that offset's weight, ``index_add_`` into
   the output rows (the centre offset is the identity pairing: one plain matmul). The backward is
   written out the same way (gather, matmul, scatter), so nothing but the inputs is saved: memory
   stays that of the features, not ``k^3`` gathered copies.

Rulebooks are cached per batch (``Tokens.derived``, keyed on the voxel tensor and the kernel
size), so the blocks of a stage share theirs, as PTv3 shares spconv's ``indice_key``.

Voxels: ``Tokens.extras["voxel"]`` ``[B, L, 3]`` long when set (a grid-sampling adapter, the
serialisation, a grid pooling), else ``floor((pos - origin) / grid_size)`` of ``Tokens.pos``
(:func:`glocal.core.serialize.voxel_coords`). Coordinates must lie in ``[0, 2**16)``.

Tokens that share a voxel (a cloud that was not grid-sampled) form ONE site: its input is the mean
of their features and each of them receives the site's output (spconv requires unique voxels; PTv3's
data pipeline grid-samples so that they are). Padded tokens are no sites: they never reach valid
outputs and their outputs are zero.

Weight layout: ``[k^3, in, out]``, offset index ``(a * k + b) * k + c`` for the offset
``(a - r, b - r, c - r)`` along ``(x, y, z)``; ``weight.view(k, k, k, in, out).permute(4, 3, 0, 1, 2)``
is the ``F.conv3d`` weight ``[out, in, k, k, k]``. (spconv 2.x stores ``[out, k, k, k, in]``.)
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from .block import build_norm
from .errors import InputError
from .serialize import cached_on, voxel_coords, voxel_keys
from .tokens import Tokens

__all__ = ["Rulebook", "build_rulebook", "rulebook_for", "submconv3d", "submconv3d_reference", "SubMConv3d",
           "XCPE", "offsets"]

_BITS = 16  # per axis in the voxel key (serialize.voxel_keys); the sample index takes the bits above


def offsets(kernel: int, device=None) -> Tensor:
    """``[k^3, 3]`` long: the offsets of a ``k^3`` kernel in weight order (``dz`` fastest)."""
    r = kernel // 2
    ax = torch.arange(-r, r + 1, device=device)
    return torch.cartesian_prod(ax, ax, ax).view(-1, 3)


@dataclass(eq=False)
class Rulebook:
    """The neighbour map of one voxel set for a ``k^3`` submanifold convolution.

    The convolution runs on ``n_rows`` rows: the tokens themselves when every voxel holds one
    token (``inverse`` None), else one row per occupied voxel (``inverse [N]``: each token's
    site, ``counts [U]``: tokens per site). ``pairs[o]``: for offset ``o`` the ``(input rows,
    output rows)`` it connects (None for the centre offset, the identity)."""

    kernel: int
    n_rows: int
    pairs: list[tuple[Tensor, Tensor] | None]
    inverse: Tensor | None = None
    counts: Tensor | None = None

    @property
    def n_pairs(self) -> int:
        """Pairs over all offsets, the centre's ``n_rows`` included (MACs = pairs * in * out)."""
        return self.n_rows + sum(int(p[0].numel()) for p in self.pairs if p is not None)


@torch.no_grad()
def build_rulebook(voxel: Tensor, batch: Tensor | None, kernel: int) -> Rulebook:
    """The :class:`Rulebook` of packed points: ``voxel [N, 3]`` long in ``[0, 2**16)``, ``batch [N]``
    sample indices (None: one sample), odd ``kernel``."""
    if kernel < 1 or kernel % 2 == 0:
        raise InputError(f"SubMConv3d: the kernel size must be odd; got {kernel}")
    if voxel.dim() != 2 or voxel.shape[1] != 3:
        raise InputError(f"SubMConv3d: voxel coordinates must be [N, 3]; got {tuple(voxel.shape)}")
    voxel = voxel.long()
    N = voxel.shape[0]
    if N and (int(voxel.min()) < 0 or int(voxel.max()) >= 1 << _BITS):
        raise InputError(f"SubMConv3d: voxel coordinates must lie in [0, {1 << _BITS}); got values in "
                         f"[{int(voxel.min())}, {int(voxel.max())}]")
    batch = torch.zeros(N, dtype=torch.long, device=voxel.device) if batch is None else batch.long()
    if N == 0:
        return Rulebook(kernel, 0, [None] * kernel ** 3)
    keys, inverse, counts = torch.unique(voxel_keys(voxel, batch), sorted=True, return_inverse=True, return_counts=True)
    U = keys.numel()
    site_voxel = torch.empty(U, 3, dtype=torch.long, device=voxel.device).index_copy_(0, inverse, voxel)
    unique = U == N
    row_of_site = torch.empty(U, dtype=torch.long, device=voxel.device).scatter_(
        0, inverse, torch.arange(N, device=voxel.device)) if unique else None
    center = kernel ** 3 // 2
    rows = torch.arange(U, device=voxel.device)
    pairs: list[tuple[Tensor, Tensor] | None] = []
    for o, d in enumerate(offsets(kernel).tolist()):
        if o == center:
            pairs.append(None)
            continue
        nv = site_voxel + torch.tensor(d, device=voxel.device)  # [U, 3] neighbour voxels
        inside = ((nv >= 0) & (nv < 1 << _BITS)).all(1)
        nkey = keys + ((d[0] << 2 * _BITS) + (d[1] << _BITS) + d[2])  # no carries where `inside`
        at = torch.searchsorted(keys, nkey).clamp_max(U - 1)
        found = inside & (keys[at] == nkey)
        src, dst = at[found], rows[found]
        if unique:
            src, dst = row_of_site[src], row_of_site[dst]
        pairs.append((src, dst))
    if unique:
        return Rulebook(kernel, N, pairs)
    return Rulebook(kernel, U, pairs, inverse, counts)


def rulebook_for(tokens: Tokens, voxel: Tensor, kernel: int) -> Rulebook:
    """The rulebook of the valid tokens of a padded batch (rows in ``tokens.pack`` order), cached
    per batch for this voxel tensor and kernel size."""
    def build():
        B, L = tokens.x.shape[:2]
        index = tokens.valid_index()
        flat = voxel.reshape(B * L, 3)
        if index is None:
            return build_rulebook(flat, torch.arange(B, device=voxel.device).repeat_interleave(L), kernel)
        return build_rulebook(flat.index_select(0, index), index // L, kernel)

    return cached_on(tokens, f"rulebook/k{kernel}", voxel, build)


class _GatherConv(torch.autograd.Function):
    """``y = x W[centre] + sum_o scatter_o(gather_o(x) W[o])`` and its backward, gathering again
    instead of saving the gathered rows."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, rulebook: Rulebook) -> Tensor:
        center = weight.shape[0] // 2
        out = x @ weight[center]  # [R, out]
        for o, pair in enumerate(rulebook.pairs):
            if pair is not None and pair[0].numel():
                src, dst = pair
                out.index_add_(0, dst, x.index_select(0, src) @ weight[o])
        ctx.save_for_backward(x, weight)
        ctx.rulebook = rulebook
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        x, weight = ctx.saved_tensors
        center = weight.shape[0] // 2
        gx = gw = None
        if ctx.needs_input_grad[0]:
            gx = grad @ weight[center].T
        if ctx.needs_input_grad[1]:
            gw = torch.zeros_like(weight)
            gw[center] = x.T @ grad
        for o, pair in enumerate(ctx.rulebook.pairs):
            if pair is None or not pair[0].numel():
                continue
            src, dst = pair
            g = grad.index_select(0, dst)  # [P, out]
            if gx is not None:
                gx.index_add_(0, src, g @ weight[o].T)
            if gw is not None:
                gw[o] = x.index_select(0, src).T @ g
        return gx, gw, None


def submconv3d(x: Tensor, rulebook: Rulebook, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """The submanifold convolution of packed rows ``x [N, in]`` with ``weight [k^3, in, out]``:
    ``[N, out]``. Tokens sharing a voxel are averaged into one site, and all receive its output."""
    if weight.shape[0] != rulebook.kernel ** 3:
        raise InputError(f"submconv3d: a {rulebook.kernel}^3 rulebook needs a weight of {rulebook.kernel ** 3} "
                         f"offsets; got {tuple(weight.shape)}")
    weight = weight.to(x.dtype)
    if rulebook.inverse is not None:  # several tokens per voxel: one site each, their mean
        sums = x.new_zeros(rulebook.n_rows, x.shape[1]).index_add_(0, rulebook.inverse, x)
        x = sums / rulebook.counts.unsqueeze(1).to(x.dtype)
    with torch.autocast(x.device.type, enabled=False):  # one dtype in and out of the hand-written backward
        out = _GatherConv.apply(x, weight, rulebook)
    if bias is not None:
        out = out + bias.to(out.dtype)
    if rulebook.inverse is not None:
        out = out.index_select(0, rulebook.inverse)
    return out


def submconv3d_reference(x: Tensor, voxel: Tensor, batch: Tensor | None, weight: Tensor,
                         bias: Tensor | None = None) -> Tensor:
    """Dense reference of :func:`submconv3d`: the points voxelised into a ``[B, in, X, Y, Z]`` grid
    (the mean of the tokens of a voxel), ``F.conv3d`` with ``padding = k // 2``, read back at every
    token's voxel. Memory ``B * X * Y * Z * in``: small inputs only."""
    K3, cin, cout = weight.shape
    k = round(K3 ** (1 / 3))
    N = x.shape[0]
    batch = torch.zeros(N, dtype=torch.long, device=x.device) if batch is None else batch.long()
    nb = int(batch.max()) + 1 if N else 1
    size = [int(s) + 1 for s in voxel.max(0).values.tolist()] if N else [1, 1, 1]
    idx = (batch, voxel[:, 0], voxel[:, 1], voxel[:, 2])
    grid = x.new_zeros(nb, *size, cin).index_put(idx, x, accumulate=True)
    count = x.new_zeros(nb, *size).index_put(idx, torch.ones_like(x[:, 0]), accumulate=True)
    grid = (grid / count.clamp_min(1).unsqueeze(-1)).permute(0, 4, 1, 2, 3)  # [B, in, X, Y, Z]
    w = weight.view(k, k, k, cin, cout).permute(4, 3, 0, 1, 2)  # [out, in, k, k, k]
    out = F.conv3d(grid, w, bias, padding=k // 2)  # [B, out, X, Y, Z]
    return out.permute(0, 2, 3, 4, 1)[idx]  # [N, out]


class SubMConv3d(nn.Module):
    """Submanifold sparse convolution ``in -> out`` over the valid tokens' voxels (spconv's
    ``SubMConv3d``), as a token mixer ``forward(x [B, L, in], tokens) -> [B, L, out]`` (padding
    zero) and on packed points (:meth:`packed`).

    Reads the voxels (``Tokens.extras["voxel"]``, else ``Tokens.pos`` with ``grid_size``) and
    ``Tokens.mask``.

    Args:
        dim: input channels; ``out_dim``: output channels (default ``dim``).
        kernel: odd kernel side k (``k^3`` offsets).
        bias: add a learned bias.
        grid_size: voxel side used when the tokens carry ``pos`` but no ``extras["voxel"]``.

    Example:
        >>> import torch
        >>> from glocal.core import Tokens
        >>> conv = SubMConv3d(4, 8, kernel=3, grid_size=0.1)
        >>> t = Tokens(torch.randn(2, 50, 4), pos=torch.rand(2, 50, 3))
        >>> conv(t.x, t).shape
        torch.Size([2, 50, 8])
    """

    def __init__(self, dim: int, out_dim: int | None = None, kernel: int = 3, bias: bool = True,
                 grid_size: float | None = None):
        super().__init__()
        if kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"SubMConv3d: the kernel size must be odd; got {kernel}")
        out_dim = out_dim or dim
        self.dim, self.out_dim, self.kernel, self.grid_size = dim, out_dim, kernel, grid_size
        self.weight = nn.Parameter(torch.empty(kernel ** 3, dim, out_dim))
        self.bias = nn.Parameter(torch.empty(out_dim)) if bias else None
        bound = 1 / math.sqrt(dim * kernel ** 3)  # torch's conv init: fan_in = in * k^3
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def extra_repr(self):
        return f"{self.dim}, {self.out_dim}, kernel={self.kernel}, bias={self.bias is not None}"

    def packed(self, x: Tensor, voxel: Tensor, batch: Tensor | None = None, rulebook: Rulebook | None = None) -> Tensor:
        """Packed points: ``x [N, in]``, ``voxel [N, 3]`` long, ``batch [N]`` -> ``[N, out]``."""
        rulebook = rulebook or build_rulebook(voxel, batch, self.kernel)
        return submconv3d(x, rulebook, self.weight, self.bias)

    def forward(self, x: Tensor, tokens: Tokens) -> Tensor:
        voxel = voxel_coords(tokens, self.grid_size, "SubMConv3d")
        rulebook = rulebook_for(tokens, voxel, self.kernel)
        return tokens.unpack(submconv3d(tokens.pack(x), rulebook, self.weight, self.bias))  # [B, L, out]

    def extra_macs(self, x: Tensor, tokens: Tokens) -> int:
        """One ``in * out`` product per (input, output) pair of every offset (no hooks see it)."""
        voxel = voxel_coords(tokens, self.grid_size, "SubMConv3d")
        return rulebook_for(tokens, voxel, self.kernel).n_pairs * self.dim * self.out_dim


class XCPE(nn.Module):
    """PTv3's enhanced conditional positional encoding (xCPE): ``SubMConv3d(k) -> Linear ->
    LayerNorm``, a mixer ``[B, L, C] -> [B, L, C]`` (the block adds it residually, unnormalised).
    Reads what :class:`SubMConv3d` reads; zero at padding."""

    def __init__(self, dim: int, kernel: int = 3, grid_size: float | None = None, norm="LayerNorm"):
        super().__init__()
        self.conv = SubMConv3d(dim, dim, kernel, bias=True, grid_size=grid_size)
        self.linear = nn.Linear(dim, dim)
        self.norm = build_norm(norm, dim)

    def forward(self, x: Tensor, tokens: Tokens) -> Tensor:
        h = tokens.pack(self.conv(x, tokens))  # [N, C]: valid rows only (the norm may be a BatchNorm)
        return tokens.unpack(self.norm(self.linear(h)))  # [B, L, C], padding zero

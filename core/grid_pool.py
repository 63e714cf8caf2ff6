"""Grid pooling of point tokens and its unpooling (Point Transformer V3's ``SerializedPooling`` /
``SerializedUnpooling``, Wu et al., CVPR 2024; the grid pooling of PTv2).

:class:`GridPooling` (a ``DOWNSAMPLERS`` entry: ``Tokens -> (coarse Tokens, ClusterUndo)``): every
valid token's voxel is divided by ``stride``; the tokens of one coarse voxel merge into one coarse
token: features ``Linear(in, out)`` then the max (or mean) over the members, then BatchNorm + GELU
over the valid coarse tokens; ``pos`` the mean of the members'; ``extras["voxel"]`` the coarse
voxel. Coarse tokens are laid out per sample (sorted by voxel), padded to the largest sample, with
a new mask. The coarse tokens are serialised again (``extras["orders"]``, ``Tokens.order``), with
the curves in a fresh random order while training when ``shuffle_orders`` (as PTv3 does at every
pooling). :class:`~glocal.core.undo.ClusterUndo` holds each fine token's coarse index.

PTv3 pools by shifting the serialisation codes (``code >> 3``), which groups exactly the points of
one coarse voxel ``voxel // 2``; here the voxels are divided directly, so any integer stride works.

:class:`GridUnpooling`: PTv3's decoder step: ``Linear + BN + GELU`` of the coarse features, gathered
back to the fine tokens through the undo, plus ``Linear + BN + GELU`` of the fine (skip) features.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .block import TokenNorm, build_norm
from .errors import InputError
from .serialize import ORDERS, key_voxels, serialize_tokens, voxel_coords, voxel_keys
from .tokens import Tokens
from .undo import ClusterUndo

__all__ = ["GridPooling", "GridUnpooling", "point_batch_norm"]

_POINT_KEYS = ("voxel", "orders")  # per-token extras that belong to one level


def point_batch_norm(dim: int, momentum: float = 0.01) -> TokenNorm:
    """BatchNorm over valid tokens with PTv3's settings (``eps=1e-3, momentum=0.01``).

    Momentum 0.01 averages the running statistics over about the last 100 steps: right for
    Pointcept's schedules of many thousand steps; in a run of a few hundred, with the weights still
    moving fast, the statistics trail the weights and evaluation suffers (a shape model at epoch 3
    of 8 scored 8% in eval mode and 56% once its statistics were recomputed): give short schedules
    0.1 (PyTorch's default)."""
    norm = TokenNorm(dim, "batch", eps=1e-3)
    norm.norm.momentum = momentum
    return norm


def _norm(cfg, dim: int) -> nn.Module:
    """``"BatchNorm"`` or ``dict(type="BatchNorm", momentum=m)``: :func:`point_batch_norm`; any other
    norm config: ``build_norm``."""
    if cfg == "BatchNorm":
        return point_batch_norm(dim)
    if isinstance(cfg, dict) and cfg.get("type") == "BatchNorm" and set(cfg) <= {"type", "momentum"}:
        return point_batch_norm(dim, cfg.get("momentum", 0.01))
    return build_norm(cfg, dim)


def _act(name: str | None) -> nn.Module:
    return nn.Identity() if name is None else getattr(nn, name)()


class GridPooling(nn.Module):
    """PTv3's pooling of point tokens onto a grid ``stride`` times coarser.

    Reads the voxels (``Tokens.extras["voxel"]``, else ``Tokens.pos`` with ``grid_size``),
    ``Tokens.mask`` and ``Tokens.pos`` (optional: the coarse positions are the members' mean).

    Args:
        dim, out_dim: channels in and out (``out_dim`` default ``2 * dim``).
        stride: integer coarsening of the voxel grid.
        reduce: ``"max"`` (PTv3) or ``"mean"`` over a coarse voxel's members.
        norm: ``"BatchNorm"`` (PTv3's: eps 1e-3, momentum 0.01, valid tokens only; or
            ``dict(type="BatchNorm", momentum=m)``), another norm
            config, or None; ``act``: activation name or None.
        orders: curves to serialise the coarse tokens with (:data:`~glocal.core.serialize.ORDERS`);
            empty: the coarse tokens carry no order.
        shuffle_orders: while training, the curves in a random order (PTv3).
        grid_size: voxel side when the tokens carry ``pos`` but no ``extras["voxel"]``.

    Example:
        >>> import torch
        >>> from glocal.core import Tokens
        >>> pool = GridPooling(8, 16, grid_size=0.1)
        >>> t = Tokens(torch.randn(2, 100, 8), pos=torch.rand(2, 100, 3))
        >>> coarse, undo = pool(t)
        >>> coarse.x.shape[-1], coarse.mask.sum().item() <= 2 * 125, undo.up(coarse.x).shape
        (16, True, torch.Size([2, 100, 16]))
    """

    def __init__(self, dim: int, out_dim: int | None = None, stride: int = 2, reduce: str = "max",
                 norm="BatchNorm", act: str | None = "GELU", orders=ORDERS, shuffle_orders: bool = True,
                 grid_size: float | None = None):
        super().__init__()
        if reduce not in ("max", "mean"):
            raise ValueError(f"GridPooling reduce must be 'max' or 'mean'; got {reduce!r}")
        if int(stride) != stride or stride < 1:
            raise ValueError(f"GridPooling stride must be a positive integer; got {stride}")
        out_dim = out_dim or 2 * dim
        self.stride, self.reduce, self.grid_size = int(stride), reduce, grid_size
        self.orders = (orders,) if isinstance(orders, str) else tuple(orders)
        self.shuffle_orders = shuffle_orders
        self.proj = nn.Linear(dim, out_dim)
        self.norm = _norm(norm, out_dim)
        self.act = _act(act)

    def extra_repr(self):
        return f"stride={self.stride}, reduce={self.reduce!r}, orders={self.orders}"

    @torch.profiler.record_function("glocal.grid_pool")  # a named scope for profiles
    def forward(self, tokens: Tokens) -> tuple[Tokens, ClusterUndo]:
        voxel = voxel_coords(tokens, self.grid_size, "GridPooling")  # [B, L, 3]
        B, L, _ = tokens.x.shape
        dev = tokens.x.device
        index = tokens.valid_index()
        if index is None:
            index = torch.arange(B * L, device=dev)
        coarse_voxel = voxel.reshape(B * L, 3).index_select(0, index) // self.stride  # [N, 3]
        keys, cluster, counts = torch.unique(voxel_keys(coarse_voxel, index // L), sorted=True,
                                             return_inverse=True, return_counts=True)
        U = keys.numel()
        cvox, cb = key_voxels(keys)  # [U, 3], [U]
        per_sample = torch.bincount(cb, minlength=B)  # [B] coarse tokens per sample
        L2 = max(int(per_sample.max()) if U else 0, 1)
        slot = torch.arange(U, device=dev) - (torch.cumsum(per_sample, 0) - per_sample)[cb]  # [U]
        flat = cb * L2 + slot  # [U] place in the padded coarse batch

        h = self.proj(tokens.pack(tokens.x))  # [N, out]
        if self.reduce == "max":
            feat = h.new_zeros(U, h.shape[1]).scatter_reduce(0, cluster.unsqueeze(1).expand_as(h), h, "amax",
                                                             include_self=False)
        else:
            feat = h.new_zeros(U, h.shape[1]).index_add(0, cluster, h) / counts.unsqueeze(1).to(h.dtype)
        feat = self.act(self.norm(feat))  # [U, out]: BatchNorm over the valid coarse tokens only

        def scatter(rows: Tensor) -> Tensor:  # [U, D] -> [B, L2, D], padding zero
            return rows.new_zeros(B * L2, rows.shape[1]).index_copy(0, flat, rows).view(B, L2, -1)

        mask = torch.zeros(B * L2, dtype=torch.bool, device=dev).index_fill(0, flat, True).view(B, L2)
        pos = None
        if tokens.pos is not None:
            p = tokens.pack(tokens.pos)
            pos = scatter(p.new_zeros(U, p.shape[1]).index_add(0, cluster, p) / counts.unsqueeze(1).to(p.dtype))
        extras = {k: v for k, v in tokens.extras.items() if k not in _POINT_KEYS}
        extras["voxel"] = scatter(cvox)
        coarse = Tokens(scatter(feat), mask=mask, pos=pos, extras=extras)
        if self.orders:
            coarse = serialize_tokens(coarse, orders=self.orders, shuffle=self.shuffle_orders and self.training)
        fine_cluster = torch.zeros(B * L, dtype=torch.long, device=dev).index_copy(0, index, slot[cluster])
        return coarse, ClusterUndo(fine_cluster.view(B, L), fine=tokens)


class GridUnpooling(nn.Module):
    """PTv3's ``SerializedUnpooling``: ``(coarse Tokens, ClusterUndo) -> fine Tokens`` with
    ``x = act(norm(Linear(skip)))  +  up(act(norm(Linear(coarse))))``, the skip being the fine
    tokens the pooling started from (``undo.fine``); the fine structure comes back whole.

    Args:
        dim: coarse channels; ``skip_dim``: the fine tokens' channels; ``out_dim``: output channels.
    """

    def __init__(self, dim: int, skip_dim: int, out_dim: int, norm="BatchNorm", act: str | None = "GELU"):
        super().__init__()
        self.proj = nn.Linear(dim, out_dim)
        self.proj_norm, self.proj_act = _norm(norm, out_dim), _act(act)
        self.proj_skip = nn.Linear(skip_dim, out_dim)
        self.skip_norm, self.skip_act = _norm(norm, out_dim), _act(act)

    @torch.profiler.record_function("glocal.grid_unpool")  # a named scope for profiles
    def forward(self, coarse: Tokens, undo: ClusterUndo) -> Tokens:
        if not isinstance(undo, ClusterUndo):
            raise InputError(f"GridUnpooling needs the ClusterUndo of a GridPooling; got {type(undo).__name__}")
        fine = undo.fine
        up = coarse.pack(coarse.x)
        up = coarse.unpack(self.proj_act(self.proj_norm(self.proj(up))))  # [B, L', out]
        skip = fine.pack(fine.x)
        skip = fine.unpack(self.skip_act(self.skip_norm(self.proj_skip(skip))))  # [B, L, out]
        return undo.restore(skip + undo.up(up))  # undo.up zeroes the padded fine tokens

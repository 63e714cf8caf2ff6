"""Point Transformer V3 (Wu et al., "Point Transformer V3: Simpler, Faster, Stronger", CVPR 2024).

The cloud is voxelised (``grid_size``) and serialised along K space-filling curves (z-order and
Hilbert, each also transposed; :mod:`glocal.core.serialize`). An embedding (submanifold conv
``k=5`` + BatchNorm + GELU) feeds a U-Net of :class:`PointBlock`\\ s joined by grid pooling
(stride 2) and unpooling with skip projections (:mod:`glocal.core.grid_pool`). A block:

    x = x + xCPE(x)                                   # SubMConv3d(k=3) -> Linear -> LayerNorm
    x = x + drop_path(local(LN(x)))                   # serialized patch attention (the local encoder)
    [x = x + drop_path(global_(LN(x)))]               # an optional global mixer, by config
    x = x + drop_path(Mlp(LN(x)))                     # ratio 4

Block ``i`` of a stage attends along curve ``i mod K`` (``Tokens.order`` is set from
``extras["orders"]``); while training, every level's curves come in a random order (PTv3's
``shuffle_orders``; in eval mode they keep the config's order, so inference is deterministic;
Pointcept shuffles in eval mode too). The decoder reuses each level's serialisation and voxels.

Output (``BackboneOutput``): with a decoder (``dec_depths`` non-empty) the U-Net runs inside the
backbone, as PTv3's unpooling adds projected skips, which ``UNetHead`` does not, and the output is
ONE stage: the full-resolution tokens (``dec_channels[0]`` wide; ``undo = [None]``), for a per-token
head (``TokenHead``) or a pooled one (``ClsHead``). Without a decoder (``dec_depths=()``,
Pointcept's ``cls_mode``) it is the five encoder stages with the ``ClusterUndo`` of every pooling,
for ``ClsHead`` or ``UNetHead``.

What the adapter's Tokens must carry: ``x [B, L, in_dim]`` features (e.g. xyz + rgb: 6), ``mask
[B, L]`` bool for a ragged batch, and ``pos [B, L, 3]`` float coordinates (voxelised with
``grid_size``, origin at each cloud's minimum) or ``extras["voxel"] [B, L, 3]`` long voxel
coordinates of a grid-sampled cloud. A voxel shared by several points is one sparse-conv site
(their mean); grid-sample clouds for PTv3's behaviour.

Parameters of ``ptv3_base`` (in 6, the ScanNet semantic-segmentation layout without its
classifier): 46,166,272 here and in Pointcept's ``PT-v3m1`` (counted from its layer layout: the
same layers, weights and biases; spconv's ``SubMConv3d`` holds ``k^3 * in * out`` weights + ``out``
bias; BatchNorm running statistics are buffers); the paper quotes 46.2 M. The encoder alone
(``dec_depths=()``) has 38,672,640.
"""
from __future__ import annotations

import copy
import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..backbone import BackboneOutput
from ..block import BlockSequence, LocalGlobalBlock, Residual, build_mixer
from ..errors import ConfigError, InputError
from ..grid_pool import GridPooling, GridUnpooling, point_batch_norm
from ..registry import MIXERS, accepted_args
from ..serialize import ORDERS, serialize_tokens
from ..sparse_conv import SubMConv3d
from ..tokens import Tokens
from ..undo import Undo

__all__ = ["PTv3Config", "PointTransformerV3", "PointBlock", "PointEmbedding", "ptv3_base", "ptv3_small"]


class PointBlock(nn.Module):
    """PTv3's block: an unnormalised residual positional encoding (``cpe``, xCPE), then a
    :class:`~glocal.core.block.LocalGlobalBlock` ``local -> global_ -> ffn`` (pre-norm, drop path).

    ``order_index``: when the tokens carry ``extras["orders"]`` (K serialisations), the block sets
    ``Tokens.order`` to order ``order_index mod K`` for its mixers; otherwise it keeps the tokens'
    own ``order``. The other arguments are :class:`LocalGlobalBlock`'s; ``cpe`` is a mixer config or
    module (None: no positional encoding).

    Example:
        >>> import torch
        >>> from glocal.core import Tokens
        >>> from glocal.core.serialize import serialize_tokens
        >>> blk = PointBlock(16, cpe=dict(type="XCPE"), local=dict(type="SerializedAttention", heads=2, patch=16))
        >>> t = serialize_tokens(Tokens(torch.randn(2, 40, 16), pos=torch.rand(2, 40, 3)), grid_size=0.2)
        >>> blk(t).x.shape
        torch.Size([2, 40, 16])
    """

    def __init__(self, dim: int, cpe=dict(type="XCPE"), local=dict(type="SerializedAttention"), global_=None,
                 ffn=dict(type="Mlp"), composition: str = "sequential", norm="LayerNorm", drop_path: float = 0.0,
                 layer_scale: float | None = None, order_index: int = 0):
        super().__init__()
        self.order_index = int(order_index)
        cpe = build_mixer(cpe, dim)
        self.cpe = None if cpe is None else Residual(dim, cpe, norm=None)
        self.block = LocalGlobalBlock(dim, local=local, global_=global_, ffn=ffn, composition=composition,
                                      norm=norm, drop_path=drop_path, layer_scale=layer_scale)

    def extra_repr(self):
        return f"order_index={self.order_index}"

    def forward(self, tokens: Tokens) -> Tokens:
        orders = tokens.extras.get("orders")
        if orders:
            tokens = tokens.replace(order=orders[self.order_index % len(orders)])
        if self.cpe is not None:
            tokens = tokens.replace(x=self.cpe(tokens.x, tokens))
        return self.block(tokens)


class PointEmbedding(nn.Module):
    """PTv3's embedding: ``SubMConv3d(in, dim, kernel, bias=False) -> BatchNorm -> GELU`` over the
    valid tokens (padding zero)."""

    def __init__(self, in_dim: int, dim: int, kernel: int = 5, grid_size: float | None = None,
                 bn_momentum: float = 0.01):
        super().__init__()
        self.conv = SubMConv3d(in_dim, dim, kernel, bias=False, grid_size=grid_size)
        self.norm = point_batch_norm(dim, bn_momentum)
        self.act = nn.GELU()

    def forward(self, tokens: Tokens) -> Tokens:
        h = tokens.pack(self.conv(tokens.x, tokens))  # [N, dim]
        return tokens.replace(x=tokens.unpack(self.act(self.norm(h))))


def _per_stage(value, n: int, name: str) -> tuple:
    values = (value,) * n if isinstance(value, (int, float)) else tuple(value)
    if len(values) != n:
        raise ConfigError(f"PTv3: {name} needs {n} values (one per stage); got {values}")
    return values


def _pattern(cfg) -> list:
    """A global-mixer setting as a list cycled over a stage's blocks: None, one config/module, or a
    sequence of them."""
    if cfg is None or isinstance(cfg, (Mapping, nn.Module)):
        return [cfg]
    return list(cfg)


@dataclass
class PTv3Config:
    in_dim: int = 6  # input features per point (xyz + rgb)
    grid_size: float = 0.02  # voxel side, in the units of Tokens.pos (when extras["voxel"] is absent)
    orders: tuple[str, ...] = ORDERS
    shuffle_orders: bool = True
    stride: tuple[int, ...] = (2, 2, 2, 2)
    enc_depths: tuple[int, ...] = (2, 2, 2, 6, 2)
    enc_channels: tuple[int, ...] = (32, 64, 128, 256, 512)
    enc_heads: tuple[int, ...] = (2, 4, 8, 16, 32)
    enc_patch: int | tuple[int, ...] = 1024
    dec_depths: tuple[int, ...] = (2, 2, 2, 2)  # () for an encoder only (Pointcept's cls_mode)
    dec_channels: tuple[int, ...] = (64, 64, 128, 256)
    dec_heads: tuple[int, ...] = (4, 4, 8, 16)
    dec_patch: int | tuple[int, ...] = 1024
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    attn_drop: float = 0.0
    proj_drop: float = 0.0
    drop_path_rate: float = 0.3
    embed_kernel: int = 5
    cpe_kernel: int = 3
    # the local encoder (heads / patch / qkv_bias / attn_drop / proj_drop are filled in per stage
    # where its constructor takes them)
    local: Any = field(default_factory=lambda: dict(type="SerializedAttention"))
    # a global mixer: None, one mixer config/module for every block, or a sequence cycled over each
    # stage's blocks (e.g. [None, dict(type="Mamba", direction="order_bidirectional")])
    global_: Any = None
    composition: str = "sequential"  # of local and global_ ("parallel": one summed residual step)
    pool_reduce: str = "max"
    # BatchNorm momentum of the embedding and the (un)pooling layers: Pointcept's 0.01 suits its long
    # schedules; a run of a few hundred steps needs 0.1 (see grid_pool.point_batch_norm)
    bn_momentum: float = 0.01


class PointTransformerV3(nn.Module):
    """Point Transformer V3 (module docstring): ``Tokens`` of a point cloud -> ``BackboneOutput``.

    Reads ``Tokens.x [B, L, in_dim]``, ``Tokens.mask``, and ``Tokens.pos [B, L, 3]`` or
    ``Tokens.extras["voxel"]``; an adapter's ``Tokens.order`` is replaced by the serialisation.

    Example:
        >>> import torch
        >>> from glocal.core import Tokens
        >>> m = ptv3_small(grid_size=0.05).eval()
        >>> mask = torch.arange(200)[None] < torch.tensor([[200], [150]])
        >>> out = m(Tokens(torch.randn(2, 200, 6), mask=mask, pos=torch.rand(2, 200, 3)))
        >>> out.last.x.shape, len(out.stages)
        (torch.Size([2, 200, 32]), 1)
    """

    config_class = PTv3Config
    needs = ("pos",)  # or extras["voxel"]: the structure an adapter must provide (tests build it)

    def __init__(self, cfg: PTv3Config | None = None, **overrides):
        super().__init__()
        cfg = dataclasses.replace(cfg or PTv3Config(), **overrides)
        S = len(cfg.enc_depths)
        if len(cfg.stride) != S - 1:
            raise ConfigError(f"PTv3: {S} encoder stages need {S - 1} strides; got {cfg.stride}")
        enc_channels = _per_stage(cfg.enc_channels, S, "enc_channels")
        enc_heads = _per_stage(cfg.enc_heads, S, "enc_heads")
        enc_patch = _per_stage(cfg.enc_patch, S, "enc_patch")
        D = len(cfg.dec_depths)
        if D not in (0, S - 1):
            raise ConfigError(f"PTv3: dec_depths needs {S - 1} values (or none, for an encoder only); "
                              f"got {cfg.dec_depths}")
        self.cfg = cfg
        self.in_dim = cfg.in_dim
        self.orders = tuple(cfg.orders)
        self.embedding = PointEmbedding(cfg.in_dim, enc_channels[0], cfg.embed_kernel, cfg.grid_size, cfg.bn_momentum)
        bn = dict(type="BatchNorm", momentum=cfg.bn_momentum)

        rates = _linspace(cfg.drop_path_rate, sum(cfg.enc_depths))
        self.down = nn.ModuleList()
        self.enc = nn.ModuleList()
        start = 0
        for s, depth in enumerate(cfg.enc_depths):
            if s > 0:
                self.down.append(GridPooling(enc_channels[s - 1], enc_channels[s], stride=cfg.stride[s - 1],
                                             reduce=cfg.pool_reduce, norm=bn, orders=self.orders,
                                             shuffle_orders=cfg.shuffle_orders))
            self.enc.append(self._stage(enc_channels[s], depth, enc_heads[s], enc_patch[s],
                                        rates[start:start + depth]))
            start += depth

        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        if D:
            dec_channels = _per_stage(cfg.dec_channels, D, "dec_channels") + (enc_channels[-1],)
            dec_heads = _per_stage(cfg.dec_heads, D, "dec_heads")
            dec_patch = _per_stage(cfg.dec_patch, D, "dec_patch")
            rates = _linspace(cfg.drop_path_rate, sum(cfg.dec_depths))
            for s in range(D):  # level s: unpool from level s + 1, then blocks (index = level)
                lo = sum(cfg.dec_depths[:s])
                self.up.append(GridUnpooling(dec_channels[s + 1], enc_channels[s], dec_channels[s], norm=bn))
                self.dec.append(self._stage(dec_channels[s], cfg.dec_depths[s], dec_heads[s], dec_patch[s],
                                            rates[lo:lo + cfg.dec_depths[s]][::-1]))
            self.dims = [dec_channels[0]]
        else:
            self.dims = list(enc_channels)
        self.out_dim = self.dims[-1]

    def _stage(self, dim: int, depth: int, heads: int, patch: int, rates: Sequence[float]) -> BlockSequence:
        cfg = self.cfg
        local = cfg.local
        if isinstance(local, Mapping):
            local = dict(local)
            factory = MIXERS.get(local["type"]) if isinstance(local.get("type"), str) else local.get("type")
            known = accepted_args(factory) if factory is not None else None
            for k, v in dict(heads=heads, patch=patch, qkv_bias=cfg.qkv_bias, attn_drop=cfg.attn_drop,
                             proj_drop=cfg.proj_drop).items():
                if known is None or k in known:
                    local.setdefault(k, v)
        blocks = []
        for i, (global_, rate) in enumerate(zip(itertools.cycle(_pattern(cfg.global_)), rates)):
            own = [copy.deepcopy(m) if isinstance(m, nn.Module) else m for m in (local, global_)]  # no sharing
            blocks.append(PointBlock(
                dim, cpe=dict(type="XCPE", kernel=cfg.cpe_kernel), local=own[0], global_=own[1],
                ffn=dict(type="Mlp", ratio=cfg.mlp_ratio, drop=cfg.proj_drop), composition=cfg.composition,
                drop_path=rate, order_index=i))
        return BlockSequence(blocks)

    def forward(self, tokens: Tokens | tuple[Tokens, Undo], stem: Undo | None = None) -> BackboneOutput:
        if isinstance(tokens, tuple):
            tokens, stem = tokens
        if tokens.dim != self.in_dim:
            raise InputError(f"PTv3 takes {self.in_dim}-wide point features (in_dim); got {tokens.dim}")
        tokens = serialize_tokens(tokens, self.cfg.grid_size, self.orders,
                                  shuffle=self.cfg.shuffle_orders and self.training)
        tokens = self.embedding(tokens)
        stages, undo = [], [None]
        for s, stage in enumerate(self.enc):
            if s > 0:
                tokens, info = self.down[s - 1](tokens)
                undo.append(info)
            tokens = stage(tokens)
            stages.append(tokens)
        if not len(self.dec):
            return BackboneOutput(stages, undo, stem)
        for s in reversed(range(len(self.dec))):
            tokens = self.dec[s](self.up[s](tokens, undo[s + 1]))
        return BackboneOutput([tokens], [None], stem)


def _linspace(end: float, n: int) -> list[float]:
    """``torch.linspace(0, end, n).tolist()`` in plain Python (no tensor: builds on the meta device)."""
    return [end * i / (n - 1) for i in range(n)] if n > 1 else [0.0] * n


def ptv3_base(**overrides) -> PointTransformerV3:
    """PTv3 as trained on ScanNet (Pointcept ``semseg-pt-v3m1-0-base``): in 6 (xyz + rgb), grid
    0.02, orders z / z-trans / hilbert / hilbert-trans, encoder depths 2-2-2-6-2, channels
    32-64-128-256-512, heads 2-4-8-16-32; decoder depths 2-2-2-2, channels 64-64-128-256, heads
    4-4-8-16; patch 1024, MLP ratio 4, drop path 0.3. 46,166,272 parameters (paper: 46.2 M)."""
    return PointTransformerV3(PTv3Config(), **overrides)


def ptv3_small(**overrides) -> PointTransformerV3:
    """A small PTv3 for CPU training: four levels, encoder depths 1-1-2-1, channels 32-64-128-256,
    heads 2-4-8-16; decoder depths 1-1-1, channels 32-64-128, heads 2-4-8; patch 128; drop path 0.1."""
    return PointTransformerV3(PTv3Config(
        stride=(2, 2, 2), enc_depths=(1, 1, 2, 1), enc_channels=(32, 64, 128, 256), enc_heads=(2, 4, 8, 16),
        enc_patch=128, dec_depths=(1, 1, 1), dec_channels=(32, 64, 128), dec_heads=(2, 4, 8), dec_patch=128,
        drop_path_rate=0.1), **overrides)


for _variant in (ptv3_base, ptv3_small):
    _variant.config_class = PTv3Config

"""NAT and DiNAT: Neighborhood Attention Transformer (Hassani et al., CVPR 2023) and Dilated
Neighborhood Attention Transformer (Hassani & Shi, 2022).

Four stages of ``LocalGlobalBlock(local=NeighborhoodAttention(kernel 7), ffn=Mlp)``, joined by a
3x3 stride-2 convolution + LayerNorm (``ConvDownsample(kernel=3)``). DiNAT alternates undilated
blocks (local) with dilated ones (sparse, global reach): the dilation of a stage is the largest that
fits its resolution at 224 pixels (``56 / 7 = 8``, then 4, 2, 1). The image stem, two 3x3 stride-2
convolutions (3 -> 32 -> 64) + LayerNorm, is the adapter
``ConvStem(dims=(32, 64), strides=(2, 2), norm=None, act="Identity", norm_last="LayerNorm")``. Rank-generic
(``rank=1`` for sequences, ``3`` for video), as its parts are.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from ..backbone import Backbone

__all__ = ["NATConfig", "NAT", "dinat_dilations", "nat_mini", "nat_tiny", "nat_small", "nat_base",
           "dinat_mini", "dinat_tiny", "dinat_small", "dinat_base"]


def dinat_dilations(depths: Sequence[int], kernel: int = 7, resolution: int = 56) -> tuple[tuple[int, ...], ...]:
    """DiNAT's schedule: per stage, blocks alternate dilation 1 and the largest dilation whose
    dilated kernel fits the stage's side (``side // kernel``), the side halving every stage from
    ``resolution`` (the first stage's, 56 for 224 pixels with a stride-4 stem)."""
    out = []
    for i, depth in enumerate(depths):
        big = max(1, (resolution // 2 ** i) // kernel)
        out.append(tuple(1 if j % 2 == 0 else big for j in range(depth)))
    return tuple(out)


@dataclass
class NATConfig:
    dim: int = 64
    in_dim: int | None = None  # width of the adapter's tokens (default: dim)
    depths: tuple[int, ...] = (3, 4, 6, 5)
    heads: tuple[int, ...] = (2, 4, 8, 16)
    kernel: int | tuple[int, ...] = 7
    dilations: tuple[tuple[int, ...], ...] | None = None  # per stage, per block (DiNAT); None = all 1
    mlp_ratio: float = 3.0
    layer_scale: float | None = None
    rank: int = 2
    qkv_bias: bool = True
    drop_path_rate: float = 0.2


class NAT(Backbone):
    """NAT (``dilations=None``) or DiNAT (per-block dilations) backbone."""

    config_class = NATConfig

    def __init__(self, cfg: NATConfig | None = None, **overrides):
        cfg = dataclasses.replace(cfg or NATConfig(), **overrides)
        dilations = cfg.dilations or tuple((1,) * d for d in cfg.depths)
        if len(dilations) != len(cfg.depths) or any(len(s) != d for s, d in zip(dilations, cfg.depths)):
            raise ValueError(f"NAT: dilations {dilations} must give one value per block of depths {cfg.depths}")
        stages = []
        for i, (depth, heads, dil) in enumerate(zip(cfg.depths, cfg.heads, dilations)):
            blocks = [dict(local=dict(type="NeighborhoodAttention", heads=heads, kernel=cfg.kernel, dilation=d,
                                      rank=cfg.rank, qkv_bias=cfg.qkv_bias),
                           ffn=dict(type="Mlp", ratio=cfg.mlp_ratio), layer_scale=cfg.layer_scale)
                      for d in dil]
            stages.append(dict(dim=cfg.dim * 2 ** i, depth=depth, blocks=blocks))
        super().__init__(cfg.in_dim or cfg.dim, stages,
                         downsample=dict(type="ConvDownsample", factors=2, kernel=3, rank=cfg.rank),
                         drop_path_rate=cfg.drop_path_rate, out_norm="LayerNorm")
        self.cfg = cfg


_MINI = dict(dim=64, depths=(3, 4, 6, 5), heads=(2, 4, 8, 16), mlp_ratio=3.0, drop_path_rate=0.2)
_TINY = dict(dim=64, depths=(3, 4, 18, 5), heads=(2, 4, 8, 16), mlp_ratio=3.0, drop_path_rate=0.2)
_SMALL = dict(dim=96, depths=(3, 4, 18, 5), heads=(3, 6, 12, 24), mlp_ratio=2.0, drop_path_rate=0.3)
_BASE = dict(dim=128, depths=(3, 4, 18, 5), heads=(4, 8, 16, 32), mlp_ratio=2.0, drop_path_rate=0.5)


def _dinat(spec: dict) -> NATConfig:
    return NATConfig(**spec, dilations=dinat_dilations(spec["depths"]))


def nat_mini(**overrides) -> NAT:
    """NAT-Mini: dim 64, depths 3-4-6-5, heads 2-4-8-16, kernel 7, mlp 3 (20 M, 2.7 G MACs)."""
    return NAT(NATConfig(**_MINI), **overrides)


def nat_tiny(**overrides) -> NAT:
    """NAT-Tiny: dim 64, depths 3-4-18-5, heads 2-4-8-16, mlp 3 (28 M)."""
    return NAT(NATConfig(**_TINY), **overrides)


def nat_small(**overrides) -> NAT:
    """NAT-Small: dim 96, depths 3-4-18-5, heads 3-6-12-24, mlp 2, layer scale 1e-5 (51 M)."""
    return NAT(NATConfig(**_SMALL, layer_scale=1e-5), **overrides)


def nat_base(**overrides) -> NAT:
    """NAT-Base: dim 128, depths 3-4-18-5, heads 4-8-16-32, mlp 2, layer scale 1e-5 (90 M)."""
    return NAT(NATConfig(**_BASE, layer_scale=1e-5), **overrides)


def dinat_mini(**overrides) -> NAT:
    """DiNAT-Mini: NAT-Mini with dilations 1-8-1 / 1-4-1-4 / 1-2-... / 1-1-... (20 M)."""
    return NAT(_dinat(_MINI), **overrides)


def dinat_tiny(**overrides) -> NAT:
    """DiNAT-Tiny: NAT-Tiny with DiNAT's dilations (28 M)."""
    return NAT(_dinat(_TINY), **overrides)


def dinat_small(**overrides) -> NAT:
    """DiNAT-Small: NAT-Small's widths with DiNAT's dilations, no layer scale (51 M)."""
    return NAT(_dinat(_SMALL), **overrides)


def dinat_base(**overrides) -> NAT:
    """DiNAT-Base: NAT-Base's widths with DiNAT's dilations, no layer scale (90 M)."""
    return NAT(_dinat(_BASE), **overrides)


for _variant in (nat_mini, nat_tiny, nat_small, nat_base, dinat_mini, dinat_tiny, dinat_small, dinat_base):
    _variant.config_class = NATConfig

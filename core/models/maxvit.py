"""MaxViT (Tu et al., "MaxViT: Multi-Axis Vision Transformer", ECCV 2022).

Every MaxViT layer is three residual steps: an MBConv (pre-norm BatchNorm, SE), block attention
(non-overlapping ``7 x 7`` windows, :class:`~glocal.core.attention.WindowAttention`) with its own
FFN, and grid attention (a strided ``7 x 7`` lattice spanning the whole grid,
:class:`~glocal.core.grid.GridAttention`) with its own FFN. Heads have 32 channels and a relative
position bias. Each stage opens with a stride-2 MBConv (masked average-pool + 1x1 projection
shortcut): it sits in the stage's downsampler slot (:class:`~glocal.core.mbconv.MBConvDownsample`),
so the stage needs no separate downsampler and dense heads still get the undo information.

The stem (two 3x3 convolutions, 3 -> 64 -> 64, the first strided, BatchNorm + GELU between) is the
image adapter ``ConvStem(dims=(64, 64), strides=(2, 1))``, and the head (pool -> LayerNorm ->
``Linear + Tanh`` pre-logits -> classifier) is ``ClsHead(pre_logits=512)`` after this backbone's
``out_norm``. With both, ``maxvit_t`` has timm's ``maxvit_tiny_tf_224`` parameter count
(30,916,528). Rank-generic like its parts (``rank=3`` for video).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from ..backbone import Backbone

__all__ = ["MaxViTConfig", "MaxViT", "maxvit_t", "maxvit_s", "maxvit_b"]


@dataclass
class MaxViTConfig:
    in_dim: int = 64  # width of the adapter's tokens (the stem)
    dims: tuple[int, ...] = (64, 128, 256, 512)
    depths: tuple[int, ...] = (2, 2, 5, 2)
    head_dim: int = 32
    window: int | tuple[int, ...] = 7  # block attention window
    grid: int | tuple[int, ...] = 7  # grid attention lattice
    mlp_ratio: float = 4.0
    expand: float = 4.0  # MBConv hidden width = expand * out width
    se_ratio: float = 0.25  # MBConv squeeze width = se_ratio * out width
    rank: int = 2
    stride: int | tuple[int, ...] = 2  # first MBConv of every stage
    act: str = "GELU"
    drop_path_rate: float = 0.2


class MaxViT(Backbone):
    config_class = MaxViTConfig

    def __init__(self, cfg: MaxViTConfig | None = None, **overrides):
        cfg = dataclasses.replace(cfg or MaxViTConfig(), **overrides)
        # stochastic depth per MaxViT layer (its MBConv, block and grid steps share the rate)
        rates = torch.linspace(0, cfg.drop_path_rate, sum(cfg.depths)).tolist()
        mbconv = dict(expand=cfg.expand, se_ratio=cfg.se_ratio, act=cfg.act, rank=cfg.rank)
        stages, start = [], 0
        for dim, depth in zip(cfg.dims, cfg.depths):
            heads = dim // cfg.head_dim
            ffn = dict(type="Mlp", ratio=cfg.mlp_ratio, act=cfg.act)
            blocks = []
            for j in range(depth):
                dp = rates[start + j]
                if j > 0:
                    blocks.append(dict(type="MBConv", drop_path=dp, **mbconv))
                blocks.append(dict(type="LocalGlobalBlock", drop_path=dp, ffn=ffn,
                                   local=dict(type="WindowAttention", heads=heads, window=cfg.window,
                                              rank=cfg.rank)))
                blocks.append(dict(type="LocalGlobalBlock", drop_path=dp, ffn=ffn,
                                   global_=dict(type="GridAttention", heads=heads, grid=cfg.grid,
                                                rank=cfg.rank)))
            down = dict(type="MBConvDownsample", stride=cfg.stride, drop_path=rates[start], **mbconv)
            stages.append(dict(dim=dim, depth=len(blocks), blocks=blocks, downsample=down))
            start += depth
        super().__init__(cfg.in_dim, stages, drop_path_rate=0.0, out_norm="LayerNorm")
        self.cfg = cfg


def maxvit_t(**overrides) -> MaxViT:
    """MaxViT-T: stem 64, dims 64-128-256-512, depths 2-2-5-2 (30.9 M with stem and head)."""
    return MaxViT(MaxViTConfig(), **overrides)


def maxvit_s(**overrides) -> MaxViT:
    """MaxViT-S: stem 64, dims 96-192-384-768, depths 2-2-5-2 (68.9 M with stem and head)."""
    return MaxViT(MaxViTConfig(dims=(96, 192, 384, 768), drop_path_rate=0.3), **overrides)


def maxvit_b(**overrides) -> MaxViT:
    """MaxViT-B: stem 64, dims 96-192-384-768, depths 2-6-14-2 (119.5 M with stem and head)."""
    return MaxViT(MaxViTConfig(dims=(96, 192, 384, 768), depths=(2, 6, 14, 2), drop_path_rate=0.4),
                  **overrides)


for _variant in (maxvit_t, maxvit_s, maxvit_b):
    _variant.config_class = MaxViTConfig

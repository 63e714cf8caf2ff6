"""Swin Transformer (Liu et al., ICCV 2021): window attention, alternately shifted by half a
window, with patch merging between stages. Rank-generic: ``rank=3`` with ``window=(8, 7, 7)`` and
``merge=(1, 2, 2)`` is Video Swin.

Built entirely from core parts: ``LocalGlobalBlock(local=WindowAttention, global_=None)``; the
shifted windows are what connects neighbouring windows. The patch-embedding stem belongs to the
modality adapter (``PatchStem(patch=4, norm=True)`` for images).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..backbone import Backbone

__all__ = ["SwinConfig", "SwinTransformer", "swin_t", "swin_s", "swin_b"]


@dataclass
class SwinConfig:
    dim: int = 96
    depths: tuple[int, ...] = (2, 2, 6, 2)
    heads: tuple[int, ...] = (3, 6, 12, 24)
    window: int | tuple[int, ...] = 7
    mlp_ratio: float = 4.0
    rank: int = 2
    merge: int | tuple[int, ...] = 2  # patch-merging factor per grid dim
    qkv_bias: bool = True
    drop_path_rate: float = 0.2
    in_dim: int | None = None  # width of the adapter's tokens (default: dim; must equal it)


class SwinTransformer(Backbone):
    config_class = SwinConfig

    def __init__(self, cfg: SwinConfig | None = None, **overrides):
        cfg = dataclasses.replace(cfg or SwinConfig(), **overrides)
        window = (cfg.window,) * cfg.rank if isinstance(cfg.window, int) else tuple(cfg.window)
        half = tuple(w // 2 for w in window)
        stages = []
        for i, (depth, heads) in enumerate(zip(cfg.depths, cfg.heads)):
            def block(shift):
                return dict(local=dict(type="WindowAttention", heads=heads, window=window, shift=shift,
                                       qkv_bias=cfg.qkv_bias),
                            ffn=dict(type="Mlp", ratio=cfg.mlp_ratio))
            stages.append(dict(dim=cfg.dim * 2 ** i, depth=depth, blocks=[block(0), block(half)]))
        super().__init__(cfg.in_dim or cfg.dim, stages, downsample=dict(type="PatchMerging", factors=cfg.merge, rank=cfg.rank),
                         drop_path_rate=cfg.drop_path_rate, out_norm="LayerNorm")
        self.cfg = cfg


def swin_t(**overrides) -> SwinTransformer:
    """Swin-T: dim 96, depths 2-2-6-2, heads 3-6-12-24, window 7."""
    return SwinTransformer(SwinConfig(), **overrides)


def swin_s(**overrides) -> SwinTransformer:
    """Swin-S: dim 96, depths 2-2-18-2."""
    return SwinTransformer(SwinConfig(depths=(2, 2, 18, 2), drop_path_rate=0.3), **overrides)


def swin_b(**overrides) -> SwinTransformer:
    """Swin-B: dim 128, depths 2-2-18-2, heads 4-8-16-32."""
    return SwinTransformer(SwinConfig(dim=128, depths=(2, 2, 18, 2), heads=(4, 8, 16, 32),
                                      drop_path_rate=0.5), **overrides)


for _variant in (swin_t, swin_s, swin_b):
    _variant.config_class = SwinConfig

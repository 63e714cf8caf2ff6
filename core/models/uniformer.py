"""UniFormer (Li et al., "UniFormer: Unified Transformer for Efficient Spatiotemporal Representation
Learning", ICLR 2022): convolution-like local relation aggregators in the two shallow stages,
global self-attention in the two deep ones.

Every block is ``LocalGlobalBlock(pos=DepthwiseConv(3), ...)``: the dynamic position embedding
(a 3x3(x3) depthwise convolution, added without norm), then

- stages 1-2, local MHRA: BatchNorm -> :class:`~glocal.core.conv.LocalAggregator` (pointwise ->
  depthwise 5x5(x5) -> pointwise), then BatchNorm -> ``Mlp`` (the reference's 1x1 convolutions);
- stages 3-4, global MHRA: LayerNorm (eps 1e-6) -> ``FullAttention`` over every token of the clip,
  then LayerNorm -> ``Mlp``.

Heads have 64 channels; stages are joined by a 2x2 patch embedding (``ConvDownsample``: a
non-overlapping convolution + LayerNorm; 1x2x2 in video, no temporal stride after the stem); a
BatchNorm closes the last stage. Rank-generic: ``rank=2`` is the image model (stem
``PatchStem(dim=64, patch=4)``), ``rank=3`` the video model (stem
``TubeletStem(dim=64, patch=(2, 4, 4), kernel=(3, 4, 4))``: a 3x4x4 convolution of stride 2x4x4).
Published sizes: UniFormer-S 22 M (image, 1000 classes; 21.4 M video at 400 classes), UniFormer-B
50 M.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..backbone import Backbone

__all__ = ["UniFormerConfig", "UniFormer", "uniformer_s", "uniformer_b", "video_uniformer_s", "video_uniformer_b"]


@dataclass
class UniFormerConfig:
    dims: tuple[int, ...] = (64, 128, 320, 512)
    depths: tuple[int, ...] = (3, 4, 8, 3)
    kinds: tuple[str, ...] = ("local", "local", "global", "global")  # per stage: local or global MHRA
    head_dim: int = 64
    mlp_ratio: float = 4.0
    rank: int = 2
    pos_kernel: int = 3  # the dynamic position embedding's depthwise kernel
    local_kernel: int = 5  # the local aggregator's depthwise kernel
    merge: int | tuple[int, ...] = 2  # the patch embedding between stages (1x2x2 for video)
    qkv_bias: bool = True
    drop_path_rate: float = 0.1
    in_dim: int | None = None  # width of the adapter's tokens (default: dims[0])


class UniFormer(Backbone):
    """UniFormer backbone: local MHRA in ``kinds == "local"`` stages, global in ``"global"`` ones."""

    config_class = UniFormerConfig

    def __init__(self, cfg: UniFormerConfig | None = None, **overrides):
        cfg = dataclasses.replace(cfg or UniFormerConfig(), **overrides)
        if not len(cfg.dims) == len(cfg.depths) == len(cfg.kinds):
            raise ValueError(f"UniFormer: dims {cfg.dims}, depths {cfg.depths} and kinds {cfg.kinds} differ in length")
        if any(k not in ("local", "global") for k in cfg.kinds):
            raise ValueError(f"UniFormer kinds must be 'local' or 'global'; got {cfg.kinds}")
        if any(d % cfg.head_dim for d in cfg.dims):
            raise ValueError(f"UniFormer: every width {cfg.dims} must be a multiple of head_dim {cfg.head_dim}")
        pos = dict(type="DepthwiseConv", kernel=cfg.pos_kernel, rank=cfg.rank)
        ffn = dict(type="Mlp", ratio=cfg.mlp_ratio)
        stages = []
        for dim, depth, kind in zip(cfg.dims, cfg.depths, cfg.kinds):
            if kind == "local":
                block = dict(pos=pos, local=dict(type="LocalAggregator", kernel=cfg.local_kernel, rank=cfg.rank),
                             ffn=ffn, norm="BatchNorm")
            else:
                block = dict(pos=pos, global_=dict(type="FullAttention", heads=dim // cfg.head_dim,
                                                   qkv_bias=cfg.qkv_bias),
                             ffn=ffn, norm=dict(type="LayerNorm", eps=1e-6))
            stages.append(dict(dim=dim, depth=depth, blocks=block))
        super().__init__(cfg.in_dim or cfg.dims[0], stages,
                         downsample=dict(type="ConvDownsample", factors=cfg.merge, rank=cfg.rank),
                         drop_path_rate=cfg.drop_path_rate, out_norm="BatchNorm")
        self.cfg = cfg


_S = dict(depths=(3, 4, 8, 3))
_B = dict(depths=(5, 8, 20, 7), drop_path_rate=0.3)
_VIDEO = dict(rank=3, merge=(1, 2, 2))


def uniformer_s(**overrides) -> UniFormer:
    """UniFormer-S (image): dims 64-128-320-512, depths 3-4-8-3, head dim 64, mlp 4; local MHRA
    in stages 1-2, global in 3-4 (22 M with ``PatchStem(dim=64, patch=4)`` and 1000 classes)."""
    return UniFormer(UniFormerConfig(**_S), **overrides)


def uniformer_b(**overrides) -> UniFormer:
    """UniFormer-B (image): dims 64-128-320-512, depths 5-8-20-7 (50 M)."""
    return UniFormer(UniFormerConfig(**_B), **overrides)


def video_uniformer_s(**overrides) -> UniFormer:
    """UniFormer-S (video): UniFormer-S with 3x3x3 position embeddings, 5x5x5 local aggregators and
    1x2x2 patch embeddings; with ``TubeletStem(dim=64, patch=(2, 4, 4), kernel=(3, 4, 4))`` and 400
    classes about 21.4 M parameters (Kinetics-400: 80.8% top-1 at 16x4 frames)."""
    return UniFormer(UniFormerConfig(**_S, **_VIDEO), **overrides)


def video_uniformer_b(**overrides) -> UniFormer:
    """UniFormer-B (video): depths 5-8-20-7, the video layout of :func:`video_uniformer_s`."""
    return UniFormer(UniFormerConfig(**_B, **_VIDEO), **overrides)


for _variant in (uniformer_s, uniformer_b, video_uniformer_s, video_uniformer_b):
    _variant.config_class = UniFormerConfig

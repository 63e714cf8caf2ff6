"""Swin Transformer (Liu et al., ICCV 2021): window attention, alternately shifted by half a
window, with patch merging between stages. Rank-generic: ``rank=3`` with ``window=(8, 7, 7)`` and
``merge=(1, 2, 2)`` is Video Swin (Liu et al., "Video Swin Transformer", CVPR 2022).

Built entirely from core parts: ``LocalGlobalBlock(local=WindowAttention, global_=None)``; the
shifted windows are what connects neighbouring windows. The patch-embedding stem belongs to the
modality adapter (``PatchStem(patch=4, norm=True)`` for images, ``TubeletStem(patch=(2, 4, 4))``
for video).

torchvision ships both architectures; :func:`load_torchvision_swin` copies the weights of its
``swin_t/s/b`` (2D) or ``swin3d_t/s/b`` (3D) into a stem + backbone + head of ours, whose outputs
are then the same (``tests/core/test_video_swin.py``). The video variants follow torchvision's
small-input conventions (``pad_keys="zeros"``, ``clip_bias="prefix"``, see
:class:`~glocal.core.attention.WindowAttention`), so they equal ``swin3d_*`` at any clip size.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from ..backbone import Backbone

__all__ = ["SwinConfig", "SwinTransformer", "swin_t", "swin_s", "swin_b", "video_swin_t", "video_swin_s",
           "video_swin_b", "load_torchvision_swin", "load_torchvision_swin3d"]


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
    pad_keys: str = "masked"  # window padding: "masked" (glocal) or "zeros" (the reference code's)
    clip_bias: str = "relative"  # bias of windows clipped to small grids: "relative" or "prefix"


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
                                       qkv_bias=cfg.qkv_bias, pad_keys=cfg.pad_keys, clip_bias=cfg.clip_bias),
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


# Video Swin: windows of 8 x 7 x 7 on the (T, H, W) tubelet grid, merging 2 x 2 in space only; stochastic
# depth 0.1 as torchvision's swin3d_* (the paper's Kinetics-400 recipe: 0.1 / 0.2 / 0.3 for T / S / B)
VIDEO = dict(rank=3, window=(8, 7, 7), merge=(1, 2, 2), drop_path_rate=0.1, pad_keys="zeros", clip_bias="prefix")


def video_swin_t(**overrides) -> SwinTransformer:
    """Video Swin-T: tubelets 2x4x4 (the stem's), dim 96, depths 2-2-6-2, heads 3-6-12-24,
    window 8x7x7, 2x2 spatial patch merging; with ``TubeletStem`` and a 400-class head it is
    torchvision's ``swin3d_t`` (28,158,070 parameters)."""
    return SwinTransformer(SwinConfig(**VIDEO), **overrides)


def video_swin_s(**overrides) -> SwinTransformer:
    """Video Swin-S: dim 96, depths 2-2-18-2, heads 3-6-12-24, window 8x7x7 (torchvision's
    ``swin3d_s``: 49,816,678 parameters with the stem and a 400-class head)."""
    return SwinTransformer(SwinConfig(depths=(2, 2, 18, 2), **VIDEO), **overrides)


def video_swin_b(**overrides) -> SwinTransformer:
    """Video Swin-B: dim 128, depths 2-2-18-2, heads 4-8-16-32, window 8x7x7 (torchvision's
    ``swin3d_b``: 88,048,984 parameters with the stem and a 400-class head)."""
    return SwinTransformer(SwinConfig(dim=128, depths=(2, 2, 18, 2), heads=(4, 8, 16, 32), **VIDEO), **overrides)


for _variant in (swin_t, swin_s, swin_b, video_swin_t, video_swin_s, video_swin_b):
    _variant.config_class = SwinConfig


# --- torchvision weights ---------------------------------------------------------------------------

def _parts(model_parts) -> tuple[nn.Module | None, SwinTransformer, nn.Module | None]:
    """``(stem, backbone, head)`` from a task model (``.adapter``, ``.backbone``, ``.head``) or a
    tuple (stem and head may be None: not loaded)."""
    if isinstance(model_parts, (tuple, list)):
        stem, backbone, head = model_parts
    else:
        stem, backbone, head = model_parts.adapter, model_parts.backbone, model_parts.head
    if not isinstance(backbone, SwinTransformer):
        raise TypeError(f"load_torchvision_swin: the backbone must be a SwinTransformer; got {type(backbone).__name__}")
    return stem, backbone, head


def _copy(dst: nn.Module, src: nn.Module, name: str) -> None:
    """Copy every parameter of ``src`` into ``dst`` (same names and shapes: Linear, LayerNorm, Conv)."""
    theirs = dict(src.named_parameters())
    ours = dict(dst.named_parameters())
    if ours.keys() != theirs.keys():
        raise ValueError(f"load_torchvision_swin: {name} has parameters {sorted(ours)}, torchvision's {sorted(theirs)}")
    for key, p in ours.items():
        if p.shape != theirs[key].shape:
            raise ValueError(f"load_torchvision_swin: {name}.{key} is {tuple(p.shape)} here but "
                             f"{tuple(theirs[key].shape)} in torchvision's model")
        p.copy_(theirs[key])


@torch.no_grad()
def load_torchvision_swin(model_parts, tv_model: nn.Module) -> None:
    """Copy a torchvision Swin's weights into ours: ``swin_t/s/b`` (2D; stem ``PatchStem(patch=4)``,
    backbone ``swin_*``) or ``swin3d_t/s/b`` (3D; stem ``TubeletStem(patch=(2, 4, 4))``, backbone
    ``video_swin_*``); the head a ``ClsHead`` (its ``fc``). ``model_parts``: a task model
    (``.adapter``, ``.backbone``, ``.head``) or a ``(stem, backbone, head)`` tuple, stem or head
    None to skip it. Architectures must match (a ValueError names the first mismatch).

    The 3D outputs are then equal at any clip size (the ``video_swin_*`` conventions are
    torchvision's). The 2D ones are equal where no window is clipped (224 pixels); on a grid side
    shorter than the window, torchvision's 2D model pads the window with zero keys where ours
    clips it (as the original Swin does)."""
    stem, backbone, head = _parts(model_parts)
    features = list(tv_model.features)
    if hasattr(tv_model, "patch_embed"):  # 3D: PatchEmbed3d(proj, norm); features = stages and mergings
        tv_conv, tv_norm = tv_model.patch_embed.proj, tv_model.patch_embed.norm
    else:  # 2D: features[0] = Sequential(Conv2d, Permute, LayerNorm), then stages and mergings
        tv_conv, tv_norm = features[0][0], features[0][2]
        features = features[1:]
    stages, mergings = features[0::2], features[1::2]
    if len(stages) != len(backbone.stages):
        raise ValueError(f"load_torchvision_swin: torchvision's model has {len(stages)} stages, ours {len(backbone.stages)}")
    for i, (ours, theirs) in enumerate(zip(backbone.stages, stages)):  # the layout first
        if len(ours.blocks) != len(theirs):
            raise ValueError(f"load_torchvision_swin: stage {i} has {len(ours.blocks)} blocks here, {len(theirs)} in "
                             f"torchvision's model")
    if stem is not None:
        _copy(stem.proj, tv_conv, "stem.proj")
        _copy(stem.norm.norm, tv_norm, "stem.norm")
    for i, (ours, theirs) in enumerate(zip(backbone.stages, stages)):
        for j, (blk, tv_blk) in enumerate(zip(ours.blocks, theirs)):
            attn_step, ffn_step = blk.steps
            name = f"stages.{i}.blocks.{j}"
            _copy(attn_step.norm.norm, tv_blk.norm1, f"{name} norm1")
            attn = blk.local
            _copy(attn.qkv, tv_blk.attn.qkv, f"{name} qkv")
            _copy(attn.proj, tv_blk.attn.proj, f"{name} proj")
            table = tv_blk.attn.relative_position_bias_table  # [prod(2w - 1), heads], our layout
            if attn.rel_pos_table.shape != table.shape:
                raise ValueError(f"load_torchvision_swin: {name} bias table is {tuple(attn.rel_pos_table.shape)} here, "
                                 f"{tuple(table.shape)} in torchvision's model (window {attn.window})")
            attn.rel_pos_table.copy_(table)
            _copy(ffn_step.norm.norm, tv_blk.norm2, f"{name} norm2")
            _copy(blk.ffn.fc1, tv_blk.mlp[0], f"{name} mlp.fc1")
            _copy(blk.ffn.fc2, tv_blk.mlp[3], f"{name} mlp.fc2")
    for i, (ours, theirs) in enumerate(zip(backbone.downsamplers[1:], mergings)):
        _copy(ours.norm.norm, theirs.norm, f"downsamplers.{i + 1}.norm")
        _copy(ours.reduction, theirs.reduction, f"downsamplers.{i + 1}.reduction")
    _copy(backbone.out_norm.norm, tv_model.norm, "out_norm")
    if head is not None:
        _copy(head.fc, tv_model.head, "head.fc")


load_torchvision_swin3d = load_torchvision_swin

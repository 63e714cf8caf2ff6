"""State-space vision backbones built from the core's Mamba mixer.

- Vision Mamba (Vim; Zhu et al., "Vision Mamba: Efficient Visual Representation Learning with
  Bidirectional State Space Model", ICML 2024): an isotropic stack of pre-norm (RMSNorm) blocks
  whose only mixer is a bidirectional Mamba over the patch sequence (forward + backward scans
  with their own conv / x_proj / dt_proj / A / D, outputs averaged: Vim's "bimamba v2, div2").
  No FFN. Vim-Ti: patch 16, dim 192, depth 24, about 7 M parameters.
- VMamba (Liu et al., "VMamba: Visual State Space Model", NeurIPS 2024), the first ("v0")
  release: four stages of VSS blocks, each a pre-norm residual SS2D (depthwise 3x3 conv, the
  four-way 2D cross-scan, LayerNorm, gate), no FFN, patch merging between stages. VMamba-T:
  dims 96-192-384-768, depths 2-2-9-2, d_state 16, ssm_ratio 2, about 22 M parameters.

As with every family here, the patch stem belongs to the modality adapter
(``PatchStem(patch=16, norm=None)`` for Vim, ``PatchStem(patch=4, norm="LayerNorm")`` for
VMamba) and the classifier to the head (``ClsHead``, mean over tokens). Vim's class token and
absolute position embedding are not part of this backbone: the mean-pooled head replaces the
class token (Vim's "final_pool_mean").
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..backbone import Backbone

__all__ = ["VimConfig", "VisionMamba", "vim_ti", "vim_s", "VMambaConfig", "VMamba", "vmamba_t", "vmamba_s"]


@dataclass
class VimConfig:
    dim: int = 192
    depth: int = 24
    d_state: int = 16
    d_conv: int = 4
    expand: float = 2
    direction: str = "bidirectional"  # "order_bidirectional" scans Tokens.order instead
    merge: str = "mean"  # Vim's if_divide_out
    norm: str = "RMSNorm"
    drop_path_rate: float = 0.1
    chunk: int | None = None
    in_dim: int | None = None  # width of the adapter's tokens (default: dim; must equal it)


class VisionMamba(Backbone):
    """Vim: ``depth`` pre-norm residual blocks of bidirectional Mamba, no FFN, final RMSNorm."""

    config_class = VimConfig

    def __init__(self, cfg: VimConfig | None = None, **overrides):
        cfg = dataclasses.replace(cfg or VimConfig(), **overrides)
        block = dict(global_=dict(type="Mamba", d_state=cfg.d_state, d_conv=cfg.d_conv, expand=cfg.expand,
                                  direction=cfg.direction, merge=cfg.merge, chunk=cfg.chunk),
                     ffn=None, norm=cfg.norm)
        super().__init__(cfg.in_dim or cfg.dim, [dict(dim=cfg.dim, depth=cfg.depth, blocks=block)],
                         drop_path_rate=cfg.drop_path_rate, out_norm=cfg.norm)
        self.cfg = cfg


def vim_ti(**overrides) -> VisionMamba:
    """Vim-Ti: dim 192, depth 24 (about 7 M parameters with a patch-16 stem and a 1000-way head)."""
    return VisionMamba(VimConfig(), **overrides)


def vim_s(**overrides) -> VisionMamba:
    """Vim-S: dim 384, depth 24, drop path 0.05 (about 26 M)."""
    return VisionMamba(VimConfig(dim=384, drop_path_rate=0.05), **overrides)


@dataclass
class VMambaConfig:
    dim: int = 96
    depths: tuple[int, ...] = (2, 2, 9, 2)
    d_state: int = 16
    d_conv: int = 3
    ssm_ratio: float = 2.0
    mlp_ratio: float = 0.0  # v0: no FFN (later VMamba versions add one with ratio 4)
    rank: int = 2
    drop_path_rate: float = 0.2
    chunk: int | None = None
    in_dim: int | None = None  # width of the adapter's tokens (default: dim; must equal it)


class VMamba(Backbone):
    """VMamba (v0): stages of SS2D blocks (dims ``dim * 2^i``) joined by patch merging."""

    config_class = VMambaConfig

    def __init__(self, cfg: VMambaConfig | None = None, **overrides):
        cfg = dataclasses.replace(cfg or VMambaConfig(), **overrides)
        block = dict(global_=dict(type="SS2D", d_state=cfg.d_state, d_conv=cfg.d_conv, expand=cfg.ssm_ratio,
                                  rank=cfg.rank, chunk=cfg.chunk),
                     ffn=dict(type="Mlp", ratio=cfg.mlp_ratio) if cfg.mlp_ratio else None,
                     norm="LayerNorm")
        stages = [dict(dim=cfg.dim * 2 ** i, depth=depth, blocks=block) for i, depth in enumerate(cfg.depths)]
        super().__init__(cfg.in_dim or cfg.dim, stages, downsample=dict(type="PatchMerging", factors=2, rank=cfg.rank),
                         drop_path_rate=cfg.drop_path_rate, out_norm="LayerNorm")
        self.cfg = cfg


def vmamba_t(**overrides) -> VMamba:
    """VMamba-T (v0): dims 96-192-384-768, depths 2-2-9-2 (about 22 M parameters with stem and head)."""
    return VMamba(VMambaConfig(), **overrides)


def vmamba_s(**overrides) -> VMamba:
    """VMamba-S (v0): depths 2-2-27-2, drop path 0.3 (about 44 M)."""
    return VMamba(VMambaConfig(depths=(2, 2, 27, 2), drop_path_rate=0.3), **overrides)


for _variant in (vim_ti, vim_s):
    _variant.config_class = VimConfig
for _variant in (vmamba_t, vmamba_s):
    _variant.config_class = VMambaConfig

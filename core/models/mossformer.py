"""A MossFormer-like speech encoder (after Zhao & Ma, "MossFormer: Pushing the Performance Limit of
Monaural Speech Separation using Gated Single-Head Transformer with Convolution-Augmented Joint
Self-Attentions", ICASSP 2023), built from the core's parts.

MossFormer attends at two ranges at once: full self-attention inside non-overlapping chunks of
the sequence (local, exact) and linearised self-attention over the whole sequence (global, O(L)),
the two computed jointly and summed, with convolutions for position-wise local patterns. Here each
layer is two pre-norm ``LocalGlobalBlock``::

    x + ConvModule(x)                                                  (the convolution module)
    x + [ChunkAttention(x) + LinearAttention(x)]  ->  x + FFN(x)       (joint attention, then FFN)

``ChunkAttention`` is ``WindowAttention`` on the 1D time grid with ``window=chunk`` (its masked,
non-overlapping windows are MossFormer's chunks; a learned relative position bias inside each
chunk), ``LinearAttention`` the Katharopoulos et al. kernel attention (``elu + 1``) over every
valid frame, and the two are composed in parallel (one residual step). Padded frames are never
keys of either attention and are zeroed before the convolutions.

Differences from the separation model: multi-head attention instead of MossFormer's gated single
head with shared query/key projections, no gating unit, the Conformer convolution module in
place of its convolution-augmented projections; it is an encoder over the audio adapter's tokens
(``SubsampleStem``), for CTC, not a masking network over a learned waveform encoder.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..backbone import Backbone

__all__ = ["MossFormerConfig", "MossFormer", "mossformer_s", "mossformer_m"]


@dataclass
class MossFormerConfig:
    dim: int = 144
    in_dim: int | None = None  # width of the adapter's tokens (default: dim; must equal it)
    depth: int = 19  # MossFormer layers (each two blocks: convolution; joint attention + FFN)
    heads: int = 4
    chunk: int = 32  # frames per local attention chunk (1.28 s at 40 ms per frame)
    rel_pos: bool = True  # relative position bias inside a chunk
    feature_map: str = "elu"  # of the global linear attention ("elu" or "favor")
    kernel: int = 31  # depthwise kernel of the convolution module
    ffn_ratio: float = 4.0
    rank: int = 1
    dropout: float = 0.1
    drop_path_rate: float = 0.0


class MossFormer(Backbone):
    """``depth`` layers of (convolution module; chunk attention + linear attention in parallel, FFN)
    and a final LayerNorm."""

    config_class = MossFormerConfig

    def __init__(self, cfg: MossFormerConfig | None = None, **overrides):
        cfg = dataclasses.replace(cfg or MossFormerConfig(), **overrides)
        conv = dict(local=dict(type="ConvModule", kernel=cfg.kernel, rank=cfg.rank, drop=cfg.dropout), ffn=None)
        joint = dict(local=dict(type="WindowAttention", heads=cfg.heads, window=cfg.chunk, rank=cfg.rank,
                                rel_pos=cfg.rel_pos, attn_drop=cfg.dropout, proj_drop=cfg.dropout),
                     global_=dict(type="LinearAttention", heads=cfg.heads, feature_map=cfg.feature_map,
                                  proj_drop=cfg.dropout),
                     composition="parallel",
                     ffn=dict(type="Mlp", ratio=cfg.ffn_ratio, act="SiLU", drop=cfg.dropout))
        super().__init__(cfg.in_dim or cfg.dim, [dict(dim=cfg.dim, depth=2 * cfg.depth, blocks=[conv, joint])],
                         drop_path_rate=cfg.drop_path_rate, out_norm="LayerNorm")
        self.cfg = cfg


def mossformer_s(**overrides) -> MossFormer:
    """MossFormer-S (ours): dim 144, 19 layers, 4 heads, chunks of 32 frames, ConvModule k31, FFN
    576: 7,643,988 parameters, within 2% of Conformer-S's encoder (7,771,392)."""
    return MossFormer(MossFormerConfig(dim=144, depth=19), **overrides)


def mossformer_m(**overrides) -> MossFormer:
    """MossFormer-M (ours): dim 256, 19 layers, 4 heads (23,936,180 parameters, near Conformer-M's 24.4 M)."""
    return MossFormer(MossFormerConfig(dim=256, depth=19), **overrides)


for _variant in (mossformer_s, mossformer_m):
    _variant.config_class = MossFormerConfig

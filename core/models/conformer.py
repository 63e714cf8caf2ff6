"""Conformer encoder (Gulati et al., "Conformer: Convolution-augmented Transformer for Speech
Recognition", Interspeech 2020), laid out as torchaudio's ``Conformer`` so weights and parameter
counts match it.

A layer is a macaron sandwich of residual steps on the token sequence::

    x + FFN(x) / 2  ->  x + MHSA(x)  ->  x + ConvModule(x)  ->  x + FFN(x) / 2  ->  LayerNorm

every step pre-normed (LayerNorm), the FFN with SiLU. Self-attention is the global mixer (full
attention over valid frames), the convolution module the local encoder. The backbone is the stack
of layers on the adapter's tokens; the subsampling stem (strided convs on filterbanks) belongs to
the audio adapter. Rank-generic (``rank=1`` for speech) like its parts.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from torch import nn

from ..attention import FullAttention
from ..backbone import Backbone
from ..block import LayerNorm, Mlp, Residual, apply_norm
from ..conv import ConvModule
from ..tokens import Tokens

__all__ = ["ConformerBlock", "ConformerConfig", "Conformer", "conformer_s", "conformer_m", "conformer_l"]


class ConformerBlock(nn.Module):
    """One Conformer layer: FFN/2, self-attention, convolution module, FFN/2, LayerNorm.

    Args:
        dim: channels; heads: attention heads.
        ffn_ratio: FFN hidden width / dim (4 in the paper).
        kernel: depthwise kernel of the convolution module; rank: grid rank.
        dropout: dropout in the FFNs, on the attention weights and after each mixer.
        drop_path: stochastic depth of every residual step.
    """

    def __init__(self, dim: int, heads: int = 4, ffn_ratio: float = 4.0, kernel=31, rank: int = 1,
                 dropout: float = 0.1, drop_path: float = 0.0, conv_norm="BatchNorm"):
        super().__init__()

        def ffn():
            return Mlp(dim, ratio=ffn_ratio, act="SiLU", drop=dropout)

        step = dict(drop_path=drop_path)
        self.steps = nn.ModuleList([
            Residual(dim, ffn(), scale=0.5, **step),  # macaron half-step
            Residual(dim, FullAttention(dim, heads, attn_drop=dropout, proj_drop=dropout), **step),
            Residual(dim, ConvModule(dim, kernel=kernel, rank=rank, norm=conv_norm, drop=dropout), **step),
            Residual(dim, ffn(), scale=0.5, **step),
        ])
        self.norm = LayerNorm(dim)

    def forward(self, tokens: Tokens) -> Tokens:
        x = tokens.x  # [B, L, C]
        for step in self.steps:
            x = step(x, tokens)
        return tokens.replace(x=apply_norm(self.norm, x, tokens))


@dataclass
class ConformerConfig:
    dim: int = 144
    in_dim: int | None = None  # width of the adapter's tokens (default: dim)
    depth: int = 16
    heads: int = 4
    ffn_ratio: float = 4.0
    kernel: int = 31
    rank: int = 1
    dropout: float = 0.1
    drop_path_rate: float = 0.0


class Conformer(Backbone):
    """The Conformer encoder: ``depth`` :class:`ConformerBlock` at constant width (each ends in its
    own LayerNorm, so the backbone adds none)."""

    config_class = ConformerConfig

    def __init__(self, cfg: ConformerConfig | None = None, **overrides):
        cfg = dataclasses.replace(cfg or ConformerConfig(), **overrides)
        block = dict(type="ConformerBlock", heads=cfg.heads, ffn_ratio=cfg.ffn_ratio, kernel=cfg.kernel,
                     rank=cfg.rank, dropout=cfg.dropout)
        super().__init__(cfg.in_dim or cfg.dim, [dict(dim=cfg.dim, depth=cfg.depth, blocks=block)],
                         drop_path_rate=cfg.drop_path_rate, out_norm=None)
        self.cfg = cfg


def conformer_s(**overrides) -> Conformer:
    """Conformer-S encoder: 16 layers, dim 144, 4 heads, FFN 576, kernel 31 (7,771,392 parameters,
    as torchaudio's ``Conformer`` of that size; the paper's 10.3 M includes its LSTM decoder)."""
    return Conformer(ConformerConfig(dim=144, depth=16, heads=4), **overrides)


def conformer_m(**overrides) -> Conformer:
    """Conformer-M encoder: 16 layers, dim 256, 4 heads, FFN 1024, kernel 31 (24,367,104 parameters;
    30.7 M with the paper's decoder)."""
    return Conformer(ConformerConfig(dim=256, depth=16, heads=4), **overrides)


def conformer_l(**overrides) -> Conformer:
    """Conformer-L encoder: 17 layers, dim 512, 8 heads, FFN 2048, kernel 31 (118.8 M with the
    paper's decoder)."""
    return Conformer(ConformerConfig(dim=512, depth=17, heads=8), **overrides)


for _variant in (conformer_s, conformer_m, conformer_l):
    _variant.config_class = ConformerConfig

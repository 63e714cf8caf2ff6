"""Squeezeformer encoder (Kim et al., "Squeezeformer: An Efficient Transformer for Automatic Speech
Recognition", NeurIPS 2022).

Two changes to Conformer:

- **Macro: the Temporal U-Net.** After the first half of the layers, a depthwise-separable strided
  convolution (depthwise kernel 5, stride 2, then pointwise; :class:`TimeReduction`) halves the
  frame rate (40 ms -> 80 ms), so the middle layers attend over half as many frames; before the
  last layer the features are upsampled back (every frame repeated), projected by a ``Linear`` and
  added to the tokens saved before the reduction (:class:`TemporalUNet`). Masks follow: a coarse
  frame is valid when either of its two fine frames is, and the fine mask comes back with the skip.
- **Micro: the block.** ``MHA -> FFN -> Conv -> FFN`` (the "MF/CF" structure, no macaron half
  steps), each step post-LN, ``x = LayerNorm(x + f(x * s + b))``: the pre-LN of Conformer becomes
  a learnable per-channel scale ``s`` and bias ``b`` on the step's input (:class:`ScaledPostNorm`).
  The convolution module uses Swish in place of its GLU (``ConvModule(glu=False)``: the depthwise
  conv runs on ``2C`` channels); an input LayerNorm normalises the stem's output.

The paper's third change, a depthwise-separable second convolution in the subsampling stem, is
the audio adapter's: ``SubsampleStem(separable=True)``.

Parameters. ``squeezeformer_xs`` here has 8,238,240 parameters (its 16 blocks 8,195,328, the
reduction 21,744, the recovery 20,880, the input LayerNorm 288). The paper's 9.0 M is the whole CTC
model: add the separable stem at 80 bins (417,888), the 128-way CTC head (18,705 with the blank) and
the relative positional self-attention of Conformer/Transformer-XL (a ``Linear`` for the position
embeddings and the two biases ``u``, ``v``: 21,024 per layer, 336,384 in all), which this encoder
replaces by plain masked attention, as our Conformer does: 9,011,217. The same sum gives 18.53 M,
28.12 M and 55.52 M for S, SM and M (the paper: 18.6, 28.2 and 55.6 M).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..attention import FullAttention
from ..backbone import Backbone
from ..block import DropPath, Mlp, apply_norm, build_norm
from ..conv import ConvModule
from ..downsample import coarse_tokens
from ..errors import ConfigError, InputError
from ..gridops import pad_grid
from ..registry import BLOCKS
from ..tokens import Tokens
from ..undo import GridUndo

__all__ = ["ScaledPostNorm", "SqueezeformerBlock", "TimeReduction", "TemporalUNet", "SqueezeformerConfig",
           "Squeezeformer", "squeezeformer_xs", "squeezeformer_s", "squeezeformer_sm", "squeezeformer_m"]


class ScaledPostNorm(nn.Module):
    """One post-LN residual step with a scaled pre-activation:
    ``norm(x + drop_path(f(x * scale + bias, tokens)))``, ``scale`` and ``bias`` per channel
    (initialised to 1 and 0)."""

    def __init__(self, dim: int, fn: nn.Module, norm="LayerNorm", drop_path: float = 0.0):
        super().__init__()
        self.fn = fn
        self.scale = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.norm = build_norm(norm, dim)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: Tensor, tokens: Tokens) -> Tensor:  # [B, L, C]
        h = self.fn(torch.addcmul(self.bias, x, self.scale), tokens)
        return apply_norm(self.norm, x + self.drop_path(h), tokens)


class SqueezeformerBlock(nn.Module):
    """One Squeezeformer layer: self-attention, FFN, convolution module, FFN; every step
    :class:`ScaledPostNorm`.

    Args:
        dim: channels; heads: attention heads.
        ffn_ratio: FFN hidden width / dim (4).
        kernel: depthwise kernel of the convolution module; rank: grid rank.
        dropout: in the FFNs, on the attention weights and after each mixer.
        drop_path: stochastic depth of every step.
    """

    def __init__(self, dim: int, heads: int = 4, ffn_ratio: float = 4.0, kernel=31, rank: int = 1,
                 dropout: float = 0.1, drop_path: float = 0.0, conv_norm="BatchNorm"):
        super().__init__()

        def ffn():
            return Mlp(dim, ratio=ffn_ratio, act="SiLU", drop=dropout)

        step = dict(drop_path=drop_path)
        self.steps = nn.ModuleList([
            ScaledPostNorm(dim, FullAttention(dim, heads, attn_drop=dropout, proj_drop=dropout), **step),
            ScaledPostNorm(dim, ffn(), **step),
            ScaledPostNorm(dim, ConvModule(dim, kernel=kernel, rank=rank, norm=conv_norm, drop=dropout,
                                           glu=False), **step),
            ScaledPostNorm(dim, ffn(), **step),
        ])

    def forward(self, tokens: Tokens) -> Tokens:
        x = tokens.x  # [B, L, C]
        for step in self.steps:
            x = step(x, tokens)
        return tokens.replace(x=x)


class TimeReduction(nn.Module):
    """Squeezeformer's time reduction: a depthwise convolution of stride ``factors`` (kernel 5,
    centred: coarse frame ``i`` reads fine frames ``2i - 2 ... 2i + 2``) and a pointwise
    projection to ``out_dim``. ``Tokens -> (Tokens, GridUndo)`` like every downsampler: padded
    tokens are zeroed first, the grid is padded to a multiple of the factors, and a coarse token is
    valid when any of its fine tokens is (``ceil(n / 2)`` frames from ``n``). Rank-generic."""

    def __init__(self, dim: int, out_dim: int | None = None, factors=2, rank: int = 1, kernel=5):
        super().__init__()
        self.factors = (factors,) * rank if isinstance(factors, int) else tuple(factors)
        self.kernel = (kernel,) * len(self.factors) if isinstance(kernel, int) else tuple(kernel)
        if any(k % 2 == 0 for k in self.kernel) or len(self.kernel) != len(self.factors):
            raise ConfigError(f"TimeReduction needs one odd kernel per grid dim; got kernel {self.kernel} "
                              f"for factors {self.factors}")
        conv = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[len(self.factors) - 1]
        self.dw = conv(dim, dim, self.kernel, stride=self.factors, padding=tuple(k // 2 for k in self.kernel),
                       groups=dim)
        self.pw = nn.Linear(dim, out_dim or dim)

    def forward(self, tokens: Tokens) -> tuple[Tokens, GridUndo]:
        grid = tokens.require("grid", "TimeReduction")
        if len(grid) != len(self.factors):
            raise InputError(f"TimeReduction factors {self.factors} do not match the grid {grid}")
        B, L, C = tokens.x.shape
        x, _ = pad_grid(tokens.zero_padding(tokens.x).view(B, *grid, C), grid, self.factors)
        x = self.dw(x.movedim(-1, 1))  # [B, C, *coarse]
        coarse = tuple(x.shape[2:])
        x = self.pw(x.flatten(2).transpose(1, 2))  # [B, L', out]
        return coarse_tokens(tokens, x, coarse, self.factors)


class TemporalUNet(nn.Module):
    """Squeezeformer's Temporal U-Net over a stack of ``depth`` blocks (any block config):

    - an input norm, then blocks ``0 .. reduce_at - 1`` at the input rate;
    - :class:`TimeReduction` (the tokens before it are kept), blocks ``reduce_at .. recover_at - 1``
      at the reduced rate;
    - upsampling by repetition (the reduction's undo), a ``Linear``, plus the kept tokens (their
      mask and grid too), then blocks ``recover_at .. depth - 1`` at the input rate.

    ``Tokens -> Tokens`` on the input's grid and mask, like a block. Defaults are the paper's:
    reduce before block ``depth // 2 - 1``, recover before the last block.

    Args:
        dim: channels.
        block: the config of every block (``BLOCKS``; ``dim`` and ``drop_path`` filled in).
        depth: number of blocks.
        reduce_at, recover_at: block indices, ``0 < reduce_at < recover_at <= depth``.
        factor, kernel, rank: the reduction's stride, depthwise kernel and the grid rank.
        in_norm: norm on the input (the stem's output; None for none).
        drop_path: stochastic depth of the last block, rising linearly from 0 over the blocks.
    """

    def __init__(self, dim: int, block, depth: int, reduce_at: int | None = None, recover_at: int | None = None,
                 factor: int = 2, kernel: int = 5, rank: int = 1, in_norm="LayerNorm", drop_path: float = 0.0):
        super().__init__()
        reduce_at = depth // 2 - 1 if reduce_at is None else reduce_at
        recover_at = depth - 1 if recover_at is None else recover_at
        if not 0 < reduce_at < recover_at <= depth:
            raise ConfigError(f"TemporalUNet needs 0 < reduce_at < recover_at <= depth; got reduce_at={reduce_at}, "
                              f"recover_at={recover_at}, depth={depth}")
        self.reduce_at, self.recover_at = reduce_at, recover_at
        self.in_norm = build_norm(in_norm, dim)
        rates = torch.linspace(0, drop_path, depth).tolist()
        self.blocks = nn.ModuleList(BLOCKS.build(dict(dict(block), drop_path=dp), dim=dim) for dp in rates)
        factors = (factor,) + (1,) * (rank - 1)  # time is the grid's first axis
        self.reduce = TimeReduction(dim, dim, factors=factors, rank=rank, kernel=(kernel,) + (1,) * (rank - 1))
        self.recover = nn.Linear(dim, dim)

    def extra_repr(self):
        return f"reduce_at={self.reduce_at}, recover_at={self.recover_at}"

    def _recover(self, coarse: Tokens, undo: GridUndo) -> Tokens:
        fine = undo.fine  # the tokens kept before the reduction
        return fine.replace(x=fine.x + self.recover(undo.up(coarse.x)))  # repeat, Linear, add the skip

    def forward(self, tokens: Tokens) -> Tokens:
        tokens = tokens.replace(x=apply_norm(self.in_norm, tokens.x, tokens))
        undo = None
        for i, block in enumerate(self.blocks):
            if i == self.reduce_at:
                tokens, undo = self.reduce(tokens)  # [B, ceil(L / 2), C]
            elif i == self.recover_at:
                tokens = self._recover(tokens, undo)  # [B, L, C]
            tokens = block(tokens)
        if self.recover_at == len(self.blocks):
            tokens = self._recover(tokens, undo)
        return tokens


@dataclass
class SqueezeformerConfig:
    dim: int = 144
    in_dim: int | None = None  # width of the adapter's tokens (default: dim; must equal it)
    depth: int = 16
    heads: int = 4
    ffn_ratio: float = 4.0
    kernel: int = 31  # depthwise kernel of the convolution module
    reduce_at: int | None = None  # default depth // 2 - 1
    recover_at: int | None = None  # default depth - 1
    reduce_kernel: int = 5
    rank: int = 1
    dropout: float = 0.1
    drop_path_rate: float = 0.0


class Squeezeformer(Backbone):
    """The Squeezeformer encoder: one stage holding the :class:`TemporalUNet` of ``depth``
    :class:`SqueezeformerBlock` (its output is at the input's rate; each block ends in its own
    LayerNorm, so the backbone adds none)."""

    config_class = SqueezeformerConfig

    def __init__(self, cfg: SqueezeformerConfig | None = None, **overrides):
        cfg = dataclasses.replace(cfg or SqueezeformerConfig(), **overrides)
        block = dict(type="SqueezeformerBlock", heads=cfg.heads, ffn_ratio=cfg.ffn_ratio, kernel=cfg.kernel,
                     rank=cfg.rank, dropout=cfg.dropout)
        unet = dict(type="TemporalUNet", block=block, depth=cfg.depth, reduce_at=cfg.reduce_at,
                    recover_at=cfg.recover_at, kernel=cfg.reduce_kernel, rank=cfg.rank,
                    drop_path=cfg.drop_path_rate)
        super().__init__(cfg.in_dim or cfg.dim, [dict(dim=cfg.dim, depth=1, blocks=unet)], out_norm=None)
        self.cfg = cfg

    @property
    def unet(self) -> TemporalUNet:
        return self.stages[0].blocks[0]


def squeezeformer_xs(**overrides) -> Squeezeformer:
    """Squeezeformer-XS: dim 144, 16 layers, 4 heads, reduction before layer 7 (8.24 M parameters
    here; 9.0 M in the paper with stem, CTC head and relative positional attention, see the module
    docstring)."""
    return Squeezeformer(SqueezeformerConfig(dim=144, depth=16, heads=4), **overrides)


def squeezeformer_s(**overrides) -> Squeezeformer:
    """Squeezeformer-S: dim 196, 18 layers, 4 heads, reduction before layer 8 (17.03 M parameters
    here; 18.6 M in the paper with stem, CTC head and relative positional attention)."""
    return Squeezeformer(SqueezeformerConfig(dim=196, depth=18, heads=4), **overrides)


def squeezeformer_sm(**overrides) -> Squeezeformer:
    """Squeezeformer-SM: dim 256, 16 layers, 4 heads (25.71 M here; 28.2 M in the paper)."""
    return Squeezeformer(SqueezeformerConfig(dim=256, depth=16, heads=4), **overrides)


def squeezeformer_m(**overrides) -> Squeezeformer:
    """Squeezeformer-M: dim 324, 20 layers, 4 heads (51.26 M here; 55.6 M in the paper)."""
    return Squeezeformer(SqueezeformerConfig(dim=324, depth=20, heads=4), **overrides)


for _variant in (squeezeformer_xs, squeezeformer_s, squeezeformer_sm, squeezeformer_m):
    _variant.config_class = SqueezeformerConfig

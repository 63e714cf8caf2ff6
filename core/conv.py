"""Convolution over a grid of any rank: the depthwise convolution (the local encoder of ConvNeXt,
UniFormer's position encoding), UniFormer's local aggregator and Conformer's convolution module
built around it.

All read ``Tokens.grid`` (required) and ``Tokens.mask``: padded tokens are zeroed before the
convolution, so they never leak into their valid neighbours.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .block import apply_norm, build_norm
from .dropout import Dropout
from .errors import InputError
from .tokens import Tokens

__all__ = ["DepthwiseConv", "LocalAggregator", "ConvModule"]


class DepthwiseConv(nn.Module):
    """A depthwise convolution with 'same' padding (odd ``kernel``) over the token grid.

    Args:
        kernel: kernel side (int, repeated over ``rank`` dims) or one per dim.
        rank: grid rank when ``kernel`` is an int (1 for sequences, 2 images, 3 video).
        dilation: dilation per dim (int repeated).
    """

    def __init__(self, dim: int, kernel=7, rank: int = 2, dilation=1, bias: bool = True):
        super().__init__()
        self.kernel = (kernel,) * rank if isinstance(kernel, int) else tuple(kernel)
        self.rank = len(self.kernel)
        if self.rank not in (1, 2, 3):
            raise ValueError(f"DepthwiseConv supports rank 1, 2 or 3; got kernel {self.kernel}")
        self.dilation = (dilation,) * self.rank if isinstance(dilation, int) else tuple(dilation)
        conv = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[self.rank - 1]
        padding = tuple(d * (k - 1) // 2 for k, d in zip(self.kernel, self.dilation))
        if any(k % 2 == 0 for k in self.kernel):
            raise ValueError(f"DepthwiseConv needs odd kernels for 'same' padding; got {self.kernel}")
        self.conv = conv(dim, dim, self.kernel, padding=padding, dilation=self.dilation, groups=dim,
                         bias=bias)

    def forward(self, x: Tensor, tokens: Tokens) -> Tensor:
        grid = tokens.require("grid", "DepthwiseConv")
        if len(grid) != self.rank:
            raise InputError(f"DepthwiseConv was built for rank-{self.rank} grids (kernel "
                             f"{self.kernel}) but the tokens have grid {grid}")
        B, L, C = x.shape
        x = tokens.zero_padding(x)
        # [B, L, C] -> [B, C, *grid] -> conv -> [B, L, C]
        y = self.conv(x.transpose(1, 2).reshape(B, C, *grid))
        return y.reshape(B, C, L).transpose(1, 2)


class LocalAggregator(nn.Module):
    """UniFormer's local multi-head relation aggregator (Li et al., "UniFormer: Unified Transformer
    for Efficient Spatiotemporal Representation Learning", ICLR 2022): a pointwise projection, a
    depthwise convolution over the grid (the learned local token affinity: a ``5 x 5 x 5``
    neighbourhood in video, ``5 x 5`` in images) and a pointwise projection, all with biases. The
    norm in front (BatchNorm in UniFormer) is the residual step's.

    Reads ``Tokens.grid`` (required) and ``Tokens.mask`` (the depthwise convolution zeroes padded
    tokens first, so they never reach valid ones).

    Args:
        kernel: depthwise kernel side (odd; int repeated over ``rank`` dims, or one per dim).
        rank: grid rank when ``kernel`` is an int.
    """

    def __init__(self, dim: int, kernel=5, rank: int = 2, bias: bool = True):
        super().__init__()
        self.pw1 = nn.Linear(dim, dim, bias=bias)
        self.dw = DepthwiseConv(dim, kernel=kernel, rank=rank, bias=bias)
        self.pw2 = nn.Linear(dim, dim, bias=bias)

    def forward(self, x: Tensor, tokens: Tokens) -> Tensor:  # [B, L, C]
        return self.pw2(self.dw(self.pw1(x), tokens))


class ConvModule(nn.Module):
    """Conformer's convolution module (Gulati et al., "Conformer", Interspeech 2020): a pointwise
    projection to ``2C`` and a GLU, a depthwise convolution over the grid, a norm (BatchNorm, from
    valid tokens only), SiLU, and a pointwise projection back to ``C``. The LayerNorm in front is
    the residual step's. Rank-generic (1 for speech); torchaudio's layout has biases everywhere.

    ``glu=False`` is Squeezeformer's version (Kim et al., NeurIPS 2022, "unified activations"): the
    GLU becomes ``act`` (Swish) on all ``2C`` channels, so the depthwise conv and the norm run on
    ``2C`` channels and the last projection maps ``2C -> C``.

    Args:
        kernel: depthwise kernel (odd; 31 in torchaudio's Conformer, 32 in the paper).
        rank: grid rank when ``kernel`` is an int.
        norm: norm after the depthwise conv (config/name).
        act: activation after the norm (a ``torch.nn`` name), and after the first projection
            when ``glu=False``.
        glu: gate the first projection with a GLU (Conformer) or not (Squeezeformer).
    """

    def __init__(self, dim: int, kernel=31, rank: int = 1, norm="BatchNorm", act: str = "SiLU",
                 bias: bool = True, drop: float = 0.0, glu: bool = True):
        super().__init__()
        self.glu = glu
        inner = dim if glu else 2 * dim  # channels of the depthwise conv
        self.pw1 = nn.Linear(dim, 2 * dim, bias=bias)
        self.dw = DepthwiseConv(inner, kernel=kernel, rank=rank, bias=bias)
        self.norm = build_norm(norm, inner)
        self.act = getattr(nn, act)()
        self.pw2 = nn.Linear(inner, dim, bias=bias)
        self.drop = Dropout(drop)

    def forward(self, x: Tensor, tokens: Tokens) -> Tensor:  # [B, L, C]
        if self.glu:
            a, gate = self.pw1(x).chunk(2, dim=-1)
            h = a * torch.sigmoid(gate)  # GLU: [B, L, C]
        else:
            h = self.act(self.pw1(x))  # [B, L, 2C]
        x = self.dw(h, tokens)  # the depthwise conv (zeroes padding first)
        x = self.act(apply_norm(self.norm, x, tokens))
        return self.drop(self.pw2(x))

"""Depthwise convolution over a grid of any rank: the local encoder of ConvNeXt, UniFormer's
local aggregator and Conformer's convolution module (1D).

Reads ``Tokens.grid`` (required) and ``Tokens.mask``: padded tokens are zeroed before the
convolution, so they never leak into their valid neighbours.
"""
from __future__ import annotations

from torch import Tensor, nn

from .errors import InputError
from .tokens import Tokens

__all__ = ["DepthwiseConv"]


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

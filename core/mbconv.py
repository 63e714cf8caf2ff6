"""MBConv: the inverted-residual convolution block with squeeze-and-excitation (MobileNetV2,
Sandler et al. 2018; EfficientNet, Tan & Le 2019), in the pre-norm form MaxViT uses (Tu et al.,
ECCV 2022): ``x -> shortcut(x) + drop_path(conv1x1(SE(dwconv(conv1x1(BN(x))))))``.

It works on ``Tokens`` on a grid of any rank and can downsample: with ``stride > 1`` the depthwise
convolution is strided and the shortcut is a masked average pool (plus a 1x1 projection when the
width changes). :class:`MBConvDownsample` is the same block in the downsampler slot of a backbone
stage (it returns the undo information dense heads need), which is how MaxViT opens each stage.

Padding is inert: padded tokens are zeroed before every convolution, BatchNorm statistics come from
valid tokens only, the squeeze pools valid tokens only and the shortcut pool averages valid cells.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .block import DropPath, TokenNorm
from .downsample import coarse_tokens
from .undo import GridUndo
from .gridops import pad_grid
from .errors import InputError
from .tokens import Tokens

__all__ = ["MBConv", "MBConvDownsample", "SqueezeExcite"]


class SqueezeExcite(nn.Module):
    """Channel gate from the mean of the valid tokens: ``x * sigmoid(fc2(act(fc1(mean(x)))))``."""

    def __init__(self, dim: int, hidden: int, act: str = "SiLU"):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = getattr(nn, act)()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor, tokens: Tokens) -> Tensor:  # [B, L, C]
        s = self.fc2(self.act(self.fc1(tokens.masked_mean(x))))  # [B, C]
        return x * s.sigmoid().unsqueeze(1)


def _masked_pool(x: Tensor, valid: Tensor | None, grid: tuple[int, ...], factors: tuple[int, ...]):
    """Average of the valid cells of every ``factors`` block: ``[B, L, C] -> [B, L', C]``."""
    B, _, C = x.shape
    w = torch.ones(B, *grid, 1, dtype=x.dtype, device=x.device) if valid is None else \
        valid.view(B, *grid, 1).to(x.dtype)
    xg, padded = pad_grid(x.view(B, *grid, C) * w, grid, factors)
    wg, _ = pad_grid(w, grid, factors)
    coarse = tuple(p // f for p, f in zip(padded, factors))
    shape = [B]
    for c, f in zip(coarse, factors):
        shape += [c, f]
    dims = tuple(2 + 2 * i for i in range(len(grid)))  # the within-block offsets
    s = xg.reshape(*shape, C).sum(dims)
    n = wg.reshape(*shape, 1).sum(dims)
    return (s / n.clamp_min(1)).reshape(B, -1, C)


class MBConv(nn.Module):
    """Pre-norm MBConv with SE on a grid of any rank (MaxViT's convolution block).

    ``Tokens [B, L, dim] -> Tokens [B, L', out_dim]`` (``L' = L`` unless ``stride > 1``).

    Args:
        out_dim: output width (default ``dim``).
        stride: depthwise-convolution stride (int or per dim); > 1 downsamples the grid.
        expand: hidden width ``= expand * out_dim`` (MaxViT expands the output width).
        kernel: depthwise kernel (odd).
        se_ratio: squeeze width ``= se_ratio * out_dim`` (0 for no SE).
        act: activation after the two hidden norms; the SE uses SiLU.
        rank: grid rank.
        drop_path: stochastic depth of the residual branch.
        eps: BatchNorm epsilon.
    """

    def __init__(self, dim: int, out_dim: int | None = None, stride=1, expand: float = 4.0, kernel: int = 3,
                 se_ratio: float = 0.25, act: str = "GELU", rank: int = 2, drop_path: float = 0.0,
                 eps: float = 1e-3):
        super().__init__()
        out_dim = out_dim or dim
        self.stride = (stride,) * rank if isinstance(stride, int) else tuple(stride)
        self.rank = len(self.stride)
        if kernel % 2 == 0:
            raise ValueError(f"MBConv needs an odd kernel; got {kernel}")
        mid = int(round(out_dim * expand))
        self.dim, self.out_dim = dim, out_dim
        self.shortcut = nn.Linear(dim, out_dim) if dim != out_dim else nn.Identity()  # a 1x1 conv
        self.pre_norm = TokenNorm(dim, "batch", eps)
        self.conv1 = nn.Linear(dim, mid, bias=False)  # 1x1 expansion
        self.norm1 = TokenNorm(mid, "batch", eps)
        conv = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[self.rank - 1]
        self.dwconv = conv(mid, mid, kernel, stride=self.stride, padding=kernel // 2, groups=mid, bias=False)
        self.norm2 = TokenNorm(mid, "batch", eps)
        self.act = getattr(nn, act)()
        se = int(round(out_dim * se_ratio))
        self.se = SqueezeExcite(mid, se) if se > 0 else None
        self.conv3 = nn.Linear(mid, out_dim)  # 1x1 projection
        self.drop_path = DropPath(drop_path)

    def extra_repr(self):
        return f"{self.dim} -> {self.out_dim}, stride={self.stride}"

    def forward(self, tokens: Tokens) -> Tokens:
        grid = tokens.require("grid", "MBConv")
        if len(grid) != self.rank:
            raise InputError(f"MBConv was built for rank-{self.rank} grids (stride {self.stride}) "
                             f"but the tokens have grid {grid}")
        x = tokens.zero_padding(tokens.x)  # [B, L, C]
        B, L, _ = x.shape
        down = any(s > 1 for s in self.stride)
        # shortcut: average of the valid cells of each stride block, then project the width
        skip = _masked_pool(x, tokens.mask, grid, self.stride) if down else x
        skip = self.shortcut(skip)

        h = self.act(self.norm1(self.conv1(self.pre_norm(x, tokens)), tokens))  # [B, L, mid]
        h = tokens.zero_padding(h)
        h = self.dwconv(h.transpose(1, 2).reshape(B, -1, *grid))  # [B, mid, *coarse]
        coarse = tuple(h.shape[2:])
        h = h.flatten(2).transpose(1, 2)  # [B, L', mid]
        out_tokens = coarse_tokens(tokens, h, coarse, self.stride)[0] if down else tokens
        h = self.act(self.norm2(h, out_tokens))
        if self.se is not None:
            h = self.se(h, out_tokens)
        h = self.conv3(h)  # [B, L', out]
        x = out_tokens.zero_padding(skip + self.drop_path(h))
        return out_tokens.replace(x=x)


class MBConvDownsample(MBConv):
    """:class:`MBConv` with ``stride=2`` in a backbone stage's downsampler slot:
    ``Tokens -> (Tokens, GridUndo)``."""

    def __init__(self, dim: int, out_dim: int | None = None, stride=2, expand: float = 4.0, kernel: int = 3,
                 se_ratio: float = 0.25, act: str = "GELU", rank: int = 2, drop_path: float = 0.0,
                 eps: float = 1e-3):
        super().__init__(dim, out_dim, stride, expand, kernel, se_ratio, act, rank, drop_path, eps)

    def forward(self, tokens: Tokens) -> tuple[Tokens, GridUndo]:
        return super().forward(tokens), GridUndo(tokens.grid, self.stride, fine=tokens)

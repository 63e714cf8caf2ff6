"""Image adapters: a batch of ``[B, C, H, W]`` pixels -> ``Tokens`` on an ``(H', W')`` grid plus
the undo back to the pixel grid (for dense heads), and the batch normaliser that runs before them.

An adapter takes the collated batch (``adapter(batch)``, reading ``batch['inputs']``); a bare
tensor of images works too."""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from glocal.core.block import build_norm
from glocal.core.errors import ConfigError, InputError
from glocal.core.tokens import Tokens
from glocal.core.undo import GridUndo

from ..batch import BatchPreprocessor, batch_inputs

__all__ = ["PatchStem", "ConvStem", "ImageDataPreprocessor", "check_images"]


def check_images(x: Tensor, in_chans: int, who: str, min_size: int = 1) -> None:
    """Clear errors for the usual image mistakes: wrong rank, channel count or too small."""
    if not isinstance(x, Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        hint = " (a single image? add the batch dim: x[None])" if isinstance(x, Tensor) and x.dim() == 3 else ""
        raise InputError(f"{who} expects images [B, C, H, W]; got {shape}{hint}")
    if x.shape[1] != in_chans:
        raise InputError(
            f"{who} was built for {in_chans}-channel images but got {x.shape[1]} channels "
            f"(input {tuple(x.shape)}). Set in_chans={x.shape[1]} in the adapter config, or convert the "
            f"images (e.g. ImageFolder(mode='RGB' or 'L')); channels-last input must be permuted to "
            f"[B, C, H, W].")
    if min(x.shape[2:]) < min_size:
        raise InputError(f"{who} needs images of at least {min_size}x{min_size}; got {tuple(x.shape[2:])}")
    if not x.is_floating_point():
        raise InputError(f"{who} expects float pixels (normalised by ImageDataPreprocessor); got {x.dtype}")


class PatchStem(nn.Module):
    """Non-overlapping ``patch x patch`` convolution -> tokens on the patch grid (ViT, Swin).

    ``batch['inputs'] [B, C, H, W] -> (Tokens(x [B, H/p * W/p, dim], grid=(H/p, W/p)), GridUndo)``;
    sizes not divisible by ``patch`` are zero-padded at the bottom/right (the undo crops them).
    """

    downsample = dict(type="PatchMerging", factors=2, rank=2)  # what suits the tokens it makes

    def __init__(self, in_chans: int = 3, dim: int = 96, patch: int = 4, norm="LayerNorm"):
        super().__init__()
        if min(in_chans, dim, patch) < 1:
            raise ConfigError(f"PatchStem: in_chans, dim and patch must be >= 1; got in_chans={in_chans}, dim={dim}, "
                              f"patch={patch}")
        self.in_chans, self.patch, self.out_dim = in_chans, patch, dim
        self.proj = nn.Conv2d(in_chans, dim, patch, stride=patch)
        self.norm = build_norm(norm, dim)

    def forward(self, batch) -> tuple[Tokens, GridUndo]:
        x = batch_inputs(batch, "PatchStem")
        check_images(x, self.in_chans, "PatchStem")
        x = x.to(self.proj.weight.dtype)  # float64 pixels meet float32 weights
        H, W = x.shape[2:]
        p = self.patch
        if H % p or W % p:
            x = nn.functional.pad(x, (0, (-W) % p, 0, (-H) % p))
        x = self.proj(x)  # [B, dim, H', W']
        grid = tuple(x.shape[2:])
        tokens = Tokens(self.norm(x.flatten(2).transpose(1, 2)), grid=grid)  # [B, L, dim]
        return tokens, GridUndo((H, W), (p, p))


class ConvStem(nn.Module):
    """A few ``kernel x kernel`` convolutions (with strides) -> tokens on the output grid
    (MaxViT, NAT, UniFormer-style overlapping stems), and the undo back to the pixels. When the first
    convolution has stride 1, its (normalised, activated) output rides with the undo as the
    full-resolution features (``fine_dim`` channels) that a U-Net decoder uses as its last skip.

    Convolutions are joined by ``norm`` + ``act``; the last convolution is bare unless
    ``norm_last`` (a token norm over channels, e.g. ``"LayerNorm"``) is given.
    """

    downsample = dict(type="PatchMerging", factors=2, rank=2)

    def __init__(self, in_chans: int = 3, dims: Sequence[int] = (32, 64), strides: Sequence[int] = (2, 2),
                 kernel: int = 3, norm: str | None = "BatchNorm", act: str = "GELU", norm_last=None):
        super().__init__()
        if not dims or len(dims) != len(strides):
            raise ConfigError(f"ConvStem: dims {dims} and strides {strides} must be non-empty and of one length")
        if min(in_chans, *dims, *strides) < 1:
            raise ConfigError(f"ConvStem: in_chans, dims and strides must be >= 1; got in_chans={in_chans}, "
                              f"dims={dims}, strides={strides}")
        if kernel < 1 or kernel % 2 == 0:
            raise ConfigError(f"ConvStem kernel must be odd ('same' padding); got {kernel}")
        self.in_chans, self.out_dim, self.stride = in_chans, dims[-1], math.prod(strides)
        layers, prev = [], in_chans
        for i, (d, s) in enumerate(zip(dims, strides)):
            layers.append(nn.Conv2d(prev, d, kernel, stride=s, padding=kernel // 2))
            if i < len(dims) - 1:
                if norm == "BatchNorm":
                    layers.append(nn.BatchNorm2d(d))
                elif norm is not None:
                    raise ConfigError(f"ConvStem norm between convolutions must be 'BatchNorm' or None; got {norm!r}")
                layers.append(getattr(nn, act)())
            prev = d
        # channels-last weights make oneDNN run the convolutions (and the BatchNorm) in NHWC, about
        # 2x faster on CPU than NCHW here; the tokens then come out of flatten/transpose contiguous
        self.convs = nn.Sequential(*layers).to(memory_format=torch.channels_last)
        self.norm = build_norm(norm_last, prev)
        # a first stride-1 layer keeps the input resolution: its output goes out with the undo as the
        # finest features (a U-Net's full-resolution skip); fine_dim tells dense heads their width
        full_res = strides[0] == 1 and len(dims) > 1
        self.fine_dim = dims[0] if full_res else None
        self._fine_at = (3 if norm == "BatchNorm" else 2) if full_res else 0

    def forward(self, batch) -> tuple[Tokens, GridUndo]:
        x = batch_inputs(batch, "ConvStem")
        check_images(x, self.in_chans, "ConvStem")
        x = x.to(self.convs[0].weight.dtype)  # float64 pixels meet float32 weights
        H, W = x.shape[2:]
        fine = None
        for i, layer in enumerate(self.convs):
            if isinstance(layer, nn.BatchNorm2d) and self.training and x.shape[0] * x.shape[2] * x.shape[3] <= 1:
                raise InputError(f"ConvStem: its BatchNorm after convolution {i // 3 + 1} would train on one value "
                                 f"per channel ({x.shape[0]} image(s) of {tuple(x.shape[2:])} there, from input "
                                 f"{(H, W)}); train on batches of 2 or more, on larger images, or with norm=None")
            x = layer(x)
            if i + 1 == self._fine_at:  # the first layer's full-resolution features, for dense heads
                fine = Tokens(x.flatten(2).transpose(1, 2), grid=(H, W))  # [B, H * W, dims[0]]
        # x: [B, dim, H', W'], H' = ceil(H / prod(strides)) with 'same' padding
        tokens = Tokens(self.norm(x.flatten(2).transpose(1, 2)), grid=tuple(x.shape[2:]))
        return tokens, GridUndo((H, W), (self.stride,) * 2, fine=fine)


class ImageDataPreprocessor(BatchPreprocessor):
    """Moves the batch to the model's device and normalises pixels: ``(x / 255 - mean) / std`` for
    uint8 input (mean/std in [0, 1] units), ``(x - mean) / std`` for float input."""

    def __init__(self, mean: Sequence[float] = (0.5,), std: Sequence[float] = (0.5,)):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), False)

    def forward(self, data: dict, training: bool = False) -> dict:
        data = self.cast_data(data)
        x = data["inputs"]
        if isinstance(x, Tensor) and x.dim() == 4 and x.shape[1] != self.mean.shape[1] and self.mean.shape[1] != 1:
            raise InputError(f"ImageDataPreprocessor has mean/std for {self.mean.shape[1]} channels but the "
                             f"images have {x.shape[1]} (input {tuple(x.shape)})")
        if isinstance(x, Tensor):
            x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
            x = (x - self.mean) / self.std
        return {**data, "inputs": x}

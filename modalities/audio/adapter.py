"""The audio adapter: filterbank features ``[B, T, F]`` -> ``Tokens`` on a subsampled time grid
``(T',)``, plus the undo back to the input frames.

:class:`SubsampleStem` is the convolutional subsampling in front of Conformer (Gulati et al.,
"Conformer: Convolution-augmented Transformer for Speech Recognition", Interspeech 2020; the
ESPnet / torchaudio ``Conv2dSubsampling``): ``layers`` 2D convolutions (kernel 3, stride 2, no
padding, ReLU) over the (time, frequency) plane, then a ``Linear`` from ``channels * F'`` to the
model width: 4x fewer frames with two layers (10 ms -> 40 ms per token). With ``separable=True``
every convolution after the first is depthwise-separable (a depthwise 3x3 stride-2 conv, then a
pointwise 1x1 conv), Squeezeformer's stem (Kim et al., "Squeezeformer: An Efficient Transformer
for Automatic Speech Recognition", NeurIPS 2022).

Ragged batches (``PadCollate``: ``inputs [B, T, F]`` padded with ``lengths [B]`` and ``mask``) are
honoured exactly: padded frames are zeroed before the convolutions, and the output lengths follow
the convolution arithmetic ``n -> (n - kernel) // stride + 1`` per layer. Because the convolutions
have no padding, a valid output frame only reads frames of its own utterance, so every utterance
of a batch gets the outputs it would get alone. An utterance shorter than one output frame needs
(7 frames for two layers of kernel 3, stride 2) is an :class:`~glocal.core.errors.InputError`
naming it.

Example:
    >>> import torch
    >>> stem = SubsampleStem(in_bins=80, dim=144)
    >>> batch = dict(inputs=torch.randn(2, 100, 80), lengths=torch.tensor([100, 61]))
    >>> tokens, undo = stem(batch)
    >>> tokens.x.shape, tokens.grid, tokens.mask.sum(1).tolist()
    (torch.Size([2, 24, 144]), (24,), [24, 14])
    >>> undo.up(tokens.x).shape  # back to the input frames
    torch.Size([2, 100, 144])
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from glocal.core.dropout import Dropout
from glocal.core.errors import ConfigError, InputError
from glocal.core.tokens import Tokens
from glocal.core.undo import GridUndo

from ..batch import PATH_KEYS, batch_inputs

__all__ = ["SubsampleStem", "SubsampleUndo", "check_features", "conv_output_length", "sinusoidal_encoding"]


def conv_output_length(n, layers: int, kernel: int, stride: int):
    """Frames left after ``layers`` unpadded convolutions: ``n -> (n - kernel) // stride + 1`` each
    (an int or a long tensor; below ``kernel`` frames a layer leaves none: 0)."""
    for _ in range(layers):
        n = (n - kernel) // stride + 1
        n = n.clamp_min(0) if isinstance(n, Tensor) else max(n, 0)
    return n


def sinusoidal_encoding(length: int, dim: int, like: Tensor) -> Tensor:
    """``[length, dim]``: ``sin(t / 10000^(2i / dim))`` in channel ``2i``, ``cos`` in ``2i + 1``
    (Vaswani et al., "Attention Is All You Need", 2017), in ``like``'s dtype and device."""
    t = torch.arange(length, device=like.device, dtype=torch.float64)[:, None]  # [T, 1]
    freq = torch.exp(-math.log(10000.0) * torch.arange(0, dim, 2, device=like.device, dtype=torch.float64) / dim)
    pe = torch.zeros(length, dim, device=like.device, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(t * freq)
    pe[:, 1::2] = torch.cos(t * freq[: dim // 2])
    return pe.to(like.dtype)


def check_features(x, in_bins: int, who: str) -> None:
    """Clear errors for the usual feature mistakes: wrong rank, integer values, the wrong number of
    bins (or time and frequency swapped)."""
    if not isinstance(x, Tensor) or x.dim() != 3:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        hint = ""
        if isinstance(x, Tensor) and x.dim() == 2:
            hint = " (a single utterance? add the batch dim: x[None])"
        elif isinstance(x, Tensor) and x.dim() == 4 and x.shape[1] == 1:
            hint = " (drop the channel dim: x[:, 0])"
        raise InputError(f"{who} expects features [B, T, F] (batch, frames, bins; time first); got {shape}{hint}")
    if not x.is_floating_point():
        raise InputError(f"{who} expects float features (Fbank, LogMel or MFCC); got {x.dtype}")
    if x.shape[2] != in_bins:
        if x.shape[1] == in_bins:
            hint = (f"they look transposed ([B, F, T] with F={in_bins}): time must come first, "
                    f"x.transpose(1, 2)")
        else:
            hint = (f"set in_bins={x.shape[2]} in the adapter config, or make the feature transform "
                    f"produce {in_bins} bins")
        raise InputError(f"{who} was built for {in_bins} frequency bins but the features {tuple(x.shape)} have "
                         f"{x.shape[2]}: {hint}")


def _paths(batch) -> list | None:
    """The per-utterance files of a batch (``data_samples['path']`` as the collates leave it, or
    a top-level ``path`` list), for error messages; None when the batch names none."""
    if not isinstance(batch, Mapping):
        return None
    for where in (batch.get("data_samples"), batch):
        if not isinstance(where, Mapping):
            continue
        for key in PATH_KEYS:
            value = where.get(key)
            if isinstance(value, (list, tuple)):
                return list(value)
    return None


@dataclass(eq=False)
class SubsampleUndo(GridUndo):
    """The way back from :class:`SubsampleStem`'s tokens to the input frames: token ``t`` covers
    frames ``factor * t ... factor * t + factor - 1`` (its receptive field starts there), and the
    last ``T - factor * T'`` frames, which unpadded convolutions leave without a token of their own,
    take the last token's. ``frames``: the number of tokens ``T'``."""

    frames: int | None = None

    def up(self, x: Tensor, mode: str = "nearest") -> Tensor:
        """``[B, T', C] -> [B, T, C]`` (``mode``: ``"nearest"`` or ``"linear"``)."""
        B, Lc, C = x.shape
        if self.frames is not None and Lc != self.frames:
            raise InputError(f"SubsampleUndo.up: expected the stem's {self.frames} tokens; got {Lc}")
        need = math.prod(self.coarse_grid)
        if 0 < Lc < need:  # repeat the last token over the frames the convolutions did not reach
            x = torch.cat([x, x[:, -1:].expand(B, need - Lc, C)], 1)
        return super().up(x, mode)


class SubsampleStem(nn.Module):
    """Convolutional subsampling of features ``[B, T, F]`` into tokens ``[B, T', dim]`` on the grid
    ``(T',)`` (Conformer's front end; Squeezeformer's with ``separable=True``).

    ``layers`` ``Conv2d(kernel, stride)`` + ``act`` over (time, frequency), no padding: the first
    ``1 -> channels``, the others ``channels -> channels`` (depthwise ``kernel x kernel`` stride
    ``stride``, then pointwise ``1 x 1``, when ``separable``). Then ``Linear(channels * F', dim)``
    and dropout, ``F'`` the bins left by the same arithmetic as the frames.

    ``adapter(batch) -> (Tokens(x, mask [B, T'], grid (T',)), SubsampleUndo)``. The batch is
    ``PadCollate``'s: ``inputs [B, T, F]`` and ``lengths [B]`` (valid frames per utterance; else
    ``mask [B, T]``, trailing padding); a bare tensor is a batch of full-length utterances (no mask).

    Args:
        in_bins: frequency bins F of the features (80 in the papers).
        dim: token width.
        channels: convolution channels (default ``dim``, as Conformer and Squeezeformer).
        layers: number of strided convolutions (2: 4x subsampling in time).
        kernel, stride: of every convolution (square).
        separable: depthwise-separable convolutions after the first (Squeezeformer).
        act: activation after every convolution (a ``torch.nn`` name).
        dropout: after the projection.
        pos_enc: ``"sinusoidal"`` adds the Transformer's sinusoidal encoding of the token index
            (Vaswani et al. 2017) after the projection, for backbones with no other source of
            position (attention-only stacks); None (default) adds nothing: Conformer-style
            backbones take position from their convolutions.
    """

    downsample = dict(type="PatchMerging", factors=2, rank=1)  # what suits the (T',) tokens it makes

    def __init__(self, in_bins: int = 80, dim: int = 144, channels: int | None = None, layers: int = 2,
                 kernel: int = 3, stride: int = 2, separable: bool = False, act: str = "ReLU",
                 dropout: float = 0.0, pos_enc: str | None = None):
        super().__init__()
        channels = channels or dim
        if min(in_bins, dim, channels, layers, kernel, stride) < 1:
            raise ConfigError(f"SubsampleStem: in_bins, dim, channels, layers, kernel and stride must be >= 1; got "
                              f"in_bins={in_bins}, dim={dim}, channels={channels}, layers={layers}, "
                              f"kernel={kernel}, stride={stride}")
        if pos_enc not in (None, "sinusoidal"):
            raise ConfigError(f"SubsampleStem pos_enc must be None or 'sinusoidal'; got {pos_enc!r}")
        self.pos_enc = pos_enc
        self.bins_out = conv_output_length(in_bins, layers, kernel, stride)
        if self.bins_out < 1:
            raise ConfigError(f"SubsampleStem: {layers} convolutions of kernel {kernel}, stride {stride} leave no "
                              f"frequency bin of in_bins={in_bins}; use fewer layers or more bins")
        self.in_bins, self.out_dim, self.channels = in_bins, dim, channels
        self.layers, self.kernel, self.stride = layers, kernel, stride
        self.factor = stride ** layers  # frames per token
        self.min_frames = 1  # the shortest utterance that still makes one token
        for _ in range(layers):
            self.min_frames = (self.min_frames - 1) * stride + kernel
        convs, prev = [], 1
        for i in range(layers):
            if separable and i > 0:
                convs += [nn.Conv2d(prev, prev, kernel, stride, groups=prev), nn.Conv2d(prev, channels, 1)]
            else:
                convs.append(nn.Conv2d(prev, channels, kernel, stride))
            convs.append(getattr(nn, act)())
            prev = channels
        # channels-last weights: oneDNN runs these convolutions in NHWC, 1.5x faster on CPU than NCHW
        self.convs = nn.Sequential(*convs).to(memory_format=torch.channels_last)
        self.proj = nn.Linear(channels * self.bins_out, dim)
        self.drop = Dropout(dropout)

    def extra_repr(self):
        return (f"in_bins={self.in_bins}, factor={self.factor}, min_frames={self.min_frames}, "
                f"bins_out={self.bins_out}")

    def output_lengths(self, lengths: Tensor) -> Tensor:
        """Tokens per utterance from its frames ``[B]`` (the convolution arithmetic)."""
        return conv_output_length(lengths, self.layers, self.kernel, self.stride)

    def _lengths(self, batch, B: int, T: int, device) -> Tensor | None:
        """Valid frames per utterance ``[B]`` (long), from ``lengths`` or a trailing ``mask``; None
        for a bare tensor or a batch without either (every frame valid)."""
        if not isinstance(batch, Mapping):
            return None
        if batch.get("lengths") is not None:
            lengths = torch.as_tensor(batch["lengths"]).to(device=device, dtype=torch.long).reshape(-1)
            if lengths.shape[0] != B or bool(((lengths < 0) | (lengths > T)).any()):
                raise InputError(f"SubsampleStem: batch['lengths'] must give 0..{T} valid frames for each of the "
                                 f"{B} utterances of inputs [B, T, F] = {[B, T]}; got {lengths.tolist()}")
            return lengths
        mask = batch.get("mask")
        if mask is None:
            return None
        mask = torch.as_tensor(mask).to(device)
        if mask.shape != (B, T) or mask.dtype != torch.bool:
            raise InputError(f"SubsampleStem: batch['mask'] must be bool [B, T] = [{B}, {T}]; got {mask.dtype} "
                             f"{tuple(mask.shape)}")
        lengths = mask.sum(1)
        if not torch.equal(mask, torch.arange(T, device=device) < lengths[:, None]):
            raise InputError("SubsampleStem: batch['mask'] has padding before valid frames; utterances must be "
                             "padded at the end (as PadCollate does)")
        return lengths

    def _check_long_enough(self, lengths: Tensor, batch) -> None:
        short = (lengths < self.min_frames).nonzero().flatten().tolist()
        if not short:
            return
        b = short[0]
        paths = _paths(batch)
        name = f"utterance {b} of the batch"
        if paths is not None and b < len(paths) and paths[b] is not None:
            name += f" ({paths[b]})"
        more = f" ({len(short) - 1} more in this batch)" if len(short) > 1 else ""
        raise InputError(
            f"SubsampleStem: {name} has {int(lengths[b])} frames, but {self.layers} convolutions of kernel "
            f"{self.kernel}, stride {self.stride} need at least {self.min_frames} frames to make one token{more}. "
            f"Drop utterances shorter than {self.min_frames} frames from the dataset (or pad them), or subsample "
            f"less (layers={self.layers - 1})")

    def forward(self, batch) -> tuple[Tokens, SubsampleUndo]:
        x = batch_inputs(batch, "SubsampleStem")
        check_features(x, self.in_bins, "SubsampleStem")
        x = x.to(self.proj.weight.dtype)  # float64 features meet float32 weights
        B, T, _ = x.shape
        lengths = self._lengths(batch, B, T, x.device)
        self._check_long_enough(torch.full((B,), T) if lengths is None else lengths, batch)
        valid = None
        if lengths is not None:
            valid = torch.arange(T, device=x.device) < lengths[:, None]  # [B, T]
            x = x * valid.unsqueeze(-1).to(x.dtype)  # padded frames zero: they never reach valid tokens
        h = self.convs(x.unsqueeze(1))  # [B, channels, T', F']
        frames = h.shape[2]
        h = h.permute(0, 2, 1, 3).reshape(B, frames, -1)  # [B, T', channels * F'], channel-major
        x = self.proj(h)  # [B, T', dim]
        if self.pos_enc == "sinusoidal":
            x = x + sinusoidal_encoding(frames, x.shape[-1], x)
        x = self.drop(x)
        mask = None
        if lengths is not None:
            mask = torch.arange(frames, device=x.device) < self.output_lengths(lengths)[:, None]  # [B, T']
            x = x * mask.unsqueeze(-1).to(x.dtype)
        undo = SubsampleUndo((T,), (self.factor,), mask=valid, frames=frames)
        return Tokens(x, mask=mask, grid=(frames,)), undo

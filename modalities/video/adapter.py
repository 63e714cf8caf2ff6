"""The video adapter: clips ``[B, C, T, H, W]`` -> ``Tokens`` on a ``(T', H', W')`` tubelet grid,
plus the undo back to the input voxels (for dense heads).

:class:`TubeletStem` is the 3D patch embedding of Video Swin (Liu et al., "Video Swin
Transformer", CVPR 2022; torchvision's ``PatchEmbed3d``), ViViT's tubelet embedding and, with an
overlapping temporal kernel, UniFormer's video stem (Li et al., ICLR 2022: a 3x4x4 convolution of
stride 2x4x4).

Ragged batches (clips padded at the end to the longest, with ``lengths [B]`` valid frames or a
trailing ``mask [B, T]``) are honoured: padded frames are zeroed before the convolution, and a
token is valid when its tubelet starts on a valid frame (``ceil(length / patch_t)`` valid frames
of tokens). Each clip's valid tokens are then those it would get alone.

Example:
    >>> import torch
    >>> stem = TubeletStem(in_chans=3, dim=96, patch=(2, 4, 4))
    >>> tokens, undo = stem(dict(inputs=torch.randn(2, 3, 9, 30, 32), lengths=torch.tensor([9, 5])))
    >>> tokens.x.shape, tokens.grid, tokens.mask.view(2, 5, -1)[:, :, 0].sum(1).tolist()
    (torch.Size([2, 320, 96]), (5, 8, 8), [5, 3])
    >>> undo.up(tokens.x).shape  # back to the input voxels
    torch.Size([2, 8640, 96])
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from glocal.core.block import build_norm
from glocal.core.errors import ConfigError, InputError
from glocal.core.tokens import Tokens
from glocal.core.undo import GridUndo

from ..batch import batch_inputs

__all__ = ["TubeletStem", "check_clips"]


def _triple(value, name: str) -> tuple[int, int, int]:
    out = (int(value),) * 3 if isinstance(value, int) else tuple(int(v) for v in value)
    if len(out) != 3 or min(out) < 1:
        raise ConfigError(f"TubeletStem {name} must be a positive int or three of them (T, H, W); got {value!r}")
    return out


def check_clips(x: Tensor, in_chans: int, who: str) -> None:
    """Clear errors for the usual clip mistakes: wrong rank or layout, channel count, integer pixels."""
    if not isinstance(x, Tensor) or x.dim() != 5:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        hint = ""
        if isinstance(x, Tensor) and x.dim() == 4:
            hint = " (a single clip? add the batch dim: x[None])"
        elif isinstance(x, Tensor) and x.dim() == 6:
            hint = (" (several views per clip, [B, V, C, T, H, W]? fold them into the batch and average the V "
                    "scores of each clip: the model's tta=dict(type='MultiViewTTA') does both)")
        raise InputError(f"{who} expects clips [B, C, T, H, W]; got {shape}{hint}")
    if x.shape[1] != in_chans:
        hint = (f"; the clips look like [B, T, C, H, W] (channels second to last of the first three dims): "
                f"x.transpose(1, 2)" if x.shape[2] == in_chans else "")
        raise InputError(f"{who} was built for {in_chans}-channel clips but got {x.shape[1]} channels (input "
                         f"{tuple(x.shape)}); set in_chans={x.shape[1]} in the adapter config{hint}")
    if not x.is_floating_point():
        raise InputError(f"{who} expects float pixels (normalised by the data preprocessor); got {x.dtype}")


class TubeletStem(nn.Module):
    """A 3D convolution over tubelets of ``patch`` (T, H, W) frames x pixels -> tokens on the
    tubelet grid (Video Swin's ``PatchEmbed3d``, ViViT's tubelet embedding).

    ``batch['inputs'] [B, C, T, H, W] -> (Tokens(x [B, T'*H'*W', dim], grid=(T', H', W')), GridUndo)``
    with ``T' = ceil(T / patch_t)`` (and so on): sides that are not a multiple of the patch are
    zero-padded at the end, as torchvision's ``PatchEmbed3d`` does; the undo crops them.

    Args:
        patch: the stride (tubelet size), int or ``(t, h, w)``.
        kernel: the convolution's kernel (default ``patch``: non-overlapping tubelets); a larger
            side overlaps its neighbours with symmetric zero padding ``ceil((kernel - patch) / 2)``,
            keeping ``T' = ceil(T / patch_t)``. UniFormer's video stem is
            ``patch=(2, 4, 4), kernel=(3, 4, 4)``.
        norm: token norm after the projection (``"LayerNorm"``; True means that, None/False none).
    """

    downsample = dict(type="PatchMerging", factors=(1, 2, 2), rank=3)  # Video Swin's: 2x2 in space only

    def __init__(self, in_chans: int = 3, dim: int = 96, patch=(2, 4, 4), kernel=None, norm="LayerNorm"):
        super().__init__()
        if min(in_chans, dim) < 1:
            raise ConfigError(f"TubeletStem: in_chans and dim must be >= 1; got in_chans={in_chans}, dim={dim}")
        self.in_chans, self.out_dim = in_chans, dim
        self.patch = _triple(patch, "patch")
        self.kernel = self.patch if kernel is None else _triple(kernel, "kernel")
        padding = tuple(max(0, math.ceil((k - p) / 2)) for k, p in zip(self.kernel, self.patch))
        self.proj = nn.Conv3d(in_chans, dim, self.kernel, stride=self.patch, padding=padding)
        self.norm = build_norm("LayerNorm" if norm is True else (norm or None), dim)

    def extra_repr(self):
        return f"in_chans={self.in_chans}, dim={self.out_dim}, patch={self.patch}, kernel={self.kernel}"

    def _lengths(self, batch, B: int, T: int, device) -> Tensor | None:
        """Valid frames per clip ``[B]`` from ``lengths`` or a trailing frame ``mask [B, T]``; None
        for a bare tensor or a batch with neither (every frame valid)."""
        if not isinstance(batch, Mapping):
            return None
        if batch.get("lengths") is not None:
            lengths = torch.as_tensor(batch["lengths"]).to(device=device, dtype=torch.long).reshape(-1)
            if lengths.shape[0] != B or bool(((lengths < 1) | (lengths > T)).any()):
                raise InputError(f"TubeletStem: batch['lengths'] must give 1..{T} valid frames for each of the {B} "
                                 f"clips of inputs [B, C, T, H, W] with T={T}; got {lengths.tolist()}")
            return lengths
        mask = batch.get("mask")
        if mask is None:
            return None
        mask = torch.as_tensor(mask).to(device)
        if mask.shape != (B, T) or mask.dtype != torch.bool:
            raise InputError(f"TubeletStem: batch['mask'] must be the valid frames, bool [B, T] = [{B}, {T}]; got "
                             f"{mask.dtype} {tuple(mask.shape)}")
        lengths = mask.sum(1)
        if not torch.equal(mask, torch.arange(T, device=device) < lengths[:, None]) or bool((lengths < 1).any()):
            raise InputError("TubeletStem: batch['mask'] must mark each clip's frames valid from the first one on "
                             "(clips padded at the end, at least one valid frame)")
        return lengths

    def forward(self, batch) -> tuple[Tokens, GridUndo]:
        x = batch_inputs(batch, "TubeletStem")
        check_clips(x, self.in_chans, "TubeletStem")
        x = x.to(self.proj.weight.dtype)  # float64 pixels meet float32 weights
        B, _, T, H, W = x.shape
        lengths = self._lengths(batch, B, T, x.device)
        frames = None  # [B, T] valid frames
        if lengths is not None:
            frames = torch.arange(T, device=x.device) < lengths[:, None]
            x = x * frames[:, None, :, None, None].to(x.dtype)  # padded frames never reach valid tokens
        pad = [0, (-W) % self.patch[2], 0, (-H) % self.patch[1], 0, (-T) % self.patch[0]]
        if any(pad):
            x = F.pad(x, pad)
        x = self.proj(x)  # [B, dim, T', H', W']
        grid = tuple(x.shape[2:])
        x = self.norm(x.flatten(2).transpose(1, 2))  # [B, L, dim]
        mask = fine_mask = None
        if lengths is not None:
            valid_t = torch.arange(grid[0], device=x.device) * self.patch[0] < lengths[:, None]  # [B, T']
            mask = valid_t[:, :, None].expand(B, grid[0], grid[1] * grid[2]).reshape(B, -1)
            x = x * mask.unsqueeze(-1).to(x.dtype)
            fine_mask = frames[:, :, None].expand(B, T, H * W).reshape(B, -1)  # [B, T * H * W]
        return Tokens(x, mask=mask, grid=grid), GridUndo((T, H, W), self.patch, mask=fine_mask)

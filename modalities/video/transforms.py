"""Clip transforms on ``sample['clip']``: a tensor ``[T, H, W, C]`` (one clip) or ``[V, T, H, W, C]``
(``V`` views: several sampled clips, or the three crops of :class:`ThreeCropClip`), uint8 as
decoded (float after :class:`NormalizeClip`).

Every transform is ``t(sample, rng) -> sample`` (as the other modalities' transforms) and applies
ONE geometry to the whole tensor: the same crop window and the same flip for every frame of every
view, so motion is never broken by augmentation. Random ones draw only from ``rng`` (see
``glocal.modalities.dataset``). :class:`PackClip` ends the pipeline: ``clip [..., T, H, W, C] ->
inputs [..., C, T, H, W]``, what :class:`~glocal.modalities.video.datasets.ClipCollate` stacks to
``[B, C, T, H, W]`` (``[B, V, C, T, H, W]`` with views).

Example:
    >>> import numpy as np, torch
    >>> clip = torch.arange(2 * 4 * 6 * 1, dtype=torch.uint8).view(2, 4, 6, 1)  # [T, H, W, C]
    >>> out = CenterCropClip(2)(dict(clip=clip), None)["clip"]
    >>> out.shape, out[0, ..., 0].tolist()
    (torch.Size([2, 2, 2, 1]), [[8, 9], [14, 15]])
    >>> ThreeCropClip(4)(dict(clip=clip), None)["clip"].shape  # left, centre, right
    torch.Size([3, 2, 4, 4, 1])
    >>> PackClip()(dict(clip=clip, label=3), None)["inputs"].shape  # [C, T, H, W]
    torch.Size([1, 2, 4, 6])
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from glocal.core.errors import ConfigError, InputError

__all__ = ["ResizeClip", "RandomCropClip", "CenterCropClip", "ThreeCropClip", "FlipClip", "NormalizeClip",
           "PackClip"]


def _pair(who: str, size) -> tuple[int, int]:
    """``size`` (an int for a square, or ``(h, w)``) as two positive ints."""
    try:
        h, w = (size, size) if isinstance(size, (int, np.integer)) else (int(size[0]), int(size[1]))
    except (TypeError, ValueError, IndexError) as e:
        raise ConfigError(f"{who}: size must be an int or (h, w); got {size!r}") from e
    if isinstance(size, bool) or h < 1 or w < 1 or (not isinstance(size, (int, np.integer)) and len(size) != 2):
        raise ConfigError(f"{who}: size must be an int >= 1 or (h, w) of ints >= 1; got {size!r}")
    return int(h), int(w)


def _where(sample: dict) -> str:
    return f" of {sample['path']}" if isinstance(sample.get("path"), str) else ""


def _clip(sample: dict, who: str) -> Tensor:
    """``sample['clip']``, a tensor ``[T, H, W, C]`` or ``[V, T, H, W, C]``, or an InputError."""
    clip = sample.get("clip") if isinstance(sample, dict) else None
    if not isinstance(clip, Tensor) or clip.dim() not in (4, 5):
        got = tuple(clip.shape) if isinstance(clip, Tensor) else type(clip).__name__
        fields = sorted(sample) if isinstance(sample, dict) else type(sample).__name__
        raise InputError(f"{who}: sample['clip']{_where(sample) if isinstance(sample, dict) else ''} must be a tensor "
                         f"[T, H, W, C] or [V, T, H, W, C]; got {got} (sample fields: {fields}). Clip transforms go "
                         f"before PackClip")
    return clip


def _crop(sample: dict, clip: Tensor, y: int, x: int, h: int, w: int) -> dict:
    return {**sample, "clip": clip[..., y:y + h, x:x + w, :]}


def _check_fits(who: str, sample: dict, clip: Tensor, h: int, w: int) -> None:
    H, W = clip.shape[-3:-1]
    if H < h or W < w:
        raise InputError(f"{who}: the clip{_where(sample)} is {W}x{H} (W x H), smaller than the crop {w}x{h}; resize "
                         f"it first (ResizeClip) or crop less")


class ResizeClip:
    """Resize every frame: ``scale`` an int resizes the short side to it (aspect ratio kept, the long
    side rounded), ``(h, w)`` resizes to exactly that. Bilinear with antialiasing (torch); uint8 in,
    uint8 out.

    >>> ResizeClip(8)(dict(clip=torch.zeros(3, 16, 32, 3, dtype=torch.uint8)), None)["clip"].shape
    torch.Size([3, 8, 16, 3])
    """

    def __init__(self, scale):
        self.short = int(scale) if isinstance(scale, (int, np.integer)) and not isinstance(scale, bool) else None
        if self.short is not None and self.short < 1:
            raise ConfigError(f"ResizeClip: scale must be an int >= 1 (the short side) or (h, w); got {scale!r}")
        self.size = None if self.short is not None else _pair("ResizeClip", scale)

    def target(self, H: int, W: int) -> tuple[int, int]:
        """The ``(h, w)`` a ``H x W`` frame is resized to."""
        if self.size is not None:
            return self.size
        if H <= W:
            return self.short, max(1, round(W * self.short / H))
        return max(1, round(H * self.short / W)), self.short

    def __call__(self, sample: dict, rng: np.random.Generator | None = None) -> dict:
        clip = _clip(sample, "ResizeClip")
        *lead, H, W, C = clip.shape
        h, w = self.target(H, W)
        if (h, w) == (H, W):
            return sample
        x = clip.reshape(-1, H, W, C).permute(0, 3, 1, 2)  # [N, C, H, W]
        y = torch.nn.functional.interpolate(x.float(), size=(h, w), mode="bilinear", antialias=True,
                                            align_corners=False)
        if clip.dtype == torch.uint8:
            y = y.round_().clamp_(0, 255).to(torch.uint8)
        else:
            y = y.to(clip.dtype)
        return {**sample, "clip": y.permute(0, 2, 3, 1).reshape(*lead, h, w, C).contiguous()}

    def __repr__(self):
        return f"ResizeClip(scale={self.short if self.short is not None else self.size})"


class RandomCropClip:
    """Crop ``size`` (``h, w``) at one random place, the same for every frame and view."""

    def __init__(self, size):
        self.size = _pair("RandomCropClip", size)

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        clip = _clip(sample, "RandomCropClip")
        h, w = self.size
        _check_fits("RandomCropClip", sample, clip, h, w)
        H, W = clip.shape[-3:-1]
        y, x = int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1))
        return _crop(sample, clip, y, x, h, w)

    def __repr__(self):
        return f"RandomCropClip(size={self.size})"


class CenterCropClip:
    """Crop ``size`` (``h, w``) at the centre of every frame."""

    def __init__(self, size):
        self.size = _pair("CenterCropClip", size)

    def __call__(self, sample: dict, rng: np.random.Generator | None = None) -> dict:
        clip = _clip(sample, "CenterCropClip")
        h, w = self.size
        _check_fits("CenterCropClip", sample, clip, h, w)
        H, W = clip.shape[-3:-1]
        return _crop(sample, clip, (H - h) // 2, (W - w) // 2, h, w)

    def __repr__(self):
        return f"CenterCropClip(size={self.size})"


class ThreeCropClip:
    """Test-time three-crop: three ``size`` crops along the frame's longer side (left, centre, right;
    or top, centre, bottom), as views: ``[T, H, W, C] -> [3, T, h, w, C]``, ``[V, T, H, W, C] ->
    [V * 3, T, h, w, C]`` (view-major). Cover the whole frame by resizing its short side to the crop
    first (``ResizeClip(size)``)."""

    def __init__(self, size):
        self.size = _pair("ThreeCropClip", size)

    def offsets(self, H: int, W: int) -> list[tuple[int, int]]:
        """The ``(y, x)`` of the three crops of a ``H x W`` frame."""
        h, w = self.size
        cy, cx = (H - h) // 2, (W - w) // 2
        if W - w >= H - h:
            return [(cy, 0), (cy, cx), (cy, W - w)]
        return [(0, cx), (cy, cx), (H - h, cx)]

    def __call__(self, sample: dict, rng: np.random.Generator | None = None) -> dict:
        clip = _clip(sample, "ThreeCropClip")
        h, w = self.size
        _check_fits("ThreeCropClip", sample, clip, h, w)
        views = clip if clip.dim() == 5 else clip[None]  # [V, T, H, W, C]
        crops = [views[..., y:y + h, x:x + w, :] for y, x in self.offsets(*clip.shape[-3:-1])]
        out = torch.stack(crops, 1)  # [V, 3, T, h, w, C]
        return {**sample, "clip": out.flatten(0, 1)}

    def __repr__(self):
        return f"ThreeCropClip(size={self.size})"


class FlipClip:
    """Flip every frame horizontally with probability ``p`` (one draw per clip). Labels that name a
    horizontal direction (left / right motion) change under a flip: give such datasets ``p=0`` or a
    label map (``flip_label``: the label each label becomes when flipped)."""

    def __init__(self, p: float = 0.5, flip_label: Sequence[int] | None = None):
        if not 0 <= float(p) <= 1:
            raise ConfigError(f"FlipClip: p must be in [0, 1]; got {p!r}")
        self.p = float(p)
        self.flip_label = None if flip_label is None else [int(v) for v in flip_label]

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        clip = _clip(sample, "FlipClip")
        if self.p == 0 or rng.random() >= self.p:
            return sample
        out = {**sample, "clip": clip.flip(-2)}
        if self.flip_label is not None and "label" in sample:
            label = int(sample["label"])
            if not 0 <= label < len(self.flip_label):
                raise InputError(f"FlipClip: label {label}{_where(sample)} has no entry in flip_label "
                                 f"({len(self.flip_label)} labels)")
            out["label"] = self.flip_label[label]
        return out

    def __repr__(self):
        return f"FlipClip(p={self.p}" + (f", flip_label={self.flip_label})" if self.flip_label else ")")


class NormalizeClip:
    """``(x / 255 - mean) / std`` per channel for uint8 clips (``mean``, ``std`` in [0, 1] units, as
    the image data preprocessor), ``(x - mean) / std`` for float clips; float32 out. One value, or
    one per channel."""

    def __init__(self, mean: Sequence[float] = (0.5,), std: Sequence[float] = (0.5,)):
        self.mean = torch.tensor([float(m) for m in np.atleast_1d(mean)], dtype=torch.float32)
        self.std = torch.tensor([float(s) for s in np.atleast_1d(std)], dtype=torch.float32)
        if (self.std <= 0).any() or self.mean.numel() != self.std.numel():
            raise ConfigError(f"NormalizeClip: mean and std need one length and std > 0; got {mean!r}, {std!r}")

    def __call__(self, sample: dict, rng: np.random.Generator | None = None) -> dict:
        clip = _clip(sample, "NormalizeClip")
        C = clip.shape[-1]
        if self.mean.numel() not in (1, C):
            raise InputError(f"NormalizeClip has mean/std for {self.mean.numel()} channels but the clip"
                             f"{_where(sample)} has {C}")
        x = clip.float() / 255.0 if clip.dtype == torch.uint8 else clip.float()
        return {**sample, "clip": (x - self.mean) / self.std}

    def __repr__(self):
        return f"NormalizeClip(mean={self.mean.tolist()}, std={self.std.tolist()})"


class PackClip:
    """``clip [..., T, H, W, C] -> inputs [..., C, T, H, W]`` (contiguous, dtype kept); other keys kept."""

    def __call__(self, sample: dict, rng: np.random.Generator | None = None) -> dict:
        clip = _clip(sample, "PackClip")
        out = {k: v for k, v in sample.items() if k != "clip"}
        out["inputs"] = clip.movedim(-1, -4).contiguous()
        return out

    def __repr__(self):
        return "PackClip()"

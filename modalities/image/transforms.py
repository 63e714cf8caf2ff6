"""Image transforms on ``sample['img']``: a ``uint8 [H, W, C]`` numpy array.

Every transform is ``t(sample, rng) -> sample``; random ones draw only from ``rng`` (see
``glocal.modalities.dataset``). Normalisation happens on the batch, in ``ImageDataPreprocessor``.

Segmentation: when a sample carries ``sample['seg']`` (an integer label map ``[H, W]``), every
geometric transform applies the same geometry to it: the same crop, flip and resize (nearest
neighbour, with PIL's pixel-centre convention, so it stays aligned with the bilinear image). Pixels
a crop pads are labelled ``seg_fill`` (default -100, the losses' default ``ignore_index``), so
padding is never scored. Labels come out int64. ``RandomErasing`` changes pixels, not labels, and
leaves ``seg`` alone. Samples without ``seg`` are transformed exactly as before (same output, same
draws from ``rng``).
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from glocal.core.errors import InputError

__all__ = ["RandomCrop", "RandomFlip", "Resize", "CenterCrop", "RandomResizedCrop", "RandomErasing",
           "PackInputs"]


def _pair(size) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else tuple(size)


def _img(sample: dict, who: str) -> np.ndarray:
    img = sample.get("img")
    if not isinstance(img, np.ndarray) or img.ndim != 3:
        raise InputError(f"{who}: sample['img'] must be a uint8 array [H, W, C]; got "
                         f"{getattr(img, 'shape', type(img).__name__)}")
    return img


def _seg(sample: dict, img: np.ndarray, who: str) -> np.ndarray | None:
    """``sample['seg']`` checked against the image (same ``[H, W]``, integer), or None when absent."""
    seg = sample.get("seg")
    if seg is None:
        return None
    if (not isinstance(seg, np.ndarray) or seg.ndim != 2 or seg.shape != img.shape[:2]
            or not np.issubdtype(seg.dtype, np.integer)):
        raise InputError(f"{who}: sample['seg'] must be an integer label array [H, W] matching the image "
                         f"{img.shape[:2]}; got {getattr(seg, 'dtype', type(seg).__name__)} "
                         f"{getattr(seg, 'shape', '')}")
    return seg


def _with(sample: dict, img: np.ndarray, seg: np.ndarray | None) -> dict:
    """The sample with the new image, and the new label map where it has one."""
    return {**sample, "img": img} if seg is None else {**sample, "img": img, "seg": seg}


def _resize_nearest(seg: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a label map ``[H, W] -> [h, w]`` (int64), sampling at pixel
    centres as PIL does: output pixel ``i`` reads input ``floor((i + 0.5) * H / h)``."""
    H, W = seg.shape
    ys = np.minimum(((np.arange(size[0]) + 0.5) * (H / size[0])).astype(np.int64), H - 1)  # [h]
    xs = np.minimum(((np.arange(size[1]) + 0.5) * (W / size[1])).astype(np.int64), W - 1)  # [w]
    return seg.astype(np.int64, copy=False)[ys[:, None], xs[None, :]]  # [h, w]


def _resize(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    pil = Image.fromarray(img[..., 0] if img.shape[2] == 1 else img)
    out = np.asarray(pil.resize((size[1], size[0]), Image.BILINEAR))
    return out[..., None] if out.ndim == 2 else out


class RandomCrop:
    """Pad by ``padding`` (constant ``fill``; ``seg`` with ``seg_fill``) and crop ``size`` at a random
    position."""

    def __init__(self, size, padding: int = 0, fill: int = 0, seg_fill: int = -100):
        self.size, self.padding, self.fill, self.seg_fill = _pair(size), padding, fill, seg_fill

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        img = _img(sample, "RandomCrop")
        seg = _seg(sample, img, "RandomCrop")
        if self.padding:
            p = self.padding
            img = np.pad(img, ((p, p), (p, p), (0, 0)), constant_values=self.fill)
            if seg is not None:  # [H + 2p, W + 2p]
                seg = np.pad(seg.astype(np.int64, copy=False), p, constant_values=self.seg_fill)
        h, w = self.size
        if img.shape[0] < h or img.shape[1] < w:
            raise InputError(f"RandomCrop: image {img.shape[:2]} is smaller than the crop {self.size}")
        y = rng.integers(0, img.shape[0] - h + 1)
        x = rng.integers(0, img.shape[1] - w + 1)
        return _with(sample, img[y:y + h, x:x + w], None if seg is None else seg[y:y + h, x:x + w])

    def __repr__(self):
        return f"RandomCrop(size={self.size}, padding={self.padding})"


class RandomFlip:
    """Flip horizontally with probability ``p``."""

    def __init__(self, p: float = 0.5):
        self.p = p

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        img = _img(sample, "RandomFlip")
        seg = _seg(sample, img, "RandomFlip")
        if rng.random() < self.p:
            img = img[:, ::-1]
            seg = None if seg is None else seg[:, ::-1]
        return _with(sample, img, seg)

    def __repr__(self):
        return f"RandomFlip(p={self.p})"


class Resize:
    """Bilinear resize to ``size`` (h, w); ``seg`` nearest-neighbour."""

    def __init__(self, size):
        self.size = _pair(size)

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        img = _img(sample, "Resize")
        seg = _seg(sample, img, "Resize")
        return _with(sample, _resize(img, self.size), None if seg is None else _resize_nearest(seg, self.size))


class CenterCrop:
    def __init__(self, size):
        self.size = _pair(size)

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        img = _img(sample, "CenterCrop")
        seg = _seg(sample, img, "CenterCrop")
        h, w = self.size
        y, x = max(0, (img.shape[0] - h) // 2), max(0, (img.shape[1] - w) // 2)
        return _with(sample, img[y:y + h, x:x + w], None if seg is None else seg[y:y + h, x:x + w])


class RandomResizedCrop:
    """Crop a random area fraction in ``scale`` with aspect ratio in ``ratio``, resize to ``size``."""

    def __init__(self, size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
        self.size, self.scale, self.ratio = _pair(size), scale, ratio

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        img = _img(sample, "RandomResizedCrop")
        seg = _seg(sample, img, "RandomResizedCrop")
        H, W = img.shape[:2]
        y, x, h, w = 0, 0, H, W  # fallback after 10 misses: the whole image
        for _ in range(10):
            area = H * W * rng.uniform(*self.scale)
            aspect = np.exp(rng.uniform(np.log(self.ratio[0]), np.log(self.ratio[1])))
            cw, ch = int(round(np.sqrt(area * aspect))), int(round(np.sqrt(area / aspect)))
            if 0 < cw <= W and 0 < ch <= H:
                y, x, h, w = rng.integers(0, H - ch + 1), rng.integers(0, W - cw + 1), ch, cw
                break
        img = _resize(img[y:y + h, x:x + w], self.size)
        return _with(sample, img, None if seg is None else _resize_nearest(seg[y:y + h, x:x + w], self.size))


class RandomErasing:
    """With probability ``p``, zero a random rectangle of area fraction in ``scale`` (Zhong et al.).
    Labels (``seg``) are left as they are."""

    def __init__(self, p: float = 0.25, scale=(0.02, 0.2), ratio=(0.3, 3.3), value: int = 0):
        self.p, self.scale, self.ratio, self.value = p, scale, ratio, value

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        img = _img(sample, "RandomErasing")
        if rng.random() >= self.p:
            return sample
        H, W = img.shape[:2]
        area = H * W * rng.uniform(*self.scale)
        aspect = np.exp(rng.uniform(np.log(self.ratio[0]), np.log(self.ratio[1])))
        h, w = min(H, int(round(np.sqrt(area / aspect)))), min(W, int(round(np.sqrt(area * aspect))))
        y, x = rng.integers(0, H - h + 1), rng.integers(0, W - w + 1)
        img = img.copy()
        img[y:y + h, x:x + w] = self.value
        return {**sample, "img": img}


class PackInputs:
    """``img [H, W, C] uint8 -> inputs [C, H, W] uint8 tensor``; ``seg [H, W] -> int64 tensor [H, W]``;
    other keys kept (labels, ids)."""

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        img = _img(sample, "PackInputs")
        seg = _seg(sample, img, "PackInputs")
        out = {k: v for k, v in sample.items() if k != "img"}
        out["inputs"] = torch.from_numpy(np.require(img.transpose(2, 0, 1), requirements=("C", "W")))
        if seg is not None:
            out["seg"] = torch.from_numpy(np.require(seg, dtype=np.int64, requirements=("C", "W")))
        return out

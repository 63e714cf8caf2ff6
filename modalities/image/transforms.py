"""Image transforms on ``sample['img']``: a ``uint8 [H, W, C]`` numpy array.

Every transform is ``t(sample, rng) -> sample``; random ones draw only from ``rng`` (see
``glocal.modalities.dataset``). Normalisation happens on the batch, in ``ImageDataPreprocessor``.
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


def _resize(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    pil = Image.fromarray(img[..., 0] if img.shape[2] == 1 else img)
    out = np.asarray(pil.resize((size[1], size[0]), Image.BILINEAR))
    return out[..., None] if out.ndim == 2 else out


class RandomCrop:
    """Pad by ``padding`` (constant ``fill``) and crop ``size`` at a random position."""

    def __init__(self, size, padding: int = 0, fill: int = 0):
        self.size, self.padding, self.fill = _pair(size), padding, fill

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        img = _img(sample, "RandomCrop")
        if self.padding:
            p = self.padding
            img = np.pad(img, ((p, p), (p, p), (0, 0)), constant_values=self.fill)
        h, w = self.size
        if img.shape[0] < h or img.shape[1] < w:
            raise InputError(f"RandomCrop: image {img.shape[:2]} is smaller than the crop {self.size}")
        y = rng.integers(0, img.shape[0] - h + 1)
        x = rng.integers(0, img.shape[1] - w + 1)
        return {**sample, "img": img[y:y + h, x:x + w]}

    def __repr__(self):
        return f"RandomCrop(size={self.size}, padding={self.padding})"


class RandomFlip:
    """Flip horizontally with probability ``p``."""

    def __init__(self, p: float = 0.5):
        self.p = p

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        img = _img(sample, "RandomFlip")
        if rng.random() < self.p:
            img = img[:, ::-1]
        return {**sample, "img": img}

    def __repr__(self):
        return f"RandomFlip(p={self.p})"


class Resize:
    """Bilinear resize to ``size`` (h, w)."""

    def __init__(self, size):
        self.size = _pair(size)

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        return {**sample, "img": _resize(_img(sample, "Resize"), self.size)}


class CenterCrop:
    def __init__(self, size):
        self.size = _pair(size)

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        img = _img(sample, "CenterCrop")
        h, w = self.size
        y, x = max(0, (img.shape[0] - h) // 2), max(0, (img.shape[1] - w) // 2)
        return {**sample, "img": img[y:y + h, x:x + w]}


class RandomResizedCrop:
    """Crop a random area fraction in ``scale`` with aspect ratio in ``ratio``, resize to ``size``."""

    def __init__(self, size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
        self.size, self.scale, self.ratio = _pair(size), scale, ratio

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        img = _img(sample, "RandomResizedCrop")
        H, W = img.shape[:2]
        for _ in range(10):
            area = H * W * rng.uniform(*self.scale)
            aspect = np.exp(rng.uniform(np.log(self.ratio[0]), np.log(self.ratio[1])))
            w, h = int(round(np.sqrt(area * aspect))), int(round(np.sqrt(area / aspect)))
            if 0 < w <= W and 0 < h <= H:
                y, x = rng.integers(0, H - h + 1), rng.integers(0, W - w + 1)
                return {**sample, "img": _resize(img[y:y + h, x:x + w], self.size)}
        return {**sample, "img": _resize(img, self.size)}


class RandomErasing:
    """With probability ``p``, zero a random rectangle of area fraction in ``scale`` (Zhong et al.)."""

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
    """``img [H, W, C] uint8 -> inputs [C, H, W] uint8 tensor``; other keys kept (labels, ids)."""

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        img = _img(sample, "PackInputs")
        out = {k: v for k, v in sample.items() if k != "img"}
        out["inputs"] = torch.from_numpy(np.require(img.transpose(2, 0, 1), requirements=("C", "W")))
        return out

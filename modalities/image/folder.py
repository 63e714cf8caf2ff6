"""A class-per-subfolder image dataset (``root/<class>/<image>``), read with PIL."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from glocal.core.errors import DatasetNotFoundError, InputError

from ..dataset import GlocalDataset

__all__ = ["ImageFolder", "IMAGE_EXTENSIONS"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


class ImageFolder(GlocalDataset):
    """Images under ``root/<class name>/``; classes sorted by name.

    Args:
        root: dataset folder.
        mode: PIL mode every image is converted to (``"RGB"``, ``"L"``), so channel counts agree.
        transforms: transform list ending in ``PackInputs``.
    """

    def __init__(self, root: str, mode: str = "RGB", transforms=None, extensions=IMAGE_EXTENSIONS):
        super().__init__(transforms)
        root_path = Path(root)
        if not root_path.is_dir():
            raise DatasetNotFoundError(f"ImageFolder: {root} is not a folder (expected root/<class>/<image>)")
        classes = sorted(p.name for p in root_path.iterdir() if p.is_dir())
        if not classes:
            raise DatasetNotFoundError(f"ImageFolder: {root} has no class subfolders (expected root/<class>/<image>)")
        self.samples = [(str(f), i) for i, c in enumerate(classes)
                        for f in sorted((root_path / c).rglob("*")) if f.suffix.lower() in extensions]
        if not self.samples:
            raise DatasetNotFoundError(f"ImageFolder: no images with extensions {extensions} under {root}")
        self.mode = mode
        self.metainfo = dict(classes=tuple(classes))

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> dict:
        path, label = self.samples[index]
        try:
            with Image.open(path) as im:
                img = np.asarray(im.convert(self.mode))
        except (UnidentifiedImageError, OSError) as e:
            raise InputError(f"ImageFolder: cannot read image {path}: {e}") from e
        return dict(img=img[..., None] if img.ndim == 2 else img, label=label, path=path)

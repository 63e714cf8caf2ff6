"""A class-per-subfolder image dataset (``root/<class>/<image>``), read with PIL.

:func:`read_image` decodes one file into ``uint8 [H, W, C]``; whatever goes wrong decoding it
(truncated, corrupt or empty files, formats PIL cannot read) is a :class:`DataError` naming the file.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from glocal.core.errors import ConfigError, DataError, DatasetNotFoundError

from ..dataset import GlocalDataset

__all__ = ["ImageFolder", "IMAGE_EXTENSIONS", "IMAGE_MODES", "read_image", "read_image_file"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
IMAGE_MODES = ("L", "LA", "RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV")  # PIL modes of 8 bits per channel


def read_image(path: str, mode: str = "RGB") -> np.ndarray:
    """The image file ``path`` as ``uint8 [H, W, C]`` in PIL mode ``mode`` (one of :data:`IMAGE_MODES`).

    16-bit greyscale images (PIL modes ``I;16*``) are scaled to 8 bits, where PIL's own conversion
    would clip them to 255; images PIL decodes to 32-bit integers or floats (modes ``I``, ``F``),
    whose range is unknown, are refused.
    """
    try:
        with Image.open(path) as im:
            if im.mode.startswith("I;16"):  # 16-bit greyscale: keep the top 8 bits
                wide = np.asarray(im, dtype=np.uint16)  # [H, W]
                im = Image.fromarray((wide >> 8).astype(np.uint8))
            elif im.mode in ("I", "F"):
                kind = "integers" if im.mode == "I" else "floats"
                raise DataError(f"{path}: PIL decodes this image to 32-bit {kind} (mode {im.mode!r}: a 16-bit PGM, "
                                f"a 32-bit TIFF, ...), whose pixel range is unknown; "
                                f"convert the file to 8 bits per channel (or to a 16-bit PNG)")
            img = np.asarray(im.convert(mode))
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - PIL raises many types (OSError, SyntaxError, ValueError, ...) for bad files
        reason = str(e) or type(e).__name__
        raise DataError(f"cannot read image {path}: {reason} ({type(e).__name__}); the file is truncated, corrupt "
                        f"or not an image PIL can decode") from e
    if img.dtype != np.uint8 or img.ndim not in (2, 3) or 0 in img.shape:
        raise DataError(f"cannot read image {path}: decoded to {img.dtype} {img.shape}, not uint8 [H, W, C]")
    return img[..., None] if img.ndim == 2 else img  # [H, W, C]


def read_image_file(path: str, mode: str = "RGB", size: tuple[int, int] | None = None,
                    who: str = "the") -> tuple[np.ndarray, tuple[int, int]]:
    """A user's image for inference (the image datasets' ``from_file``): ``(uint8 [H, W, C], the
    file's own (H, W))``. :func:`read_image` in PIL mode ``mode``, a missing file named as such,
    and, when ``size = (H, W)`` is given and the file has another size, each channel resized
    bilinearly to it, with a ``UserWarning`` that names the file and both sizes (``who`` names
    the models that need that size)."""
    if not Path(path).is_file():
        raise DataError(f"{path}: image file not found" + (" (it is a directory)" if Path(path).is_dir() else ""))
    img = read_image(path, mode)
    own = (img.shape[0], img.shape[1])
    if size is not None and own != tuple(size):
        H, W = (int(v) for v in size)
        warnings.warn(f"{path} is {own[1]}x{own[0]} pixels (W x H); {who} models take {W}x{H} images: resized to "
                      f"{W}x{H} (aspect ratio not kept)", UserWarning, stacklevel=3)
        img = np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(img[..., c])).resize((W, H), Image.BILINEAR))
                        for c in range(img.shape[2])], -1)  # [H, W, C]
    return img, own


class ImageFolder(GlocalDataset):
    """Images under ``root/<class name>/``; classes sorted by name.

    Args:
        root: dataset folder.
        mode: PIL mode every image is converted to (``"RGB"``, ``"L"``), so channel counts agree.
        transforms: transform list ending in ``PackInputs``.
        on_error, max_skips: what an unreadable image does (raise, or skip it), see
            :class:`~glocal.modalities.dataset.GlocalDataset`.
    """

    input_extensions = IMAGE_EXTENSIONS  # what from_file reads, for a folder input of tools/infer.py

    def __init__(self, root: str, mode: str = "RGB", transforms=None, extensions=IMAGE_EXTENSIONS,
                 on_error: str = "error", max_skips: int | None = None):
        super().__init__(transforms, on_error=on_error, max_skips=max_skips)
        if mode not in IMAGE_MODES:
            raise ConfigError(f"ImageFolder: mode must be one of {IMAGE_MODES} (8 bits per channel); got {mode!r}")
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

    @classmethod
    def from_file(cls, source: str, mode: str = "RGB") -> dict:
        """One image file of the user's as a raw sample (``img [H, W, C]`` in ``mode``, ``path``),
        for inference (``tools/infer.py``); the config's transforms (resize, crop) apply after."""
        if mode not in IMAGE_MODES:
            raise ConfigError(f"ImageFolder: mode must be one of {IMAGE_MODES} (8 bits per channel); got {mode!r}")
        return dict(img=read_image_file(source, mode)[0], path=str(source))

    def __len__(self) -> int:
        return len(self.samples)

    def describe(self, index: int) -> str:
        return self.samples[index][0]

    def load(self, index: int) -> dict:
        path, label = self.samples[index]
        return dict(img=read_image(path, self.mode), label=label, path=path)

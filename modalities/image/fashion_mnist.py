"""Fashion-MNIST (Xiao et al. 2017) read from the original IDX files.

Debian's ``dataset-fashion-mnist`` package installs them (gzipped) under
``/usr/share/datasets/fashion-mnist/``. The reader parses the IDX header itself (magic number,
dimensions, big-endian sizes) and checks that images and labels agree.
"""
from __future__ import annotations

import gzip
import math
import os
import zlib
from functools import lru_cache
from pathlib import Path

import numpy as np

from glocal.core.errors import DataError, DatasetNotFoundError, InputError

from ..dataset import GlocalDataset
from .folder import IMAGE_EXTENSIONS

__all__ = ["FashionMNIST", "read_idx", "FASHION_MNIST_ROOT", "FASHION_MNIST_CLASSES"]

FASHION_MNIST_ROOT = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                         "Sneaker", "Bag", "Ankle boot")
_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
          "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
_MAX_DIMS = 32  # numpy's limit on array dimensions before numpy 2 (64 since); IDX arrays have a few
_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (optionally gzipped) into an array of its declared type and shape; a file
    that is not one, or is truncated or corrupt, is a :class:`DataError` naming it."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except FileNotFoundError as e:
        raise DatasetNotFoundError(f"{path}: no such IDX file") from e
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{path}: cannot read the IDX file ({type(e).__name__}: {e}); it is truncated or "
                        f"corrupt") from e
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _DTYPES:
        raise DataError(f"{path}: not an IDX file (bad magic number {data[:4].hex()})")
    ndim = data[3]
    offset = 4 + 4 * ndim
    if len(data) < offset:
        raise DataError(f"{path}: the IDX header declares {ndim} dimensions ({offset} header bytes) but the file "
                        f"has {len(data)} bytes; the file is truncated or corrupt")
    dims = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_DTYPES[data[2]])
    expected = offset + math.prod(dims) * dtype.itemsize  # Python ints: no overflow for absurd headers
    if len(data) != expected:
        raise DataError(f"{path}: IDX header declares shape {dims} ({expected} bytes) but the file "
                        f"has {len(data)} bytes; the file is truncated or corrupt")
    if ndim > _MAX_DIMS:
        raise DataError(f"{path}: the IDX header declares {ndim} dimensions, more than the {_MAX_DIMS} an array "
                        f"may have; the file is corrupt")
    return np.frombuffer(data, dtype=dtype, offset=offset).reshape(dims)


def _find(root: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        if (root / name).is_file():
            return root / name
    raise DatasetNotFoundError(
        f"Fashion-MNIST file {stem}[.gz] not found under {root}. Install Debian's package: "
        f"`sudo apt-get install dataset-fashion-mnist` (it puts the IDX files in {FASHION_MNIST_ROOT}), "
        f"or pass root=<folder with the four IDX files>.")


def fashion_mnist_root(root: str | None = None) -> str:
    """The folder with the IDX files: ``root``, else ``$GLOCAL_FASHION_MNIST``, else Debian's."""
    root = root or os.environ.get("GLOCAL_FASHION_MNIST", FASHION_MNIST_ROOT)
    if not Path(root).is_dir():
        raise DatasetNotFoundError(
            f"Fashion-MNIST folder {root} does not exist. Install Debian's package: "
            f"`sudo apt-get install dataset-fashion-mnist`, or pass root=<folder with the IDX files>.")
    return str(root)


@lru_cache(maxsize=4)
def _load_split(root: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    images_stem, labels_stem = _FILES[split]
    images = read_idx(_find(Path(root), images_stem))
    labels = read_idx(_find(Path(root), labels_stem)).astype(np.int64)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise InputError(f"Fashion-MNIST {split} under {root}: images {images.shape} and labels "
                         f"{labels.shape} do not match")
    return images, labels


class FashionMNIST(GlocalDataset):
    """Fashion-MNIST, 28x28 grayscale, 10 classes; 60,000 train / 10,000 test images.

    Samples are ``{'img': uint8 [28, 28, 1], 'label': int}`` before the transforms.

    Args:
        root: folder holding the IDX files (default: Debian's location, or ``$GLOCAL_FASHION_MNIST``).
        split: ``"train"`` or ``"test"``.
        transforms: list of transforms (config dicts or callables), ending in ``PackInputs``.
        limit: keep only the first ``limit`` samples (quick runs, tests).
        on_error, max_skips: what a sample that fails in the transforms does (raise, or skip it), see
            :class:`~glocal.modalities.dataset.GlocalDataset`.
    """

    metainfo = dict(classes=FASHION_MNIST_CLASSES)
    input_extensions = IMAGE_EXTENSIONS  # the image files from_file reads

    def __init__(self, root: str | None = None, split: str = "train", transforms=None, limit: int | None = None,
                 on_error: str = "error", max_skips: int | None = None):
        super().__init__(transforms, on_error=on_error, max_skips=max_skips)
        if split not in _FILES:
            raise InputError(f"FashionMNIST split must be 'train' or 'test'; got {split!r}")
        self.root, self.split = fashion_mnist_root(root), split
        images, labels = _load_split(self.root, split)
        self.images, self.labels = (images[:limit], labels[:limit]) if limit else (images, labels)

    def __len__(self) -> int:
        return len(self.labels)

    def load(self, index: int) -> dict:
        return dict(img=self.images[index][..., None], label=int(self.labels[index]))

    @classmethod
    def from_file(cls, source: str) -> dict:
        """One image file of the user's as a raw sample (``img uint8 [28, 28, 1]``, ``path``), for
        inference (``tools/infer.py``): converted to greyscale, and resized to 28x28 with a warning
        when it has another size. Fashion-MNIST items are light on a black background, centred and
        filling the frame: a photo of dark clothes on white needs inverting first."""
        from .folder import read_image_file

        return dict(img=read_image_file(source, "L", (28, 28), "Fashion-MNIST")[0], path=str(source))

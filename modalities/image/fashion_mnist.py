"""Fashion-MNIST (Xiao et al. 2017) read from the original IDX files.

Debian's ``dataset-fashion-mnist`` package installs them (gzipped) under
``/usr/share/datasets/fashion-mnist/``. The reader parses the IDX header itself (magic number,
dimensions, big-endian sizes) and checks that images and labels agree.
"""
from __future__ import annotations

import gzip
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from glocal.core.errors import DatasetNotFoundError, InputError

from ..dataset import GlocalDataset

__all__ = ["FashionMNIST", "read_idx", "FASHION_MNIST_ROOT", "FASHION_MNIST_CLASSES"]

FASHION_MNIST_ROOT = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                         "Sneaker", "Bag", "Ankle boot")
_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
          "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (optionally gzipped) into an array of its declared type and shape."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _DTYPES:
        raise InputError(f"{path}: not an IDX file (bad magic number {data[:4].hex()})")
    ndim = data[3]
    dims = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_DTYPES[data[2]])
    offset = 4 + 4 * ndim
    expected = offset + int(np.prod(dims)) * dtype.itemsize
    if len(data) != expected:
        raise InputError(f"{path}: IDX header declares shape {dims} ({expected} bytes) but the file "
                         f"has {len(data)} bytes; the file is truncated or corrupt")
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
    """

    metainfo = dict(classes=FASHION_MNIST_CLASSES)

    def __init__(self, root: str | None = None, split: str = "train", transforms=None, limit: int | None = None):
        super().__init__(transforms)
        if split not in _FILES:
            raise InputError(f"FashionMNIST split must be 'train' or 'test'; got {split!r}")
        self.root, self.split = fashion_mnist_root(root), split
        images, labels = _load_split(self.root, split)
        self.images, self.labels = (images[:limit], labels[:limit]) if limit else (images, labels)

    def __len__(self) -> int:
        return len(self.labels)

    def load(self, index: int) -> dict:
        return dict(img=self.images[index][..., None], label=int(self.labels[index]))

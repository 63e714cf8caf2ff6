import gzip
import struct

import numpy as np
import pytest

from glocal.core import DatasetNotFoundError, InputError
from glocal.modalities.image import FASHION_MNIST_CLASSES, FashionMNIST, read_idx


def _write_idx(path, array, code=0x08, gz=True):
    header = bytes([0, 0, code, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    data = header + array.astype(">u1" if code == 0x08 else ">i4").tobytes()
    (gzip.open if gz else open)(path, "wb").write(data)


def test_read_idx_roundtrip(tmp_path):
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    _write_idx(tmp_path / "a.gz", a)
    assert np.array_equal(read_idx(tmp_path / "a.gz"), a)
    b = np.array([1, -5, 70000], dtype=np.int32)
    _write_idx(tmp_path / "b", b, code=0x0C, gz=False)
    assert np.array_equal(read_idx(tmp_path / "b"), b)


def test_read_idx_rejects_bad_files(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x12\x34\x08\x01abcd")
    with pytest.raises(InputError, match="not an IDX file"):
        read_idx(tmp_path / "bad")
    a = np.zeros((5, 2, 2), np.uint8)
    _write_idx(tmp_path / "short", a, gz=False)
    (tmp_path / "short").write_bytes((tmp_path / "short").read_bytes()[:-3])
    with pytest.raises(InputError, match="truncated"):
        read_idx(tmp_path / "short")


def test_small_folder_dataset(tmp_path):
    imgs = np.random.default_rng(0).integers(0, 255, (7, 28, 28), dtype=np.uint8)
    labels = np.arange(7, dtype=np.uint8) % 10
    for split, stem in (("train", "train"), ("test", "t10k")):
        _write_idx(tmp_path / f"{stem}-images-idx3-ubyte.gz", imgs)
        _write_idx(tmp_path / f"{stem}-labels-idx1-ubyte.gz", labels, code=0x08)
    ds = FashionMNIST(root=str(tmp_path), split="test", transforms=[dict(type="PackInputs")])
    assert len(ds) == 7
    s = ds[3]
    assert s["inputs"].shape == (1, 28, 28) and s["label"] == 3
    assert np.array_equal(s["inputs"][0].numpy(), imgs[3])


def test_missing_dataset_names_the_debian_package(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="apt-get install dataset-fashion-mnist"):
        FashionMNIST(root=str(tmp_path / "nowhere"))
    with pytest.raises(DatasetNotFoundError, match="apt-get install dataset-fashion-mnist"):
        FashionMNIST(root=str(tmp_path))  # folder exists, files do not


def test_real_fashion_mnist_from_debian():
    """The setup installs Debian's dataset-fashion-mnist; the full splits must read correctly."""
    train, test = FashionMNIST(split="train"), FashionMNIST(split="test")
    assert len(train) == 60_000 and len(test) == 10_000
    assert train.images.shape == (60_000, 28, 28) and train.images.dtype == np.uint8
    assert np.bincount(test.labels, minlength=10).tolist() == [1000] * 10  # balanced test set
    assert len(FASHION_MNIST_CLASSES) == 10

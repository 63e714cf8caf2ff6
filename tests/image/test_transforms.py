import numpy as np
import pytest
import torch

from glocal.core import InputError
from glocal.modalities.dataset import Compose, stack_collate
from glocal.modalities.image import (CenterCrop, PackInputs, RandomCrop, RandomErasing, RandomFlip,
                                     RandomResizedCrop, Resize)


def _sample(h=10, w=12, c=3):
    return dict(img=np.arange(h * w * c, dtype=np.uint8).reshape(h, w, c), label=1)


def test_random_transforms_depend_only_on_the_seed():
    pipe = Compose([dict(type="RandomCrop", size=8, padding=2), dict(type="RandomFlip"),
                    dict(type="RandomErasing", p=1.0), dict(type="PackInputs")])
    a = pipe(_sample(), np.random.default_rng(7))["inputs"]
    torch.manual_seed(123)
    np.random.seed(5)
    b = pipe(_sample(), np.random.default_rng(7))["inputs"]
    assert torch.equal(a, b)
    outs = {pipe(_sample(), np.random.default_rng(s))["inputs"].sum().item() for s in range(20)}
    assert len(outs) > 1


def test_shapes():
    rng = np.random.default_rng(0)
    assert RandomCrop(6)(_sample(), rng)["img"].shape == (6, 6, 3)
    assert Resize((5, 7))(_sample(), rng)["img"].shape == (5, 7, 3)
    assert Resize(4)(_sample(c=1), rng)["img"].shape == (4, 4, 1)
    assert CenterCrop(4)(_sample(), rng)["img"].shape == (4, 4, 3)
    assert RandomResizedCrop(9)(_sample(), rng)["img"].shape == (9, 9, 3)
    flipped = RandomFlip(p=1.0)(_sample(), rng)["img"]
    assert np.array_equal(flipped, _sample()["img"][:, ::-1])
    packed = PackInputs()(_sample(), rng)
    assert packed["inputs"].shape == (3, 10, 12) and packed["label"] == 1
    erased = RandomErasing(p=1.0, scale=(0.2, 0.2))(_sample(), rng)["img"]
    assert (erased == 0).sum() > (_sample()["img"] == 0).sum()


def test_bad_sample_gets_clear_error():
    with pytest.raises(InputError, match=r"uint8 array \[H, W, C\]"):
        RandomCrop(4)(dict(img=np.zeros((4, 4))), np.random.default_rng(0))
    with pytest.raises(InputError, match="smaller than the crop"):
        RandomCrop(20)(_sample(), np.random.default_rng(0))


def test_stack_collate():
    rng = np.random.default_rng(0)
    batch = stack_collate([PackInputs()(dict(_sample(), path=f"p{i}"), rng) for i in range(3)])
    assert batch["inputs"].shape == (3, 3, 10, 12) and batch["data_samples"]["label"].tolist() == [1, 1, 1]
    assert batch["data_samples"]["path"] == ["p0", "p1", "p2"]

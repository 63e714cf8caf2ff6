import hashlib

import numpy as np
import pytest
import torch
from PIL import Image

from glocal.core import InputError
from glocal.modalities.dataset import Compose, stack_collate
from glocal.modalities.image import (FASHION_MNIST_CLASSES, FASHION_MNIST_ROOT, CenterCrop, FashionMNISTScenes,
                                     PackInputs, RandomCrop, RandomErasing, RandomFlip, RandomResizedCrop, Resize)
from glocal.modalities.image import scenes
from glocal.modalities.image.fashion_mnist import _load_split
from glocal.modalities.image.transforms import _resize_nearest

N = 50


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache"


def _arrays(ds):
    return ds.images, ds.segs, ds.sources


def _same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(_arrays(a), _arrays(b)))


# --- generation ------------------------------------------------------------------------------------

def test_sample_format_and_metainfo(cache):
    ds = FashionMNISTScenes("test", num_canvases=N, cache_dir=cache)
    assert len(ds) == N and ds.sources.shape == (N, 4)
    s = ds.load(3)
    assert s["img"].shape == (64, 64, 1) and s["img"].dtype == np.uint8
    assert s["seg"].shape == (64, 64) and s["seg"].dtype == np.int64
    assert ds.metainfo["classes"] == ("background",) + FASHION_MNIST_CLASSES and len(ds.metainfo["classes"]) == 11
    ds = FashionMNISTScenes("train", num_canvases=N, canvas=(40, 48), items=(1, 2), cache_dir=cache)
    assert ds.load(0)["img"].shape == (40, 48, 1) and ds.sources.shape == (N, 2)


def test_same_arguments_same_canvases_other_seed_differs(cache, tmp_path):
    a = FashionMNISTScenes("train", num_canvases=N, cache_dir=cache)
    b = FashionMNISTScenes("train", num_canvases=N, cache_dir=tmp_path / "elsewhere")  # generated afresh
    assert _same(a, b)
    c = FashionMNISTScenes("train", num_canvases=N, seed=1, cache_dir=cache)
    assert not np.array_equal(a.images, c.images) and not np.array_equal(a.sources, c.sources)
    assert a.cache_path != c.cache_path


def test_fast_compose_matches_the_plain_loop():
    images, labels = _load_split(FASHION_MNIST_ROOT, "test")
    for kw in (dict(canvas=(64, 64), items=(2, 4), scale=(0.8, 1.3), flip=0.5),
               dict(canvas=(40, 45), items=(1, 5), scale=(0.2, 1.4), flip=1.0)):
        plan = scenes._plan(len(images), 28, num_canvases=60, rng=np.random.default_rng(0), **kw)
        fast = scenes._compose(images, labels, plan, kw["canvas"], 64)
        ref = scenes._compose_reference(images, labels, plan, kw["canvas"], 64)
        assert all(np.array_equal(x, y) for x, y in zip(fast, ref))


def test_strip_rescale_is_bit_identical_to_one_item_at_a_time():
    images = _load_split(FASHION_MNIST_ROOT, "test")[0][:7]
    noise = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    for items in (images, noise):
        for size in (1, 5, 22, 27, 28, 29, 36, 57):
            ref = np.stack([scenes._rescale(i, size) for i in items])
            assert np.array_equal(scenes._rescale_many(items, size), ref)


def test_second_construction_reads_the_cache(cache, monkeypatch):
    a = FashionMNISTScenes("test", num_canvases=N, cache_dir=cache)
    assert a.cache_path.is_file() and a.cache_path.parent == cache
    assert not list(cache.glob("*.tmp"))

    def boom(*args, **kwargs):
        raise AssertionError("regenerated although the cache holds these canvases")
    monkeypatch.setattr(scenes, "generate_scenes", boom)
    assert _same(a, FashionMNISTScenes("test", num_canvases=N, cache_dir=cache))
    with pytest.raises(AssertionError, match="regenerated"):  # other arguments, other file
        FashionMNISTScenes("test", num_canvases=N, ink_threshold=65, cache_dir=cache)


def test_default_cache_dir_follows_glocal_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GLOCAL_CACHE", str(tmp_path))
    ds = FashionMNISTScenes("test", num_canvases=4)
    assert ds.cache_path.parent == tmp_path / "data" / "scenes" and ds.cache_path.is_file()


@pytest.mark.parametrize("damage", ["garbage", "truncated", "wrong arrays"])
def test_corrupt_cache_is_regenerated_with_a_warning(cache, monkeypatch, damage):
    a = FashionMNISTScenes("test", num_canvases=N, cache_dir=cache)
    if damage == "garbage":
        a.cache_path.write_bytes(b"not a zip file")
    elif damage == "truncated":
        a.cache_path.write_bytes(a.cache_path.read_bytes()[:1000])
    else:
        np.savez(a.cache_path, img=a.images[:3], seg=a.segs[:3], sources=a.sources[:3])
    with pytest.warns(RuntimeWarning, match="regenerating"):
        b = FashionMNISTScenes("test", num_canvases=N, cache_dir=cache)
    assert _same(a, b)
    monkeypatch.setattr(scenes, "generate_scenes", lambda *a, **k: 1 / 0)
    assert _same(a, FashionMNISTScenes("test", num_canvases=N, cache_dir=cache))  # the file was rewritten


def test_labels_in_range_background_dominant_and_ink_labelled(cache):
    ds = FashionMNISTScenes("test", num_canvases=N, cache_dir=cache)
    labels = _load_split(FASHION_MNIST_ROOT, "test")[1]
    seg, img = ds.segs.astype(np.int64), ds.images
    assert seg.min() == 0 and seg.max() <= 10
    background = (seg == 0).mean()
    assert 0.5 < background < 0.95
    assert ((seg > 0).reshape(N, -1).sum(1) > 50).all()  # every canvas has items
    assert np.array_equal(img >= 64, seg > 0)  # ink pixels labelled, the rest background
    for i in range(N):
        present = set(np.unique(seg[i]).tolist()) - {0}
        assert present <= set((labels[ds.sources[i][ds.sources[i] >= 0]] + 1).tolist())
    count = (ds.sources >= 0).sum(1)
    assert count.min() >= 2 and count.max() <= 4 and len(set(count.tolist())) == 3
    assert (ds.sources[:, :2] >= 0).all() and (np.diff((ds.sources >= 0).astype(int), axis=1) <= 0).all()


def test_ink_threshold_is_respected(cache):
    ds = FashionMNISTScenes("test", num_canvases=N, ink_threshold=128, cache_dir=cache)
    assert np.array_equal(ds.images >= 128, ds.segs > 0)


def test_recorded_sources_are_the_pasted_images(cache):
    """One unscaled, unflipped item on a 28x28 canvas is the source image itself."""
    for split in ("train", "test"):
        images, labels = _load_split(FASHION_MNIST_ROOT, split)
        ds = FashionMNISTScenes(split, num_canvases=20, canvas=28, items=(1, 1), scale=None, flip=0.0,
                                cache_dir=cache)
        src = ds.sources[:, 0]
        assert np.array_equal(ds.images, images[src])
        assert np.array_equal(ds.segs, np.where(images[src] >= 64, labels[src, None, None] + 1, 0))


def test_train_and_test_use_disjoint_source_images(cache):
    train = FashionMNISTScenes("train", num_canvases=N, cache_dir=cache)
    test = FashionMNISTScenes("test", num_canvases=N, cache_dir=cache)
    assert train.cache_path != test.cache_path and not np.array_equal(train.images, test.images)

    def used(ds):
        images = _load_split(FASHION_MNIST_ROOT, ds.split)[0]
        idx = ds.sources[ds.sources >= 0]
        assert idx.max() < len(images)
        return {hashlib.sha1(images[i].tobytes()).hexdigest() for i in idx}
    assert not used(train) & used(test)


def test_bad_arguments():
    with pytest.raises(InputError, match="split"):
        FashionMNISTScenes("val")
    with pytest.raises(InputError, match="do not fit"):
        FashionMNISTScenes("test", num_canvases=2, canvas=30, scale=(1.2, 1.3), cache_dir="/nonexistent")
    with pytest.raises(InputError, match="items"):
        FashionMNISTScenes("test", num_canvases=2, items=(3, 2))


def test_dataset_through_a_pipeline(cache):
    ds = FashionMNISTScenes("test", num_canvases=8, cache_dir=cache,
                            transforms=[dict(type="RandomCrop", size=64, padding=4), dict(type="RandomFlip"),
                                        dict(type="PackInputs")])
    batch = stack_collate([ds[(i, i)] for i in range(4)])
    assert batch["inputs"].shape == (4, 1, 64, 64) and batch["inputs"].dtype == torch.uint8
    seg = batch["data_samples"]["seg"]
    assert seg.shape == (4, 64, 64) and seg.dtype == torch.int64
    assert ((batch["inputs"][:, 0] >= 64) == (seg > 0)).all()  # padding: image 0, label -100
    assert set(seg.unique().tolist()) <= set(range(11)) | {-100}


# --- segmentation-aware transforms -----------------------------------------------------------------

def _seg_sample(h=10, w=12, block=1):
    """An asymmetric label map (labels 1..7) and an image that encodes it: img = 30 * seg."""
    seg = (np.arange(h // block * (w // block)).reshape(h // block, w // block) * 5 % 7 + 1).astype(np.int64)
    seg = np.kron(seg, np.ones((block, block), np.int64))  # [h, w]
    img = np.repeat((seg * 30).astype(np.uint8)[..., None], 3, axis=2)  # [h, w, 3]
    return dict(img=img, seg=seg, label=4)


def _aligned(out):
    assert out["seg"].shape == out["img"].shape[:2]
    return np.array_equal(out["img"][..., 0].astype(np.int64), np.where(out["seg"] == -100, 0, out["seg"] * 30))


def test_flip_and_crops_move_seg_with_the_image():
    for seed in range(10):
        rng = np.random.default_rng(seed)
        flipped = RandomFlip(p=1.0)(_seg_sample(), rng)
        assert _aligned(flipped) and np.array_equal(flipped["seg"], _seg_sample()["seg"][:, ::-1])
        cropped = RandomCrop((7, 9), padding=3)(_seg_sample(), rng)
        assert _aligned(cropped) and cropped["seg"].dtype == np.int64
        assert _aligned(RandomCrop(6)(_seg_sample(), rng))
        assert _aligned(CenterCrop((5, 8))(_seg_sample(), rng))
    padded = RandomCrop((16, 18), padding=3)(_seg_sample(), np.random.default_rng(0))["seg"]
    assert (padded == -100).sum() == 16 * 18 - 10 * 12
    assert (RandomCrop(16, padding=3, seg_fill=255)(_seg_sample(), np.random.default_rng(0))["seg"] == 255).any()


def test_resizes_move_seg_with_the_image():
    out = Resize((20, 36))(_seg_sample(), None)
    assert np.array_equal(out["seg"], np.kron(_seg_sample()["seg"], np.ones((2, 3), np.int64)))
    assert out["seg"].dtype == np.int64
    for seed in range(10):  # blocks of 16 px: where a label's 3x3 neighbourhood is constant, so is the image
        out = RandomResizedCrop((24, 20), scale=(0.3, 1.0))(_seg_sample(48, 64, block=16), np.random.default_rng(seed))
        seg, img = out["seg"], out["img"][..., 0].astype(np.int64)
        windows = np.lib.stride_tricks.sliding_window_view(seg, (3, 3))  # [h - 2, w - 2, 3, 3]
        flat = (windows == seg[1:-1, 1:-1, None, None]).all(axis=(2, 3))
        assert flat.mean() > 0.2
        assert np.array_equal(img[1:-1, 1:-1][flat], 30 * seg[1:-1, 1:-1][flat])


def test_nearest_resize_follows_pil():
    seg = np.random.default_rng(0).integers(0, 11, (13, 17))
    for size in ((13, 17), (5, 7), (26, 34), (9, 40), (1, 1), (31, 3)):
        pil = np.asarray(Image.fromarray(seg.astype(np.uint8)).resize(size[::-1], Image.NEAREST))
        assert np.array_equal(_resize_nearest(seg, size), pil), size


def test_random_draws_and_images_do_not_depend_on_seg():
    for t in (RandomCrop(8, padding=2), RandomFlip(), Resize((7, 5)), CenterCrop(6),
              RandomResizedCrop(9), RandomErasing(p=0.5)):
        for seed in range(5):
            rng_a, rng_b = np.random.default_rng(seed), np.random.default_rng(seed)
            with_seg = t(_seg_sample(), rng_a)
            without = t({k: v for k, v in _seg_sample().items() if k != "seg"}, rng_b)
            assert np.array_equal(with_seg["img"], without["img"]) and "seg" not in without
            assert rng_a.random() == rng_b.random()  # as many draws either way


def test_erasing_keeps_seg_and_pack_makes_a_long_tensor():
    rng = np.random.default_rng(0)
    erased = RandomErasing(p=1.0, scale=(0.3, 0.3))(_seg_sample(), rng)
    assert np.array_equal(erased["seg"], _seg_sample()["seg"]) and not _aligned(erased)
    sample = RandomFlip(p=1.0)(dict(_seg_sample(), seg=_seg_sample()["seg"].astype(np.uint8)), rng)
    packed = PackInputs()(sample, rng)
    assert packed["inputs"].shape == (3, 10, 12) and packed["label"] == 4
    assert packed["seg"].dtype == torch.int64 and packed["seg"].shape == (10, 12)
    assert torch.equal(packed["seg"], torch.from_numpy(_seg_sample()["seg"][:, ::-1].copy()))
    pipe = Compose([dict(type="RandomResizedCrop", size=8), dict(type="RandomFlip"), dict(type="PackInputs")])
    assert pipe(_seg_sample(), rng)["seg"].shape == (8, 8)


def test_bad_seg_gets_clear_error():
    with pytest.raises(InputError, match=r"integer label array \[H, W\]"):
        RandomFlip()(dict(_seg_sample(), seg=np.zeros((3, 3), np.int64)), np.random.default_rng(0))
    with pytest.raises(InputError, match=r"integer label array \[H, W\]"):
        PackInputs()(dict(_seg_sample(), seg=np.zeros((10, 12), np.float32)), np.random.default_rng(0))

"""Clip transforms: one geometry for every frame (and view) of a clip, exact crops, resizes and
layouts, reproducible draws, registry building, and errors naming the clip's file."""
import numpy as np
import pytest
import torch

from glocal.core.errors import ConfigError, InputError
from glocal.modalities.registry import TRANSFORMS
from glocal.modalities.video.transforms import (CenterCropClip, FlipClip, NormalizeClip, PackClip, RandomCropClip,
                                                ResizeClip, ThreeCropClip)


def coords_clip(t=5, h=20, w=30) -> torch.Tensor:
    """``uint8 [T, H, W, 3]`` whose pixels say where they are: channel 0 = y, 1 = x, 2 = t."""
    y, x, tt = torch.meshgrid(torch.arange(h), torch.arange(w), torch.arange(t), indexing="ij")
    return torch.stack([y, x, tt], -1).permute(2, 0, 1, 3).to(torch.uint8).contiguous()


def sample(clip=None, **kw):
    return dict(clip=coords_clip() if clip is None else clip, label=1, path="videos/a.mp4", **kw)


def test_random_crop_is_one_window_for_every_frame_and_view():
    clip = coords_clip()
    windows = set()
    for seed in range(30):
        out = RandomCropClip((8, 12))(sample(clip), np.random.default_rng(seed))["clip"]  # [T, 8, 12, 3]
        assert out.shape == (5, 8, 12, 3)
        y0, x0 = int(out[0, 0, 0, 0]), int(out[0, 0, 0, 1])
        for t in range(5):  # the same window in every frame: y0..y0+7, x0..x0+11
            assert torch.equal(out[t, :, :, 0], torch.arange(y0, y0 + 8).view(8, 1).expand(8, 12).to(torch.uint8))
            assert torch.equal(out[t, :, :, 1], torch.arange(x0, x0 + 12).view(1, 12).expand(8, 12).to(torch.uint8))
            assert bool((out[t, ..., 2] == t).all())
        windows.add((y0, x0))
    assert len(windows) > 10  # and it moves between clips
    views = torch.stack([clip, clip])  # [V, T, H, W, C]: the same window in both views
    out = RandomCropClip(6)(sample(views), np.random.default_rng(0))["clip"]
    assert out.shape == (2, 5, 6, 6, 3) and torch.equal(out[0], out[1])
    a = RandomCropClip(6)(sample(clip), np.random.default_rng(7))["clip"]
    assert torch.equal(a, RandomCropClip(6)(sample(clip), np.random.default_rng(7))["clip"])


def test_flip_flips_every_frame_or_none():
    clip = coords_clip()
    flips = 0
    for seed in range(20):
        out = FlipClip(0.5)(sample(clip), np.random.default_rng(seed))["clip"]
        flipped = bool((out[:, :, 0, 1] == 29).all())
        assert flipped or torch.equal(out, clip)
        if flipped:
            assert torch.equal(out, clip.flip(2))
            flips += 1
    assert 3 < flips < 17
    assert FlipClip(1.0, flip_label=[0, 5, 2])(sample(clip), np.random.default_rng(0))["label"] == 5
    assert FlipClip(0.0)(sample(clip), np.random.default_rng(0))["clip"] is clip
    with pytest.raises(InputError, match=r"label 1 of videos/a\.mp4 has no entry in flip_label"):
        FlipClip(1.0, flip_label=[0])(sample(clip), np.random.default_rng(0))


def test_center_and_three_crop_positions():
    clip = coords_clip()  # 20 x 30
    out = CenterCropClip((10, 10))(sample(clip))["clip"]
    assert out[0, 0, 0, :2].tolist() == [5, 10] and out.shape == (5, 10, 10, 3)
    three = ThreeCropClip(20)(sample(clip))["clip"]  # landscape: left, centre, right
    assert three.shape == (3, 5, 20, 20, 3) and [int(v[0, 0, 0, 1]) for v in three] == [0, 5, 10]
    portrait = coords_clip(2, 30, 20)
    three = ThreeCropClip(20)(sample(portrait))["clip"]  # top, centre, bottom
    assert [int(v[0, 0, 0, 0]) for v in three] == [0, 5, 10]
    two_clips = torch.stack([clip, clip + 1])  # [2, T, H, W, C] -> [6, ...], view-major
    views = ThreeCropClip(20)(sample(two_clips))["clip"]
    assert views.shape == (6, 5, 20, 20, 3) and torch.equal(views[4], views[1] + 1)


def test_resize_short_side_and_fixed():
    clip = torch.full((3, 20, 40, 3), 100, dtype=torch.uint8)
    out = ResizeClip(10)(sample(clip))["clip"]
    assert out.shape == (3, 10, 20, 3) and out.dtype == torch.uint8 and bool((out == 100).all())
    assert ResizeClip(10)(sample(clip.transpose(1, 2)))["clip"].shape == (3, 20, 10, 3)
    assert ResizeClip((7, 9))(sample(clip))["clip"].shape == (3, 7, 9, 3)
    assert ResizeClip((20, 40))(sample(clip))["clip"] is clip
    views = ResizeClip(10)(sample(torch.zeros(2, 3, 20, 40, 3)))["clip"]
    assert views.shape == (2, 3, 10, 20, 3) and views.dtype == torch.float32
    ramp = coords_clip(2, 20, 30)
    half = ResizeClip((10, 15))(sample(ramp))["clip"]  # frames resized alike: frame 1 = frame 0 but channel t
    assert torch.equal(half[0, ..., :2], half[1, ..., :2])
    with pytest.raises(ConfigError, match="scale must be an int >= 1"):
        ResizeClip(0)


def test_normalize_and_pack():
    clip = torch.tensor([0, 255], dtype=torch.uint8).view(1, 1, 2, 1).expand(2, 1, 2, 3)
    out = NormalizeClip(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))(sample(clip))["clip"]
    assert out.dtype == torch.float32 and out[0, 0, :, 0].tolist() == [-1.0, 1.0]
    grey = NormalizeClip(0.5, 0.25)(sample(clip.float() / 255))["clip"]
    assert grey[0, 0, :, 2].tolist() == [-2.0, 2.0]
    with pytest.raises(InputError, match=r"mean/std for 2 channels but the clip of videos/a\.mp4 has 3"):
        NormalizeClip((0.5, 0.5), (1, 1))(sample(clip))
    packed = PackClip()(sample(coords_clip()), None)
    assert "clip" not in packed and packed["label"] == 1 and packed["inputs"].shape == (3, 5, 20, 30)
    assert packed["inputs"][1, 4, 2, 7] == 7 and packed["inputs"][2, 4, 0, 0] == 4  # [C, T, H, W]
    assert PackClip()(sample(torch.zeros(2, 5, 4, 4, 3)), None)["inputs"].shape == (2, 3, 5, 4, 4)


def test_errors_name_the_file():
    with pytest.raises(InputError, match=r"the clip of videos/a\.mp4 is 30x20 \(W x H\), smaller than the crop 32x8"):
        RandomCropClip((8, 32))(sample(), np.random.default_rng(0))
    with pytest.raises(InputError, match=r"sample\['clip'\] of videos/a\.mp4 must be a tensor"):
        CenterCropClip(4)(dict(inputs=torch.zeros(3, 5, 8, 8), path="videos/a.mp4"))
    with pytest.raises(ConfigError, match="size must be an int >= 1 or"):
        CenterCropClip((4, 0))


def test_pipeline_from_configs():
    ops = [TRANSFORMS.build(c) for c in (dict(type="ResizeClip", scale=16), dict(type="RandomCropClip", size=16),
                                         dict(type="FlipClip", p=0.5), dict(type="NormalizeClip"),
                                         dict(type="PackClip"))]
    s, g = sample(), np.random.default_rng(0)
    for op in ops:
        s = op(s, g)
    assert s["inputs"].shape == (3, 5, 16, 16) and s["inputs"].dtype == torch.float32
    assert repr(ops[1]) == "RandomCropClip(size=(16, 16))"

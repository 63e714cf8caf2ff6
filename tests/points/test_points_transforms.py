"""Point-cloud transforms: shapes, reproducibility from the rng, every per-point field kept in step
(labels stay with their points), normals turned with the points, inputs left untouched, and the
fast voxel and farthest-point samplers against plain reference loops."""
import math

import numpy as np
import pytest
import torch

from glocal.core.errors import ConfigError, InputError
from glocal.modalities.points.transforms import (CenterShift, ColorJitter, FarthestPointSample, NormalizeCoords,
                                                 RandomJitter, RandomRotate, RandomScale, ShufflePoints, SphereCrop,
                                                 VoxelDownsample, farthest_point_sample, take, voxel_indices)
from glocal.modalities.registry import TRANSFORMS


def region_label(coords: torch.Tensor) -> torch.Tensor:
    """A label that is a function of where the point is (so a transform that drops or reorders
    points without moving them must keep ``labels == region_label(coords)``)."""
    return ((coords[:, 0] > 0.5).long() + 2 * (coords[:, 1] > 0.5).long() + 4 * (coords[:, 2] > 0.5).long())


def scene(n=2000, seed=0) -> dict:
    g = torch.Generator().manual_seed(seed)
    coords = torch.rand(n, 3, generator=g)
    return dict(coords=coords, colors=torch.rand(n, 3, generator=g), normals=torch.randn(n, 3, generator=g),
                intensity=torch.rand(n, generator=g), labels=region_label(coords), path="scene.ply",
                extra=dict(segment=np.arange(n) * 10), offset=np.array([5e5, 2e5, 0.0]))


def in_step(out: dict, original: dict):
    """Every per-point field of ``out`` belongs to the same original point as its coordinates."""
    n = len(out["coords"])
    assert torch.equal(out["labels"], region_label(out["coords"]))
    rows = {tuple(p): i for i, p in enumerate(original["coords"].tolist())}
    idx = torch.tensor([rows[tuple(p)] for p in out["coords"].tolist()])
    for key in ("colors", "normals", "intensity"):
        assert len(out[key]) == n and torch.equal(out[key], original[key][idx]), key
    assert np.array_equal(out["extra"]["segment"], original["extra"]["segment"][idx.numpy()])
    assert out["path"] == original["path"] and out["offset"] is original["offset"]


DROPPING = [VoxelDownsample(0.1), VoxelDownsample(0.1, mode="random"), VoxelDownsample(0.1, mode="first"),
            FarthestPointSample(100), SphereCrop(max_points=300), SphereCrop(radius=0.3, center="middle"),
            SphereCrop(max_points=200, center="labelled", xy_only=True), ShufflePoints()]


@pytest.mark.parametrize("t", DROPPING, ids=repr)
def test_dropping_transforms_keep_every_field_in_step(t):
    s = scene()
    before = {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in s.items()}
    out = t(s, np.random.default_rng(0))
    in_step(out, s)
    for k, v in before.items():  # the input sample is untouched
        assert not isinstance(v, torch.Tensor) or torch.equal(s[k], v)
    a, b = t(s, np.random.default_rng(5)), t(s, np.random.default_rng(5))
    assert torch.equal(a["coords"], b["coords"])  # reproducible from the rng


def test_output_sizes():
    s, rng = scene(), np.random.default_rng(0)
    assert len(FarthestPointSample(100)(s, rng)["coords"]) == 100
    assert len(SphereCrop(max_points=300)(s, rng)["coords"]) == 300
    crop = SphereCrop(radius=0.3, center=(0.5, 0.5, 0.5))(s, rng)
    assert ((crop["coords"] - 0.5).norm(dim=1) <= 0.3).all()
    assert len(crop["coords"]) == int(((s["coords"] - 0.5).norm(dim=1) <= 0.3).sum())
    assert len(ShufflePoints()(s, rng)["coords"]) == 2000
    small = take(s, torch.arange(50))
    assert FarthestPointSample(100)(small, rng) is small and SphereCrop(max_points=60)(small, rng) is small


def test_random_choices_differ_between_seeds():
    s = scene()
    for t in (ShufflePoints(), SphereCrop(max_points=300), FarthestPointSample(50), VoxelDownsample(0.2, "random"),
              RandomRotate(), RandomScale(), RandomJitter(), ColorJitter()):
        a, b = t(s, np.random.default_rng(1)), t(s, np.random.default_rng(2))
        key = "colors" if isinstance(t, ColorJitter) else "coords"
        assert not torch.equal(a[key], b[key]), t


def test_labelled_crop_centres_on_labelled_points():
    s = scene()
    s["labels"] = torch.full((2000,), -100)
    s["labels"][7] = 3
    out = SphereCrop(max_points=1, center="labelled")(s, np.random.default_rng(0))
    assert out["labels"].tolist() == [3]


# ------------------------------------------------------------------------------------------------
# moving points
# ------------------------------------------------------------------------------------------------
def sphere_sample(n=500):
    p = torch.nn.functional.normalize(torch.randn(n, 3, generator=torch.Generator().manual_seed(0)), dim=1)
    return dict(coords=p, normals=p.clone(), labels=torch.arange(n))


@pytest.mark.parametrize("t", [RandomRotate(), RandomRotate(axis="x", angle=(10, 20)), RandomRotate(axis=None),
                               RandomScale((0.5, 2.0))], ids=repr)
def test_rotations_and_scales_turn_the_normals_with_the_points(t):
    out = t(sphere_sample(), np.random.default_rng(0))
    # a unit sphere stays a sphere: the normal at each point is the point's direction
    torch.testing.assert_close(out["normals"], torch.nn.functional.normalize(out["coords"], dim=1), atol=1e-5,
                               rtol=0)
    assert torch.equal(out["labels"], torch.arange(500))


def test_anisotropic_scale_gives_ellipsoid_normals():
    out = RandomScale((0.5, 2.0), anisotropic=True)(sphere_sample(), np.random.default_rng(0))
    p = out["coords"].double()
    axes = p.abs().amax(0)  # the ellipsoid's semi-axes (close to them, from 500 points)
    s = RandomScale((0.5, 2.0), anisotropic=True)
    factors = torch.from_numpy(np.random.default_rng(0).uniform(*s.scale, size=3))
    assert torch.all(axes <= factors + 1e-6)
    expected = torch.nn.functional.normalize(p / factors ** 2, dim=1)  # the gradient of sum (x/a)^2
    torch.testing.assert_close(out["normals"].double(), expected, atol=1e-5, rtol=0)


def test_rotate_about_z_keeps_z_and_the_angle_range():
    s = dict(coords=torch.tensor([[1.0, 0.0, 0.3]]))
    for seed in range(20):
        out = RandomRotate(axis="z", angle=(30, 60))(s, np.random.default_rng(seed))["coords"][0]
        angle = math.degrees(math.atan2(out[1], out[0]))
        assert 30 - 1e-4 <= angle <= 60 + 1e-4 and abs(float(out[2]) - 0.3) < 1e-6
    assert RandomRotate(p=0.0)(s, np.random.default_rng(0)) is s


def test_normalize_and_center_shift():
    s = scene()
    s["coords"] = s["coords"] * 50 + 1000
    out = NormalizeCoords()(s, None)
    assert abs(float(out["coords"].norm(dim=1).max()) - 1) < 1e-6 and out["coords"].mean(0).abs().max() < 1e-5
    out = CenterShift()(s, None)["coords"]
    lo, hi = out.amin(0), out.amax(0)
    assert abs(float(lo[0] + hi[0])) < 1e-3 and abs(float(lo[1] + hi[1])) < 1e-3 and float(lo[2]) == 0
    assert float(CenterShift(apply_z=False)(s, None)["coords"][:, 2].min()) > 999


def test_jitter_is_clipped_and_colour_jitter_stays_in_range():
    s = scene()
    out = RandomJitter(sigma=0.5, clip=0.05)(s, np.random.default_rng(0))
    d = (out["coords"] - s["coords"]).abs()
    assert d.max() <= 0.05 + 1e-6 and d.max() > 0.04
    c = ColorJitter(brightness=0.5, contrast=0.5, noise=0.2)(s, np.random.default_rng(0))["colors"]
    assert c.min() >= 0 and c.max() <= 1 and not torch.equal(c, s["colors"])
    no_colour = dict(coords=s["coords"])
    assert ColorJitter()(no_colour, np.random.default_rng(0)) is no_colour


# ------------------------------------------------------------------------------------------------
# the samplers against reference loops
# ------------------------------------------------------------------------------------------------
def voxel_reference(coords: np.ndarray, size: float, mode: str) -> list[int]:
    best = {}
    for i, p in enumerate(coords.astype(np.float64)):
        cell = tuple(np.floor(p / size).astype(int))
        if mode == "first":
            score = i
        else:
            centre = (np.array(cell) + 0.5) * size
            score = float(((p - centre) ** 2).sum())
        if cell not in best or score < best[cell][0]:
            best[cell] = (score, i)
    return sorted(i for _, i in best.values())


@pytest.mark.parametrize("mode", ["center", "first"])
def test_voxel_downsample_matches_a_reference_loop(mode):
    coords = torch.rand(3000, 3, generator=torch.Generator().manual_seed(1)) * 4 - 2  # negative cells too
    assert voxel_indices(coords, 0.5, mode).tolist() == voxel_reference(coords.numpy(), 0.5, mode)


def test_voxel_downsample_random_mode_keeps_one_point_per_voxel():
    coords = torch.rand(3000, 3, generator=torch.Generator().manual_seed(1))
    out = VoxelDownsample(0.25, "random")(dict(coords=coords), np.random.default_rng(0))
    cells = torch.floor(out["coords"] / 0.25).long()
    assert len(cells.unique(dim=0)) == len(cells) == 64
    assert torch.equal(out["coords"], coords[out["index"]])
    twice = VoxelDownsample(0.5)(out, None)  # 'index' composes with the first downsampling
    assert torch.equal(twice["coords"], coords[twice["index"]])


def fps_reference(xyz: np.ndarray, n: int, start: int) -> list[int]:
    chosen, dist = [start], [math.inf] * len(xyz)
    for _ in range(n - 1):
        last = xyz[chosen[-1]]
        for i, p in enumerate(xyz):
            d = (p[0] - last[0]) ** 2 + (p[1] - last[1]) ** 2 + (p[2] - last[2]) ** 2
            dist[i] = min(dist[i], d)
        chosen.append(max(range(len(xyz)), key=lambda i: (dist[i], -i)))
    return chosen


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_farthest_point_sample_matches_a_reference_loop(dtype):
    xyz = torch.randn(300, 3, generator=torch.Generator().manual_seed(2), dtype=dtype)
    ref = fps_reference(xyz.double().numpy().tolist(), 40, 7)
    assert farthest_point_sample(xyz, 40, 7).tolist() == ref


def test_farthest_point_sample_batched_with_padding():
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(50, 3, generator=g), torch.randn(30, 3, generator=g)
    batch = torch.zeros(2, 50, 3)
    batch[0], batch[1, :30] = a, b
    batch[1, 30:] = 100.0  # padding far away: never chosen
    out = farthest_point_sample(batch, 10, torch.tensor([0, 3]), lengths=torch.tensor([50, 30]))
    assert out[0].tolist() == farthest_point_sample(a, 10, 0).tolist()
    assert out[1].tolist() == farthest_point_sample(b, 10, 3).tolist()
    few = farthest_point_sample(torch.randn(4, 3, generator=g), 6)
    assert sorted(few[:4].tolist()) == [0, 1, 2, 3] and few[4] == few[5] == few[3]


def test_fps_start_is_seeded():
    s = scene(500)
    a = FarthestPointSample(20)(s, np.random.default_rng(0))["coords"]
    assert torch.equal(a, FarthestPointSample(20)(s, np.random.default_rng(0))["coords"])
    first = FarthestPointSample(20, start="first")(s, np.random.default_rng(9))
    assert torch.equal(first["coords"][0], s["coords"][0])


# ------------------------------------------------------------------------------------------------
# configs and errors
# ------------------------------------------------------------------------------------------------
def test_registered_and_built_from_configs():
    t = TRANSFORMS.build(dict(type="SphereCrop", max_points=10, center="middle"))
    assert isinstance(t, SphereCrop) and len(t(scene(), None)["coords"]) == 10
    for name in ("NormalizeCoords", "CenterShift", "RandomRotate", "RandomScale", "RandomJitter", "ColorJitter",
                 "VoxelDownsample", "FarthestPointSample", "SphereCrop", "ShufflePoints"):
        assert TRANSFORMS.get(name).__module__ == "glocal.modalities.points.transforms"


@pytest.mark.parametrize("make", [lambda: VoxelDownsample(0), lambda: VoxelDownsample(0.1, mode="mean"),
                                  lambda: FarthestPointSample(0), lambda: SphereCrop(),
                                  lambda: SphereCrop(10, center="top"), lambda: RandomRotate(axis="w"),
                                  lambda: RandomScale((2, 1)), lambda: RandomJitter(sigma=-1)])
def test_bad_settings_are_config_errors(make):
    with pytest.raises(ConfigError):
        make()


def test_a_sample_without_coords_or_with_misaligned_fields():
    with pytest.raises(InputError, match="needs a sample dict with 'coords'"):
        ShufflePoints()(dict(points=torch.zeros(3, 3)), np.random.default_rng(0))
    with pytest.raises(InputError, match=r"'coords' of a\.ply must be \[N, 3\]"):
        ShufflePoints()(dict(coords=torch.zeros(3, 2), path="a.ply"), np.random.default_rng(0))
    with pytest.raises(InputError, match="'labels' has 4 values for 3 points"):
        ShufflePoints()(dict(coords=torch.zeros(3, 3), labels=torch.zeros(4)), np.random.default_rng(0))

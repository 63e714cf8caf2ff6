"""Point-cloud transforms, each ``t(sample: dict, rng: np.random.Generator) -> dict``.

A sample holds ``coords`` (float32 tensor ``[N, 3]``) and any of the per-point fields
:data:`POINT_KEYS` (``colors [N, 3]``, ``normals [N, 3]``, ``intensity [N]``, ``labels [N]``,
``instance [N]``) and ``extra`` (a dict of per-point arrays, see
:func:`~glocal.modalities.points.io.read_points`). A transform that drops or reorders points
indexes every one of them the same way (:func:`take`), so labels stay with their points; one that
moves points rotates the normals with them. Transforms return a new dict and never modify the
arrays they were given (a dataset's cached arrays stay intact). All randomness comes from ``rng``.

Example:
    >>> import numpy as np, torch
    >>> rng = np.random.default_rng(0)
    >>> sample = dict(coords=torch.rand(1000, 3), labels=torch.arange(1000) % 4)
    >>> out = VoxelDownsample(0.25)(sample, rng)
    >>> len(out["coords"]) <= 64, bool((out["labels"] == sample["labels"][out["index"]]).all())
    (True, True)
    >>> out = FarthestPointSample(16)(sample, rng); out["coords"].shape
    torch.Size([16, 3])
    >>> SphereCrop(max_points=100)(sample, rng)["labels"].shape
    torch.Size([100])
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from glocal.core.errors import ConfigError, InputError

__all__ = ["POINT_KEYS", "take", "NormalizeCoords", "CenterShift", "RandomRotate", "RandomScale", "RandomJitter",
           "ColorJitter", "VoxelDownsample", "FarthestPointSample", "SphereCrop", "ShufflePoints",
           "farthest_point_sample", "voxel_indices", "rotation_matrix", "random_rotation"]

POINT_KEYS = ("coords", "colors", "normals", "intensity", "labels", "instance", "index")


def _coords(sample: dict, who: str) -> Tensor:
    """``sample['coords']`` as a float32 tensor ``[N, 3]``, or an InputError naming the sample."""
    if not isinstance(sample, dict) or "coords" not in sample:
        fields = sorted(sample) if isinstance(sample, dict) else type(sample).__name__
        raise InputError(f"{who} needs a sample dict with 'coords' [N, 3]; got {fields}")
    coords = torch.as_tensor(sample["coords"])
    if coords.dim() != 2 or coords.shape[1] != 3:
        where = f" of {sample['path']}" if isinstance(sample.get("path"), str) else ""
        raise InputError(f"{who}: 'coords'{where} must be [N, 3]; got shape {tuple(coords.shape)}")
    return coords.float()


def take(sample: dict, index) -> dict:
    """A copy of ``sample`` with every per-point field (:data:`POINT_KEYS` and the arrays of
    ``extra``) indexed by ``index`` (an index array or a bool mask over the points); other keys are
    shared. Numpy fields stay numpy, tensors stay tensors.

    ``index`` is recorded: a sample that has an ``'index'`` field (the original point of each point,
    e.g. set by :class:`VoxelDownsample`) keeps it in step, so predictions can be mapped back.
    """
    n = len(sample["coords"])
    idx = torch.as_tensor(index)
    if idx.dtype == torch.bool:
        idx = idx.nonzero().flatten()
    idx = idx.long()
    out = dict(sample)
    np_idx = idx.numpy()
    for key in POINT_KEYS:
        if key in sample and sample[key] is not None:
            value = sample[key]
            if len(value) != n:
                raise InputError(f"take: the sample's {key!r} has {len(value)} values for {n} points")
            out[key] = value[np_idx] if isinstance(value, np.ndarray) else torch.as_tensor(value)[idx]
    if sample.get("extra"):
        out["extra"] = {k: (v[np_idx] if isinstance(v, np.ndarray) else torch.as_tensor(v)[idx])
                        for k, v in sample["extra"].items()}
    return out


def _check_range(who: str, name: str, value, low: float | None = None) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{who}: {name} must be a (min, max) pair; got {value!r}") from e
    if lo > hi or (low is not None and lo < low):
        raise ConfigError(f"{who}: {name} must be (min, max) with min <= max" + (f" and min >= {low}" if low is not None
                                                                                   else "") + f"; got {value!r}")
    return lo, hi


def _nonneg(who: str, name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigError(f"{who}: {name} must be a number >= 0; got {value!r}")
    return float(value)


# ------------------------------------------------------------------------------------------------
# moving points
# ------------------------------------------------------------------------------------------------
class NormalizeCoords:
    """Centre the cloud (its mean, or its bounding-box centre with ``center='bbox'``) and scale it
    into the unit sphere (the farthest point at distance 1). A cloud of one point is only centred.

    >>> s = NormalizeCoords()(dict(coords=torch.tensor([[0., 0, 0], [4, 0, 0]])), None)
    >>> s["coords"].tolist()
    [[-1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]
    """

    def __init__(self, center: str = "mean"):
        if center not in ("mean", "bbox"):
            raise ConfigError(f"NormalizeCoords: center must be 'mean' or 'bbox'; got {center!r}")
        self.center = center

    def __call__(self, sample: dict, rng: np.random.Generator | None = None) -> dict:
        xyz = _coords(sample, "NormalizeCoords").double()
        c = xyz.mean(0) if self.center == "mean" else (xyz.amin(0) + xyz.amax(0)) / 2
        xyz = xyz - c
        radius = xyz.norm(dim=1).max()
        if radius > 0:
            xyz = xyz / radius
        return {**sample, "coords": xyz.float()}

    def __repr__(self):
        return f"NormalizeCoords(center={self.center!r})"


class CenterShift:
    """Shift the cloud so that its bounding box is centred at x = y = 0 and, with ``apply_z``, its
    lowest point is at z = 0 (scenes and LiDAR crops: heights above the crop's ground). As
    Pointcept's ``CenterShift``."""

    def __init__(self, apply_z: bool = True):
        self.apply_z = bool(apply_z)

    def __call__(self, sample: dict, rng: np.random.Generator | None = None) -> dict:
        xyz = _coords(sample, "CenterShift")
        lo, hi = xyz.amin(0), xyz.amax(0)
        shift = torch.stack([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2] if self.apply_z else lo.new_zeros(())])
        return {**sample, "coords": xyz - shift}

    def __repr__(self):
        return f"CenterShift(apply_z={self.apply_z})"


def rotation_matrix(axis: str, angle: float) -> np.ndarray:
    """The ``[3, 3]`` rotation by ``angle`` radians about ``'x'``, ``'y'`` or ``'z'`` (right-handed)."""
    c, s = math.cos(angle), math.sin(angle)
    i, j = {"x": (1, 2), "y": (2, 0), "z": (0, 1)}[axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A rotation ``[3, 3]`` drawn uniformly from SO(3) (a normalised Gaussian quaternion)."""
    q = rng.standard_normal(4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def _apply_linear(sample: dict, m: np.ndarray, who: str) -> dict:
    """Points ``x -> m x``; normals by the inverse transpose, renormalised."""
    xyz = _coords(sample, who)
    mt = torch.from_numpy(np.asarray(m, dtype=np.float64))
    out = {**sample, "coords": (xyz.double() @ mt.T).float()}
    if sample.get("normals") is not None:
        nrm = torch.as_tensor(sample["normals"]).double() @ torch.linalg.inv(mt)  # (M^-T n) as a row vector
        out["normals"] = torch.nn.functional.normalize(nrm, dim=1).float()
    return out


class RandomRotate:
    """Rotate about the origin: about one axis (``'x'``, ``'y'``, ``'z'``) by an angle drawn from
    ``angle`` (degrees), or, with ``axis=None``, by a rotation drawn uniformly from SO(3). Normals
    turn with the points. Applied with probability ``p``. Centre the cloud first (CenterShift,
    NormalizeCoords) to rotate about its centre."""

    def __init__(self, axis: str | None = "z", angle: Sequence[float] = (-180.0, 180.0), p: float = 1.0):
        if axis not in ("x", "y", "z", None):
            raise ConfigError(f"RandomRotate: axis must be 'x', 'y', 'z' or None (any rotation); got {axis!r}")
        self.axis, self.angle, self.p = axis, _check_range("RandomRotate", "angle", angle), float(p)

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        if self.p < 1 and rng.random() >= self.p:
            return sample
        if self.axis is None:
            m = random_rotation(rng)
        else:
            m = rotation_matrix(self.axis, math.radians(rng.uniform(*self.angle)))
        return _apply_linear(sample, m, "RandomRotate")

    def __repr__(self):
        return f"RandomRotate(axis={self.axis!r}, angle={self.angle}, p={self.p})"


class RandomScale:
    """Scale by a factor drawn from ``scale`` (one for all axes, or one per axis with
    ``anisotropic=True``; normals follow the inverse transpose)."""

    def __init__(self, scale: Sequence[float] = (0.9, 1.1), anisotropic: bool = False, p: float = 1.0):
        self.scale = _check_range("RandomScale", "scale", scale, low=1e-6)
        self.anisotropic, self.p = bool(anisotropic), float(p)

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        if self.p < 1 and rng.random() >= self.p:
            return sample
        s = rng.uniform(*self.scale, size=3 if self.anisotropic else 1)
        return _apply_linear(sample, np.diag(np.broadcast_to(s, (3,))), "RandomScale")

    def __repr__(self):
        return f"RandomScale(scale={self.scale}, anisotropic={self.anisotropic}, p={self.p})"


class RandomJitter:
    """Add Gaussian noise of std ``sigma`` to every coordinate, clipped to ``[-clip, clip]``."""

    def __init__(self, sigma: float = 0.01, clip: float = 0.05):
        self.sigma, self.clip = _nonneg("RandomJitter", "sigma", sigma), _nonneg("RandomJitter", "clip", clip)

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        xyz = _coords(sample, "RandomJitter")
        noise = np.clip(self.sigma * rng.standard_normal(tuple(xyz.shape)), -self.clip, self.clip)
        return {**sample, "coords": xyz + torch.from_numpy(noise).float()}

    def __repr__(self):
        return f"RandomJitter(sigma={self.sigma}, clip={self.clip})"


class ColorJitter:
    """Jitter ``colors`` (``[N, 3]`` in [0, 1]): contrast by a factor in ``1 ± contrast`` about the
    mean colour, brightness by a shift in ``± brightness``, per-point Gaussian noise of std ``noise``,
    then clipped to [0, 1]. A sample without colours is returned as it is."""

    def __init__(self, brightness: float = 0.1, contrast: float = 0.1, noise: float = 0.02, p: float = 1.0):
        self.brightness = _nonneg("ColorJitter", "brightness", brightness)
        self.contrast = _nonneg("ColorJitter", "contrast", contrast)
        self.noise, self.p = _nonneg("ColorJitter", "noise", noise), float(p)

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        if sample.get("colors") is None or (self.p < 1 and rng.random() >= self.p):
            return sample
        colors = torch.as_tensor(sample["colors"]).float()
        mean = colors.mean(0, keepdim=True)
        factor = rng.uniform(1 - self.contrast, 1 + self.contrast)
        shift = rng.uniform(-self.brightness, self.brightness)
        noise = torch.from_numpy(self.noise * rng.standard_normal(tuple(colors.shape))).float()
        return {**sample, "colors": ((colors - mean) * factor + mean + shift + noise).clamp(0, 1)}

    def __repr__(self):
        return f"ColorJitter(brightness={self.brightness}, contrast={self.contrast}, noise={self.noise}, p={self.p})"


# ------------------------------------------------------------------------------------------------
# choosing points
# ------------------------------------------------------------------------------------------------
def voxel_indices(coords, voxel_size: float, mode: str = "center", rng: np.random.Generator | None = None) -> Tensor:
    """The points :class:`VoxelDownsample` keeps, one per occupied voxel, in ascending order
    (LongTensor ``[V]``). Voxels are ``floor(coords / voxel_size)`` cells. ``mode``: ``'center'``
    the point nearest the voxel's centre (ties: the lower index), ``'first'`` the lowest index,
    ``'random'`` a uniformly random point of the voxel (``rng``)."""
    xyz = torch.as_tensor(coords).double().numpy()
    n = len(xyz)
    if n == 0:
        return torch.zeros(0, dtype=torch.long)
    cell = np.floor(xyz / voxel_size).astype(np.int64)  # [N, 3]
    _, inverse = np.unique(cell, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    if mode == "center":
        priority = ((xyz - (cell + 0.5) * voxel_size) ** 2).sum(1)
    elif mode == "first":
        priority = np.arange(n, dtype=np.float64)
    else:
        priority = rng.random(n)
    order = np.lexsort((np.arange(n), priority, inverse))  # by voxel, then priority, then index
    first = np.ones(n, dtype=bool)
    first[1:] = inverse[order][1:] != inverse[order][:-1]
    return torch.from_numpy(np.sort(order[first]))


class VoxelDownsample:
    """Keep one real point per voxel of side ``voxel_size`` (with its colour, normal and label;
    open3d's ``voxel_down_sample`` averages, which would invent points and blur labels). ``mode``:
    ``'center'`` (default, deterministic: the point nearest the voxel centre), ``'first'``, or
    ``'random'`` (drawn with ``rng``: a different subset each epoch). Adds ``index``, the original
    position of each kept point (composed with an existing ``index``)."""

    def __init__(self, voxel_size: float, mode: str = "center"):
        if isinstance(voxel_size, bool) or not isinstance(voxel_size, (int, float)) or not voxel_size > 0:
            raise ConfigError(f"VoxelDownsample: voxel_size must be a number > 0; got {voxel_size!r}")
        if mode not in ("center", "first", "random"):
            raise ConfigError(f"VoxelDownsample: mode must be 'center', 'first' or 'random'; got {mode!r}")
        self.voxel_size, self.mode = float(voxel_size), mode

    def __call__(self, sample: dict, rng: np.random.Generator | None = None) -> dict:
        xyz = _coords(sample, "VoxelDownsample")
        if self.mode == "random" and rng is None:
            raise InputError("VoxelDownsample(mode='random') needs an rng")
        keep = voxel_indices(xyz, self.voxel_size, self.mode, rng)
        if "index" not in sample:
            sample = {**sample, "index": torch.arange(len(xyz))}
        return take(sample, keep)

    def __repr__(self):
        return f"VoxelDownsample(voxel_size={self.voxel_size}, mode={self.mode!r})"


def farthest_point_sample(xyz: Tensor, n: int, start=0, lengths: Tensor | None = None) -> Tensor:
    """Farthest point sampling: ``n`` indices per cloud, each point the farthest (Euclidean) from
    those already chosen, starting at ``start``. Distances in float64.

    Args:
        xyz: ``[N, 3]`` or a padded batch ``[B, N, 3]``.
        n: points to choose (at most the cloud's length; a shorter cloud gives all its points, in
            farthest-first order, and the remaining slots repeat its last choice).
        start: the first index: an int, or a LongTensor ``[B]``.
        lengths: ``[B]`` valid points of each cloud of a padded batch (the rest are never chosen).

    Returns: LongTensor ``[n]`` or ``[B, n]``.

    >>> xyz = torch.tensor([[0., 0, 0], [1, 0, 0], [0.1, 0, 0], [0.5, 0, 0]])
    >>> farthest_point_sample(xyz, 3).tolist()
    [0, 1, 3]
    """
    single = xyz.dim() == 2
    pts = (xyz[None] if single else xyz).double()  # [B, N, 3]
    B, N, _ = pts.shape
    valid = torch.ones(B, N, dtype=torch.bool, device=pts.device) if lengths is None else (
        torch.arange(N, device=pts.device) < torch.as_tensor(lengths, device=pts.device)[:, None])
    cur = torch.as_tensor(start, dtype=torch.long, device=pts.device).expand(B).clone()
    dist = torch.full((B, N), math.inf, dtype=torch.float64, device=pts.device).masked_fill(~valid, -1.0)
    out = torch.empty(B, n, dtype=torch.long, device=pts.device)
    rows = torch.arange(B, device=pts.device)
    for i in range(n):
        out[:, i] = cur
        d = ((pts - pts[rows, cur][:, None]) ** 2).sum(-1)  # [B, N]
        dist = torch.minimum(dist, d.masked_fill(~valid, -1.0))
        nxt = dist.argmax(1)
        # a cloud that has run out of points (every distance 0) repeats its last choice
        cur = torch.where(dist[rows, nxt] > 0, nxt, cur)
    return out[0] if single else out


class FarthestPointSample:
    """Keep ``n`` points chosen by farthest point sampling (:func:`farthest_point_sample`) from a
    start point drawn with ``rng`` (or ``start='first'``: point 0, deterministic). A cloud of at
    most ``n`` points is returned as it is."""

    def __init__(self, n: int, start: str = "random"):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"FarthestPointSample: n must be an int >= 1; got {n!r}")
        if start not in ("random", "first"):
            raise ConfigError(f"FarthestPointSample: start must be 'random' or 'first'; got {start!r}")
        self.n, self.start = n, start

    def __call__(self, sample: dict, rng: np.random.Generator | None = None) -> dict:
        xyz = _coords(sample, "FarthestPointSample")
        if len(xyz) <= self.n:
            return sample
        start = int(rng.integers(len(xyz))) if self.start == "random" and rng is not None else 0
        return take(sample, farthest_point_sample(xyz, self.n, start))

    def __repr__(self):
        return f"FarthestPointSample(n={self.n}, start={self.start!r})"


class SphereCrop:
    """Crop a large scene around a centre: the ``max_points`` points nearest to it, and/or the
    points within ``radius`` of it (in their original order).

    ``center``: ``'random'`` a random point of the cloud; ``'labelled'`` a random point with a label
    ``>= 0`` (falls back to any point when none has one; LiDAR tiles with few labelled points);
    ``'middle'`` the bounding-box centre; or fixed ``(x, y, z)``. Crops are spheres in 3-D; with
    ``xy_only=True`` distances ignore z (vertical columns, for aerial tiles).
    """

    def __init__(self, max_points: int | None = None, radius: float | None = None, center="random",
                 xy_only: bool = False):
        if max_points is None and radius is None:
            raise ConfigError("SphereCrop: give max_points, radius or both")
        if max_points is not None and (isinstance(max_points, bool) or not isinstance(max_points, int)
                                       or max_points < 1):
            raise ConfigError(f"SphereCrop: max_points must be an int >= 1; got {max_points!r}")
        if radius is not None and not (isinstance(radius, (int, float)) and radius > 0):
            raise ConfigError(f"SphereCrop: radius must be a number > 0; got {radius!r}")
        if isinstance(center, str):
            if center not in ("random", "labelled", "middle"):
                raise ConfigError(f"SphereCrop: center must be 'random', 'labelled', 'middle' or (x, y, z); got "
                                  f"{center!r}")
        else:
            try:
                center = tuple(float(c) for c in center)
            except (TypeError, ValueError) as e:
                raise ConfigError(f"SphereCrop: center must be 'random', 'labelled', 'middle' or (x, y, z); got "
                                  f"{center!r}") from e
            if len(center) != 3:
                raise ConfigError(f"SphereCrop: a fixed center is (x, y, z); got {center!r}")
        self.max_points, self.radius, self.center, self.xy_only = max_points, radius, center, bool(xy_only)

    def __call__(self, sample: dict, rng: np.random.Generator | None = None) -> dict:
        xyz = _coords(sample, "SphereCrop")
        n = len(xyz)
        if self.radius is None and n <= self.max_points:
            return sample
        if self.center == "middle":
            c = (xyz.amin(0) + xyz.amax(0)) / 2
        elif isinstance(self.center, str):
            if rng is None:
                raise InputError(f"SphereCrop(center={self.center!r}) needs an rng")
            pool = np.arange(n)
            if self.center == "labelled" and sample.get("labels") is not None:
                labelled = np.flatnonzero(torch.as_tensor(sample["labels"]).numpy() >= 0)
                pool = labelled if len(labelled) else pool
            c = xyz[int(pool[rng.integers(len(pool))])]
        else:
            c = torch.tensor(self.center, dtype=xyz.dtype)
        diff = xyz - c
        d2 = (diff[:, :2] ** 2).sum(1) if self.xy_only else (diff ** 2).sum(1)
        if self.max_points is not None and n > self.max_points:
            keep = torch.topk(d2, self.max_points, largest=False).indices
        else:
            keep = torch.arange(n)
        if self.radius is not None:
            keep = keep[d2[keep] <= self.radius ** 2]
        return take(sample, keep.sort().values)

    def __repr__(self):
        return (f"SphereCrop(max_points={self.max_points}, radius={self.radius}, center={self.center!r}, "
                f"xy_only={self.xy_only})")


class ShufflePoints:
    """Put the points in a random order (every per-point field with them)."""

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        xyz = _coords(sample, "ShufflePoints")
        return take(sample, torch.from_numpy(rng.permutation(len(xyz))))

    def __repr__(self):
        return "ShufflePoints()"

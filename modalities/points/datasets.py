"""Point-cloud datasets made from real data that exists offline (CGAL's demo data, see
:func:`~glocal.modalities.points.io.data_root`), and the collate that batches ragged clouds.

- :class:`ShapeClassification`: object classes of CGAL's real ``.off`` meshes (:data:`SHAPE_CLASSES`,
  20 classes), point clouds sampled over their surfaces under random rotation, scale, noise and
  partial views; the test split uses meshes held out from training where a class has several,
  and unseen poses and views (other random streams) everywhere.
- :class:`LidarTiles`: semantic segmentation (ground / vegetation / roof) of two real aerial LiDAR
  tiles, ``b9_training.ply`` (CGAL's labelled training tile) and ``urban.las`` (ASPRS classes),
  split spatially into strips (train) and held-out strips (test).
- :class:`PointScenes`: generated scenes for segmentation: sampled meshes of the shape classes
  standing on an uneven ground with clutter, sensor noise and dropped regions, labelled per point.

Samples (before transforms)::

    coords        float32 tensor [N, 3]
    normals       float32 tensor [N, 3]       (shapes, scenes)
    colors        float32 tensor [N, 3]       (b9: its RGB, in [0, 1])
    intensity     float32 tensor [N]          (urban.las)
    label         int, the class              (ShapeClassification)
    labels        int64 tensor [N], per point (LidarTiles, PointScenes; unlabelled = ignore_index)
    path          str, the source file (the mesh of a shape, the tile, the scene set's cache)
    feature_keys  the per-point fields the model's input is made of (the dataset's ``features``)

Generated sets are deterministic from their arguments and cached by content as ``.npz`` under
``$GLOCAL_CACHE/data/points`` (default ``~/.cache/glocal/data/points``), named by a hash of the
arguments, :data:`GENERATOR_VERSION` and the source meshes' bytes: built once, loaded after.

Batches (:class:`PointCollate`): ``inputs [B, L, C]`` (the ``feature_keys`` concatenated),
``pos [B, L, 3]``, ``mask [B, L]``, ``lengths [B]``, ``batch [N]``, and ``data_samples`` with
``label [B]`` (classification) or ``seg [B, L]`` (per-point classes, ``ignore_index`` at padding),
as the tasks' ``CrossEntropyLoss(target='label' | 'seg')``, ``SegmentPost`` and ``IoUMetric``
read them, and ``path``.

Example (the collate; the datasets need CGAL's data, ``bash tools/setup.sh``):

    >>> import torch
    >>> a = dict(coords=torch.rand(5, 3), normals=torch.rand(5, 3), labels=torch.tensor([0, 1, 1, -100, 2]))
    >>> b = dict(coords=torch.rand(3, 3), normals=torch.rand(3, 3), labels=torch.tensor([2, 2, 0]))
    >>> batch = PointCollate(features=("coords", "normals"))([a, b])
    >>> batch["inputs"].shape, batch["pos"].shape, batch["mask"].sum(1).tolist()
    (torch.Size([2, 5, 6]), torch.Size([2, 5, 3]), [5, 3])
    >>> batch["data_samples"]["seg"].tolist()
    [[0, 1, 1, -100, 2], [2, 2, 0, -100, -100]]
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import time
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from glocal.core.errors import ConfigError, DataError, DatasetNotFoundError

from ..batch import PadCollate, SkippedSample
from ..dataset import GlocalDataset
from .io import POINT_SUFFIXES, _draw, _face_table, check_labels, data_root, read_mesh, read_points
from .transforms import POINT_KEYS, CenterShift, NormalizeCoords, SphereCrop, random_rotation, rotation_matrix

__all__ = ["PointCollate", "ShapeClassification", "LidarTiles", "PointScenes", "SHAPE_CLASSES", "LIDAR_CLASSES",
           "ASPRS_TO_LIDAR", "GENERATOR_VERSION", "hidden_point_removal", "generate_shapes", "FEATURE_KEYS"]

GENERATOR_VERSION = 1  # bump whenever a generator changes what it makes from the same arguments
_SPLITS = {"train": 0, "val": 1, "test": 2}  # the split's id is part of every random stream
FEATURE_KEYS = ("coords", "colors", "normals", "intensity")  # what PointCollate can put in 'inputs'

# class: (meshes for train and val, meshes held out for test). Without held-out meshes the test
# split uses the training meshes in unseen poses and views. Files are CGAL's meshes/<name>.off.
SHAPE_CLASSES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "armadillo": (("armadillo",), ()),
    "bunny": (("bunny00",), ()),
    "camel": (("camel",), ()),
    "cow": (("cow",), ()),
    "bull": (("bull",), ()),
    "elk": (("elk",), ()),
    "dino": (("dino",), ()),
    "triceratops": (("triceratops",), ()),
    "elephant": (("elephant", "refined_elephant"), ("elephant-with-holes",)),
    "bear": (("bear",), ("bear_bis",)),
    "lion": (("lion",), ("lion-head",)),
    "knot": (("knot", "knot1"), ("knot2",)),
    "cube": (("cube", "cube-meshed", "cube_quad", "small_cube"), ("translated-cube", "cube-shuffled")),
    "sphere": (("sphere", "larger_sphere", "geosphere"), ("sphere966",)),
    "tetrahedron": (("tetrahedron", "reference_tetrahedron"), ("tet-shuffled",)),
    "gear": (("pinion",), ("pinion_small",)),
    "rotor": (("rotor",), ("rotor_small",)),
    "anchor": (("anchor",), ("anchor_dense",)),
    "cylinder": (("cylinder",), ("cylinder_locally_refined",)),
    "fandisk": (("fandisk",), ("fandisk_large",)),
}

LIDAR_CLASSES = ("ground", "vegetation", "roof")
# ASPRS LAS classification -> LIDAR_CLASSES; every other code (unclassified, water, noise, ...) is ignored
ASPRS_TO_LIDAR = {2: 0, 3: 1, 4: 1, 5: 1, 6: 2}
_TILES = {  # name: (file under data_root(), raw label -> class, default features)
    "b9": ("points_3/b9_training.ply", {0: 0, 1: 1, 2: 2}, ("coords", "colors")),
    "urban": ("examples/Point_set_processing_3/data/urban.las", ASPRS_TO_LIDAR, ("coords", "intensity")),
}


# ------------------------------------------------------------------------------------------------
# batching
# ------------------------------------------------------------------------------------------------
class PointCollate(PadCollate):
    """``PadCollate`` for point clouds: each sample's ``feature_keys`` (or the collate's
    ``features``) are concatenated into ``inputs [N_i, C]`` (``coords`` 3, ``colors`` 3,
    ``normals`` 3, ``intensity`` 1 channels), ``coords`` become ``pos``, and per-point ``labels``
    become the token target ``seg``; then everything is padded to the longest cloud::

        inputs   [B, L, C] float32, zero at padding       pos      [B, L, 3] float32
        mask     [B, L] bool (True = a point)             lengths  [B] int64
        batch    [N] the sample of every point
        data_samples: label [B] | seg [B, L] int64 (ignore_index at padding), path [B] (list), ...

    A per-point ``index`` (the original point of each point, set by ``VoxelDownsample``) goes to
    ``data_samples['index'] [B, L]`` (ignore_index at padding), to map predictions back; other
    per-point fields (``colors``, ``extra``, ...) only through ``inputs``. Every other key of the
    samples goes to ``data_samples`` as ``PadCollate`` stacks it. A sample that already has ``inputs`` is taken
    as it is (with ``coords`` as ``pos``).

    Args:
        features: the default per-point fields of ``inputs``, in order (a sample's own
            ``feature_keys`` win).
        ignore_index: the label of padded points (and what the loss and metric ignore).
        seg_key: the name of the per-point target in ``data_samples``.
    """

    def __init__(self, features: Sequence[str] = ("coords",), ignore_index: int = -100, seg_key: str = "seg"):
        self.features = _check_features(features, "PointCollate")
        self.seg_key = seg_key
        super().__init__(token_keys=(seg_key, "index"), ignore_index=ignore_index)

    def _pack(self, sample, b: int):
        if isinstance(sample, SkippedSample) or not isinstance(sample, Mapping):
            return sample
        name = sample.get("path") if isinstance(sample.get("path"), str) else f"sample {b} of the batch"
        if "coords" not in sample:
            raise DataError(f"PointCollate: {name} has no 'coords' (fields: {sorted(sample, key=str)})")
        coords = torch.as_tensor(sample["coords"]).float()
        n = len(coords)
        features = _check_features(sample.get("feature_keys") or self.features, "PointCollate")
        if "inputs" in sample:
            inputs = torch.as_tensor(sample["inputs"])
        else:
            parts = []
            for key in features:
                if sample.get(key) is None:
                    raise DataError(f"PointCollate: {name} has no {key!r}, which the features {list(features)} need "
                                    f"(fields: {sorted(sample, key=str)}); use a file with {key}, or configure "
                                    f"features without it")
                value = torch.as_tensor(sample[key]).float()
                value = value[:, None] if value.dim() == 1 else value
                if value.dim() != 2 or len(value) != n:
                    raise DataError(f"PointCollate: {name} has {key!r} of shape {tuple(value.shape)} for {n} points")
                parts.append(value)
            inputs = torch.cat(parts, 1)  # [N, C]
        out = {k: v for k, v in sample.items()
               if k not in POINT_KEYS and k not in ("extra", "feature_keys", "inputs")}
        out.update(inputs=inputs, pos=coords)
        if sample.get("labels") is not None:
            out[self.seg_key] = torch.as_tensor(sample["labels"]).long()
        if sample.get("index") is not None:
            out["index"] = torch.as_tensor(sample["index"]).long()
        return out

    def __call__(self, samples: Sequence[dict]) -> dict:
        return super().__call__([self._pack(s, b) for b, s in enumerate(samples)])

    def __repr__(self):
        return f"PointCollate(features={self.features}, ignore_index={self.ignore_index}, seg_key={self.seg_key!r})"


def _check_features(features, who: str) -> tuple[str, ...]:
    features = (features,) if isinstance(features, str) else tuple(features)
    unknown = [f for f in features if f not in FEATURE_KEYS]
    if unknown or not features:
        raise ConfigError(f"{who}: features must be a non-empty list from {', '.join(FEATURE_KEYS)}; got "
                          f"{list(features)}")
    return features


# ------------------------------------------------------------------------------------------------
# caches
# ------------------------------------------------------------------------------------------------
def _cache_root(cache_dir) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    root = os.environ.get("GLOCAL_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "glocal")
    return Path(root) / "data" / "points"


def _key(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """An ``.npz`` (zlib level 1), written to a temporary name and renamed into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
            for name, a in arrays.items():
                with z.open(f"{name}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.ascontiguousarray(a), allow_pickle=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _load_npz(path: Path, names: Sequence[str], who: str) -> dict[str, np.ndarray] | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            return {n: z[n] for n in names}
    except Exception as e:  # noqa: BLE001 - any unreadable cache is regenerated
        warnings.warn(f"{who}: cache file {path} is unreadable ({e!r}); regenerating it", RuntimeWarning, stacklevel=3)
        return None


# ------------------------------------------------------------------------------------------------
# meshes
# ------------------------------------------------------------------------------------------------
class _Mesh:
    """A mesh scaled into the unit sphere (bounding-box centre at the origin), ready to sample."""

    def __init__(self, path: Path):
        vertices, faces = read_mesh(path)
        if len(faces) == 0:
            raise DataError(f"{path}: the mesh has no faces to sample")
        vertices = vertices - (vertices.min(0) + vertices.max(0)) / 2
        vertices /= np.linalg.norm(vertices, axis=1).max()
        self.path, self.vertices, self.faces = path, vertices, faces
        self.cum, self.unit = _face_table(vertices, faces, path)
        self.area = float(self.cum[-1])

    def draw(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return _draw(self.vertices, self.faces, self.cum, self.unit, n, rng)


@lru_cache(maxsize=64)
def _mesh(path: str) -> _Mesh:
    return _Mesh(Path(path))


def _mesh_paths(root: Path, names: Sequence[str], who: str) -> dict[str, Path]:
    paths = {name: root / "meshes" / f"{name}.off" for name in names}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise DatasetNotFoundError(f"{who}: {len(missing)} meshes are missing from CGAL's data, e.g. {missing[0]}; "
                                   f"run `bash tools/setup.sh` to unpack libcgal-demo again")
    return paths


def _digest(paths: Sequence[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:20]


def hidden_point_removal(points: np.ndarray, camera: np.ndarray, gamma: float = 2.0) -> np.ndarray:
    """The indices of the points visible from ``camera`` (Katz, Tal & Basri, "Direct visibility of
    point sets", SIGGRAPH 2007): points are flipped spherically about the camera (radius
    ``max|p - camera| * 10**gamma``) and the visible ones are the vertices of the convex hull of the
    flipped points and the camera. Larger ``gamma`` keeps more points.

    >>> p = np.array([[1., 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]])
    >>> hidden_point_removal(p, np.array([5., 0, 0])).tolist()  # the far point (-1, 0, 0) is hidden
    [0, 2, 3, 4, 5]
    """
    from scipy.spatial import ConvexHull

    q = points - camera
    r = np.linalg.norm(q, axis=1)
    radius = r.max() * 10.0 ** gamma
    flipped = q + 2 * (radius - r)[:, None] * q / np.maximum(r, 1e-12)[:, None]
    hull = ConvexHull(np.vstack([flipped, np.zeros((1, 3))]))
    return np.sort(hull.vertices[hull.vertices < len(points)])


def _unit_vector(rng: np.random.Generator) -> np.ndarray:
    v = rng.standard_normal(3)
    return v / np.linalg.norm(v)


# ------------------------------------------------------------------------------------------------
# shared by the datasets
# ------------------------------------------------------------------------------------------------
class _PointSet(GlocalDataset):
    """Base: ``features`` (what ``inputs`` is made of), ``ignore_index``, a :class:`PointCollate`."""

    default_features: tuple[str, ...] = ("coords",)
    input_extensions = POINT_SUFFIXES  # the clouds and meshes from_file reads (read_points)

    def __init__(self, features, ignore_index: int, transforms, on_error: str, max_skips: int | None):
        super().__init__(transforms, on_error=on_error, max_skips=max_skips)
        self.features = _check_features(features if features is not None else self.default_features,
                                         type(self).__name__)
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, int) or ignore_index >= 0:
            raise ConfigError(f"{type(self).__name__}: ignore_index must be a negative int; got {ignore_index!r}")
        self.ignore_index = ignore_index
        self.collate = PointCollate(self.features, ignore_index=ignore_index)

    @classmethod
    def collate_for(cls, pipeline=None) -> PointCollate:
        """The collate of samples made by ``from_file`` (they name their ``feature_keys``), for
        ``tools/infer.py``."""
        return PointCollate(cls.default_features)

    @staticmethod
    def _split(split: str, who: str, allowed=("train", "val", "test")) -> str:
        if split not in allowed:
            raise ConfigError(f"{who}: split must be one of {', '.join(map(repr, allowed))}; got {split!r}")
        return split

    @staticmethod
    def _from_file(source, features, sample: int | None, seed: int, frame: str) -> dict:
        cloud = read_points(source, sample=sample, seed=seed)
        out = {k: cloud[k] for k in ("coords", "colors", "normals", "intensity") if k in cloud}
        out = NormalizeCoords("bbox")(out, None) if frame == "unit" else CenterShift(apply_z=True)(out, None)
        return dict(out, path=str(source), feature_keys=features)


# ------------------------------------------------------------------------------------------------
# shape classification
# ------------------------------------------------------------------------------------------------
def _class_names(classes: Sequence[str] | None, who: str) -> tuple[str, ...]:
    """The configured shape classes (default: all of SHAPE_CLASSES), checked."""
    names = tuple(SHAPE_CLASSES) if classes is None else tuple(classes)
    unknown = [c for c in names if c not in SHAPE_CLASSES]
    if unknown or not names or len(set(names)) != len(names):
        raise ConfigError(f"{who}: classes must be distinct names from SHAPE_CLASSES ({', '.join(SHAPE_CLASSES)}); "
                          f"got {list(names)}")
    return names


class ShapeClassification(_PointSet):
    """Shape classification over CGAL's real meshes: the 20 classes of :data:`SHAPE_CLASSES`.

    **How a sample is made.** A mesh of the class (scaled into the unit sphere) is sampled
    uniformly over its surface (area-weighted, with face normals). With probability ``partial`` the
    cloud is a partial view: half of those keep the points visible from a random camera at 2.5-4
    radii (hidden point removal, :func:`hidden_point_removal`), the other half drop the points on
    one side of a random plane (keeping a fraction drawn from ``keep``). Then ``points`` of them are
    drawn, rotated (``rotation``: ``'so3'`` any rotation, ``'z'`` about z, ``None``), scaled by a
    factor from ``scale``, jittered (Gaussian ``jitter``, clipped at 3 sigma) and centred on their
    bounding box.

    **Splits.** ``train`` and ``val`` use the class's training meshes; ``test`` uses its held-out
    meshes where it has them (elephant, bear, lion, knot, cube, sphere, tetrahedron, gear, rotor,
    anchor, cylinder, fandisk: 12 of the 20 classes), else the training meshes. Each
    (split, class) has its own random stream, so val and test poses, views and points are unseen.

    Generation is deterministic and cached (module doc): about 3,200 clouds of 1,024 points take a
    few seconds on one core.

    Samples: ``coords [points, 3]``, ``normals [points, 3]``, ``label``, ``mesh`` (the file's stem),
    ``path`` (the mesh), ``feature_keys``.

    Args:
        split: ``'train'``, ``'val'`` or ``'test'``.
        points: points per cloud.
        per_class: clouds per class and split: an int, or ``{split: n}`` (default 100 / 20 / 40).
        classes: a subset of :data:`SHAPE_CLASSES` (names), in label order; None: all 20.
        seed: the generation seed.
        rotation, scale, jitter, partial, keep: the augmentation of the generated clouds (above).
        features: the per-point fields of the model input, from ``coords``, ``normals``.
        root: CGAL's data folder (default :func:`~glocal.modalities.points.io.data_root`).
        cache_dir: where the ``.npz`` goes (default ``$GLOCAL_CACHE/data/points``).
        transforms, on_error, max_skips: see :class:`~glocal.modalities.dataset.GlocalDataset`.
    """

    metainfo = dict(classes=tuple(SHAPE_CLASSES))
    _default_sizes = {"train": 100, "val": 20, "test": 40}

    def __init__(self, split: str = "train", points: int = 1024, per_class=None, classes: Sequence[str] | None = None,
                 seed: int = 0, rotation: str | None = "so3", scale=(0.8, 1.2), jitter: float = 0.01,
                 partial: float = 0.5, keep=(0.5, 0.85), features=("coords",), root=None, cache_dir=None,
                 transforms=None, on_error: str = "error", max_skips: int | None = None):
        super().__init__(features, -100, transforms, on_error, max_skips)
        who = "ShapeClassification"
        self.split = self._split(split, who)
        names = _class_names(classes, who)
        sizes = _sizes(per_class, self._default_sizes, who, "per_class")
        if rotation not in ("so3", "z", None):
            raise ConfigError(f"{who}: rotation must be 'so3', 'z' or None; got {rotation!r}")
        if isinstance(points, bool) or not isinstance(points, int) or points < 1:
            raise ConfigError(f"{who}: points must be an int >= 1; got {points!r}")
        if not 0 <= partial <= 1 or not 0 < float(keep[0]) <= float(keep[1]) <= 1:
            raise ConfigError(f"{who}: partial must be in [0, 1] and keep a (min, max) in (0, 1]; got {partial}, "
                              f"{keep}")
        self.root = Path(root) if root is not None else data_root()
        self.metainfo = dict(classes=names)
        self.classes = {c: SHAPE_CLASSES[c] for c in names}
        mesh_names = sorted({m for tr, te in self.classes.values() for m in (*tr, *te)})
        paths = _mesh_paths(self.root, mesh_names, who)
        self.args = dict(points=points, sizes=sizes, classes=self.classes, seed=int(seed), rotation=rotation,
                         scale=[float(s) for s in scale], jitter=float(jitter), partial=float(partial),
                         keep=[float(k) for k in keep])
        key = _key(dict(self.args, version=GENERATOR_VERSION, meshes=_digest(list(paths.values()))))
        self.cache_path = _cache_root(cache_dir) / f"shapes-v{GENERATOR_VERSION}-{key}.npz"
        fields = ("coords", "normals", "label", "mesh", "split", "mesh_names")
        arrays = _load_npz(self.cache_path, fields, who)
        self.build_seconds = None
        if arrays is None:
            start = time.perf_counter()
            arrays = generate_shapes(paths, **self.args)
            self.build_seconds = time.perf_counter() - start
            _save_npz(self.cache_path, arrays)
        rows = arrays["split"] == _SPLITS[split]
        self.coords, self.normals = arrays["coords"][rows], arrays["normals"][rows]  # [S, P, 3] f4, f2
        self.labels, self.mesh_ids = arrays["label"][rows], arrays["mesh"][rows]
        self.mesh_names = [str(m) for m in arrays["mesh_names"]]
        self.paths = {m: str(paths[m]) for m in self.mesh_names}

    def __len__(self) -> int:
        return len(self.labels)

    def describe(self, index: int) -> str:
        return self.paths[self.mesh_names[self.mesh_ids[index]]]

    def load(self, index: int) -> dict:
        mesh = self.mesh_names[self.mesh_ids[index]]
        return dict(coords=torch.from_numpy(self.coords[index].copy()),
                    normals=torch.from_numpy(self.normals[index].astype(np.float32)),
                    label=int(self.labels[index]), mesh=mesh, path=self.paths[mesh], feature_keys=self.features)

    def lengths(self) -> np.ndarray:
        """Points per cloud ``[N]`` int64 (all ``points``)."""
        return np.full(len(self), self.coords.shape[1], dtype=np.int64)

    def meshes(self) -> set[str]:
        """The mesh files this split's clouds come from."""
        return {self.mesh_names[i] for i in np.unique(self.mesh_ids)}

    @classmethod
    def from_file(cls, source: str, points: int = 1024, features=("coords",), seed: int = 0) -> dict:
        """A user's mesh or point cloud as a raw sample for inference (``tools/infer.py``): a mesh is
        sampled with ``points`` points (and normals), a larger cloud subsampled to ``points``;
        centred on its bounding box and scaled into the unit sphere, as the training clouds."""
        return cls._from_file(source, _check_features(features, cls.__name__), points, seed, "unit")


def _sizes(value, default: dict, who: str, name: str) -> dict:
    if value is None:
        return dict(default)
    if isinstance(value, Mapping):
        sizes = {**default, **value}
    else:
        sizes = {s: value for s in default}
    if set(sizes) != set(default) or any(isinstance(v, bool) or not isinstance(v, int) or v < 0
                                         for v in sizes.values()):
        raise ConfigError(f"{who}: {name} must be an int >= 0 or {{split: int}} for {', '.join(default)}; "
                          f"got {value!r}")
    return sizes


def _shape_cloud(mesh: _Mesh, points: int, rng: np.random.Generator, rotation, scale, jitter, partial,
                 keep) -> tuple[np.ndarray, np.ndarray]:
    """One augmented cloud of ``mesh`` (see :class:`ShapeClassification`): ``[points, 3]`` twice."""
    mode = "full" if rng.random() >= partial else ("view" if rng.random() < 0.5 else "plane")
    p = nrm = None
    if mode == "view":  # batches of 3 x points until enough are visible (most views see 20-55%)
        camera, seen_p, seen_n, count = _unit_vector(rng) * rng.uniform(2.5, 4.0), [], [], 0
        for _ in range(8):
            p, nrm = mesh.draw(3 * points, rng)
            seen = hidden_point_removal(p, camera)
            seen_p.append(p[seen])
            seen_n.append(nrm[seen])
            count += len(seen)
            if count >= points:
                pick = rng.choice(count, points, replace=False)
                p, nrm = np.concatenate(seen_p)[pick], np.concatenate(seen_n)[pick]
                break
        else:
            mode = "plane"  # too little of the mesh is visible: cut it instead
    if mode == "plane":
        frac, direction = rng.uniform(*keep), _unit_vector(rng)
        p, nrm = mesh.draw(int(math.ceil(points / frac * 1.3)) + 16, rng)
        proj = p @ direction
        kept = np.flatnonzero(proj >= np.quantile(proj, 1 - frac))
        pick = rng.choice(kept, points, replace=len(kept) < points)
        p, nrm = p[pick], nrm[pick]
    if mode == "full":
        p, nrm = mesh.draw(points, rng)
    r = (random_rotation(rng) if rotation == "so3" else
         rotation_matrix("z", rng.uniform(-math.pi, math.pi)) if rotation == "z" else np.eye(3))
    p = (p @ r.T) * rng.uniform(*scale)
    nrm = nrm @ r.T
    p = p + np.clip(jitter * rng.standard_normal(p.shape), -3 * jitter, 3 * jitter)
    p -= (p.min(0) + p.max(0)) / 2
    return p.astype(np.float32), nrm.astype(np.float16)


def generate_shapes(paths: Mapping[str, Path], points: int, sizes: Mapping[str, int], classes, seed: int,
                    rotation, scale, jitter: float, partial: float, keep) -> dict[str, np.ndarray]:
    """Every split's clouds of :class:`ShapeClassification`, as the arrays of its cache."""
    mesh_names = sorted(paths)
    mesh_index = {m: i for i, m in enumerate(mesh_names)}
    out = {k: [] for k in ("coords", "normals", "label", "mesh", "split")}
    for split, sid in _SPLITS.items():
        for c, (name, (train, test)) in enumerate(classes.items()):
            pool = list(test) if split == "test" and test else list(train)
            rng = np.random.default_rng([seed, sid, c])
            for _ in range(sizes[split]):
                m = pool[int(rng.integers(len(pool)))]
                p, nrm = _shape_cloud(_mesh(str(paths[m])), points, rng, rotation, scale, jitter, partial, keep)
                for k, v in (("coords", p), ("normals", nrm), ("label", c), ("mesh", mesh_index[m]), ("split", sid)):
                    out[k].append(v)
    n = len(out["label"])
    return dict(coords=np.stack(out["coords"]) if n else np.zeros((0, points, 3), np.float32),
                normals=np.stack(out["normals"]) if n else np.zeros((0, points, 3), np.float16),
                label=np.asarray(out["label"], dtype=np.int64), mesh=np.asarray(out["mesh"], dtype=np.int16),
                split=np.asarray(out["split"], dtype=np.int8), mesh_names=np.asarray(mesh_names))


# ------------------------------------------------------------------------------------------------
# LiDAR tiles
# ------------------------------------------------------------------------------------------------
@lru_cache(maxsize=4)
def _read_tile(path: str) -> dict:
    return read_points(path)


def _kd_blocks(xy: np.ndarray, index: np.ndarray, max_points: int) -> list[np.ndarray]:
    """Split points into blocks of at most ``max_points`` by halving at the median of the longer
    horizontal extent, recursively: blocks cover every point exactly once."""
    if len(index) <= max_points:
        return [np.sort(index)]
    pts = xy[index]
    axis = int(np.argmax(np.ptp(pts, axis=0)))
    order = index[np.argsort(pts[:, axis], kind="stable")]
    half = len(order) // 2
    return _kd_blocks(xy, order[:half], max_points) + _kd_blocks(xy, order[half:], max_points)


class LidarTiles(_PointSet):
    """Semantic segmentation of real aerial LiDAR: ground, vegetation, roof (:data:`LIDAR_CLASSES`).

    Tiles (CGAL's data):

    - ``'b9'``: ``points_3/b9_training.ply``, 22,300 points with RGB and CGAL's training labels:
      -1 unlabelled (19,853, ignored), 0 ground (1,567), 1 vegetation (314), 2 roof (566);
      default features ``coords`` + ``colors``;
    - ``'urban'``: ``urban.las`` of CGAL's examples, 13,511 points with intensity and ASPRS classes
      (2 ground -> ground, 3-5 vegetation -> vegetation, 6 building -> roof, others ignored: it has
      1 unclassified (29), 2 ground (2,441), 4 medium vegetation (11,041)); default features
      ``coords`` + ``intensity``.

    **Spatial split.** The tile is cut into strips ``strip`` metres wide along x (from its minimum
    x); every ``test_every``-th strip (the 3rd, 6th, ...) is the test region, the others train (about
    a third test). Strips, not one cut at an x quantile, because b9's labels lie in three separate
    patches (ground west, roof centre, vegetation east): a single cut would leave a class out of
    training. With the defaults b9's train strips hold 1,043 / 218 / 441 and its test strips
    524 / 96 / 125 ground / vegetation / roof points.

    **Samples.** Train: ``samples_per_epoch`` crops of the train region, each the ``points`` points
    nearest (in x, y) to a random labelled point (:class:`SphereCrop` ``center='labelled',
    xy_only=True``, drawn with the sample's rng). Test: the test region cut into blocks of at most
    ``points`` points (each test strip halved at the median of its longer side until it fits), so
    every test point is predicted exactly once. With ``center``, each crop or block is shifted by
    :class:`CenterShift` (x, y centred, z from the block's lowest point). Coordinates are metres,
    relative to the tile's offset (its floored minimum corner, float64).

    Samples: ``coords``, ``colors`` or ``intensity``, ``labels`` (class ids; ``ignore_index`` for
    unlabelled points), ``path``, ``feature_keys``.
    """

    metainfo = dict(classes=LIDAR_CLASSES)

    def __init__(self, tile: str = "b9", split: str = "train", points: int = 4096, strip: float = 8.0,
                 test_every: int = 3, samples_per_epoch: int = 100, features=None, center: bool = True,
                 ignore_index: int = -100, root=None, transforms=None, on_error: str = "error",
                 max_skips: int | None = None):
        who = "LidarTiles"
        if tile not in _TILES:
            raise ConfigError(f"{who}: tile must be one of {', '.join(map(repr, _TILES))}; got {tile!r}")
        file, label_map, default_features = _TILES[tile]
        self.default_features = default_features
        self.split = self._split(split, who, ("train", "test"))
        if isinstance(points, bool) or not isinstance(points, int) or points < 1:
            raise ConfigError(f"{who}: points must be an int >= 1; got {points!r}")
        if not strip > 0 or isinstance(test_every, bool) or not isinstance(test_every, int) or test_every < 2:
            raise ConfigError(f"{who}: strip must be > 0 and test_every an int >= 2; got {strip}, {test_every}")
        prefix = []
        if split == "train":
            prefix.append(SphereCrop(max_points=points, center="labelled", xy_only=True))
        if center:
            prefix.append(CenterShift(apply_z=True))
        super().__init__(features, ignore_index, [*prefix, *(transforms or [])], on_error, max_skips)
        self.tile, self.points, self.samples_per_epoch = tile, points, int(samples_per_epoch)
        self.path = str((Path(root) if root is not None else data_root()) / file)
        if not os.path.isfile(self.path):
            raise DatasetNotFoundError(f"{who}: {self.path} is missing; run `bash tools/setup.sh`")
        cloud = _read_tile(self.path)
        raw = cloud["labels"].numpy()
        if tile == "b9":
            check_labels(raw, len(LIDAR_CLASSES), self.path, ignore_index=-1)
        lookup = np.full(max(int(raw.max()) + 1, 1), ignore_index, dtype=np.int64)
        for code, cls in label_map.items():
            if code < len(lookup):
                lookup[code] = cls
        labels = np.where(raw >= 0, lookup[np.clip(raw, 0, None)], ignore_index)
        self.offset = cloud["offset"]
        xyz = cloud["coords"].numpy()
        strip_id = np.floor((xyz[:, 0] - xyz[:, 0].min()) / strip).astype(np.int64)
        is_test = strip_id % test_every == test_every - 1
        region = np.flatnonzero(is_test if split == "test" else ~is_test)
        self.region = region
        self.cloud = {k: cloud[k] for k in ("coords", "colors", "intensity") if k in cloud}
        self.cloud["labels"] = torch.from_numpy(labels)
        if split == "test":
            self.blocks = [b for s in np.unique(strip_id[region])
                           for b in _kd_blocks(xyz[:, :2], region[strip_id[region] == s], points)]
        else:
            self.blocks = [region]

    def __len__(self) -> int:
        return self.samples_per_epoch if self.split == "train" else len(self.blocks)

    def describe(self, index: int) -> str:
        return self.path

    def load(self, index: int) -> dict:
        block = torch.from_numpy(self.blocks[0 if self.split == "train" else index])
        sample = {k: v[block] for k, v in self.cloud.items()}
        return dict(sample, path=self.path, feature_keys=self.features)

    def lengths(self) -> np.ndarray:
        """Points per sample ``[N]`` int64: ``min(points, train points)`` per crop, each block's size."""
        if self.split == "train":
            return np.full(len(self), min(self.points, len(self.region)), dtype=np.int64)
        return np.array([len(b) for b in self.blocks], dtype=np.int64)

    def class_counts(self) -> np.ndarray:
        """Labelled points of each class in this split's region ``[3]``."""
        labels = self.cloud["labels"].numpy()[self.region]
        return np.bincount(labels[labels >= 0], minlength=len(LIDAR_CLASSES))

    @classmethod
    def collate_for(cls, pipeline=None) -> PointCollate:
        return PointCollate(("coords",))

    @classmethod
    def from_file(cls, source: str, features=None, tile: str = "b9") -> dict:
        """A user's LiDAR file (``.ply``, ``.las``, ``.pcd``, ``.xyz``) as one raw sample for
        inference: every point, shifted as the training crops (x, y centred, z from the lowest
        point); ``features`` default to the ``tile``'s."""
        features = _check_features(features if features is not None else _TILES.get(tile, _TILES["b9"])[2],
                                   cls.__name__)
        return cls._from_file(source, features, None, 0, "shift")


# ------------------------------------------------------------------------------------------------
# generated scenes
# ------------------------------------------------------------------------------------------------
def _box_surface(size: np.ndarray, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points uniformly over an axis-aligned box of ``size`` centred at the origin, with normals."""
    sx, sy, sz = size
    areas = np.array([sy * sz, sy * sz, sx * sz, sx * sz, sx * sy, sx * sy])
    face = rng.choice(6, n, p=areas / areas.sum())
    p = (rng.random((n, 3)) - 0.5) * size
    axis, sign = face // 2, np.where(face % 2 == 0, 1.0, -1.0)
    p[np.arange(n), axis] = sign * size[axis] / 2
    nrm = np.zeros((n, 3))
    nrm[np.arange(n), axis] = sign
    return p, nrm


def _scene(meshes: Sequence[Sequence[_Mesh]], rng: np.random.Generator, a: dict) -> tuple[np.ndarray, ...]:
    """One scene of :class:`PointScenes`: ``coords [n, 3] f4, normals [n, 3] f2, labels [n] i2``."""
    half = a["area"] / 2
    K = len(meshes)
    # an uneven ground: two low waves
    waves = [(rng.uniform(0.03, 0.12), *rng.uniform(0.2, 0.8, 2) * rng.choice([-1, 1], 2), rng.uniform(0, 2 * np.pi))
             for _ in range(2)]

    def height(x, y):
        return sum(amp * np.sin(fx * x + fy * y + ph) for amp, fx, fy, ph in waves)

    def gradient(x, y):
        gx = sum(amp * fx * np.cos(fx * x + fy * y + ph) for amp, fx, fy, ph in waves)
        gy = sum(amp * fy * np.cos(fx * x + fy * y + ph) for amp, fx, fy, ph in waves)
        return gx, gy

    parts, discs = [], []  # parts: (kind, label, payload, area); discs: placed footprints (x, y, r)

    def place(radius: float) -> tuple[float, float] | None:
        for _ in range(100):
            x, y = rng.uniform(-half + radius, half - radius, 2)
            if all((x - u) ** 2 + (y - v) ** 2 > (radius + r) ** 2 for u, v, r in discs):
                discs.append((x, y, radius))
                return x, y
        return None

    for _ in range(int(rng.integers(a["objects"][0], a["objects"][1] + 1))):
        c = int(rng.integers(K))
        mesh = meshes[c][int(rng.integers(len(meshes[c])))]
        size, rot = rng.uniform(*a["object_size"]), random_rotation(rng)
        v = (mesh.vertices @ rot.T) * size
        at = place(float(np.linalg.norm(v[:, :2], axis=1).max()))
        if at is not None:
            shift = np.array([at[0], at[1], height(*at) - v[:, 2].min() - 0.02])
            parts.append(("mesh", c + 1, (mesh, rot, size, shift), mesh.area * size ** 2))
    for _ in range(int(rng.integers(a["clutter"][0], a["clutter"][1] + 1))):
        if rng.random() < 0.5:
            box = rng.uniform(*a["clutter_size"], 3)
            at = place(float(np.linalg.norm(box[:2]) / 2))
            if at is not None:
                turn = rotation_matrix("z", rng.uniform(-np.pi, np.pi))
                shift = np.array([at[0], at[1], height(*at) + box[2] / 2 - 0.01])
                parts.append(("box", K + 1, (box, turn, shift), 2 * (box[0] * box[1] + box[1] * box[2] +
                                                                      box[0] * box[2])))
        else:
            r = rng.uniform(*a["clutter_size"]) / 2
            at = place(r)
            if at is not None:
                parts.append(("sphere", K + 1, (r, np.array([at[0], at[1], height(*at) + r - 0.01])),
                              4 * np.pi * r * r))
    ground_area = a["area"] ** 2
    density = a["points"] / (ground_area + sum(p[3] for p in parts))
    coords, normals, labels = [], [], []
    for kind, label, payload, area in parts:
        n = max(int(round(area * density)), 1)
        if kind == "mesh":
            mesh, rot, size, shift = payload
            p, nrm = mesh.draw(n, rng)
            p, nrm = (p @ rot.T) * size + shift, nrm @ rot.T
        elif kind == "box":
            box, turn, shift = payload
            p, nrm = _box_surface(box, n, rng)
            p, nrm = p @ turn.T + shift, nrm @ turn.T
        else:
            r, centre = payload
            nrm = rng.standard_normal((n, 3))
            nrm /= np.linalg.norm(nrm, axis=1, keepdims=True)
            p = centre + r * nrm
        coords.append(p)
        normals.append(nrm)
        labels.append(np.full(n, label))
    n_ground = max(a["points"] - sum(len(lab) for lab in labels), 1)
    xy = rng.uniform(-half, half, (n_ground, 2))
    gx, gy = gradient(xy[:, 0], xy[:, 1])
    g_nrm = np.stack([-gx, -gy, np.ones(n_ground)], 1)
    coords.append(np.column_stack([xy, height(xy[:, 0], xy[:, 1])]))
    normals.append(g_nrm / np.linalg.norm(g_nrm, axis=1, keepdims=True))
    labels.append(np.zeros(n_ground))
    p, nrm, lab = np.concatenate(coords), np.concatenate(normals), np.concatenate(labels)
    keep = np.ones(len(p), dtype=bool)  # sensor-like gaps: regions where nothing came back
    for _ in range(int(rng.integers(a["drop_regions"][0], a["drop_regions"][1] + 1))):
        centre, radius = p[rng.integers(len(p))], rng.uniform(*a["drop_radius"])
        keep &= ((p - centre) ** 2).sum(1) > radius ** 2
    p, nrm, lab = p[keep], nrm[keep], lab[keep]
    p = p + np.clip(a["jitter"] * rng.standard_normal(p.shape), -3 * a["jitter"], 3 * a["jitter"])
    order = rng.permutation(len(p))
    return p[order].astype(np.float32), nrm[order].astype(np.float16), lab[order].astype(np.int16)


class PointScenes(_PointSet):
    """Semantic segmentation of generated scenes built from CGAL's real meshes.

    **How a scene is made.** A square of ``area`` metres of uneven ground (two low sine waves, up to
    ~0.25 m) carries ``objects`` (min, max) meshes of the shape classes (:data:`SHAPE_CLASSES`,
    or ``classes``), each rotated at random (any rotation), scaled to a radius drawn from
    ``object_size`` metres and set down on the ground without overlapping, and ``clutter``
    (min, max) boxes and balls of ``clutter_size`` metres. Every surface is sampled at one density
    (as a scanner with uniform coverage would): about ``points_per_scene`` points in all, most of
    them ground. Then ``drop_regions`` (min, max) balls of ``drop_radius`` metres around random
    points lose their points (gaps where nothing came back), every point is jittered (Gaussian
    ``jitter`` metres, clipped at 3 sigma), and the points are shuffled. Ground under objects is
    sampled too (there is no occlusion model).

    Labels: 0 ``ground``, 1..K the object classes, K+1 ``clutter`` (``metainfo['classes']``).

    **Splits.** Train and val scenes use the classes' training meshes, test scenes their held-out
    meshes where they have them (see :class:`ShapeClassification`); every scene has its own random
    stream (seed, split, scene), so layouts are unseen across splits. Deterministic and cached
    (module doc).

    Samples: ``coords [n, 3]`` (metres; ground near z = 0, x and y in ±area/2), ``normals``,
    ``labels [n]``, ``path`` (the cache file), ``feature_keys``.
    """

    metainfo = dict(classes=("ground", *SHAPE_CLASSES, "clutter"))
    _default_sizes = {"train": 200, "val": 20, "test": 40}

    def __init__(self, split: str = "train", num_scenes=None, points_per_scene: int = 30_000,
                 classes: Sequence[str] | None = None, objects=(4, 8), object_size=(0.5, 1.0), clutter=(4, 10),
                 clutter_size=(0.1, 0.35), area: float = 8.0, drop_regions=(0, 3), drop_radius=(0.3, 0.8),
                 jitter: float = 0.005, seed: int = 0, features=("coords",), ignore_index: int = -100, root=None,
                 cache_dir=None, transforms=None, on_error: str = "error", max_skips: int | None = None):
        super().__init__(features, ignore_index, transforms, on_error, max_skips)
        who = "PointScenes"
        self.split = self._split(split, who)
        names = _class_names(classes, who)
        if isinstance(num_scenes, Mapping) or num_scenes is None:
            sizes = _sizes(num_scenes, self._default_sizes, who, "num_scenes")
        else:
            sizes = _sizes({split: num_scenes}, self._default_sizes, who, "num_scenes")
        if isinstance(points_per_scene, bool) or not isinstance(points_per_scene, int) or points_per_scene < 100:
            raise ConfigError(f"{who}: points_per_scene must be an int >= 100; got {points_per_scene!r}")
        pairs = dict(objects=objects, object_size=object_size, clutter=clutter, clutter_size=clutter_size,
                     drop_regions=drop_regions, drop_radius=drop_radius)
        for name, pair in pairs.items():
            if len(pair) != 2 or not 0 <= float(pair[0]) <= float(pair[1]):
                raise ConfigError(f"{who}: {name} must be a (min, max) pair with 0 <= min <= max; got {pair!r}")
        self.root = Path(root) if root is not None else data_root()
        self.metainfo = dict(classes=("ground", *names, "clutter"))
        use = [(SHAPE_CLASSES[c][1] if split == "test" and SHAPE_CLASSES[c][1] else SHAPE_CLASSES[c][0])
               for c in names]
        self.mesh_names = sorted({m for ms in use for m in ms})  # the meshes this split's scenes draw from
        paths = _mesh_paths(self.root, self.mesh_names, who)
        self.args = dict(split=split, scenes=sizes[split], points=points_per_scene, classes=names,
                         area=float(area), jitter=float(jitter), seed=int(seed),
                         **{k: [float(v) for v in pair] for k, pair in pairs.items()})
        key = _key(dict(self.args, version=GENERATOR_VERSION, meshes=_digest(list(paths.values()))))
        self.cache_path = _cache_root(cache_dir) / f"scenes-{split}-v{GENERATOR_VERSION}-{key}.npz"
        arrays = _load_npz(self.cache_path, ("coords", "normals", "labels", "offsets"), who)
        self.build_seconds = None
        if arrays is None:
            start = time.perf_counter()
            meshes = [[_mesh(str(paths[m])) for m in ms] for ms in use]
            a = dict(self.args, objects=[int(v) for v in objects], clutter=[int(v) for v in clutter],
                     drop_regions=[int(v) for v in drop_regions])
            scenes = [_scene(meshes, np.random.default_rng([seed, _SPLITS[split], i]), a) for i in range(sizes[split])]
            offsets = np.cumsum([0] + [len(s[0]) for s in scenes]).astype(np.int64)
            arrays = dict(coords=np.concatenate([s[0] for s in scenes]) if scenes else np.zeros((0, 3), np.float32),
                          normals=np.concatenate([s[1] for s in scenes]) if scenes else np.zeros((0, 3), np.float16),
                          labels=np.concatenate([s[2] for s in scenes]) if scenes else np.zeros(0, np.int16),
                          offsets=offsets)
            self.build_seconds = time.perf_counter() - start
            _save_npz(self.cache_path, arrays)
        self.coords, self.normals, self.labels = arrays["coords"], arrays["normals"], arrays["labels"]
        self.offsets = arrays["offsets"]

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def describe(self, index: int) -> str:
        return f"{self.cache_path} (scene {index})"

    def load(self, index: int) -> dict:
        lo, hi = int(self.offsets[index]), int(self.offsets[index + 1])
        return dict(coords=torch.from_numpy(self.coords[lo:hi].copy()),
                    normals=torch.from_numpy(self.normals[lo:hi].astype(np.float32)),
                    labels=torch.from_numpy(self.labels[lo:hi].astype(np.int64)),
                    path=str(self.cache_path), feature_keys=self.features)

    def lengths(self) -> np.ndarray:
        """Points per scene ``[N]`` int64, before the transforms (a crop makes them fewer)."""
        return np.diff(self.offsets)

    @classmethod
    def from_file(cls, source: str, features=("coords",)) -> dict:
        """A user's scan as one raw sample for inference: every point, shifted to the scenes' frame
        (x, y centred, the lowest point at z = 0)."""
        return cls._from_file(source, _check_features(features, cls.__name__), None, 0, "shift")

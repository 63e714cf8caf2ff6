"""Point clouds: reading and writing .ply / .pcd / .xyz / .las and meshes (:mod:`.io`), transforms
that keep every per-point field in step (:mod:`.transforms`), and datasets made from CGAL's real
demo data (Debian ``libcgal-demo``, unpacked by ``tools/setup.sh``; :func:`data_root`): shape
classification over real meshes, segmentation of real aerial LiDAR tiles and of generated scenes,
with :class:`PointCollate` padding ragged clouds (:mod:`.datasets`).

open3d (ply, meshes) and laspy (las) are imported when a file of theirs is read, not here; the
transforms and the collate need only numpy and torch.

    >>> import torch
    >>> from glocal.modalities.points import NormalizeCoords
    >>> NormalizeCoords()(dict(coords=torch.tensor([[0., 0, 2], [0, 0, 4]])), None)["coords"].tolist()
    [[0.0, 0.0, -1.0], [0.0, 0.0, 1.0]]
"""
from importlib import import_module

from .adapter import PointStem
from .io import check_labels, check_points, data_root, read_mesh, read_points, sample_surface, write_points
from .transforms import (POINT_KEYS, CenterShift, ColorJitter, FarthestPointSample, NormalizeCoords, RandomJitter,
                         RandomRotate, RandomScale, ShufflePoints, SphereCrop, VoxelDownsample,
                         farthest_point_sample, take, voxel_indices)

_DATASETS = ("PointCollate", "ShapeClassification", "LidarTiles", "PointScenes", "SHAPE_CLASSES", "LIDAR_CLASSES",
             "ASPRS_TO_LIDAR", "hidden_point_removal")

__all__ = ["PointStem", "check_labels", "check_points", "data_root", "read_mesh", "read_points", "sample_surface", "write_points",
           "POINT_KEYS", "CenterShift", "ColorJitter", "FarthestPointSample", "NormalizeCoords", "RandomJitter",
           "RandomRotate", "RandomScale", "ShufflePoints", "SphereCrop", "VoxelDownsample", "farthest_point_sample",
           "take", "voxel_indices", *_DATASETS]


def __getattr__(name: str):
    if name in _DATASETS:  # the datasets (and scipy, which they use) on first use
        return getattr(import_module(".datasets", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

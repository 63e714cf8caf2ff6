"""Reading and writing point clouds: ``read_points(path) -> dict`` of per-point arrays.

Formats:

- ``.ply``: open3d's tensor reader (``o3d.t.io.read_point_cloud``), which keeps every vertex
  property: ``x y z`` (float or double), ``red green blue``, ``nx ny nz`` and custom ones such as
  CGAL's ``label`` or ``segment_index``;
- ``.pcd``: read and written here with numpy (ascii and binary; ``binary_compressed`` is handed to
  open3d). open3d's own binary PCD reader misreads float fields of mixed sizes and can corrupt
  memory, so it is not used for the others;
- ``.xyz``: text, one point per line: ``x y z`` or ``x y z nx ny nz`` (CGAL's convention); other
  layouts with ``columns=``;
- ``.las`` / ``.laz``: laspy; scaled ``x y z``, ``classification`` as labels, ``intensity``, and
  ``red green blue`` when the point format has them and they are not all zero;
- meshes ``.off`` / ``.obj`` / ``.stl``: open3d's ``read_triangle_mesh``; ``sample=N`` draws ``N``
  points uniformly over the surface (area-weighted, :func:`sample_surface`, seeded by ``seed``)
  with the face normals; without ``sample`` the vertices are the points. OFF files of points only
  (``OFF\\n N 0 0``), which open3d reads as empty, are parsed here.

The sample::

    coords     float32 tensor [N, 3]; the file's coordinates minus ``offset``
    offset     float64 numpy [3]; what was subtracted: tiles in map coordinates (hundreds of km)
               would lose their centimetres in float32, so with ``center='auto'`` coordinates larger
               than 1e4 are taken relative to the floor of the cloud's minimum corner, in float64
    colors     float32 tensor [N, 3] in [0, 1]           (when the file has colours)
    normals    float32 tensor [N, 3]                      (when it has normals, or a mesh is sampled)
    intensity  float32 tensor [N]                         (when it has intensity / reflectance)
    labels     int64 tensor [N]                           (label / class / classification property)
    extra      {name: numpy [N] or [N, k]}                (every other per-point property)
    path       str

Every problem is a :class:`~glocal.core.errors.DataError` (an ``InputError``) naming the file and
what to do: a missing or empty file, a file that is not a point cloud of its suffix, a cloud
without points, NaN/inf coordinates, all points identical, labels whose count does not match the
points; :func:`check_labels` checks class ids against the configured classes. Nothing here renders
(open3d's offscreen renderer aborts the process).

Example:
    >>> import os, tempfile, torch
    >>> path = os.path.join(tempfile.mkdtemp(), "cloud.ply")
    >>> coords = torch.rand(100, 3, generator=torch.Generator().manual_seed(0))
    >>> write_points(path, coords, labels=torch.arange(100) % 3)
    >>> cloud = read_points(path)
    >>> cloud["coords"].shape, cloud["labels"][:4].tolist(), torch.allclose(cloud["coords"], coords)
    (torch.Size([100, 3]), [0, 1, 2, 0], True)
    >>> check_labels(cloud["labels"], num_classes=2, path=path)
    Traceback (most recent call last):
    ...
    glocal.core.errors.DataError: ...cloud.ply: class id 2 (33 points) is outside the 2 classes 0..1...
"""
from __future__ import annotations

import os
import re
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from glocal.core.errors import ConfigError, DataError, DatasetNotFoundError, InputError

__all__ = ["read_points", "write_points", "read_mesh", "sample_surface", "check_points", "check_labels",
           "data_root", "POINT_SUFFIXES", "MESH_SUFFIXES", "LARGE_COORDINATE"]

CLOUD_SUFFIXES = (".ply", ".pcd", ".xyz", ".las", ".laz")
MESH_SUFFIXES = (".off", ".obj", ".stl")
POINT_SUFFIXES = CLOUD_SUFFIXES + MESH_SUFFIXES
LARGE_COORDINATE = 1e4  # center='auto' subtracts an offset when a coordinate is larger than this
LABEL_NAMES = ("label", "labels", "class", "classification", "scalar_label", "semantic")
INTENSITY_NAMES = ("intensity", "scalar_intensity", "reflectance")
_WRITE_SUFFIXES = (".ply", ".pcd", ".xyz")


# ------------------------------------------------------------------------------------------------
# where CGAL's demo data lives
# ------------------------------------------------------------------------------------------------
def data_root() -> Path:
    """The folder of CGAL's demo data (Debian ``libcgal-demo``'s ``data.tar.gz``, with the examples'
    ``.las`` files under ``examples/``), as ``tools/setup.sh`` unpacks it:
    ``$GLOCAL_CGAL_DATA`` if set, else ``$GLOCAL_CACHE/data/cgal``, else
    ``~/.cache/glocal/data/cgal``. Holds ``meshes/*.off`` (138 meshes), ``points_3/`` (
    ``b9_training.ply``, ``building.ply``, 17 ``.xyz`` scans, ``kitten.off``) and
    ``examples/Point_set_processing_3/data/urban.las``.

    Raises:
        DatasetNotFoundError: the folder is absent (run ``bash tools/setup.sh``).
    """
    env = os.environ.get("GLOCAL_CGAL_DATA")
    if env:
        root = Path(env)
    else:
        cache = os.environ.get("GLOCAL_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "glocal")
        root = Path(cache) / "data" / "cgal"
    if not (root / "meshes").is_dir() or not (root / "points_3").is_dir():
        how = ("GLOCAL_CGAL_DATA points there: unset it, or point it at the unpacked data"
               if env else "run `bash tools/setup.sh` (it downloads Debian's libcgal-demo and unpacks its data)")
        raise DatasetNotFoundError(f"CGAL's demo data (point clouds and meshes) is not in {root}: {how}")
    return root


# ------------------------------------------------------------------------------------------------
# checks
# ------------------------------------------------------------------------------------------------
def check_points(coords, path) -> None:
    """A cloud must have points, finite coordinates, and not all of them at one place.

    >>> check_points(np.zeros((4, 3)), "flat.xyz")
    Traceback (most recent call last):
    ...
    glocal.core.errors.DataError: flat.xyz: all 4 points are identical (at 0, 0, 0): not a point cloud ...
    """
    xyz = coords.detach().cpu().numpy() if isinstance(coords, torch.Tensor) else np.asarray(coords)
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise DataError(f"{path}: coordinates must be [N, 3]; got shape {tuple(xyz.shape)}")
    if len(xyz) == 0:
        raise DataError(f"{path}: the point cloud is empty (0 points); re-export or remove the file")
    bad = ~np.isfinite(xyz).all(1)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise DataError(f"{path}: {int(bad.sum())} of {len(xyz)} points have NaN or infinite coordinates (the "
                        f"first is point {first}: {xyz[first].tolist()}); clean the file (drop those points)")
    if np.ptp(xyz, axis=0).max() == 0:
        at = ", ".join(f"{v:g}" for v in xyz[0])
        raise DataError(f"{path}: all {len(xyz)} points are identical (at {at}): not a point cloud that can be "
                        f"normalised or cropped; re-export or remove the file")


def check_labels(labels, num_classes: int, path=None, ignore_index: int = -1, num_points: int | None = None):
    """Check per-point class ids: a 1-D integer array of ``num_points`` values (when given), each in
    ``0..num_classes-1`` or equal to ``ignore_index``. Returns ``labels`` unchanged.

    Raises:
        DataError: naming ``path``, the offending class id and how many points carry it, and what to
            do (map it to ``ignore_index`` or configure more classes).

    >>> check_labels(np.array([0, 1, -1, 2]), num_classes=3, path="tile.ply").tolist()
    [0, 1, -1, 2]
    >>> check_labels(np.array([0, 1]), num_classes=3, path="tile.ply", num_points=5)
    Traceback (most recent call last):
    ...
    glocal.core.errors.DataError: tile.ply: 2 labels for 5 points; there must be one label per point
    """
    where = path if path is not None else "labels"
    arr = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if arr.ndim != 1:
        raise DataError(f"{where}: labels must be one class id per point, [N]; got shape {tuple(arr.shape)}")
    if num_points is not None and len(arr) != num_points:
        raise DataError(f"{where}: {len(arr)} labels for {num_points} points; there must be one label per point")
    if arr.size and arr.dtype.kind not in "iub":
        if arr.dtype.kind != "f" or not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise DataError(f"{where}: labels must be integer class ids; got {arr.dtype} values")
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ConfigError(f"check_labels: num_classes must be an int >= 1; got {num_classes!r}")
    bad = (arr != ignore_index) & ((arr < 0) | (arr >= num_classes))
    if bad.any():
        values, counts = np.unique(arr[bad], return_counts=True)
        listed = ", ".join(f"class id {int(v)} ({int(c)} points)" for v, c in zip(values[:5], counts[:5]))
        raise DataError(f"{where}: {listed} {'is' if len(values) == 1 else 'are'} outside the {num_classes} classes "
                        f"0..{num_classes - 1} (unlabelled points are {ignore_index}). Map such ids to "
                        f"ignore_index={ignore_index}, or configure more classes")
    return labels


# ------------------------------------------------------------------------------------------------
# reading
# ------------------------------------------------------------------------------------------------
@contextmanager
def _quiet_open3d():
    """open3d, imported here only, with its warnings silenced (failures are detected and reported
    in glocal's words instead)."""
    import open3d as o3d

    with o3d.utility.VerbosityContextManager(o3d.utility.VerbosityLevel.Error):
        yield o3d


def read_points(path, sample: int | None = None, seed: int = 0, center: bool | str = "auto",
                columns: tuple[str, ...] | None = None, labels_path=None) -> dict:
    """Read a point cloud (or sample one from a mesh) as a dict of per-point arrays (module doc).

    Args:
        path: a ``.ply``, ``.pcd``, ``.xyz``, ``.las`` / ``.laz``, or a mesh ``.off`` / ``.obj`` / ``.stl``.
        sample: meshes: draw this many points uniformly over the surface (with face normals);
            point clouds: keep a random subset of this many points (all when there are fewer).
            None: every point (a mesh's vertices).
        seed: the seed of that draw.
        center: ``'auto'``: subtract ``offset`` (the floor of the minimum corner, float64) when a
            coordinate exceeds 1e4; ``True``: always; ``False``: never (``offset`` is zero).
        columns: ``.xyz`` files whose lines are not ``x y z`` or ``x y z nx ny nz``: the name of
            every column, from ``x y z nx ny nz r g b intensity label`` (``_`` skips one).
        labels_path: a side file with one class id per point (text, or ``.npy``), as ``labels``.

    Raises:
        DataError: the file is missing, empty, unreadable or not a point cloud; it has no points,
            NaN/inf coordinates or only identical points; labels do not match the points.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError(f"{path}: point cloud file not found" + (" (it is a directory)" if os.path.isdir(path) else ""))
    if os.path.getsize(path) == 0:
        raise DataError(f"{path}: the file is empty (0 bytes); re-export or remove it")
    if center not in (True, False, "auto"):
        raise ConfigError(f"read_points: center must be True, False or 'auto'; got {center!r}")
    if sample is not None and (isinstance(sample, bool) or not isinstance(sample, (int, np.integer)) or sample < 1):
        raise ConfigError(f"read_points: sample must be None or an int >= 1; got {sample!r}")
    suffix = Path(path).suffix.lower()
    rng = np.random.default_rng(seed)
    sampled = False  # points drawn over a mesh's surface
    if suffix in MESH_SUFFIXES:
        vertices, faces = read_mesh(path)
        if sample is not None and len(faces):
            xyz, normals = sample_surface(vertices, faces, int(sample), rng, path)
            fields, sampled = dict(normals=normals), True
        else:
            xyz, fields = vertices, {}
    elif suffix == ".ply":
        xyz, fields = _read_ply(path)
    elif suffix == ".pcd":
        xyz, fields = _read_pcd(path)
    elif suffix == ".xyz":
        xyz, fields = _read_xyz(path, columns)
    elif suffix in (".las", ".laz"):
        xyz, fields = _read_las(path)
    else:
        raise DataError(f"{path}: unknown point cloud format {suffix or '(no suffix)'!r}; glocal reads "
                        f"{', '.join(POINT_SUFFIXES)}")
    check_points(xyz, path)
    n = len(xyz)
    if labels_path is not None:
        fields["labels"] = _read_labels_file(labels_path, path)
    for key, value in [*fields.items(), *fields.get("extra", {}).items()]:
        if key != "extra" and len(value) != n:
            raise DataError(f"{path}: {key!r} has {len(value)} values for {n} points; there must be one per point")
    if sample is not None and not sampled and sample < n:
        keep = np.sort(rng.choice(n, int(sample), replace=False))
        xyz = xyz[keep]
        fields = {k: ({e: a[keep] for e, a in v.items()} if k == "extra" else v[keep]) for k, v in fields.items()}
    offset = np.zeros(3)
    if center is True or (center == "auto" and np.abs(xyz).max() > LARGE_COORDINATE):
        offset = np.floor(xyz.min(0))
    out = dict(coords=torch.from_numpy(np.ascontiguousarray(xyz - offset, dtype=np.float32)), offset=offset)
    for key, dtype in (("colors", np.float32), ("normals", np.float32), ("intensity", np.float32),
                       ("labels", np.int64)):
        if key in fields:
            out[key] = torch.from_numpy(np.ascontiguousarray(fields[key], dtype=dtype))
    out["extra"] = fields.get("extra", {})
    out["path"] = path
    return out


def _split_fields(points: dict[str, np.ndarray], path: str) -> tuple[np.ndarray, dict]:
    """Named per-point arrays (``positions``, ``colors``, ...) -> ``(xyz, fields)``."""
    xyz = np.asarray(points.pop("positions"), dtype=np.float64)
    fields, extra = {}, {}
    for name, value in points.items():
        value = np.asarray(value)
        if value.ndim == 2 and value.shape[1] == 1:
            value = value[:, 0]
        low = name.lower()
        if low == "colors":
            fields["colors"] = _unit_colors(value, path)
        elif low == "normals":
            fields["normals"] = value.astype(np.float32)
        elif low in LABEL_NAMES and "labels" not in fields and value.ndim == 1:
            fields["labels"] = _integer_labels(value, name, path)
        elif low in INTENSITY_NAMES and "intensity" not in fields and value.ndim == 1:
            fields["intensity"] = value.astype(np.float32)
        else:
            extra[name] = value
    fields["extra"] = extra
    return xyz, fields


def _unit_colors(colors: np.ndarray, path: str) -> np.ndarray:
    """Colours as float32 in [0, 1]: 8-bit and 16-bit integers are scaled, floats kept."""
    if colors.dtype.kind in "ui":
        top = 255.0 if colors.dtype.itemsize == 1 or colors.max(initial=0) <= 255 else 65535.0
        return (colors / top).astype(np.float32)
    colors = colors.astype(np.float32)
    if colors.size and (colors.min() < 0 or colors.max() > 1):
        if colors.max() <= 255 and colors.min() >= 0:
            return colors / 255.0
        raise DataError(f"{path}: colours must be in [0, 1] (floats) or 0..255 / 0..65535 (integers); they range "
                        f"{colors.min():g}..{colors.max():g}")
    return colors


def _integer_labels(values: np.ndarray, name: str, path: str) -> np.ndarray:
    if values.dtype.kind in "iub":
        return values.astype(np.int64)
    if values.dtype.kind == "f" and np.all(np.isfinite(values)) and np.all(values == np.round(values)):
        return values.astype(np.int64)
    raise DataError(f"{path}: the per-point {name!r} must be integer class ids; got {values.dtype} values")


def _head(path: str, n: int = 64) -> bytes:
    with open(path, "rb") as f:
        return f.read(n)


def _not_a(path: str, kind: str, why: str) -> DataError:
    return DataError(f"{path}: not a {kind} file ({why}); is the suffix right? Re-export it or remove it")


# --- .ply ------------------------------------------------------------------------------------------
def _ply_header(path: str) -> list[str]:
    head = _head(path, 4)
    if head[:3] != b"ply" or head[3:4] not in (b"\n", b"\r"):
        raise _not_a(path, "PLY", "it does not start with the 'ply' line")
    lines = []
    with open(path, "rb") as f:
        for raw in f:
            line = raw.decode("ascii", "replace").strip()
            lines.append(line)
            if line == "end_header" or len(lines) > 10_000:
                break
    if lines[-1] != "end_header":
        raise _not_a(path, "PLY", "its header has no 'end_header' line")
    return lines


def _read_ply(path: str) -> tuple[np.ndarray, dict]:
    header = _ply_header(path)
    vertex = [re.match(r"element\s+vertex\s+(\d+)", line) for line in header]
    vertex = [m for m in vertex if m]
    if not vertex:
        raise _not_a(path, "point cloud PLY", "its header declares no 'element vertex'")
    if int(vertex[0].group(1)) == 0:
        raise DataError(f"{path}: the point cloud is empty (0 points); re-export or remove the file")
    with _quiet_open3d() as o3d:
        cloud = o3d.t.io.read_point_cloud(path)
        points = {k: cloud.point[k].numpy() for k in cloud.point}
    if "positions" not in points or len(points["positions"]) == 0:
        raise DataError(f"{path}: open3d cannot read the PLY file (truncated, or without x y z vertex properties); "
                        f"re-export or remove it")
    return _split_fields(points, path)


# --- .pcd ------------------------------------------------------------------------------------------
_PCD_TYPES = {("F", 4): "<f4", ("F", 8): "<f8", ("U", 1): "u1", ("U", 2): "<u2", ("U", 4): "<u4", ("U", 8): "<u8",
              ("I", 1): "i1", ("I", 2): "<i2", ("I", 4): "<i4", ("I", 8): "<i8"}


def _read_pcd(path: str) -> tuple[np.ndarray, dict]:
    with open(path, "rb") as f:
        data = f.read()
    header, pos = {}, 0
    while True:
        end = data.find(b"\n", pos)
        if end < 0:
            raise _not_a(path, "PCD", "its header has no DATA line")
        line = data[pos:end].decode("ascii", "replace").strip()
        pos = end + 1
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        if key.upper() not in ("VERSION", "FIELDS", "SIZE", "TYPE", "COUNT", "WIDTH", "HEIGHT", "VIEWPOINT",
                               "POINTS", "DATA"):
            raise _not_a(path, "PCD", f"unexpected header line {line[:40]!r}")
        header[key.upper()] = value.split()
        if key.upper() == "DATA":
            break
    try:
        names = header["FIELDS"]
        sizes = [int(s) for s in header["SIZE"]]
        types = [t.upper() for t in header["TYPE"]]
        counts = [int(c) for c in header.get("COUNT", ["1"] * len(names))]
        n = int(header["POINTS"][0]) if "POINTS" in header else int(header["WIDTH"][0]) * int(header["HEIGHT"][0])
        kind = header["DATA"][0].lower()
        dtype = np.dtype([(name if name != "_" else f"_pad{i}", _PCD_TYPES[(t, s)], (c,) if c > 1 else ())
                          for i, (name, s, t, c) in enumerate(zip(names, sizes, types, counts))])
    except (KeyError, IndexError, ValueError) as e:
        raise _not_a(path, "PCD", f"its header is incomplete or malformed: {e}") from e
    if n == 0:
        raise DataError(f"{path}: the point cloud is empty (0 points); re-export or remove the file")
    if kind == "binary":
        if len(data) - pos < n * dtype.itemsize:
            raise DataError(f"{path}: the PCD file is truncated: {n} points of {dtype.itemsize} bytes need "
                            f"{n * dtype.itemsize} bytes of data, it has {len(data) - pos}")
        table = np.frombuffer(data, dtype=dtype, count=n, offset=pos)
    elif kind == "ascii":
        table = _pcd_ascii(data[pos:], dtype, n, path)
    elif kind == "binary_compressed":
        return _read_pcd_open3d(path)
    else:
        raise _not_a(path, "PCD", f"unknown DATA kind {kind!r}")
    fields = {name: table[name] for name in table.dtype.names if not name.startswith("_pad")}
    if not all(k in fields for k in "xyz"):
        raise _not_a(path, "point cloud PCD", f"it has no x y z fields (fields: {names})")
    points = {"positions": np.stack([fields.pop(k).astype(np.float64) for k in "xyz"], 1)}
    if all(f"normal_{k}" in fields for k in "xyz"):
        points["normals"] = np.stack([fields.pop(f"normal_{k}") for k in "xyz"], 1).astype(np.float32)
    for key in ("rgb", "rgba"):
        if key in fields:
            packed = fields.pop(key)
            packed = packed.view(np.uint32) if packed.dtype.kind == "f" else packed.astype(np.uint32)
            points["colors"] = np.stack([(packed >> 16) & 255, (packed >> 8) & 255, packed & 255], 1).astype(np.uint8)
    points.update(fields)
    return _split_fields(points, path)


def _pcd_ascii(body: bytes, dtype: np.dtype, n: int, path: str) -> np.ndarray:
    rows = [line.split() for line in body.decode("ascii", "replace").splitlines() if line.strip()]
    width = sum(int(np.prod(dtype[name].shape or (1,))) for name in dtype.names)
    if len(rows) < n or any(len(r) != width for r in rows[:n]):
        raise DataError(f"{path}: the PCD data has {len(rows)} lines for {n} points of {width} values each; the file "
                        f"is truncated or corrupt")
    try:
        values = np.array(rows[:n], dtype=np.float64)
    except ValueError as e:
        raise DataError(f"{path}: the PCD data holds values that are not numbers ({e})") from e
    table, col = np.empty(n, dtype=dtype), 0
    for name in dtype.names:
        k = int(np.prod(dtype[name].shape or (1,)))
        column = values[:, col:col + k]
        if dtype[name].base.kind in "ui" and name in ("rgb", "rgba"):
            table[name] = column.reshape(table[name].shape).astype(np.int64).astype(dtype[name].base)
        elif name in ("rgb", "rgba") and dtype[name].base.kind == "f":  # packed colours written as a float
            table[name] = column.reshape(table[name].shape).astype(np.float32)
        else:
            table[name] = column.reshape(table[name].shape)
        col += k
    return table


def _read_pcd_open3d(path: str) -> tuple[np.ndarray, dict]:
    with _quiet_open3d() as o3d:
        cloud = o3d.t.io.read_point_cloud(path)
        points = {k: cloud.point[k].numpy() for k in cloud.point}
    if "positions" not in points or len(points["positions"]) == 0:
        raise DataError(f"{path}: cannot read the compressed PCD file; re-export it as binary or ascii PCD")
    return _split_fields(points, path)


# --- .xyz ------------------------------------------------------------------------------------------
_XYZ_COLUMNS = ("x", "y", "z", "nx", "ny", "nz", "r", "g", "b", "intensity", "label", "_")


def _read_xyz(path: str, columns) -> tuple[np.ndarray, dict]:
    if b"\0" in _head(path, 4096):
        raise _not_a(path, "text XYZ", "it holds binary data")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data": reported below
            table = np.loadtxt(path, ndmin=2, comments="#", dtype=np.float64)
    except ValueError as e:
        raise _not_a(path, "XYZ", f"its lines are not rows of numbers: {e}") from e
    if table.size == 0:
        raise DataError(f"{path}: the point cloud is empty (0 points); re-export or remove the file")
    width = table.shape[1]
    if columns is None:
        if width not in (3, 6):
            raise DataError(f"{path}: lines of {width} numbers; an .xyz file is read as 'x y z' or 'x y z nx ny nz'. "
                            f"Name the columns with read_points(..., columns=(...)) from {' '.join(_XYZ_COLUMNS)}")
        columns = _XYZ_COLUMNS[:width]
    columns = tuple(columns)
    unknown = [c for c in columns if c not in _XYZ_COLUMNS]
    if unknown or len(columns) != width or not {"x", "y", "z"} <= set(columns):
        raise ConfigError(f"read_points({path}): columns={columns} must name all {width} columns, x y z included, "
                          f"from {' '.join(_XYZ_COLUMNS)}")
    col = {c: table[:, i] for i, c in enumerate(columns) if c != "_"}
    points = {"positions": np.stack([col["x"], col["y"], col["z"]], 1)}
    if {"nx", "ny", "nz"} <= set(col):
        points["normals"] = np.stack([col["nx"], col["ny"], col["nz"]], 1)
    if {"r", "g", "b"} <= set(col):
        points["colors"] = np.stack([col["r"], col["g"], col["b"]], 1)
    for name in ("intensity", "label"):
        if name in col:
            points[name] = col[name]
    return _split_fields(points, path)


# --- .las ------------------------------------------------------------------------------------------
def _read_las(path: str) -> tuple[np.ndarray, dict]:
    if _head(path, 4) != b"LASF":
        raise _not_a(path, "LAS", "it does not start with 'LASF'")
    try:
        import laspy
    except ImportError as e:
        raise DataError(f"{path}: reading LAS files needs laspy (pip install laspy)") from e
    try:
        las = laspy.read(path)
    except Exception as e:  # noqa: BLE001 - laspy raises several kinds; all mean "cannot read"
        hint = " (a .laz file needs lazrs: pip install 'laspy[lazrs]')" if path.lower().endswith(".laz") else ""
        raise DataError(f"{path}: cannot read the LAS file{hint}: {type(e).__name__}: {e}") from e
    if las.header.point_count == 0:
        raise DataError(f"{path}: the point cloud is empty (0 points); re-export or remove the file")
    dims = set(las.point_format.dimension_names)
    points = {"positions": np.stack([np.asarray(las.x), np.asarray(las.y), np.asarray(las.z)], 1)}
    points["classification"] = np.asarray(las.classification).astype(np.int64)
    points["intensity"] = np.asarray(las.intensity).astype(np.float32)
    if {"red", "green", "blue"} <= dims:
        rgb = np.stack([np.asarray(las.red), np.asarray(las.green), np.asarray(las.blue)], 1)
        if rgb.max(initial=0) > 0:
            points["colors"] = rgb
    return _split_fields(points, path)


# --- meshes ----------------------------------------------------------------------------------------
def read_mesh(path) -> tuple[np.ndarray, np.ndarray]:
    """A triangle mesh (``.off``, ``.obj``, ``.stl``; polygons are triangulated by open3d) as
    ``(vertices float64 [V, 3], triangles int64 [F, 3])``. An OFF file of points only has ``F = 0``."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError(f"{path}: mesh file not found")
    suffix = Path(path).suffix.lower()
    if suffix == ".off":
        lines = [line.split("#")[0].split() for line in _head(path, 4096).decode("ascii", "replace").splitlines()]
        tag = next((t[0] for t in lines if t), "")
        if not re.fullmatch(r"(ST)?C?N?4?n?OFF", tag):
            raise _not_a(path, "OFF", "it does not start with 'OFF' (or COFF, NOFF, ...)")
    with _quiet_open3d() as o3d:
        mesh = o3d.io.read_triangle_mesh(path)
        vertices = np.asarray(mesh.vertices, dtype=np.float64)
        faces = np.asarray(mesh.triangles, dtype=np.int64)
    if len(vertices) == 0 and suffix == ".off":
        vertices = _off_vertices(path)
    if len(vertices) == 0:
        raise DataError(f"{path}: the mesh has no vertices, or open3d cannot read it; re-export or remove it")
    if len(faces) and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise DataError(f"{path}: faces refer to vertices outside 0..{len(vertices) - 1}; the mesh is corrupt")
    return vertices, faces


def _off_vertices(path: str) -> np.ndarray:
    """The vertices of an OFF file that open3d reads as empty (an OFF of points, ``N 0 0``)."""
    with open(path, encoding="ascii", errors="replace") as f:
        lines = [line.split("#")[0].split() for line in f]
    lines = [t for t in lines if t]
    tokens = lines[0][1:] if len(lines[0]) > 1 else []
    rest = lines[1:]
    if not tokens:
        tokens, rest = rest[0], rest[1:]
    try:
        nv = int(tokens[0])
        vertices = np.array([r[:3] for r in rest[:nv]], dtype=np.float64)
    except (ValueError, IndexError) as e:
        raise DataError(f"{path}: cannot read the OFF file's vertices ({e}); the file is corrupt") from e
    if len(vertices) != nv:
        raise DataError(f"{path}: the OFF header declares {nv} vertices, the file has {len(vertices)}; it is truncated")
    return vertices.reshape(-1, 3)


def sample_surface(vertices, faces, n: int, rng: np.random.Generator, path=None) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points uniformly over a triangle mesh's surface, with the face normals:
    ``(points float64 [n, 3], normals float32 [n, 3])``. A face is drawn with probability
    proportional to its area, a point in it with uniform barycentric coordinates (the reflected
    square method); degenerate faces (zero area) are never drawn.

    >>> v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0.]]); f = np.array([[0, 1, 2]])
    >>> p, nrm = sample_surface(v, f, 5, np.random.default_rng(0))
    >>> p.shape, bool((p[:, 2] == 0).all() and (p[:, :2].sum(1) <= 1).all()), nrm[0].tolist()
    ((5, 3), True, [0.0, 0.0, 1.0])
    """
    cum, unit = _face_table(np.asarray(vertices, dtype=np.float64), np.asarray(faces, dtype=np.int64), path)
    return _draw(np.asarray(vertices, dtype=np.float64), np.asarray(faces, dtype=np.int64), cum, unit, n, rng)


def _face_table(vertices: np.ndarray, faces: np.ndarray, path=None) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative face areas ``[F]`` and unit face normals ``[F, 3]`` (zero for degenerate faces)."""
    a, b, c = vertices[faces[:, 0]], vertices[faces[:, 1]], vertices[faces[:, 2]]
    cross = np.cross(b - a, c - a)
    norm = np.linalg.norm(cross, axis=1)
    cum = np.cumsum(norm / 2)
    if len(cum) == 0 or not cum[-1] > 0:
        raise DataError(f"{path or 'mesh'}: every face has zero area; there is no surface to sample")
    unit = np.divide(cross, norm[:, None], out=np.zeros_like(cross), where=norm[:, None] > 0)
    return cum, unit.astype(np.float32)


def _draw(vertices, faces, cum, unit, n, rng) -> tuple[np.ndarray, np.ndarray]:
    face = np.minimum(np.searchsorted(cum, rng.random(n) * cum[-1], side="right"), len(cum) - 1)
    u, v = rng.random(n), rng.random(n)
    flip = u + v > 1
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    a, b, c = (vertices[faces[face, k]] for k in range(3))
    return a + u[:, None] * (b - a) + v[:, None] * (c - a), unit[face]


def _read_labels_file(labels_path, path: str) -> np.ndarray:
    labels_path = os.fspath(labels_path)
    if not os.path.isfile(labels_path):
        raise DataError(f"{labels_path}: labels file (of {path}) not found")
    try:
        values = np.load(labels_path) if labels_path.endswith(".npy") else np.loadtxt(labels_path, ndmin=1)
    except ValueError as e:
        raise DataError(f"{labels_path}: not a labels file of one integer per line ({e})") from e
    return _integer_labels(np.asarray(values).reshape(-1), "labels", labels_path)


# ------------------------------------------------------------------------------------------------
# writing
# ------------------------------------------------------------------------------------------------
def _numpy(x, dtype=None) -> np.ndarray | None:
    if x is None:
        return None
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    return arr.astype(dtype) if dtype is not None else arr


def write_points(path, coords, colors=None, normals=None, intensity=None, labels=None, offset=None) -> None:
    """Write a point cloud to ``.ply`` (binary, open3d), ``.pcd`` (binary) or ``.xyz`` (text).

    Args:
        coords: ``[N, 3]`` tensor or array; ``offset`` ([3], float64) is added back, in float64.
        colors: ``[N, 3]`` in [0, 1], stored as 8-bit; normals ``[N, 3]``; intensity ``[N]``;
            labels ``[N]`` integers (ply ``label`` property, pcd ``label`` field).

    ``.xyz`` holds ``x y z`` (and ``nx ny nz`` with normals) only; other fields are an error there.
    """
    path = os.fspath(path)
    suffix = Path(path).suffix.lower()
    if suffix not in _WRITE_SUFFIXES:
        raise InputError(f"write_points: cannot write {suffix or '(no suffix)'!r}; glocal writes "
                         f"{', '.join(_WRITE_SUFFIXES)}")
    xyz = _numpy(coords, np.float64)
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise InputError(f"write_points({path}): coords must be [N, 3]; got shape {tuple(xyz.shape)}")
    if offset is not None:
        xyz = xyz + _numpy(offset, np.float64).reshape(1, 3)
    n = len(xyz)
    fields = {k: _numpy(v) for k, v in dict(colors=colors, normals=normals, intensity=intensity,
                                            labels=labels).items() if v is not None}
    for key, value in fields.items():
        if len(value) != n:
            raise DataError(f"write_points({path}): {key!r} has {len(value)} values for {n} points; there must be "
                            f"one per point")
    if "labels" in fields:
        labels = _integer_labels(fields["labels"].reshape(-1), "labels", path)
        if labels.size and (labels.min() < np.iinfo(np.int32).min or labels.max() > np.iinfo(np.int32).max):
            raise DataError(f"write_points({path}): labels must fit in int32")
        fields["labels"] = labels.astype(np.int32)
    if "colors" in fields:
        fields["colors"] = np.clip(np.round(fields["colors"].astype(np.float64) * 255), 0, 255).astype(np.uint8)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".xyz":
        extra = sorted(set(fields) - {"normals"})
        if extra:
            raise InputError(f"write_points({path}): an .xyz file holds x y z (and normals) only, not {extra}; "
                             f"write .ply or .pcd to keep them")
        table = xyz if "normals" not in fields else np.concatenate([xyz, fields["normals"].astype(np.float64)], 1)
        np.savetxt(path, table, fmt="%.15g")
    elif suffix == ".pcd":
        _write_pcd(path, xyz, fields)
    else:
        with _quiet_open3d() as o3d:
            cloud = o3d.t.geometry.PointCloud()
            cloud.point["positions"] = o3d.core.Tensor(np.ascontiguousarray(xyz))
            names = dict(colors="colors", normals="normals", intensity="intensity", labels="label")
            for key, value in fields.items():
                value = value.astype(np.float32) if key in ("normals", "intensity") else value
                cloud.point[names[key]] = o3d.core.Tensor(np.ascontiguousarray(value.reshape(n, -1)))
            if not o3d.t.io.write_point_cloud(path, cloud, write_ascii=False):
                raise DataError(f"{path}: open3d could not write the PLY file (is the folder writable?)")


def _write_pcd(path: str, xyz: np.ndarray, fields: dict) -> None:
    """Binary PCD v0.7. Normals are doubles like the coordinates: open3d's reader misreads float
    fields of mixed sizes."""
    spec = [("x", "<f8"), ("y", "<f8"), ("z", "<f8")]
    if "normals" in fields:
        spec += [("normal_x", "<f8"), ("normal_y", "<f8"), ("normal_z", "<f8")]
    if "colors" in fields:
        spec.append(("rgb", "<u4"))
    if "intensity" in fields:
        spec.append(("intensity", "<f4"))
    if "labels" in fields:
        spec.append(("label", "<i4"))
    table = np.empty(len(xyz), dtype=spec)
    table["x"], table["y"], table["z"] = xyz.T
    if "normals" in fields:
        table["normal_x"], table["normal_y"], table["normal_z"] = fields["normals"].astype(np.float64).T
    if "colors" in fields:
        c = fields["colors"].astype(np.uint32)
        table["rgb"] = (c[:, 0] << 16) | (c[:, 1] << 8) | c[:, 2]
    if "intensity" in fields:
        table["intensity"] = fields["intensity"].reshape(-1)
    if "labels" in fields:
        table["label"] = fields["labels"]
    kinds = {"<f8": ("8", "F"), "<f4": ("4", "F"), "<u4": ("4", "U"), "<i4": ("4", "I")}
    header = ("# .PCD v0.7 - Point Cloud Data file format\nVERSION 0.7\n"
              f"FIELDS {' '.join(name for name, _ in spec)}\n"
              f"SIZE {' '.join(kinds[t][0] for _, t in spec)}\n"
              f"TYPE {' '.join(kinds[t][1] for _, t in spec)}\n"
              f"COUNT {' '.join('1' for _ in spec)}\n"
              f"WIDTH {len(xyz)}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS {len(xyz)}\nDATA binary\n")
    with open(path, "wb") as f:
        f.write(header.encode("ascii"))
        f.write(table.tobytes())

"""Point-cloud I/O: CGAL's real files (b9_training.ply, urban.las, the .off meshes, the .xyz scans),
round trips through ply / pcd / xyz, mesh sampling, and every bad file, each reported with the
file's name (a DataError, which is an InputError)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from glocal.core.errors import DataError, DatasetNotFoundError, InputError
from glocal.modalities.points.io import (check_labels, check_points, data_root, read_mesh, read_points,
                                         sample_surface, write_points)

ROOT = data_root()  # tools/setup.sh unpacks CGAL's data; a broken setup fails here, naming the fix


def cloud(n=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    return dict(coords=torch.rand(n, 3, generator=g) * 10, colors=torch.rand(n, 3, generator=g),
                normals=torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=1),
                intensity=torch.rand(n, generator=g) * 100, labels=torch.randint(-1, 5, (n,), generator=g))


# ------------------------------------------------------------------------------------------------
# the real files
# ------------------------------------------------------------------------------------------------
def test_cgal_data_is_unpacked():
    assert (ROOT / "points_3" / "b9_training.ply").is_file()
    assert (ROOT / "examples" / "Point_set_processing_3" / "data" / "urban.las").is_file()
    offs = list(ROOT.glob("meshes/*.off")) + list(ROOT.glob("points_3/*.off"))
    assert len(offs) == 139 and len(list(ROOT.glob("points_3/*.xyz"))) == 17


def test_data_root_missing_says_to_run_setup(tmp_path, monkeypatch):
    monkeypatch.delenv("GLOCAL_CGAL_DATA", raising=False)
    monkeypatch.setenv("GLOCAL_CACHE", str(tmp_path))
    with pytest.raises(DatasetNotFoundError, match="bash tools/setup.sh"):
        data_root()
    (tmp_path / "mine" / "meshes").mkdir(parents=True)
    (tmp_path / "mine" / "points_3").mkdir()
    monkeypatch.setenv("GLOCAL_CGAL_DATA", str(tmp_path / "mine"))
    assert data_root() == tmp_path / "mine"


def test_b9_training_ply_counts_labels_colours_and_offset():
    c = read_points(ROOT / "points_3" / "b9_training.ply")
    assert c["coords"].shape == (22300, 3) and c["coords"].dtype == torch.float32
    values, counts = np.unique(c["labels"].numpy(), return_counts=True)
    assert dict(zip(values.tolist(), counts.tolist())) == {-1: 19853, 0: 1567, 1: 314, 2: 566}
    assert c["colors"].shape == (22300, 3) and 0 <= float(c["colors"].min()) and float(c["colors"].max()) <= 1
    # map coordinates (~596,700 m east) are taken relative to a float64 offset, keeping their centimetres
    assert c["offset"].dtype == np.float64 and c["offset"][0] > 5e5
    assert float(c["coords"].min()) >= 0 and float(c["coords"].max()) < 200
    import open3d as o3d

    exact = o3d.t.io.read_point_cloud(str(ROOT / "points_3" / "b9_training.ply")).point["positions"].numpy()
    assert np.abs(c["coords"].numpy().astype(np.float64) + c["offset"] - exact).max() < 1e-5


def test_urban_las_counts_classes_and_intensity():
    c = read_points(ROOT / "examples" / "Point_set_processing_3" / "data" / "urban.las")
    assert c["coords"].shape == (13511, 3)
    values, counts = np.unique(c["labels"].numpy(), return_counts=True)
    assert dict(zip(values.tolist(), counts.tolist())) == {1: 29, 2: 2441, 4: 11041}  # ASPRS codes
    assert c["intensity"].shape == (13511,) and "colors" not in c  # its RGB fields are all zero
    assert c["offset"][1] > 4e6 and float(c["coords"].max()) < 200


def test_building_ply_keeps_normals_and_custom_properties():
    c = read_points(ROOT / "points_3" / "building.ply")
    assert c["coords"].shape == (100000, 3) and c["normals"].shape == (100000, 3)
    assert c["extra"]["segment_index"].shape == (100000,) and "labels" not in c


@pytest.mark.parametrize("name", ["kitten.xyz", "sphere_20k_normal.xyz", "radar.xyz", "kitten.off"])
def test_xyz_scans_and_a_point_only_off(name):
    c = read_points(ROOT / "points_3" / name)
    assert len(c["coords"]) > 1000
    assert ("normals" in c) == (name in ("kitten.xyz", "sphere_20k_normal.xyz"))


def test_off_mesh_sampling_is_seeded_and_on_the_surface():
    path = ROOT / "meshes" / "cube.off"
    a, b = read_points(path, sample=500, seed=3), read_points(path, sample=500, seed=3)
    assert torch.equal(a["coords"], b["coords"]) and a["coords"].shape == (500, 3)
    assert not torch.equal(a["coords"], read_points(path, sample=500, seed=4)["coords"])
    v, _ = read_mesh(path)
    lo, hi = v.min(0), v.max(0)
    xyz = a["coords"].numpy().astype(np.float64)
    on_a_face = (np.isclose(xyz, lo, atol=1e-5) | np.isclose(xyz, hi, atol=1e-5)).any(1)
    assert on_a_face.all() and (np.abs(a["normals"].numpy()).max(1) > 0.999).all()  # axis-aligned face normals
    assert torch.equal(read_points(path)["coords"], torch.from_numpy(v).float())  # no sample: the vertices


def test_surface_sampling_is_area_weighted():
    # two triangles, the second with 3x the area: it gets ~3/4 of the points; degenerate ones none
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [3, 0, 1], [0, 1, 1], [5, 5, 5.]])
    f = np.array([[0, 1, 2], [3, 4, 5], [6, 6, 6]])
    p, n = sample_surface(v, f, 20000, np.random.default_rng(0))
    share = (p[:, 2] > 0.5).mean()
    assert abs(share - 0.75) < 0.02 and not (p == 5).all(1).any()
    with pytest.raises(DataError, match="zero area"):
        sample_surface(v, np.array([[6, 6, 6]]), 5, np.random.default_rng(0))


# ------------------------------------------------------------------------------------------------
# round trips
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".ply", ".pcd"])
def test_ply_and_pcd_round_trip_every_field(tmp_path, suffix):
    c = cloud()
    path = tmp_path / f"c{suffix}"
    write_points(path, **c)
    r = read_points(path)
    torch.testing.assert_close(r["coords"], c["coords"])
    torch.testing.assert_close(r["normals"], c["normals"])
    torch.testing.assert_close(r["intensity"], c["intensity"])
    assert torch.equal(r["labels"], c["labels"])
    assert (r["colors"] - c["colors"]).abs().max() <= 0.5 / 255 + 1e-6  # stored as 8 bits


@pytest.mark.parametrize("suffix", [".ply", ".pcd", ".xyz"])
def test_large_coordinates_round_trip_through_the_offset(tmp_path, suffix):
    c = cloud()
    offset = np.array([596648.0, 243620.0, 73.0])
    path = tmp_path / f"tile{suffix}"
    write_points(path, c["coords"], normals=c["normals"], offset=offset)
    r = read_points(path)
    assert np.array_equal(r["offset"], np.floor(offset + c["coords"].min(0).values.double().numpy()))
    back = r["coords"].double().numpy() + r["offset"]
    assert np.abs(back - (c["coords"].double().numpy() + offset)).max() < 1e-5
    torch.testing.assert_close(r["normals"], c["normals"])
    assert np.array_equal(read_points(path, center=False)["offset"], np.zeros(3))


def test_pcd_files_from_elsewhere_ascii_and_packed_float_rgb(tmp_path):
    rgb = np.array([(255 << 16) | (128 << 8) | 0], dtype=np.uint32).view(np.float32)[0]
    text = ("# .PCD v0.7\nVERSION 0.7\nFIELDS x y z rgb label\nSIZE 4 4 4 4 4\nTYPE F F F F I\nCOUNT 1 1 1 1 1\n"
            "WIDTH 2\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS 2\nDATA ascii\n"
            f"0 0 0 {float(rgb)!r} 3\n1 2 3 {float(rgb)!r} 4\n")
    (tmp_path / "a.pcd").write_text(text)
    r = read_points(tmp_path / "a.pcd")
    assert r["coords"].tolist() == [[0, 0, 0], [1, 2, 3]] and r["labels"].tolist() == [3, 4]
    torch.testing.assert_close(r["colors"][0], torch.tensor([1.0, 128 / 255, 0.0]))


def test_xyz_round_trip_and_other_fields_refused(tmp_path):
    c = cloud()
    write_points(tmp_path / "c.xyz", c["coords"], normals=c["normals"])
    r = read_points(tmp_path / "c.xyz")
    torch.testing.assert_close(r["coords"], c["coords"])
    torch.testing.assert_close(r["normals"], c["normals"])
    with pytest.raises(InputError, match="write .ply or .pcd"):
        write_points(tmp_path / "d.xyz", c["coords"], labels=c["labels"])
    np.savetxt(tmp_path / "e.xyz", np.column_stack([c["coords"].numpy(), c["labels"].numpy()]))
    with pytest.raises(DataError, match="columns="):
        read_points(tmp_path / "e.xyz")
    r = read_points(tmp_path / "e.xyz", columns=("x", "y", "z", "label"))
    assert torch.equal(r["labels"], c["labels"])


def test_sampling_a_cloud_keeps_a_seeded_subset(tmp_path):
    c = cloud(200)
    write_points(tmp_path / "c.ply", c["coords"], labels=c["labels"])
    a = read_points(tmp_path / "c.ply", sample=50, seed=1)
    assert a["coords"].shape == (50, 3) and torch.equal(a["coords"], read_points(tmp_path / "c.ply", sample=50,
                                                                                  seed=1)["coords"])
    rows = {tuple(p): int(lab) for p, lab in zip(c["coords"].tolist(), c["labels"].tolist())}
    assert all(rows[tuple(p)] == lab for p, lab in zip(a["coords"].tolist(), a["labels"].tolist()))


# ------------------------------------------------------------------------------------------------
# bad input, named
# ------------------------------------------------------------------------------------------------
def test_missing_and_zero_byte_files(tmp_path):
    with pytest.raises(DataError, match=r"nope\.ply: point cloud file not found"):
        read_points(tmp_path / "nope.ply")
    (tmp_path / "zero.pcd").write_bytes(b"")
    with pytest.raises(DataError, match=r"zero\.pcd: the file is empty"):
        read_points(tmp_path / "zero.pcd")
    (tmp_path / "a.vtk").write_text("x")
    with pytest.raises(DataError, match="unknown point cloud format"):
        read_points(tmp_path / "a.vtk")


def test_empty_clouds(tmp_path):
    (tmp_path / "e.ply").write_text("ply\nformat ascii 1.0\nelement vertex 0\nproperty float x\nproperty float y\n"
                                    "property float z\nend_header\n")
    (tmp_path / "e.xyz").write_text("# no points\n")
    (tmp_path / "e.pcd").write_text("VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH 0\n"
                                    "HEIGHT 1\nPOINTS 0\nDATA ascii\n")
    for name in ("e.ply", "e.xyz", "e.pcd"):
        with pytest.raises(DataError, match=rf"{name}: the point cloud is empty"):
            read_points(tmp_path / name)
    with pytest.raises(InputError, match="empty"):
        check_points(np.zeros((0, 3)), "x")


def test_nan_and_inf_coordinates(tmp_path):
    c = cloud(10)
    xyz = c["coords"].numpy().copy()
    xyz[3, 1], xyz[7, 0] = np.nan, np.inf
    np.savetxt(tmp_path / "nan.xyz", xyz)
    with pytest.raises(DataError, match=r"nan\.xyz: 2 of 10 points have NaN or infinite coordinates \(the first is "
                                        r"point 3"):
        read_points(tmp_path / "nan.xyz")
    write_points(tmp_path / "nan.ply", xyz)
    with pytest.raises(DataError, match="NaN"):
        read_points(tmp_path / "nan.ply")


def test_all_points_identical(tmp_path):
    write_points(tmp_path / "same.pcd", np.tile([[1.0, 2.0, 3.0]], (20, 1)))
    with pytest.raises(DataError, match=r"same\.pcd: all 20 points are identical \(at 1, 2, 3\)"):
        read_points(tmp_path / "same.pcd")


@pytest.mark.parametrize("suffix", [".ply", ".pcd", ".xyz", ".las", ".off"])
def test_a_text_file_renamed_is_not_a_point_cloud(tmp_path, suffix):
    path = tmp_path / f"notes{suffix}"
    path.write_text("Shopping list:\n- eggs\n- milk\n")
    with pytest.raises(DataError, match=rf"notes\{suffix}: not a"):
        read_points(path)


def test_a_ply_mesh_without_vertices_and_a_truncated_pcd(tmp_path):
    (tmp_path / "faces.ply").write_text("ply\nformat ascii 1.0\nelement face 1\nproperty list uchar int "
                                        "vertex_indices\nend_header\n3 0 1 2\n")
    with pytest.raises(DataError, match="no 'element vertex'"):
        read_points(tmp_path / "faces.ply")
    write_points(tmp_path / "t.pcd", cloud()["coords"])
    data = (tmp_path / "t.pcd").read_bytes()
    (tmp_path / "t.pcd").write_bytes(data[:-100])
    with pytest.raises(DataError, match="truncated"):
        read_points(tmp_path / "t.pcd")


def test_label_count_mismatch(tmp_path):
    c = cloud(30)
    write_points(tmp_path / "c.ply", c["coords"])
    np.savetxt(tmp_path / "c.labels", np.zeros(29, dtype=int), fmt="%d")
    with pytest.raises(DataError, match=r"c\.ply: 'labels' has 29 values for 30 points"):
        read_points(tmp_path / "c.ply", labels_path=tmp_path / "c.labels")
    np.savetxt(tmp_path / "c.labels", np.arange(30) % 2, fmt="%d")
    assert read_points(tmp_path / "c.ply", labels_path=tmp_path / "c.labels")["labels"].tolist()[:3] == [0, 1, 0]
    with pytest.raises(DataError, match="has 29 values for 30 points"):
        write_points(tmp_path / "d.ply", c["coords"], labels=c["labels"][:29])
    with pytest.raises(DataError, match="tile.ply: 5 labels for 6 points"):
        check_labels(np.zeros(5, dtype=int), 3, "tile.ply", num_points=6)


def test_class_ids_outside_the_classes():
    labels = np.array([0, 1, 2, -1, 7, 7, -5])
    with pytest.raises(DataError, match=r"b9\.ply: class id -5 \(1 points\), class id 7 \(2 points\) are outside "
                                        r"the 3 classes 0\.\.2 \(unlabelled points are -1\)"):
        check_labels(labels, 3, "b9.ply")
    check_labels(labels[:4], 3, "b9.ply")
    check_labels(np.array([0, -100]), 3, "x", ignore_index=-100)
    with pytest.raises(DataError, match="integer class ids"):
        check_labels(np.array([0.5, 1.0]), 3, "x")
    with pytest.raises(InputError, match="class id 3"):
        check_labels(torch.tensor([3]), 3, "x")


def test_reading_a_cloud_never_imports_open3d_or_laspy_unless_needed(tmp_path):
    np.savetxt(tmp_path / "a.xyz", np.random.default_rng(0).random((5, 3)))
    code = (f"import json, sys\nfrom glocal.modalities.points import read_points, VoxelDownsample\n"
            f"read_points({str(tmp_path / 'a.xyz')!r})\n"
            f"print(json.dumps([m for m in ('open3d', 'laspy', 'scipy') if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []

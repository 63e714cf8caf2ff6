"""Point-cloud datasets (small sizes, caches in tmp folders): the shape classes and their held-out
meshes, the LiDAR tiles' spatial split and test blocks, the generated scenes, determinism and
caching, and PointCollate's padding (inert: masked, zero, ignore_index) as the tasks read it."""
import numpy as np
import pytest
import torch

from glocal.core.errors import ConfigError, DataError
from glocal.modalities.points.datasets import (LIDAR_CLASSES, SHAPE_CLASSES, LidarTiles, PointCollate, PointScenes,
                                               ShapeClassification, hidden_point_removal)
from glocal.modalities.points.io import data_root, read_points
from glocal.modalities.registry import COLLATES, DATASETS

ROOT = data_root()  # tools/setup.sh unpacks CGAL's data; a broken setup fails here, naming the fix

SMALL = ("cube", "sphere", "tetrahedron", "knot", "gear", "cow")  # small meshes; cow has no held-out mesh
SIZES = dict(train=4, val=2, test=3)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    cache = tmp_path_factory.mktemp("shapes")
    return {split: ShapeClassification(split, points=128, per_class=SIZES, classes=SMALL, cache_dir=cache)
            for split in ("train", "val", "test")}


# ------------------------------------------------------------------------------------------------
# shape classification
# ------------------------------------------------------------------------------------------------
def test_shape_classes_are_real_meshes_with_held_out_test_meshes():
    assert len(SHAPE_CLASSES) == 20
    every = [m for train, test in SHAPE_CLASSES.values() for m in (*train, *test)]
    assert len(every) == len(set(every))  # no mesh in two classes, none both trained on and held out
    assert all((ROOT / "meshes" / f"{m}.off").is_file() for m in every)
    held_out = [c for c, (_, test) in SHAPE_CLASSES.items() if test]
    assert len(held_out) == 12


def test_shape_split_sizes_shapes_and_labels(shapes):
    for split, ds in shapes.items():
        assert len(ds) == SIZES[split] * len(SMALL) and ds.metainfo["classes"] == SMALL
        assert np.bincount(ds.labels, minlength=len(SMALL)).tolist() == [SIZES[split]] * len(SMALL)
        assert (ds.lengths() == 128).all()
    s = shapes["train"][0]
    assert s["coords"].shape == (128, 3) and s["coords"].dtype == torch.float32 and s["normals"].shape == (128, 3)
    assert isinstance(s["label"], int) and s["path"].endswith(".off") and s["feature_keys"] == ("coords",)
    assert float(s["coords"].norm(dim=1).max()) < 1.4  # unit sphere x scale <= 1.2, + jitter
    assert torch.allclose(s["normals"].norm(dim=1), torch.ones(128), atol=2e-3)


def test_test_meshes_are_unseen_where_a_class_has_several(shapes):
    for c, name in enumerate(SMALL):
        meshes = {split: {d.mesh_names[i] for i in d.mesh_ids[d.labels == c]} for split, d in shapes.items()}
        training, held_out = set(SHAPE_CLASSES[name][0]), set(SHAPE_CLASSES[name][1])
        assert meshes["train"] <= training and meshes["val"] <= training, name
        if held_out:
            assert meshes["test"] <= held_out and not meshes["test"] & training, name
        else:
            assert meshes["test"] == meshes["train"] == training, name
    # unseen poses and views: no cloud of one split appears in another
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not np.isin(shapes[a].coords[:, 0, 0], shapes[b].coords[:, 0, 0]).any()


def test_shapes_are_deterministic_and_cached(shapes, tmp_path):
    again = ShapeClassification("test", points=128, per_class=SIZES, classes=SMALL, cache_dir=tmp_path)
    assert again.build_seconds is not None and again.cache_path.name == shapes["test"].cache_path.name
    assert np.array_equal(again.coords, shapes["test"].coords) and np.array_equal(again.labels, shapes["test"].labels)
    loaded = ShapeClassification("test", points=128, per_class=SIZES, classes=SMALL, cache_dir=tmp_path)
    assert loaded.build_seconds is None and np.array_equal(loaded.coords, again.coords)
    other = ShapeClassification("test", points=128, per_class=SIZES, classes=SMALL, cache_dir=tmp_path, seed=1)
    assert other.cache_path != loaded.cache_path and not np.array_equal(other.coords, loaded.coords)
    (tmp_path / loaded.cache_path.name).write_bytes(b"garbage")
    with pytest.warns(RuntimeWarning, match="unreadable"):
        rebuilt = ShapeClassification("test", points=128, per_class=SIZES, classes=SMALL, cache_dir=tmp_path)
    assert np.array_equal(rebuilt.coords, again.coords)


def test_partial_views_and_cuts_happen(shapes):
    # a full sphere's cloud is centred on the sphere; a partial one misses a side (its radius spread grows)
    ds = shapes["train"]
    full = ShapeClassification("train", points=128, per_class=SIZES, classes=SMALL, partial=0.0,
                               cache_dir=ds.cache_path.parent)
    sphere = SMALL.index("sphere")
    spread = lambda d: [float(np.ptp(np.linalg.norm(c, axis=1))) for c in d.coords[d.labels == sphere]]  # noqa: E731
    assert max(spread(full)) < 0.15 and len(set(np.round(spread(ds), 3))) > 1


def test_hidden_point_removal_keeps_the_near_side():
    rng = np.random.default_rng(0)
    p = rng.standard_normal((3000, 3))
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    seen = hidden_point_removal(p, np.array([0, 0, 4.0]))
    # from 4 radii away the visible cap is z > 1/4; HPR keeps about it (an approximation) and nothing behind
    assert (p[seen, 2] > 0.2).all() and 0.5 < len(seen) / (p[:, 2] > 0.25).sum() <= 1.15


def test_shape_collate_and_config(shapes):
    ds = ShapeClassification("val", points=128, per_class=SIZES, classes=SMALL, features=("coords", "normals"),
                             cache_dir=shapes["val"].cache_path.parent)
    batch = ds.collate([ds[i] for i in range(3)])
    assert batch["inputs"].shape == (3, 128, 6) and batch["pos"].shape == (3, 128, 3) and batch["mask"].all()
    assert torch.equal(batch["inputs"][..., :3], batch["pos"])
    assert batch["data_samples"]["label"].tolist() == ds.labels[:3].tolist()
    assert len(batch["data_samples"]["path"]) == 3
    built = DATASETS.build(dict(type="ShapeClassification", split="val", points=128, per_class=SIZES, classes=SMALL,
                                cache_dir=str(shapes["val"].cache_path.parent)))
    assert len(built) == len(ds)
    with pytest.raises(ConfigError, match="classes must be distinct names"):
        ShapeClassification(classes=("cube", "teapot"))
    with pytest.raises(ConfigError, match="split must be one of"):
        ShapeClassification(split="dev")


def test_from_file_for_inference(tmp_path):
    sample = ShapeClassification.from_file(str(ROOT / "meshes" / "knot.off"), points=256,
                                           features=("coords", "normals"))
    assert sample["coords"].shape == (256, 3) and abs(float(sample["coords"].norm(dim=1).max()) - 1) < 1e-5
    batch = ShapeClassification.collate_for(None)([sample, sample])
    assert batch["inputs"].shape == (2, 256, 6)
    scan = ShapeClassification.from_file(str(ROOT / "points_3" / "oneK.xyz"), points=256)
    assert scan["coords"].shape == (256, 3) and "normals" not in scan
    with pytest.raises(DataError, match="has no 'normals'"):
        PointCollate()([dict(scan, feature_keys=("coords", "normals"))])


# ------------------------------------------------------------------------------------------------
# LiDAR tiles
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("tile", ["b9", "urban"])
def test_lidar_spatial_split_is_disjoint_and_blocks_cover_the_test_region(tile):
    train, test = LidarTiles(tile, "train", center=False), LidarTiles(tile, "test", center=False)
    n = {"b9": 22300, "urban": 13511}[tile]
    assert not np.intersect1d(train.region, test.region).size and len(train.region) + len(test.region) == n
    assert 0.25 < len(test.region) / n < 0.4
    blocks = np.concatenate(test.blocks)
    assert np.array_equal(np.sort(blocks), np.sort(test.region))  # every test point exactly once
    assert test.lengths().max() <= 4096 and test.lengths().sum() == len(test.region) and len(test) == len(test.blocks)
    x = train.cloud["coords"][:, 0].numpy()
    strips = np.floor((x - x.min()) / 8.0).astype(int)
    assert (strips[test.region] % 3 == 2).all() and (strips[train.region] % 3 != 2).all()
    # the strips interleave: test points lie between train points in x, not all on one side
    assert x[test.region].min() < x[train.region].max() and x[train.region].min() < x[test.region].max()


def test_b9_labels_per_split_and_crops_keep_their_labels():
    train, test = LidarTiles("b9", "train", center=False), LidarTiles("b9", "test", center=False)
    assert train.class_counts().tolist() == [1043, 218, 441] and test.class_counts().tolist() == [524, 96, 125]
    assert train.metainfo["classes"] == LIDAR_CLASSES == ("ground", "vegetation", "roof")
    raw = read_points(ROOT / "points_3" / "b9_training.ply")
    lookup = {tuple(p): int(lab) for p, lab in zip(raw["coords"].tolist(), raw["labels"].tolist())}
    region = {tuple(p) for p in raw["coords"][torch.from_numpy(train.region)].tolist()}
    s = train[(0, 7)]
    assert s["coords"].shape == (4096, 3) and s["colors"].shape == (4096, 3) and len(train) == 100
    assert (s["labels"] >= 0).any()  # centred on a labelled point
    for p, lab in zip(s["coords"].tolist(), s["labels"].tolist()):
        assert tuple(p) in region and lab == (lookup[tuple(p)] if lookup[tuple(p)] >= 0 else -100)
    assert torch.equal(train[(3, 11)]["coords"], train[(3, 11)]["coords"])  # the crop follows the sample's seed
    assert not torch.equal(train[(3, 11)]["coords"], train[(3, 12)]["coords"])


def test_urban_asprs_classes_map_to_ground_and_vegetation():
    ds = LidarTiles("urban", "test", points=2048)
    counts = ds.class_counts() + LidarTiles("urban", "train").class_counts()
    assert counts.tolist() == [2441, 11041, 0]
    unlabelled = sum(int((ds[i]["labels"] == -100).sum()) for i in range(len(ds)))
    assert 0 < unlabelled <= 29 and ds.features == ("coords", "intensity")
    s = ds[0]
    assert float(s["coords"][:, 2].min()) == 0 and abs(float(s["coords"][:, 0].min() + s["coords"][:, 0].max())) < 1e-3
    batch = ds.collate([ds[i] for i in range(len(ds))])
    assert batch["inputs"].shape[-1] == 4 and batch["data_samples"]["seg"].shape == batch["mask"].shape


def test_lidar_bad_settings_and_inference_sample():
    with pytest.raises(ConfigError, match="tile must be one of"):
        LidarTiles("paris")
    with pytest.raises(ConfigError, match="split must be one of 'train', 'test'"):
        LidarTiles("b9", "val")
    sample = LidarTiles.from_file(str(ROOT / "examples" / "Point_set_processing_3" / "data" / "urban.las"),
                                  tile="urban")
    assert sample["coords"].shape == (13511, 3) and "labels" not in sample
    assert LidarTiles.collate_for(None)([sample])["inputs"].shape == (1, 13511, 4)


# ------------------------------------------------------------------------------------------------
# generated scenes
# ------------------------------------------------------------------------------------------------
def test_point_scenes(tmp_path):
    kw = dict(num_scenes=dict(train=3, val=1, test=2), points_per_scene=3000, classes=("cube", "knot", "cow"),
              cache_dir=tmp_path)
    train, test = PointScenes("train", **kw), PointScenes("test", **kw)
    assert len(train) == 3 and len(test) == 2 and train.metainfo["classes"] == ("ground", "cube", "knot", "cow",
                                                                               "clutter")
    assert set(test.mesh_names) & set(train.mesh_names) == {"cow"}  # cube and knot: held-out meshes only
    s = train[0]
    n = len(s["coords"])
    assert 2000 < n <= 3000 and s["normals"].shape == (n, 3) and s["labels"].shape == (n,)
    assert s["labels"].min() >= 0 and s["labels"].max() <= 4 and (s["labels"] == 0).float().mean() > 0.4
    assert train.lengths().tolist() == [len(train[i]["coords"]) for i in range(3)]
    labels = np.concatenate([train[i]["labels"].numpy() for i in range(3)])
    assert (labels == 4).any() and ((labels >= 1) & (labels <= 3)).any()  # clutter and objects
    again = PointScenes("train", **{**kw, "cache_dir": tmp_path / "other"})
    assert again.build_seconds is not None and np.array_equal(again.coords, train.coords)
    assert PointScenes("train", **kw).build_seconds is None
    batch = train.collate([train[i] for i in range(3)])
    assert batch["data_samples"]["seg"].shape == batch["mask"].shape == (3, int(train.lengths().max()))


# ------------------------------------------------------------------------------------------------
# the collate
# ------------------------------------------------------------------------------------------------
def test_point_collate_padding_is_inert():
    g = torch.Generator().manual_seed(0)
    samples = [dict(coords=torch.randn(n, 3, generator=g), colors=torch.rand(n, 3, generator=g),
                    intensity=torch.rand(n, generator=g), labels=torch.randint(0, 3, (n,), generator=g),
                    path=f"s{n}.ply", extra=dict(a=np.zeros(n)), index=torch.arange(n)) for n in (7, 3, 5)]
    collate = COLLATES.build(dict(type="PointCollate", features=("coords", "colors", "intensity")))
    batch = collate(samples)
    assert batch["inputs"].shape == (3, 7, 7) and batch["inputs"].dtype == torch.float32
    assert batch["lengths"].tolist() == [7, 3, 5] and batch["mask"].sum(1).tolist() == [7, 3, 5]
    assert batch["batch"].tolist() == [0] * 7 + [1] * 3 + [2] * 5
    seg = batch["data_samples"]["seg"]
    for b, s in enumerate(samples):
        n = len(s["coords"])
        assert torch.equal(batch["inputs"][b, :n], torch.cat([s["coords"], s["colors"], s["intensity"][:, None]], 1))
        assert torch.equal(batch["pos"][b, :n], s["coords"]) and torch.equal(seg[b, :n], s["labels"])
        assert (batch["inputs"][b, n:] == 0).all() and (batch["pos"][b, n:] == 0).all() and (seg[b, n:] == -100).all()
    # a masked mean over the padded batch is each cloud's own mean: padding changes nothing
    m = batch["mask"][..., None].float()
    pooled = (batch["inputs"] * m).sum(1) / m.sum(1)
    for b, s in enumerate(samples):
        torch.testing.assert_close(pooled[b], batch["inputs"][b, : len(s["coords"])].mean(0))
    assert batch["data_samples"]["path"] == ["s7.ply", "s3.ply", "s5.ply"]
    assert set(batch["data_samples"]) == {"seg", "index", "path"}  # per-point extras go nowhere else
    assert batch["data_samples"]["index"][1].tolist() == [0, 1, 2, -100, -100, -100, -100]


def test_point_collate_reads_what_the_loss_and_metric_read():
    from glocal.core.tokens import Tokens
    from glocal.tasks.losses import CrossEntropyLoss
    from glocal.tasks.postprocess import SegmentPost

    samples = [dict(coords=torch.randn(n, 3), labels=torch.tensor([0, 1, -100, 2][:n])) for n in (4, 2)]
    batch = PointCollate(ignore_index=-100)(samples)
    logits = Tokens(torch.randn(2, 4, 3), mask=batch["mask"])
    loss = CrossEntropyLoss(target="seg")(logits, batch["data_samples"])
    assert torch.isfinite(loss)
    out = SegmentPost(target="seg")(logits, batch["data_samples"])
    assert out[1]["gt_seg"].tolist() == [0, 1, -100, -100] and out[1]["pred_seg"][2:].tolist() == [-100, -100]


def test_point_collate_errors():
    with pytest.raises(ConfigError, match="features must be"):
        PointCollate(features=("coords", "rgb"))
    with pytest.raises(DataError, match="has no 'coords'"):
        PointCollate()([dict(points=torch.zeros(2, 3))])
    with pytest.raises(DataError, match=r"'colors' of shape \(3, 3\) for 2 points"):
        PointCollate(features=("coords", "colors"))([dict(coords=torch.zeros(2, 3), colors=torch.zeros(3, 3))])

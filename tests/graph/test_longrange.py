"""The generated long-range node task: deterministic, split-disjoint, labels exactly beyond
``depth`` hops, the fields of the graph sample format, node orders for scans, encodings through the
graph dataset base. (The locality proof itself is checked in test_gps.py.)"""
import numpy as np
import pytest
import torch

from glocal.core.errors import ConfigError, InputError
from glocal.modalities.graph.longrange import (IGNORE_INDEX, LongRangeNodes, bfs_order, hop_distances, ladder_graph,
                                               recolor_key)


def small(split="train", **kw):
    kw = {"num_graphs": 12, "nodes": (16, 30), "depth": 3, **kw}
    return LongRangeNodes(split=split, **kw)


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) if torch.is_tensor(a[k]) else a[k] == b[k] for k in a)


def test_deterministic_and_splits_differ():
    a, b = small(), small()
    for i in range(len(a)):
        assert same(a[i], b[i])
    others = [small(split) for split in ("val", "test")] + [small(seed=1)]
    for other in others:
        assert not any(torch.equal(a[i]["edge_index"], other[i]["edge_index"]) for i in range(len(a)))


def test_fields_labels_and_key():
    ds = small(colors=5, distractors=3)
    assert ds.vocab_size == 11 and ds.chance == pytest.approx(0.2)
    for i in range(len(ds)):
        s, key = ds.generate(i)
        n = len(s["inputs"])
        assert 16 <= n <= 30 and s["inputs"].shape == (n, 1) and s["inputs"].dtype == torch.long
        assert s["edge_index"].dtype == torch.long and s["name"] == f"longrange-train-{i}"
        tokens = s["inputs"][:, 0]
        assert int(((tokens >= 1) & (tokens <= 5)).sum()) == 1 and 1 <= int(tokens[key]) <= 5  # one key
        assert int((tokens > 5).sum()) == 3  # the distractors
        ei = s["edge_index"].numpy()
        assert (ei[0] != ei[1]).all()
        assert set(map(tuple, ei.T)) == set(map(tuple, ei[::-1].T))  # undirected: both directions
        dist = hop_distances(ei, n, key)
        assert (dist >= 0).all()  # connected
        labels = s["node_label"].numpy()
        assert ((labels != IGNORE_INDEX) == (dist > 3)).all()
        assert set(labels[labels != IGNORE_INDEX]) == {int(tokens[key]) - 1}
    assert ds.lengths() == [len(ds[i]["inputs"]) for i in range(len(ds))]


def test_onehot_features_and_bfs_order():
    ds = small(features="onehot", order="bfs")
    s = ds[0]
    n = len(s["node_label"])
    assert s["inputs"].shape == (n, ds.vocab_size) and s["inputs"].dtype == torch.float32
    assert torch.equal(s["inputs"].sum(1), torch.ones(n))
    order = s["order"].numpy()
    assert sorted(order.tolist()) == list(range(n))
    # breadth first: hop distances from the start never decrease along the order
    dist = hop_distances(s["edge_index"].numpy(), n, int(order[0]))
    assert (np.diff(dist[order]) >= 0).all()
    batch = ds.collate([ds[0], ds[1]])
    L = batch["inputs"].shape[1]
    assert batch["order"].shape == (2, L) and batch["data_samples"]["node_label"].shape == (2, L)
    assert (batch["data_samples"]["node_label"][~batch["mask"]] == IGNORE_INDEX).all()


def test_bfs_order_of_a_disconnected_graph():
    ei = np.array([[0, 1, 3, 4], [1, 0, 4, 3]])
    assert bfs_order(ei, 6, start=3).tolist() == [3, 4, 0, 1, 2, 5]


def test_ladder_graph_is_connected_for_any_rungs():
    rng = np.random.default_rng(0)
    for n in (8, 9, 31):
        ei = ladder_graph(n, 0.0, rng)
        assert (hop_distances(ei, n, 0) >= 0).all()
        assert ei.shape[1] == 2 * (2 * (n // 2 - 1) + 1 + n % 2)  # two rails, rung 0, the odd node


def test_recolor_key_changes_the_key_and_every_label_only():
    ds = small()
    s, key = ds.generate(0)
    color = int(s["node_label"].max())
    t = recolor_key(s, (color + 2) % 4, 4)
    changed = (t["inputs"] != s["inputs"])[:, 0]
    assert changed.nonzero().squeeze(1).tolist() == [key]
    labelled = s["node_label"] != IGNORE_INDEX
    assert (t["node_label"][labelled] == (color + 2) % 4).all() and torch.equal(t["edge_index"], s["edge_index"])
    with pytest.raises(InputError):
        recolor_key(small(features="onehot")[0], 0, 4)


def test_bad_settings_are_config_errors():
    with pytest.raises(ConfigError, match="2 \\* \\(depth \\+ 2\\)"):
        LongRangeNodes(nodes=(10, 20), depth=6)
    with pytest.raises(ConfigError, match="split"):
        LongRangeNodes(split="dev")
    with pytest.raises(ConfigError, match="features"):
        LongRangeNodes(features="dense")
    with pytest.raises(ConfigError, match="order"):
        LongRangeNodes(order="dfs")


def test_positional_encodings_are_cached_per_graph(tmp_path):
    from glocal.modalities.graph.encodings import RWSE

    ds = small(transforms=[RWSE(steps=6)], cache_dir=tmp_path)
    s = ds[1]
    assert s["rwse"].shape == (len(s["inputs"]), 6)
    again = small(transforms=[RWSE(steps=6)], cache_dir=tmp_path)
    assert any("12 hits" in line for line in again.pe_log), again.pe_log
    assert torch.equal(again[1]["rwse"], s["rwse"])
    batch = ds.collate([ds[0], ds[1]])
    assert batch["rwse"].shape[:2] == batch["mask"].shape  # a model input, beside 'inputs'

"""The graph data pipeline and adapter: the sample format, PadCollate's node keys, GraphList (PyG in),
QM9 (atom order vs coordinates, targets and units, the split, the cache), FreeSolv / solubility,
RWSE / LapPE against dense references, the encoding cache, GraphStem, and every bad input."""
import json
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from glocal.core.errors import ConfigError, DataError, InputError
from glocal.modalities.batch import PadCollate, SkippedSample
from glocal.modalities.graph import (ATOM_FEATURE_DIMS, BOND_FEATURE_DIMS, QM9, QM9_NUM_MOLECULES, RWSE, FreeSolv,
                                     GraphList, GraphStem, LapPE, MoleculeDataset, Solubility, check_graph, lap_pe,
                                     lap_pe_reference, qm9_split, seeded_split, rwse, rwse_reference, smiles_to_graph)
from glocal.modalities.graph.encodings import DENSE_MAX_NODES
from glocal.modalities.graph.qm9 import HARTREE_TO_EV, _target_table, _targets_from, qm9_target_stats
from glocal.modalities.registry import ADAPTERS, DATASETS, TRANSFORMS

# rdkit, qm9pack and datamol are pinned in tools/requirements.lock: without them the setup is broken,
# and these tests fail loudly rather than skip.


# ------------------------------------------------------------------------------------------------
# hand-made graphs
# ------------------------------------------------------------------------------------------------
def undirected(pairs) -> torch.Tensor:
    """``[2, 2P]`` long, both directions of each pair."""
    e = torch.tensor(pairs, dtype=torch.long).t()
    return torch.cat([e, e.flip(0)], 1)


def path_edges(n: int) -> np.ndarray:
    return undirected([(i, i + 1) for i in range(n - 1)]).numpy()


def cycle_edges(n: int) -> np.ndarray:
    return undirected([(i, (i + 1) % n) for i in range(n)]).numpy()


def graph(n: int, pairs, features: int = 3, edge_features: int = 2, **extra) -> dict:
    ei = undirected(pairs) if pairs else torch.zeros(2, 0, dtype=torch.long)
    g = torch.Generator().manual_seed(n * 7 + len(pairs))
    return dict(inputs=torch.randint(0, 4, (n, features), generator=g), edge_index=ei,
                edge_attr=torch.randint(0, 3, (ei.shape[1], edge_features), generator=g), **extra)


def small_graphs() -> list[dict]:
    return [graph(3, [(0, 1), (1, 2)]), graph(5, [(0, 1), (1, 2), (2, 3), (3, 4), (4, 0)]), graph(2, [(0, 1)])]


def cat_stem(dim=32, pe=None, edge=True) -> GraphStem:
    return GraphStem(dim, node_encoder=dict(type="CategoricalEncoder", feature_dims=(4, 4, 4)),
                     edge_encoder=dict(type="CategoricalEncoder", feature_dims=(3, 3)) if edge else None, pe=pe)


# ------------------------------------------------------------------------------------------------
# PadCollate node keys, GraphList, the stem
# ------------------------------------------------------------------------------------------------
def test_pad_collate_node_keys_pad_inputs_beside_inputs():
    samples = [dict(g, rwse=torch.rand(len(g["inputs"]), 4), node_label=torch.arange(len(g["inputs"])), name=f"g{i}")
               for i, g in enumerate(small_graphs())]
    batch = PadCollate(node_keys=("rwse",), token_keys=("node_label",))(samples)
    assert batch["inputs"].shape == (3, 5, 3) and batch["rwse"].shape == (3, 5, 4)
    assert "rwse" not in batch["data_samples"] and batch["data_samples"]["name"] == ["g0", "g1", "g2"]
    assert torch.equal(batch["rwse"][0, :3], samples[0]["rwse"]) and not batch["rwse"][0, 3:].any()  # padded 0
    assert batch["data_samples"]["node_label"][2].tolist() == [0, 1, -100, -100, -100]
    assert batch["edge_index"].max() < 15 and batch["edge_attr"].shape == (4 + 10 + 2, 2)
    samples[1]["rwse"] = torch.rand(4, 4)  # 5 nodes
    with pytest.raises(DataError, match="'rwse' of shape \\(4, 4\\); its first dimension must be 5"):
        PadCollate(node_keys=("rwse",))(samples)
    with pytest.raises(ConfigError, match="collated one way"):
        PadCollate(node_keys=("pos",))
    assert "node_keys=('rwse',)" in repr(PadCollate(node_keys=("rwse",)))


def test_graph_list_takes_pyg_data_and_in_memory_datasets():
    from torch_geometric.data import Data, InMemoryDataset

    data = [Data(x=torch.randn(n, 4), edge_index=torch.tensor(cycle_edges(n)), edge_attr=torch.randn(2 * n),
                 y=torch.tensor([float(n)]), pos=torch.randn(n, 3)) for n in (3, 6, 4)]
    ds = GraphList(data)
    s = ds[1]
    assert set(s) == {"inputs", "edge_index", "edge_attr", "pos", "target", "name"}
    assert s["inputs"].shape == (6, 4) and s["edge_attr"].shape == (12, 1) and s["target"].tolist() == [6.0]
    assert ds.lengths() == [3, 6, 4] and ds.describe(1) == "graph 1"
    batch = ds.collate([ds[i] for i in range(3)])
    assert batch["pos"].shape == (3, 6, 3) and batch["data_samples"]["target"].shape == (3, 1)

    class Mem(InMemoryDataset):
        def __init__(self, items):
            super().__init__(None)
            self.data, self.slices = self.collate(items)

    labelled = [Data(x=torch.randint(0, 5, (n,)), edge_index=torch.tensor(path_edges(n)), y=torch.tensor([n % 2]))
                for n in (2, 5)]
    nodes = [Data(x=torch.randint(0, 5, (4, 1)), edge_index=torch.tensor(path_edges(4)), y=torch.tensor([0, 1, 1, 0]))]
    mem = GraphList(Mem(labelled))
    assert mem[1]["label"] == 1 and mem[1]["inputs"].shape == (5, 1) and len(mem) == 2
    assert GraphList(nodes)[0]["node_label"].tolist() == [0, 1, 1, 0]
    assert "target" in GraphList(labelled, y_as="target")[0] and "label" not in GraphList(labelled, y_as=None)[0]


def test_stem_makes_tokens_and_padding_is_inert():
    rwse_t, lap_t = RWSE(steps=6), LapPE(k=3, sign_flip=False)
    samples = [lap_t(rwse_t(g, None), None) for g in small_graphs()]
    collate = PadCollate(node_keys=("rwse", "lap_vec", "lap_val"))
    stem = cat_stem(32, pe=[dict(type="RWSEEncoder", steps=6, dim=8), dict(type="LapPEEncoder", k=3, dim=4)]).eval()
    batch = collate(samples)
    tokens = stem(batch)
    assert tokens.x.shape == (3, 5, 32) and tokens.edge_attr.shape == (16, 32) and stem.pe_dim == 12
    assert torch.equal(tokens.edge_index, batch["edge_index"]) and torch.equal(tokens.mask, batch["mask"])
    assert not tokens.x[~tokens.mask].any()  # padded nodes are zero
    offset = 0
    for b, s in enumerate(samples):  # each graph alone gives the same node and edge features
        alone = stem(collate([s]))
        n, e = len(s["inputs"]), s["edge_index"].shape[1]
        torch.testing.assert_close(tokens.x[b, :n], alone.x[0], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(tokens.edge_attr[offset:offset + e], alone.edge_attr, rtol=1e-5, atol=1e-6)
        offset += e
    # training mode: the batch norm sees the valid nodes only, so padding cannot move it
    stem.train()
    stem(batch)
    mean = stem.pe[0].norm.running_mean.clone()
    stem.pe[0].norm.reset_running_stats()
    valid = batch["rwse"][batch["mask"]]
    stem(batch)
    torch.testing.assert_close(stem.pe[0].norm.running_mean, 0.1 * valid.mean(0))
    assert torch.allclose(mean, stem.pe[0].norm.running_mean)
    # LapPE pairs beyond N - 1 are padding: the 2-node graph's output ignores pairs 1 and 2
    enc = stem.pe[1]
    rows = dict(lap_vec=torch.tensor([[0.7, 5.0, 5.0]]), lap_val=torch.tensor([[2.0, 9.0, 9.0]]))
    other = dict(lap_vec=torch.tensor([[0.7, -1.0, 3.0]]), lap_val=torch.tensor([[2.0, 0.0, 1.0]]))
    torch.testing.assert_close(enc(rows, torch.tensor([2])), enc(other, torch.tensor([2])))


def test_stem_config_and_registries():
    stem = ADAPTERS.build(dict(type="GraphStem", dim=64, node_encoder=dict(type="AtomEncoder"),
                               edge_encoder=dict(type="BondEncoder"), pe=[dict(type="RWSEEncoder", steps=20, dim=28)]))
    assert stem.out_dim == 64 and stem.node_encoder.out_dim == 36  # 64 - 28 RWSE channels
    assert stem.node_encoder.feature_dims == ATOM_FEATURE_DIMS
    assert stem.edge_encoder.feature_dims == BOND_FEATURE_DIMS and stem.downsample is None
    assert isinstance(TRANSFORMS.build(dict(type="RWSE", steps=20)), RWSE)
    assert repr(TRANSFORMS.build(dict(type="LapPE", k=8))) == "LapPE(k=8, sign_flip=True)"
    with pytest.raises(ConfigError, match="take 64 of dim=64"):
        GraphStem(64, pe=[dict(type="RWSEEncoder", steps=20, dim=64)])
    with pytest.raises(ConfigError, match="leave its dim out"):
        GraphStem(64, node_encoder=dict(type="AtomEncoder", dim=64), pe=[dict(type="RWSEEncoder", dim=16)])
    with pytest.raises(ConfigError, match="unknown encoder type='AtomEncodr'"):
        GraphStem(64, node_encoder=dict(type="AtomEncodr"))
    floats = dict(inputs=torch.randn(4, 7), edge_index=torch.tensor(path_edges(4)))
    stem = GraphStem(16, node_encoder=dict(type="LinearEncoder", in_dim=7), edge_encoder=None)
    tokens = stem(PadCollate()([floats, floats]))
    assert tokens.x.shape == (2, 4, 16) and tokens.edge_attr is None
    single = dict(inputs=torch.randint(0, 9, (4,)), edge_index=torch.tensor(path_edges(4)))
    stem = GraphStem(16, node_encoder=dict(type="EmbeddingEncoder", num_embeddings=9), edge_encoder=None)
    assert stem(PadCollate()([single])).x.shape == (1, 4, 16)


# ------------------------------------------------------------------------------------------------
# RWSE and LapPE against dense references
# ------------------------------------------------------------------------------------------------
def test_rwse_known_values_and_reference():
    # a cycle of n > steps: return probability after k steps = C(k, k/2) / 2^k for even k, 0 for odd
    got = rwse(cycle_edges(12), 12, 8)
    want = [0, 1 / 2, 0, 6 / 16, 0, 20 / 64, 0, 70 / 256]
    np.testing.assert_allclose(got, np.tile(want, (12, 1)), atol=1e-7)
    np.testing.assert_allclose(rwse(cycle_edges(3), 3, 3)[0], [0, 0.5, 0.25], atol=1e-7)  # a triangle
    star = undirected([(0, i) for i in range(1, 5)]).numpy()  # centre 0 and four leaves
    np.testing.assert_allclose(rwse(star, 5, 4), [[0, 1, 0, 1]] + [[0, 0.25, 0, 0.25]] * 4, atol=1e-7)
    rng = np.random.default_rng(0)
    for n, extra in ((9, 6), (DENSE_MAX_NODES + 44, 40)):  # dense and sparse paths
        pairs = [(i, i + 1) for i in range(n - 1)] + [tuple(rng.choice(n, 2, replace=False)) for _ in range(extra)]
        ei = undirected(pairs).numpy()
        np.testing.assert_allclose(rwse(ei, n, 10), rwse_reference(ei, n, 10), atol=1e-6)
    isolated = rwse(np.zeros((2, 0), np.int64), 2, 3)
    assert not isolated.any()


def test_lap_pe_matches_the_path_spectrum_and_the_dense_reference():
    n, k = 10, 4
    vecs, vals = lap_pe(path_edges(n), n, k)
    np.testing.assert_allclose(vals, 1 - np.cos(np.pi * np.arange(1, k + 1) / (n - 1)), atol=1e-6)  # path spectrum
    ref_vecs, ref_vals = lap_pe_reference(path_edges(n), n, k)
    for j in range(k):  # the same eigenvectors up to sign
        assert min(np.abs(vecs[:, j] - ref_vecs[:, j + 1]).max(), np.abs(vecs[:, j] + ref_vecs[:, j + 1]).max()) < 1e-5
        assert vecs[np.abs(vecs[:, j]).argmax(), j] > 0  # fixed sign: largest entry positive
    big = DENSE_MAX_NODES + 44  # the sparse eigsh path against the dense reference
    vecs, vals = lap_pe(path_edges(big), big, k)
    ref_vecs, ref_vals = lap_pe_reference(path_edges(big), big, k)
    np.testing.assert_allclose(vals, ref_vals[1:k + 1], atol=1e-6)
    for j in range(k):
        assert min(np.abs(vecs[:, j] - ref_vecs[:, j + 1]).max(), np.abs(vecs[:, j] + ref_vecs[:, j + 1]).max()) < 1e-4
    vecs, vals = lap_pe(path_edges(3), 3, 5)  # 3 nodes: 2 real pairs, then zero padding
    assert vecs.shape == (3, 5) and not vecs[:, 2:].any() and not vals[2:].any()
    np.testing.assert_allclose(vals[:2], [1.0, 2.0], atol=1e-6)
    assert not lap_pe(np.zeros((2, 0), np.int64), 1, 3)[0].any()  # one node: nothing


def test_lap_pe_sign_flip_uses_the_sample_rng():
    g = dict(inputs=torch.zeros(8, 1), edge_index=torch.tensor(cycle_edges(8)))
    plain = LapPE(k=4, sign_flip=False)(g, None)
    a, b = LapPE(k=4)(g, np.random.default_rng(1)), LapPE(k=4)(g, np.random.default_rng(1))
    assert torch.equal(a["lap_vec"], b["lap_vec"])  # the same seed, the same signs
    signs = (a["lap_vec"] / plain["lap_vec"]).nan_to_num(1.0)
    assert set(signs.unique().tolist()) <= {-1.0, 1.0}
    assert (signs == signs[:1]).all()  # one sign per eigenvector, shared by every node
    assert torch.equal(a["lap_val"], plain["lap_val"]) and plain["lap_val"].shape == (8, 4)
    flips = {tuple((LapPE(k=4)(g, np.random.default_rng(s))["lap_vec"] * plain["lap_vec"]).sum(0).sign().tolist())
             for s in range(16)}
    assert len(flips) > 4  # different samples get different signs
    with pytest.raises(ConfigError):
        LapPE(k=0)


def test_encoding_cache_second_construction_hits(tmp_path):
    rng = np.random.default_rng(0)
    graphs = []
    for i in range(60):
        n = 150 + i
        pairs = [(j, j + 1) for j in range(n - 1)] + [tuple(rng.choice(n, 2, replace=False)) for _ in range(n // 2)]
        graphs.append(dict(inputs=torch.zeros(n, 1, dtype=torch.long), edge_index=undirected(pairs)))
    graphs.append(dict(graphs[0]))  # a repeated structure is computed once
    pipeline = [dict(type="RWSE", steps=16), dict(type="LapPE", k=8)]
    t0 = time.perf_counter()
    first = GraphList(graphs, transforms=pipeline, cache_dir=tmp_path)
    miss = time.perf_counter() - t0
    t0 = time.perf_counter()
    second = GraphList(graphs, transforms=pipeline, cache_dir=tmp_path)
    hit = time.perf_counter() - t0
    assert "PE cache: 0 hits, 60 computed" in first.pe_log[0] and "1 repeated structures" in first.pe_log[0]
    assert all("PE cache: 61 hits, 0 computed" in line for line in second.pe_log), second.pe_log
    assert hit < miss / 3, (hit, miss)
    for i in (0, 7, 60):
        a, b = first[(i, 3)], second[(i, 3)]
        assert torch.equal(a["rwse"], b["rwse"]) and torch.equal(a["lap_vec"], b["lap_vec"])
        direct = RWSE(16)(dict(graphs[i]), None)["rwse"]
        torch.testing.assert_close(a["rwse"], direct)
    # the file is shared by content: a new list with one new graph computes only that one
    third = GraphList(graphs[:5] + [dict(inputs=torch.zeros(4, 1), edge_index=torch.tensor(cycle_edges(4)))],
                      transforms=pipeline, cache_dir=tmp_path)
    assert "PE cache: 5 hits, 1 computed" in third.pe_log[0]
    assert sorted(p.name.split("-")[1] for p in (tmp_path / "pe").iterdir()) == ["LapPE", "RWSE"]  # one file each


# ------------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------------
BAD = {
    "no nodes": (dict(inputs=torch.zeros(0, 3), edge_index=torch.zeros(2, 0, dtype=torch.long)), "has no nodes"),
    "out of range": (dict(inputs=torch.zeros(3, 1), edge_index=torch.tensor([[0, 1, 2], [1, 2, 3]])),
                     "'edge_index' refers to node 3 \\(edge 2\\) but the graph has 3 nodes"),
    "negative": (dict(inputs=torch.zeros(3, 1), edge_index=torch.tensor([[0, -1], [1, 0]])), "refers to node -1"),
    "float dtype": (dict(inputs=torch.zeros(2, 1), edge_index=torch.tensor([[0.0, 1.0], [1.0, 0.0]])),
                    "'edge_index' has dtype torch.float32; node indices must be integers"),
    "transposed": (dict(inputs=torch.zeros(3, 1), edge_index=torch.tensor([[0, 1], [1, 2], [2, 0]])),
                   "'edge_index' must have shape \\[2, E\\]; got \\(3, 2\\) \\(transposed"),
    "self loop": (dict(inputs=torch.zeros(2, 1), edge_index=torch.tensor([[0, 1, 1], [1, 0, 1]])),
                  "'edge_index' has self loops .* at node\\(s\\) \\[1\\]"),
    "isolated": (dict(inputs=torch.zeros(3, 1), edge_index=torch.tensor([[0, 1], [1, 0]])),
                 "has 1 isolated node\\(s\\) .*\\[2\\] of 3; allow them with check=dict\\(isolated_nodes=False\\)"),
    "no edges": (dict(inputs=torch.zeros(2, 1), edge_index=torch.zeros(2, 0, dtype=torch.long)), "has no edges"),
    "edge_attr rows": (dict(inputs=torch.zeros(2, 1), edge_index=torch.tensor([[0, 1], [1, 0]]),
                            edge_attr=torch.zeros(3, 2)), "'edge_attr' must be \\[E, Fe\\] with one row per edge"),
    "pos rows": (dict(inputs=torch.zeros(2, 1), edge_index=torch.tensor([[0, 1], [1, 0]]), pos=torch.zeros(3, 3)),
                 "'pos' must have one row per node \\(2\\)"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_graphs_are_data_errors_naming_the_graph_and_field(case):
    sample, message = BAD[case]
    good = dict(inputs=torch.zeros(2, 1), edge_index=torch.tensor([[0, 1], [1, 0]]), name="fine")
    ds = GraphList([good, dict(sample, name="mol-7")])
    assert ds[0]["name"] == "fine"
    with pytest.raises(DataError, match=message) as e:
        ds[1]
    assert "graph mol-7" in str(e.value) and "GraphList: sample 1 (graph mol-7)" in str(e.value)
    skipping = GraphList([good, dict(sample, name="mol-7")], on_error="skip", max_skips=5)
    marker = skipping[1]
    assert isinstance(marker, SkippedSample) and marker.path == "graph mol-7"
    batch = skipping.collate([skipping[0], marker])
    assert batch["_skipped"][0][0] == 1 and batch["inputs"].shape[0] == 1


def test_self_loops_and_isolated_nodes_are_allowed_on_request():
    loop, lonely = BAD["self loop"][0], BAD["isolated"][0]
    assert GraphList([loop], check=dict(self_loops=False))[0]["edge_index"].shape == (2, 3)
    assert GraphList([lonely, BAD["no edges"][0]], check=dict(isolated_nodes=False))[1]["inputs"].shape == (2, 1)
    with pytest.raises(ConfigError, match="check= takes"):
        GraphList([loop], check=dict(loops=False))
    check_graph(loop, "x", self_loops=False)


def test_invalid_smiles_names_the_string():
    with pytest.raises(DataError, match="molecule 1: .*invalid SMILES string 'C1CC'.*cannot parse"):
        MoleculeDataset(["CCO", "C1CC", "CC"], targets=[1.0, 2.0, 3.0])
    with pytest.raises(DataError, match="invalid SMILES string 'C\\(C\\)\\(C\\)\\(C\\)\\(C\\)C'.*valence"):
        MoleculeDataset(["C(C)(C)(C)(C)C"])
    with pytest.raises(DataError, match="no atoms"):
        MoleculeDataset([""])
    ds = MoleculeDataset(["CCO", "C1CC", "C"], targets=[1.0, 2.0, 3.0], on_error="skip")
    assert isinstance(ds[1], SkippedSample) and "C1CC" in ds[1].message and ds.lengths() == [3, 0, 1]
    assert ds[2]["edge_index"].shape == (2, 0)  # methane without hydrogens: one atom, legal by default
    with pytest.raises(DataError, match="has no edges"):
        MoleculeDataset(["C"], check=dict(isolated_nodes=True))[0]


def test_feature_sizes_that_do_not_match_the_config():
    samples = small_graphs()
    batch = PadCollate()(samples)
    with pytest.raises(InputError, match="'inputs' has 3 features per row, but the config expects 9"):
        GraphStem(32)(batch)
    stem = cat_stem()
    bad_edges = dict(batch, edge_attr=torch.zeros(batch["edge_attr"].shape[0], 3, dtype=torch.long))
    with pytest.raises(InputError, match="'edge_attr' has 3 features per row, but the config expects 2"):
        stem(bad_edges)
    inputs = batch["inputs"].clone()
    inputs[1, 2, 1] = 7
    with pytest.raises(InputError, match="'inputs' feature 1 has value 7, outside its table of 4 entries"):
        stem(dict(batch, inputs=inputs))
    atoms = PadCollate()([dict(inputs=torch.tensor([[200] + [0] * 8]), edge_index=torch.zeros(2, 0, dtype=torch.long))])
    with pytest.raises(InputError, match="feature 0 \\(atomic_num\\) has value 200, outside its table of 119"):
        GraphStem(32, edge_encoder=None)(atoms)
    with pytest.raises(InputError, match="holds torch.float32 values.*LinearEncoder\\(in_dim=3\\)"):
        stem(dict(batch, inputs=batch["inputs"].float()))
    with pytest.raises(InputError, match="'inputs' has 3 features per row, but the config expects in_dim=5"):
        GraphStem(16, node_encoder=dict(type="LinearEncoder", in_dim=5), edge_encoder=None)(batch)
    pe_stem = cat_stem(pe=[dict(type="RWSEEncoder", steps=20, dim=8)])
    with pytest.raises(InputError, match="needs the batch field 'rwse'.*RWSE transform"):
        pe_stem(batch)
    with pytest.raises(InputError, match="'rwse' has 16 values per node, but the config expects steps=20"):
        pe_stem(dict(batch, rwse=torch.zeros(3, 5, 16)))
    lap_stem = cat_stem(pe=[dict(type="LapPEEncoder", k=8, dim=8)])
    with pytest.raises(InputError, match="'lap_vec' has 4 values per node, but the config expects k=8"):
        lap_stem(dict(batch, lap_vec=torch.zeros(3, 5, 4), lap_val=torch.zeros(3, 5, 4)))


# ------------------------------------------------------------------------------------------------
# molecules: FreeSolv, solubility, the featuriser
# ------------------------------------------------------------------------------------------------
def test_featuriser_vocabulary():
    g = smiles_to_graph("c1ccccc1O")
    assert g["inputs"].shape == (7, 9) and g["edge_attr"].shape == (14, 4)
    assert (g["inputs"][:6, 0] == 5).all() and g["inputs"][6, 0] == 7  # carbon, oxygen: atomic number - 1
    assert (g["inputs"][:6, 7] == 1).all() and (g["edge_attr"][:, 0] == 3).sum() == 12  # aromatic atoms, 6 bonds
    assert (g["inputs"] < np.array(ATOM_FEATURE_DIMS)).all() and (g["edge_attr"] < np.array(BOND_FEATURE_DIMS)).all()
    ion = smiles_to_graph("[NH4+]")
    assert ion["inputs"][0, 3] == 6 and ion["inputs"][0, 4] == 4  # charge +1 (index 6 of -5..5), four hydrogens


def test_freesolv_and_solubility(tmp_path):
    sizes = {s: len(seeded_split(642, s)) for s in ("train", "val", "test")}
    assert sizes == dict(train=514, val=64, test=64)
    parts = [set(seeded_split(642, s).tolist()) for s in ("train", "val", "test")]
    assert set.union(*parts) == set(range(642)) and sum(map(len, parts)) == 642
    ds = DATASETS.build(dict(type="FreeSolv", split="test", cache_dir=str(tmp_path),
                             transforms=[dict(type="RWSE", steps=4)]))
    assert len(ds) == 64 and ds.metainfo["units"] == ("kcal/mol",)
    assert ds.target_mean[0] == pytest.approx(-3.8, abs=0.3) and ds.target_std[0] == pytest.approx(3.85, abs=0.4)
    s = ds[0]
    assert s["target"].shape == (1,) and s["inputs"].shape[1] == 9 and s["rwse"].shape == (len(s["inputs"]), 4)
    assert all(-30 < float(ds[i]["target"]) < 5 for i in range(len(ds)))  # hydration free energies, kcal/mol
    assert "rwse" in ds.collate.node_keys and ds.collate.token_keys == ("node_label",)
    train = Solubility("train", limit=40)
    test = Solubility("test", task="classification")
    assert len(test) == 257 and len(train) == 40 and train[0]["target"].shape == (1,)
    assert train.target_mean == Solubility("test").target_mean and -3.5 < train.target_mean[0] < -2.5
    labels = [test[i]["label"] for i in range(len(test))]
    assert set(labels) == {0, 1, 2} and "target" not in test[0]
    assert np.bincount(labels).tolist() == [102, 115, 40]
    heavy, with_h = FreeSolv(split="all", limit=3)[0], FreeSolv(split="all", limit=3, explicit_h=True)[0]
    assert len(with_h["inputs"]) > len(heavy["inputs"]) and heavy["name"] == with_h["name"]


# ------------------------------------------------------------------------------------------------
# QM9
# ------------------------------------------------------------------------------------------------
def test_qm9_split_sizes_and_determinism():
    parts = {s: qm9_split(s) for s in ("train", "val", "test")}
    assert {s: len(p) for s, p in parts.items()} == dict(train=110_000, val=10_000, test=10_831)
    joined = np.concatenate(list(parts.values()))
    assert len(np.unique(joined)) == QM9_NUM_MOLECULES and joined.min() == 0 and joined.max() == QM9_NUM_MOLECULES - 1
    assert np.array_equal(qm9_split("val"), qm9_split("val"))
    assert not np.array_equal(qm9_split("val"), qm9_split("val", seed=1))
    with pytest.raises(ConfigError):
        qm9_split("dev")


@pytest.fixture(scope="module")
def qm9_cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("qm9cache")
    t0 = time.perf_counter()
    ds = QM9("val", targets=("gap", "U0", "U0_atom", "mu"), limit=150, cache_dir=root,
             transforms=[dict(type="RWSE", steps=8), dict(type="LapPE", k=4)])
    return root, ds, time.perf_counter() - t0


def test_qm9_atom_order_matches_the_coordinates(qm9_cache):
    _, ds, _ = qm9_cache
    lengths = {}
    for i in range(len(ds)):
        s = ds[(i, 0)]
        z = s["inputs"][:, 0] + 1  # atomic numbers
        src, dst = s["edge_index"]
        d = (s["pos"][src] - s["pos"][dst]).norm(dim=1)
        kind = s["edge_attr"][:, 0]  # 0 single, 1 double, 2 triple, 3 aromatic
        for a, b, dist, t in zip(z[src].tolist(), z[dst].tolist(), d.tolist(), kind.tolist()):
            if a <= b:
                lengths.setdefault((a, b, t), []).append(dist)
        far = torch.cdist(s["pos"], s["pos"]) + 10 * torch.eye(len(z))
        bonded = torch.zeros(len(z), len(z), dtype=torch.bool)
        bonded[src, dst] = True
        assert far[~bonded].min() > 1.0  # atoms without a bond are apart
    mean = {key: np.mean(v) for key, v in lengths.items()}
    ch = np.array(lengths[(1, 6, 0)])
    assert abs(mean[(1, 6, 0)] - 1.09) < 0.01 and ch.std() < 0.01 and ch.min() > 1.05 and ch.max() < 1.12  # sp C-H 1.06
    assert abs(mean[(6, 6, 0)] - 1.53) < 0.03 and 0.95 < mean[(1, 8, 0)] < 0.99  # C-C, O-H
    assert 1.18 < mean[(6, 6, 2)] < 1.22 and 1.30 < mean[(6, 6, 1)] < 1.37  # C#C, C=C
    assert all(max(v) < 2.3 for v in lengths.values())


def test_qm9_sample_format_targets_and_units(qm9_cache):
    root, ds, _ = qm9_cache
    s = ds[0]
    assert set(s) == {"inputs", "edge_index", "edge_attr", "pos", "target", "name", "rwse", "lap_vec", "lap_val"}
    assert s["inputs"].dtype == torch.long and s["pos"].dtype == torch.float32 and s["target"].shape == (4,)
    assert ds.target_units == ("eV", "eV", "eV", "D") and ds.describe(0).startswith("graph QM9 ")
    assert len(ds) == 150 and ds.lengths() == [len(ds[i]["inputs"]) for i in range(len(ds))]
    table = _target_table(root)
    row = 0  # QM9 molecule 1, methane: gap 0.5048 Ha, U0 -40.47893 Ha
    ev = _targets_from(table, ("gap", "U0", "U0_atom", "mu"), "eV")[row]
    np.testing.assert_allclose(ev[:2], [0.5048 * HARTREE_TO_EV, -40.47893 * HARTREE_TO_EV])
    np.testing.assert_allclose(ev[2], (-40.47893 + 37.846772 + 4 * 0.500273) * HARTREE_TO_EV)  # about -17.2 eV
    mev = _targets_from(table, ("gap", "mu"), "meV")[row]
    np.testing.assert_allclose(mev, [0.5048 * HARTREE_TO_EV * 1000, 0.0])
    all_ev = _targets_from(table, ("gap", "U0_atom"), "eV")
    assert (all_ev[:, 0] > 0).all() and (all_ev[:, 1] < 0).all()  # gaps positive, atomisation energies negative
    mean, std = qm9_target_stats(("gap",), cache_dir=root)
    train = all_ev[qm9_split("train"), 0]
    assert mean == pytest.approx([train.mean()]) and std == pytest.approx([train.std()])
    assert ds.target_mean[0] == pytest.approx(mean[0]) and 6.5 < mean[0] < 7.2 and 1.0 < std[0] < 1.6
    k = ds.molecules[3]
    assert float(ds[3]["target"][0]) == pytest.approx(all_ev[k, 0], rel=1e-6)
    batch = ds.collate([ds[(i, i)] for i in range(8)])
    stem = GraphStem(64, pe=[dict(type="RWSEEncoder", steps=8, dim=16), dict(type="LapPEEncoder", k=4, dim=8)])
    tokens = stem(batch)
    assert tokens.pos.shape == (8, batch["mask"].shape[1], 3) and tokens.edge_attr.shape[1] == 64


def test_qm9_second_construction_hits_the_caches(qm9_cache):
    root, first, miss_s = qm9_cache
    assert "cache miss: processed 150 molecules" in first.data_log
    assert all("0 hits" in line for line in first.pe_log)
    t0 = time.perf_counter()
    again = QM9("val", targets=("gap", "U0", "U0_atom", "mu"), limit=150, cache_dir=root,
                transforms=[dict(type="RWSE", steps=8), dict(type="LapPE", k=4)])
    hit_s = time.perf_counter() - t0
    assert "QM9: graphs: cache hit (150 molecules" in again.data_log
    assert all("PE cache: 150 hits, 0 computed" in line for line in again.pe_log)
    assert hit_s < miss_s / 5, (hit_s, miss_s)
    for i in (0, 149):
        a, b = first[(i, 2)], again[(i, 2)]
        assert all(torch.equal(a[key], b[key]) for key in ("inputs", "edge_index", "pos", "target", "rwse", "lap_vec"))
    saved = torch.load(next((root / "qm9").glob("qm9-graphs-*.pt")), weights_only=True)
    assert saved["rows"].shape == (150,)
    with pytest.raises(ConfigError, match="targets must be"):
        QM9("val", targets=("gaps",), limit=2, cache_dir=root)


def test_graph_package_imports_no_decoders():
    code = ("import glocal.modalities.graph, torch\n"
            "from glocal.modalities.registry import ADAPTERS\n"
            "ADAPTERS.build(dict(type='GraphStem', dim=32))\n"
            "import sys, json; print(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    top = {m.split(".")[0] for m in json.loads(out.stdout.strip().splitlines()[-1])}
    assert not top & {"rdkit", "pandas", "torch_geometric", "decord", "open3d", "torchaudio"}, top

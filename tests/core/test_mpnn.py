"""GINE / GatedGCN token mixers against dense references; padding; per-graph equivalence; kNN
graphs; a GraphGPS layer built from the block."""
import pytest
import torch

from glocal.core import MIXERS, FullAttention, LocalGlobalBlock, Tokens
from glocal.core.errors import InputError, MissingStructureError
from glocal.core.mpnn import GINE, GatedGCN, gated_gcn_reference, gine_reference, knn_edges

SIZES = (5, 7, 4)  # three small graphs, padded to L = 7
EDGE_DIM = 3


def random_graph(n, gen):
    """A connected random graph on n nodes (a random tree plus a few chords), both directions."""
    pairs = {(int(torch.randint(0, i, (1,), generator=gen)), i) for i in range(1, n)}
    for _ in range(n // 2):
        a, b = torch.randint(0, n, (2,), generator=gen).tolist()
        if a != b:
            pairs.add((min(a, b), max(a, b)))
    und = torch.tensor(sorted(pairs)).t()
    return torch.cat([und, und.flip(0)], 1)  # [2, E]


def graph_batch(C=8, dtype=torch.float64, sizes=SIZES, seed=0):
    """(padded tokens, per-graph tokens) with edge_attr [E, EDGE_DIM]."""
    gen = torch.Generator().manual_seed(seed)
    B, L = len(sizes), max(sizes)
    x = torch.randn(B, L, C, generator=gen, dtype=dtype)
    mask = torch.zeros(B, L, dtype=torch.bool)
    edges, attrs, singles = [], [], []
    for b, n in enumerate(sizes):
        mask[b, :n] = True
        ei = random_graph(n, gen)
        ea = torch.randn(ei.shape[1], EDGE_DIM, generator=gen, dtype=dtype)
        edges.append(ei + b * L)
        attrs.append(ea)
        singles.append(Tokens(x[b:b + 1, :n].clone(), edge_index=ei, edge_attr=ea))
    x = x.masked_fill(~mask[..., None], 3.0)  # padding with non-zero content
    tokens = Tokens(x, mask=mask, edge_index=torch.cat(edges, 1), edge_attr=torch.cat(attrs))
    return tokens, singles


LAYERS = {
    "GINE": lambda C: GINE(C, edge_dim=EDGE_DIM, mlp_ratio=2.0, eps=0.3, train_eps=True),
    "GatedGCN": lambda C: GatedGCN(C, edge_dim=EDGE_DIM),
}
REFERENCES = {"GINE": gine_reference, "GatedGCN": gated_gcn_reference}


@pytest.mark.parametrize("name", list(LAYERS))
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_matches_dense_reference(name, dtype, tol):
    tokens, _ = graph_batch(dtype=dtype)
    layer = LAYERS[name](8).to(dtype)
    x1 = tokens.x.clone().requires_grad_()
    x2 = tokens.x.clone().requires_grad_()
    out = layer(x1, tokens)
    ref = REFERENCES[name](layer, x2, tokens)
    valid = tokens.mask
    torch.testing.assert_close(out[valid], ref[valid], atol=tol, rtol=tol)
    w = torch.randn_like(out) * valid[..., None]
    g1, = torch.autograd.grad((out * w).sum(), x1)
    g2, = torch.autograd.grad((ref * w).sum(), x2)
    torch.testing.assert_close(g1, g2, atol=tol, rtol=tol)


@pytest.mark.parametrize("name", list(LAYERS))
def test_padding_inert_and_equal_to_each_graph_alone(name):
    tokens, singles = graph_batch()
    layer = LAYERS[name](8).double()
    out = layer(tokens.x, tokens)
    assert torch.isfinite(out).all()
    # padding content changes nothing for valid tokens
    noisy = tokens.replace(x=torch.where(tokens.mask[..., None], tokens.x, 1e4 * torch.randn_like(tokens.x)))
    out2 = layer(noisy.x, noisy)
    torch.testing.assert_close(out[tokens.mask], out2[tokens.mask], atol=1e-10, rtol=0)
    # batched == each graph on its own
    for b, single in enumerate(singles):
        n = single.x.shape[1]
        torch.testing.assert_close(out[b, :n], layer(single.x, single)[0], atol=1e-10, rtol=0)


def test_edge_features_change_the_output_and_edge_dim_rules():
    tokens, _ = graph_batch()
    other = tokens.replace(edge_attr=torch.randn_like(tokens.edge_attr))
    for name in LAYERS:
        layer = LAYERS[name](8).double()
        assert not torch.allclose(layer(tokens.x, tokens), layer(other.x, other)), name
    # edge_dim=0: edge features ignored, no edge parameters
    for cls in (GINE, GatedGCN):
        layer = cls(8, edge_dim=0).double()
        assert not any("edges" in n or n.startswith("C.") for n, _ in layer.named_parameters())
        torch.testing.assert_close(layer(tokens.x, tokens), layer(other.x, other))
        # edge_dim=None: edge_attr must already have width dim
        with pytest.raises(InputError, match="edge_dim=3"):
            cls(8)(tokens.x.float(), tokens.replace(x=tokens.x.float()))
        # edge_dim given: edge_attr required
        with pytest.raises(MissingStructureError, match="edge_attr"):
            cls(8, edge_dim=3)(tokens.x, tokens.replace(edge_index=tokens.edge_index, edge_attr=None))


def test_gine_without_edge_attr_is_relu_messages():
    tokens, _ = graph_batch()
    t = tokens.replace(edge_attr=None)
    layer = GINE(8).double()
    ref = gine_reference(layer, t.x, t)
    torch.testing.assert_close(layer(t.x, t)[t.mask], ref[t.mask])


def test_structure_errors():
    tokens, _ = graph_batch()
    with pytest.raises(MissingStructureError, match="edge_index"):
        GINE(8).double()(tokens.x, Tokens(tokens.x))
    bad = tokens.edge_index.clone()
    bad[0, 0] = 6  # node 6 of graph 0 is padding
    with pytest.raises(InputError, match="padded"):
        GatedGCN(8, edge_dim=EDGE_DIM).double()(tokens.x, tokens.replace(edge_index=bad))
    with pytest.raises(InputError, match="flattened"):
        GINE(8, edge_dim=0).double()(tokens.x, tokens.replace(edge_index=bad + 100))


def test_registered_and_buildable():
    layer = MIXERS.build(dict(type="GatedGCN", edge_dim=0), dim=16)
    assert isinstance(layer, GatedGCN)
    assert isinstance(MIXERS.build(dict(type="GINE"), dim=16), GINE)


# --- kNN graphs ----------------------------------------------------------------------------------

def knn_brute(pos, k, mask):
    B, L, _ = pos.shape
    pairs = set()
    for b in range(B):
        for i in range(L):
            if not mask[b, i]:
                continue
            d = [((pos[b, i] - pos[b, j]).norm().item(), j) for j in range(L) if j != i and mask[b, j]]
            for _, j in sorted(d)[:k]:
                pairs.add((b * L + j, b * L + i))
    return pairs


@pytest.mark.parametrize("method", ["brute", "grid"])
@pytest.mark.parametrize("chunk", [3, 2048])
def test_knn_edges_match_brute_force_and_avoid_padding(chunk, method):
    gen = torch.Generator().manual_seed(1)
    pos = torch.randn(3, 9, 3, generator=gen, dtype=torch.float64)
    mask = torch.ones(3, 9, dtype=torch.bool)
    mask[1, 6:] = False
    mask[2, 3:] = False  # only 3 valid points: fewer than k others
    ei = knn_edges(pos, 4, mask, chunk=chunk, method=method)
    got = set(map(tuple, ei.t().tolist()))
    assert got == knn_brute(pos, 4, mask)
    assert mask.reshape(-1)[ei].all()
    assert (ei[0] != ei[1]).all()
    counts = torch.bincount(ei[1], minlength=27).view(3, 9)
    assert (counts[0] == 4).all() and (counts[2, :3] == 2).all() and (counts[~mask] == 0).all()


@pytest.mark.parametrize("chunk", [2048, 2])
@pytest.mark.parametrize("cloud", ["surface", "clustered"])
def test_grid_knn_equals_brute_force_on_large_clouds(cloud, chunk):
    """The grid search against full distance rows on clouds of a few thousand points: a sphere
    surface, and dense clusters far apart (sparse regions fall back to brute force), with loops
    and without, in one chunk and in many (each padded to its own largest block); distances
    compared, so ties cannot make a false failure."""
    gen = torch.Generator().manual_seed(0)
    if cloud == "surface":
        p = torch.randn(3000, 3, generator=gen, dtype=torch.float64)
        p = p / p.norm(dim=1, keepdim=True)
    else:
        centres = torch.randn(5, 3, generator=gen, dtype=torch.float64) * 50
        p = centres[torch.arange(3000) % 5] + torch.randn(3000, 3, generator=gen, dtype=torch.float64) * 0.3
        p[:7] = torch.randn(7, 3, generator=gen, dtype=torch.float64) * 200  # isolated points
    mask = torch.ones(1, 3000, dtype=torch.bool)
    mask[0, 2900:] = False
    for loop in (False, True):
        grid = knn_edges(p[None], 8, mask, loop=loop, method="grid", chunk=chunk)
        brute = knn_edges(p[None], 8, mask, loop=loop, method="brute")
        assert torch.equal(grid[1], brute[1])  # every valid point, 8 neighbours each, same order
        dg = (p[grid[0]] - p[grid[1]]).norm(dim=1).view(-1, 8).sort(1).values
        db = (p[brute[0]] - p[brute[1]]).norm(dim=1).view(-1, 8).sort(1).values
        torch.testing.assert_close(dg, db, rtol=0, atol=1e-12)
        assert mask.reshape(-1)[grid].all() and ((grid[0] == grid[1]).any() == loop or not loop)


def test_mixers_on_point_knn_graph_match_each_cloud_alone():
    gen = torch.Generator().manual_seed(2)
    B, L, C = 2, 12, 8
    pos = torch.randn(B, L, 3, generator=gen, dtype=torch.float64)
    mask = torch.ones(B, L, dtype=torch.bool)
    mask[1, 8:] = False
    x = torch.randn(B, L, C, generator=gen, dtype=torch.float64)
    tokens = Tokens(x, mask=mask, pos=pos, edge_index=knn_edges(pos, 4, mask))
    for layer in (GINE(C, edge_dim=0).double(), GatedGCN(C, edge_dim=0).double()):
        out = layer(x, tokens)
        for b, n in enumerate((12, 8)):
            single = Tokens(x[b:b + 1, :n], pos=pos[b:b + 1, :n], edge_index=knn_edges(pos[b:b + 1, :n], 4))
            torch.testing.assert_close(out[b, :n], layer(single.x, single)[0], atol=1e-10, rtol=0)


# --- a GraphGPS layer is a parallel LocalGlobalBlock ----------------------------------------------

def test_graphgps_layer_is_a_parallel_block():
    torch.manual_seed(0)
    tokens, singles = graph_batch(C=16, dtype=torch.float32)
    block = LocalGlobalBlock(16, local=dict(type="GINE", edge_dim=EDGE_DIM),
                             global_=dict(type="FullAttention", heads=4), composition="parallel",
                             norm="BatchNorm", ffn=dict(type="Mlp", ratio=2))
    assert isinstance(block.local, GINE) and isinstance(block.global_, FullAttention)
    x = tokens.x.clone().requires_grad_()
    out = block(tokens.replace(x=x)).x
    assert out.shape == tokens.x.shape and torch.isfinite(out).all()
    out[tokens.mask].square().sum().backward()
    assert torch.isfinite(x.grad).all()
    assert x.grad[~tokens.mask].abs().max() == 0  # padding gets no gradient from valid outputs
    for name, p in block.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    # padding is inert in training mode too (BatchNorm statistics over valid tokens only)
    noisy = tokens.replace(x=torch.where(tokens.mask[..., None], tokens.x, 50 * torch.randn_like(tokens.x)))
    torch.testing.assert_close(block(noisy).x[tokens.mask], block(tokens).x[tokens.mask])
    # eval mode: each graph alone gives the same result as the batch
    block.eval()
    out = block(tokens).x
    for b, single in enumerate(singles):
        n = single.x.shape[1]
        torch.testing.assert_close(out[b, :n], block(single.replace(x=single.x.float(),
                                                               edge_attr=single.edge_attr.float())).x[0],
                                   atol=1e-5, rtol=1e-5)


def test_knn_gine_is_gine_over_the_knn_graph_with_relative_positions():
    """KnnGINE = GINE on knn_edges(pos) with pos_j - pos_i as edge features; padding inert."""
    from glocal.core.mpnn import KnnGINE

    gen = torch.Generator().manual_seed(0)
    layer = KnnGINE(8, k=3).double()
    x = torch.randn(2, 12, 8, generator=gen, dtype=torch.float64)
    pos = torch.randn(2, 12, 3, generator=gen, dtype=torch.float64)
    mask = torch.ones(2, 12, dtype=torch.bool)
    mask[1, 9:] = False
    tokens = Tokens(x, mask=mask, pos=pos)
    ei = knn_edges(pos, 3, mask)
    flat = pos.reshape(-1, 3)
    ref = gine_reference(layer.conv, x, tokens.replace(edge_index=ei, edge_attr=flat[ei[0]] - flat[ei[1]]))
    out = layer(x, tokens)
    torch.testing.assert_close(out[mask], ref[mask])  # the dense reference leaves padded rows unzeroed
    # padding inert: what sits in padded slots changes nothing
    x2, pos2 = x.clone(), pos.clone()
    x2[1, 9:] = 1e3
    pos2[1, 9:] = 0.0  # padded points on top of valid ones
    out2 = layer(x2, Tokens(x2, mask=mask, pos=pos2))
    torch.testing.assert_close(out2[mask], out[mask])
    assert (out2[~mask] == 0).all()
    out.sum().backward()
    assert all(p.grad is not None for p in layer.parameters())

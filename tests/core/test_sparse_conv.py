"""Submanifold sparse convolution against dense ``F.conv3d`` on the voxelised grid (outputs and
gradients, float64), its padded / packed forms and rulebook cache; grid pooling and unpooling."""
import pytest
import torch

from glocal.core import Backbone, ClusterUndo, Tokens
from glocal.core.errors import InputError
from glocal.core.grid_pool import GridPooling, GridUnpooling
from glocal.core.serialize import serialize_tokens, voxelize
from glocal.core.sparse_conv import (XCPE, SubMConv3d, build_rulebook, offsets, rulebook_for, submconv3d,
                                     submconv3d_reference)


def _points(lengths, L, C=5, side=6.0, grid=1.0, seed=0, dtype=torch.float64):
    """A padded batch of clouds in a ``side`` cube, voxel ``grid``: some voxels hold several points."""
    gen = torch.Generator().manual_seed(seed)
    mask = torch.arange(L)[None] < torch.tensor(lengths)[:, None]
    pos = torch.rand(len(lengths), L, 3, generator=gen, dtype=dtype) * side
    x = torch.randn(len(lengths), L, C, generator=gen, dtype=dtype)
    return Tokens(x, mask=mask, pos=pos), grid


def _reference(conv, tokens, grid):
    """The dense reference on the valid tokens of a padded batch: ``[B, L, out]``, padding zero."""
    B, L = tokens.mask.shape
    voxel = voxelize(tokens.pos, tokens.mask, grid)
    index = tokens.valid_index()
    out = submconv3d_reference(tokens.pack(tokens.x), voxel.reshape(-1, 3)[index], index // L, conv.weight, conv.bias)
    return tokens.unpack(out)


@pytest.mark.parametrize("kernel,bias,side,shared", [(3, True, 6.0, True), (5, False, 6.0, True),
                                                     (3, True, 40.0, False), (1, True, 4.0, True)])
def test_matches_dense_conv3d_float64(kernel, bias, side, shared):
    """side 6 with 80 points per cloud: voxels shared by several points (one site each, their
    mean); side 40: every voxel holds one point (the rows are the tokens themselves)."""
    tokens, grid = _points([80, 55], 80, side=side)
    conv = SubMConv3d(5, 7, kernel, bias=bias, grid_size=grid).double()
    rb = rulebook_for(tokens, voxelize(tokens.pos, tokens.mask, grid), kernel)
    assert (rb.inverse is not None) == shared
    x = tokens.x.clone().requires_grad_()
    tokens = tokens.replace(x=x)
    out = conv(x, tokens)
    ref = _reference(conv, tokens, grid)
    assert out.dtype == torch.float64 and (out[~tokens.mask] == 0).all()
    assert torch.allclose(out, ref, rtol=0, atol=1e-12)
    g = torch.randn_like(out)
    params = [x, conv.weight] + ([conv.bias] if bias else [])
    fast = torch.autograd.grad((out * g).sum(), params)
    slow = torch.autograd.grad((ref * g).sum(), params)
    for a, b in zip(fast, slow):
        assert torch.allclose(a, b, rtol=0, atol=1e-11)
    assert (fast[0][~tokens.mask] == 0).all()


def test_float32_and_packed_points_agree_with_the_padded_batch():
    tokens, grid = _points([60, 41], 64, dtype=torch.float32)
    conv = SubMConv3d(5, 6, 3, grid_size=grid)
    out = conv(tokens.x, tokens)
    ref = _reference(conv, tokens, grid)
    assert torch.allclose(out, ref, rtol=1e-5, atol=1e-5)
    voxel = voxelize(tokens.pos, tokens.mask, grid)
    index = tokens.valid_index()
    packed = conv.packed(tokens.pack(tokens.x), voxel.reshape(-1, 3)[index], index // 64)
    assert torch.allclose(packed, tokens.pack(out), rtol=0, atol=1e-6)


def test_padding_is_inert_and_a_sample_alone_gives_the_same_outputs():
    tokens, grid = _points([50, 30], 56)
    conv = SubMConv3d(5, 4, 3, grid_size=grid).double()
    base = conv(tokens.x, tokens)
    x2, pos2 = tokens.x.clone(), tokens.pos.clone()
    x2[~tokens.mask] = 1e3
    pos2[~tokens.mask] = -50.0
    other = conv(x2, tokens.replace(x=x2, pos=pos2))
    assert torch.equal(other[tokens.mask], base[tokens.mask])
    alone = Tokens(tokens.x[1:, :30], pos=tokens.pos[1:, :30])
    assert torch.allclose(conv(alone.x, alone)[0], base[1, :30], rtol=0, atol=1e-12)


def test_rulebook_pairs_cache_and_centre():
    tokens, grid = _points([70, 70], 70, side=8.0, dtype=torch.float32)
    voxel = voxelize(tokens.pos, tokens.mask, grid)
    rb = rulebook_for(tokens, voxel, 3)
    assert rulebook_for(tokens.replace(x=tokens.x * 2), voxel, 3) is rb  # shared by blocks of a stage
    assert rulebook_for(tokens, voxel, 5) is not rb
    offs = offsets(3)
    assert rb.pairs[13] is None and torch.equal(offs[13], torch.zeros(3, dtype=torch.long))
    for o in range(27):  # pairs of offset d are those of -d reversed
        if o == 13:
            continue
        back = (offs == -offs[o]).all(1).nonzero().item()
        fwd = set(zip(*[t.tolist() for t in rb.pairs[o]]))
        assert fwd == set(zip(*[t.tolist() for t in reversed(rb.pairs[back])]))
    assert rb.n_pairs == rb.n_rows + sum(p[0].numel() for p in rb.pairs if p is not None)


def test_rulebook_never_links_samples_or_out_of_range_voxels():
    v = torch.tensor([[0, 0, 0], [1, 0, 0], [0, 0, 0], [65535, 0, 0]])
    rb = build_rulebook(v, torch.tensor([0, 0, 1, 1]), 3)
    linked = {(int(a), int(b)) for p in rb.pairs if p is not None for a, b in zip(*p)}
    assert linked == {(0, 1), (1, 0)}
    with pytest.raises(InputError, match="odd"):
        build_rulebook(v, None, 2)
    with pytest.raises(InputError, match="lie in"):
        build_rulebook(v + 1, None, 3)
    x = torch.randn(4, 2, dtype=torch.float64)
    w = torch.randn(27, 2, 3, dtype=torch.float64)
    assert torch.allclose(submconv3d(x, rb, w), submconv3d_reference(x, v, torch.tensor([0, 0, 1, 1]), w))


def test_xcpe_is_conv_linear_layernorm():
    tokens, grid = _points([40, 30], 40, dtype=torch.float32)
    cpe = XCPE(5, grid_size=grid)
    out = cpe(tokens.x, tokens)
    h = cpe.conv(tokens.x, tokens)
    ref = torch.nn.functional.layer_norm(cpe.linear(h), (5,), cpe.norm.norm.weight, cpe.norm.norm.bias)
    assert torch.allclose(out[tokens.mask], ref[tokens.mask], atol=1e-6) and (out[~tokens.mask] == 0).all()


# --- grid pooling ------------------------------------------------------------------------------------

def test_grid_pooling_merges_each_coarse_voxel():
    tokens, grid = _points([90, 60], 96, side=8.0, dtype=torch.float64)
    pool = GridPooling(5, 6, stride=2, grid_size=grid).double().eval()
    coarse, undo = pool(tokens)
    assert isinstance(undo, ClusterUndo) and undo.fine is tokens
    voxel = voxelize(tokens.pos, tokens.mask, grid) // 2
    h = pool.proj(tokens.x)
    for b in range(2):
        n = int(tokens.mask[b].sum())
        groups = {}
        for i in range(n):
            groups.setdefault(tuple(voxel[b, i].tolist()), []).append(i)
        assert int(coarse.mask[b].sum()) == len(groups)
        for key, members in groups.items():
            c = int(undo.cluster[b, members[0]])
            assert all(int(undo.cluster[b, i]) == c for i in members)
            assert coarse.mask[b, c] and coarse.extras["voxel"][b, c].tolist() == list(key)
            expect = pool.act(pool.norm(h[b, members].amax(0, keepdim=True)))[0]
            assert torch.allclose(coarse.x[b, c], expect, atol=1e-12)
            assert torch.allclose(coarse.pos[b, c], tokens.pos[b, members].mean(0), atol=1e-12)
    assert (coarse.x[~coarse.mask] == 0).all()
    assert len(coarse.extras["orders"]) == 4 and coarse.order is coarse.extras["orders"][0]
    up = undo.up(coarse.x)
    assert torch.equal(up[0, 0], coarse.x[0, undo.cluster[0, 0]]) and (up[~tokens.mask] == 0).all()


def test_grid_pooling_mean_padding_inert_and_unpooling():
    tokens, grid = _points([70, 33], 72, side=8.0, dtype=torch.float64)
    pool = GridPooling(5, 8, reduce="mean", grid_size=grid).double()
    coarse, undo = pool(tokens)
    x2, pos2 = tokens.x.clone(), tokens.pos.clone()
    x2[~tokens.mask], pos2[~tokens.mask] = 1e3, -1e3
    coarse2, undo2 = pool(tokens.replace(x=x2, pos=pos2))  # train mode: BatchNorm over valid tokens
    assert torch.equal(coarse2.mask, coarse.mask) and torch.allclose(coarse2.x, coarse.x, atol=1e-12)
    unpool = GridUnpooling(8, 5, 4).double()
    fine = unpool(coarse, undo)
    assert fine.x.shape == (2, 72, 4) and fine.mask is tokens.mask and fine.pos is tokens.pos
    fine.x[tokens.mask].sum().backward()
    assert all(p.grad is not None for p in unpool.parameters()) and all(p.grad is not None for p in pool.parameters())


def test_grid_pooling_is_a_downsampler_of_the_generic_backbone():
    """Backbone + GridPooling + PointBlock: a PTv3-like encoder from registry configs alone."""
    tokens, grid = _points([120, 80], 120, side=8.0, dtype=torch.float32)
    tokens = serialize_tokens(tokens, grid_size=grid)
    block = dict(type="PointBlock", local=dict(type="SerializedAttention", heads=2, patch=16))
    bb = Backbone(8, [dict(dim=8, depth=1, blocks=block),
                      dict(dim=16, depth=2, blocks=[dict(block, order_index=0), dict(block, order_index=1)])],
                  downsample=dict(type="GridPooling"), out_norm=None)
    tokens = tokens.replace(x=torch.randn(2, 120, 8))
    out = bb(tokens)
    assert [s.dim for s in out.stages] == [8, 16] and isinstance(out.undo[1], ClusterUndo)
    assert out.undo[1].up(out.last.x).shape == (2, 120, 16)
    assert torch.isfinite(out.last.x).all()

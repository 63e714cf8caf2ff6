"""Grid attention (MaxViT): strided groups, the module against a dense masked reference built from
coordinates (outputs and gradients, 1D/2D/3D, odd sizes, masks), and the mixer's contract."""
import math

import pytest
import torch

from glocal.core import InputError, MissingStructureError, Tokens, WindowAttention
from glocal.core.grid import GridAttention, grid_attention_ref, grid_partition, grid_reverse
from glocal.core.registry import MIXERS


def test_grid_partition_groups_are_strided():
    H, W, G = 6, 8, (3, 2)
    cells = torch.arange(H * W).view(1, H, W, 1)
    parts = grid_partition(cells, G)  # [n_groups, 6, 1]
    assert parts.shape == (H // 3 * W // 2, 6, 1)
    sh, sw = H // G[0], W // G[1]  # strides
    for group in parts[..., 0].tolist():
        rows, cols = {c // W for c in group}, {c % W for c in group}
        assert len({r % sh for r in rows}) == 1 and len({c % sw for c in cols}) == 1  # one (i mod, j mod)
        # in-group order is row-major over the position i // stride
        assert group == sorted(group, key=lambda c: ((c // W) // sh, (c % W) // sw))
    assert torch.equal(grid_reverse(parts, G, (H, W)), cells)


def _module(grid, G, dtype=torch.float64, heads=2):
    m = GridAttention(8, heads=heads, grid=G, rank=len(grid)).to(dtype)
    torch.nn.init.normal_(m.rel_pos_table, std=0.5)
    return m


def _ref(m, x, grid, mask):
    B, L, C = x.shape
    q, k, v = m.qkv(x).view(B, L, 3, m.heads, C // m.heads).permute(2, 0, 3, 1, 4)
    o = grid_attention_ref(q, k, v, grid, m.window, m.rel_pos_table, mask)
    return m.proj(o.transpose(1, 2).reshape(B, L, C))


CASES = [((8,), 4), ((12, 8), 4), ((9, 10), 4), ((3, 10), 4), ((14, 14), 7), ((4, 6, 6), (2, 3, 3)),
         ((5, 7, 6), 3)]


@pytest.mark.parametrize("grid,G", CASES)
@pytest.mark.parametrize("masked", [False, True])
def test_grid_attention_matches_dense_reference(grid, G, masked):
    m = _module(grid, G)
    L = math.prod(grid)
    x = torch.randn(2, L, 8, dtype=torch.float64, requires_grad=True)
    mask = None
    if masked:
        mask = torch.rand(2, L) > 0.4
        mask[:, 0] = True
    out = m(x, Tokens(x, mask=mask, grid=grid))
    ref = _ref(m, x, grid, mask)
    valid = torch.ones(2, L, dtype=torch.bool) if mask is None else mask
    assert torch.isfinite(out).all()
    assert (out - ref)[valid].abs().max() <= 1e-6
    params = [x, m.rel_pos_table, m.qkv.weight, m.proj.weight]
    g = torch.autograd.grad((out[valid] ** 2).sum(), params)
    gr = torch.autograd.grad((ref[valid] ** 2).sum(), params)
    for a, b in zip(g, gr):
        assert (a - b).abs().max() <= 1e-6


def test_float32_close_to_float64():
    m = _module((14, 21), 7, heads=4)
    x = torch.randn(2, 14 * 21, 8, dtype=torch.float64)
    t = Tokens(x, grid=(14, 21))
    want = m(x, t)
    got = m.float()(x.float(), Tokens(x.float(), grid=(14, 21)))
    assert (got.double() - want).abs().max() <= 1e-5


def test_one_group_is_window_attention_and_unit_groups_see_only_themselves():
    g = GridAttention(8, heads=2, grid=4).double()
    w = WindowAttention(8, heads=2, window=4).double()
    w.load_state_dict(g.state_dict())
    x = torch.randn(2, 16, 8, dtype=torch.float64)
    t = Tokens(x, grid=(4, 4))
    assert (g(x, t) - w(x, t)).abs().max() < 1e-12  # G = side: one group holding everything
    one = GridAttention(8, heads=2, grid=1).double()
    B, L, C = x.shape
    v = one.qkv(x)[..., 2 * C:]  # each token alone: the output is proj(v)
    assert (one(x, t) - one.proj(v)).abs().max() < 1e-12


def test_grid_and_window_attention_differ():
    g = GridAttention(8, heads=2, grid=3).double()
    w = WindowAttention(8, heads=2, window=3).double()
    w.load_state_dict(g.state_dict())
    x = torch.randn(1, 36, 8, dtype=torch.float64)
    t = Tokens(x, grid=(6, 6))
    assert not torch.allclose(g(x, t), w(x, t))


@pytest.mark.parametrize("grid", [(9, 10), (5, 6, 7)])
def test_padding_is_inert(grid):
    m = _module(grid, 3)
    L = math.prod(grid)
    x = torch.randn(3, L, 8, dtype=torch.float64)
    mask = torch.ones(3, L, dtype=torch.bool)
    mask[1, L // 2:] = False
    mask[2, 1::2] = False
    t = Tokens(x, mask=mask, grid=grid)
    out = m(x, t)
    x2 = torch.where(mask[..., None], x, torch.randn_like(x) * 100).requires_grad_()
    out2 = m(x2, t.replace(x=x2))
    assert torch.isfinite(out2).all()
    assert (out2 - out)[mask].abs().max() <= 1e-10
    gx, = torch.autograd.grad(out2[mask].sum(), x2)
    assert gx[~mask].abs().max() == 0
    empty = mask.clone()
    empty[0] = False  # a fully padded sample stays finite
    assert torch.isfinite(m(x, t.replace(mask=empty))).all()


def test_every_parameter_gets_a_gradient_and_matters():
    m = GridAttention(8, heads=2, grid=3)
    x = torch.randn(2, 36, 8)
    t = Tokens(x, grid=(6, 6))
    out = m(x, t)
    out.square().mean().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    with torch.no_grad():
        for p in (m.qkv.weight, m.proj.weight, m.rel_pos_table):
            saved = p.clone()
            p.add_(torch.randn_like(p))
            assert not torch.allclose(m(x, t), out)
            p.copy_(saved)


def test_errors_registry_and_macs():
    m = GridAttention(8, heads=2, grid=4)
    x = torch.randn(1, 48, 8)
    with pytest.raises(MissingStructureError, match="GridAttention needs Tokens.grid"):
        m(x, Tokens(x))
    with pytest.raises(InputError, match="rank-2"):
        m(x, Tokens(x, grid=(48,)))
    built = MIXERS.build(dict(type="GridAttention", heads=2, grid=7), dim=8)
    assert isinstance(built, GridAttention) and built.groups == (7, 7)
    # (6, 8) pads to (8, 8): 4 groups of 16 tokens; q k^T + attn v
    assert m.extra_macs(x, Tokens(x, grid=(6, 8))) == 2 * 1 * 64 * 16 * 8

"""Full and window attention against dense references (float64 exact, float32 close, gradients)."""
import math

import pytest
import torch

from glocal.core import FullAttention, InputError, MissingStructureError, Tokens, WindowAttention
from glocal.core.attention import biased_attention, dense_attention, relative_position_index
from glocal.core.gridops import (window_partition, window_partition_heads, window_reverse,
                                window_reverse_heads)


def full_ref(m: FullAttention, x, mask):
    B, L, C = x.shape
    q, k, v = m.qkv(x).view(B, L, 3, m.heads, C // m.heads).permute(2, 0, 3, 1, 4)
    keep = None if mask is None else mask[:, None, None, :]
    o = dense_attention(q, k, v, keep)
    return m.proj(o.transpose(1, 2).reshape(B, L, C))


def window_ref(m: WindowAttention, x, grid, mask):
    """Dense attention over the whole grid; a pair may attend iff it lies in the same window of the
    partition with boundaries at shift + k * window (Swin's shifted windows, written in original
    coordinates), and the key is valid. Bias from the table by relative offset."""
    B, L, C = x.shape
    coords = torch.stack(torch.meshgrid(*[torch.arange(g) for g in grid], indexing="ij")).flatten(1)  # [r, L]
    same = torch.ones(L, L, dtype=torch.bool)
    for d, (g, w, s) in enumerate(zip(grid, m.window, m.shift)):
        w_eff, s_eff = min(w, g), (0 if g <= w else s)
        group = torch.div(coords[d] - s_eff, w_eff, rounding_mode="floor")
        same &= group[:, None] == group[None, :]
    rel = coords[:, :, None] - coords[:, None, :]  # [r, L, L]
    idx = torch.zeros(L, L, dtype=torch.long)
    for d, tw in enumerate(m.window):
        idx = idx * (2 * tw - 1) + rel[d] + tw - 1
    idx = idx.clamp(0, m.rel_pos_table.shape[0] - 1)  # pairs outside a window are masked anyway
    bias = m.rel_pos_table[idx.view(-1)].view(L, L, -1).permute(2, 0, 1)
    keep = same[None, None].expand(B, 1, L, L)
    if mask is not None:
        keep = keep & mask[:, None, None, :]
    q, k, v = m.qkv(x).view(B, L, 3, m.heads, C // m.heads).permute(2, 0, 3, 1, 4)
    o = dense_attention(q, k, v, keep, bias)
    return m.proj(o.transpose(1, 2).reshape(B, L, C))


def _mask(B, L, keep_first):
    mask = torch.ones(B, L, dtype=torch.bool)
    mask[0, keep_first:] = False
    return mask


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-6), (torch.float32, 1e-4)])
@pytest.mark.parametrize("masked", [False, True])
def test_full_attention_matches_reference(dtype, tol, masked):
    m = FullAttention(16, heads=4).to(dtype)
    x = torch.randn(2, 11, 16, dtype=dtype, requires_grad=True)
    mask = _mask(2, 11, 6) if masked else None
    out = m(x, Tokens(x, mask=mask))
    ref = full_ref(m, x, mask)
    valid = torch.ones(2, 11, dtype=torch.bool) if mask is None else mask
    assert (out - ref)[valid].abs().max() <= tol
    g, = torch.autograd.grad((out[valid] ** 2).sum(), x)
    gr, = torch.autograd.grad((ref[valid] ** 2).sum(), x)
    assert (g - gr).abs().max() <= tol * 10


CASES = [  # grid, window, shift
    ((8, 8), 4, 0), ((8, 8), 4, 2), ((9, 10), 4, 2), ((7, 5), (3, 2), (1, 1)), ((3, 3), 7, 3),
    ((13,), 4, 2), ((4, 6, 5), (2, 3, 2), (1, 1, 1)),
]


@pytest.mark.parametrize("grid,window,shift", CASES)
@pytest.mark.parametrize("masked", [False, True])
def test_window_attention_matches_dense_reference(grid, window, shift, masked):
    dtype = torch.float64
    m = WindowAttention(12, heads=3, window=window, shift=shift, rank=len(grid)).to(dtype)
    torch.nn.init.normal_(m.rel_pos_table, std=0.5)
    L = math.prod(grid)
    x = torch.randn(2, L, 12, dtype=dtype, requires_grad=True)
    mask = _mask(2, L, L // 2) if masked else None
    out = m(x, Tokens(x, mask=mask, grid=grid))
    ref = window_ref(m, x, grid, mask)
    valid = torch.ones(2, L, dtype=torch.bool) if mask is None else mask
    assert torch.isfinite(out).all()
    assert (out - ref)[valid].abs().max() <= 1e-6
    params = [x, m.rel_pos_table, m.qkv.weight]
    g = torch.autograd.grad((out[valid] ** 2).sum(), params)
    gr = torch.autograd.grad((ref[valid] ** 2).sum(), params)
    for a, b in zip(g, gr):
        assert (a - b).abs().max() <= 1e-6


def test_window_attention_float32_close():
    m = WindowAttention(32, heads=4, window=7, shift=3)
    x = torch.randn(2, 14 * 14, 32)
    out = m(x, Tokens(x, grid=(14, 14)))
    ref = window_ref(m, x, (14, 14), None)
    assert (out - ref).abs().max() <= 1e-4


@pytest.mark.parametrize("shift", [0, 2])
def test_window_padding_is_inert(shift):
    """Valid outputs do not depend on padded content, and equal running the valid part alone."""
    m = WindowAttention(8, heads=2, window=4, shift=shift).double()
    grid = (8, 8)
    x = torch.randn(1, 64, 8, dtype=torch.float64)
    mask = torch.zeros(8, 8, dtype=torch.bool)
    mask[:6, :5] = True  # a 6x5 image padded to 8x8
    mask = mask.view(1, 64)
    out1 = m(x, Tokens(x, mask=mask, grid=grid))
    x2 = x.clone()
    x2[~mask] = 1e3 * torch.randn(int((~mask).sum()), 8, dtype=torch.float64)
    out2 = m(x2, Tokens(x2, mask=mask, grid=grid))
    assert torch.isfinite(out1).all() and torch.isfinite(out2).all()
    assert torch.equal(out1[mask], out2[mask])
    alone = m(x.view(1, 8, 8, 8)[:, :6, :5].reshape(1, 30, 8), Tokens(torch.zeros(1, 30, 8), grid=(6, 5)))
    if shift == 0:  # unshifted windows do not depend on where the grid ends
        assert (out1[mask] - alone.view(30, 8)).abs().max() < 1e-10


def test_relative_position_index_range():
    idx = relative_position_index((3, 4), (7, 7))
    assert idx.shape == (12, 12) and idx.min() >= 0 and idx.max() < 13 * 13
    assert len(set(idx.diagonal().tolist())) == 1  # zero offset maps to one row


def test_window_attention_errors():
    m = WindowAttention(8, heads=2, window=4)
    x = torch.randn(1, 16, 8)
    with pytest.raises(MissingStructureError, match="WindowAttention needs Tokens.grid"):
        m(x, Tokens(x))
    with pytest.raises(InputError, match="rank-2"):
        m(x, Tokens(x, grid=(16,)))


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_biased_attention_paths_match_reference(dtype, tol):
    """The written-out path (a bias that needs a gradient, on CPU) and SDPA (a bias that does not)
    against the dense reference: outputs and gradients, with masked (-inf) keys."""
    q, k, v = (torch.randn(3, 2, 9, 4, dtype=dtype, requires_grad=True) for _ in range(3))
    table = torch.randn(2, 9, 9, dtype=dtype, requires_grad=True)
    keep = torch.rand(3, 1, 9, 9) > 0.3
    keep[..., 0] = True  # every query keeps a key
    bias = table.unsqueeze(0).masked_fill(~keep, float("-inf"))  # [3, 2, 9, 9]
    out = biased_attention(torch.stack([q, k, v]), bias)
    ref = dense_attention(q, k, v, keep, table.unsqueeze(0))
    assert (out - ref).abs().max() <= tol
    with torch.no_grad():  # SDPA
        assert (biased_attention(torch.stack([q, k, v]), bias) - ref).abs().max() <= tol
    inputs = (q, k, v, table)
    g = torch.autograd.grad((out ** 2).sum(), inputs)
    gr = torch.autograd.grad((ref ** 2).sum(), inputs)
    for a, b in zip(g, gr):
        assert (a - b).abs().max() <= 10 * tol


def test_biased_attention_backward_gradcheck():
    qkv = torch.randn(3, 2, 2, 5, 3, dtype=torch.float64, requires_grad=True)
    table = torch.randn(1, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    keep = torch.rand(2, 1, 5, 5) > 0.3
    keep[..., 0] = True
    assert torch.autograd.gradcheck(lambda a, b: biased_attention(a, b.masked_fill(~keep, float("-inf"))),
                                    (qkv, table))


@pytest.mark.parametrize("grid,window", [((8, 6), (4, 3)), ((6,), (3,)), ((4, 6, 2), (2, 3, 2))])
def test_window_partition_heads_is_partition_then_head_split(grid, window):
    B, parts, heads, d = 2, 3, 2, 5
    x = torch.randn(B, *grid, parts * heads * d)
    got = window_partition_heads(x, window, parts, heads)  # [parts, B * nW, h, N, d]
    win = window_partition(x, window)  # [B * nW, N, parts * h * d]
    want = win.view(*win.shape[:2], parts, heads, d).permute(2, 0, 3, 1, 4)
    assert got.is_contiguous() and torch.equal(got, want)
    o = got[1]  # [B * nW, h, N, d]
    back = window_reverse(o.transpose(1, 2).reshape(*win.shape[:2], heads * d), window, grid)
    assert torch.equal(window_reverse_heads(o, window, grid), back)

"""Neighbourhood attention (NAT / DiNAT): the reference against NATTEN's window rules and a dense
masked attention, both fast paths (the PyTorch tiles, and the compiled kernel wherever a C compiler
is present) against the reference (outputs and gradients, float64 and float32, 1D/2D/3D,
dilation, odd sizes, masks), and the mixer's contract."""
import itertools
import math
import os
import shutil

import pytest
import torch

from glocal.core import InputError, MissingStructureError, Tokens, WindowAttention
from glocal.core.attention import dense_attention
from glocal.core.neighborhood import (NeighborhoodAttention, effective_dilation, neighborhood_attention,
                                      neighborhood_attention_ref, neighborhood_indices)
from glocal.core.registry import MIXERS

# with a C compiler on the machine the kernel must build: a failed build fails its tests, it is not skipped
HAS_CC = bool(os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc"))
BACKENDS = ["torch", "kernel"] if HAS_CC else ["torch"]


# --- NATTEN's rules, written out independently (window start and bias start per position) ---------

def natten_start(i: int, n: int, k: int, d: int) -> int:
    nb = k // 2
    if d <= 1:
        return max(i - nb, 0) + (i + nb >= n) * (n - i - nb - 1)
    if i - nb * d < 0:
        return i % d
    if i + nb * d >= n:
        a = (n // d) * d
        b = n - a
        return n - b + i % d - 2 * nb * d if i % d < b else a + i % d - k * d
    return i - nb * d


def natten_bias_start(i: int, n: int, k: int, d: int) -> int:
    nb = k // 2
    if d <= 1:
        return nb + (i < nb) * (nb - i) + (i + nb >= n) * (n - i - 1 - nb)
    if i - nb * d < 0:
        return k - 1 - i // d
    if i + nb * d >= n:
        return (n - i - 1) // d
    return nb


@pytest.mark.parametrize("n,k,d", [(7, 7, 1), (12, 3, 1), (13, 5, 1), (20, 5, 3), (21, 7, 3), (24, 3, 8),
                                   (17, 3, 4), (56, 7, 8), (29, 5, 5)])
def test_neighbours_follow_natten(n, k, d):
    idx, rel, ok = neighborhood_indices((n,), (k,), (d,))
    assert ok.all()
    for i in range(n):
        s = natten_start(i, n, k, d)
        assert idx[i].tolist() == [s + m * d for m in range(k)], (i, idx[i].tolist(), s)
        b = natten_bias_start(i, n, k, d)
        assert rel[i].tolist() == [b + m for m in range(k)]


def test_neighbours_2d_are_the_product_of_the_dims():
    grid, k, d = (9, 14), (3, 5), (2, 2)
    idx, rel, ok = neighborhood_indices(grid, k, d)
    for i, j in itertools.product(range(grid[0]), range(grid[1])):
        rows = [natten_start(i, grid[0], k[0], d[0]) + m * d[0] for m in range(k[0])]
        cols = [natten_start(j, grid[1], k[1], d[1]) + m * d[1] for m in range(k[1])]
        assert idx[i * grid[1] + j].tolist() == [r * grid[1] + c for r in rows for c in cols]
        brow = natten_bias_start(i, grid[0], k[0], d[0])
        bcol = natten_bias_start(j, grid[1], k[1], d[1])
        assert rel[i * grid[1] + j].tolist() == [(brow + a) * (2 * k[1] - 1) + bcol + b
                                                 for a in range(k[0]) for b in range(k[1])]


def test_small_grids_reduce_dilation_and_shrink_windows():
    assert effective_dilation(56, 7, 8) == 8 and effective_dilation(28, 7, 8) == 4
    assert effective_dilation(6, 7, 2) == 1
    idx, rel, ok = neighborhood_indices((4,), (7,), (3,))  # shorter than the kernel: whole dim
    assert ok.sum(1).tolist() == [4] * 4
    for i in range(4):
        assert sorted(idx[i][ok[i]].tolist()) == [0, 1, 2, 3]
        assert (rel[i][ok[i]] - 6).tolist() == [j - i for j in range(4)]


def _inputs(B, h, L, d, R, dtype, masked, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(B, h, L, d, generator=g, dtype=dtype, requires_grad=True) for _ in range(3))
    bias = (torch.randn(h, R, generator=g, dtype=dtype) * 0.5).requires_grad_()
    mask = None
    if masked:
        mask = torch.rand(B, L, generator=g) > 0.35
        mask[:, 0] = True
    return q, k, v, bias, mask


def test_reference_matches_dense_masked_attention():
    grid, kern, dil = (6, 7), (3, 5), (2, 1)
    L, R = 42, 5 * 9
    q, k, v, bias, mask = _inputs(2, 2, L, 4, R, torch.float64, masked=True)
    idx, rel, ok = neighborhood_indices(grid, kern, dil)
    allowed = torch.zeros(L, L, dtype=torch.bool)
    allowed[torch.arange(L)[:, None].expand_as(idx)[ok], idx[ok]] = True
    dense_bias = torch.zeros(2, L, L, dtype=torch.float64)
    dense_bias[:, torch.arange(L)[:, None].expand_as(idx), idx] = bias[:, rel].detach()
    keep = allowed & mask[:, None, :]
    keep = torch.where(keep.any(-1, keepdim=True), keep, allowed)
    want = dense_attention(q, k, v, keep[:, None], dense_bias[None])
    got = neighborhood_attention_ref(q, k, v, grid, kern, dil, bias.detach(), mask)
    assert (got - want).abs().max() < 1e-12


CASES = [  # grid, kernel, dilation, tile
    ((23,), 5, 1, None), ((40,), 7, 3, None), ((30,), 3, 4, 2),
    ((9, 11), 3, 2, None), ((7, 13), 5, 1, (3, 4)), ((12, 10), 5, 2, None), ((16, 16), 7, 2, None),
    ((4, 9), 7, 1, None), ((14, 15), (3, 5), (4, 2), (2, 5)),
    ((5, 6, 7), 3, (1, 2, 1), None), ((4, 7, 6), (3, 5, 3), 1, (2, 3, 2)),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("grid,kernel,dilation,tile", CASES)
@pytest.mark.parametrize("masked", [False, True])
def test_fast_path_matches_reference_float64(grid, kernel, dilation, tile, masked, backend):
    r = len(grid)
    kern = (kernel,) * r if isinstance(kernel, int) else kernel
    L, R = math.prod(grid), math.prod(2 * k - 1 for k in kern)
    q, k, v, bias, mask = _inputs(2, 2, L, 4, R, torch.float64, masked)
    ref = neighborhood_attention_ref(q, k, v, grid, kernel, dilation, bias, mask)
    # a tiny block forces many blocks (tiles and samples split; the kernel ignores it)
    for block in (1 << 20, 300):
        out = neighborhood_attention(q, k, v, grid, kernel, dilation, bias, mask, tile=tile, block=block,
                                     backend=backend)
        assert torch.isfinite(out).all()
        assert (out - ref).abs().max() <= 1e-6  # padded queries too: same fallback rule
        go = torch.randn_like(out)
        g = torch.autograd.grad(out, (q, k, v, bias), go)
        gr = torch.autograd.grad(ref, (q, k, v, bias), go, retain_graph=True)
        for a, b in zip(g, gr):
            assert (a - b).abs().max() <= 1e-6


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("grid,kernel,dilation", [((31,), 7, 2), ((13, 17), 7, 2), ((5, 6, 9), 3, (1, 1, 2))])
def test_fast_path_matches_reference_float32(grid, kernel, dilation, backend):
    r = len(grid)
    L, R = math.prod(grid), (2 * kernel - 1) ** r
    q, k, v, bias, mask = _inputs(2, 3, L, 8, R, torch.float32, masked=True)
    out = neighborhood_attention(q, k, v, grid, kernel, dilation, bias, mask, backend=backend)
    ref = neighborhood_attention_ref(q, k, v, grid, kernel, dilation, bias, mask)
    assert (out - ref).abs().max() <= 1e-5
    go = torch.randn_like(out)
    for a, b in zip(torch.autograd.grad(out, (q, k, v, bias), go),
                    torch.autograd.grad(ref, (q, k, v, bias), go)):
        assert (a - b).abs().max() <= 1e-4


@pytest.mark.parametrize("backend", BACKENDS)
def test_fast_path_gradcheck(backend):
    grid = (3, 6)
    q, k, v, bias, mask = _inputs(1, 1, 18, 2, 25, torch.float64, masked=True)

    def f(q, k, v, bias):
        return neighborhood_attention(q, k, v, grid, 3, (1, 2), bias, mask, tile=2, block=40, backend=backend)

    assert torch.autograd.gradcheck(f, (q, k, v, bias))


@pytest.mark.parametrize("backend", BACKENDS)
def test_fast_path_is_memory_bounded(backend):
    """A 1D sequence of 2^15 tokens: a dense L x L mask alone would be 4 GiB."""
    L = 1 << 15
    q, k, v = (torch.randn(1, 1, L, 4, requires_grad=True) for _ in range(3))
    out = neighborhood_attention(q, k, v, (L,), 7, 1, backend=backend)
    out.sum().backward()
    assert out.shape == (1, 1, L, 4) and torch.isfinite(q.grad).all()


def test_kernel_covering_the_grid_is_window_attention():
    """NA with a kernel >= the grid is one window: it must equal WindowAttention over the grid
    with the same bias (WindowAttention's table is indexed by query - key, NA's by key - query)."""
    torch.manual_seed(1)
    na = NeighborhoodAttention(12, heads=3, kernel=5).double()
    wa = WindowAttention(12, heads=3, window=5).double()
    wa.load_state_dict({"qkv.weight": na.qkv.weight, "qkv.bias": na.qkv.bias, "proj.weight": na.proj.weight,
                        "proj.bias": na.proj.bias, "rel_pos_table": na.rel_pos_bias.detach().T.flip(0)})
    for grid in [(5, 5), (4, 3)]:
        x = torch.randn(2, math.prod(grid), 12, dtype=torch.float64)
        t = Tokens(x, grid=grid)
        assert (na(x, t) - wa(x, t)).abs().max() < 1e-12


def _module_and_tokens(grid, dilation=1, masked=True, dtype=torch.float64):
    m = NeighborhoodAttention(16, heads=2, kernel=3, dilation=dilation, rank=len(grid)).to(dtype)
    L = math.prod(grid)
    x = torch.randn(3, L, 16, dtype=dtype)
    mask = None
    if masked:
        mask = torch.ones(3, L, dtype=torch.bool)
        mask[1, L // 2:] = False  # a ragged sample
        mask[2, ::3] = False  # scattered holes
    return m, x, Tokens(x, mask=mask, grid=grid)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("grid,dilation", [((11,), 2), ((6, 7), 1), ((6, 9), 2), ((3, 4, 5), 1)])
def test_module_matches_reference_and_padding_is_inert(grid, dilation, backend):
    m, x, t = _module_and_tokens(grid, dilation)
    m.backend = backend
    out = m(x, t)
    assert torch.isfinite(out).all()
    assert (out - m(x, t, reference=True))[t.mask].abs().max() <= 1e-6
    # changing what sits in the padding changes no valid output, and sends it no gradient
    x2 = torch.where(t.mask[..., None], x, torch.randn_like(x) * 100).requires_grad_()
    out2 = m(x2, t.replace(x=x2))
    assert (out2 - out)[t.mask].abs().max() <= 1e-10
    g, = torch.autograd.grad(out2[t.mask].sum(), x2)
    assert g[~t.mask].abs().max() == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_fully_padded_sample_is_finite(backend):
    m, x, t = _module_and_tokens((5, 6))
    m.backend = backend
    mask = t.mask.clone()
    mask[0] = False
    x = x.requires_grad_()
    out = m(x, t.replace(mask=mask))
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_parameter_gets_a_gradient_and_matters(backend):
    m, x, t = _module_and_tokens((7, 8), dilation=2, masked=False, dtype=torch.float32)
    m.backend = backend
    out = m(x, t)
    out.square().mean().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    for name in ["qkv", "proj"]:
        sub = getattr(m, name)
        with torch.no_grad():
            saved = sub.weight.clone()
            sub.weight.mul_(1.5)
            assert not torch.allclose(m(x, t), out), name
            sub.weight.copy_(saved)
    with torch.no_grad():
        m.rel_pos_bias.add_(torch.randn_like(m.rel_pos_bias))
        assert not torch.allclose(m(x, t), out)


def test_dilation_changes_the_neighbourhood():
    m, x, t = _module_and_tokens((12, 12), dilation=1, masked=False)
    out1 = m(x, t)
    m.dilation = (2, 2)
    assert not torch.allclose(m(x, t), out1)


def test_dropout_runs_and_zero_dropout_is_identity():
    m = NeighborhoodAttention(8, heads=2, kernel=3, attn_drop=0.5).train()
    x = torch.randn(2, 30, 8, requires_grad=True)
    t = Tokens(x, grid=(5, 6))
    out = m(x, t)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(x.grad).all()
    m.eval()
    assert torch.allclose(m(x, t), m(x, t, reference=True), atol=1e-5)


@pytest.mark.skipif("kernel" not in BACKENDS, reason="no C compiler: the compiled kernel cannot be built")
def test_kernel_threads_and_backend_choice():
    """Threads own disjoint (sample, head) items; any thread count gives the one-thread result.
    ``auto`` takes the kernel without dropout and the tiles with it; bad backends are refused."""
    grid = (6, 7)
    q, k, v, bias, mask = _inputs(3, 2, 42, 4, 25, torch.float64, masked=True)
    go = torch.randn(3, 2, 42, 4, dtype=torch.float64)
    threads, results = torch.get_num_threads(), []
    try:
        for n in (1, 2, 4):
            torch.set_num_threads(n)
            out = neighborhood_attention(q, k, v, grid, 3, 1, bias, mask, backend="kernel")
            results.append((out, *torch.autograd.grad(out, (q, k, v, bias), go)))
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert (a - b).abs().max() <= 1e-12
    auto = neighborhood_attention(q, k, v, grid, 3, 1, bias, mask)
    assert torch.equal(auto, results[0][0])
    with pytest.raises(InputError, match="dropout"):
        neighborhood_attention(q, k, v, grid, 3, 1, bias, mask, dropout_p=0.1, backend="kernel")
    with pytest.raises(ValueError, match="backend"):
        neighborhood_attention(q, k, v, grid, 3, 1, bias, mask, backend="cuda")
    with pytest.raises(ValueError, match="backend"):
        NeighborhoodAttention(8, heads=2, kernel=3, backend="natten")


def test_errors_registry_and_macs():
    m = NeighborhoodAttention(8, heads=2, kernel=3)
    x = torch.randn(1, 12, 8)
    with pytest.raises(MissingStructureError, match="NeighborhoodAttention needs Tokens.grid"):
        m(x, Tokens(x))
    with pytest.raises(InputError, match="rank-2"):
        m(x, Tokens(x, grid=(12,)))
    with pytest.raises(ValueError, match="odd"):
        NeighborhoodAttention(8, heads=2, kernel=4)
    built = MIXERS.build(dict(type="NeighborhoodAttention", heads=2, kernel=5, dilation=2), dim=8)
    assert isinstance(built, NeighborhoodAttention) and built.dilation == (2, 2)
    # q k^T and attn v over 3 x 3 neighbours (the 3 x 4 grid fits the kernel)
    assert m.extra_macs(x, Tokens(x, grid=(3, 4))) == 2 * 1 * 12 * 9 * 8
    assert m.extra_macs(x, Tokens(x, grid=(2, 6))) == 2 * 1 * 12 * 6 * 8

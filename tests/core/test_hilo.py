"""HiLo attention (LITv2): the module against a reference written from cell coordinates (outputs
and gradients, 1D/2D/3D, odd sizes, head splits), masks (padding inert, Lo-Fi pools valid tokens
only, a window-aligned padded sample equals the sample alone), and the mixer's contract."""
import math

import pytest
import torch

from glocal.core import InputError, MissingStructureError, Tokens
from glocal.core.hilo import HiLoAttention, hilo_attention_ref
from glocal.core.registry import MIXERS

CASES = [  # grid, window, alpha
    ((8,), 2, 0.5), ((6, 8), 2, 0.5), ((7, 9), 2, 0.5), ((7, 9), 3, 0.25), ((5, 6, 7), (2, 3, 2), 0.5),
    ((6, 6), 1, 0.5), ((6, 6), 3, 0.0), ((6, 6), 3, 1.0),
]


@pytest.mark.parametrize("grid,window,alpha", CASES)
@pytest.mark.parametrize("masked", [False, True])
def test_hilo_matches_reference(grid, window, alpha, masked):
    m = HiLoAttention(16, heads=4, window=window, alpha=alpha, rank=len(grid)).double()
    L = math.prod(grid)
    x = torch.randn(2, L, 16, dtype=torch.float64, requires_grad=True)
    mask = None
    if masked:
        mask = torch.rand(2, L) > 0.4
        mask[:, 0] = True
    t = Tokens(x, mask=mask, grid=grid)
    out, ref = m(x, t), hilo_attention_ref(m, x, t)
    valid = t.valid()
    assert torch.isfinite(out).all()
    assert (out - ref)[valid].abs().max() <= 1e-6
    params = [x] + [p for p in m.parameters()]
    g = torch.autograd.grad((out[valid] ** 2).sum(), params)
    gr = torch.autograd.grad((ref[valid] ** 2).sum(), params)
    for a, b in zip(g, gr):
        assert (a - b).abs().max() <= 1e-6


def test_float32_close_to_float64():
    m = HiLoAttention(32, heads=4, window=2).double()
    x = torch.randn(2, 14 * 14, 32, dtype=torch.float64)
    want = m(x, Tokens(x, grid=(14, 14)))
    got = m.float()(x.float(), Tokens(x.float(), grid=(14, 14)))
    assert (got.double() - want).abs().max() <= 1e-5


def test_head_split():
    m = HiLoAttention(32, heads=8, window=2, alpha=0.5)
    assert (m.hi_heads, m.lo_heads) == (4, 4)
    assert m.hi_qkv.out_features == 3 * 16 and m.lo_kv.out_features == 2 * 16
    m = HiLoAttention(32, heads=8, window=1, alpha=0.25)  # no pooling: all heads global
    assert (m.hi_heads, m.lo_heads) == (0, 8) and not hasattr(m, "hi_qkv")


@pytest.mark.parametrize("grid,window", [((9, 10), 2), ((5, 6, 7), 2)])
def test_padding_is_inert(grid, window):
    m = HiLoAttention(16, heads=4, window=window, rank=len(grid)).double()
    L = math.prod(grid)
    x = torch.randn(3, L, 16, dtype=torch.float64)
    mask = torch.ones(3, L, dtype=torch.bool)
    mask[1, L // 2:] = False
    mask[2, ::3] = False
    t = Tokens(x, mask=mask, grid=grid)
    out = m(x, t)
    x2 = torch.where(mask[..., None], x, torch.randn_like(x) * 100).requires_grad_()
    out2 = m(x2, t.replace(x=x2))
    assert torch.isfinite(out2).all()
    assert (out2 - out)[mask].abs().max() <= 1e-10
    gx, = torch.autograd.grad(out2[mask].sum(), x2)
    assert gx[~mask].abs().max() == 0
    empty = mask.clone()
    empty[0] = False
    assert torch.isfinite(m(x, t.replace(mask=empty))).all()


def test_window_aligned_padding_equals_the_sample_alone():
    """A 6 x 6 image padded to 6 x 8 (window 2): the pad fills whole windows, so the valid
    outputs equal those of the 6 x 6 image run alone (Hi-Fi windows and Lo-Fi cells coincide)."""
    m = HiLoAttention(16, heads=4, window=2).double()
    small = torch.randn(1, 6, 6, 16, dtype=torch.float64)
    alone = m(small.reshape(1, 36, 16), Tokens(small.reshape(1, 36, 16), grid=(6, 6)))
    big = torch.randn(1, 6, 8, 16, dtype=torch.float64)
    big[:, :, :6] = small
    mask = torch.zeros(1, 6, 8, dtype=torch.bool)
    mask[:, :, :6] = True
    x = big.reshape(1, 48, 16)
    out = m(x, Tokens(x, mask=mask.reshape(1, 48), grid=(6, 8)))
    assert (out.view(1, 6, 8, 16)[:, :, :6].reshape(1, 36, 16) - alone).abs().max() <= 1e-10


def test_lofi_pools_only_valid_tokens():
    """One window half padded: its pooled key is the mean of its valid tokens only, so a Lo-Fi-only
    module gives the same outputs as on the tokens with the padded ones replaced by that mean."""
    m = HiLoAttention(8, heads=2, window=2, alpha=1.0, rank=1).double()
    x = torch.randn(1, 8, 8, dtype=torch.float64)
    mask = torch.ones(1, 8, dtype=torch.bool)
    mask[0, 7] = False
    out = m(x, Tokens(x, mask=mask, grid=(8,)))
    filled = x.clone()
    filled[0, 7] = x[0, 6]  # window (6, 7): the valid mean is token 6 itself
    out2 = m(filled, Tokens(filled, grid=(8,)))
    assert (out - out2)[mask].abs().max() <= 1e-12


def test_every_parameter_gets_a_gradient_and_matters():
    m = HiLoAttention(16, heads=4, window=2)
    x = torch.randn(2, 48, 16)
    t = Tokens(x, grid=(6, 8))
    out = m(x, t)
    out.square().mean().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    with torch.no_grad():
        for name in ("hi_qkv", "hi_proj", "lo_q", "lo_kv", "lo_proj"):
            w = getattr(m, name).weight
            saved = w.clone()
            w.mul_(1.5)
            assert not torch.allclose(m(x, t), out), name
            w.copy_(saved)


def test_errors_registry_and_macs():
    m = HiLoAttention(16, heads=4, window=2)
    x = torch.randn(1, 48, 16)
    with pytest.raises(MissingStructureError, match="HiLoAttention needs Tokens.grid"):
        m(x, Tokens(x))
    with pytest.raises(InputError, match="rank-2"):
        m(x, Tokens(x, grid=(48,)))
    built = MIXERS.build(dict(type="HiLoAttention", heads=4, window=2, alpha=0.75), dim=16)
    assert isinstance(built, HiLoAttention) and built.lo_heads == 3
    # (6, 8), window 2: 12 cells of 4; Hi-Fi 8 channels, Lo-Fi 8 channels, the pool over 48 x 16
    assert m.extra_macs(x, Tokens(x, grid=(6, 8))) == 2 * 48 * 4 * 8 + 2 * 48 * 12 * 8 + 48 * 16

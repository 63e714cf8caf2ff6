"""Linear attention: the O(L) path (non-causal sums, chunked causal sums) against the dense masked
reference, padding, causality, FAVOR+ features, gradients and MAC counts."""
import math

import pytest
import torch

from glocal.core import MIXERS, Tokens
from glocal.core.linear_attention import (LinearAttention, elu_features, favor_features, linear_attention,
                                          linear_attention_ref, orthogonal_random_features)


def _features(Bsz=2, h=3, L=29, m=5, d=4, dtype=torch.float64):
    fq = elu_features(torch.randn(Bsz, h, L, m, dtype=dtype)).requires_grad_()
    fk = elu_features(torch.randn(Bsz, h, L, m, dtype=dtype)).requires_grad_()
    v = torch.randn(Bsz, h, L, d, dtype=dtype, requires_grad=True)
    mask = torch.ones(Bsz, L, dtype=torch.bool)
    mask[1, 20:] = False
    mask[0, 3] = False
    return fq, fk, v, mask


@pytest.mark.parametrize("causal,chunk", [(False, 64), (True, 1), (True, 8), (True, 64)])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_linear_attention_matches_dense_reference(causal, chunk, dtype, tol):
    fq, fk, v, mask = _features(dtype=dtype)
    out = linear_attention(fq, fk, v, mask, causal=causal, chunk=chunk)
    ref = linear_attention_ref(fq, fk, v, mask, causal=causal)
    assert (out - ref).abs().max() <= tol
    g = torch.randn_like(ref)
    grads = torch.autograd.grad(out, (fq, fk, v), g)
    grads_ref = torch.autograd.grad(ref, (fq, fk, v), g)
    for a, b in zip(grads, grads_ref):
        assert (a - b).abs().max() <= tol * max(1.0, b.abs().max().item())


def _tokens(Bsz=2, L=11, C=24, mask=None):
    return Tokens(torch.randn(Bsz, L, C, dtype=torch.float64), mask=mask)


@pytest.mark.parametrize("feature_map", ["elu", "favor"])
@pytest.mark.parametrize("causal", [False, True])
def test_module_fast_path_matches_reference_with_padding(feature_map, causal):
    attn = LinearAttention(24, heads=3, feature_map=feature_map, causal=causal, chunk=4).double()
    mask = torch.ones(2, 11, dtype=torch.bool)
    mask[1, 7:] = False
    t = _tokens(mask=mask)
    out = attn(t.x, t)
    torch.testing.assert_close(out, attn.forward_reference(t.x, t), rtol=1e-9, atol=1e-10)
    # padding is inert, even with huge padded features, and never NaN
    x2 = t.x.clone()
    x2[~mask] = torch.randn_like(x2[~mask]) * 1e3
    out2 = attn(x2, t.replace(x=x2))
    assert torch.isfinite(out2).all()
    torch.testing.assert_close(out2[mask], out[mask])
    # every parameter gets a gradient and changes the output
    out.square().sum().backward()
    with torch.no_grad():
        for name, p in attn.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, name
            saved = p.clone()
            p.add_(torch.randn_like(p) * 0.5)
            assert not torch.allclose(attn(t.x, t), out), name
            p.copy_(saved)


@pytest.mark.parametrize("feature_map", ["elu", "favor"])
def test_causal_outputs_ignore_the_future(feature_map):
    attn = LinearAttention(24, heads=3, feature_map=feature_map, causal=True, chunk=4).double()
    t = _tokens(Bsz=1)
    out = attn(t.x, t)
    x2 = t.x.clone()
    x2[0, 6:] += torch.randn_like(x2[0, 6:])
    out2 = attn(x2, t.replace(x=x2))
    # the FAVOR key stabiliser is one constant per (sample, head), which cancels exactly in the
    # normalisation: the past changes only by rounding
    torch.testing.assert_close(out2[0, :6], out[0, :6], rtol=1e-9, atol=1e-10)
    assert not torch.allclose(out2[0, 6:], out[0, 6:])


def test_non_causal_sees_every_token():
    attn = LinearAttention(24, heads=3).double()
    t = _tokens(Bsz=1)
    x2 = t.x.clone()
    x2[0, -1] += 1.0
    assert ((attn(x2, t.replace(x=x2)) - attn(t.x, t))[0].abs().amax(-1) > 1e-12).all()


def test_fully_padded_sample_is_finite():
    attn = LinearAttention(24, heads=3, feature_map="favor").double()
    mask = torch.zeros(2, 11, dtype=torch.bool)
    mask[0] = True
    t = _tokens(mask=mask)
    assert torch.isfinite(attn(t.x, t)).all()


def test_favor_features_estimate_softmax_kernel():
    """phi(q) . phi(k) is an unbiased estimate of exp(q . k / sqrt(d)) (a biased orthogonal draw,
    e.g. QR without the sign fix, is off by several percent on average), and with many features
    the normalised attention is close to softmax attention."""
    torch.manual_seed(1)
    d, m, L = 8, 16384, 16
    q, k = torch.randn(1, 1, L, d, dtype=torch.float64) * 0.5, torch.randn(1, 1, L, d, dtype=torch.float64) * 0.5
    proj = orthogonal_random_features(m, d, dtype=torch.float64)
    fq, fk = favor_features(q, proj, True), favor_features(k, proj, False)
    est = fq[0, 0] @ fk[0, 0].T  # up to one stabiliser factor per query row and one for the keys
    exact = torch.exp(q[0, 0] @ k[0, 0].T / math.sqrt(d))
    ratio = est / exact
    assert (ratio / ratio.mean(-1, keepdim=True) - 1).abs().mean() < 0.03
    v = torch.randn(1, 1, L, 3, dtype=torch.float64)
    exact_attn = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d), -1) @ v
    assert (linear_attention(fq, fk, v) - exact_attn).abs().max() < 0.05
    # the rows of one d x d block are orthogonal
    w = proj[:d] / proj[:d].norm(dim=1, keepdim=True)
    torch.testing.assert_close(w @ w.T, torch.eye(d, dtype=torch.float64), atol=1e-10, rtol=0)


def test_favor_projection_is_a_saved_buffer_and_redrawable():
    attn = LinearAttention(24, heads=3, feature_map="favor")
    assert attn.num_features == int(8 * math.log(8)) and attn.features.shape == (attn.num_features, 8)
    assert "features" in attn.state_dict() and not any(n == "features" for n, _ in attn.named_parameters())
    t = Tokens(torch.randn(1, 6, 24))
    before, w = attn(t.x, t), attn.features.clone()
    attn.redraw_features(torch.Generator().manual_seed(3))
    assert not torch.equal(attn.features, w)
    assert not torch.allclose(attn(t.x, t), before)
    clone = LinearAttention(24, heads=3, feature_map="favor")
    clone.load_state_dict(attn.state_dict())
    torch.testing.assert_close(clone(t.x, t), attn(t.x, t))
    with pytest.raises(ValueError, match="favor"):
        LinearAttention(24, heads=3).redraw_features()


def test_extra_macs_and_registry():
    attn = LinearAttention(32, heads=4)
    t = Tokens(torch.randn(2, 10, 32))
    assert attn.extra_macs(t.x, t) == 2 * 2 * 4 * 10 * 8 * (8 + 1)
    causal = LinearAttention(32, heads=4, feature_map="favor", causal=True, chunk=4)
    m = causal.num_features
    assert causal.extra_macs(t.x, t) == (2 * 2 * 4 * 10 * m * 8 + 2 * 2 * 4 * 10 * m * 9
                                         + 2 * 4 * 10 * 4 * (m + 8 + 1))
    assert isinstance(MIXERS.build(dict(type="LinearAttention", heads=4, causal=True), dim=32), LinearAttention)
    with pytest.raises(ValueError, match="feature_map"):
        LinearAttention(32, feature_map="relu")

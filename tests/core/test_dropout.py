"""Fast dropout masks against nn.Dropout's arithmetic, and attention with dropout against SDPA."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from glocal.core.dropout import Dropout, attention, dropout, dropout_reference, keep_mask, keep_probability


@pytest.mark.parametrize("p", [0.1, 0.25, 0.5, 0.9])
def test_keep_mask_rate_and_independence(p):
    torch.manual_seed(0)
    keep = keep_mask((1000, 1000), p)
    q = keep_probability(p)
    assert abs(q - (1 - p)) <= 2**-17 and keep.dtype == torch.bool
    n = keep.numel()
    assert abs(keep.float().mean().item() - q) < 5 * math.sqrt(q * (1 - q) / n)
    # the four 16-bit lanes of a word, and neighbouring words, are independent: all lanes keep at the
    # same rate and the correlation of neighbours is ~0
    lanes = keep.view(-1, 4).float()
    assert (lanes.mean(0) - q).abs().max() < 5 * math.sqrt(q * (1 - q) / lanes.shape[0])
    a, b = keep.flatten()[:-1].float(), keep.flatten()[1:].float()
    corr = ((a - a.mean()) * (b - b.mean())).mean() / (a.std() * b.std())
    assert abs(corr.item()) < 5 / math.sqrt(n)
    assert keep_mask((3, 5), p).shape == (3, 5)  # sizes that are not a multiple of four


def test_dropout_matches_the_reference_forward_and_backward():
    torch.manual_seed(0)
    x = torch.randn(7, 33, requires_grad=True)
    torch.manual_seed(1)
    y = dropout(x, 0.3)
    torch.manual_seed(1)
    keep = keep_mask(x.shape, 0.3)
    torch.testing.assert_close(y, dropout_reference(x.detach(), keep, 0.3), rtol=1e-6, atol=1e-7)
    g = torch.randn_like(y)
    y.backward(g)
    torch.testing.assert_close(x.grad, dropout_reference(g, keep, 0.3), rtol=1e-6, atol=1e-7)
    # expectation kept: E[dropout(x)] = x
    torch.manual_seed(2)
    ones = torch.ones(2000, 1000)
    assert abs(dropout(ones, 0.3).mean().item() - 1.0) < 5e-3


def test_dropout_module_is_nn_dropout_outside_training():
    drop = Dropout(0.2)
    assert isinstance(drop, nn.Dropout) and repr(drop) == repr(nn.Dropout(0.2))
    x = torch.randn(4, 8)
    assert drop.eval()(x) is x and dropout(x, 0.0) is x
    with pytest.raises(ValueError, match="in \\[0, 1\\)"):
        keep_mask((2,), 1.0)
    torch.manual_seed(3)
    a = Dropout(0.5).train()(x)
    torch.manual_seed(3)
    assert torch.equal(a, Dropout(0.5).train()(x))  # reproducible from torch's generator


def _sdpa_reference(q, k, v, mask, keep, p):
    """The math of attention with dropout, given the dropout mask."""
    logits = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        logits = logits.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else logits + mask
    w = torch.softmax(logits, -1).nan_to_num(0.0)
    return dropout_reference(w, keep, p) @ v


@pytest.mark.parametrize("masked", [None, "bool", "float"])
def test_attention_with_dropout_is_the_sdpa_math(masked):
    torch.manual_seed(0)
    B, h, L, d = 2, 3, 9, 8
    q, k, v = (torch.randn(B, h, L, d, dtype=torch.float64) for _ in range(3))
    mask = None
    if masked == "bool":
        mask = torch.rand(B, 1, L, L) > 0.3
        mask[0, 0, 2] = False  # a query with no allowed key: zero output
    elif masked == "float":
        mask = torch.randn(1, h, L, L, dtype=torch.float64)
    # no dropout: exactly SDPA (a fully masked row: both zero)
    torch.testing.assert_close(attention(q, k, v, mask), F.scaled_dot_product_attention(q, k, v, attn_mask=mask))
    torch.manual_seed(5)
    out = attention(q, k, v, mask, dropout_p=0.2)
    torch.manual_seed(5)
    keep = keep_mask((B, h, L, L), 0.2)
    torch.testing.assert_close(out, _sdpa_reference(q, k, v, mask, keep, 0.2))
    if masked == "bool":
        assert out[0, :, 2].abs().max() == 0

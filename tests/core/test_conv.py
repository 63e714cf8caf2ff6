import math

import pytest
import torch

from glocal.core import DepthwiseConv, Tokens


def conv_ref(m: DepthwiseConv, x, grid, mask):
    """Explicit sum over kernel offsets with zero padding; masked inputs count as zero."""
    B, L, C = x.shape
    if mask is not None:
        x = x * mask[..., None]
    xg = x.view(B, *grid, C)
    w = m.conv.weight[:, 0]  # [C, *k]
    out = torch.zeros_like(xg) + m.conv.bias
    coords = torch.stack(torch.meshgrid(*[torch.arange(g) for g in grid], indexing="ij"), -1)  # [*grid, r]
    for offset in torch.stack(torch.meshgrid(*[torch.arange(k) for k in m.kernel], indexing="ij"), -1).view(-1, len(grid)):
        shift = (offset - torch.tensor(m.kernel) // 2) * torch.tensor(m.dilation)
        src = coords + shift
        inside = ((src >= 0) & (src < torch.tensor(grid))).all(-1)  # [*grid]
        src = src.clamp_min(0).minimum(torch.tensor(grid) - 1)
        flat = torch.zeros(src.shape[:-1], dtype=torch.long)
        for d, g in enumerate(grid):
            flat = flat * g + src[..., d]
        gathered = x[:, flat.view(-1)].view(B, *grid, C) * inside[None, ..., None]
        out = out + gathered * w[(slice(None),) + tuple(offset.tolist())]
    return out.view(B, L, C)


@pytest.mark.parametrize("grid,kernel,dilation", [((9,), 5, 1), ((6, 7), 3, 1), ((6, 7), 3, 2), ((3, 4, 5), 3, 1)])
@pytest.mark.parametrize("masked", [False, True])
def test_depthwise_conv_matches_reference(grid, kernel, dilation, masked):
    m = DepthwiseConv(4, kernel=kernel, rank=len(grid), dilation=dilation).double()
    L = math.prod(grid)
    x = torch.randn(2, L, 4, dtype=torch.float64, requires_grad=True)
    mask = None
    if masked:
        mask = torch.rand(2, L) > 0.3
    out = m(x, Tokens(x, mask=mask, grid=grid))
    ref = conv_ref(m, x, grid, mask)
    assert (out - ref).abs().max() < 1e-10
    g = torch.autograd.grad(out.square().sum(), [x, m.conv.weight])
    gr = torch.autograd.grad(ref.square().sum(), [x, m.conv.weight])
    for a, b in zip(g, gr):
        assert (a - b).abs().max() < 1e-9


def test_masked_inputs_do_not_leak():
    m = DepthwiseConv(3, kernel=3, rank=1).double()
    x = torch.randn(1, 6, 3, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 1, 0, 0]], dtype=torch.bool)
    a = m(x, Tokens(x, mask=mask, grid=(6,)))
    x[0, 4:] = 1e5
    b = m(x, Tokens(x, mask=mask, grid=(6,)))
    assert torch.equal(a[mask], b[mask])
    alone = m(x[:, :4], Tokens(x[:, :4], grid=(4,)))
    assert (a[0, :4] - alone[0]).abs().max() < 1e-12


def test_even_kernel_rejected():
    with pytest.raises(ValueError, match="odd"):
        DepthwiseConv(4, kernel=4)

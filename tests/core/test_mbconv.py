"""MBConv on Tokens (MaxViT's convolution block): shapes and downsampled masks on grids of any
rank, the masked average-pool shortcut, padding inert (BatchNorm statistics from valid tokens),
MaxViT's parameter layout, and the downsampler form."""
import math

import pytest
import torch

from glocal.core import MissingStructureError, Tokens
from glocal.core.mbconv import MBConv, MBConvDownsample
from glocal.core.registry import BLOCKS, DOWNSAMPLERS


@pytest.mark.parametrize("grid,stride,coarse", [((9, 10), 2, (5, 5)), ((8, 8), 1, (8, 8)), ((11,), 2, (6,)),
                                                ((3, 5, 6), (1, 2, 2), (3, 3, 3))])
def test_shapes_and_masks(grid, stride, coarse):
    m = MBConv(8, 16, stride=stride, rank=len(grid))
    L = math.prod(grid)
    mask = torch.ones(2, L, dtype=torch.bool)
    mask[1, L // 2:] = False
    out = m(Tokens(torch.randn(2, L, 8), mask=mask, grid=grid))
    assert out.grid == coarse and out.x.shape == (2, math.prod(coarse), 16)
    assert out.mask[0].all() and not out.mask[1].all()
    assert (out.x[~out.mask] == 0).all() and torch.isfinite(out.x).all()


def test_maxvit_parameter_layout():
    """timm's MbConvBlock 64 -> 128, stride 2: pooled + 1x1 shortcut, BN, 1x1 (no bias), BN,
    depthwise 3x3 (no bias), BN, SE 512 -> 32 -> 512, 1x1."""
    m = MBConv(64, 128, stride=2)
    want = (64 * 128 + 128) + 2 * 64 + 64 * 512 + 2 * 512 + 512 * 9 + 2 * 512 + (512 * 32 + 32) + (32 * 512 + 512) \
        + (512 * 128 + 128)
    assert sum(p.numel() for p in m.parameters()) == want
    assert isinstance(MBConv(64).shortcut, torch.nn.Identity)


def test_shortcut_is_the_masked_average_pool():
    m = MBConv(4, 4, stride=2, rank=1).double().eval()
    with torch.no_grad():  # silence the branch: the output is the shortcut alone
        m.conv3.weight.zero_()
        m.conv3.bias.zero_()
    x = torch.randn(1, 5, 4, dtype=torch.float64)
    mask = torch.tensor([[True, False, True, True, True]])
    out = m(Tokens(x, mask=mask, grid=(5,)))
    want = torch.stack([x[0, 0], (x[0, 2] + x[0, 3]) / 2, x[0, 4]])
    assert (out.x[0] - want).abs().max() < 1e-12


@pytest.mark.parametrize("train", [False, True])
def test_padding_is_inert(train):
    m = MBConv(8, 16, stride=2).double().train(train)
    L = 9 * 10
    x = torch.randn(3, L, 8, dtype=torch.float64)
    mask = torch.ones(3, L, dtype=torch.bool)
    mask[1, 40:] = False
    mask[2, ::4] = False
    t = Tokens(x, mask=mask, grid=(9, 10))
    out = m(t)
    x2 = torch.where(mask[..., None], x, torch.randn_like(x) * 100).requires_grad_()
    out2 = m(t.replace(x=x2))
    assert (out2.x - out.x)[out.mask].abs().max() <= 1e-10  # BatchNorm sees valid tokens only
    g, = torch.autograd.grad(out2.x[out2.mask].sum(), x2)
    assert g[~mask].abs().max() == 0


def test_gradients_downsampler_and_registry():
    m = MBConv(8, 16, stride=2, drop_path=0.1)
    t = Tokens(torch.randn(2, 64, 8), grid=(8, 8))
    m(t).x.square().mean().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    down = DOWNSAMPLERS.build(dict(type="MBConvDownsample"), dim=8, out_dim=16)
    assert isinstance(down, MBConvDownsample) and down.stride == (2, 2)
    coarse, undo = down(t)
    assert coarse.grid == (4, 4) and undo.grid == (8, 8) and undo.fine is t
    assert isinstance(BLOCKS.build(dict(type="MBConv"), dim=8), MBConv)
    with pytest.raises(MissingStructureError, match="MBConv needs Tokens.grid"):
        m(Tokens(torch.randn(2, 64, 8)))

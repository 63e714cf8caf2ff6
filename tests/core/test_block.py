import pytest
import torch
from torch import nn

from glocal.core import ConfigError, LocalGlobalBlock, Tokens
from glocal.core.block import DropPath


def _tokens(B=2, H=6, W=6, C=16, masked=False):
    x = torch.randn(B, H * W, C)
    mask = None
    if masked:
        mask = torch.ones(B, H * W, dtype=torch.bool)
        mask[0, H * W // 2:] = False
    return Tokens(x, mask=mask, grid=(H, W))


LOCAL = dict(type="DepthwiseConv", kernel=3)
GLOBAL = dict(type="FullAttention", heads=4)


def test_sequential_is_three_residual_steps():
    blk = LocalGlobalBlock(16, local=LOCAL, global_=GLOBAL).eval()
    t = _tokens()
    x = t.x
    s = blk.steps
    x1 = x + s[0].fn(s[0].norm(x), t)
    x2 = x1 + s[1].fn(s[1].norm(x1), t)
    x3 = x2 + s[2].fn(s[2].norm(x2), t)
    torch.testing.assert_close(blk(t).x, x3)


def test_parallel_sums_branches_in_one_step():
    blk = LocalGlobalBlock(16, local=LOCAL, global_=GLOBAL, composition="parallel").eval()
    t = _tokens()
    assert len(blk.steps) == 2
    h = blk.steps[0].norm(t.x)
    x1 = t.x + blk.local(h, t) + blk.global_(h, t)
    torch.testing.assert_close(blk(t).x, x1 + blk.steps[1].fn(blk.steps[1].norm(x1), t))


def test_components_can_be_modules():
    local = nn.Identity()
    local.forward = lambda x, tokens: 2 * x
    blk = LocalGlobalBlock(16, local=local, global_=None, ffn=None, norm=None)
    t = _tokens()
    torch.testing.assert_close(blk(t).x, 3 * t.x)


@pytest.mark.parametrize("composition", ["sequential", "parallel"])
def test_every_parameter_gets_gradient_and_each_part_matters(composition):
    blk = LocalGlobalBlock(16, local=LOCAL, global_=GLOBAL, composition=composition, layer_scale=0.5)
    t = _tokens(masked=True)
    out = blk(t).x
    out[t.mask].square().sum().backward()
    for name, p in blk.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    # each sub-module changes the output: zero its last layer and compare
    base = blk(t).x.detach()
    for role, layer in (("local", "conv"), ("global_", "proj"), ("ffn", "fc2")):
        module = getattr(getattr(blk, role), layer)
        saved = module.weight.data.clone()
        module.weight.data.zero_()
        if module.bias is not None:
            bias = module.bias.data.clone()
            module.bias.data.zero_()
        changed = (blk(t).x.detach() - base)[t.mask].abs().max()
        module.weight.data.copy_(saved)
        if module.bias is not None:
            module.bias.data.copy_(bias)
        assert changed > 1e-4, role


def test_padding_is_inert_through_block():
    blk = LocalGlobalBlock(16, local=LOCAL, global_=GLOBAL, norm="BatchNorm").double()
    t = _tokens(masked=True)
    x = t.x.double()
    out1 = blk(Tokens(x, mask=t.mask, grid=t.grid)).x
    x2 = x.clone()
    x2[~t.mask] = 1e4
    out2 = blk(Tokens(x2, mask=t.mask, grid=t.grid)).x
    assert torch.isfinite(out2).all()
    assert (out1[t.mask] - out2[t.mask]).abs().max() < 1e-9


def test_drop_path_and_layer_scale():
    dp = DropPath(0.5).train()
    x = torch.ones(1000, 4)
    y = dp(x)
    kept = (y[:, 0] > 0).float().mean()
    assert 0.4 < kept < 0.6 and torch.all((y == 0) | (y == 2))
    assert torch.equal(dp.eval()(x), x)
    blk = LocalGlobalBlock(16, local=LOCAL, layer_scale=1e-6)
    t = _tokens()
    assert (blk(t).x - t.x).abs().max() < 1e-3


def test_config_errors_name_close_types_and_keys():
    with pytest.raises(ConfigError, match="unknown mixer type='WindowAtention'.*WindowAttention"):
        LocalGlobalBlock(16, local=dict(type="WindowAtention"))
    with pytest.raises(ConfigError, match="no argument 'head'.*heads"):
        LocalGlobalBlock(16, global_=dict(type="FullAttention", head=4))
    with pytest.raises(ValueError, match="composition"):
        LocalGlobalBlock(16, local=LOCAL, composition="both")


def test_mlp_runs_on_valid_tokens_only():
    from glocal.core import Mlp

    t = _tokens(masked=True)
    mlp = Mlp(16, ratio=2.0)
    out = mlp(t.x, t)
    torch.testing.assert_close(out[t.mask], mlp(t.x)[t.mask])  # as on the unmasked batch
    assert (out[~t.mask] == 0).all()  # padding gets no update

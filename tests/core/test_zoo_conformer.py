"""The Conformer encoder against torchaudio's: parameter counts at the published sizes, and the
same outputs once torchaudio's weights are copied in (eval mode, float64); ours keeps padded frames
inert, which torchaudio's convolution module does not."""
import pytest
import torch
import torchaudio

from glocal.core import Tokens
from glocal.core.models.conformer import Conformer, ConformerBlock
from glocal.core.registry import BACKBONES, MIXERS


def _torchaudio(dim, depth, heads, kernel=31):
    return torchaudio.models.Conformer(input_dim=dim, num_heads=heads, ffn_dim=4 * dim, num_layers=depth,
                                      depthwise_conv_kernel_size=kernel)


@pytest.mark.parametrize("name,dim,heads,expected", [("conformer_s", 144, 4, 7_771_392),
                                                     ("conformer_m", 256, 4, 24_367_104)])
def test_parameter_counts_match_torchaudio(name, dim, heads, expected):
    ours = BACKBONES.build(dict(type=name))
    assert sum(p.numel() for p in ours.parameters()) == expected
    assert sum(p.numel() for p in _torchaudio(dim, 16, heads).parameters()) == expected


def test_outputs_match_torchaudio_with_its_weights():
    torch.manual_seed(0)
    ref = _torchaudio(16, 2, 2, kernel=5).double().eval()
    ours = Conformer(dim=16, depth=2, heads=2, kernel=5).double().eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics
        for m in ref.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
    theirs, mine = ref.state_dict(), ours.state_dict()
    assert len(theirs) == len(mine)  # the same tensors in the same order: 1x1 convs are our Linears
    ours.load_state_dict({k: v.reshape(mine[k].shape) for k, v in zip(mine, theirs.values())})
    x = torch.randn(3, 40, 16, dtype=torch.float64)
    want, _ = ref(x, torch.full((3,), 40))
    got = ours(Tokens(x, grid=(40,))).last.x
    assert (got - want).abs().max() < 1e-10


def test_padding_is_inert_and_every_parameter_learns():
    torch.manual_seed(0)
    m = Conformer(dim=16, depth=2, heads=2, kernel=5, dropout=0.0).double()
    x = torch.randn(2, 30, 16, dtype=torch.float64, requires_grad=True)
    mask = torch.ones(2, 30, dtype=torch.bool)
    mask[1, 18:] = False
    out = m(Tokens(x, mask=mask, grid=(30,))).last.x
    x2 = torch.where(mask[..., None], x, torch.randn_like(x) * 50)
    out2 = m(Tokens(x2, mask=mask, grid=(30,))).last.x
    assert (out2 - out)[mask].abs().max() < 1e-10
    # the valid frames of sample 1 do not depend on how much padding follows them
    m.eval()  # (train-mode BatchNorm statistics depend on the batch; compare in eval mode)
    short, full = m(Tokens(x[1:, :18], grid=(18,))).last.x, m(Tokens(x, mask=mask, grid=(30,))).last.x
    assert (short[0] - full[1, :18]).abs().max() < 1e-10
    m.train()
    out.square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters())


def test_block_and_conv_module_are_registered():
    block = ConformerBlock(8, heads=2, kernel=3)
    t = Tokens(torch.randn(2, 10, 8), grid=(10,))
    assert block(t).x.shape == (2, 10, 8)
    conv = MIXERS.build(dict(type="ConvModule", kernel=3, rank=2), dim=8)
    assert conv(torch.randn(2, 12, 8), Tokens(torch.randn(2, 12, 8), grid=(3, 4))).shape == (2, 12, 8)

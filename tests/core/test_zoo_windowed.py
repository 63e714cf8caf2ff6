"""The windowed-attention families at their published sizes: MaxViT-T (whole classifier: stem +
backbone + head, timm's maxvit_tiny_tf_224 has 30,916,528 parameters), NAT-Mini and DiNAT-Mini
(about 20 M), each run once at 224 x 224."""
import pytest
import torch

from glocal.core import Tokens
from glocal.core.models.nat import dinat_dilations
from glocal.core.registry import BACKBONES
from glocal.tasks.model import Classifier

MAXVIT_STEM = dict(type="ConvStem", in_chans=3, dims=(64, 64), strides=(2, 1), kernel=3, norm="BatchNorm",
                   act="GELU")
NAT_STEM = dict(type="ConvStem", in_chans=3, dims=(32, 64), strides=(2, 2), norm=None, act="Identity",
                norm_last="LayerNorm")


def classifier(name):
    if name.startswith("maxvit"):
        return Classifier(adapter=MAXVIT_STEM, backbone=dict(type=name),
                          head=dict(type="ClsHead", num_classes=1000, pre_logits=512))
    return Classifier(adapter=NAT_STEM, backbone=dict(type=name), head=dict(type="ClsHead", num_classes=1000))


def n_params(module):
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("name,published,tol", [("maxvit_t", 30_916_528, 0.01), ("nat_mini", 20e6, 0.05),
                                                ("dinat_mini", 20e6, 0.05)])
def test_published_size_and_forward_at_224(name, published, tol):
    model = classifier(name).eval()
    n = n_params(model)
    assert abs(n - published) <= tol * published, f"{name}: {n:,} parameters, published {published:,.0f}"
    with torch.no_grad():
        logits = model(torch.randn(1, 3, 224, 224))
    assert logits.shape == (1, 1000) and torch.isfinite(logits).all()


def test_maxvit_structure():
    bb = BACKBONES.build(dict(type="maxvit_t"))
    # every stage opens with a stride-2 MBConv, then (window block, grid block) + (MBConv, window, grid)...
    kinds = [[type(b).__name__ for b in stage.blocks] for stage in bb.stages]
    assert [type(d).__name__ for d in bb.downsamplers] == ["MBConvDownsample"] * 4
    assert [len(k) for k in kinds] == [3 * d - 1 for d in (2, 2, 5, 2)]
    roles = [type(b.global_ or b.local).__name__ if hasattr(b, "local") else "MBConv" for b in bb.stages[2].blocks]
    assert roles[:5] == ["WindowAttention", "GridAttention", "MBConv", "WindowAttention", "GridAttention"]
    assert bb.stages[3].blocks[0].local.heads == 16  # 512 channels / head dim 32
    with torch.no_grad():
        out = bb(Tokens(torch.randn(1, 32 * 32, 64), grid=(32, 32)))  # a 64 x 64 image after the stem
    assert [s.grid for s in out.stages] == [(16, 16), (8, 8), (4, 4), (2, 2)]
    assert [s.x.shape[-1] for s in out.stages] == [64, 128, 256, 512]
    assert out.undo[0].grid == (32, 32)  # the MBConv downsampler says how to undo it


def test_dinat_dilation_schedule_and_nat_kernel():
    assert dinat_dilations((3, 4, 6, 5)) == ((1, 8, 1), (1, 4, 1, 4), (1, 2, 1, 2, 1, 2), (1, 1, 1, 1, 1))
    bb = BACKBONES.build(dict(type="dinat_mini"))
    assert [b.local.dilation for b in bb.stages[0].blocks] == [(1, 1), (8, 8), (1, 1)]
    assert [b.local.kernel for b in bb.stages[3].blocks] == [(7, 7)] * 5
    nat = BACKBONES.build(dict(type="nat_mini"))
    assert all(b.local.dilation == (1, 1) for s in nat.stages for b in s.blocks)
    assert n_params(nat) == n_params(bb)  # dilation adds no parameters

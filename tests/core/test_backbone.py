import pytest
import torch

from glocal.core import Backbone, ConfigError, ConvDownsample, PatchMerging, Tokens
from glocal.core.registry import BACKBONES
from glocal.tasks.registry import MODELS

SWIN_T_TIMM = 28_288_354  # timm's swin_tiny_patch4_window7_224, 1000 classes


def test_swin_t_classifier_matches_reference_count():
    model = MODELS.build(dict(type="Classifier", adapter=dict(type="PatchStem", in_chans=3, dim=96, patch=4),
                              backbone=dict(type="swin_t"), head=dict(type="ClsHead", num_classes=1000)))
    n = sum(p.numel() for p in model.parameters())
    assert abs(n - SWIN_T_TIMM) / SWIN_T_TIMM < 0.01
    assert n == SWIN_T_TIMM  # the structure is the same, so the count is exact


def test_swin_stage_structure():
    b = BACKBONES.build(dict(type="swin_t"))
    assert [len(s) for s in b.stages] == [2, 2, 6, 2] and b.dims == [96, 192, 384, 768]
    blocks = b.stages[2].blocks
    assert [blk.local.shift for blk in blocks[:2]] == [(0, 0), (3, 3)]
    assert [blk.local.heads for blk in (b.stages[0].blocks[0], b.stages[3].blocks[0])] == [3, 24]


def test_hierarchical_outputs_and_mask_propagation():
    stages = [dict(dim=8, depth=1, blocks=dict(local=dict(type="WindowAttention", heads=2, window=2))),
              dict(dim=16, depth=2, blocks=[dict(local=dict(type="DepthwiseConv", kernel=3)),
                                           dict(global_=dict(type="FullAttention", heads=2))])]
    b = Backbone(8, stages, downsample=dict(type="PatchMerging"))
    mask = torch.zeros(2, 5, 7, dtype=torch.bool)
    mask[:, :3, :4] = True
    mask[1] = True
    out = b(Tokens(torch.randn(2, 35, 8), mask=mask.view(2, 35), grid=(5, 7)))
    assert [s.grid for s in out.stages] == [(5, 7), (3, 4)]
    assert out.undo[1].grid == (5, 7) and out.undo[0] is None
    assert out.undo[1].restore(out.stages[0].x).mask is out.stages[0].mask  # the fine structure comes back
    coarse = out.stages[1].mask.view(2, 3, 4)
    assert coarse[0, :2, :2].all() and not coarse[0, 2:].any() and not coarse[0, :, 2:].any()
    assert coarse[1].all()
    assert torch.isfinite(out.last.x).all()


def test_patch_merging_gathers_each_block():
    pm = PatchMerging(2, out_dim=8, norm=None)
    torch.nn.init.eye_(pm.reduction.weight)
    x = torch.arange(4 * 4 * 2, dtype=torch.float32).view(1, 16, 2)
    t, _ = pm(Tokens(x, grid=(4, 4)))
    assert t.grid == (2, 2)
    # coarse cell (0, 0) holds fine cells (0,0), (1,0), (0,1), (1,1)
    expect = torch.cat([x[0, i] for i in (0, 4, 1, 5)])
    assert torch.equal(t.x[0, 0], expect)


def test_conv_downsample_rank3_and_padding():
    ds = ConvDownsample(4, out_dim=6, factors=(1, 2, 2), rank=3)
    t, _ = ds(Tokens(torch.randn(2, 3 * 5 * 5, 4), grid=(3, 5, 5)))
    assert t.grid == (3, 3, 3) and t.x.shape == (2, 27, 6)


def test_width_change_without_downsampler_is_an_error():
    with pytest.raises(ConfigError, match="no downsampler"):
        Backbone(8, [dict(dim=8, depth=1, blocks=dict(ffn=dict(type="Mlp"))),
                     dict(dim=16, depth=1, blocks=dict(ffn=dict(type="Mlp")))])

"""UniFormer (Li et al., ICLR 2022) at its published size, with its blocks checked against the
paper's equations written out on ``[B, C, T, H, W]`` tensors (convolutions, not tokens):

- local MHRA block: ``x += DWConv3(x)``; ``x += PW(DWConv5(PW(BN(x))))``; ``x += MLP(BN(x))``;
- global MHRA block: ``x += DWConv3(x)``; ``x += SelfAttention(LN(x))``; ``x += MLP(LN(x))``.

UniFormer-S video (stem 3x4x4 stride 2x4x4, 400 classes) is published at 21.4 M parameters; the
image model (1000 classes) at 22 M (21.5 M in the reference code's layout, which this follows)."""
import math

import pytest
import torch
import torch.nn.functional as F

from glocal.core import LocalAggregator, Tokens
from glocal.core.registry import BACKBONES
from glocal.modalities.video.adapter import TubeletStem
from glocal.tasks.model import Classifier

VIDEO_S = 21.4e6  # UniFormer-S, Kinetics-400 (16x4), paper Table: 21.4 M
IMAGE_S = 22e6  # UniFormer-S, ImageNet-1K, paper: 22 M


def video_stem():
    return TubeletStem(in_chans=3, dim=64, patch=(2, 4, 4), kernel=(3, 4, 4))


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def test_published_sizes():
    from glocal.modalities.image.adapter import PatchStem

    video = Classifier(adapter=video_stem(), backbone=dict(type="video_uniformer_s"),
                       head=dict(type="ClsHead", num_classes=400))
    n = n_params(video)
    print(f"UniFormer-S video: {n:,} parameters (published 21.4 M)")
    assert abs(n - VIDEO_S) <= 0.005 * VIDEO_S, n  # 21,400,400
    image = Classifier(adapter=PatchStem(in_chans=3, dim=64, patch=4), backbone=dict(type="uniformer_s"),
                       head=dict(type="ClsHead", num_classes=1000))
    n = n_params(image)
    print(f"UniFormer-S image: {n:,} parameters (published 22 M)")
    assert abs(n - IMAGE_S) <= 0.03 * IMAGE_S, n  # 21,545,256


def test_structure():
    bb = BACKBONES.build(dict(type="video_uniformer_s"))
    assert [len(s) for s in bb.stages] == [3, 4, 8, 3] and bb.dims == [64, 128, 320, 512]
    local, glob = bb.stages[1].blocks[0], bb.stages[2].blocks[0]
    assert isinstance(local.local, LocalAggregator) and local.global_ is None
    assert local.local.dw.kernel == (5, 5, 5) and local.pos.kernel == (3, 3, 3)
    assert type(glob.global_).__name__ == "FullAttention" and glob.local is None
    assert [b.global_.heads for b in (bb.stages[2].blocks[0], bb.stages[3].blocks[0])] == [5, 8]  # head dim 64
    assert [d.factors for d in bb.downsamplers[1:]] == [(1, 2, 2)] * 3
    assert local.steps[0].norm.kind == "batch" and glob.steps[0].norm.kind == "layer"
    assert bb.out_norm.kind == "batch"


def _bn(x, norm):  # eval-mode BatchNorm over channels of [B, C, ...]
    bn = norm.norm
    shape = (1, -1) + (1,) * (x.dim() - 2)
    return ((x - bn.running_mean.view(shape)) / torch.sqrt(bn.running_var.view(shape) + bn.eps)
            * bn.weight.view(shape) + bn.bias.view(shape))


def _pw(x, linear):  # a 1x1x1 convolution with a Linear's weights, [B, C, T, H, W]
    return torch.einsum("oc,bc...->bo...", linear.weight, x) + linear.bias.view(1, -1, 1, 1, 1)


def _dw(x, dwconv):
    conv = dwconv.conv
    return F.conv3d(x, conv.weight, conv.bias, padding=tuple(k // 2 for k in conv.kernel_size), groups=x.shape[1])


def _mlp_tokens(x, mlp):
    return mlp.fc2(F.gelu(mlp.fc1(x)))


def local_block_ref(blk, x):  # x: [B, C, T, H, W]
    x = x + _dw(x, blk.pos)
    agg = blk.local
    x = x + _pw(_dw(_pw(_bn(x, blk.steps[0].norm), agg.pw1), agg.dw), agg.pw2)
    h = _bn(x, blk.steps[1].norm)
    return x + _pw(F.gelu(_pw(h, blk.ffn.fc1)), blk.ffn.fc2)


def global_block_ref(blk, x):
    x = x + _dw(x, blk.pos)
    B, C = x.shape[:2]
    t = x.flatten(2).transpose(1, 2)  # [B, L, C]
    attn, heads = blk.global_, blk.global_.heads
    q, k, v = attn.qkv(blk.steps[0].norm(t)).view(B, -1, 3, heads, C // heads).permute(2, 0, 3, 1, 4)
    a = (q @ k.transpose(-2, -1) / math.sqrt(C // heads)).softmax(-1)
    t = t + attn.proj((a @ v).transpose(1, 2).reshape(B, -1, C))
    t = t + _mlp_tokens(blk.steps[1].norm(t), blk.ffn)
    return t.transpose(1, 2).reshape(x.shape)


@pytest.mark.parametrize("stage", [0, 3])
def test_blocks_follow_the_paper(stage):
    bb = BACKBONES.build(dict(type="video_uniformer_s")).double().eval()
    blk = bb.stages[stage].blocks[0]
    for m in blk.modules():  # BatchNorm with non-trivial running statistics
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
    C = bb.dims[stage]
    x = torch.randn(2, C, 3, 5, 4, dtype=torch.float64)
    out = blk(Tokens(x.flatten(2).transpose(1, 2), grid=(3, 5, 4))).x.transpose(1, 2).reshape(x.shape)
    ref = (local_block_ref if stage < 2 else global_block_ref)(blk, x)
    assert (out - ref).abs().max() < 1e-10


def test_forward_backward_on_a_small_clip():
    model = Classifier(adapter=video_stem(), backbone=dict(type="video_uniformer_s", drop_path_rate=0.0),
                       head=dict(type="ClsHead", num_classes=400)).train()
    x = torch.randn(2, 3, 8, 64, 64)
    feats = model.extract(x)
    assert [s.grid for s in feats.stages] == [(4, 16, 16), (4, 8, 8), (4, 4, 4), (4, 2, 2)]
    logits = model.head(feats)
    assert logits.shape == (2, 400) and torch.isfinite(logits).all()
    logits.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert not missing, f"parameters without gradient: {missing[:5]}"


def test_padded_tokens_are_inert():
    """A ragged batch (clip 1 has 5 of 8 frames): the valid outputs of every stage ignore what the
    padded tokens hold, in eval and in train mode (BatchNorm statistics from valid tokens only)."""
    stem = video_stem()
    bb = BACKBONES.build(dict(type="video_uniformer_s", drop_path_rate=0.0, depths=(1, 1, 1, 1)))
    tokens, _ = stem(dict(inputs=torch.randn(2, 3, 8, 32, 32), lengths=torch.tensor([8, 5])))
    assert tokens.mask.view(2, 4, -1)[:, :, 0].sum(1).tolist() == [4, 3]
    noisy = tokens.replace(x=torch.where(tokens.mask[..., None], tokens.x, 100 * torch.randn_like(tokens.x)))
    for mode in (False, True):
        bb.train(mode)
        with torch.no_grad():
            a, b = bb(tokens), bb(noisy)
        for sa, sb in zip(a.stages, b.stages):
            assert torch.isfinite(sa.x).all() and (sa.x - sb.x)[sa.mask].abs().max() < 1e-4

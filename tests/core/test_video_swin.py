"""Video Swin (``TubeletStem`` + ``video_swin_t`` + ``ClsHead``) is torchvision's ``swin3d_t``: the
same parameter count (28,158,070 at 400 classes) and, with torchvision's weights copied in by
``load_torchvision_swin3d``, the same outputs in float64. The clip is small but exercises every
rule of the reference: the stem pads T, H and W to the tubelet; stage 1 shifts and pads windows in
all three dims; later stages clip windows to the grid (no shift there, bias from the index prefix).
The same loader makes the image Swin-T equal torchvision's ``swin_t`` at 224 pixels."""
import pytest
import torch
from torch import nn

from glocal.core.models.swin import SwinTransformer, load_torchvision_swin, load_torchvision_swin3d
from glocal.core.registry import BACKBONES
from glocal.modalities.video.adapter import TubeletStem
from glocal.tasks.model import Classifier

SWIN3D_T = 28_158_070  # torchvision swin3d_t, Swin3D_T_Weights.KINETICS400_V1.meta["num_params"]
SWIN3D_S, SWIN3D_B = 49_816_678, 88_048_984
CLIP = (1, 3, 19, 37, 35)  # -> tubelet grid (10, 10, 9), then (10, 5, 5), (10, 3, 3), (10, 2, 2)


def n_params(*modules):
    return sum(p.numel() for m in modules for p in m.parameters())


def video_classifier(name="video_swin_t", **overrides):
    return Classifier(adapter=TubeletStem(in_chans=3, dim=96, patch=(2, 4, 4)),
                      backbone=dict(type=name, **overrides), head=dict(type="ClsHead", num_classes=400))


@pytest.fixture(scope="module")
def pair():
    from torchvision.models.video import swin3d_t

    torch.manual_seed(0)
    tv = swin3d_t(weights=None).eval()
    ours = video_classifier().eval()
    load_torchvision_swin3d(ours, tv)
    return ours.double(), tv.double()


def test_parameter_count_is_torchvisions(pair):
    ours, tv = pair
    assert n_params(tv) == SWIN3D_T
    assert n_params(ours) == SWIN3D_T


def test_larger_variants_match_torchvision_counts():
    for name, published in (("video_swin_s", SWIN3D_S), ("video_swin_b", SWIN3D_B)):
        backbone = BACKBONES.build(dict(type=name))
        stem, head = TubeletStem(dim=backbone.in_dim), nn.Linear(backbone.out_dim, 400)
        assert n_params(stem, backbone, head) == published, name


def test_outputs_equal_torchvision_float64(pair):
    ours, tv = pair
    x = torch.randn(*CLIP, dtype=torch.float64)
    with torch.no_grad():
        ref = tv(x)
        out = ours(x)
        feats = ours.extract(x)
    assert [s.grid for s in feats.stages] == [(10, 10, 9), (10, 5, 5), (10, 3, 3), (10, 2, 2)]
    diff = (out - ref).abs().max().item()
    assert diff < 1e-12, f"max |ours - torchvision| = {diff:.3g}"
    # both reference conventions matter: glocal's own (masked window padding, relative bias of a
    # clipped window) give other outputs on this clip
    attns = [blk.local for stage in ours.backbone.stages for blk in stage.blocks]
    for attr, glocal_way in (("pad_keys", "masked"), ("clip_bias", "relative")):
        for a in attns:
            setattr(a, attr, glocal_way)
        with torch.no_grad():
            assert (ours(x) - ref).abs().max() > 1e-6, attr
        for a in attns:
            setattr(a, attr, {"pad_keys": "zeros", "clip_bias": "prefix"}[attr])


def test_every_parameter_gets_a_gradient():
    model = video_classifier(drop_path_rate=0.0).train()
    logits = model(torch.randn(2, 3, 6, 40, 36))
    assert logits.shape == (2, 400) and torch.isfinite(logits).all()
    logits.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert not missing, f"parameters without gradient: {missing[:5]}"


def test_loader_names_a_mismatch():
    from torchvision.models.video import swin3d_t

    small = (TubeletStem(), SwinTransformer(rank=3, window=(8, 7, 7), merge=(1, 2, 2), depths=(2, 2, 2, 2)), None)
    with pytest.raises(ValueError, match="stage 2 has 2 blocks here, 6 in torchvision"):
        load_torchvision_swin3d(small, swin3d_t(weights=None))


def test_image_swin_t_equals_torchvision_swin_t_at_224():
    from torchvision.models import swin_t

    from glocal.modalities.image.adapter import PatchStem

    torch.manual_seed(0)
    tv = swin_t(weights=None).eval()
    ours = Classifier(adapter=PatchStem(in_chans=3, dim=96, patch=4), backbone=dict(type="swin_t"),
                      head=dict(type="ClsHead", num_classes=1000)).eval()
    load_torchvision_swin(ours, tv)
    ours, tv = ours.double(), tv.double()
    x = torch.randn(1, 3, 224, 224, dtype=torch.float64)
    with torch.no_grad():
        diff = (ours(x) - tv(x)).abs().max().item()
    assert diff < 1e-12, f"max |ours - torchvision| = {diff:.3g}"

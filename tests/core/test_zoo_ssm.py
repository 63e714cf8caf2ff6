"""State-space families: Vim-Ti and VMamba-T at their published sizes (whole classifier: patch stem
+ backbone + 1000-way head), a 224x224 forward, and small trainable variants."""
import pytest
import torch

from glocal.core import BACKBONES, Tokens
from glocal.core.models.mamba_vision import VisionMamba, VMamba, vim_ti, vmamba_t
from glocal.modalities.image import PatchStem
from glocal.tasks.heads import ClsHead

# published: Vim-Ti 7 M (Zhu et al. 2024, Table 1), VMamba-T 22 M (Liu et al. 2024, v0 release)
CASES = {
    "vim_ti": (vim_ti, dict(patch=16, dim=192, norm=None), 7e6),
    "vmamba_t": (vmamba_t, dict(patch=4, dim=96, norm="LayerNorm"), 22e6),
}


def _n(m):
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("name", list(CASES))
def test_published_size_and_224_forward(name):
    factory, stem_cfg, published = CASES[name]
    backbone = factory()
    stem, head = PatchStem(in_chans=3, **stem_cfg), ClsHead(backbone.out_dim, 1000)
    total = _n(stem) + _n(backbone) + _n(head)
    assert abs(total - published) / published <= 0.10, total
    backbone.eval()
    with torch.no_grad():
        out = backbone(stem(torch.randn(1, 3, 224, 224)))
        logits = head(out.last)
    assert logits.shape == (1, 1000) and torch.isfinite(logits).all()
    grid = (14, 14) if name == "vim_ti" else (7, 7)
    assert out.last.grid == grid and out.last.x.shape[-1] == backbone.out_dim


def test_vim_structure():
    b = vim_ti()
    blocks = b.stages[0].blocks
    assert len(blocks) == 24 and b.out_dim == 192
    mixer = blocks[0].global_
    assert mixer.direction == "bidirectional" and mixer.merge == "mean" and len(mixer.paths) == 2
    assert blocks[0].ffn is None and blocks[0].local is None


def test_vmamba_structure():
    b = vmamba_t()
    assert [len(s.blocks) for s in b.stages] == [2, 2, 9, 2] and b.dims == [96, 192, 384, 768]
    mixer = b.stages[2].blocks[0].global_
    assert mixer.direction == "grid" and len(mixer.paths) == 4 and mixer.d_inner == 768
    assert b.stages[0].blocks[0].ffn is None


@pytest.mark.parametrize("cls,small,stem_cfg", [
    (VisionMamba, dict(dim=32, depth=2), dict(patch=8, dim=32, norm=None)),
    (VMamba, dict(dim=16, depths=(1, 1)), dict(patch=4, dim=16, norm="LayerNorm")),
])
def test_small_variant_trains_and_masks(cls, small, stem_cfg):
    backbone = cls(d_state=4, drop_path_rate=0.1, **small)
    stem, head = PatchStem(in_chans=3, **stem_cfg), ClsHead(backbone.out_dim, 5)
    x = torch.randn(2, 3, 32, 32)
    loss = torch.nn.functional.cross_entropy(head(backbone(stem(x)).last), torch.tensor([1, 3]))
    loss.backward()
    for module in (stem, backbone, head):
        for name, p in module.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
    # padded tokens on the grid never reach the valid ones
    backbone.eval()
    t, _ = stem(x)
    mask = torch.ones(t.x.shape[:2], dtype=torch.bool)
    mask.view(2, *t.grid)[:, :, -1] = False
    t = t.replace(mask=mask)
    x2 = t.x.clone()
    x2[~mask] = 100.0
    with torch.no_grad():
        a, b = backbone(t), backbone(t.replace(x=x2))
    first = a.stages[0].mask
    torch.testing.assert_close(a.stages[0].x[first], b.stages[0].x[first])


def test_registered_and_buildable_with_overrides():
    for name in ("vim_ti", "vim_s", "vmamba_t", "vmamba_s", "VisionMamba", "VMamba"):
        assert name in BACKBONES
    b = BACKBONES.build(dict(type="vim_ti", depth=2, dim=64))
    assert len(b.stages[0].blocks) == 2 and b.out_dim == 64
    y = b(Tokens(torch.randn(1, 9, 64), grid=(3, 3)))
    assert y.last.x.shape == (1, 9, 64)

"""Parameter and MAC counting: the per-layer rules, extra_macs of attention and message passing,
and Swin-T against its published numbers."""
import pytest
import torch
from torch import nn

from glocal.core import FullAttention, Mlp, Tokens, WindowAttention
from glocal.core.complexity import count, format_count
from glocal.core.mpnn import GINE, GatedGCN


def test_linear_conv_norm_embedding_rules():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(10, 4)
            self.conv = nn.Conv2d(4, 8, 3, padding=1, groups=2)  # [1, 8, 5, 6]
            self.norm = nn.BatchNorm2d(8)
            self.lin = nn.Linear(8, 3)

        def forward(self, idx):
            x = self.emb(idx).permute(0, 3, 1, 2)  # [1, 4, 5, 6]
            x = self.norm(self.conv(x))
            return self.lin(x.flatten(2).transpose(1, 2))  # [1, 30, 3]

    r = count(Net(), torch.randint(0, 10, (1, 5, 6)))
    conv = 8 * 5 * 6 * (4 // 2) * 9
    assert r["conv"].macs == conv
    assert r["norm"].macs == 8 * 5 * 6
    assert r["lin"].macs == 30 * 8 * 3
    assert r["emb"].macs == 0 and r["emb"].params == 40
    assert r.total_macs == conv + 240 + 720
    assert r.total_params == sum(p.numel() for p in Net().parameters())


def test_calls_and_shared_modules():
    lin = nn.Linear(4, 4)
    model = nn.Sequential(lin, nn.ReLU(), lin)  # the same layer twice
    r = count(model, torch.randn(3, 4))
    assert r["0"].calls == 2 and r.total_macs == 2 * 3 * 16
    assert r.total_params == 20  # counted once


def test_mode_restored_and_table():
    model = Mlp(8)
    model.train()
    r = count(model, torch.randn(2, 5, 8), Tokens(torch.randn(2, 5, 8)))
    assert model.training
    assert r.total_macs == 2 * 5 * (8 * 32 * 2)
    text = r.table()
    assert "fc1" in text and "total" in text and format_count(r.total_macs) in text


def test_full_attention_extra_macs():
    B, L, C = 2, 10, 16
    x = torch.randn(B, L, C)
    r = count(FullAttention(C, heads=4), x, Tokens(x))
    assert r.total_macs == B * L * (C * 3 * C + C * C) + 2 * B * L * L * C


def test_window_attention_extra_macs_pads_the_grid():
    B, C = 1, 8
    x = torch.randn(B, 9 * 10, C)  # grid 9x10, window 4 -> padded 12x12, 9 windows of 16
    r = count(WindowAttention(C, heads=2, window=4), x, Tokens(x, grid=(9, 10)))
    # qkv runs on the padded windows (144 cells), proj on the valid grid (90 cells)
    linear = B * (144 * C * 3 * C + 90 * C * C)
    assert r.total_macs == linear + 2 * B * 9 * 16 * 16 * C


def test_message_passing_extra_macs():
    B, L, C, E, De = 2, 5, 8, 12, 3
    x = torch.randn(B, L, C)
    ei = torch.randint(0, B * L, (2, E))
    t = Tokens(x, edge_index=ei, edge_attr=torch.randn(E, De))
    r = count(GINE(C, edge_dim=De, mlp_ratio=2), x, t)
    mlp = B * L * (C * 2 * C + 2 * C * C)
    assert r.total_macs == E * De * C + mlp + 2 * E * C + B * L * C
    r = count(GatedGCN(C, edge_dim=De), x, t)
    assert r.total_macs == E * De * C + E * C * C + 4 * B * L * C * C + 5 * E * C + 2 * B * L * C
    r = count(GatedGCN(C, edge_dim=0), x, t)
    assert r.total_macs == 4 * B * L * C * C + 4 * E * C + 2 * B * L * C


def test_multihead_attention_rule():
    mha = nn.MultiheadAttention(16, 4, batch_first=True)
    q = torch.randn(2, 7, 16)
    r = count(mha, q, q, q, need_weights=False)
    assert r.total_macs == 2 * (4 * 7 * 16 * 16) + 2 * 2 * 7 * 7 * 16


def test_swin_t_matches_published_counts():
    """Swin-T at 224: 28,288,354 parameters (timm) and 4.5 G MACs (paper; Swin's own counter gives
    4.49 G). Stem PatchStem(3, 96, patch 4, LayerNorm), head ClsHead(768, 1000)."""
    pytest.importorskip("glocal.modalities.image")
    from glocal.core.models.swin import swin_t
    from glocal.modalities.image import PatchStem
    from glocal.tasks.heads import ClsHead

    class SwinT(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem, self.backbone, self.head = PatchStem(3, 96, 4, "LayerNorm"), swin_t(), ClsHead(768, 1000)

        def forward(self, img):
            return self.head(self.backbone(self.stem(img)).last)

    r = count(SwinT(), torch.randn(1, 3, 224, 224))
    assert r.total_params == 28_288_354
    assert abs(r.total_macs - 4.5e9) / 4.5e9 < 0.01, r.total_macs
    assert r.total_macs == 4_494_292_224  # stem 14.75M + backbone 4478.77M + head 0.77M

"""Point Transformer V3: serialized patch attention against dense block-diagonal attention, the
published parameter count, gradients and inert padding of a small model on a ragged batch, the
order rotation, and the local/global ablation by config."""
import pytest
import torch

from glocal.core import ClusterUndo, Mamba, Tokens
from glocal.core.models.ptv3 import PointBlock, PointTransformerV3, PTv3Config, ptv3_base, ptv3_small
from glocal.core.registry import BACKBONES
from glocal.core.serialized_attention import SerializedAttention, patch_table, serialized_attention_reference

PTV3_PAPER = 46.2e6  # Wu et al. 2024, Table (ScanNet semantic segmentation)
PTV3_POINTCEPT = 46_166_272  # PT-v3m1 base, counted from Pointcept's layer layout (in 6, no classifier)
PTV3_POINTCEPT_ENCODER = 38_672_640  # the same without the decoder (cls_mode)


# --- serialized attention ----------------------------------------------------------------------------

def _ordered(lengths, L, C=8, seed=0, dtype=torch.float64):
    """Random features, a random order per sample (padding interleaved along it)."""
    gen = torch.Generator().manual_seed(seed)
    mask = torch.zeros(len(lengths), L, dtype=torch.bool)
    for b, n in enumerate(lengths):
        mask[b, torch.randperm(L, generator=gen)[:n]] = True
    order = torch.stack([torch.randperm(L, generator=gen) for _ in lengths])
    return Tokens(torch.randn(len(lengths), L, C, generator=gen, dtype=dtype), mask=mask, order=order)


@pytest.mark.parametrize("tail", ["masked", "overlap"])
@pytest.mark.parametrize("patch", [4, 7, 64])
def test_patch_attention_matches_dense_block_diagonal_attention(patch, tail):
    """Samples of 29, 16 (a multiple of 4), 3 (< patch) and 0 valid tokens of L = 32."""
    torch.manual_seed(0)
    tokens = _ordered([29, 16, 3, 0], 32)
    layer = SerializedAttention(8, heads=2, patch=patch, tail=tail).double()
    x = tokens.x.clone().requires_grad_()
    tokens = tokens.replace(x=x)
    out = layer(x, tokens)
    ref = serialized_attention_reference(layer, x, tokens)
    assert torch.allclose(out, ref, rtol=0, atol=1e-12) and (out[~tokens.mask] == 0).all()
    g = torch.randn_like(out)
    params = [x] + list(layer.parameters())
    for a, b in zip(torch.autograd.grad((out * g).sum(), params), torch.autograd.grad((ref * g).sum(), params)):
        assert torch.allclose(a, b, rtol=0, atol=1e-11)


def test_patch_table_layouts():
    tokens = _ordered([10, 4], 12, dtype=torch.float32)
    masked = patch_table(tokens.order, tokens.mask, 4, "masked")
    overlap = patch_table(tokens.order, tokens.mask, 4, "overlap")
    assert masked.index.shape == overlap.index.shape == (4, 4)  # 3 patches + 1
    assert masked.keys[2].tolist() == [True, True, False, False] and overlap.keys is None
    # the overlapping last patch holds the sample's last 4 tokens along the order; its first two
    # are borrowed from the previous patch and write nothing
    seq = tokens.order[0][tokens.mask[0][tokens.order[0]]]
    assert overlap.index[2].tolist() == seq[6:].tolist()
    assert len(overlap.rows) == len(masked.rows) == 14
    assert sorted(overlap.targets.tolist()) == sorted(tokens.valid_index().tolist())
    # patches never exceed the largest sample: 64 becomes 10
    assert patch_table(tokens.order, tokens.mask, 64).index.shape == (2, 10)


# --- the model ---------------------------------------------------------------------------------------

def test_ptv3_base_parameter_count():
    with torch.device("meta"):
        full = ptv3_base()
        encoder = ptv3_base(dec_depths=())
    n = sum(p.numel() for p in full.parameters())
    assert n == PTV3_POINTCEPT and abs(n - PTV3_PAPER) / PTV3_PAPER < 0.05
    assert sum(p.numel() for p in encoder.parameters()) == PTV3_POINTCEPT_ENCODER
    assert [len(s) for s in full.enc] == [2, 2, 2, 6, 2] and [len(s) for s in full.dec] == [2, 2, 2, 2]
    blk = full.enc[4].blocks[1]
    assert blk.block.local.heads == 32 and blk.block.local.patch == 1024 and blk.order_index == 1
    assert full.dims == [64] and encoder.dims == [32, 64, 128, 256, 512]


def tiny(**overrides) -> PointTransformerV3:
    cfg = PTv3Config(grid_size=0.05, stride=(2, 2), enc_depths=(1, 2, 1), enc_channels=(16, 24, 32),
                     enc_heads=(2, 2, 4), enc_patch=48, dec_depths=(1, 1), dec_channels=(16, 24), dec_heads=(2, 2),
                     dec_patch=48, drop_path_rate=0.1)
    return PointTransformerV3(cfg, **overrides)


def _clouds(lengths=(300, 500), L=None, seed=0):
    gen = torch.Generator().manual_seed(seed)
    L = L or max(lengths)
    mask = torch.arange(L)[None] < torch.tensor(lengths)[:, None]
    pos = torch.rand(len(lengths), L, 3, generator=gen)
    return Tokens(torch.randn(len(lengths), L, 6, generator=gen), mask=mask, pos=pos)


@pytest.mark.parametrize("decoder", [True, False], ids=["unet", "encoder"])
def test_every_parameter_gets_a_gradient_on_a_ragged_batch(decoder):
    torch.manual_seed(0)
    model = tiny() if decoder else tiny(dec_depths=())
    tokens = _clouds()
    out = model(tokens)
    if decoder:
        assert len(out.stages) == 1 and out.undo == [None] and out.last.x.shape == (2, 500, 16)
        assert out.last.mask is tokens.mask
    else:
        assert [s.dim for s in out.stages] == [16, 24, 32] and out.undo[0] is None
        assert all(isinstance(u, ClusterUndo) for u in out.undo[1:])
        assert out.undo[1].up(out.stages[1].x).shape == (2, 500, 24)
    y = out.last.x
    assert torch.isfinite(y).all()
    (y * torch.randn_like(y))[out.last.mask].sum().backward()
    bad = [n for n, p in model.named_parameters()
           if p.grad is None or not torch.isfinite(p.grad).all() or not p.grad.any()]
    assert not bad, bad


def _valid(out, tokens):
    return out.last.x[tokens.mask]


def test_padding_is_inert():
    """Valid outputs unchanged when padded values change (eval and train mode: BatchNorm over valid
    tokens only), when padding is added, and when another (padded) cloud joins the batch (eval)."""
    model = tiny()
    tokens = _clouds()
    noisy = tokens.replace(x=tokens.x.masked_fill(~tokens.mask[..., None], 1e3),
                           pos=tokens.pos.masked_fill(~tokens.mask[..., None], -7.0))
    for mode in ("eval", "train"):
        getattr(model, mode)()
        torch.manual_seed(1)
        base = model(tokens)
        torch.manual_seed(1)
        other = model(noisy)
        assert torch.allclose(_valid(base, tokens), _valid(other, tokens), rtol=0, atol=1e-5), mode
    model.eval()
    base = model(tokens).last.x
    with torch.no_grad():
        wide = tokens.replace(x=torch.cat([tokens.x, torch.randn(2, 40, 6)], 1),
                              pos=torch.cat([tokens.pos, torch.rand(2, 40, 3)], 1),
                              mask=torch.cat([tokens.mask, torch.zeros(2, 40, dtype=torch.bool)], 1))
        third = _clouds((420,), L=540, seed=7)  # another cloud, larger than the batch's padding
        more = Tokens(torch.cat([wide.x, third.x]), mask=torch.cat([wide.mask, third.mask]),
                      pos=torch.cat([wide.pos, third.pos]))
        for t in (wide, more):
            out = model(t).last.x[:2, :500]
            assert torch.allclose(out[tokens.mask], base[tokens.mask], rtol=0, atol=1e-5)


def test_blocks_rotate_through_the_orders():
    model = tiny(orders=("z", "hilbert", "z-trans")).eval()
    seen = []
    for name, mod in model.named_modules():
        if isinstance(mod, SerializedAttention):
            mod.register_forward_pre_hook(lambda m, args, name=name: seen.append((name, args[1])))
    model(_clouds())
    assert len(seen) == 4 + 2
    for name, tokens in seen:
        block = model.get_submodule(name.rsplit(".block.", 1)[0])
        assert isinstance(block, PointBlock)
        assert tokens.order is tokens.extras["orders"][block.order_index % 3]
    stage1 = [t for n, t in seen if n.startswith("enc.1.")]
    assert stage1[0].order is not stage1[1].order  # block 0 on "z", block 1 on "hilbert"
    # while training every level's curves come in a random order (PTv3's shuffle_orders)
    model.train()
    firsts = set()
    for seed in range(8):
        seen.clear()
        torch.manual_seed(seed)
        model(_clouds())
        firsts.add(tuple(seen[0][1].order[0, :20].tolist()))
    assert len(firsts) > 1


def test_a_global_mixer_per_block_by_config():
    """The ablation: the serialized patch attention is the local encoder; a global mixer (here a
    bidirectional Mamba scan along the block's serialisation) in every second block."""
    mamba = dict(type="Mamba", direction="order_bidirectional", d_state=4)
    model = tiny(global_=[None, mamba])
    blocks = [m for m in model.modules() if isinstance(m, PointBlock)]
    assert [b.block.global_ is not None for b in model.enc[1].blocks] == [False, True]
    assert all(isinstance(b.block.global_, Mamba) for b in blocks if b.order_index % 2)
    out = model(_clouds((120, 90)))
    assert torch.isfinite(out.last.x).all()
    every = BACKBONES.build(dict(type="ptv3_small", global_=dict(type="LinearAttention", heads=2), grid_size=0.05))
    assert all(b.block.global_ is not None for b in every.modules() if isinstance(b, PointBlock))


def test_batch_norm_momentum_by_config():
    """Pointcept's momentum 0.01 by default; ``bn_momentum`` reaches the embedding, every pooling and
    every unpooling norm (short schedules need 0.1: the running statistics must keep up)."""
    def momenta(model):
        return {m.momentum for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d)}

    assert momenta(ptv3_small()) == {0.01}
    model = ptv3_small(bn_momentum=0.1)
    assert momenta(model) == {0.1}
    assert sum(isinstance(m, torch.nn.BatchNorm1d) for m in model.modules()) == 1 + len(model.down) + 2 * len(model.up)

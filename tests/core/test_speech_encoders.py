"""Speech encoders beyond Conformer: Squeezeformer (its Temporal U-Net: shapes and masks at every
block, the reduction and the recovery), the Mamba (Samba-ASR-like) and MossFormer-like encoders;
every one with ragged batches whose padding is inert, every parameter learning; parameter counts at
the published sizes and the small matched configurations proposed for CPU training."""
import pytest
import torch

from glocal.core import Tokens
from glocal.core.models.mamba_asr import MambaASR
from glocal.core.models.mossformer import MossFormer
from glocal.core.models.squeezeformer import Squeezeformer, TemporalUNet, TimeReduction
from glocal.core.registry import BACKBONES, DOWNSAMPLERS


def _n(m):
    return sum(p.numel() for p in m.parameters())


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def _ragged(lengths, dim, dtype=torch.float64, seed=0):
    """Tokens ``[B, max(lengths), dim]`` on a 1D grid, trailing padding after each length."""
    gen = torch.Generator().manual_seed(seed)
    L = max(lengths)
    x = torch.randn(len(lengths), L, dim, generator=gen, dtype=dtype)
    mask = torch.arange(L) < torch.tensor(lengths)[:, None]
    return Tokens(x, mask=mask, grid=(L,))


SMALL = {  # tiny members of each family, float64-exact checks
    "squeezeformer": lambda: Squeezeformer(dim=16, depth=6, heads=2, kernel=5, dropout=0.0),
    "mamba_asr": lambda: MambaASR(dim=16, depth=2, d_state=4, kernel=5, dropout=0.0, chunk=8),
    "mamba_asr_dwconv": lambda: MambaASR(dim=16, depth=2, d_state=4, kernel=5, local="DepthwiseConv", dropout=0.0),
    "mossformer": lambda: MossFormer(dim=16, depth=2, heads=2, chunk=8, kernel=5, dropout=0.0),
    "mossformer_favor": lambda: MossFormer(dim=16, depth=1, heads=2, chunk=6, kernel=5, dropout=0.0,
                                           feature_map="favor", rel_pos=False),
}


# --- Squeezeformer's Temporal U-Net -------------------------------------------------------------------

def test_temporal_unet_shapes_and_masks_at_every_block():
    model = Squeezeformer(dim=16, depth=6, heads=2, kernel=5, dropout=0.0)
    unet = model.unet
    assert isinstance(unet, TemporalUNet) and (unet.reduce_at, unet.recover_at) == (2, 5)  # depth // 2 - 1, depth - 1
    seen = []
    hooks = [b.register_forward_hook(lambda m, args, out: seen.append((out.grid, out.mask.sum(1).tolist())))
             for b in unet.blocks]
    tokens = _ragged([23, 15, 6], 16, torch.float32)
    out = model(tokens)
    for h in hooks:
        h.remove()
    full, half = ((23,), [23, 15, 6]), ((12,), [12, 8, 3])  # ceil(n / 2) frames at half rate
    assert seen == [full, full, half, half, half, full]
    last = out.last
    assert len(out.stages) == 1 and last.x.shape == (3, 23, 16) and last.grid == (23,)
    assert torch.equal(last.mask, tokens.mask) and torch.isfinite(last.x).all()


def test_time_reduction_and_recovery():
    red = TimeReduction(8, 8)
    assert _n(red) == 8 * 5 + 8 + 8 * 8 + 8  # depthwise k5 + pointwise: separable, not a full conv
    tokens = _ragged([9, 4], 8, torch.float32)
    coarse, undo = red(tokens)
    assert coarse.grid == (5,) and coarse.mask.sum(1).tolist() == [5, 2] and undo.fine is tokens
    # the recovery: every coarse frame repeated twice (cropped to the fine length), a Linear, plus the skip
    unet = TemporalUNet(8, dict(type="LocalGlobalBlock", ffn=dict(type="Mlp", ratio=1.0)), depth=2,
                        reduce_at=1, recover_at=2)
    y = torch.randn(2, 5, 8)
    back = unet._recover(coarse.replace(x=y), undo)
    want = tokens.x + unet.recover(y.repeat_interleave(2, dim=1)[:, :9])
    assert torch.allclose(back.x, want) and back.mask is tokens.mask and back.grid == (9,)
    assert isinstance(DOWNSAMPLERS.build(dict(type="TimeReduction"), dim=8), TimeReduction)
    with pytest.raises(Exception, match="reduce_at < recover_at"):
        TemporalUNet(8, dict(type="LocalGlobalBlock"), depth=4, reduce_at=3, recover_at=2)


def test_unet_recovery_after_the_last_block():
    model = Squeezeformer(dim=16, depth=4, heads=2, kernel=5, dropout=0.0, reduce_at=1, recover_at=4)
    out = model(_ragged([11, 7], 16, torch.float32)).last
    assert out.x.shape == (2, 11, 16) and out.mask.sum(1).tolist() == [11, 7]


def test_squeezeformer_block_layout():
    block = Squeezeformer(dim=16, depth=2, heads=2, kernel=5, reduce_at=1, recover_at=2).unet.blocks[0]
    kinds = [type(s.fn).__name__ for s in block.steps]
    assert kinds == ["FullAttention", "Mlp", "ConvModule", "Mlp"]  # MF/CF, no macaron
    conv = block.steps[2].fn
    assert not conv.glu and conv.dw.conv.in_channels == 32  # Swish instead of GLU: 2C depthwise channels
    for s in block.steps:  # post-LN with a learnable scale and bias on the step's input
        assert s.scale.shape == s.bias.shape == (16,) and type(s.norm).__name__ == "TokenNorm"


# --- every encoder: ragged batches, inert padding, gradients ------------------------------------------

@pytest.mark.parametrize("name", list(SMALL))
def test_ragged_batch_equals_each_utterance_alone(name):
    """Eval mode, float64: with trailing padding, every utterance gets its outputs alone."""
    torch.manual_seed(0)
    model = SMALL[name]().double().eval()
    lengths = [29, 17, 9]
    tokens = _ragged(lengths, 16)
    with torch.no_grad():
        out = model(tokens).last.x
        for b, n in enumerate(lengths):
            alone = model(Tokens(tokens.x[b:b + 1, :n], grid=(n,))).last.x
            assert (out[b, :n] - alone[0]).abs().max() < 1e-10, (name, b)


@pytest.mark.parametrize("name", list(SMALL))
def test_padding_inert_in_training_and_every_parameter_learns(name):
    """Train mode (BatchNorm statistics over valid frames only): new features at padded frames leave
    the valid outputs unchanged; no gradient reaches padded frames; every parameter gets one."""
    torch.manual_seed(0)
    model = SMALL[name]().double().train()
    tokens = _ragged([26, 13], 16)
    x = tokens.x.clone().requires_grad_()
    out = model(tokens.replace(x=x)).last.x
    noisy = torch.where(tokens.mask[..., None], tokens.x, 1e3 * torch.randn_like(tokens.x))
    with torch.no_grad():
        out2 = model(tokens.replace(x=noisy)).last.x
    valid = tokens.mask
    assert torch.isfinite(out).all() and torch.isfinite(out2).all()
    assert (out - out2)[valid].abs().max() < 1e-9, name
    weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=out.dtype)
    (out * weight)[valid].sum().backward()
    assert (x.grad[~valid] == 0).all(), name
    missing = [n for n, p in model.named_parameters() if p.grad is None or not (p.grad != 0).any()]
    assert not missing, f"{name}: parameters without gradient {missing}"


def test_mamba_and_mossformer_structure():
    mamba = MambaASR(dim=16, depth=2, d_state=4, kernel=5)
    block = mamba.stages[0].blocks[0]
    assert type(block.local).__name__ == "ConvModule" and block.ffn is not None
    assert block.global_.direction == "bidirectional" and len(block.global_.paths) == 2
    moss = MossFormer(dim=16, depth=3, heads=2, chunk=8, kernel=5)
    blocks = moss.stages[0].blocks
    assert len(blocks) == 6  # (convolution; joint attention + FFN) per layer
    conv, joint = blocks[0], blocks[1]
    assert type(conv.local).__name__ == "ConvModule" and conv.global_ is None and conv.ffn is None
    assert joint.composition == "parallel" and joint.local.window == (8,) and joint.local.shift == (0,)
    assert type(joint.global_).__name__ == "LinearAttention" and not joint.global_.causal


def test_chunk_attention_stays_in_its_chunk():
    """Without the global branch, a frame's output depends on its own chunk only (one block)."""
    from glocal.core import LocalGlobalBlock
    block = LocalGlobalBlock(16, local=dict(type="WindowAttention", heads=2, window=8, rank=1), ffn=None).double()
    tokens = _ragged([24], 16)
    x2 = tokens.x.clone()
    x2[0, 8:16] += 1.0  # change chunk 1
    a, b = block(tokens).x, block(tokens.replace(x=x2)).x
    assert torch.equal(a[0, :8], b[0, :8]) and torch.equal(a[0, 16:], b[0, 16:])
    assert (a[0, 8:16] - b[0, 8:16]).abs().max() > 1e-3


# --- parameter counts ---------------------------------------------------------------------------------

def test_published_sizes():
    from glocal.modalities.audio.adapter import SubsampleStem
    counts = {name: _n(BACKBONES.build(dict(type=name)))
              for name in ("conformer_s", "squeezeformer_xs", "squeezeformer_s", "mamba_asr_s", "mossformer_s")}
    print("\nencoder parameters:", {k: f"{v:,}" for k, v in counts.items()})
    assert counts["conformer_s"] == 7_771_392  # torchaudio's Conformer layers (tests/core/test_zoo_conformer.py)
    assert counts["squeezeformer_xs"] == 8_238_240  # 16 blocks 8,195,328 + reduction + recovery + input LN
    # the paper counts the whole CTC model with relative positional attention: add the separable
    # stem at 80 bins, a 128-piece CTC head (+ blank) and Transformer-XL's linear_pos + u, v per layer
    for name, dim, depth, paper in (("squeezeformer_xs", 144, 16, 9.0e6), ("squeezeformer_s", 196, 18, 18.6e6)):
        stem, head, rel_pos = _n(SubsampleStem(80, dim, separable=True)), dim * 129 + 129, depth * (dim * dim + 2 * dim)
        total = counts[name] + stem + head + rel_pos
        assert abs(total - paper) / paper < 0.01, (name, total)
    for name in ("mamba_asr_s", "mossformer_s"):  # sized to Conformer-S's encoder
        assert abs(counts[name] / counts["conformer_s"] - 1) < 0.02, (name, counts[name])


def small_matched_configs(dim: int = 144, depth: int = 6) -> dict:
    """The small configurations proposed for CPU training (dim 144, 6 layers, about 1.9 M encoder
    parameters each, within 10% of each other): Conformer and Squeezeformer, the same pre-norm
    ``LocalGlobalBlock`` with the convolution module only, attention only, or both, and the Mamba
    and MossFormer-like encoders. FFN widths absorb the mixers' size differences."""
    conv = dict(type="ConvModule", kernel=31, rank=1, drop=0.1)
    attn = dict(type="FullAttention", heads=4, attn_drop=0.1, proj_drop=0.1)

    def mlp(hidden):
        return dict(type="Mlp", hidden=hidden, act="SiLU", drop=0.1)

    return {
        "conformer": dict(type="Conformer", dim=dim, depth=depth, heads=4, ffn_ratio=2.0, kernel=31),
        "squeezeformer": dict(type="Squeezeformer", dim=dim, depth=depth, heads=4, ffn_ratio=1.6, kernel=31),
        "local_global": dict(type="IsotropicBackbone", in_dim=dim, depth=depth,
                             blocks=dict(local=conv, global_=attn, ffn=mlp(576))),
        "local_only": dict(type="IsotropicBackbone", in_dim=dim, depth=depth, blocks=dict(local=conv, ffn=mlp(864))),
        "global_only": dict(type="IsotropicBackbone", in_dim=dim, depth=depth, blocks=dict(global_=attn, ffn=mlp(800))),
        "mamba_asr": dict(type="MambaASR", dim=dim, depth=depth, ffn_ratio=2.0),
        "mossformer": dict(type="MossFormer", dim=dim, depth=depth, ffn_ratio=2.0),
    }


def test_small_matched_configs_are_within_ten_percent():
    models = {k: BACKBONES.build(cfg) for k, cfg in small_matched_configs().items()}
    counts = {k: _n(m) for k, m in models.items()}
    print("\nsmall matched encoders:", {k: f"{v:,}" for k, v in counts.items()})
    assert max(counts.values()) / min(counts.values()) < 1.10
    assert all(1.5e6 < v < 2.5e6 for v in counts.values())
    tokens = _ragged([20, 11], 144, torch.float32)
    for name, m in models.items():
        out = m(tokens).last
        assert out.x.shape == (2, 20, 144) and torch.isfinite(out.x).all(), name

"""Rank-3 grid mixers on the tokens a video adapter makes: ``TubeletStem`` -> ``(T', H', W')`` grid
Tokens (with a frame mask for ragged clips) -> a ``LocalGlobalBlock`` of 3D neighbourhood attention
(local) and the 3D cross-scan SS2D (global), alone and as a two-stage backbone joined by the stem's
own downsampler (1x2x2 patch merging). Forward and backward, every parameter trained, padding inert."""
import pytest
import torch

from glocal.core import Backbone, LocalGlobalBlock
from glocal.modalities.video.adapter import TubeletStem

DIM = 32
BLOCK = dict(local=dict(type="NeighborhoodAttention", heads=2, kernel=3, rank=3),
             global_=dict(type="SS2D", d_state=4, rank=3))


def clips():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 24, 20)
    return dict(inputs=x, lengths=torch.tensor([8, 5]))  # clip 1: 5 valid frames -> 3 of 4 token frames


def _noisy(tokens):
    """The same tokens with large random features at the padded ones."""
    noise = 100 * torch.randn(tokens.x.shape, generator=torch.Generator().manual_seed(1))
    return tokens.replace(x=torch.where(tokens.mask[..., None], tokens.x, noise))


@pytest.mark.parametrize("backend", ["auto", "torch"])
def test_block_on_stem_tokens(backend):
    stem = TubeletStem(in_chans=3, dim=DIM, patch=(2, 4, 4))
    block = LocalGlobalBlock(DIM, local={**BLOCK["local"], "backend": backend}, global_=BLOCK["global_"])
    tokens, _ = stem(clips())
    assert tokens.grid == (4, 6, 5) and tokens.mask.sum(1).tolist() == [120, 90]
    out = block(tokens)
    assert out.x.shape == tokens.x.shape and torch.isfinite(out.x).all()
    out.x[tokens.mask].square().mean().backward()
    missing = [n for n, p in [*stem.named_parameters(), *block.named_parameters()]
               if p.grad is None or not p.grad.abs().sum()]
    assert not missing, f"parameters without gradient: {missing[:5]}"
    for mode in (False, True):
        block.train(mode)
        with torch.no_grad():
            a, b = block(tokens).x, block(_noisy(tokens)).x
        assert torch.isfinite(b).all() and (a - b)[tokens.mask].abs().max() < 1e-4


def test_two_stage_backbone_with_the_stems_downsampler():
    stem = TubeletStem(in_chans=3, dim=DIM, patch=(2, 4, 4))
    bb = Backbone(DIM, [dict(dim=DIM, depth=1, blocks=BLOCK), dict(dim=2 * DIM, depth=1, blocks=BLOCK)],
                  downsample=stem.downsample)
    out = bb(stem(clips()))
    assert [s.grid for s in out.stages] == [(4, 6, 5), (4, 3, 3)]
    assert out.stages[1].mask.view(2, 4, 9)[:, :, 0].sum(1).tolist() == [4, 3]
    out.last.x[out.last.mask].mean().backward()
    missing = [n for n, p in [*stem.named_parameters(), *bb.named_parameters()]
               if p.grad is None or not p.grad.abs().sum()]
    assert not missing, f"parameters without gradient: {missing[:5]}"
    tokens, _ = stem(clips())
    with torch.no_grad():
        a, b = bb(tokens), bb(_noisy(tokens))
    for sa, sb in zip(a.stages, b.stages):
        assert (sa.x - sb.x)[sa.mask].abs().max() < 1e-4

"""TubeletStem: torchvision's PatchEmbed3d with its weights (padding T, H, W to the tubelet), the
overlapping UniFormer stem, ragged clips (lengths / frame mask: valid tokens as for the clip alone),
the undo back to the voxels, and clear errors."""
import pytest
import torch

from glocal.core.errors import ConfigError, InputError
from glocal.modalities.video.adapter import TubeletStem


def test_equals_torchvision_patch_embed3d_with_padding():
    from functools import partial

    from torchvision.models.video.swin_transformer import PatchEmbed3d

    tv = PatchEmbed3d([2, 4, 4], in_channels=3, embed_dim=24, norm_layer=partial(torch.nn.LayerNorm, eps=1e-5))
    stem = TubeletStem(in_chans=3, dim=24, patch=(2, 4, 4))
    stem.proj.load_state_dict(tv.proj.state_dict())
    stem.norm.norm.load_state_dict(tv.norm.state_dict())
    x = torch.randn(2, 3, 7, 18, 13, dtype=torch.float64)
    tokens, undo = stem.double()(x)
    ref = tv.double()(x)  # [B, T', H', W', C]
    assert tokens.grid == (4, 5, 4) == tuple(ref.shape[1:4]) and tokens.mask is None
    assert (tokens.x - ref.reshape(2, -1, 24)).abs().max() < 1e-12
    assert undo.grid == (7, 18, 13) and undo.coarse_grid == tokens.grid
    assert undo.up(tokens.x).shape == (2, 7 * 18 * 13, 24)


def test_overlapping_temporal_kernel_is_uniformers_stem():
    stem = TubeletStem(in_chans=3, dim=16, patch=(2, 4, 4), kernel=(3, 4, 4), norm=None).double()
    assert stem.proj.padding == (1, 0, 0)
    x = torch.randn(1, 3, 8, 16, 16, dtype=torch.float64)
    ref = torch.nn.functional.conv3d(x, stem.proj.weight, stem.proj.bias, stride=(2, 4, 4), padding=(1, 0, 0))
    tokens, _ = stem(x)
    assert tokens.grid == (4, 4, 4) and (tokens.x - ref.flatten(2).transpose(1, 2)).abs().max() < 1e-12
    assert stem(torch.randn(1, 3, 7, 15, 16, dtype=torch.float64))[0].grid == (4, 4, 4)  # ceil(T / 2), padded


@pytest.mark.parametrize("kernel", [None, (3, 4, 4)])
def test_ragged_clips_give_the_tokens_of_each_clip_alone(kernel):
    stem = TubeletStem(in_chans=3, dim=8, patch=(2, 4, 4), kernel=kernel).double()
    clips = torch.randn(2, 3, 9, 16, 12, dtype=torch.float64)
    clips[1, :, 5:] = 1e3  # padding content must not matter
    tokens, undo = stem(dict(inputs=clips, lengths=torch.tensor([9, 5])))
    assert tokens.grid == (5, 4, 3)
    valid_t = tokens.mask.view(2, 5, 12)
    assert valid_t[0].all() and valid_t[1, :3].all() and not valid_t[1, 3:].any()  # ceil(5 / 2) frames of tokens
    assert (tokens.x[~tokens.mask] == 0).all()
    alone, _ = stem(clips[1:, :, :5])
    assert (tokens.x[1].view(5, 12, 8)[:3] - alone.x[0].view(3, 12, 8)).abs().max() < 1e-12
    by_mask, _ = stem(dict(inputs=clips, mask=torch.arange(9) < torch.tensor([[9], [5]])))
    assert torch.equal(by_mask.x, tokens.x) and torch.equal(by_mask.mask, tokens.mask)
    fine = undo.restore(undo.up(tokens.x))  # back on the voxels, with the frame mask
    assert fine.grid == (9, 16, 12) and fine.mask.view(2, 9, -1)[:, :, 0].sum(1).tolist() == [9, 5]


def test_clear_errors():
    stem = TubeletStem(in_chans=3, dim=8)
    with pytest.raises(InputError, match=r"x\[None\]"):
        stem(torch.randn(3, 4, 8, 8))
    with pytest.raises(InputError, match=r"fold them into the batch"):
        stem(torch.randn(1, 2, 3, 4, 8, 8))  # multi-view [B, V, C, T, H, W]
    with pytest.raises(InputError, match=r"transpose\(1, 2\)"):
        stem(torch.randn(1, 4, 3, 8, 8))  # [B, T, C, H, W]
    with pytest.raises(InputError, match="lengths"):
        stem(dict(inputs=torch.randn(2, 3, 4, 8, 8), lengths=torch.tensor([4, 6])))
    with pytest.raises(InputError, match="padded at the end"):
        stem(dict(inputs=torch.randn(1, 3, 4, 8, 8), mask=torch.tensor([[False, True, True, True]])))
    with pytest.raises(ConfigError, match="patch"):
        TubeletStem(patch=(2, 4))

"""The audio subsampling stem: shapes, lengths and mask from the conv arithmetic, padded frames inert
(a ragged batch gives every utterance exactly its outputs alone), the undo back to the frames, and
clear errors."""
import pytest
import torch

from glocal.core.errors import ConfigError, InputError
from glocal.core.undo import GridUndo
from glocal.modalities.audio.adapter import SubsampleStem, SubsampleUndo, conv_output_length, sinusoidal_encoding
from glocal.modalities.batch import PadCollate

BINS = 20  # small filterbanks keep the convolutions cheap


def _batch(lengths, bins=BINS, dtype=torch.float32, seed=0, paths=False):
    gen = torch.Generator().manual_seed(seed)
    samples = [dict(inputs=torch.randn(n, bins, generator=gen, dtype=dtype)) for n in lengths]
    if paths:
        for n, s in zip(lengths, samples):
            s["path"] = f"/data/utt_{n}.flac"
    return PadCollate()(samples)


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def test_shapes_lengths_mask_and_grid():
    stem = SubsampleStem(in_bins=BINS, dim=16, channels=8)
    batch = _batch([100, 61, 7])
    assert set(batch) >= {"inputs", "lengths", "mask"}  # PadCollate's keys, read by the stem
    tokens, undo = stem(batch)
    # 100 -> 49 -> 24; 61 -> 30 -> 14; 7 -> 3 -> 1 (n -> (n - 3) // 2 + 1 per layer)
    assert tokens.x.shape == (3, 24, 16) and tokens.grid == (24,)
    assert tokens.mask.sum(1).tolist() == [24, 14, 1]
    assert torch.equal(tokens.mask, torch.arange(24) < torch.tensor([24, 14, 1])[:, None])
    assert (tokens.x[~tokens.mask] == 0).all()
    assert stem.out_dim == 16 and stem.factor == 4 and stem.min_frames == 7 and stem.bins_out == 4
    assert isinstance(undo, GridUndo) and undo.grid == (100,) and undo.factors == (4,)
    # a bare tensor: full-length utterances, no mask
    tokens, _ = stem(torch.randn(2, 30, BINS))
    assert tokens.mask is None and tokens.x.shape == (2, 6, 16)
    # a batch with a mask but no lengths
    t2, _ = stem(dict(inputs=batch["inputs"], mask=batch["mask"]))
    assert torch.equal(t2.mask, stem(batch)[0].mask)


@pytest.mark.parametrize("layers,kernel,stride", [(2, 3, 2), (3, 3, 2), (1, 5, 3)])
def test_output_lengths_follow_the_convolutions(layers, kernel, stride):
    stem = SubsampleStem(in_bins=BINS, dim=8, channels=4, layers=layers, kernel=kernel, stride=stride)
    for n in range(stem.min_frames, stem.min_frames + 12):
        tokens, _ = stem(torch.randn(1, n, BINS))
        want = conv_output_length(n, layers, kernel, stride)
        assert tokens.x.shape[1] == int(stem.output_lengths(torch.tensor([n]))) == want
    assert conv_output_length(stem.min_frames - 1, layers, kernel, stride) == 0


@pytest.mark.parametrize("separable", [False, True])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_a_ragged_batch_gives_each_utterance_its_outputs_alone(separable, dtype, tol):
    """Valid tokens of a padded batch equal those of each utterance run alone (no padding at all)."""
    stem = SubsampleStem(in_bins=BINS, dim=16, channels=8, separable=separable, pos_enc="sinusoidal").to(dtype)
    lengths = [53, 30]
    batch = _batch(lengths, dtype=dtype)
    tokens, _ = stem(batch)
    for b, n in enumerate(lengths):
        alone, _ = stem(batch["inputs"][b:b + 1, :n])
        k = alone.x.shape[1]
        assert int(tokens.mask[b].sum()) == k
        assert (tokens.x[b, :k] - alone.x[0]).abs().max() <= tol


def test_padded_frames_never_reach_valid_tokens():
    stem = SubsampleStem(in_bins=BINS, dim=16, channels=8).double()
    batch = _batch([41, 19], dtype=torch.float64)
    x = batch["inputs"].clone().requires_grad_()
    tokens, _ = stem(dict(batch, inputs=x))
    noisy = torch.where(batch["mask"][..., None], batch["inputs"], 1e3 * torch.randn_like(batch["inputs"]))
    tokens2, _ = stem(dict(batch, inputs=noisy))
    valid = tokens.mask
    assert torch.equal(tokens.x[valid], tokens2.x[valid])
    tokens.x[valid].sum().backward()
    assert (x.grad[~batch["mask"]] == 0).all() and (x.grad[batch["mask"]] != 0).any()
    # every stem parameter learns from the valid tokens
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in stem.parameters())


def test_undo_maps_tokens_back_to_frames():
    stem = SubsampleStem(in_bins=BINS, dim=8, channels=4)
    batch = _batch([30, 22])
    tokens, undo = stem(batch)
    assert isinstance(undo, SubsampleUndo) and undo.frames == 6  # 30 -> 14 -> 6; ceil(30 / 4) = 8
    feats = torch.arange(6.0).view(1, 6, 1).expand(2, 6, 1)
    up = undo.up(feats)  # [B, 30, 1]
    want = torch.clamp(torch.arange(30) // 4, max=5).float()  # frame f -> token min(f // 4, T' - 1)
    assert up.shape == (2, 30, 1) and torch.equal(up[0, :, 0], want)
    assert undo.up(tokens.x, mode="linear").shape == (2, 30, 8)
    fine = undo.restore(up)
    assert fine.grid == (30,) and torch.equal(fine.mask, batch["mask"])
    with pytest.raises(InputError, match="6 tokens"):
        undo.up(feats[:, :5])


def test_squeezeformer_stem_is_depthwise_separable():
    """Squeezeformer-XS's stem at 80 bins: conv 1 -> 144 (1,440), depthwise 3x3 (1,440) + pointwise
    (20,880), Linear 144 * 19 -> 144 (394,128); Conformer's has a full second conv (186,768)."""
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    sep, full = SubsampleStem(80, 144, separable=True), SubsampleStem(80, 144)
    assert n(sep) == 1_440 + 1_440 + 20_880 + 394_128
    assert n(full) == 1_440 + 186_768 + 394_128
    assert sep.convs[2].groups == 144 and sep.convs[3].kernel_size == (1, 1)
    tokens, _ = sep(_batch([50], bins=80))
    assert tokens.x.shape == (1, 11, 144)


def test_sinusoidal_encoding():
    pe = sinusoidal_encoding(10, 6, torch.zeros(()))
    assert pe.shape == (10, 6) and torch.allclose(pe[0], torch.tensor([0.0, 1, 0, 1, 0, 1]))
    t = torch.tensor(3.0)
    assert torch.allclose(pe[3, 0], torch.sin(t)) and torch.allclose(pe[3, 1], torch.cos(t))
    stem = SubsampleStem(BINS, 8, channels=4, pos_enc="sinusoidal")
    plain = SubsampleStem(BINS, 8, channels=4)
    plain.load_state_dict(stem.state_dict())
    x = torch.randn(1, 40, BINS)
    assert torch.allclose(stem(x)[0].x - plain(x)[0].x, sinusoidal_encoding(9, 8, x))


# --- errors -----------------------------------------------------------------------------------------

def test_too_short_utterance_names_frames_and_file():
    stem = SubsampleStem(in_bins=BINS, dim=8, channels=4)
    with pytest.raises(InputError, match=r"utterance 1 of the batch \(/data/utt_6.flac\) has 6 frames.*at least 7"):
        stem(_batch([20, 6], paths=True))
    with pytest.raises(InputError, match=r"utterance 0 of the batch has 5 frames.*at least 7"):
        stem(torch.randn(1, 5, BINS))
    three = SubsampleStem(in_bins=BINS, dim=8, channels=4, layers=3)
    assert three.min_frames == 15
    with pytest.raises(InputError, match="at least 15 frames"):
        three(_batch([14]))


def test_wrong_bins_rank_and_dtype():
    stem = SubsampleStem(in_bins=BINS, dim=8, channels=4)
    with pytest.raises(InputError, match=f"built for {BINS} frequency bins.*have 13.*in_bins=13"):
        stem(torch.randn(2, 40, 13))
    with pytest.raises(InputError, match="transposed.*time must come first"):
        stem(torch.randn(2, BINS, 40))
    with pytest.raises(InputError, match=r"\[B, T, F\].*add the batch dim"):
        stem(torch.randn(40, BINS))
    with pytest.raises(InputError, match=r"\[B, T, F\].*drop the channel dim"):
        stem(torch.randn(2, 1, 40, BINS))
    with pytest.raises(InputError, match="float features"):
        stem(torch.zeros(2, 40, BINS, dtype=torch.long))
    with pytest.raises(InputError, match="lengths"):
        stem(dict(inputs=torch.randn(2, 40, BINS), lengths=torch.tensor([41, 10])))
    with pytest.raises(InputError, match="padded at the end"):
        stem(dict(inputs=torch.randn(1, 40, BINS), mask=torch.arange(40)[None] >= 3))
    with pytest.raises(ConfigError, match="leave no frequency bin"):
        SubsampleStem(in_bins=6, layers=3)
    with pytest.raises(ConfigError, match="pos_enc"):
        SubsampleStem(pos_enc="learned")

"""Clip sampling: exact indices in test mode, bounds and reproducibility in training, short videos,
and the config errors."""
from pathlib import Path

import numpy as np
import pytest

from glocal.core.errors import ConfigError, InputError
from glocal.modalities.video.sampling import DenseSampler, SegmentSampler, UniformSampler, build_sampler


def rng(seed=0):
    return np.random.default_rng(seed)


# ------------------------------------------------------------------------------------------------
# uniform
# ------------------------------------------------------------------------------------------------
def test_uniform_spans_first_to_last_frame():
    assert UniformSampler(4)(10).tolist() == [[0, 3, 6, 9]]
    assert UniformSampler(3)(100).tolist() == [[0, 50, 99]]  # round(49.5) -> 50 (half up)
    assert UniformSampler(1)(10).tolist() == [[4]]
    assert UniformSampler(5)(3).tolist() == [[0, 1, 1, 2, 2]]  # short videos repeat frames
    assert UniformSampler(16)(16).tolist() == [list(range(16))]
    out = UniformSampler(6, test_mode=False)(50, rng())
    assert out.dtype == np.int64 and out.shape == (1, 6) and np.array_equal(out, UniformSampler(6)(50))


# ------------------------------------------------------------------------------------------------
# TSN segments
# ------------------------------------------------------------------------------------------------
def test_segments_test_mode_takes_centres():
    assert SegmentSampler(4, test_mode=True)(16).tolist() == [[2, 6, 10, 14]]
    assert SegmentSampler(3, test_mode=True)(10).tolist() == [[1, 5, 8]]  # floor((k + 1/2) * 10 / 3)
    assert SegmentSampler(3, num_clips=2, test_mode=True)(12).tolist() == [[1, 5, 9], [3, 7, 11]]
    assert SegmentSampler(4, test_mode=True)(2).tolist() == [[0, 0, 1, 1]]  # fewer frames than segments


def test_segments_training_draws_one_frame_per_segment():
    s = SegmentSampler(8)
    seen = set()
    for seed in range(200):
        idx = s(80, rng(seed))
        assert idx.shape == (1, 8) and idx.dtype == np.int64
        assert np.array_equal(idx[0] // 10, np.arange(8))  # frame k in segment [10k, 10k + 10)
        seen.update(idx[0] % 10)
    assert seen == set(range(10))  # every place inside a segment is reachable
    assert np.array_equal(s(80, rng(3)), s(80, rng(3)))
    short = SegmentSampler(6)(4, rng(1))
    assert short.min() >= 0 and short.max() <= 3 and np.all(np.diff(short[0]) >= 0)


# ------------------------------------------------------------------------------------------------
# dense clips
# ------------------------------------------------------------------------------------------------
def test_dense_test_mode_centres_the_clips():
    assert DenseSampler(4, frame_interval=2, test_mode=True)(20).tolist() == [[7, 9, 11, 13]]  # M = 14 starts: 7
    assert DenseSampler(4, frame_interval=2, num_clips=2, test_mode=True)(20).tolist() == [[3, 5, 7, 9],
                                                                                           [10, 12, 14, 16]]
    three = DenseSampler(8, frame_interval=1, num_clips=3, test_mode=True)(32)
    assert three[:, 0].tolist() == [4, 12, 20] and np.array_equal(three[1], np.arange(12, 20))
    assert DenseSampler(16, test_mode=True)(16).tolist() == [list(range(16))]
    assert DenseSampler(3, 4, test_mode=True).span == 9


def test_dense_training_starts_anywhere_the_clip_fits():
    s = DenseSampler(4, frame_interval=3)  # span 10 of 30 frames: starts 0..20
    starts = {int(s(30, rng(seed))[0, 0]) for seed in range(300)}
    assert starts == set(range(21))
    idx = s(30, rng(5))
    assert np.array_equal(np.diff(idx[0]), [3, 3, 3]) and idx.max() < 30
    multi = DenseSampler(2, num_clips=4)(41, rng(0))  # M = 40: one start in each quarter
    assert multi.shape == (4, 2) and np.array_equal(multi[:, 0] // 10, np.arange(4))


def test_dense_short_videos():
    assert DenseSampler(4, 2, test_mode=True)(5).tolist() == [[0, 2, 4, 1]]  # loop
    assert DenseSampler(4, 2, test_mode=True, out_of_bound="repeat_last")(5).tolist() == [[0, 2, 4, 4]]
    assert DenseSampler(4, 2, out_of_bound="loop")(5, rng()).tolist() == [[0, 2, 4, 1]]  # training: start 0 too
    with pytest.raises(InputError, match=r"5 frames, fewer than a clip of 4 frames 2 apart spans \(7\)"):
        DenseSampler(4, 2, out_of_bound="error")(5)
    assert DenseSampler(4, 2, out_of_bound="error", test_mode=True)(7).tolist() == [[0, 2, 4, 6]]


# ------------------------------------------------------------------------------------------------
# building and checking
# ------------------------------------------------------------------------------------------------
def test_build_sampler_from_config():
    s = build_sampler(dict(type="DenseSampler", clip_len=8, frame_interval=4, test_mode=True))
    assert isinstance(s, DenseSampler) and s.span == 29 and s.test_mode
    assert build_sampler(None) is None and build_sampler(s) is s
    with pytest.raises(ConfigError, match="did you mean: DenseSampler"):
        build_sampler(dict(type="DenseSample", clip_len=8))
    with pytest.raises(ConfigError, match="unexpected keyword"):
        build_sampler(dict(type="UniformSampler", clip_len=8, frame_interval=2))
    with pytest.raises(ConfigError, match="dict"):
        build_sampler(dict(clip_len=8))


def test_bad_settings_and_videos():
    with pytest.raises(ConfigError, match="clip_len must be an int >= 1"):
        DenseSampler(0)
    with pytest.raises(ConfigError, match="frame_interval must be an int >= 1"):
        DenseSampler(4, frame_interval=1.5)
    with pytest.raises(ConfigError, match="out_of_bound must be one of"):
        DenseSampler(4, out_of_bound="wrap")
    with pytest.raises(InputError, match="at least one frame"):
        UniformSampler(4)(0)


def test_config_checking_knows_the_clip_samplers():
    """A video dataset's sampler=dict(type=...) is checked with the config (the CLIP_SAMPLERS
    registry lists the same classes as SAMPLERS): a misspelt type names the close ones."""
    from glocal.modalities.registry import CLIP_SAMPLERS
    from glocal.modalities.video.sampling import SAMPLERS
    from glocal.tasks.engine import load_config, validate_config

    assert {n: CLIP_SAMPLERS.get(n) for n in CLIP_SAMPLERS.names()} == SAMPLERS
    cfg = load_config(Path(__file__).parents[2] / "configs" / "video" / "mfm_local.py")
    validate_config(cfg)
    cfg.train_dataloader.dataset.sampler.type = "DenseSample"
    with pytest.raises(ConfigError, match=r"dataset\.sampler: unknown type='DenseSample'.*did you mean: DenseSampler"):
        validate_config(cfg)

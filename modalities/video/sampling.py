"""Clip sampling: which frames of an ``N``-frame video make a clip.

Every sampler is called as ``sampler(num_frames, rng) -> int64 [num_clips, clip_len]`` frame
indices (one row per clip; a test-time sampler with ``num_clips > 1`` gives several views of one
video). Training samplers (``test_mode=False``) draw from ``rng``; test samplers are deterministic.

- :class:`UniformSampler`: ``clip_len`` frames spread evenly from the first frame to the last.
- :class:`SegmentSampler` (TSN, Wang et al. 2016): the video cut into ``num_segments`` equal
  segments, one frame from each: at a random place in training, at the segment's centre in test
  (``num_clips`` test views: evenly spaced places inside each segment).
- :class:`DenseSampler` (I3D / SlowFast / Video Swin style): ``clip_len`` frames ``frame_interval``
  apart from a start that is random in training and centred in test (``num_clips`` test clips
  centred in equal parts of the video). Videos shorter than the clip loop, repeat their last
  frame, or are an error (``out_of_bound``).

Example:
    >>> UniformSampler(4)(10).tolist()
    [[0, 3, 6, 9]]
    >>> SegmentSampler(4, test_mode=True)(16).tolist()  # the centres of 0-3, 4-7, 8-11, 12-15
    [[2, 6, 10, 14]]
    >>> DenseSampler(clip_len=4, frame_interval=2, num_clips=2, test_mode=True)(20).tolist()
    [[3, 5, 7, 9], [10, 12, 14, 16]]
    >>> DenseSampler(clip_len=4, frame_interval=2, test_mode=True)(5).tolist()  # 5 frames loop
    [[0, 2, 4, 1]]
"""
from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from glocal.core.errors import ConfigError, InputError, close_names

__all__ = ["ClipSampler", "UniformSampler", "SegmentSampler", "DenseSampler", "build_sampler", "SAMPLERS",
           "OUT_OF_BOUND"]

OUT_OF_BOUND = ("loop", "repeat_last", "error")


def _positive_int(who: str, name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{who}: {name} must be an int >= 1; got {value!r}")
    return int(value)


class ClipSampler:
    """Base: ``clip_len`` frames per clip, ``num_clips`` clips per video, ``test_mode``."""

    def __init__(self, clip_len: int, num_clips: int = 1, test_mode: bool = False):
        who = type(self).__name__
        self.clip_len = _positive_int(who, "clip_len", clip_len)
        self.num_clips = _positive_int(who, "num_clips", num_clips)
        self.test_mode = bool(test_mode)

    def __call__(self, num_frames: int, rng: np.random.Generator | None = None) -> np.ndarray:
        """Frame indices ``int64 [num_clips, clip_len]`` for a video of ``num_frames`` frames."""
        if isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer)) or num_frames < 1:
            raise InputError(f"{type(self).__name__}: a video needs at least one frame to sample from; got "
                             f"num_frames={num_frames!r}")
        if not self.test_mode and rng is None:
            rng = np.random.default_rng()
        out = np.asarray(self._sample(int(num_frames), rng), dtype=np.int64)
        return out.reshape(self.num_clips, self.clip_len)

    def _sample(self, n: int, rng: np.random.Generator | None) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self):
        return (f"{type(self).__name__}(clip_len={self.clip_len}, num_clips={self.num_clips}, "
                f"test_mode={self.test_mode})")


class UniformSampler(ClipSampler):
    """``clip_len`` frames evenly spaced over the whole video, first and last included:
    ``round(k (N - 1) / (clip_len - 1))`` (the middle frame when ``clip_len`` is 1); the same in
    training and test. Short videos repeat frames.

    >>> UniformSampler(5)(3).tolist()
    [[0, 1, 1, 2, 2]]
    """

    def __init__(self, clip_len: int, test_mode: bool = False):
        super().__init__(clip_len, 1, test_mode)

    def _sample(self, n: int, rng) -> np.ndarray:
        if self.clip_len == 1:
            return np.array([(n - 1) // 2])
        k = np.arange(self.clip_len)
        return (2 * k * (n - 1) + (self.clip_len - 1)) // (2 * (self.clip_len - 1))  # round half up, exact

    def __repr__(self):
        return f"UniformSampler(clip_len={self.clip_len})"


class SegmentSampler(ClipSampler):
    """TSN: ``num_segments`` equal segments ``[k N / S, (k + 1) N / S)``, one frame in each; the
    clip is ``num_segments`` frames long.

    Training: a uniformly random frame of each segment, ``floor((k + u_k) N / S)``. Test: view ``v``
    of ``num_clips`` takes ``floor((k + (v + 1/2) / num_clips) N / S)``: the segment's centre for one
    view. Videos with fewer frames than segments repeat frames.

    >>> SegmentSampler(3, num_clips=2, test_mode=True)(12).tolist()
    [[1, 5, 9], [3, 7, 11]]
    """

    def __init__(self, num_segments: int, num_clips: int = 1, test_mode: bool = False):
        super().__init__(num_segments, num_clips, test_mode)

    @property
    def num_segments(self) -> int:
        return self.clip_len

    def _sample(self, n: int, rng) -> np.ndarray:
        S, V = self.num_segments, self.num_clips
        k = np.arange(S)
        if self.test_mode:  # integer arithmetic: floor((2 (k V + v) + 1) N / (2 S V))
            v = np.arange(V)[:, None]
            return (2 * (k[None] * V + v) + 1) * n // (2 * S * V)
        u = rng.random((V, S))
        return np.minimum(np.floor((k[None] + u) * n / S), n - 1)

    def __repr__(self):
        return (f"SegmentSampler(num_segments={self.num_segments}, num_clips={self.num_clips}, "
                f"test_mode={self.test_mode})")


class DenseSampler(ClipSampler):
    """``clip_len`` frames ``frame_interval`` apart: a clip spans ``(clip_len - 1) * frame_interval + 1``
    frames, and its start is one of the ``M = N - span + 1`` that fit.

    Training: one clip starts uniformly at random; ``num_clips`` clips start at random places in
    ``num_clips`` equal parts of ``[0, M)``. Test: clip ``v`` starts at the centre of part ``v``,
    ``floor((2 v + 1) M / (2 num_clips))``: one clip is centred in the video.

    A video shorter than the span starts every clip at frame 0 and, per ``out_of_bound``: ``'loop'``
    wraps the indices around (``i mod N``), ``'repeat_last'`` repeats the last frame, ``'error'``
    raises an :class:`InputError`.

    >>> DenseSampler(3, frame_interval=2, test_mode=True, out_of_bound="repeat_last")(4).tolist()
    [[0, 2, 3]]
    """

    def __init__(self, clip_len: int, frame_interval: int = 1, num_clips: int = 1, test_mode: bool = False,
                 out_of_bound: str = "loop"):
        super().__init__(clip_len, num_clips, test_mode)
        self.frame_interval = _positive_int("DenseSampler", "frame_interval", frame_interval)
        if out_of_bound not in OUT_OF_BOUND:
            raise ConfigError(f"DenseSampler: out_of_bound must be one of {', '.join(map(repr, OUT_OF_BOUND))}; "
                              f"got {out_of_bound!r}")
        self.out_of_bound = out_of_bound

    @property
    def span(self) -> int:
        """Frames from a clip's first to its last, both included."""
        return (self.clip_len - 1) * self.frame_interval + 1

    def starts(self, n: int, rng: np.random.Generator | None) -> np.ndarray:
        """The first frame of every clip ``[num_clips]``."""
        M, V = n - self.span + 1, self.num_clips
        if M < 1:
            return np.zeros(V, dtype=np.int64)
        v = np.arange(V)
        if self.test_mode:
            return (2 * v + 1) * M // (2 * V)
        if V == 1:
            return np.array([rng.integers(0, M)])
        return np.minimum(np.floor((v + rng.random(V)) * M / V), M - 1).astype(np.int64)

    def _sample(self, n: int, rng) -> np.ndarray:
        if n < self.span and self.out_of_bound == "error":
            raise InputError(f"DenseSampler: the video has {n} frames, fewer than a clip of {self.clip_len} frames "
                             f"{self.frame_interval} apart spans ({self.span}); use out_of_bound='loop' or "
                             f"'repeat_last', a shorter clip_len or frame_interval, or drop short videos")
        idx = self.starts(n, rng)[:, None] + np.arange(self.clip_len)[None] * self.frame_interval  # [V, L]
        return idx % n if self.out_of_bound == "loop" else np.minimum(idx, n - 1)

    def __repr__(self):
        return (f"DenseSampler(clip_len={self.clip_len}, frame_interval={self.frame_interval}, "
                f"num_clips={self.num_clips}, test_mode={self.test_mode}, out_of_bound={self.out_of_bound!r})")


SAMPLERS: dict[str, type[ClipSampler]] = {c.__name__: c for c in (UniformSampler, SegmentSampler, DenseSampler)}


def build_sampler(cfg) -> Callable | None:
    """A sampler from ``dict(type='DenseSampler', ...)`` (one of :data:`SAMPLERS`), an already built
    one (passed through), or None (None: every frame of the video)."""
    if cfg is None or (callable(cfg) and not isinstance(cfg, Mapping)):
        return cfg
    if not isinstance(cfg, Mapping) or "type" not in cfg:
        raise ConfigError(f"a clip sampler is None, a sampler object or dict(type=..., ...) with a type from "
                          f"{', '.join(SAMPLERS)}; got {cfg!r}")
    cfg = dict(cfg)
    kind = cfg.pop("type")
    if kind not in SAMPLERS:
        raise ConfigError(f"unknown clip sampler type={kind!r}; {close_names(str(kind), SAMPLERS)}")
    try:
        return SAMPLERS[kind](**cfg)
    except TypeError as e:
        raise ConfigError(f"building clip sampler {kind!r}: {e}") from e

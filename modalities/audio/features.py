"""Speech features: waveforms ``sample['inputs']`` (float ``[C, T]``, mono) become features
``[frames, bins]`` float32, time first, with ``sample['num_frames']`` set beside them.

:class:`Fbank` is Kaldi's log mel filterbank (``torchaudio.compliance.kaldi.fbank``), :class:`LogMel`
torchaudio's mel spectrogram with ``log(x + 1e-6)``, :class:`MFCC` torchaudio's MFCCs. Each checks the
sample's ``sample_rate`` against its own and wants one channel (``MixDown`` or
``load_audio(mono='mix')`` first). :class:`UtteranceNorm` (per-utterance CMVN) and :class:`GlobalNorm`
(stats from :func:`feature_stats`) normalise the features per bin.

Example:
    >>> import numpy as np, torch
    >>> sample = {"inputs": 0.1 * torch.randn(1, 16000), "sample_rate": 16000}
    >>> out = Fbank()(sample, np.random.default_rng(0))
    >>> out["inputs"].shape, out["num_frames"]  # 25 ms windows every 10 ms over 1 s
    (torch.Size([98, 80]), 98)
    >>> LogMel(n_mels=64)(sample, None)["inputs"].shape
    torch.Size([101, 64])
    >>> normed = UtteranceNorm()(out, None)["inputs"]
    >>> bool(normed.mean(0).abs().max() < 1e-4)
    True
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch
import torchaudio
import torchaudio.compliance.kaldi as kaldi

from glocal.core.errors import ConfigError, InputError

from ..batch import SkippedSample
from .transforms import features_of, sample_rate_of, waveform_of, where

__all__ = ["Fbank", "LogMel", "MFCC", "UtteranceNorm", "GlobalNorm", "feature_stats"]


def _mono(sample: dict, who: str, sample_rate: int) -> torch.Tensor:
    """The sample's waveform ``[1, T]`` float32, after checking its rate and channel count."""
    wave = waveform_of(sample, who)
    sample_rate_of(sample, who, sample_rate)
    if wave.shape[0] != 1:
        raise InputError(f"{who}: the waveform has {wave.shape[0]} channels{where(sample)}; features are computed "
                         f"on one: add MixDown() before {who}, or load with mono='mix'")
    return wave.to(torch.float32)


def _with_features(sample: dict, feats: torch.Tensor, who: str) -> dict:
    """The sample with ``inputs = feats [frames, bins]`` and ``num_frames`` set."""
    if feats.ndim != 2 or feats.shape[0] == 0:
        raise InputError(f"{who}: the waveform is too short for one frame{where(sample)}; drop such clips "
                         f"(load_audio's min_seconds)")
    return {**sample, "inputs": feats.to(torch.float32).contiguous(), "num_frames": int(feats.shape[0])}


def _positive_int(value, name: str, who: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{who}: {name} must be a positive int; got {value!r}")
    return value


class Fbank:
    """Kaldi-compatible log mel filterbank energies ``[frames, num_mel_bins]``:
    ``torchaudio.compliance.kaldi.fbank`` with 25 ms Povey windows every 10 ms (``snip_edges``, so
    ``frames = 1 + (T - window) // shift``).

    Args:
        sample_rate: the rate samples must have (Hz).
        num_mel_bins, frame_length, frame_shift (ms), low_freq, high_freq: as Kaldi's options.
        dither: Gaussian dither amplitude; drawn from the transform's ``rng`` (not torch's global
            generator, so it is reproducible), added to the waveform before the frames are cut.
        scale: multiply the waveform first; ``32768`` gives Kaldi's numbers for int16 input (as WeNet
            and ESPnet feed it); the default 1 keeps torchaudio's [-1, 1] convention.
        vtlp: ``(low, high)`` for vocal tract length perturbation (Jaitly & Hinton, 2013): a warp
            factor drawn uniformly per utterance from the transform's ``rng`` and applied through
            Kaldi's VTLN warping of the mel filter bank (``vtln_warp``), so one voice sounds like
            speakers with shorter or longer vocal tracts. Training only; ``None`` (default) is no warp.
        **kaldi_options: any other keyword of ``kaldi.fbank`` (``preemphasis_coefficient``,
            ``window_type``, ``use_energy``, ...).
    """

    def __init__(self, sample_rate: int = 16000, num_mel_bins: int = 80, frame_length: float = 25.0,
                 frame_shift: float = 10.0, dither: float = 0.0, low_freq: float = 20.0, high_freq: float = 0.0,
                 scale: float = 1.0, vtlp: Sequence[float] | None = None, **kaldi_options):
        self.sample_rate = _positive_int(sample_rate, "sample_rate", "Fbank")
        self.num_mel_bins = _positive_int(num_mel_bins, "num_mel_bins", "Fbank")
        self.frame_length, self.frame_shift, self.dither, self.scale = frame_length, frame_shift, dither, scale
        self.options = dict(num_mel_bins=num_mel_bins, frame_length=frame_length, frame_shift=frame_shift,
                            low_freq=low_freq, high_freq=high_freq, sample_frequency=float(sample_rate),
                            **kaldi_options)
        if "dither" in kaldi_options or "channel" in kaldi_options or "vtln_warp" in kaldi_options:
            raise ConfigError("Fbank: pass dither and vtlp as Fbank's own arguments (they are drawn from the "
                              "sample's rng); channel is always 0 (features are computed on mono audio)")
        self.vtlp = None
        if vtlp is not None:
            lo, hi = (float(v) for v in vtlp)
            if not 0.5 <= lo <= hi <= 1.5:
                raise ConfigError(f"Fbank: vtlp must be (low, high) warp factors with 0.5 <= low <= high <= 1.5; "
                                  f"got {vtlp!r}")
            self.vtlp = (lo, hi)

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        wave = _mono(sample, "Fbank", self.sample_rate) * self.scale  # [1, T]
        if self.dither:
            wave = wave + self.dither * torch.from_numpy(rng.standard_normal(wave.shape).astype(np.float32))
        if wave.shape[-1] < self.sample_rate * self.frame_length / 1000:
            return _with_features(sample, wave.new_zeros(0), "Fbank")
        warp = 1.0 if self.vtlp is None or rng is None else float(rng.uniform(*self.vtlp))  # no rng: no warp
        return _with_features(sample, kaldi.fbank(wave, dither=0.0, vtln_warp=warp, **self.options),
                              "Fbank")  # [frames, bins]

    def __repr__(self):
        return (f"Fbank(sample_rate={self.sample_rate}, num_mel_bins={self.num_mel_bins}, frame_length="
                f"{self.frame_length}, frame_shift={self.frame_shift}, dither={self.dither}, vtlp={self.vtlp})")


def _stft_sizes(sample_rate: int, win_ms: float, hop_ms: float, n_fft: int | None) -> tuple[int, int, int]:
    """``(n_fft, win_length, hop_length)`` in samples; ``n_fft`` defaults to the next power of two."""
    win, hop = round(sample_rate * win_ms / 1000), round(sample_rate * hop_ms / 1000)
    n_fft = n_fft or 1 << (win - 1).bit_length()
    if win <= 0 or hop <= 0 or n_fft < win:
        raise ConfigError(f"window {win_ms} ms, hop {hop_ms} ms at {sample_rate} Hz give win_length={win}, "
                          f"hop_length={hop}, n_fft={n_fft}: both must be positive and n_fft >= win_length")
    return n_fft, win, hop


class LogMel:
    """Log mel spectrogram ``[frames, n_mels]``: ``log(torchaudio.transforms.MelSpectrogram(x) + 1e-6)``
    with Hann windows of ``win_ms`` every ``hop_ms`` (centred, so ``frames = 1 + T // hop``)."""

    def __init__(self, sample_rate: int = 16000, n_mels: int = 80, win_ms: float = 25.0, hop_ms: float = 10.0,
                 n_fft: int | None = None, f_min: float = 0.0, f_max: float | None = None, eps: float = 1e-6):
        self.sample_rate = _positive_int(sample_rate, "sample_rate", "LogMel")
        self.n_mels, self.eps = _positive_int(n_mels, "n_mels", "LogMel"), eps
        n_fft, win, hop = _stft_sizes(sample_rate, win_ms, hop_ms, n_fft)
        self.mel = torchaudio.transforms.MelSpectrogram(sample_rate, n_fft=n_fft, win_length=win, hop_length=hop,
                                                        f_min=f_min, f_max=f_max, n_mels=n_mels)

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        wave = _mono(sample, "LogMel", self.sample_rate)
        with torch.no_grad():
            mel = self.mel(wave)[0]  # [n_mels, frames]
        return _with_features(sample, torch.log(mel + self.eps).T, "LogMel")

    def __repr__(self):
        return f"LogMel(sample_rate={self.sample_rate}, n_mels={self.n_mels})"


class MFCC:
    """Mel-frequency cepstral coefficients ``[frames, n_mfcc]`` (``torchaudio.transforms.MFCC``) over
    ``n_mels`` mel bands, windows as :class:`LogMel`."""

    def __init__(self, sample_rate: int = 16000, n_mfcc: int = 40, n_mels: int = 80, win_ms: float = 25.0,
                 hop_ms: float = 10.0, n_fft: int | None = None, f_min: float = 0.0, f_max: float | None = None,
                 log_mels: bool = False):
        self.sample_rate = _positive_int(sample_rate, "sample_rate", "MFCC")
        self.n_mfcc = _positive_int(n_mfcc, "n_mfcc", "MFCC")
        if n_mfcc > n_mels:
            raise ConfigError(f"MFCC: n_mfcc={n_mfcc} cannot exceed n_mels={n_mels}")
        n_fft, win, hop = _stft_sizes(sample_rate, win_ms, hop_ms, n_fft)
        self.mfcc = torchaudio.transforms.MFCC(sample_rate, n_mfcc=n_mfcc, log_mels=log_mels, melkwargs=dict(
            n_fft=n_fft, win_length=win, hop_length=hop, f_min=f_min, f_max=f_max, n_mels=n_mels))

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        wave = _mono(sample, "MFCC", self.sample_rate)
        with torch.no_grad():
            return _with_features(sample, self.mfcc(wave)[0].T, "MFCC")  # [frames, n_mfcc]

    def __repr__(self):
        return f"MFCC(sample_rate={self.sample_rate}, n_mfcc={self.n_mfcc})"


# ------------------------------------------------------------------------------------------------
# normalisation
# ------------------------------------------------------------------------------------------------
class UtteranceNorm:
    """Per-utterance cepstral mean (and variance) normalisation: each bin of ``[frames, bins]`` minus
    its mean over the utterance's frames, divided by its standard deviation when ``norm_vars``."""

    def __init__(self, norm_vars: bool = True, eps: float = 1e-5):
        self.norm_vars, self.eps = norm_vars, eps

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        feats = features_of(sample, "UtteranceNorm")  # [frames, bins]
        feats = feats - feats.mean(0)
        if self.norm_vars:
            feats = feats / (feats.pow(2).mean(0).sqrt() + self.eps)  # population std, as Kaldi's CMVN
        return {**sample, "inputs": feats}

    def __repr__(self):
        return f"UtteranceNorm(norm_vars={self.norm_vars})"


class GlobalNorm:
    """``(x - mean) / std`` per bin with dataset statistics (from :func:`feature_stats`).

    Args:
        mean, std: per-bin lists or tensors ``[bins]``.
    """

    def __init__(self, mean: Sequence[float] | torch.Tensor, std: Sequence[float] | torch.Tensor, eps: float = 1e-5):
        self.mean = torch.as_tensor(mean, dtype=torch.float32).flatten()
        std = torch.as_tensor(std, dtype=torch.float32).flatten()
        if self.mean.shape != std.shape or bool((std < 0).any()):
            raise ConfigError(f"GlobalNorm: mean and std must be per-bin lists of one length, std >= 0; got "
                              f"{tuple(self.mean.shape)} and {tuple(std.shape)}")
        self.std = std.clamp_min(eps)

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        feats = features_of(sample, "GlobalNorm")  # [frames, bins]
        if feats.shape[1] != self.mean.numel():
            raise InputError(f"GlobalNorm: the features have {feats.shape[1]} bins{where(sample)} but the "
                             f"statistics {self.mean.numel()}; recompute them with feature_stats for these features")
        return {**sample, "inputs": (feats - self.mean.to(feats)) / self.std.to(feats)}

    def __repr__(self):
        return f"GlobalNorm(bins={self.mean.numel()})"


def feature_stats(samples: Iterable, max_samples: int | None = None) -> dict:
    """Per-bin ``mean`` and ``std`` tensors ``[bins]`` over every frame of a dataset or iterable of
    samples (dicts with ``inputs [frames, bins]``, or the tensors themselves), and ``num_frames``.
    A map-style dataset is read in index order (no augmentation seeds); skipped samples are left out.
    Accumulates in float64. Pass ``mean`` and ``std`` to :class:`GlobalNorm`.

    Example:
        >>> stats = feature_stats([torch.tensor([[0.0, 1.0], [2.0, 3.0]])])
        >>> stats["mean"].tolist(), stats["std"].tolist(), stats["num_frames"]
        ([1.0, 2.0], [1.0, 1.0], 2)
    """
    if hasattr(samples, "__len__") and hasattr(samples, "__getitem__") and not isinstance(samples, (list, tuple)):
        dataset = samples
        samples = (dataset[i] for i in range(len(dataset)))
    total = total_sq = None
    frames = seen = 0
    for sample in samples:
        if max_samples is not None and seen >= max_samples:
            break
        if isinstance(sample, SkippedSample):
            continue  # the dataset counted and logged it
        feats = sample if isinstance(sample, torch.Tensor) else features_of(sample, "feature_stats")
        feats = feats.detach().to(torch.float64)
        if total is None:
            total, total_sq = feats.new_zeros(feats.shape[1]), feats.new_zeros(feats.shape[1])
        elif feats.shape[1] != total.numel():
            named = where(sample) if isinstance(sample, dict) else ""
            raise InputError(f"feature_stats: sample {seen} has {feats.shape[1]} bins{named}, the ones before "
                             f"{total.numel()}")
        total += feats.sum(0)
        total_sq += feats.pow(2).sum(0)
        frames, seen = frames + feats.shape[0], seen + 1
    if not frames:
        raise InputError("feature_stats: no frames to average; the dataset is empty or every sample was skipped")
    mean = total / frames
    std = (total_sq / frames - mean.pow(2)).clamp_min(0).sqrt()
    return {"mean": mean.to(torch.float32), "std": std.to(torch.float32), "num_frames": frames}

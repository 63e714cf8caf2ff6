"""Audio augmentation: on waveforms ``sample['inputs']`` (float ``[C, T]``, with
``sample['sample_rate']``) before the features, and :class:`SpecAugment` on features ``[frames, bins]``
after them.

Every transform is ``t(sample, rng) -> sample`` and draws only from ``rng`` (see
``glocal.modalities.dataset``), so a sample's augmentation is reproducible from its seed. Errors name
the sample's ``path`` where it has one. torchaudio is imported when a transform first resamples or
convolves, not here.

Example:
    >>> import numpy as np, torch
    >>> sample = {"inputs": 0.1 * torch.randn(1, 16000), "sample_rate": 16000}
    >>> noisy = AddNoise(snr_db=20)(sample, np.random.default_rng(0))
    >>> round(signal_to_noise_db(sample["inputs"], noisy["inputs"] - sample["inputs"]), 3)
    20.0
    >>> feats = {"inputs": torch.ones(100, 80)}
    >>> masked = SpecAugment(time_width=10)(feats, np.random.default_rng(0))["inputs"]  # [100, 80]
    >>> bool((masked == 0).any()), masked.shape
    (True, torch.Size([100, 80]))
"""
from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from glocal.core.errors import ConfigError, InputError

__all__ = ["SpecAugment", "AddNoise", "SpeedPerturb", "Reverb", "RandomGain", "Resample", "MixDown",
           "signal_to_noise_db", "pink_noise", "exponential_ir"]

NOISE_SUFFIXES = (".wav", ".flac", ".ogg")


# ------------------------------------------------------------------------------------------------
# reading the sample (shared with .features)
# ------------------------------------------------------------------------------------------------
def where(sample: dict) -> str:
    """`` (path)`` for error messages, or nothing when the sample has no ``path``."""
    return f" ({sample['path']})" if sample.get("path") is not None else ""


def waveform_of(sample: dict, who: str) -> torch.Tensor:
    """``sample['inputs']`` as a float waveform ``[C, T]`` (a ``[T]`` one becomes ``[1, T]``)."""
    wave = sample.get("inputs")
    if not isinstance(wave, torch.Tensor) or wave.ndim not in (1, 2) or not wave.is_floating_point():
        raise InputError(f"{who}: sample['inputs'] must be a float waveform tensor [C, T]{where(sample)}; got "
                         f"{getattr(wave, 'dtype', type(wave).__name__)} {tuple(getattr(wave, 'shape', ()))}")
    return wave[None] if wave.ndim == 1 else wave


def sample_rate_of(sample: dict, who: str, expected: int | None = None) -> int:
    """``sample['sample_rate']``, checked against ``expected`` where the transform is configured for one."""
    rate = sample.get("sample_rate")
    if rate is None:
        raise InputError(f"{who}: the sample has no 'sample_rate'{where(sample)}; the dataset must set it beside "
                         f"the waveform")
    if expected is not None and int(rate) != int(expected):
        raise InputError(f"{who}: the sample's rate is {rate} Hz{where(sample)} but the transform is configured for "
                         f"{expected} Hz; load with sample_rate={expected}, resample=True, or add "
                         f"Resample(sample_rate={expected}) before it")
    return int(rate)


def features_of(sample: dict, who: str) -> torch.Tensor:
    """``sample['inputs']`` as features ``[frames, bins]``, matching ``sample['num_frames']`` where
    set. A sample with a ``sample_rate`` but no ``num_frames`` (which the feature transforms set)
    still holds its waveform."""
    feats = sample.get("inputs")
    ok = isinstance(feats, torch.Tensor) and feats.ndim == 2 and feats.is_floating_point()
    if ok and "num_frames" not in sample and "sample_rate" in sample:
        raise InputError(f"{who}: sample['inputs'] is still a waveform {tuple(feats.shape)}{where(sample)}; put "
                         f"{who} after the feature transform (Fbank, LogMel or MFCC), which sets num_frames")
    if not ok or sample.get("num_frames", feats.shape[0]) != feats.shape[0]:
        raise InputError(f"{who}: sample['inputs'] must be float features [frames, bins] with num_frames frames"
                         f"{where(sample)}; got {getattr(feats, 'dtype', type(feats).__name__)} "
                         f"{tuple(getattr(feats, 'shape', ()))}, num_frames={sample.get('num_frames')}")
    return feats


def _range(value, name: str, who: str) -> tuple[float, float]:
    """A scalar ``v`` as ``(v, v)``; a pair as ``(lo, hi)`` with ``lo <= hi``."""
    lo, hi = (value, value) if isinstance(value, (int, float)) else tuple(value)
    if lo > hi:
        raise ConfigError(f"{who}: {name} must be a number or a (low, high) pair with low <= high; got {value!r}")
    return float(lo), float(hi)


def _probability(p, who: str) -> float:
    if not 0.0 <= p <= 1.0:
        raise ConfigError(f"{who}: p must be in [0, 1]; got {p!r}")
    return float(p)


# ------------------------------------------------------------------------------------------------
# SpecAugment
# ------------------------------------------------------------------------------------------------
class SpecAugment:
    """Time warping, frequency masks and time masks on features ``[frames, bins]`` (Park et al.,
    "SpecAugment: A Simple Data Augmentation Method for Automatic Speech Recognition", Interspeech 2019).

    Each frequency mask zeroes (``mask_value``) ``f ~ U{0..freq_width}`` consecutive bins from a
    uniform start; each time mask ``t ~ U{0..T}`` consecutive frames, ``T = time_width`` frames (an
    int) or that fraction of the utterance's frames (a float). Time warping moves a random frame
    ``w0`` in ``[W, frames - W)`` by ``w ~ U{-W..W}`` and stretches both sides linearly
    (``W = time_warp`` frames; 0: off; skipped on utterances of ``2W`` frames or fewer).
    Normalise features first so that 0 is the mean.
    """

    def __init__(self, freq_masks: int = 2, freq_width: int = 27, time_masks: int = 2,
                 time_width: float | int = 0.05, time_warp: int = 0, mask_value: float = 0.0):
        for name, v in (("freq_masks", freq_masks), ("freq_width", freq_width), ("time_masks", time_masks),
                        ("time_warp", time_warp)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ConfigError(f"SpecAugment: {name} must be an int >= 0; got {v!r}")
        if isinstance(time_width, bool) or not isinstance(time_width, (int, float)) or time_width < 0 or (
                isinstance(time_width, float) and time_width > 1):
            raise ConfigError(f"SpecAugment: time_width must be an int number of frames >= 0 or a float fraction of "
                              f"the frames in [0, 1]; got {time_width!r}")
        self.freq_masks, self.freq_width, self.time_masks = freq_masks, freq_width, time_masks
        self.time_width, self.time_warp, self.mask_value = time_width, time_warp, mask_value

    def draw(self, frames: int, bins: int, rng: np.random.Generator) -> dict:
        """The random choices for one utterance: ``warp`` (``(w0, w)`` or None) and the
        ``freq`` / ``time`` masks as ``(start, width)`` pairs, one per configured mask."""
        warp = None
        if self.time_warp and frames > 2 * self.time_warp:
            w0 = int(rng.integers(self.time_warp, frames - self.time_warp))
            warp = (w0, int(rng.integers(-self.time_warp, self.time_warp + 1)))
        max_t = int(self.time_width * frames) if isinstance(self.time_width, float) else self.time_width
        return {"warp": warp, "freq": self._spans(self.freq_masks, min(self.freq_width, bins), bins, rng),
                "time": self._spans(self.time_masks, min(max_t, frames), frames, rng)}

    @staticmethod
    def _spans(count: int, max_width: int, size: int, rng: np.random.Generator) -> list[tuple[int, int]]:
        spans = []
        for _ in range(count):
            width = int(rng.integers(0, max_width + 1))
            spans.append((int(rng.integers(0, size - width + 1)), width))
        return spans

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        feats = features_of(sample, "SpecAugment")  # [frames, bins]
        choice = self.draw(*feats.shape, rng)
        if choice["warp"] is not None:
            feats = time_warp(feats, *choice["warp"])
        if choice["freq"] or choice["time"]:
            feats = feats.clone()
        for start, width in choice["freq"]:
            feats[:, start:start + width] = self.mask_value
        for start, width in choice["time"]:
            feats[start:start + width] = self.mask_value
        return {**sample, "inputs": feats}

    def __repr__(self):
        return (f"SpecAugment(freq_masks={self.freq_masks}, freq_width={self.freq_width}, time_masks="
                f"{self.time_masks}, time_width={self.time_width}, time_warp={self.time_warp})")


def time_warp(feats: torch.Tensor, w0: int, w: int) -> torch.Tensor:
    """Move frame ``w0`` of ``[frames, bins]`` features to ``w0 + w``, stretching the frames before
    and after it linearly; the number of frames is unchanged."""
    if w == 0:
        return feats
    frames = feats.shape[0]
    x = feats.T[None]  # [1, bins, frames]
    left = F.interpolate(x[..., :w0], size=w0 + w, mode="linear", align_corners=False)
    right = F.interpolate(x[..., w0:], size=frames - w0 - w, mode="linear", align_corners=False)
    return torch.cat([left, right], -1)[0].T.contiguous()  # [frames, bins]


# ------------------------------------------------------------------------------------------------
# noise
# ------------------------------------------------------------------------------------------------
def signal_to_noise_db(signal: torch.Tensor, noise: torch.Tensor) -> float:
    """``10 log10(P_signal / P_noise)`` with ``P`` the mean square over every channel and sample."""
    return 10 * math.log10(float(signal.double().pow(2).mean()) / float(noise.double().pow(2).mean()))


def pink_noise(shape: tuple[int, int], rng: np.random.Generator) -> torch.Tensor:
    """Noise ``[C, T]`` whose power falls as ``1/f`` (white noise shaped in the frequency domain)."""
    channels, length = shape
    spectrum = np.fft.rfft(rng.standard_normal((channels, length)), axis=-1)  # [C, T // 2 + 1]
    freqs = np.arange(spectrum.shape[-1], dtype=np.float64)
    freqs[0] = 1.0  # keep DC at the lowest frequency's level rather than infinite
    pink = np.fft.irfft(spectrum / np.sqrt(freqs), n=length, axis=-1)
    return torch.from_numpy((pink / pink.std(axis=-1, keepdims=True).clip(1e-12)).astype(np.float32))


class AddNoise:
    """Add noise at a signal-to-noise ratio drawn uniformly from ``snr_db`` (dB; a number or a
    ``(low, high)`` range), with probability ``p``.

    ``noise`` is ``'white'``, ``'pink'`` (``1/f``), or a directory of wav / flac / ogg files (searched
    recursively): one is drawn, resampled to the sample's rate, down-mixed, and a random stretch of the
    waveform's length cut from it (tiled if shorter). The SNR is exact over the waveform: the noise is
    scaled by the measured powers. Silent waveforms are returned unchanged.
    """

    def __init__(self, snr_db=(10.0, 30.0), noise: str = "white", p: float = 1.0, cache: bool = True):
        self.snr_db, self.p = _range(snr_db, "snr_db", "AddNoise"), _probability(p, "AddNoise")
        self.noise, self.files = noise, []
        if noise not in ("white", "pink"):
            if not os.path.isdir(noise):
                raise ConfigError(f"AddNoise: noise must be 'white', 'pink' or a directory of noise recordings; "
                                  f"{noise!r} is neither")
            self.files = sorted(str(f) for f in Path(noise).rglob("*") if f.suffix.lower() in NOISE_SUFFIXES)
            if not self.files:
                raise ConfigError(f"AddNoise: the noise directory {noise} holds no {'/'.join(NOISE_SUFFIXES)} files")
        self.cache, self._loaded = cache, {}

    def _noise(self, shape: tuple[int, int], rate: int, rng: np.random.Generator) -> torch.Tensor:
        channels, length = shape
        if self.noise == "white":
            return torch.from_numpy(rng.standard_normal(shape).astype(np.float32))
        if self.noise == "pink":
            return pink_noise(shape, rng)
        path = self.files[int(rng.integers(len(self.files)))]
        wave = self._load(path, rate)[0]  # [N]
        if wave.numel() < length:
            wave = wave.repeat(math.ceil(length / wave.numel()))
        start = int(rng.integers(0, wave.numel() - length + 1))
        return wave[start:start + length][None]  # [1, T], the same noise on every channel

    def _load(self, path: str, rate: int) -> torch.Tensor:
        from .io import load_audio

        key = (path, rate)
        if key not in self._loaded:
            wave = load_audio(path, sample_rate=rate, mono="mix", resample=True)[0]
            if not self.cache:
                return wave
            self._loaded[key] = wave
        return self._loaded[key]

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        wave = waveform_of(sample, "AddNoise")  # [C, T]
        if rng.random() >= self.p:
            return sample
        snr = rng.uniform(*self.snr_db)
        noise = self._noise(tuple(wave.shape), sample_rate_of(sample, "AddNoise"), rng).to(wave)
        signal_power, noise_power = wave.double().pow(2).mean(), noise.double().pow(2).mean()
        if signal_power == 0 or noise_power == 0:
            return sample
        gain = torch.sqrt(signal_power / (noise_power * 10 ** (snr / 10)))
        return {**sample, "inputs": wave + (gain * noise).to(wave.dtype)}

    def __getstate__(self):  # data-loader workers get the file list, not the decoded noise
        return {**self.__dict__, "_loaded": {}}

    def __repr__(self):
        return f"AddNoise(snr_db={self.snr_db}, noise={self.noise!r}, p={self.p})"


# ------------------------------------------------------------------------------------------------
# speed, reverberation, gain, rate, channels
# ------------------------------------------------------------------------------------------------
def _resample(wave: torch.Tensor, orig: int, new: int) -> torch.Tensor:
    import torchaudio.functional as AF

    return AF.resample(wave, orig, new)


class SpeedPerturb:
    """Play the waveform faster or slower by a factor drawn from ``factors`` (Ko et al., "Audio
    Augmentation for Speech Recognition", Interspeech 2015): resample from ``rate * factor`` to
    ``rate``, so the length becomes ``T / factor`` and the pitch moves with the tempo."""

    def __init__(self, factors: Sequence[float] = (0.9, 1.0, 1.1)):
        if not factors or any(f <= 0 for f in factors):
            raise ConfigError(f"SpeedPerturb: factors must be a non-empty list of positive numbers; got {factors!r}")
        self.factors = tuple(float(f) for f in factors)

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        wave = waveform_of(sample, "SpeedPerturb")
        factor = self.factors[int(rng.integers(len(self.factors)))]
        if factor == 1.0:
            return sample
        rate = sample_rate_of(sample, "SpeedPerturb")
        return {**sample, "inputs": _resample(wave, round(rate * factor), rate)}

    def __repr__(self):
        return f"SpeedPerturb(factors={self.factors})"


def exponential_ir(rt60: float, sample_rate: int, rng: np.random.Generator) -> torch.Tensor:
    """A synthetic room impulse response ``[L]``: a unit direct path then Gaussian noise whose
    amplitude decays by 60 dB over ``rt60`` seconds (``L = rt60 * sample_rate``), unit energy."""
    length = max(2, int(rt60 * sample_rate))
    t = np.arange(length) / sample_rate
    ir = rng.standard_normal(length) * np.exp(-3 * np.log(10) * t / rt60)  # 20 log10(env(rt60)) = -60
    ir[0] = 1.0
    return torch.from_numpy((ir / np.linalg.norm(ir)).astype(np.float32))


class Reverb:
    """Convolve with a synthetic exponentially decaying noise impulse response
    (:func:`exponential_ir`) of a reverberation time drawn from ``rt60`` seconds, with probability
    ``p``. The length and the RMS level are kept (the tail past the end is cut)."""

    def __init__(self, rt60=(0.2, 0.6), p: float = 1.0):
        self.rt60, self.p = _range(rt60, "rt60", "Reverb"), _probability(p, "Reverb")
        if self.rt60[0] <= 0:
            raise ConfigError(f"Reverb: rt60 must be positive seconds; got {rt60!r}")

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        wave = waveform_of(sample, "Reverb")  # [C, T]
        if rng.random() >= self.p:
            return sample
        ir = exponential_ir(rng.uniform(*self.rt60), sample_rate_of(sample, "Reverb"), rng)
        import torchaudio.functional as AF

        wet = AF.fftconvolve(wave, ir.to(wave)[None])[..., :wave.shape[-1]]  # [C, T]
        rms_dry, rms_wet = wave.pow(2).mean().sqrt(), wet.pow(2).mean().sqrt()
        return {**sample, "inputs": wet * (rms_dry / rms_wet) if rms_wet > 0 else wet}

    def __repr__(self):
        return f"Reverb(rt60={self.rt60}, p={self.p})"


class RandomGain:
    """Scale the waveform by a gain drawn uniformly from ``gain_db`` (dB)."""

    def __init__(self, gain_db=(-6.0, 6.0)):
        self.gain_db = _range(gain_db, "gain_db", "RandomGain")

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        wave = waveform_of(sample, "RandomGain")
        return {**sample, "inputs": wave * 10 ** (rng.uniform(*self.gain_db) / 20)}

    def __repr__(self):
        return f"RandomGain(gain_db={self.gain_db})"


class Resample:
    """Resample the waveform to ``sample_rate`` Hz and update ``sample['sample_rate']``."""

    def __init__(self, sample_rate: int):
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate <= 0:
            raise ConfigError(f"Resample: sample_rate must be a positive int (Hz); got {sample_rate!r}")
        self.sample_rate = sample_rate

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        wave = waveform_of(sample, "Resample")
        rate = sample_rate_of(sample, "Resample")
        if rate == self.sample_rate:
            return sample
        return {**sample, "inputs": _resample(wave, rate, self.sample_rate), "sample_rate": self.sample_rate}

    def __repr__(self):
        return f"Resample(sample_rate={self.sample_rate})"


class MixDown:
    """Average the channels: ``[C, T] -> [1, T]``."""

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        wave = waveform_of(sample, "MixDown")
        return sample if wave.shape[0] == 1 else {**sample, "inputs": wave.mean(0, keepdim=True)}

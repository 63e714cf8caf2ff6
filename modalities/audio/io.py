"""Reading and writing audio files: ``load_audio -> (waveform float32 [C, T] in [-1, 1], sample_rate)``.

wav, flac, ogg (and whatever else libsndfile knows) are read with ``soundfile``; headerless PCM
(``.raw``, ``.pcm``) with numpy, given its sample rate, dtype and channel count; formats libsndfile
cannot read (older builds lack mp3) fall back to ``torchaudio.load`` (torchcodec), imported only then.

Every problem with a file is reported in glocal's words, naming the file and what to do: a missing,
empty, unreadable, silent or too short file raises :class:`~glocal.core.errors.DataError`; a file of
the wrong sample rate or channel count for what the caller asked raises
:class:`~glocal.core.errors.InputError`.

Example:
    >>> import os, tempfile, torch
    >>> path = os.path.join(tempfile.mkdtemp(), "tone.wav")
    >>> t = torch.arange(8000) / 8000
    >>> save_audio(path, 0.5 * torch.sin(2 * torch.pi * 440 * t), 8000)
    >>> wave, sr = load_audio(path)
    >>> wave.shape, wave.dtype, sr
    (torch.Size([1, 8000]), torch.float32, 8000)
    >>> load_audio(path, sample_rate=16000, resample=True)[0].shape
    torch.Size([1, 16000])
    >>> audio_info(path)["duration_s"]
    1.0
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from glocal.core.errors import ConfigError, DataError, InputError

__all__ = ["load_audio", "save_audio", "audio_info", "RAW_SUFFIXES", "peak_db"]

RAW_SUFFIXES = (".raw", ".pcm")  # headerless PCM: the caller gives rate, dtype and channels
_RAW_DTYPES = ("int16", "int32", "int8", "uint8", "float32", "float64")
_PCM16 = (".wav", ".flac")  # written as 16-bit PCM


def peak_db(waveform: torch.Tensor) -> float:
    """The peak level in dBFS: ``20 log10 max|x|`` (``-inf`` for all zeros)."""
    peak = float(waveform.abs().max()) if waveform.numel() else 0.0
    return 20 * math.log10(peak) if peak > 0 else -math.inf


def load_audio(path, sample_rate: int | None = None, mono: bool | str = True, resample: bool = False,
               raw_sample_rate: int | None = None, raw_dtype: str = "int16", raw_channels: int = 1,
               min_seconds: float = 0.0, silence_db: float | None = -60.0) -> tuple[torch.Tensor, int]:
    """Read an audio file as ``(waveform float32 [C, T] in [-1, 1], sample_rate)``.

    Args:
        path: a wav / flac / ogg file (anything libsndfile reads), ``.raw`` / ``.pcm`` headerless
            PCM, or another format torchaudio can decode (mp3 where libsndfile lacks it).
        sample_rate: the rate the caller expects; None takes the file's.
        mono: ``True``: the file must have one channel; ``'mix'``: average the channels down to
            one; ``False``: keep every channel.
        resample: when ``sample_rate`` differs from the file's, resample to it (otherwise an error).
        raw_sample_rate, raw_dtype, raw_channels: what a headerless file holds (little-endian,
            interleaved); ``raw_sample_rate`` is required for such files.
        min_seconds: shorter files are an error.
        silence_db: files whose peak is below this many dBFS are an error (None: no check).

    Raises:
        DataError: the file is missing, empty, unreadable, silent or shorter than ``min_seconds``.
        InputError: its sample rate or channel count is not what was asked for.
    """
    if mono not in (True, False, "mix"):
        raise ConfigError(f"load_audio: mono must be True (the file must be mono), 'mix' (average the channels) "
                          f"or False (keep them); got {mono!r}")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError(f"{path}: audio file not found" + (" (it is a directory)" if os.path.isdir(path) else ""))
    if os.path.getsize(path) == 0:
        raise DataError(f"{path}: the audio file is empty (0 bytes); re-export or remove it")
    if Path(path).suffix.lower() in RAW_SUFFIXES:
        wave, rate = _read_raw(path, raw_sample_rate, raw_dtype, raw_channels)
    else:
        wave, rate = _read(path)  # [C, T]
    channels, frames = wave.shape
    if frames == 0:
        raise DataError(f"{path}: the audio file is empty (0 samples); re-export or remove it")
    if silence_db is not None and peak_db(wave) < silence_db:
        raise DataError(f"{path}: the audio file is silent: its peak is {peak_db(wave):.1f} dBFS, below "
                        f"silence_db={silence_db} dBFS; remove it, or lower silence_db (None: no check)")
    if frames < min_seconds * rate:
        raise DataError(f"{path}: the audio is {frames / rate:.3f} s long, shorter than min_seconds={min_seconds}; "
                        f"remove it or lower min_seconds")
    if channels > 1 and mono is True:
        raise InputError(f"{path}: the audio has {channels} channels but mono=True asks for one; pass mono='mix' "
                         f"to average the channels, or mono=False to keep them")
    if channels > 1 and mono == "mix":
        wave = wave.mean(0, keepdim=True)  # [1, T]
    if sample_rate is not None and sample_rate != rate:
        if not resample:
            raise InputError(f"{path}: the file's sample rate is {rate} Hz but sample_rate={sample_rate} Hz was "
                             f"asked for; set resample=True to resample it on load (or convert the file)")
        import torchaudio.functional as AF

        wave, rate = AF.resample(wave, rate, sample_rate), sample_rate
    return wave.contiguous(), int(rate)


def _read(path: str) -> tuple[torch.Tensor, int]:
    """A file libsndfile reads, else one torchaudio decodes: ``(float32 [C, T], rate)``."""
    try:
        data, rate = sf.read(path, dtype="float32", always_2d=True)  # [T, C]
    except sf.LibsndfileError as e:
        if _soundfile_format(path):  # a format libsndfile knows, so the file itself is broken
            raise DataError(f"{path}: cannot read the audio file ({e}); its header is corrupt or it is not a "
                            f"{Path(path).suffix.lstrip('.').upper()} file. Re-export or remove it") from e
        return _read_torchaudio(path, e)
    return torch.from_numpy(np.ascontiguousarray(data.T)), int(rate)


def _soundfile_format(path: str) -> bool:
    """Whether the suffix names a container libsndfile reads (wav, flac, ogg, aiff, ...)."""
    suffix = Path(path).suffix.lower().lstrip(".")
    return suffix.upper() in sf.available_formats() or suffix in ("wave", "aif", "oga", "opus")


def _read_torchaudio(path: str, sf_error: Exception) -> tuple[torch.Tensor, int]:
    try:
        import torchaudio
    except ImportError as e:
        raise DataError(f"{path}: soundfile cannot read this format ({sf_error}) and torchaudio is not installed "
                        f"to try instead; convert the file to wav or flac") from e
    try:
        wave, rate = torchaudio.load(path)  # [C, T] float32
    except Exception as e:  # noqa: BLE001 - torchcodec raises several kinds; all mean "cannot decode"
        raise DataError(f"{path}: cannot read the audio file: soundfile says {sf_error}; torchaudio says "
                        f"{type(e).__name__}: {e}. Convert it to wav or flac, or remove it") from e
    return wave.to(torch.float32), int(rate)


def _raw_layout(path: str, raw_sample_rate, raw_dtype: str, raw_channels: int) -> np.dtype:
    """The little-endian numpy dtype of a headerless file, after checking the caller described it."""
    if raw_sample_rate is None:
        raise InputError(f"{path}: a headerless {Path(path).suffix} file has no sample rate; pass raw_sample_rate "
                         f"(and raw_dtype, raw_channels if not int16 mono)")
    if raw_dtype not in _RAW_DTYPES:
        raise ConfigError(f"load_audio: raw_dtype must be one of {', '.join(_RAW_DTYPES)}; got {raw_dtype!r}")
    if isinstance(raw_channels, bool) or not isinstance(raw_channels, int) or raw_channels < 1:
        raise ConfigError(f"load_audio: raw_channels must be an int >= 1; got {raw_channels!r}")
    return np.dtype(raw_dtype).newbyteorder("<")


def _read_raw(path: str, raw_sample_rate, raw_dtype: str, raw_channels: int) -> tuple[torch.Tensor, int]:
    """Headerless little-endian PCM, interleaved: ``(float32 [C, T], rate)`` scaled to [-1, 1]."""
    dtype = _raw_layout(path, raw_sample_rate, raw_dtype, raw_channels)
    size, frame = os.path.getsize(path), dtype.itemsize * raw_channels
    if size % frame:
        raise DataError(f"{path}: {size} bytes is not a whole number of {raw_channels}-channel {raw_dtype} frames; "
                        f"the file is truncated or raw_dtype / raw_channels are wrong")
    data = np.fromfile(path, dtype=dtype).reshape(-1, raw_channels)  # [T, C]
    if dtype.kind == "u":  # offset binary: 128 is silence
        half = 2.0 ** (8 * dtype.itemsize - 1)
        data = (data.astype(np.float64) - half) / half
    elif dtype.kind == "i":
        data = data.astype(np.float64) / 2.0 ** (8 * dtype.itemsize - 1)
    return torch.from_numpy(np.ascontiguousarray(data.T, dtype=np.float32)), int(raw_sample_rate)


def save_audio(path, waveform, sample_rate: int) -> None:
    """Write ``waveform`` (``[C, T]`` or ``[T]``, float in [-1, 1], tensor or array) to ``path``.

    wav and flac are written as 16-bit PCM (values clipped to [-1, 1]); ``.raw`` / ``.pcm`` as
    headerless little-endian int16, interleaved; other suffixes in libsndfile's default encoding.
    """
    wave = waveform.detach().cpu().numpy() if isinstance(waveform, torch.Tensor) else np.asarray(waveform)
    if wave.ndim == 1:
        wave = wave[None]  # [1, T]
    if wave.ndim != 2:
        raise InputError(f"save_audio: the waveform must be [C, T] or [T]; got shape {tuple(wave.shape)}")
    wave = np.clip(wave.astype(np.float32), -1.0, 1.0)
    path = os.fspath(path)
    suffix = Path(path).suffix.lower()
    if suffix in RAW_SUFFIXES:
        pcm = np.round(wave.T * 32767).astype("<i2")  # [T, C] interleaved
        pcm.tofile(path)
        return
    sf.write(path, wave.T, int(sample_rate), subtype="PCM_16" if suffix in _PCM16 else None)


def audio_info(path, raw_sample_rate: int | None = None, raw_dtype: str = "int16", raw_channels: int = 1) -> dict:
    """``{sample_rate, channels, frames, duration_s, format}`` of a file, without decoding it
    (headerless files need ``raw_sample_rate`` and friends, as in :func:`load_audio`)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError(f"{path}: audio file not found")
    suffix = Path(path).suffix.lower()
    if suffix in RAW_SUFFIXES:
        dtype = _raw_layout(path, raw_sample_rate, raw_dtype, raw_channels)
        frames = os.path.getsize(path) // (dtype.itemsize * raw_channels)
        rate, channels, fmt = int(raw_sample_rate), raw_channels, "RAW"
    else:
        try:
            info = sf.info(path)
            rate, channels, frames, fmt = info.samplerate, info.channels, info.frames, info.format
        except sf.LibsndfileError as e:
            if _soundfile_format(path):
                raise DataError(f"{path}: cannot read the audio header ({e}); re-export or remove the file") from e
            rate, channels, frames, fmt = _info_torchcodec(path, e)
    return {"sample_rate": int(rate), "channels": int(channels), "frames": int(frames),
            "duration_s": frames / rate if rate else 0.0, "format": fmt}


def _info_torchcodec(path: str, sf_error: Exception) -> tuple[int, int, int, str]:
    try:
        from torchcodec.decoders import AudioDecoder

        meta = AudioDecoder(path).metadata
        rate, seconds = meta.sample_rate, meta.duration_seconds_from_header
    except Exception as e:  # noqa: BLE001 - a missing torchcodec and an undecodable file read the same here
        raise DataError(f"{path}: cannot read the audio header: soundfile says {sf_error}; torchcodec says "
                        f"{type(e).__name__}: {e}. Convert it to wav or flac") from e
    return rate, meta.num_channels, round((seconds or 0.0) * rate), str(meta.codec).upper()

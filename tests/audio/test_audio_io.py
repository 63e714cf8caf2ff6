"""Audio file I/O: the real pocketsphinx recordings (wav and headerless raw), round trips through
wav / flac / ogg / raw, the torchaudio fallback for formats libsndfile lacks, and every bad file and
bad request, each reported with the file's name and what to do."""
import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from glocal.core.errors import ConfigError, DataError, InputError
from glocal.modalities.audio.io import audio_info, load_audio, peak_db, save_audio

# Debian's pocketsphinx-testdata: 16 kHz mono speech; the raw files are int16 little-endian
POCKETSPHINX = "/usr/share/pocketsphinx/test/data"
WAVS = sorted(glob.glob(f"{POCKETSPHINX}/librivox/*.wav") + glob.glob(f"{POCKETSPHINX}/cards/*.wav"))
RAWS = [f"{POCKETSPHINX}/{name}.raw" for name in ("goforward", "numbers", "something")]


def tone(seconds=0.5, rate=16000, freq=440.0, channels=1, amp=0.5) -> torch.Tensor:
    """A sine ``[C, T]``; channel ``c`` at ``freq * (c + 1)`` so channels differ."""
    t = torch.arange(int(seconds * rate), dtype=torch.float64) / rate
    return torch.stack([amp * torch.sin(2 * torch.pi * freq * (c + 1) * t) for c in range(channels)]).float()


# ------------------------------------------------------------------------------------------------
# the real recordings
# ------------------------------------------------------------------------------------------------
def test_pocketsphinx_testdata_is_installed():
    assert len(WAVS) == 10 and all(os.path.isfile(p) for p in RAWS), "apt-get install pocketsphinx-testdata"


@pytest.mark.parametrize("path", WAVS, ids=os.path.basename)
def test_pocketsphinx_wavs_load(path):
    wave, rate = load_audio(path, sample_rate=16000)
    info = audio_info(path)
    assert rate == 16000 and wave.dtype == torch.float32 and wave.shape == (1, info["frames"])
    assert info == {"sample_rate": 16000, "channels": 1, "frames": info["frames"],
                    "duration_s": info["frames"] / 16000, "format": "WAV"}
    assert wave.abs().max() <= 1 and -20 < peak_db(wave) <= 0  # speech, not noise or silence


@pytest.mark.parametrize("path", RAWS, ids=os.path.basename)
def test_pocketsphinx_raw_files_load_as_int16_little_endian(path):
    wave, rate = load_audio(path, raw_sample_rate=16000)
    pcm = np.fromfile(path, dtype="<i2")
    assert rate == 16000 and wave.shape == (1, pcm.size)
    torch.testing.assert_close(wave[0], torch.from_numpy(pcm / 32768).float())
    # read in the wrong byte order the speech would be full-scale noise; read right it has a quiet mean
    assert abs(float(wave.mean())) < 1e-3 and peak_db(wave) > -20
    assert audio_info(path, raw_sample_rate=16000) == {"sample_rate": 16000, "channels": 1, "frames": pcm.size,
                                                       "duration_s": pcm.size / 16000, "format": "RAW"}


def test_pocketsphinx_raw_resamples_to_8k():
    wave, rate = load_audio(RAWS[0], sample_rate=8000, resample=True, raw_sample_rate=16000)
    assert rate == 8000 and abs(wave.shape[1] - os.path.getsize(RAWS[0]) // 4) <= 1


# ------------------------------------------------------------------------------------------------
# round trips
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix, atol", [(".wav", 1 / 32768), (".flac", 1 / 32768), (".ogg", None)])
def test_save_and_load_round_trip(tmp_path, suffix, atol):
    wave = tone(channels=2)
    path = tmp_path / f"tone{suffix}"
    save_audio(path, wave, 16000)
    loaded, rate = load_audio(path, mono=False)
    assert rate == 16000 and loaded.shape == wave.shape and loaded.dtype == torch.float32
    if atol is not None:  # 16-bit PCM
        torch.testing.assert_close(loaded, wave, atol=atol, rtol=0)
        assert sf.info(str(path)).subtype == "PCM_16"
    else:  # lossy vorbis: the same tone, roughly
        assert float((loaded - wave).pow(2).mean() / wave.pow(2).mean()) < 0.05
    assert audio_info(path)["channels"] == 2


def test_save_accepts_1d_and_numpy_and_clips(tmp_path):
    save_audio(tmp_path / "a.wav", np.array([0.0, 2.0, -2.0, 0.5]), 8000)
    wave, _ = load_audio(tmp_path / "a.wav", silence_db=None)
    torch.testing.assert_close(wave, torch.tensor([[0.0, 32767 / 32768, -32767 / 32768, 0.5]]), atol=1e-4, rtol=0)
    with pytest.raises(InputError, match=r"\[C, T\] or \[T\]"):
        save_audio(tmp_path / "b.wav", torch.zeros(1, 2, 3), 8000)


@pytest.mark.parametrize("dtype", ["int16", "int32", "int8", "uint8", "float32"])
def test_raw_dtypes_and_interleaved_channels(tmp_path, dtype):
    wave = tone(0.05, 8000, channels=2)  # [2, T]
    info = np.iinfo(dtype) if dtype != "float32" else None
    if info is None:
        data = wave.T.numpy()
    elif info.min == 0:  # offset binary
        data = np.round(wave.T.numpy() * 128 + 128).clip(0, 255)
    else:
        data = np.round(wave.T.numpy() * 2.0 ** (info.bits - 1))
    data.astype(np.dtype(dtype).newbyteorder("<")).tofile(tmp_path / "x.pcm")  # [T, C] interleaved
    loaded, rate = load_audio(tmp_path / "x.pcm", mono=False, raw_sample_rate=8000, raw_dtype=dtype, raw_channels=2)
    assert rate == 8000 and loaded.shape == wave.shape
    torch.testing.assert_close(loaded, wave, atol=1 / 64, rtol=0)


def test_save_raw_round_trips_as_int16(tmp_path):
    wave = tone(0.1, 8000)
    save_audio(tmp_path / "x.raw", wave, 8000)
    assert os.path.getsize(tmp_path / "x.raw") == 2 * wave.shape[1]
    torch.testing.assert_close(load_audio(tmp_path / "x.raw", raw_sample_rate=8000)[0], wave, atol=1e-4, rtol=0)


def test_formats_soundfile_cannot_read_fall_back_to_torchaudio(tmp_path):
    from torchcodec.encoders import AudioEncoder

    path = tmp_path / "tone.m4a"  # AAC in MP4: libsndfile does not read it, FFmpeg (torchcodec) does
    AudioEncoder(tone(1.0), sample_rate=16000).to_file(str(path))
    with pytest.raises(sf.LibsndfileError):
        sf.info(str(path))
    wave, rate = load_audio(path)
    assert rate == 16000 and wave.shape[0] == 1 and abs(wave.shape[1] - 16000) < 2048  # + the codec's padding
    assert abs(peak_db(wave) - 20 * np.log10(0.5)) < 1.5
    info = audio_info(path)
    assert info["sample_rate"] == 16000 and info["channels"] == 1 and abs(info["duration_s"] - 1.0) < 0.1


# ------------------------------------------------------------------------------------------------
# channels and rates
# ------------------------------------------------------------------------------------------------
def test_stereo_file_must_be_mixed_or_kept(tmp_path):
    path = tmp_path / "stereo.wav"
    save_audio(path, tone(channels=2), 16000)
    with pytest.raises(InputError, match="stereo.wav.*2 channels.*mono='mix'"):
        load_audio(path)
    both, _ = load_audio(path, mono=False)
    mixed, _ = load_audio(path, mono="mix")
    assert both.shape[0] == 2 and mixed.shape == (1, both.shape[1])
    torch.testing.assert_close(mixed, both.mean(0, keepdim=True))
    with pytest.raises(ConfigError, match="mono must be"):
        load_audio(path, mono="left")


def test_8k_file_asked_for_at_16k(tmp_path):
    path = tmp_path / "narrow.wav"
    save_audio(path, tone(0.5, 8000), 8000)
    with pytest.raises(InputError) as err:
        load_audio(path, sample_rate=16000)
    assert all(s in str(err.value) for s in ("narrow.wav", "8000", "16000", "resample=True"))
    assert not isinstance(err.value, DataError)  # the file is fine; the request does not match it
    wave, rate = load_audio(path, sample_rate=16000, resample=True)
    assert rate == 16000 and wave.shape == (1, 8000)
    # still the same tone: the spectrum peaks at 440 Hz
    spectrum = torch.fft.rfft(wave[0]).abs()
    assert abs(int(spectrum.argmax()) * 16000 / 8000 - 440) <= 2
    assert load_audio(path, sample_rate=8000)[1] == 8000  # matching rates need no resample


# ------------------------------------------------------------------------------------------------
# bad files: each a DataError naming the file
# ------------------------------------------------------------------------------------------------
def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="nowhere.wav: audio file not found"):
        load_audio(tmp_path / "nowhere.wav")
    with pytest.raises(DataError, match="not found"):
        audio_info(tmp_path / "nowhere.wav")


def test_empty_files(tmp_path):
    (tmp_path / "zero_bytes.wav").write_bytes(b"")
    with pytest.raises(DataError, match=r"zero_bytes.wav: the audio file is empty \(0 bytes\)"):
        load_audio(tmp_path / "zero_bytes.wav")
    sf.write(str(tmp_path / "no_samples.wav"), np.zeros(0, dtype=np.float32), 16000, subtype="PCM_16")
    with pytest.raises(DataError, match=r"no_samples.wav: the audio file is empty \(0 samples\)"):
        load_audio(tmp_path / "no_samples.wav")


def test_silent_file(tmp_path):
    save_audio(tmp_path / "zeros.wav", torch.zeros(1, 1600), 16000)
    with pytest.raises(DataError, match=r"zeros.wav: the audio file is silent: its peak is -inf dBFS"):
        load_audio(tmp_path / "zeros.wav")
    save_audio(tmp_path / "quiet.wav", tone(amp=3e-4), 16000)  # -70 dBFS (10 / 32768 after 16-bit rounding)
    with pytest.raises(DataError, match=r"quiet.wav: the audio file is silent: its peak is -70.3 dBFS"):
        load_audio(tmp_path / "quiet.wav")
    assert load_audio(tmp_path / "quiet.wav", silence_db=-90)[0].shape == (1, 8000)
    assert load_audio(tmp_path / "zeros.wav", silence_db=None)[0].abs().max() == 0


@pytest.mark.parametrize("content", [b"RIFF\x24\x00\x00\x00WAVEfmt ", b"this is not audio at all" * 10],
                         ids=["truncated_header", "garbage"])
def test_corrupt_header(tmp_path, content):
    path = tmp_path / "broken.wav"
    path.write_bytes(content)
    with pytest.raises(DataError, match="broken.wav: cannot read the audio file.*Re-export or remove it") as err:
        load_audio(path)
    assert isinstance(err.value.__cause__, sf.LibsndfileError)
    with pytest.raises(DataError, match="broken.wav: cannot read the audio header"):
        audio_info(path)


def test_wav_cut_mid_data_loads_what_is_there(tmp_path):
    save_audio(tmp_path / "full.wav", tone(0.1), 16000)
    data = (tmp_path / "full.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[:44 + 2 * 1000])  # canonical 44-byte header, 1000 samples
    assert load_audio(tmp_path / "cut.wav")[0].shape == (1, 1000)


def test_undecodable_file_of_unknown_format(tmp_path):
    (tmp_path / "noise.m4a").write_bytes(b"garbage" * 50)
    with pytest.raises(DataError, match="noise.m4a: cannot read the audio file: soundfile says.*torchaudio says"):
        load_audio(tmp_path / "noise.m4a")


def test_shorter_than_min_seconds(tmp_path):
    save_audio(tmp_path / "short.wav", tone(0.25), 16000)
    with pytest.raises(DataError, match=r"short.wav: the audio is 0.250 s long, shorter than min_seconds=0.5"):
        load_audio(tmp_path / "short.wav", min_seconds=0.5)
    assert load_audio(tmp_path / "short.wav", min_seconds=0.25)[0].shape == (1, 4000)


def test_bad_raw_requests(tmp_path):
    raw = tmp_path / "x.raw"
    save_audio(raw, tone(0.01), 16000)
    with pytest.raises(InputError, match="x.raw: a headerless .raw file has no sample rate; pass raw_sample_rate"):
        load_audio(raw)
    with pytest.raises(ConfigError, match="raw_dtype must be one of"):
        load_audio(raw, raw_sample_rate=16000, raw_dtype="int24")
    raw.write_bytes(raw.read_bytes() + b"\x00")  # an odd number of bytes
    with pytest.raises(DataError, match="x.raw: 321 bytes is not a whole number of 1-channel int16 frames"):
        load_audio(raw, raw_sample_rate=16000)


def test_reading_wavs_and_the_augmentations_import_no_torchaudio():
    """torchaudio (and torchcodec under it) load only when something resamples, convolves or falls back."""
    code = ("import sys, json, numpy as np\n"
            "from glocal.modalities.audio.io import load_audio\n"
            "from glocal.modalities.audio.transforms import AddNoise, SpecAugment\n"
            f"s = {{'inputs': load_audio({WAVS[0]!r})[0], 'sample_rate': 16000}}\n"
            "AddNoise()(s, np.random.default_rng(0))\n"
            "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert "soundfile" in loaded and not {"torchaudio", "torchcodec"} & loaded

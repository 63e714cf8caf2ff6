"""Audio features and augmentation: Fbank against Kaldi's torchaudio implementation, LogMel / MFCC
shapes, CMVN and dataset statistics, and the augmentations (SpecAugment's masks, AddNoise's SNR,
SpeedPerturb's length, Reverb's length and level), each reproducible from the rng it is given."""
import pickle

import numpy as np
import pytest
import torch
import torchaudio
import torchaudio.compliance.kaldi as kaldi

from glocal.core.errors import ConfigError, InputError
from glocal.modalities.audio.features import MFCC, Fbank, GlobalNorm, LogMel, UtteranceNorm, feature_stats
from glocal.modalities.audio.io import load_audio, save_audio
from glocal.modalities.audio.transforms import (AddNoise, MixDown, RandomGain, Resample, Reverb, SpecAugment,
                                                SpeedPerturb, exponential_ir, signal_to_noise_db, time_warp)
from glocal.modalities.batch import SkippedSample
from glocal.modalities.dataset import Compose

SPEECH = "/usr/share/pocketsphinx/test/data/cards/001.wav"  # 1.1 s at 16 kHz


def rng(seed=0):
    return np.random.default_rng(seed)


def speech() -> dict:
    wave, rate = load_audio(SPEECH)
    return {"inputs": wave, "sample_rate": rate, "path": SPEECH}


def chirp(seconds=0.5, rate=16000, channels=1) -> dict:
    t = torch.arange(int(seconds * rate), dtype=torch.float64) / rate
    wave = 0.3 * torch.sin(2 * torch.pi * (200 + 2000 * t) * t)
    return {"inputs": wave.float()[None].repeat(channels, 1), "sample_rate": rate, "path": "chirp.wav"}


# ------------------------------------------------------------------------------------------------
# features
# ------------------------------------------------------------------------------------------------
def test_fbank_is_kaldis_fbank():
    sample = speech()
    out = Fbank()(sample, rng())
    expected = kaldi.fbank(sample["inputs"], num_mel_bins=80, frame_length=25.0, frame_shift=10.0, dither=0.0,
                           sample_frequency=16000)
    frames = 1 + (sample["inputs"].shape[1] - 400) // 160
    assert out["inputs"].shape == (frames, 80) and out["num_frames"] == frames and out["inputs"].dtype == torch.float32
    torch.testing.assert_close(out["inputs"], expected, rtol=0, atol=0)
    assert out["path"] == SPEECH and out["sample_rate"] == 16000  # other keys pass through
    scaled = Fbank(scale=32768, num_mel_bins=40, preemphasis_coefficient=0.0)(sample, rng())["inputs"]
    torch.testing.assert_close(scaled, kaldi.fbank(sample["inputs"] * 32768, num_mel_bins=40,
                                                   preemphasis_coefficient=0.0))


def test_fbank_dither_comes_from_the_rng():
    sample, fbank = speech(), Fbank(dither=1e-3)
    a, b, c = (fbank(sample, rng(s))["inputs"] for s in (1, 1, 2))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a, c) and not torch.equal(a, Fbank()(sample, rng(1))["inputs"])
    with pytest.raises(ConfigError, match="dither and vtlp as Fbank's own arguments"):
        Fbank(**{"dither": 0.0, "channel": 1})


def test_fbank_vtlp_warps_the_filter_bank_per_utterance():
    sample = chirp()
    tone = {**sample, "inputs": 0.3 * torch.sin(2 * torch.pi * 1000 * torch.arange(8000) / 16000)[None]}
    assert torch.equal(Fbank(vtlp=(1.0, 1.0))(sample, rng())["inputs"], Fbank()(sample, rng())["inputs"])
    warped = Fbank(vtlp=(0.8, 1.2))
    a, b, c = (warped(sample, rng(s))["inputs"] for s in (3, 3, 4))
    torch.testing.assert_close(a, b, rtol=0, atol=0)  # the factor comes from the rng
    assert not torch.equal(a, c)
    expected = kaldi.fbank(sample["inputs"], num_mel_bins=80, dither=0.0, sample_frequency=16000,
                           vtln_warp=float(rng(3).uniform(0.8, 1.2)))
    torch.testing.assert_close(a, expected, rtol=0, atol=0)
    # a 1 kHz tone lands in higher mel bins for a warp factor above 1 than below it
    low, high = (int(Fbank(vtlp=(w, w))(tone, rng())["inputs"].mean(0).argmax()) for w in (0.85, 1.15))
    assert high > low
    assert torch.equal(warped(sample, None)["inputs"], Fbank()(sample, None)["inputs"])  # no rng: no warp
    with pytest.raises(ConfigError, match="vtlp must be"):
        Fbank(vtlp=(1.2, 0.9))


def test_logmel_and_mfcc():
    sample = chirp()
    T = sample["inputs"].shape[1]
    out = LogMel(n_mels=64)(sample, rng())
    mel = torchaudio.transforms.MelSpectrogram(16000, n_fft=512, win_length=400, hop_length=160, n_mels=64)
    assert out["inputs"].shape == (1 + T // 160, 64) and out["num_frames"] == 1 + T // 160
    torch.testing.assert_close(out["inputs"], torch.log(mel(sample["inputs"])[0] + 1e-6).T)
    mfcc = MFCC(n_mfcc=13)(sample, rng())
    assert mfcc["inputs"].shape == (1 + T // 160, 13) and torch.isfinite(mfcc["inputs"]).all()
    at_8k = LogMel(sample_rate=8000, n_mels=40)(chirp(rate=8000), rng())["inputs"]  # 200-sample windows, 256-point FFT
    assert at_8k.shape == (1 + 4000 // 80, 40)


@pytest.mark.parametrize("transform", [Fbank(), LogMel(), MFCC()], ids=lambda t: type(t).__name__)
def test_features_check_rate_channels_and_length(transform):
    with pytest.raises(InputError, match=r"rate is 8000 Hz \(chirp.wav\).*configured for 16000 Hz.*resample=True"):
        transform(chirp(rate=8000), rng())
    with pytest.raises(InputError, match=r"2 channels \(chirp.wav\).*MixDown"):
        transform(chirp(channels=2), rng())
    with pytest.raises(InputError, match="float waveform tensor"):
        transform({"inputs": torch.zeros(1, 1, 10), "sample_rate": 16000}, rng())
    with pytest.raises(InputError, match="no 'sample_rate'"):
        transform({"inputs": torch.zeros(1, 1000)}, rng())
    if isinstance(transform, Fbank):  # kaldi frames are not padded: 300 samples make no 400-sample window
        with pytest.raises(InputError, match="too short for one frame"):
            transform({"inputs": torch.randn(1, 300), "sample_rate": 16000}, rng())


def test_utterance_norm():
    feats = Fbank()(speech(), rng())
    normed = UtteranceNorm()(feats, rng())["inputs"]
    torch.testing.assert_close(normed.mean(0), torch.zeros(80), atol=1e-4, rtol=0)
    torch.testing.assert_close(normed.std(0, unbiased=False), torch.ones(80), atol=1e-3, rtol=0)
    means_only = UtteranceNorm(norm_vars=False)(feats, rng())["inputs"]
    torch.testing.assert_close(means_only, feats["inputs"] - feats["inputs"].mean(0))
    with pytest.raises(InputError, match=r"still a waveform \(1, 17526\) \(/usr/.*001.wav\); put UtteranceNorm"):
        UtteranceNorm()(speech(), rng())
    with pytest.raises(InputError, match=r"float features \[frames, bins\].*\(3, 4\), num_frames=5"):
        UtteranceNorm()({"inputs": torch.zeros(3, 4), "num_frames": 5}, rng())


class FeatureDataset:
    """A map-style dataset of three feature matrices and one skipped sample."""

    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.items = [{"inputs": 3 + 2 * torch.randn(n, 4, generator=g)} for n in (50, 70, 30)]
        self.items.insert(1, SkippedSample(1, "bad.wav", "unreadable"))

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def test_feature_stats_and_global_norm():
    dataset = FeatureDataset()
    stats = feature_stats(dataset)
    every = torch.cat([s["inputs"] for s in dataset.items if isinstance(s, dict)]).double()  # [150, 4]
    assert stats["num_frames"] == 150
    torch.testing.assert_close(stats["mean"], every.mean(0).float())
    torch.testing.assert_close(stats["std"], every.std(0, unbiased=False).float())
    assert feature_stats(dataset, max_samples=1)["num_frames"] == 50
    norm = GlobalNorm(stats["mean"].tolist(), stats["std"].tolist())  # plain lists, as a config holds them
    normed = torch.cat([norm(s, rng())["inputs"] for s in dataset.items if isinstance(s, dict)])
    torch.testing.assert_close(normed.mean(0), torch.zeros(4), atol=1e-5, rtol=0)
    with pytest.raises(InputError, match="4 bins but the statistics 3"):
        GlobalNorm([0, 0, 0], [1, 1, 1])({"inputs": torch.zeros(5, 4)}, rng())
    with pytest.raises(ConfigError, match="one length"):
        GlobalNorm([0, 0], [1])
    with pytest.raises(InputError, match="no frames"):
        feature_stats([])


def test_a_whole_pipeline_builds_and_is_reproducible():
    pipeline = Compose([SpeedPerturb(), AddNoise(snr_db=(5, 20)), Reverb(p=0.5), Fbank(dither=1e-4), UtteranceNorm(),
                        SpecAugment(time_warp=5)])
    a, b = pipeline(speech(), rng(7)), pipeline(speech(), rng(7))
    torch.testing.assert_close(a["inputs"], b["inputs"], rtol=0, atol=0)
    assert a["inputs"].shape[1] == 80 and a["num_frames"] == a["inputs"].shape[0]
    for t in pipeline.transforms:  # data-loader workers receive them pickled
        assert type(pickle.loads(pickle.dumps(t))) is type(t)


# ------------------------------------------------------------------------------------------------
# SpecAugment
# ------------------------------------------------------------------------------------------------
def test_spec_augment_masks_the_drawn_spans():
    feats = {"inputs": torch.rand(200, 80) + 1}  # no zeros before masking
    aug = SpecAugment(freq_masks=3, freq_width=10, time_masks=4, time_width=0.1)
    choice = aug.draw(200, 80, rng(3))
    assert choice["warp"] is None and len(choice["freq"]) == 3 and len(choice["time"]) == 4
    assert all(w <= 10 and 0 <= s <= 80 - w for s, w in choice["freq"])
    assert all(w <= 20 and 0 <= s <= 200 - w for s, w in choice["time"])  # 10 % of 200 frames
    out = aug(feats, rng(3))["inputs"]
    bins = {b for s, w in choice["freq"] for b in range(s, s + w)}
    frames = {f for s, w in choice["time"] for f in range(s, s + w)}
    expected = torch.zeros(200, 80, dtype=torch.bool)
    expected[:, sorted(bins)] = True
    expected[sorted(frames)] = True
    assert torch.equal(out == 0, expected)
    assert torch.equal(out[~expected], feats["inputs"][~expected])  # the rest untouched
    assert expected.any()


def test_spec_augment_widths_and_counts_over_many_draws():
    aug = SpecAugment(freq_masks=2, freq_width=27, time_masks=2, time_width=12)
    widths = [w for seed in range(200) for kind in ("freq", "time") for _, w in aug.draw(100, 80, rng(seed))[kind]]
    assert len(widths) == 800 and max(widths) == 27 and min(widths) == 0  # U{0..F}, both ends reached


def test_spec_augment_is_reproducible_and_zero_masks_change_nothing():
    feats = {"inputs": torch.randn(120, 40)}
    aug = SpecAugment(time_warp=8)
    torch.testing.assert_close(aug(feats, rng(5))["inputs"], aug(feats, rng(5))["inputs"], rtol=0, atol=0)
    assert not torch.equal(aug(feats, rng(5))["inputs"], aug(feats, rng(6))["inputs"])
    off = SpecAugment(freq_masks=0, time_masks=0)
    assert off(feats, rng(1))["inputs"] is feats["inputs"]
    zero_width = SpecAugment(freq_width=0, time_width=0)
    assert torch.equal(zero_width(feats, rng(1))["inputs"], feats["inputs"])
    with pytest.raises(ConfigError, match="time_width"):
        SpecAugment(time_width=1.5)


def test_time_warp_moves_a_frame_and_keeps_the_length():
    ramp = torch.arange(100, dtype=torch.float32)[:, None].repeat(1, 3)  # [100, 3], frame i holds i
    assert time_warp(ramp, 50, 0) is ramp
    warped = time_warp(ramp, 50, 10)
    assert warped.shape == ramp.shape and bool((warped[1:, 0] >= warped[:-1, 0]).all())  # still monotone
    assert abs(float(warped[60, 0]) - 50) < 1.0  # frame 50 now sits at 60
    short = {"inputs": torch.randn(10, 4)}  # 2 * time_warp frames or fewer: no warp
    assert SpecAugment(freq_masks=0, time_masks=0, time_warp=5).draw(10, 4, rng())["warp"] is None
    assert SpecAugment(freq_masks=0, time_masks=0, time_warp=5)(short, rng())["inputs"] is short["inputs"]


# ------------------------------------------------------------------------------------------------
# waveform augmentation
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("snr", [0.0, 10.0, 25.0])
@pytest.mark.parametrize("kind", ["white", "pink", "dir"])
def test_add_noise_hits_the_snr(tmp_path, kind, snr):
    if kind == "dir":
        for i in range(2):  # 8 kHz noise files for 16 kHz speech: resampled on load
            save_audio(tmp_path / f"noise{i}.wav", 0.2 * torch.randn(1, 2000 + 1000 * i), 8000)
    sample = speech()
    noise = str(tmp_path) if kind == "dir" else kind
    out = AddNoise(snr_db=snr, noise=noise)(sample, rng())
    added = out["inputs"] - sample["inputs"]
    assert out["inputs"].shape == sample["inputs"].shape and added.abs().max() > 0
    assert abs(signal_to_noise_db(sample["inputs"], added) - snr) < 0.5


def test_add_noise_draws_from_the_rng():
    sample, aug = chirp(), AddNoise(snr_db=(5, 15), noise="pink")
    a, b, c = (aug(sample, rng(s))["inputs"] for s in (1, 1, 2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    snrs = [signal_to_noise_db(sample["inputs"], aug(sample, rng(s))["inputs"] - sample["inputs"]) for s in range(20)]
    assert 5 - 0.5 < min(snrs) < max(snrs) < 15 + 0.5 and max(snrs) - min(snrs) > 3
    assert AddNoise(p=0.0)(sample, rng()) is sample


def test_pink_noise_has_more_power_at_low_frequencies():
    added = AddNoise(snr_db=0, noise="pink")(chirp(1.0), rng())["inputs"] - chirp(1.0)["inputs"]
    power = torch.fft.rfft(added[0]).abs().pow(2)  # 1 Hz bins
    assert power[100:200].mean() > 5 * power[4000:5000].mean()  # 1/f: about 30x


def test_add_noise_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="'white', 'pink' or a directory"):
        AddNoise(noise="brown")
    with pytest.raises(ConfigError, match="holds no"):
        AddNoise(noise=str(tmp_path))
    with pytest.raises(ConfigError, match="low <= high"):
        AddNoise(snr_db=(30, 10))


@pytest.mark.parametrize("factor", [0.9, 1.1, 1.5])
def test_speed_perturb_changes_the_length_by_the_factor(factor):
    sample = speech()
    out = SpeedPerturb(factors=(factor,))(sample, rng())
    T = sample["inputs"].shape[1]
    assert abs(out["inputs"].shape[1] - T / factor) <= 1 and out["sample_rate"] == 16000


def test_speed_perturb_draws_each_factor():
    sample, aug = chirp(0.1), SpeedPerturb()
    lengths = {aug(sample, rng(s))["inputs"].shape[1] for s in range(30)}
    assert lengths == {round(1600 / 0.9), 1600, round(1600 / 1.1)}
    assert SpeedPerturb(factors=(1.0,))(sample, rng()) is sample


def test_reverb_keeps_length_and_level():
    sample = speech()
    out = Reverb(rt60=(0.3, 0.5))(sample, rng())["inputs"]
    assert out.shape == sample["inputs"].shape and torch.isfinite(out).all()
    torch.testing.assert_close(out.pow(2).mean().sqrt(), sample["inputs"].pow(2).mean().sqrt())
    assert not torch.allclose(out, sample["inputs"], atol=1e-3)
    assert torch.equal(out, Reverb(rt60=(0.3, 0.5))(sample, rng())["inputs"])
    stereo = chirp(channels=2)
    assert Reverb()(stereo, rng())["inputs"].shape == stereo["inputs"].shape


def test_exponential_ir_decays_60_db_over_rt60():
    ir = exponential_ir(0.4, 16000, rng())
    assert ir.shape == (6400,) and abs(float(ir.norm()) - 1) < 1e-5
    head = ir[1:640].pow(2).mean()  # the tail after the direct path, first 40 ms
    tail = ir[-640:].pow(2).mean()  # last 40 ms, about 54 dB below
    assert 45 < 10 * torch.log10(head / tail) < 65


def test_gain_resample_and_mixdown():
    sample = chirp(channels=2)
    out = RandomGain(gain_db=(-6, 6))(sample, rng())["inputs"]
    ratio_db = 20 * torch.log10(out.abs().max() / sample["inputs"].abs().max())
    assert -6 <= float(ratio_db) <= 6
    assert torch.allclose(RandomGain(gain_db=-20)(sample, rng())["inputs"], sample["inputs"] / 10)
    down = Resample(8000)(sample, rng())
    assert down["sample_rate"] == 8000 and down["inputs"].shape == (2, 4000)
    assert Resample(16000)(sample, rng()) is sample
    mixed = MixDown()(sample, rng())["inputs"]
    torch.testing.assert_close(mixed, sample["inputs"].mean(0, keepdim=True))
    with pytest.raises(ConfigError, match="positive int"):
        Resample(16000.0)

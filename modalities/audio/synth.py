"""Offline speech data: keywords and short sentences spoken by espeak-ng and flite, made
deterministically from a seed and cached.

No real multi-speaker labelled corpus exists offline, so the speech sets are synthesised by the
project's own code from two Debian engines: ``espeak-ng`` (1.51, formant synthesis, 22,050 Hz) and
``flite`` (2.2, diphone / cluster-unit voices at 8 or 16 kHz). Every utterance is read back,
resampled to 16 kHz mono (``scipy.signal.resample_poly``, float64), its leading and trailing
silence trimmed (10 ms frames more than 40 dB below the loudest frame), padded with a little
silence, and optionally made harder: a generated room reverb, a random level and white or pink
noise at a random SNR. The result is written as 16-bit wav.

**Corpora.**

- ``"keywords"`` (keyword spotting, :data:`KEYWORDS`, 20 classes): the digits "zero" .. "nine"
  and "yes no up down left right on off stop go"; ``per_word`` utterances of each word in each
  split (default 100 train, 20 val, 20 test: 2,800 utterances, about 0.6 s each).
- ``"sentences"`` (CTC recognition): lower-case transcripts from :func:`make_sentence`: digit
  strings of 3-7 digits spoken as words (40 %) and command phrases of a small grammar ("go
  forward ten meters", "turn left", "move up three", "set the volume to seven", "turn the lights
  off", "let's go home", "don't stop", ...); default 2,000 train, 200 val, 200 test utterances.

**Voices.** A voice is ``(engine, accent or flite voice, variant, speed, pitch)``
(:class:`Voice`); the pool is the product of these lists, enumerated in a fixed order
(:func:`voice_pool`). Val and test voices never occur in training: espeak voices are split by
*variant* (every accent, speed and pitch of a variant goes to one split) and flite voices by
voice; kal and kal16 are one speaker, so they stay together.

- train: 24 espeak variants (m1-m6, f1-f3, klatt, klatt2, klatt3, Alex, Andy, Annie, aunty,
  benjamin, david, grandma, grandpa, linda, max, norbert, quincy) and flite kal, kal16, awb:
  1,512 + 9 = 1,521 voices;
- val: 6 variants (m7, f4, klatt4, Alicia, edward, robert) and flite rms: 378 + 3 = 381 voices;
- test: 6 variants (m8, f5, klatt5, belinda, john, steph) and flite slt: 378 + 3 = 381 voices.

Accents: en-us, en-gb, en-gb-scotland, en-gb-x-gbclan, en-gb-x-rp, en-gb-x-gbcwmd, en-029 (all
splits). espeak speeds 130 / 155 / 180 words per minute, pitches 35 / 50 / 65; flite at duration
stretch 0.85 / 1.0 / 1.2 and its voice's own pitch. An utterance is spoken by flite with
probability ``flite_share`` (0.25), else by espeak, the voice drawn uniformly from the split's pool.

**Determinism.** The plan (text, voice and augmentation of every utterance, :func:`plan_corpus`)
is drawn from ``numpy.random.default_rng([seed, corpus, split])``: each split has its own stream,
so the size of one split never changes another. Each utterance carries its own seed for its noise
and room response. Both engines are deterministic, so the same settings give the same manifest and
the same audio bytes (on the same engine builds).

**Augmentation** (:class:`Augment`, defaults): silence of 0.05-0.25 s before and after the
speech; reverb with probability 0.3 (exponentially decaying noise, RT60 0.15-0.6 s, direct path
kept); peak level -11 .. -1 dBFS; noise with probability 0.6, half white and half pink (1/f), SNR
10-30 dB over the speech. ``augment=None`` makes clean audio (fixed 0.1 s padding, -1 dBFS peak).

**Cache.** A corpus (all three splits) is written once to
``<cache_dir>/<corpus>-v<GENERATOR_VERSION>-<settings hash>/`` (default ``cache_dir``:
``$GLOCAL_CACHE/data/speech``, else ``~/.cache/glocal/data/speech``): ``wav/<split>/<id>.wav``,
``manifest.tsv`` (one row per utterance, see :data:`MANIFEST_COLUMNS`; ``path`` relative to the
folder) and ``settings.json`` (the settings, engine versions, time taken). It is built in a
temporary folder beside it and renamed into place, so a reader sees no corpus or a whole one (two
processes building at once: the first rename wins, the other's copy is removed). A later
construction with the same settings reads the manifest and logs ``cache hit``.

**Speed** (measured on this project's 2-core machine under ``nice -n 19``, the cores shared with a
training job, load average 4): a batch of 200 keyword utterances took 8.2 s with 2 worker processes
(0.04 s per utterance, 0.08 s of one worker: engine run, resampling, augmentation and writing), 200
sentences 12.3 s (0.06 s per utterance, 0.12 s of one worker). The default corpora take about 2
minutes (keywords, 2,800 utterances) and 2.5 minutes (sentences, 2,400) with ``workers=2``.
Progress is logged every ``progress_every`` utterances.

Example (no synthesis):

    >>> [len(voice_pool(s)) for s in SPLITS]
    [1521, 381, 381]
    >>> voice_pool("test")[0].id
    'espeak:en-us+m8:s130:p35'
    >>> plan = plan_corpus("keywords", seed=0, sizes=1)
    >>> len(plan), plan[0].split, plan[0].text
    (60, 'train', 'zero')
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import subprocess
import tempfile
import time
import warnings
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from glocal.core.errors import ConfigError, DataError, DatasetNotFoundError

from .io import load_audio, save_audio

__all__ = ["KEYWORDS", "DIGITS", "COMMANDS", "SPLITS", "CORPORA", "SAMPLE_RATE", "GENERATOR_VERSION",
           "ESPEAK_ACCENTS", "ESPEAK_VARIANTS", "FLITE_VOICES", "MANIFEST_COLUMNS", "Voice", "Augment",
           "Utterance", "voice_pool", "make_sentence", "plan_corpus", "synthesize", "trim_silence", "render",
           "SpeechCorpus", "speech_cache_root", "read_manifest_tsv", "DEFAULT_SIZES"]

GENERATOR_VERSION = 1  # bump whenever the same settings would make different audio or a different plan
SAMPLE_RATE = 16_000
SPLITS = ("train", "val", "test")
CORPORA = ("keywords", "sentences")

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
COMMANDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
KEYWORDS = DIGITS + COMMANDS

ESPEAK_ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp", "en-gb-x-gbcwmd", "en-029")
ESPEAK_VARIANTS = dict(
    train=("m1", "m2", "m3", "m4", "m5", "m6", "f1", "f2", "f3", "klatt", "klatt2", "klatt3", "Alex", "Andy",
           "Annie", "aunty", "benjamin", "david", "grandma", "grandpa", "linda", "max", "norbert", "quincy"),
    val=("m7", "f4", "klatt4", "Alicia", "edward", "robert"),
    test=("m8", "f5", "klatt5", "belinda", "john", "steph"),
)
ESPEAK_SPEEDS = (130, 155, 180)  # words per minute
ESPEAK_PITCHES = (35, 50, 65)  # 0-99
FLITE_VOICES = dict(train=("kal", "kal16", "awb"), val=("rms",), test=("slt",))
FLITE_STRETCHES = (0.85, 1.0, 1.2)  # flite's duration_stretch: > 1 is slower

# the columns of manifest.tsv, in order; path is relative to the corpus folder
MANIFEST_COLUMNS = ("id", "split", "path", "text", "label", "voice", "seconds", "samples", "noise", "snr_db",
                    "rt60_s", "gain_db")
_CORPUS_ID = dict(keywords=0, sentences=1)
_SPLIT_ID = dict(train=0, val=1, test=2)
DEFAULT_SIZES = dict(keywords=dict(train=100, val=20, test=20), sentences=dict(train=2000, val=200, test=200))


def _log(message: str, level: int = logging.INFO) -> None:
    from mmengine.logging import print_log

    print_log(message, logger="current", level=level)


# ------------------------------------------------------------------------------------------------
# voices
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Voice:
    """One synthetic speaker: ``engine`` ``'espeak'`` or ``'flite'``; ``name`` the espeak accent
    (``en-gb-scotland``) or the flite voice (``slt``); ``variant`` the espeak voice variant
    (``f3``; None for flite); ``speed`` words per minute (espeak) or the duration stretch (flite);
    ``pitch`` 0-99 (espeak; None for flite: the voice's own)."""

    engine: str
    name: str
    variant: str | None
    speed: float
    pitch: int | None = None

    @property
    def id(self) -> str:
        """``espeak:en-gb+f3:s155:p50`` or ``flite:slt:x1.00``: the voice's name in manifests."""
        if self.engine == "espeak":
            return f"espeak:{self.name}+{self.variant}:s{int(self.speed)}:p{self.pitch}"
        return f"flite:{self.name}:x{self.speed:.2f}"

    @property
    def speaker(self) -> str:
        """What the splits are made of: the espeak variant or the flite voice (kal16 is kal)."""
        return f"espeak+{self.variant}" if self.engine == "espeak" else f"flite:{self.name.replace('kal16', 'kal')}"

    def command(self, text: str, out: str) -> list[str]:
        """The engine's command line that writes ``text`` spoken by this voice to the wav ``out``."""
        if self.engine == "espeak":
            return ["espeak-ng", "-v", f"{self.name}+{self.variant}", "-s", str(int(self.speed)), "-p",
                    str(self.pitch), "-w", out, text]
        return ["flite", "-voice", self.name, "--setf", f"duration_stretch={self.speed}", "-t", text, "-o", out]


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise ConfigError(f"speech split must be one of {', '.join(SPLITS)}; got {split!r}")
    return split


def voice_pool(split: str, engine: str | None = None) -> tuple[Voice, ...]:
    """Every voice of a split (both engines, or ``engine`` only), in a fixed order: espeak by
    variant, accent, speed, pitch; then flite by voice and stretch. No voice is in two splits."""
    _check_split(split)
    voices = []
    if engine in (None, "espeak"):
        voices += [Voice("espeak", accent, variant, speed, pitch) for variant in ESPEAK_VARIANTS[split]
                   for accent in ESPEAK_ACCENTS for speed in ESPEAK_SPEEDS for pitch in ESPEAK_PITCHES]
    if engine in (None, "flite"):
        voices += [Voice("flite", name, None, stretch) for name in FLITE_VOICES[split] for stretch in FLITE_STRETCHES]
    return tuple(voices)


# ------------------------------------------------------------------------------------------------
# texts
# ------------------------------------------------------------------------------------------------
_NUMBERS = DIGITS[1:] + ("ten",)  # one .. ten
_THINGS = ("light", "lights", "radio", "music", "heating", "fan")
_SETTINGS = ("the volume", "the speed", "the temperature", "the timer")
_NEGATIONS = ("don't", "do not")


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def make_sentence(rng: np.random.Generator) -> str:
    """One lower-case transcript of the sentence grammar: a digit string (3-7 digits spoken as
    words) 40 % of the time, else one of eight command templates.

    >>> rng = np.random.default_rng(0)
    >>> [make_sentence(rng) for _ in range(3)]
    ['turn the lights on', 'one eight six', 'do not turn']
    """
    if rng.random() < 0.4:
        return " ".join(_pick(rng, DIGITS) for _ in range(int(rng.integers(3, 8))))
    kind = int(rng.integers(8))
    if kind == 0:  # go forward ten meters
        n = _pick(rng, _NUMBERS)
        unit = _pick(rng, ("meter", "step") if n == "one" else ("meters", "steps"))
        return f"go {_pick(rng, ('forward', 'backward'))} {n} {unit}"
    if kind == 1:
        return f"turn {_pick(rng, ('left', 'right', 'around'))}"
    if kind == 2:
        return f"move {_pick(rng, ('up', 'down', 'left', 'right'))} {_pick(rng, _NUMBERS)}"
    if kind == 3:
        return _pick(rng, ("stop", "go", "start", "pause", "wait", "stop now", "go now", "start again"))
    if kind == 4:
        return f"turn the {_pick(rng, _THINGS)} {_pick(rng, ('on', 'off'))}"
    if kind == 5:
        return f"set {_pick(rng, _SETTINGS)} to {_pick(rng, _NUMBERS)}"
    if kind == 6:
        return f"let's go {_pick(rng, ('home', 'left', 'right', 'forward', 'back'))}"
    return f"{_pick(rng, _NEGATIONS)} {_pick(rng, ('stop', 'move', 'turn', 'go'))}"


# ------------------------------------------------------------------------------------------------
# the plan
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Augment:
    """How utterances are made harder; every range is ``(low, high)``, drawn uniformly.

    Args:
        pad_s: silence added before and after the trimmed speech (each side drawn separately).
        reverb_prob, rt60_s: chance of a generated room response, and its RT60.
        gain_db: the utterance's peak level, dB below -1 dBFS (0: peak at -1 dBFS).
        noise_prob, pink_share, snr_db: chance of added noise, the share of it that is pink
            (the rest white), and its SNR over the speech's mean power.
    """

    pad_s: tuple[float, float] = (0.05, 0.25)
    reverb_prob: float = 0.3
    rt60_s: tuple[float, float] = (0.15, 0.6)
    gain_db: tuple[float, float] = (-10.0, 0.0)
    noise_prob: float = 0.6
    pink_share: float = 0.5
    snr_db: tuple[float, float] = (10.0, 30.0)

    @classmethod
    def clean(cls) -> Augment:
        """No reverb, no noise, full level, 0.1 s of silence either side."""
        return cls(pad_s=(0.1, 0.1), reverb_prob=0.0, gain_db=(0.0, 0.0), noise_prob=0.0)


@dataclass(frozen=True)
class Utterance:
    """One planned utterance: what to say, who says it, and how it is augmented."""

    id: str
    split: str
    text: str
    label: str  # the keyword (keyword corpus), "" for sentences
    voice: Voice
    pad_s: tuple[float, float]
    rt60_s: float  # 0: no reverb
    gain_db: float
    noise: str  # "none", "white" or "pink"
    snr_db: float
    seed: int  # the utterance's own stream: its noise and room response

    @property
    def path(self) -> str:
        return f"wav/{self.split}/{self.id}.wav"


def _sizes(corpus: str, sizes) -> dict[str, int]:
    if sizes is None:
        sizes = DEFAULT_SIZES[corpus]
    if isinstance(sizes, Mapping):
        unknown = sorted(set(sizes) - set(SPLITS))
        if unknown:
            raise ConfigError(f"speech corpus sizes: unknown splits {unknown}; use {', '.join(SPLITS)}")
        sizes = {s: sizes.get(s, DEFAULT_SIZES[corpus][s]) for s in SPLITS}
    else:
        sizes = {s: sizes for s in SPLITS}
    for s, n in sizes.items():
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ConfigError(f"speech corpus size of split {s!r} must be an int >= 0; got {n!r}")
    return {s: int(n) for s, n in sizes.items()}


def plan_corpus(corpus: str, seed: int = 0, sizes: int | Mapping[str, int] | None = None,
                augment: Augment | None = Augment(), flite_share: float = 0.25) -> list[Utterance]:
    """The utterances of a corpus, all splits (train, then val, then test), deterministic from
    ``seed``. ``sizes``: utterances per keyword and split (``"keywords"``) or per split
    (``"sentences"``); an int for every split or ``{split: n}``. ``augment=None``: clean audio."""
    if corpus not in CORPORA:
        raise ConfigError(f"speech corpus must be one of {', '.join(CORPORA)}; got {corpus!r}")
    aug = augment if augment is not None else Augment.clean()
    plan = []
    for split, n in _sizes(corpus, sizes).items():
        rng = np.random.default_rng([int(seed), _CORPUS_ID[corpus], _SPLIT_ID[split]])
        espeak, flite = voice_pool(split, "espeak"), voice_pool(split, "flite")
        words = [w for w in KEYWORDS for _ in range(n)] if corpus == "keywords" else [None] * n
        for i, word in enumerate(words):
            text = word if word is not None else make_sentence(rng)
            # always the same draws in the same order, whatever is used, so the streams stay aligned
            pool = flite if rng.random() < flite_share else espeak
            voice = pool[int(rng.integers(len(pool)))]
            pad = (float(rng.uniform(*aug.pad_s)), float(rng.uniform(*aug.pad_s)))
            reverb, rt60 = rng.random() < aug.reverb_prob, float(rng.uniform(*aug.rt60_s))
            gain = float(rng.uniform(*aug.gain_db))
            noisy, pink = rng.random() < aug.noise_prob, rng.random() < aug.pink_share
            snr = float(rng.uniform(*aug.snr_db))
            plan.append(Utterance(
                id=f"{split}-{i:06d}", split=split, text=text, label=word or "", voice=voice,
                pad_s=(round(pad[0], 4), round(pad[1], 4)), rt60_s=round(rt60, 4) if reverb else 0.0,
                gain_db=round(gain, 3), noise=("pink" if pink else "white") if noisy else "none",
                snr_db=round(snr, 3) if noisy else float("inf"), seed=int(rng.integers(2**31))))
    return plan


# ------------------------------------------------------------------------------------------------
# one utterance
# ------------------------------------------------------------------------------------------------
def _resample(x: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Polyphase resampling (float64), exact rational ratio."""
    if rate == target:
        return x
    from math import gcd

    from scipy.signal import resample_poly

    g = gcd(rate, target)
    return resample_poly(x, target // g, rate // g)


def trim_silence(x: np.ndarray, sample_rate: int, rel_db: float = -40.0, floor_db: float = -60.0,
                 margin_s: float = 0.02) -> np.ndarray:
    """``x [T]`` without its leading and trailing silence: the 10 ms frames whose energy is more
    than ``-rel_db`` below the loudest frame (or below ``floor_db`` dBFS), keeping ``margin_s``
    either side. All silent: an empty array.

    >>> x = np.zeros(16000); x[4000:8000] = 0.5
    >>> len(trim_silence(x, 16000))  # 4000 samples of sound + 2 x 320 margin
    4640
    """
    frame = max(int(0.01 * sample_rate), 1)
    n = len(x) // frame
    if n == 0:
        return x[:0]
    energy = (x[:n * frame].reshape(n, frame) ** 2).mean(1)  # [frames]
    db = 10 * np.log10(energy + 1e-20)
    active = np.nonzero(db > max(db.max() + rel_db, floor_db))[0]
    if not len(active):
        return x[:0]
    margin = int(margin_s * sample_rate)
    return x[max(active[0] * frame - margin, 0): min((active[-1] + 1) * frame + margin, len(x))]


def synthesize(text: str, voice: Voice, sample_rate: int = SAMPLE_RATE, timeout: float = 30.0) -> np.ndarray:
    """``text`` spoken by ``voice``: float64 ``[T]`` at ``sample_rate``, mono, silence trimmed.
    A missing engine is a :class:`DatasetNotFoundError`; a failing or silent synthesis a
    :class:`DataError` naming the text and the voice."""
    exe = voice.command(text, "x")[0]
    if shutil.which(exe) is None:
        raise DatasetNotFoundError(f"the speech synthesiser {exe} is not installed: `sudo apt-get install "
                                   f"{'espeak-ng' if exe == 'espeak-ng' else 'flite'}`")
    with tempfile.TemporaryDirectory(prefix="glocal-tts-") as tmp:
        out = os.path.join(tmp, "out.wav")
        try:
            subprocess.run(voice.command(text, out), check=True, timeout=timeout, capture_output=True)
            wave, rate = load_audio(out, mono="mix", silence_db=None)  # [1, T]
        except subprocess.CalledProcessError as e:
            raise DataError(f"{exe} failed to say {text!r} with voice {voice.id} (exit {e.returncode}): "
                            f"{e.stderr.decode(errors='replace').strip()[-500:]}") from e
        except subprocess.TimeoutExpired as e:
            raise DataError(f"{exe} took over {timeout} s to say {text!r} with voice {voice.id}") from e
    x = trim_silence(_resample(wave[0].numpy().astype(np.float64), rate, sample_rate), sample_rate)
    if len(x) == 0:
        raise DataError(f"{exe} produced silence for {text!r} with voice {voice.id}")
    return x


def _pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS noise with a 1/f power spectrum, ``[n]``. Deliberately not ``transforms.pink_noise``
    (nor ``_room_response`` ``transforms.exponential_ir``): the cached corpora are versioned data
    (``GENERATOR_VERSION``), so a change to the training-time augmentations must not silently
    change their bytes; the reported results were measured on version 1."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spectrum), dtype=np.float64)
    f[0] = f[1] if len(f) > 1 else 1.0
    x = np.fft.irfft(spectrum / np.sqrt(f), n)
    return x / (np.sqrt(np.mean(x ** 2)) + 1e-20)


def _room_response(rt60: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A generated room impulse response: the direct path (1.0) then exponentially decaying noise,
    60 dB down after ``rt60`` seconds, the tail's energy equal to the direct path's."""
    n = max(int(rt60 * sample_rate), 2)
    t = np.arange(n) / sample_rate
    tail = rng.standard_normal(n) * np.exp(-np.log(1000.0) * t / rt60)
    tail[0] = 0.0
    tail /= np.sqrt(np.sum(tail ** 2)) + 1e-20
    tail[0] = 1.0
    return tail


def render(utt: Utterance, sample_rate: int = SAMPLE_RATE, timeout: float = 30.0) -> np.ndarray:
    """The finished utterance, float32 ``[T]`` in [-1, 1]: synthesised, trimmed, padded, reverb,
    level, noise (see the module's doc); deterministic from the utterance."""
    from scipy.signal import fftconvolve

    speech = synthesize(utt.text, utt.voice, sample_rate, timeout)
    lead, trail = (int(round(p * sample_rate)) for p in utt.pad_s)
    x = np.concatenate([np.zeros(lead), speech, np.zeros(trail)])
    rng = np.random.default_rng(utt.seed)
    ir = _room_response(utt.rt60_s or 0.1, sample_rate, rng)  # always drawn: the noise stream stays the same
    if utt.rt60_s > 0:
        x = fftconvolve(x, ir)[:len(x)]
    x *= 10 ** ((utt.gain_db - 1.0) / 20) / (np.abs(x).max() + 1e-20)  # peak at gain_db - 1 dBFS
    noise = _pink_noise(len(x), rng) if utt.noise == "pink" else rng.standard_normal(len(x))
    if utt.noise != "none":
        power = np.mean(x[lead:lead + len(speech)] ** 2)
        x = x + noise * np.sqrt(power / 10 ** (utt.snr_db / 10)) / (np.sqrt(np.mean(noise ** 2)) + 1e-20)
    return np.clip(x, -1.0, 1.0).astype(np.float32)


def _render_to(job: tuple[Utterance, str, int, float]) -> tuple[str, int]:
    """Process-pool job: render one utterance into ``folder``; ``(id, samples)``."""
    utt, folder, sample_rate, timeout = job
    x = render(utt, sample_rate, timeout)
    save_audio(os.path.join(folder, utt.path), x, sample_rate)
    return utt.id, len(x)


# ------------------------------------------------------------------------------------------------
# the cached corpus
# ------------------------------------------------------------------------------------------------
def speech_cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where corpora go: ``cache_dir``, else ``$GLOCAL_CACHE/data/speech``, else
    ``~/.cache/glocal/data/speech``."""
    if cache_dir is not None:
        return Path(cache_dir)
    root = os.environ.get("GLOCAL_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "glocal")
    return Path(root) / "data" / "speech"


def _engine_versions() -> dict[str, str]:
    versions = {}
    for exe in ("espeak-ng", "flite"):
        try:
            out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10)
            versions[exe] = " ".join((out.stdout + out.stderr).split())[:200]
        except (OSError, subprocess.SubprocessError):
            versions[exe] = "not installed"
    return versions


def read_manifest_tsv(path: str | os.PathLike) -> list[dict[str, str]]:
    """The rows of a tab-separated manifest with a header line, as dicts of strings."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    if not lines:
        raise DataError(f"{path}: the manifest is empty")
    header = lines[0].split("\t")
    rows = []
    for n, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != len(header):
            raise DataError(f"{path}, line {n}: {len(fields)} fields for the {len(header)} columns {header}")
        rows.append(dict(zip(header, fields)))
    return rows


class SpeechCorpus:
    """A synthesised corpus on disk, made on first use and read from the cache after.

    Args:
        corpus: ``"keywords"`` or ``"sentences"``.
        seed: the plan's seed.
        sizes: utterances per keyword and split (keywords) or per split (sentences): an int for
            every split or ``{split: n}``; default :data:`DEFAULT_SIZES`.
        augment: an :class:`Augment` (or its fields as a dict); None: clean audio.
        flite_share: the chance that an utterance is spoken by flite.
        cache_dir: the folder the corpus folders go in (see :func:`speech_cache_root`).
        workers: processes that synthesise (1: in this process).
        progress_every: log progress every this many utterances.
        timeout: seconds one engine call may take.

    Attributes: ``root`` (the corpus folder), ``rows`` (the manifest's rows, dicts with the
    :data:`MANIFEST_COLUMNS`, ``path`` absolute), ``cache_hit``, ``settings``.
    """

    def __init__(self, corpus: str = "keywords", seed: int = 0, sizes=None, augment=Augment(),
                 flite_share: float = 0.25, cache_dir: str | os.PathLike | None = None, workers: int = 2,
                 progress_every: int = 500, timeout: float = 30.0):
        if corpus not in CORPORA:
            raise ConfigError(f"speech corpus must be one of {', '.join(CORPORA)}; got {corpus!r}")
        if isinstance(augment, Mapping):
            augment = Augment(**{k: tuple(v) if isinstance(v, list) else v for k, v in augment.items()})
        self.corpus, self.seed, self.sizes = corpus, int(seed), _sizes(corpus, sizes)
        self.augment, self.flite_share = augment, float(flite_share)
        self.workers, self.progress_every, self.timeout = max(int(workers), 1), max(int(progress_every), 1), timeout
        self.settings = dict(
            corpus=corpus, seed=self.seed, sizes=self.sizes, flite_share=self.flite_share, sample_rate=SAMPLE_RATE,
            augment=dataclasses.asdict(augment) if augment is not None else None,
            voices=dict(accents=ESPEAK_ACCENTS, variants=ESPEAK_VARIANTS, speeds=ESPEAK_SPEEDS,
                        pitches=ESPEAK_PITCHES, flite=FLITE_VOICES, stretches=FLITE_STRETCHES))
        key = hashlib.sha256(json.dumps(self.settings, sort_keys=True).encode()).hexdigest()[:16]
        self.root = speech_cache_root(cache_dir) / f"{corpus}-v{GENERATOR_VERSION}-{key}"
        self.cache_hit = self._read()
        if self.cache_hit:
            _log(f"SpeechCorpus {corpus}: cache hit {self.root} ({len(self.rows)} utterances)")
        else:
            self._build()
            if not self._read():
                raise DataError(f"SpeechCorpus {corpus}: the corpus just built at {self.root} cannot be read")

    def split(self, split: str) -> list[dict]:
        """The manifest rows of one split."""
        _check_split(split)
        return [r for r in self.rows if r["split"] == split]

    def _read(self) -> bool:
        manifest = self.root / "manifest.tsv"
        if not manifest.is_file():
            return False
        try:
            rows = read_manifest_tsv(manifest)
            missing = sorted(set(MANIFEST_COLUMNS) - set(rows[0] if rows else MANIFEST_COLUMNS))
            if missing:
                raise DataError(f"columns {missing} are missing")
        except Exception as e:  # noqa: BLE001 - an unreadable corpus is rebuilt, never trusted
            warnings.warn(f"SpeechCorpus: {manifest} is unreadable ({e!r}); building the corpus again",
                          RuntimeWarning, stacklevel=3)
            aside = self.root.with_name(f"{self.root.name}.broken-{os.getpid()}")
            os.rename(self.root, aside)
            shutil.rmtree(aside, ignore_errors=True)
            return False
        for r in rows:
            r["path"] = str(self.root / r["path"])
        self.rows = rows
        return True

    def _build(self) -> None:
        plan = plan_corpus(self.corpus, self.seed, self.sizes, self.augment, self.flite_share)
        self.root.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=self.root.parent, prefix=f".{self.root.name}.tmp-"))
        try:
            for split in SPLITS:
                (tmp / "wav" / split).mkdir(parents=True)
            _log(f"SpeechCorpus {self.corpus}: cache miss, synthesising {len(plan)} utterances into {self.root} "
                 f"with {self.workers} worker(s)")
            start = time.perf_counter()
            samples = dict(self._run(plan, tmp, start))
            seconds = time.perf_counter() - start
            lines = ["\t".join(MANIFEST_COLUMNS)]
            for u in plan:
                n = samples[u.id]
                lines.append("\t".join(str(v) for v in (
                    u.id, u.split, u.path, u.text, u.label, u.voice.id, f"{n / SAMPLE_RATE:.4f}", n, u.noise,
                    u.snr_db, u.rt60_s, u.gain_db)))
            (tmp / "manifest.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
            info = dict(settings=self.settings, version=GENERATOR_VERSION, engines=_engine_versions(),
                        utterances=len(plan), build_seconds=round(seconds, 1), workers=self.workers,
                        seconds_per_utterance_per_worker=round(seconds * self.workers / max(len(plan), 1), 4))
            (tmp / "settings.json").write_text(json.dumps(info, indent=1, sort_keys=True), encoding="utf-8")
            try:
                os.rename(tmp, self.root)  # atomic: the whole corpus appears at once
            except OSError:
                if not (self.root / "manifest.tsv").is_file():
                    raise
                shutil.rmtree(tmp, ignore_errors=True)  # another process finished first: use its copy
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _log(f"SpeechCorpus {self.corpus}: {len(plan)} utterances in {seconds:.1f} s "
             f"({seconds * self.workers / max(len(plan), 1):.3f} s per utterance per worker)")

    def _run(self, plan: list[Utterance], folder: Path, start: float):
        jobs = [(u, str(folder), SAMPLE_RATE, self.timeout) for u in plan]
        if self.workers == 1 or len(jobs) < 2:
            results = map(_render_to, jobs)
            pool = None
        else:
            # fork where there is one: the workers start at once (spawned ones import torch again, seconds
            # each); they only run the engines, numpy and scipy, never torch's thread pools
            method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
            pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context(method))
            results = pool.map(_render_to, jobs, chunksize=8)
        try:
            for done, result in enumerate(results, 1):
                yield result
                if done % self.progress_every == 0 and done < len(jobs):
                    rate = done / (time.perf_counter() - start)
                    _log(f"SpeechCorpus {self.corpus}: {done}/{len(jobs)} utterances ({rate:.1f}/s, about "
                         f"{(len(jobs) - done) / rate:.0f} s left)")
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)

    def __repr__(self):
        return f"SpeechCorpus({self.corpus!r}, {len(self.rows)} utterances at {self.root})"

"""Audio: reading wav/flac/ogg/raw PCM (soundfile), Kaldi fbank / log-mel / MFCC features and
SpecAugment-style augmentation (torchaudio), an offline speech generator (espeak-ng, flite) for
keyword spotting and sentence recognition on unseen voices, datasets of one's own files and of the
real pocketsphinx-testdata recordings, and the convolutional subsampling stem (features -> Tokens).

torchaudio is imported with the feature transforms (:mod:`.features`), on first use, not here:
reading files and augmenting waveforms need only soundfile."""
from importlib import import_module

from .adapter import SubsampleStem, SubsampleUndo, conv_output_length
from .datasets import (AudioManifest, CharTokenizer, EncodeText, KeywordSpotting, PocketsphinxTestData, SpeechCollate,
                       SpeechFiles, SpeechSentences)
from .io import audio_info, load_audio, save_audio
from .synth import KEYWORDS, SpeechCorpus, voice_pool
from .transforms import AddNoise, MixDown, RandomGain, Resample, Reverb, SpecAugment, SpeedPerturb

_FEATURES = ("Fbank", "LogMel", "MFCC", "UtteranceNorm", "GlobalNorm", "feature_stats")

__all__ = ["SubsampleStem", "SubsampleUndo", "conv_output_length", "AudioManifest", "CharTokenizer", "EncodeText",
           "KeywordSpotting", "PocketsphinxTestData", "SpeechCollate", "SpeechFiles", "SpeechSentences", "audio_info",
           "load_audio", "save_audio", "KEYWORDS", "SpeechCorpus", "voice_pool", "AddNoise", "MixDown", "RandomGain",
           "Resample", "Reverb", "SpecAugment", "SpeedPerturb", *_FEATURES]


def __getattr__(name: str):
    if name in _FEATURES:
        return getattr(import_module(".features", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""The speech datasets, the character vocabulary and the speech collate."""

import numpy as np
import pytest
import torch

from glocal.core.errors import DataError, DatasetNotFoundError, InputError
from glocal.modalities.audio.datasets import (AudioManifest, CharTokenizer, EncodeText,
                                              KeywordSpotting, PocketsphinxTestData, SpeechCollate, SpeechSentences)
from glocal.modalities.audio.io import save_audio
from glocal.modalities.audio.synth import KEYWORDS, plan_corpus

# espeak-ng, flite and pocketsphinx-testdata are installed by tools/setup.sh: a missing one fails
# these tests loudly (a broken setup), it is not a reason to skip them


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("speech")


@pytest.fixture(scope="module")
def keywords(cache):
    return KeywordSpotting("test", per_word=dict(train=0, val=0, test=1), cache_dir=cache, synth_workers=1)


@pytest.fixture(scope="module")
def sentences(cache):
    return SpeechSentences("val", sizes=dict(train=0, val=4, test=0), cache_dir=cache, synth_workers=1,
                           transforms=[EncodeText()])


def test_tokenizer_round_trips_every_transcript():
    tok = CharTokenizer()
    assert len(tok) == 29 and tok.vocab[0] == "<blank>" and tok.vocab[1] == " "
    texts = [u.text for u in plan_corpus("sentences", sizes=200)] + list(KEYWORDS)
    assert any("'" in t for t in texts)
    for text in texts:
        ids = tok.encode(text)
        assert ids.dtype == torch.long and int(ids.min()) >= 1 and int(ids.max()) < len(tok)
        assert tok.decode(ids) == text
    assert tok.decode(tok.encode("  Go   LEFT ")) == "go left"  # case and spacing normalised


def test_out_of_vocabulary_names_the_text_and_file():
    with pytest.raises(InputError, match=r"'go 4ward!'.*speech/a\.wav.*\['!', '4'\]"):
        EncodeText()(dict(text="go 4ward!", path="speech/a.wav"), None)
    assert EncodeText("ab")(dict(text="abba"), None)["target"].tolist() == [1, 2, 2, 1]  # custom symbols
    with pytest.raises(InputError, match="outside the vocabulary"):
        CharTokenizer("ab").encode("a b")


def test_keyword_samples(keywords):
    assert len(keywords) == 20 and keywords.metainfo["classes"] == KEYWORDS
    lengths = keywords.lengths()
    for i in (0, 13):
        s = keywords[i]
        assert list(s) == ["inputs", "sample_rate", "label", "text", "path", "voice"]
        assert s["inputs"].dtype == torch.float32 and s["inputs"].shape == (1, lengths[i])
        assert s["sample_rate"] == 16000 and KEYWORDS[s["label"]] == s["text"]
        assert s["voice"].startswith(("espeak:", "flite:")) and keywords.describe(i) == s["path"]
    batch = keywords.collate([keywords[i] for i in range(3)])  # waveforms, padded along time
    assert batch["inputs"].shape == (3, int(lengths[:3].max()), 1)
    assert batch["lengths"].tolist() == lengths[:3].tolist()
    assert batch["data_samples"]["label"].tolist() == [0, 1, 2]
    again = KeywordSpotting("test", root=keywords.corpus_root)  # an existing corpus folder, no synthesis
    assert [r["path"] for r in again.records] == [r["path"] for r in keywords.records]


def test_keyword_features_pad_along_time(keywords):
    from glocal.modalities.audio.features import Fbank

    ds = KeywordSpotting("test", per_word=dict(train=0, val=0, test=1), cache_dir=keywords.corpus_root.parent,
                         synth_workers=1, transforms=[Fbank(num_mel_bins=40)], limit=4)
    samples = [ds[i] for i in range(4)]
    batch = ds.collate(samples)
    frames = [s["num_frames"] for s in samples]
    assert batch["inputs"].shape == (4, max(frames), 40)
    assert batch["lengths"].tolist() == frames and batch["mask"].sum(1).tolist() == frames


def test_sentence_targets_collate_for_ctc(sentences):
    tok = CharTokenizer()
    samples = [sentences[i] for i in range(len(sentences))]
    assert list(samples[0]) == ["inputs", "sample_rate", "text", "path", "voice", "target"]
    batch = sentences.collate(samples)
    data = batch["data_samples"]
    assert data["target"].shape == (4, int(data["target_lengths"].max()))
    for row, n, text in zip(data["target"], data["target_lengths"], data["text"]):
        assert tok.decode(row[:n]) == text
    assert isinstance(sentences.collate, SpeechCollate)


@pytest.mark.parametrize("subset, count, first", [
    ("librivox", 5, "and mister john dashwood had then leisure"),
    ("cards", 5, "ten of clubs"),
    ("goforward", 1, "go forward ten meters"),
])
def test_pocketsphinx_recordings(subset, count, first):
    ds = PocketsphinxTestData(subset)
    assert len(ds) == count
    s = ds[0]
    assert s["text"].startswith(first) and s["sample_rate"] == 16000 and s["inputs"].shape[0] == 1
    assert s["inputs"].shape[1] == ds.lengths()[0] and 1.0 < s["inputs"].shape[1] / 16000 < 10.0
    assert float(s["inputs"].abs().max()) > 0.01
    assert all(ds[i]["text"] == ds[i]["text"].lower().strip() for i in range(len(ds)))


def test_pocketsphinx_all():
    ds = PocketsphinxTestData("all", transforms=[EncodeText()])
    assert len(ds) == 11 and ds[10]["text"] == "go forward ten meters"
    assert ds[6]["text"] == "four queen of clubs"


def _write(path, seconds, rate):
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    save_audio(path, 0.3 * np.sin(2 * np.pi * 300 * t).astype(np.float32), rate)


def test_audio_manifest_resolves_relative_paths(tmp_path):
    _write(tmp_path / "data" / "clips" / "a.wav", 0.5, 16000)
    _write(tmp_path / "elsewhere" / "b.wav", 0.25, 8000)
    manifest = tmp_path / "data" / "list.tsv"
    manifest.write_text(f"# my clips\nclips/a.wav\tturn left\n\n{tmp_path / 'elsewhere' / 'b.wav'}\tgo\n")
    ds = AudioManifest(manifest, transforms=[EncodeText()])
    assert ds.kind == "transcript" and len(ds) == 2
    assert ds[0]["path"] == str(tmp_path / "data" / "clips" / "a.wav") and ds[0]["text"] == "turn left"
    assert ds[1]["inputs"].shape == (1, 4000) and ds[1]["sample_rate"] == 16000  # 8 kHz resampled
    assert ds.lengths().tolist() == [8000, 4000]

    labels = tmp_path / "data" / "labels.csv"
    labels.write_text("path,label\nclips/a.wav,yes\n../elsewhere/b.wav,no\n")
    ds = AudioManifest(labels, sample_rate=None)
    assert ds.kind == "label" and ds.metainfo["classes"] == ("no", "yes")
    assert [ds[i]["label"] for i in range(2)] == [1, 0] and ds[1]["sample_rate"] == 8000
    with pytest.raises(DataError, match="line 3 has the label 'no'"):
        AudioManifest(labels, classes=("yes", "maybe"))


def test_audio_manifest_missing_file_is_named(tmp_path):
    _write(tmp_path / "a.wav", 0.2, 16000)
    manifest = tmp_path / "list.tsv"
    manifest.write_text("a.wav\tyes\nmissing/b.wav\tno\n")
    with pytest.raises(DatasetNotFoundError, match=r"1 of 2 .*line 2: .*missing/b\.wav"):
        AudioManifest(manifest, kind="label")
    manifest.write_text("a.wav yes\n")
    with pytest.raises(DataError, match="line 1: expected path and label separated by a tab"):
        AudioManifest(manifest, kind="label")


def test_audio_manifest_reads_a_corpus_manifest(keywords):
    ds = AudioManifest(keywords.corpus_root / "manifest.tsv", kind="label", classes=KEYWORDS, split="test")
    assert [r["path"] for r in ds.records] == [r["path"] for r in keywords.records]
    assert [ds.records[i]["label"] for i in range(len(ds))] == [r["label"] for r in keywords.records]

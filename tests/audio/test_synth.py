"""The speech generator: voice splits, the deterministic plan, the audio, the cache."""
import os
import shutil
import subprocess

import numpy as np
import pytest

from glocal.core.errors import DataError, DatasetNotFoundError
from glocal.modalities.audio import synth
from glocal.modalities.audio.io import audio_info, load_audio, save_audio
from glocal.modalities.audio.synth import (KEYWORDS, SPLITS, Augment, SpeechCorpus, plan_corpus, render,
                                           trim_silence, voice_pool)

# espeak-ng and flite are installed by tools/setup.sh; without them these tests fail, not skip


@pytest.fixture(scope="module")
def keywords(tmp_path_factory):
    """One utterance of every keyword in every split (60), synthesised in this process."""
    return SpeechCorpus("keywords", sizes=1, cache_dir=tmp_path_factory.mktemp("speech"), workers=1)


def test_voice_splits_are_disjoint():
    pools = {s: voice_pool(s) for s in SPLITS}
    assert [len(pools[s]) for s in SPLITS] == [1521, 381, 381]
    for a in SPLITS:
        for b in SPLITS:
            if a != b:
                assert not {v.speaker for v in pools[a]} & {v.speaker for v in pools[b]}, (a, b)
    assert {v.name for v in pools["test"] if v.engine == "flite"} == {"slt"}  # a held-out flite voice
    assert {"kal", "kal16"} <= {v.name for v in pools["train"]}  # one speaker, one split


def test_plan_is_deterministic_and_splits_draw_independently():
    a, b = plan_corpus("sentences", seed=0, sizes=20), plan_corpus("sentences", seed=0, sizes=20)
    assert a == b
    assert [u.text for u in plan_corpus("sentences", seed=1, sizes=20)] != [u.text for u in a]
    bigger = plan_corpus("sentences", seed=0, sizes=dict(train=35, val=20, test=20))
    assert [u for u in bigger if u.split != "train"] == [u for u in a if u.split != "train"]
    for u in a:
        assert u.text == u.text.lower() and u.text.strip() == u.text and u.label == ""


def test_every_keyword_in_every_split_and_test_voices_unseen():
    plan = plan_corpus("keywords", seed=0, sizes=dict(train=3, val=2, test=2))
    train_speakers = {u.voice.speaker for u in plan if u.split == "train"}
    for split in SPLITS:
        rows = [u for u in plan if u.split == split]
        assert sorted({u.text for u in rows}) == sorted(KEYWORDS)
        assert all(u.label == u.text for u in rows)
        assert all(u.voice in voice_pool(split) for u in rows)
        if split != "train":
            assert not {u.voice.speaker for u in rows} & train_speakers


def test_trim_silence():
    x = np.zeros(16000)
    x[4000:8000] = 0.5
    y = trim_silence(x, 16000, margin_s=0.0)
    assert len(y) == 4000 and np.all(y == 0.5)
    assert len(trim_silence(np.zeros(16000), 16000)) == 0


def test_render_is_deterministic_and_16k(tmp_path):
    utt = plan_corpus("keywords", seed=3, sizes=1)[5]
    for name in ("a.wav", "b.wav"):
        save_audio(tmp_path / name, render(utt), 16000)
    assert (tmp_path / "a.wav").read_bytes() == (tmp_path / "b.wav").read_bytes()
    info = audio_info(tmp_path / "a.wav")
    assert info["sample_rate"] == 16000 and info["channels"] == 1
    assert 0.2 < info["duration_s"] < 3.0
    clean = Augment.clean()
    quiet = synth.Utterance("x", "train", "seven", "seven", synth.Voice("flite", "kal", None, 1.0), clean.pad_s,
                            0.0, 0.0, "none", float("inf"), 0)
    x = render(quiet)  # kal is an 8 kHz voice: resampled
    assert x.dtype == np.float32 and abs(np.abs(x).max() - 10 ** (-1 / 20)) < 1e-4  # peak at -1 dBFS
    assert np.all(x[:1500] == 0)  # 0.1 s of silence before the speech


def test_corpus_manifest_and_every_keyword(keywords):
    assert not keywords.cache_hit
    assert len(keywords.rows) == 60 and set(keywords.rows[0]) == set(synth.MANIFEST_COLUMNS)
    for split in SPLITS:
        rows = keywords.split(split)
        assert sorted(r["text"] for r in rows) == sorted(KEYWORDS)
    row = keywords.rows[7]
    wave, rate = load_audio(row["path"])
    assert rate == 16000 and wave.shape[1] == int(row["samples"])
    assert (keywords.root / "settings.json").is_file()
    assert not [p for p in keywords.root.parent.iterdir() if ".tmp-" in p.name]  # the temp folder was renamed


def test_same_seed_same_manifest_and_audio(keywords, tmp_path):
    """A corpus with another train size (another folder) repeats the train utterances exactly."""
    other = SpeechCorpus("keywords", sizes=dict(train=1, val=0, test=0), cache_dir=tmp_path, workers=1)
    assert other.root != keywords.root
    strip = [{k: v for k, v in r.items() if k != "path"} for r in other.rows]
    assert strip == [{k: v for k, v in r.items() if k != "path"} for r in keywords.split("train")]
    with open(other.rows[3]["path"], "rb") as f, open(keywords.rows[3]["path"], "rb") as g:
        assert f.read() == g.read()


def test_cache_hit_does_not_synthesise(keywords, monkeypatch):
    manifest = keywords.root / "manifest.tsv"
    mtime = manifest.stat().st_mtime_ns

    def forbidden(*args, **kwargs):
        raise AssertionError("synthesised on a cache hit")

    monkeypatch.setattr(synth, "render", forbidden)
    monkeypatch.setattr(subprocess, "run", forbidden)
    again = SpeechCorpus("keywords", sizes=1, cache_dir=keywords.root.parent, workers=1)
    assert again.cache_hit and again.root == keywords.root and again.rows == keywords.rows
    assert manifest.stat().st_mtime_ns == mtime


def test_process_pool_build(tmp_path):
    corpus = SpeechCorpus("sentences", sizes=dict(train=2, val=1, test=1), cache_dir=tmp_path, workers=2,
                          progress_every=2)
    assert [r["split"] for r in corpus.rows] == ["train", "train", "val", "test"]
    assert all(os.path.isfile(r["path"]) for r in corpus.rows)
    inline = plan_corpus("sentences", sizes=dict(train=2, val=1, test=1))
    assert [r["text"] for r in corpus.rows] == [u.text for u in inline]


def test_failed_build_leaves_nothing(tmp_path, monkeypatch):
    def broken(utt, *args):
        raise DataError(f"cannot say {utt.text!r}")

    monkeypatch.setattr(synth, "render", broken)
    with pytest.raises(DataError, match="cannot say"):
        SpeechCorpus("keywords", sizes=1, cache_dir=tmp_path, workers=1)
    assert list(tmp_path.iterdir()) == []


def test_missing_engine_is_named(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda exe: None)
    with pytest.raises(DatasetNotFoundError, match="apt-get install espeak-ng"):
        synth.synthesize("go", voice_pool("train")[0])

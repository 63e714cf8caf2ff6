"""Speech datasets: synthesised keywords and sentences, a user's own file list, and the real
recordings of Debian's pocketsphinx test data; the character vocabulary for CTC.

Every dataset decodes in ``load()`` (so in the data loader's workers) and returns, before its
transforms::

    inputs       waveform, float32 tensor [1, T] in [-1, 1] (down-mixed to mono)
    sample_rate  int (Hz)
    label        int, the class (keyword datasets, label manifests)
    text         str, the word or the lower-case transcript
    path         str, the file
    voice        str, the synthetic voice (synthesised sets only, see synth.Voice.id)

The feature transforms of :mod:`glocal.modalities.audio.features` turn ``inputs`` into
``[frames, bins]`` and set ``num_frames``; :class:`EncodeText` adds ``target`` (LongTensor
``[S]``, :class:`CharTokenizer` ids) for CTC. Utterances are ragged in time: each dataset's
``collate`` is a :class:`SpeechCollate`, a ``PadCollate`` that pads features along time
(``inputs [B, frames, bins]``, ``mask``, ``lengths``) and transcripts to ``target [B, S]`` with
``target_lengths [B]`` (what ``CTCLoss(target='target')`` reads). ``lengths()`` gives every
utterance's length in samples, read from the manifest or the file headers without decoding,
for the bucketing sampler (proportional to the frames the collate pads).

Example (the vocabulary; the datasets need files):

    >>> tok = CharTokenizer()
    >>> len(tok), tok.encode("go left").tolist()
    (29, [8, 16, 1, 13, 6, 7, 21])
    >>> tok.decode([8, 16, 1, 13, 6, 7, 21])
    'go left'
"""
from __future__ import annotations

import csv
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from glocal.core.errors import ConfigError, DataError, DatasetNotFoundError, InputError

from ..batch import PadCollate, SkippedSample
from ..dataset import GlocalDataset
from .io import RAW_SUFFIXES, audio_info, load_audio
from .synth import KEYWORDS, SAMPLE_RATE, Augment, SpeechCorpus, read_manifest_tsv

__all__ = ["CharTokenizer", "EncodeText", "SpeechCollate", "SpeechFiles", "KeywordSpotting", "SpeechSentences",
           "AudioManifest", "PocketsphinxTestData", "read_sphinx_transcription", "CHAR_SYMBOLS", "POCKETSPHINX_ROOT"]

CHAR_SYMBOLS = " abcdefghijklmnopqrstuvwxyz'"  # ids 1..28; 0 is the CTC blank
POCKETSPHINX_ROOT = "/usr/share/pocketsphinx/test/data"


# ------------------------------------------------------------------------------------------------
# text
# ------------------------------------------------------------------------------------------------
class CharTokenizer:
    """Characters to ids for CTC: ``0`` the blank, then one id per symbol (default: space ``1``,
    ``a``-``z`` ``2``-``27``, apostrophe ``28``; 29 classes: give the head ``num_classes=len(tok)``).

    ``encode`` lower-cases the text (``lowercase=True``) and collapses runs of whitespace to one
    space, then maps every character; a character outside the vocabulary is an
    :class:`InputError` naming the transcript, the characters and where the text came from.
    ``vocab`` is the symbol of every id (``'<blank>'`` first), for ``CTCGreedyDecoder(vocab=...)``.
    """

    blank = 0

    def __init__(self, symbols: str = CHAR_SYMBOLS, lowercase: bool = True):
        if len(set(symbols)) != len(symbols) or not symbols:
            raise ConfigError(f"CharTokenizer: symbols must be distinct characters; got {symbols!r}")
        self.symbols, self.lowercase = symbols, bool(lowercase)
        self.ids = {c: i + 1 for i, c in enumerate(symbols)}

    def __len__(self) -> int:
        return len(self.symbols) + 1

    @property
    def vocab(self) -> list[str]:
        return ["<blank>", *self.symbols]

    def normalize(self, text: str) -> str:
        text = " ".join(str(text).split())
        return text.lower() if self.lowercase else text

    def encode(self, text: str, where: str | None = None) -> Tensor:
        """The ids of ``text``, a LongTensor ``[S]``; ``where`` (a file, an utterance id) is named
        in the error for a character outside the vocabulary."""
        text = self.normalize(text)
        bad = sorted({c for c in text if c not in self.ids})
        if bad:
            first = min(text.index(c) for c in bad)
            raise InputError(f"CharTokenizer: the transcript {text!r}" + (f" of {where}" if where else "")
                             + f" has characters outside the vocabulary: {bad} (the first at position {first}); "
                             f"the vocabulary is {self.symbols!r} plus the blank. Normalise the transcripts "
                             f"(numbers as words, no punctuation), or build CharTokenizer(symbols=...) with them")
        return torch.tensor([self.ids[c] for c in text], dtype=torch.long)

    def decode(self, ids) -> str:
        """The text of ``ids`` (blanks dropped; no CTC collapsing: see ``ctc_greedy_decode``)."""
        ids = ids.tolist() if isinstance(ids, Tensor) else list(ids)
        return "".join(self.symbols[i - 1] for i in ids if i != self.blank)

    def __repr__(self):
        return f"CharTokenizer(symbols={self.symbols!r})"


class EncodeText:
    """Transform: ``sample['target'] = vocab.encode(sample['text'])`` (LongTensor ``[S]``), the
    error naming the sample's file. ``vocab``: a :class:`CharTokenizer`, its ``symbols`` string,
    or None for the default characters."""

    targets_only = True  # makes targets only: inference on a user's files (tools/infer.py) leaves it out

    def __init__(self, vocab: CharTokenizer | str | None = None, key: str = "text", target: str = "target"):
        self.tokenizer = vocab if isinstance(vocab, CharTokenizer) else CharTokenizer(*([vocab] if vocab else []))
        self.key, self.target = key, target

    def __call__(self, sample: dict, rng: np.random.Generator | None = None) -> dict:
        if self.key not in sample:
            raise InputError(f"EncodeText: the sample has no {self.key!r} to encode (fields: {sorted(sample)})")
        return {**sample, self.target: self.tokenizer.encode(sample[self.key], where=sample.get("path"))}

    def __repr__(self):
        return f"EncodeText({self.tokenizer!r}, key={self.key!r}, target={self.target!r})"


# ------------------------------------------------------------------------------------------------
# batching
# ------------------------------------------------------------------------------------------------
class SpeechCollate(PadCollate):
    """``PadCollate`` for utterances, padding along time. Features (samples with ``num_frames``,
    as the feature transforms set it) are ``[frames, bins]`` and padded as they are:
    ``inputs [B, frames, bins]``. Waveforms (``inputs [C, T]`` with a ``sample_rate`` and no
    ``num_frames``) are taken time first, ``[T, C]``, and padded to ``inputs [B, T, C]``.
    ``seq_keys`` (default ``('target',)``) are padded with ``<key>_lengths``; see ``PadCollate``.
    """

    def __init__(self, seq_keys: Sequence[str] = ("target",), **kwargs):
        super().__init__(seq_keys=seq_keys, **kwargs)

    @staticmethod
    def _time_first(sample):
        if isinstance(sample, SkippedSample) or not isinstance(sample, Mapping) or "num_frames" in sample:
            return sample
        x = sample.get("inputs")
        if isinstance(x, Tensor) and x.dim() == 2 and "sample_rate" in sample:
            return {**sample, "inputs": x.transpose(0, 1)}  # [C, T] -> [T, C]
        return sample

    def __call__(self, samples: Sequence[dict]) -> dict:
        return super().__call__([self._time_first(s) for s in samples])

    def __repr__(self):
        return f"SpeechCollate(seq_keys={self.seq_keys})"


# ------------------------------------------------------------------------------------------------
# the datasets
# ------------------------------------------------------------------------------------------------
class SpeechFiles(GlocalDataset):
    """Base of the speech datasets: one audio file per sample, listed in ``self.records`` (dicts
    with ``path`` and any of ``label``, ``text``, ``voice``, and ``samples`` when the length is
    known). ``load`` decodes with :func:`~glocal.modalities.audio.io.load_audio` (down-mixed to
    mono; resampled to ``sample_rate`` when ``resample``).

    Args:
        sample_rate: the rate the samples must have (None: each file's own).
        resample: resample files of another rate (else they are an error naming the file).
        raw_sample_rate, raw_dtype, raw_channels: what headerless ``.raw`` / ``.pcm`` files hold.
        transforms, on_error, max_skips: see :class:`~glocal.modalities.dataset.GlocalDataset`.
    """

    fields = ("label", "text", "path", "voice")  # copied from a record into its sample, in this order

    def __init__(self, records: list[dict], sample_rate: int | None = SAMPLE_RATE, resample: bool = True,
                 transforms=None, limit: int | None = None, raw_sample_rate: int | None = None,
                 raw_dtype: str = "int16", raw_channels: int = 1, on_error: str = "error",
                 max_skips: int | None = None):
        super().__init__(transforms, on_error=on_error, max_skips=max_skips)
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
            raise ConfigError(f"{type(self).__name__}: limit must be None or an int >= 0; got {limit!r}")
        self.records = records[:limit] if limit is not None else records
        self.sample_rate, self.resample = sample_rate, bool(resample)
        self.raw = dict(raw_sample_rate=raw_sample_rate, raw_dtype=raw_dtype, raw_channels=raw_channels)
        self.collate = SpeechCollate()
        self._lengths: np.ndarray | None = None

    @classmethod
    def from_file(cls, source: str, sample_rate: int | None = SAMPLE_RATE, raw_sample_rate: int | None = None,
                  raw_dtype: str = "int16", raw_channels: int = 1) -> dict:
        """One audio file of the user's (wav, flac, ogg, headerless ``.raw`` / ``.pcm``) as a raw
        sample for inference (``tools/infer.py``): ``inputs [1, T]`` down-mixed to mono and
        resampled to ``sample_rate``, ``sample_rate``, ``path``. A ``.raw`` file is taken to hold
        ``raw_sample_rate`` (default: ``sample_rate``) ``raw_dtype`` samples."""
        rate = sample_rate or SAMPLE_RATE
        wave, rate = load_audio(source, sample_rate=rate, mono="mix", resample=True,
                                raw_sample_rate=raw_sample_rate or rate, raw_dtype=raw_dtype,
                                raw_channels=raw_channels)  # [1, T]
        return dict(inputs=wave, sample_rate=rate, path=str(source))

    @staticmethod
    def collate_for(pipeline=None) -> SpeechCollate:
        """The collate of the speech datasets (whatever the pipeline), :class:`SpeechCollate`; also
        what ``tools/infer.py`` batches ``from_file`` samples with."""
        return SpeechCollate()

    def __len__(self) -> int:
        return len(self.records)

    def describe(self, index: int) -> str:
        return self.records[index]["path"]

    def load(self, index: int) -> dict:
        record = self.records[index]
        wave, rate = load_audio(record["path"], sample_rate=self.sample_rate, mono="mix", resample=self.resample,
                                **self.raw)  # [1, T]
        return dict(inputs=wave, sample_rate=rate, **{k: record[k] for k in self.fields if k in record})

    def lengths(self) -> np.ndarray:
        """Samples per utterance at the dataset's rate ``[N]`` int64, from the records or the file
        headers (never decoding)."""
        if self._lengths is None:
            out = np.empty(len(self.records), dtype=np.int64)
            for i, r in enumerate(self.records):
                if "samples" in r and self.sample_rate in (None, SAMPLE_RATE):
                    out[i] = int(r["samples"])
                    continue
                raw = self.raw if Path(r["path"]).suffix.lower() in RAW_SUFFIXES else {}
                info = audio_info(r["path"], **raw)
                rate = self.sample_rate or info["sample_rate"]
                out[i] = round(info["frames"] * rate / info["sample_rate"])
            self._lengths = out
        return self._lengths


class _Synthesised(SpeechFiles):
    """Records of one split of a :class:`~glocal.modalities.audio.synth.SpeechCorpus` (made on
    first use), or of the ``manifest.tsv`` of a corpus folder ``root``."""

    corpus = "keywords"

    def __init__(self, split, root, sizes, seed, augment, cache_dir, synth_workers, **kwargs):
        if split not in ("train", "val", "test"):
            raise ConfigError(f"{type(self).__name__}: split must be 'train', 'val' or 'test'; got {split!r}")
        if root is not None:
            manifest = Path(root) / "manifest.tsv"
            if not manifest.is_file():
                raise DatasetNotFoundError(f"{type(self).__name__}: {root} has no manifest.tsv; give the folder of a "
                                           f"corpus made by glocal.modalities.audio.synth, or root=None to make one")
            rows = read_manifest_tsv(manifest)
            for r in rows:
                r["path"] = str(Path(root) / r["path"])
            self.corpus_root = Path(root)
        else:
            corpus = SpeechCorpus(self.corpus, seed=seed, sizes=sizes, augment=augment, cache_dir=cache_dir,
                                  workers=synth_workers)
            rows, self.corpus_root = corpus.rows, corpus.root
        self.split = split
        super().__init__([self._record(r) for r in rows if r["split"] == split], **kwargs)

    def _record(self, row: dict) -> dict:
        return dict(text=row["text"], path=row["path"], voice=row["voice"], samples=int(row["samples"]))


class KeywordSpotting(_Synthesised):
    """Keyword spotting on synthesised speech: the 20 :data:`~glocal.modalities.audio.synth.KEYWORDS`
    (digits and commands), unseen voices in val and test (see :mod:`~glocal.modalities.audio.synth`).
    Samples: ``inputs [1, T]``, ``sample_rate``, ``label`` (index in ``metainfo['classes']``),
    ``text`` (the word), ``path``, ``voice``.

    Args:
        split: ``'train'``, ``'val'`` or ``'test'``.
        root: the folder of an already made corpus (its ``manifest.tsv``); None: make or reuse the
            cached one for these settings.
        per_word: utterances of each word per split (an int, or ``{split: n}``; default 100 / 20 / 20).
        seed, augment, cache_dir: the corpus's settings (see ``SpeechCorpus``).
        synth_workers: processes that synthesise a corpus not in the cache yet.
        sample_rate: the rate of the samples (16 kHz as made; others are resampled on load).
        transforms, limit, on_error, max_skips: see :class:`SpeechFiles`.
    """

    metainfo = dict(classes=KEYWORDS)
    corpus = "keywords"

    def __init__(self, split: str = "train", root: str | os.PathLike | None = None, per_word=None, seed: int = 0,
                 augment=Augment(), cache_dir: str | os.PathLike | None = None, synth_workers: int = 2,
                 sample_rate: int = SAMPLE_RATE, transforms=None, limit: int | None = None, on_error: str = "error",
                 max_skips: int | None = None):
        super().__init__(split, root, per_word, seed, augment, cache_dir, synth_workers, sample_rate=sample_rate,
                         transforms=transforms, limit=limit, on_error=on_error, max_skips=max_skips)

    def _record(self, row: dict) -> dict:
        if row["label"] not in KEYWORDS:
            raise DataError(f"KeywordSpotting: {row['path']} has the label {row['label']!r}, not one of the keywords")
        return dict(label=KEYWORDS.index(row["label"]), **super()._record(row))


class SpeechSentences(_Synthesised):
    """Sentence recognition (CTC) on synthesised speech: digit strings and command phrases
    (:func:`~glocal.modalities.audio.synth.make_sentence`), unseen voices in val and test.
    Samples: ``inputs [1, T]``, ``sample_rate``, ``text`` (lower-case transcript), ``path``,
    ``voice``; add :class:`EncodeText` to the transforms for the ``target`` ids.

    Args: as :class:`KeywordSpotting`, with ``sizes`` (utterances per split: an int, or
    ``{split: n}``; default 2,000 / 200 / 200) in place of ``per_word``.
    """

    metainfo = dict(vocab=tuple(CharTokenizer().vocab))
    corpus = "sentences"

    def __init__(self, split: str = "train", root: str | os.PathLike | None = None, sizes=None, seed: int = 0,
                 augment=Augment(), cache_dir: str | os.PathLike | None = None, synth_workers: int = 2,
                 sample_rate: int = SAMPLE_RATE, transforms=None, limit: int | None = None, on_error: str = "error",
                 max_skips: int | None = None):
        super().__init__(split, root, sizes, seed, augment, cache_dir, synth_workers, sample_rate=sample_rate,
                         transforms=transforms, limit=limit, on_error=on_error, max_skips=max_skips)


class AudioManifest(SpeechFiles):
    """A user's own list of audio files with a label or a transcript per file.

    The file has one utterance per line, ``path<TAB>label`` or ``path<TAB>transcript`` (``.csv``:
    comma-separated, quoted as csv; other suffixes: tab-separated). Blank lines and lines starting
    with ``#`` are skipped. An optional header line names the columns: one is ``path``, another
    ``label``, ``text`` or ``transcript`` (any more columns are ignored;
    a ``split`` column can be filtered with ``split=``), so a corpus's own ``manifest.tsv`` can be
    read too. Relative paths are resolved against the manifest's folder. Every file must exist
    (checked on construction; the error names the missing files and their lines).

    Args:
        manifest: the list's path.
        kind: ``'label'`` (samples get ``label``, the class index, and ``text``, its name) or
            ``'transcript'`` (``text``); None: ``'label'`` when the header has a ``label`` column and
            no ``text`` / ``transcript``, else ``'transcript'``.
        classes: the class names in index order (label manifests); None: the sorted labels found.
        split: keep the rows whose ``split`` column is this (needs the column).
        sample_rate: the rate of the samples (None: each file's own); ``resample`` files of another.
        raw_sample_rate, raw_dtype, raw_channels, transforms, limit, on_error, max_skips: see
            :class:`SpeechFiles`.
    """

    def __init__(self, manifest: str | os.PathLike, kind: str | None = None, classes: Sequence[str] | None = None,
                 split: str | None = None, sample_rate: int | None = SAMPLE_RATE, resample: bool = True,
                 transforms=None, limit: int | None = None, raw_sample_rate: int | None = None,
                 raw_dtype: str = "int16", raw_channels: int = 1, on_error: str = "error",
                 max_skips: int | None = None):
        manifest = Path(manifest)
        if not manifest.is_file():
            raise DatasetNotFoundError(f"AudioManifest: the manifest {manifest} does not exist")
        if kind not in (None, "label", "transcript"):
            raise ConfigError(f"AudioManifest: kind must be 'label', 'transcript' or None; got {kind!r}")
        rows, kind = self._parse(manifest, kind, split)
        self.manifest, self.kind = manifest, kind
        if kind == "label":
            classes = tuple(classes) if classes is not None else tuple(sorted({r["value"] for r in rows}))
            index = {c: i for i, c in enumerate(classes)}
            unknown = [(r["line"], r["value"]) for r in rows if r["value"] not in index]
            if unknown:
                raise DataError(f"AudioManifest {manifest}: line {unknown[0][0]} has the label {unknown[0][1]!r}, "
                                f"not one of the classes {list(classes)} ({len(unknown)} such lines)")
            self.metainfo = dict(classes=classes)
            records = [dict(label=index[r["value"]], text=r["value"], path=r["path"]) for r in rows]
        else:
            self.metainfo = {}
            records = [dict(text=r["value"], path=r["path"]) for r in rows]
        missing = [r for r in rows if not os.path.isfile(r["path"])]
        if missing:
            listed = "; ".join(f"line {r['line']}: {r['path']}" for r in missing[:5])
            raise DatasetNotFoundError(
                f"AudioManifest {manifest}: {len(missing)} of {len(rows)} listed files do not exist ({listed}"
                f"{'; ...' if len(missing) > 5 else ''}). Relative paths are resolved against the manifest's "
                f"folder {manifest.parent.resolve()}")
        super().__init__(records, sample_rate=sample_rate, resample=resample, transforms=transforms, limit=limit,
                         raw_sample_rate=raw_sample_rate, raw_dtype=raw_dtype, raw_channels=raw_channels,
                         on_error=on_error, max_skips=max_skips)

    @staticmethod
    def _parse(manifest: Path, kind: str | None, split: str | None) -> tuple[list[dict], str]:
        text = manifest.read_text(encoding="utf-8-sig")
        lines = [(n, line) for n, line in enumerate(text.splitlines(), 1)
                 if line.strip() and not line.lstrip().startswith("#")]
        if manifest.suffix.lower() == ".csv":
            parsed = [(n, fields) for (n, _), fields in zip(lines, csv.reader([line for _, line in lines]))]
        else:
            parsed = [(n, line.split("\t")) for n, line in lines]
        if not parsed:
            raise DataError(f"AudioManifest {manifest}: no utterances listed")
        header = None
        if "path" in [f.strip().lower() for f in parsed[0][1]]:
            header = [h.strip().lower() for h in parsed[0][1]]
            parsed = parsed[1:]
        if header is not None:
            value_cols = [c for c in ("transcript", "text", "label") if c in header]
            if kind is None:
                kind = "label" if value_cols == ["label"] else "transcript"
            col = "label" if kind == "label" else next((c for c in value_cols if c != "label"), None)
            if col is None or col not in header:
                wanted = "label" if kind == "label" else "text or transcript"
                raise DataError(f"AudioManifest {manifest}: kind={kind!r} needs a {wanted} column; the header has "
                                f"{header}")
            value, path_col = header.index(col), header.index("path")
            split_col = header.index("split") if "split" in header else None
        else:
            kind, value, path_col, split_col = kind or "transcript", 1, 0, None
        if split is not None and split_col is None:
            raise ConfigError(f"AudioManifest {manifest}: split={split!r} needs a 'split' column in a header line")
        rows = []
        for n, fields in parsed:
            if len(fields) <= max(value, path_col):
                raise DataError(f"AudioManifest {manifest}, line {n}: expected path and "
                                f"{'label' if kind == 'label' else 'transcript'} separated by "
                                f"{'a comma' if manifest.suffix.lower() == '.csv' else 'a tab'}; got {fields}")
            if split is not None and fields[split_col].strip() != split:
                continue
            path = Path(fields[path_col].strip())
            rows.append(dict(line=n, value=fields[value].strip(),
                             path=str(path if path.is_absolute() else manifest.parent / path)))
        return rows, kind


_TRANSCRIPT_LINE = re.compile(r"^\s*(?:<s>)?\s*(?P<text>.*?)\s*(?:</s>)?\s*\((?P<id>[^()]+)\)\s*$")
_POCKETSPHINX = dict(librivox=("librivox", "transcription"), cards=("cards", "cards.transcription"))


def read_sphinx_transcription(path: str | os.PathLike) -> list[tuple[str, str]]:
    """``(utterance id, transcript)`` of every line of a Sphinx transcription file
    (``<s> words </s> (id)``), the transcript with whitespace collapsed.

    >>> import tempfile
    >>> f = Path(tempfile.mkdtemp()) / "t"; _ = f.write_text("<s> ten of clubs  </s> (001)\\n")
    >>> read_sphinx_transcription(f)
    [('001', 'ten of clubs')]
    """
    out = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        m = _TRANSCRIPT_LINE.match(line)
        if m is None:
            raise DataError(f"{path}, line {n}: not a Sphinx transcription line '<s> words </s> (id)': {line!r}")
        out.append((m["id"].strip(), " ".join(m["text"].split())))
    return out


class PocketsphinxTestData(SpeechFiles):
    """The real recordings of Debian's ``pocketsphinx-testdata``, 16 kHz mono, with transcripts:

    - ``'librivox'``: 5 sentences read from "Sense and Sensibility" (LibriVox, one speaker,
      2-9 s each), from ``librivox/transcription``;
    - ``'cards'``: 5 playing-card phrases ("ten of clubs", ...), ``cards/cards.transcription``;
    - ``'goforward'``: ``goforward.raw`` (headerless 16 kHz int16), "go forward ten meters";
    - ``'all'``: the 11 of them.

    Samples: ``inputs [1, T]``, ``sample_rate``, ``text`` (lower-case), ``path``.

    Args:
        subset: one of the above, or a list of them.
        root: the test data folder (default Debian's, ``/usr/share/pocketsphinx/test/data``).
        sample_rate, transforms, limit, on_error, max_skips: see :class:`SpeechFiles`.
    """

    subsets = ("librivox", "cards", "goforward")

    def __init__(self, subset: str | Sequence[str] = "librivox", root: str | os.PathLike = POCKETSPHINX_ROOT,
                 sample_rate: int = SAMPLE_RATE, transforms=None, limit: int | None = None, on_error: str = "error",
                 max_skips: int | None = None):
        names = self.subsets if subset == "all" else (subset,) if isinstance(subset, str) else tuple(subset)
        unknown = [s for s in names if s not in self.subsets]
        if unknown or not names:
            raise ConfigError(f"PocketsphinxTestData: subset must be one of {', '.join(self.subsets)} or 'all'; "
                              f"got {subset!r}")
        root = Path(root)
        if not root.is_dir():
            raise DatasetNotFoundError(f"PocketsphinxTestData: {root} does not exist. Install Debian's package: "
                                       f"`sudo apt-get install pocketsphinx-testdata`, or pass root=")
        records = []
        for name in names:
            if name == "goforward":
                records.append(dict(text="go forward ten meters", path=str(root / "goforward.raw")))
                continue
            folder, listing = _POCKETSPHINX[name]
            for uid, text in read_sphinx_transcription(root / folder / listing):
                records.append(dict(text=text.lower(), path=str(root / folder / f"{uid}.wav")))
        missing = [r["path"] for r in records if not os.path.isfile(r["path"])]
        if missing:
            raise DatasetNotFoundError(f"PocketsphinxTestData: {len(missing)} recordings are missing under {root}, "
                                       f"e.g. {missing[0]}; reinstall pocketsphinx-testdata")
        self.subset = names
        super().__init__(records, sample_rate=sample_rate, resample=True, transforms=transforms, limit=limit,
                         raw_sample_rate=SAMPLE_RATE, on_error=on_error, max_skips=max_skips)

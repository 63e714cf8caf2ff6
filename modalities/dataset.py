"""The dataset base every modality builds on.

A sample is fetched by ``dataset[key]`` where ``key`` is an index or an ``(index, seed)`` pair. All
augmentation randomness comes from ``np.random.default_rng(seed)`` of that key: the engine's
sampler hands out the seeds, so augmentation is reproducible across runs, resumes and worker
counts, and independent of the global RNG. Without a seed (plain indexing, evaluation) a fresh
unseeded generator is used.

A sample that fails to load or transform raises a :class:`~glocal.core.errors.DataError` naming the
dataset, the index and the file (:meth:`GlocalDataset.describe`), chained from the original error.
A dataset built with ``on_error='skip'`` returns a :class:`~glocal.modalities.batch.SkippedSample`
in its place instead; the collates drop it and the data preprocessor logs and counts it (see
:mod:`glocal.modalities.batch`), so one corrupt file does not end a long run.

Each dataset knows how to batch its own samples (``collate``, see :mod:`glocal.modalities.batch`):
fixed-size modalities stack, ragged ones (graphs, point clouds, utterances) pad and mask. A ragged
dataset also exposes ``lengths()`` (elements per sample, without decoding) for length bucketing.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from torch.utils.data import Dataset

from glocal.core.errors import ConfigError, DataError, GlocalError

from .batch import SkippedSample, stack_collate
from .registry import TRANSFORMS

__all__ = ["GlocalDataset", "Compose", "stack_collate"]  # stack_collate: see .batch


class Compose:
    """Apply transforms in order; each is ``t(sample: dict, rng: np.random.Generator) -> dict``.
    Config dicts are built from the ``TRANSFORMS`` registry."""

    def __init__(self, transforms: Sequence[Callable | dict] | None):
        self.transforms = [TRANSFORMS.build(t) for t in (transforms or [])]

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        for t in self.transforms:
            sample = t(sample, rng)
        return sample

    def __repr__(self):
        return "Compose(" + ", ".join(repr(t) for t in self.transforms) + ")"


class GlocalDataset(Dataset):
    """Base: subclasses implement ``__len__`` and ``load(index) -> dict`` (the raw sample), and
    ``describe(index)`` (the sample's file) when they read one file per sample. A subclass passes
    ``on_error`` and ``max_skips`` through to this constructor, so configs can set them.

    Args:
        transforms: list of transforms (config dicts or callables).
        on_error: what a sample that fails to load or transform does: ``'error'`` raises a
            :class:`DataError` naming the dataset, the index and the file; ``'skip'`` returns a
            :class:`SkippedSample` in its place, which the collates drop and the data preprocessor
            logs and counts (``model.data_preprocessor.skipped``).
        max_skips: with ``'skip'``, how many samples may be skipped before failures raise again
            (None: no limit). Counted per process: each data-loader worker has its own copy of the
            dataset, so with ``W`` workers up to ``W * max_skips`` samples are skipped.
    """

    metainfo: dict = {}
    # the file endings from_file reads (lower case, with the dot), or None: tools/infer.py keeps only
    # these of the files under a folder input (all of them when None)
    input_extensions: tuple[str, ...] | None = None

    def __init__(self, transforms=None, on_error: str = "error", max_skips: int | None = None):
        if on_error not in ("error", "skip"):
            raise ConfigError(f"{type(self).__name__}: on_error must be 'error' or 'skip'; got {on_error!r}")
        if max_skips is not None and (isinstance(max_skips, bool) or not isinstance(max_skips, int) or max_skips < 0):
            raise ConfigError(f"{type(self).__name__}: max_skips must be None or an int >= 0; got {max_skips!r}")
        self.pipeline = Compose(transforms)
        self.on_error, self.max_skips = on_error, max_skips
        self.num_skipped = 0  # samples skipped so far, in this process

    def load(self, index: int) -> dict:
        raise NotImplementedError

    def describe(self, index: int) -> str | None:
        """Where sample ``index`` comes from (its file), for error messages and skip records; None
        when the dataset has no file per sample."""
        return None

    def __getitem__(self, key) -> dict | SkippedSample:
        index, seed = key if isinstance(key, tuple) else (key, None)
        if not -len(self) <= index < len(self):
            raise IndexError(f"{type(self).__name__}: index {index} out of range for {len(self)} samples")
        index = int(index)
        rng = np.random.default_rng(seed)
        try:
            return self.pipeline(self.load(index), rng)
        except Exception as e:  # noqa: BLE001 - whatever one sample raises is reported with its name, or skipped
            return self._failed(index, e)

    def _failed(self, index: int, error: Exception) -> SkippedSample:
        """The skip marker for a sample that raised ``error``, or the :class:`DataError` naming it."""
        try:
            path = self.describe(index)
        except Exception:  # noqa: BLE001 - a broken describe() must not hide the sample's own error
            path = None
        name, where = type(self).__name__, f"sample {index}" + (f" ({path})" if path else "")
        reason = str(error) if isinstance(error, GlocalError) else f"{type(error).__name__}: {error}"
        if self.on_error == "skip" and (self.max_skips is None or self.num_skipped < self.max_skips):
            self.num_skipped += 1
            return SkippedSample(index, path, reason)
        if self.on_error == "skip":
            raise DataError(f"{name}: {where} could not be loaded, and max_skips={self.max_skips} samples have "
                            f"already been skipped: {reason}") from error
        raise DataError(f"{name}: {where} could not be loaded: {reason}. Fix or remove it, or skip samples "
                        f"that fail: on_error='skip' in the dataset's config.") from error

    collate = stack_collate

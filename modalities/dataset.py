"""The dataset base every modality builds on.

A sample is fetched by ``dataset[key]`` where ``key`` is an index or an ``(index, seed)`` pair. All
augmentation randomness comes from ``np.random.default_rng(seed)`` of that key: the engine's
sampler hands out the seeds, so augmentation is reproducible across runs, resumes and worker
counts, and independent of the global RNG. Without a seed (plain indexing, evaluation) a fresh
unseeded generator is used.

Each dataset knows how to batch its own samples (``collate``, see :mod:`glocal.modalities.batch`):
fixed-size modalities stack, ragged ones (graphs, point clouds, utterances) pad and mask. A ragged
dataset also exposes ``lengths()`` (elements per sample, without decoding) for length bucketing.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from torch.utils.data import Dataset

from .batch import stack_collate
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
    """Base: subclasses implement ``__len__`` and ``load(index) -> dict`` (the raw sample)."""

    metainfo: dict = {}

    def __init__(self, transforms=None):
        self.pipeline = Compose(transforms)

    def load(self, index: int) -> dict:
        raise NotImplementedError

    def __getitem__(self, key) -> dict:
        index, seed = key if isinstance(key, tuple) else (key, None)
        if not -len(self) <= index < len(self):
            raise IndexError(f"{type(self).__name__}: index {index} out of range for {len(self)} samples")
        rng = np.random.default_rng(seed)
        return self.pipeline(self.load(int(index)), rng)

    collate = stack_collate

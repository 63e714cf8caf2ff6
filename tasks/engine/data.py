"""Data loading: ``(index, seed)`` keys, seeded and resumable samplers, the data loaders.

Samplers yield ``(index, seed)`` keys (:class:`SeededSampler` one by one,
:class:`BucketBatchSampler` in batches of similar length): augmentation depends only on
``(seed, epoch, index)``, never on the global RNG or on worker scheduling; every data loader has
its own ``torch.Generator``, so creating an iterator draws nothing from torch's global RNG. Both
samplers can ``skip_next`` what a resumed run already trained on, so the train loops resume
mid-epoch without reading data.
"""
from __future__ import annotations

import functools
import math
import random
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import torch
from mmengine.dataset import DefaultSampler
from mmengine.dist import get_dist_info, sync_random_seed
from mmengine.logging import print_log
from torch.utils.data import DataLoader, Sampler

from glocal.core.errors import ConfigError
from glocal.modalities.registry import COLLATES, DATASETS

__all__ = ["sample_seeds", "SeededSampler", "BucketBatchSampler", "padding_share", "build_dataloader"]

_M1, _M2, _GOLD = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB), np.uint64(0x9E3779B97F4A7C15)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser (uint64, wrapping)."""
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


def sample_seeds(seed: int, epoch: int, indices) -> np.ndarray:
    """Per-sample augmentation seeds, a hash of ``(seed, epoch, index)`` (uint64 -> int63)."""
    with np.errstate(over="ignore"):
        base = _mix(np.array([seed & (2**64 - 1)], dtype=np.uint64) + _GOLD)
        base = _mix(base ^ np.uint64(epoch & (2**64 - 1)))
        idx = np.asarray(indices, dtype=np.uint64)
        return (_mix(base ^ (idx * _GOLD + np.uint64(1))) >> np.uint64(1)).astype(np.int64)


class SeededSampler(DefaultSampler):
    """mmengine's ``DefaultSampler`` (rank/world-size split, per-epoch shuffle, round-up) that
    yields ``(index, seed)`` keys, the seed a hash of ``(base seed, epoch, index)``.

    ``skip_next(n)`` drops the first ``n`` keys of the next iteration only: a resumed train loop
    positions the sampler instead of loading and discarding the batches already trained on.
    """

    def __init__(self, dataset, shuffle: bool = True, seed: int | None = None, round_up: bool = True):
        super().__init__(dataset, shuffle=shuffle, seed=seed, round_up=round_up)
        self._skip = 0

    def skip_next(self, n: int) -> None:
        self._skip = int(n)

    def __iter__(self):
        indices = list(super().__iter__())
        seeds = sample_seeds(self.seed, self.epoch, indices).tolist()
        skip, self._skip = self._skip, 0
        return iter(list(zip((int(i) for i in indices), seeds))[skip:])


# ------------------------------------------------------------------------------------------------
# batches of similar length
# ------------------------------------------------------------------------------------------------
def padding_share(lengths, batches: Iterable[Sequence[int]]) -> float:
    """The share of padded slots when each batch is padded to its longest sample: padded slots /
    all slots (``len(batch) * max length``, summed over the batches). ``batches`` hold indices into
    ``lengths``.

    >>> padding_share([1, 3, 2, 2], [[0, 1], [2, 3]])  # slots 2*3 + 2*2 = 10, samples 8
    0.2
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    slots = used = 0
    for batch in batches:
        sizes = lengths[np.asarray(batch, dtype=np.int64)]
        if sizes.size:
            slots += int(sizes.size) * int(sizes.max())
            used += int(sizes.sum())
    return (slots - used) / slots if slots else 0.0


class BucketBatchSampler(Sampler):
    """Batches of ``(index, seed)`` keys of similar length, for ragged data (graphs, point clouds,
    utterances) whose batches are padded to their longest sample.

    Each epoch: a seeded shuffle of all indices (``torch.Generator`` seeded with ``seed + epoch``, as
    :class:`SeededSampler`; independent of the global RNG), cut into chunks of
    ``batch_size * bucket_size`` samples, each chunk sorted by length and cut into batches, then
    the order of the batches shuffled (same generator). With ``shuffle=False`` the indices keep
    their order and so do the batches. ``drop_last`` drops ``N % batch_size`` samples of the
    shuffled order (random ones, not the longest) so that every batch is full. The seeds are
    :func:`sample_seeds` of ``(seed, epoch, index)``, as :class:`SeededSampler` gives them.

    Distributed: rank ``r`` takes batches ``r, r + world_size, ...``; the batch list is padded by
    repeating its first batches so that every rank gets ``len(self)`` batches.

    The dataset says how long each sample is without decoding it: ``dataset.lengths() -> [N]``
    (nodes, points, frames: whatever its ``collate`` pads).

    ``skip_next(n)`` drops the first ``n`` batches of the next iteration only (resume).

    >>> class Ragged:
    ...     def __len__(self): return 6
    ...     def lengths(self): return np.array([5, 1, 4, 2, 6, 3])
    >>> sampler = BucketBatchSampler(Ragged(), batch_size=2, bucket_size=3, shuffle=False, seed=0,
    ...                              rank=0, world_size=1)
    >>> [[i for i, _ in batch] for batch in sampler]
    [[1, 3], [5, 2], [0, 4]]
    """

    def __init__(self, dataset, batch_size: int, bucket_size: int = 50, shuffle: bool = True,
                 seed: int | None = None, drop_last: bool = False, rank: int | None = None,
                 world_size: int | None = None):
        lengths = getattr(dataset, "lengths", None)
        if not callable(lengths):
            raise ConfigError(f"BucketBatchSampler needs per-sample lengths: dataset {type(dataset).__name__} "
                              f"has no lengths() method (an array [N] of sample sizes, read without decoding "
                              f"the samples); use SeededSampler (type='DefaultSampler') for it")
        self.lengths = np.asarray(lengths(), dtype=np.int64)  # [N]
        if self.lengths.shape != (len(dataset),):
            raise ConfigError(f"{type(dataset).__name__}.lengths() has shape {self.lengths.shape}; "
                              f"expected ({len(dataset)},), one length per sample")
        if int(batch_size) < 1 or int(bucket_size) < 1:
            raise ConfigError(f"BucketBatchSampler: batch_size and bucket_size must be >= 1; got "
                              f"batch_size={batch_size}, bucket_size={bucket_size}")
        dist_rank, dist_world = get_dist_info()
        self.rank = dist_rank if rank is None else int(rank)
        self.world_size = dist_world if world_size is None else int(world_size)
        if not 0 <= self.rank < self.world_size:
            raise ConfigError(f"BucketBatchSampler: rank {self.rank} is not in a world of {self.world_size}")
        self.batch_size, self.bucket_size = int(batch_size), int(bucket_size)
        self.shuffle, self.drop_last = bool(shuffle), bool(drop_last)
        self.seed = sync_random_seed() if seed is None else int(seed)
        self.epoch, self._skip = 0, 0

    @property
    def sampler(self):
        """Itself: mmengine's ``DistSamplerSeedHook`` sets the epoch of ``loader.batch_sampler.sampler``."""
        return self

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def skip_next(self, n_batches: int) -> None:
        self._skip = int(n_batches)

    def _num_batches(self) -> int:
        """Batches of one epoch over all ranks, before the padding for the rank split."""
        n = len(self.lengths)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __len__(self) -> int:
        return math.ceil(self._num_batches() / self.world_size)

    def epoch_batches(self) -> list[np.ndarray]:
        """This epoch's batches of indices over all ranks, in order, before the rank split."""
        n, bs = len(self.lengths), self.batch_size
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(n, generator=g).numpy() if self.shuffle else np.arange(n)
        if self.drop_last:
            order = order[:n - n % bs]
        chunk = bs * self.bucket_size  # a multiple of the batch size: only the last batch can be short
        batches = []
        for start in range(0, len(order), chunk):
            part = order[start:start + chunk]
            part = part[np.argsort(self.lengths[part], kind="stable")]
            batches += [part[i:i + bs] for i in range(0, len(part), bs)]
        if self.shuffle:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]
        return batches

    def __iter__(self):
        batches = self.epoch_batches()
        total = len(self) * self.world_size
        if batches and total > len(batches):  # every rank the same number of batches
            batches = (batches * math.ceil(total / len(batches)))[:total]
        mine = batches[self.rank:total:self.world_size]
        skip, self._skip = self._skip, 0
        mine = mine[skip:]
        seeds = sample_seeds(self.seed, self.epoch, np.concatenate(mine)).tolist() if mine else []
        keys, start = [], 0
        for batch in mine:
            keys.append([(int(i), s) for i, s in zip(batch, seeds[start:start + len(batch)])])
            start += len(batch)
        return iter(keys)


# ------------------------------------------------------------------------------------------------
# data loaders
# ------------------------------------------------------------------------------------------------
def _worker_init(worker_id: int, base: int) -> None:
    """Seed the global RNGs of a data loader worker (glocal's own pipeline does not use them)."""
    seed = (base + worker_id) % 2**32
    np.random.seed(seed)
    torch.manual_seed(seed)
    random.seed(seed)


def _log_padding(sampler: BucketBatchSampler) -> None:
    """How much of the padded batches is padding: bucketed vs plain shuffling (same seed, epoch 0)."""
    n, bs = len(sampler.lengths), sampler.batch_size
    order = torch.randperm(n, generator=torch.Generator().manual_seed(sampler.seed + sampler.epoch)).numpy()
    plain = [order[i:i + bs] for i in range(0, n - (n % bs if sampler.drop_last else 0), bs)]
    print_log(f"BucketBatchSampler: padding {100 * padding_share(sampler.lengths, sampler.epoch_batches()):.1f}% "
              f"of token slots (plain shuffling: {100 * padding_share(sampler.lengths, plain):.1f}%; "
              f"batch {bs}, bucket_size {sampler.bucket_size}, {n} samples)", logger="current")


def build_dataloader(loader_cfg: Mapping, seed: int, train: bool) -> DataLoader:
    """A DataLoader over a dataset built from glocal's ``DATASETS``, with a :class:`SeededSampler`
    (or a :class:`BucketBatchSampler` for ``sampler=dict(type='BucketBatchSampler', ...)``), the
    dataset's own ``collate`` (or the config's ``collate_fn=dict(type='PadCollate', ...)``) and a
    private ``torch.Generator``."""
    cfg = dict(loader_cfg)
    dataset = DATASETS.build(cfg.pop("dataset"))
    sampler_cfg = dict(cfg.pop("sampler", None) or {})
    kind = sampler_cfg.pop("type", None)
    sampler_cfg.setdefault("shuffle", train)
    sampler_cfg.setdefault("seed", seed)
    if kind in ("BucketBatchSampler", BucketBatchSampler):
        # the sampler makes the batches: the DataLoader takes neither batch_size nor drop_last
        drop_last = cfg.pop("drop_last", None)
        if drop_last is not None and "drop_last" in sampler_cfg and bool(drop_last) != bool(sampler_cfg["drop_last"]):
            raise ConfigError(f"drop_last={drop_last} in the data loader but {sampler_cfg['drop_last']} in its "
                              f"BucketBatchSampler; set it in one place")
        sampler_cfg.setdefault("drop_last", bool(drop_last))
        batch_sampler = BucketBatchSampler(dataset, batch_size=cfg.pop("batch_size", 1), **sampler_cfg)
        _log_padding(batch_sampler)
        sampling = dict(batch_sampler=batch_sampler)
    else:
        sampling = dict(sampler=SeededSampler(dataset, **sampler_cfg))
        cfg.setdefault("batch_size", 1)
    rank, _ = get_dist_info()
    workers = int(cfg.get("num_workers", 0))
    if workers == 0:
        cfg.pop("persistent_workers", None)
        cfg.pop("prefetch_factor", None)
    collate_cfg = cfg.pop("collate_fn", None)  # a config may choose the collate (OpenMMLab's key)
    collate = COLLATES.build(collate_cfg) if collate_cfg is not None else getattr(dataset, "collate", None)
    if collate is None:
        raise ConfigError(f"dataset {type(dataset).__name__} has no collate(samples) method; glocal datasets "
                          f"derive from glocal.modalities.dataset.GlocalDataset")
    return DataLoader(dataset, **sampling, collate_fn=collate,
                      generator=torch.Generator().manual_seed(int(seed) % 2**63),
                      worker_init_fn=functools.partial(_worker_init, base=int(seed) + rank * max(workers, 1)),
                      **cfg)

"""BucketBatchSampler: batches of similar length, seeded per epoch, split across ranks, resumable."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.hooks import Hook

import glocal.tasks.engine.data as engine_data
from glocal.core.errors import ConfigError
from glocal.modalities.dataset import GlocalDataset
from glocal.tasks.engine import (BucketBatchSampler, build_dataloader, build_runner, load_config, padding_share,
                                 sample_seeds, validate_config)
from glocal.tasks.engine.loops import _EndlessIterator, _position

CONFIG = Path(__file__).parent / "configs" / "tiny_fashion_mnist.py"


class _Lengths:
    """Just lengths: what the sampler reads."""

    def __init__(self, lengths):
        self._lengths = np.asarray(lengths)

    def __len__(self):
        return len(self._lengths)

    def lengths(self):
        return self._lengths


def _skewed(n=2000, seed=0):
    return np.maximum(1, np.random.default_rng(seed).lognormal(3.0, 1.0, n).astype(np.int64))  # [N], median 20


def _indices(batches):
    return [[i for i, _ in batch] for batch in batches]


def _sampler(lengths, **kw):
    kw = {"batch_size": 32, "seed": 7, "rank": 0, "world_size": 1, **kw}
    return BucketBatchSampler(_Lengths(lengths), **kw)


def test_every_index_once_per_epoch_in_similar_length_batches():
    lengths = _skewed(1000)
    sampler = _sampler(lengths, bucket_size=4)
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        batches = _indices(sampler)
        assert len(batches) == len(sampler) == math.ceil(1000 / 32)
        assert sorted(i for b in batches for i in b) == list(range(1000))
        assert sorted(len(b) for b in batches)[1:] == [32] * (len(batches) - 1)  # one short batch: 1000 % 32
    # drop_last: full batches only, N % batch_size samples left out
    dropped = _indices(_sampler(lengths, bucket_size=4, drop_last=True))
    assert len(dropped) == 1000 // 32 and all(len(b) == 32 for b in dropped)
    assert len({i for b in dropped for i in b}) == 1000 // 32 * 32


def test_deterministic_for_a_seed_and_reshuffled_each_epoch():
    lengths = _skewed(500)
    a, b = _sampler(lengths), _sampler(lengths)
    torch.manual_seed(123)  # the global RNG plays no part
    first = list(a)
    torch.manual_seed(456)
    assert list(b) == first
    a.set_epoch(1)
    second = list(a)
    assert _indices(second) != _indices(first)
    assert {s for batch in first for _, s in batch}.isdisjoint({s for batch in second for _, s in batch})
    assert _indices(_sampler(lengths, seed=8)) != _indices(first)
    # the seeds are SeededSampler's: a hash of (seed, epoch, index)
    keys = [key for batch in second for key in batch]
    assert [s for _, s in keys] == sample_seeds(7, 1, [i for i, _ in keys]).tolist()


def test_padding_share_is_far_below_plain_shuffling():
    lengths = _skewed(2000)
    bucketed = _sampler(lengths, bucket_size=50)
    share = padding_share(lengths, _indices(bucketed))
    perm = np.random.default_rng(0).permutation(len(lengths))
    plain = padding_share(lengths, [perm[i:i + 32] for i in range(0, len(perm), 32)])
    assert plain > 0.5 and share < plain / 4, (share, plain)
    # a bucket of one batch is plain shuffling (sorting inside a batch does not change its padding)
    assert padding_share(lengths, _indices(_sampler(lengths, bucket_size=1))) > 0.5
    assert padding_share([1, 3, 2, 2], [[0, 1], [2, 3]]) == pytest.approx(0.2)
    assert padding_share([5, 5], [[0, 1]]) == 0.0


@pytest.mark.parametrize("n, world_size", [(1000, 3), (70, 4), (3, 4)])
def test_ranks_split_the_batches_with_equal_counts(n, world_size):
    lengths = _skewed(n)
    ranks = [_indices(_sampler(lengths, bucket_size=3, rank=r, world_size=world_size)) for r in range(world_size)]
    counts = {len(batches) for batches in ranks}
    assert counts == {len(_sampler(lengths, rank=0, world_size=world_size))}
    assert len(counts) == 1
    assert sorted({i for batches in ranks for b in batches for i in b}) == list(range(n))
    # rank r holds batches r, r + world_size, ... of the single-process order (padded by repeating)
    whole = _indices(_sampler(lengths, bucket_size=3))
    padded = (whole * world_size)[:counts.pop() * world_size]
    for r in range(world_size):
        assert ranks[r] == padded[r::world_size]
    with pytest.raises(ConfigError, match="rank 4"):
        _sampler(lengths, rank=4, world_size=4)


def test_rank_and_world_size_default_to_the_process_group(monkeypatch):
    monkeypatch.setattr(engine_data, "get_dist_info", lambda: (1, 2))
    sampler = BucketBatchSampler(_Lengths(_skewed(100)), batch_size=8, seed=0)
    assert (sampler.rank, sampler.world_size) == (1, 2) and len(sampler) == math.ceil(13 / 2)


def test_skip_next_continues_where_a_full_iteration_would_be():
    sampler = _sampler(_skewed(700), bucket_size=5)
    sampler.set_epoch(3)
    full = list(sampler)
    sampler.skip_next(9)
    assert list(sampler) == full[9:]
    assert list(sampler) == full  # the skip applies once


def test_a_dataset_without_lengths_gets_a_clear_error():
    class NoLengths(torch.utils.data.Dataset):
        def __len__(self):
            return 4

    with pytest.raises(ConfigError, match=r"dataset NoLengths has no lengths\(\) method"):
        BucketBatchSampler(NoLengths(), batch_size=2, seed=0)
    with pytest.raises(ConfigError, match=r"lengths\(\) has shape \(3,\); expected \(4,\)"):
        BucketBatchSampler(type("Short", (NoLengths,), {"lengths": lambda self: np.ones(3)})(), batch_size=2, seed=0)


def test_docstring_examples():
    import doctest

    assert doctest.testmod(engine_data).failed == 0


# ------------------------------------------------------------------------------------------------
# through the data loader
# ------------------------------------------------------------------------------------------------
class RaggedSequences(GlocalDataset):
    """``n`` sequences of ``[L_i, 2]`` features (L_i from 1 to 40) whose ``collate`` pads to the
    longest in the batch; each sample also draws a number from its augmentation RNG."""

    def __init__(self, n: int = 45):
        super().__init__([lambda sample, rng: {**sample, "draw": int(rng.integers(2**30))}])
        self._lengths = np.random.default_rng(1).integers(1, 41, n)  # [N]

    def __len__(self):
        return len(self._lengths)

    def lengths(self):
        return self._lengths

    def load(self, index):
        return dict(inputs=np.full((self._lengths[index], 2), index, np.float32), index=index)

    @staticmethod
    def collate(samples):
        longest = max(len(s["inputs"]) for s in samples)
        inputs = torch.zeros(len(samples), longest, 2)  # [B, L, 2]
        mask = torch.zeros(len(samples), longest, dtype=torch.bool)  # [B, L]
        for b, s in enumerate(samples):
            inputs[b, :len(s["inputs"])] = torch.from_numpy(s["inputs"])
            mask[b, :len(s["inputs"])] = True
        return dict(inputs=inputs, mask=mask, data_samples=dict(index=torch.tensor([s["index"] for s in samples]),
                                                                draw=torch.tensor([s["draw"] for s in samples])))


def test_build_dataloader_pads_bucketed_batches_and_resumes_in_batches(monkeypatch):
    logged = []
    monkeypatch.setattr(engine_data, "print_log", lambda msg, **kw: logged.append(msg))
    cfg = dict(batch_size=8, dataset=dict(type=RaggedSequences), sampler=dict(type="BucketBatchSampler",
                                                                                 bucket_size=2))
    loader = build_dataloader(cfg, seed=5, train=True)
    assert isinstance(loader.batch_sampler, BucketBatchSampler) and loader.batch_size is None
    assert len(loader) == math.ceil(45 / 8)
    assert len(logged) == 1 and logged[0].startswith("BucketBatchSampler: padding ")
    assert "% of token slots (plain shuffling: " in logged[0]

    lengths = loader.dataset.lengths()
    epoch0 = list(loader)
    seen = torch.cat([b["data_samples"]["index"] for b in epoch0])
    assert sorted(seen.tolist()) == list(range(45))
    for batch in epoch0:
        index = batch["data_samples"]["index"]
        assert batch["mask"].sum(1).tolist() == lengths[index.numpy()].tolist()
        assert batch["inputs"].shape[1] == lengths[index.numpy()].max()  # padded to the longest only
        # augmentation draws come from the (index, seed) key: sample_seeds(seed, epoch, index)
        expected = [int(np.random.default_rng(s).integers(2**30)) for s in sample_seeds(5, 0, index.numpy())]
        assert batch["data_samples"]["draw"].tolist() == expected
    assert padding_share(lengths, [b["data_samples"]["index"].numpy() for b in epoch0]) < 0.5

    # resume: position the loader 2 batches into the epoch, or 8 batches into the run (epoch 1)
    assert _position(loader, 2)
    again = list(loader)
    assert len(again) == len(epoch0) - 2
    for a, b in zip(again, epoch0[2:]):
        assert torch.equal(a["inputs"], b["inputs"]) and torch.equal(a["data_samples"]["draw"],
                                                                       b["data_samples"]["draw"])
    straight = _EndlessIterator(loader)
    run = [next(straight)["data_samples"]["index"] for _ in range(14)]
    resumed = _EndlessIterator(loader)
    resumed.seek(8)
    assert all(torch.equal(next(resumed)["data_samples"]["index"], run[i]) for i in range(8, 14))
    assert loader.batch_sampler.epoch == 2  # 6 batches per epoch: batch 13 is in epoch 2


def test_loader_drop_last_goes_to_the_sampler():
    cfg = dict(batch_size=8, drop_last=True, dataset=dict(type=RaggedSequences),
               sampler=dict(type="BucketBatchSampler"))
    loader = build_dataloader(cfg, seed=0, train=False)
    assert loader.batch_sampler.drop_last and not loader.batch_sampler.shuffle
    assert len(loader) == 45 // 8 and all(len(b["mask"]) == 8 for b in loader)
    cfg["sampler"]["drop_last"] = False
    with pytest.raises(ConfigError, match="drop_last"):
        build_dataloader(cfg, seed=0, train=False)


def test_config_validation_knows_the_bucket_sampler():
    cfg = load_config(CONFIG)
    cfg.train_dataloader.sampler = dict(type="BucketBatchSampler", bucket_size=50, drop_last=True)
    validate_config(cfg)
    cfg.train_dataloader.sampler = dict(type="BucketBatchSampler", bucket_sise=50)
    with pytest.raises(ConfigError, match=r"BucketBatchSampler\) has no key 'bucket_sise'; did you mean: bucket_size"):
        validate_config(cfg)
    cfg.train_dataloader.sampler = dict(type="BucketSampler")
    with pytest.raises(ConfigError, match=r"type='BucketSampler' is not supported.*did you mean: BucketBatchSampler"):
        validate_config(cfg)
    cfg.train_dataloader.sampler = dict(type="SeededSampler", bucket_size=50)  # not a key of SeededSampler
    with pytest.raises(ConfigError, match=r"\(SeededSampler\) has no key 'bucket_size'"):
        validate_config(cfg)


# ------------------------------------------------------------------------------------------------
# exact resume through the Runner
# ------------------------------------------------------------------------------------------------
class _Crash(Exception):
    pass


class _CrashAfter(Hook):
    def __init__(self, n):
        self.n = n

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 >= self.n:
            raise _Crash




@pytest.mark.parametrize("by_epoch", [False, True], ids=["by_iter", "mid_epoch"])
def test_resume_with_bucketed_batches_is_exact(tmp_path, monkeypatch, one_thread, by_epoch):
    """Fashion-MNIST with a stand-in length (the image's ink pixels), batches bucketed by it; a run
    killed after iteration 5 (its checkpoint: by_iter within epoch 0; mid_epoch in an epoch loop)
    resumes to the same parameters and losses as a straight run of 12 (by_iter) / 16 iterations."""
    from glocal.modalities.image.fashion_mnist import FashionMNIST

    monkeypatch.setattr(FashionMNIST, "lengths", lambda self: (self.images.reshape(len(self), -1) > 0).sum(1),
                        raising=False)

    def cfg_for(work_dir, name):
        cfg = load_config(CONFIG)
        cfg.work_dir, cfg.experiment_name = str(work_dir), name
        cfg.train_dataloader.sampler = dict(type="BucketBatchSampler", bucket_size=2)
        cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
        cfg.default_hooks.checkpoint.update(by_epoch=False, interval=5)
        if not by_epoch:  # 8 iterations per epoch: 12 crosses an epoch of the data
            cfg.train_cfg = dict(by_epoch=False, max_iters=12)
            cfg.param_scheduler = [dict(type="LinearLR", start_factor=0.2, by_epoch=False, begin=0, end=4)]
        return cfg

    def train(cfg, crash_after=None):
        runner = build_runner(cfg)
        if crash_after:
            runner.register_hook(_CrashAfter(crash_after), "LOWEST")
        try:
            runner.train()
        except _Crash:
            pass
        return runner

    straight = train(cfg_for(tmp_path / "straight", "straight"))
    train(cfg_for(tmp_path / "resumed", "first"), crash_after=5)
    cfg = cfg_for(tmp_path / "resumed", "second")
    cfg.resume = True
    resumed = train(cfg)
    assert resumed.iter == straight.iter == (16 if by_epoch else 12)
    a, b = dict(straight.model.named_parameters()), dict(resumed.model.named_parameters())
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])][:5]
    np.testing.assert_array_equal(resumed.message_hub.get_scalar("train/loss").data[0],
                                  straight.message_hub.get_scalar("train/loss").data[0])

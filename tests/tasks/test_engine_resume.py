"""Exact resume: N steps, checkpoint, a new Runner resumes, N more steps == 2N straight steps.

The tiny config has dropout, drop-path and random augmentation on, a warm-up + cosine schedule,
gradient clipping, AdamW, and a validation loop between epochs (whose data loader iterators must
not disturb the training RNG stream).
"""
from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.hooks import Hook
from mmengine.logging import HistoryBuffer

from glocal.tasks.checkpoint import SafeCheckpointHook
from glocal.tasks.engine import build_runner, load_config

CONFIG = Path(__file__).parent / "configs" / "tiny_fashion_mnist.py"


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test here runs on one thread (conftest's one_thread)."""


class Crash(Exception):
    pass


class StopAfter(Hook):
    """Interrupt training after ``n`` iterations (iteration loop) or epochs (epoch loop); with
    ``crash=True`` by raising after iteration ``n`` (and its checkpoint), as a killed job would."""

    def __init__(self, n: int, crash: bool = False):
        self.n, self.crash = n, crash

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if self.crash and runner.iter + 1 >= self.n:
            raise Crash
        if not runner.train_loop.__class__.__name__.startswith("Epoch") and runner.iter + 1 >= self.n:
            runner.train_loop.stop_training = True

    def after_train_epoch(self, runner):
        if runner.train_loop.__class__.__name__.startswith("Epoch") and runner.epoch + 1 >= self.n:
            runner.train_loop.stop_training = True


def _cfg(work_dir, name, by_epoch: bool | str):
    cfg = load_config(CONFIG)
    cfg.work_dir, cfg.experiment_name = str(work_dir), name
    cfg.default_hooks.logger.interval = 1
    if not by_epoch:  # 8 iterations per epoch: 2N = 12 crosses an epoch of the data
        cfg.train_cfg = dict(by_epoch=False, max_iters=12, val_interval=6)  # validates after the save
        cfg.param_scheduler = [dict(type="LinearLR", start_factor=0.2, by_epoch=False, begin=0, end=4),
                               dict(type="CosineAnnealingLR", by_epoch=False, begin=4)]
        cfg.default_hooks.checkpoint.interval = 6
    if by_epoch == "mid_epoch":  # an epoch loop checkpointing every 5 iterations (8 per epoch)
        cfg.default_hooks.checkpoint.update(by_epoch=False, interval=5)
    return cfg


def _train(cfg, stop_after=None, crash=False):
    runner = build_runner(cfg)
    if stop_after is not None:
        runner.register_hook(StopAfter(stop_after, crash), "LOWEST")
    try:
        runner.train()
    except Crash:
        pass
    return runner


def _history(runner, key):
    return runner.message_hub.get_scalar(key).data[0]


@pytest.mark.parametrize("by_epoch", [False, True, "mid_epoch"], ids=["by_iter", "by_epoch", "mid_epoch"])
def test_resume_is_exact(tmp_path, by_epoch):
    """by_iter: 6 + 6 iterations (the data's epoch ends at 8); by_epoch: 1 + 1 epochs of 8
    iterations; mid_epoch: an epoch loop killed after iteration 5 of 8 resumes inside the epoch."""
    straight = _train(_cfg(tmp_path / "straight", f"straight_{by_epoch}", by_epoch))
    stop = {False: 6, True: 1, "mid_epoch": 5}[by_epoch]
    _train(_cfg(tmp_path / "resumed", f"first_{by_epoch}", by_epoch), stop_after=stop,
           crash=by_epoch == "mid_epoch")
    cfg = _cfg(tmp_path / "resumed", f"second_{by_epoch}", by_epoch)
    cfg.resume = True  # the latest checkpoint in the work dir
    resumed = _train(cfg)
    assert resumed.iter == straight.iter == (12 if by_epoch is False else 16)

    a, b = dict(straight.model.named_parameters()), dict(resumed.model.named_parameters())
    assert a.keys() == b.keys()
    differing = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differing, f"parameters differ after resume: {differing[:5]}"
    for k, v in straight.model.state_dict().items():  # buffers too
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    # per-step losses and learning rates: the resumed message hub holds the first run's history
    # (restored from the checkpoint) followed by its own steps
    for key in ("train/loss", "train/lr"):
        np.testing.assert_array_equal(_history(resumed, key), _history(straight, key))
    assert len(_history(resumed, "train/loss")) == straight.iter
    # the optimizer state continues too
    sa, sb = straight.optim_wrapper.state_dict()["state"], resumed.optim_wrapper.state_dict()["state"]
    assert all(torch.equal(sa[i]["exp_avg_sq"], sb[i]["exp_avg_sq"]) for i in sa)


def test_interruption_changes_result_without_rng_restore(tmp_path):
    """The RNG restore is what makes dropout masks continue: without it, resume is not exact
    (guards the test above against passing for a trivial reason)."""
    straight = _train(_cfg(tmp_path / "straight", "nr_straight", False))
    _train(_cfg(tmp_path / "resumed", "nr_first", False), stop_after=6)
    cfg = _cfg(tmp_path / "resumed", "nr_second", False)
    cfg.resume = True
    runner = build_runner(cfg)
    hook = next(h for h in runner.hooks if isinstance(h, SafeCheckpointHook))
    hook.before_train = lambda runner: None  # skip the RNG restore
    runner.train()
    a, b = dict(straight.model.named_parameters()), dict(runner.model.named_parameters())
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_checkpoint_loads_with_plain_torch_load(tmp_path):
    runner = _train(_cfg(tmp_path, "plain_load", False), stop_after=6)
    path = tmp_path / "iter_6.pth"
    assert path.is_file()
    ckpt = torch.load(path)  # weights_only=True is torch's default
    assert set(ckpt) >= {"meta", "state_dict", "message_hub", "optimizer", "param_schedulers", "rng_state"}
    assert ckpt["meta"]["iter"] == 6
    own = runner.model.state_dict()
    assert all(torch.equal(ckpt["state_dict"][k], own[k]) for k in own)
    # loading it: RNG states are kept for a resume only, not for fine-tuning from `load_from`
    cfg = _cfg(tmp_path / "load", "plain_load_again", False)
    again = build_runner(cfg)
    hook = next(h for h in again.hooks if isinstance(h, SafeCheckpointHook))
    again.load_checkpoint(str(path))
    assert hook._pending_rng is None
    again._resume = True
    again.load_checkpoint(str(path))
    assert torch.equal(hook._pending_rng["torch"], ckpt["rng_state"]["torch"])
    buf = io.BytesIO()  # what mmengine writes without the hook is refused
    torch.save({"h": HistoryBuffer([1.0], [1])}, buf)
    buf.seek(0)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(buf)


def test_resume_with_more_epochs_takes_the_new_schedule_end(tmp_path):
    """A 2-epoch run interrupted after epoch 1 and resumed with max_epochs=3: mmengine would keep
    the checkpoint's end=2 / T_max=2 and hold the learning rate flat in epoch 3; glocal keeps
    the config's shape (end filled from max_epochs) and restores only the schedulers' progress."""
    def cfg_for(name, epochs):
        cfg = _cfg(tmp_path, name, True)
        cfg.train_cfg.max_epochs = epochs
        cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
        return cfg

    _train(cfg_for("more_first", 2), stop_after=1)
    saved = torch.load(tmp_path / "epoch_1.pth")["param_schedulers"][1]
    assert saved["end"] == 2 and saved["T_max"] == 2
    cfg = cfg_for("more_second", 3)
    cfg.resume = True
    runner = _train(cfg)
    cosine = runner.param_schedulers[1]
    assert (cosine.end, cosine.T_max, cosine._global_step) == (3, 3, 3)
    lr = _history(runner, "train/lr")
    assert len(lr) == 24
    assert lr[16] < lr[8] < lr[4]  # epoch 3 < epoch 2 < epoch 1 (after warm-up): still decaying

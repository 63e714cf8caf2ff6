"""The divergence guard: a NaN/inf loss or gradient stops the run with a clear message and a
non-zero exit (or, with ``nonfinite='skip'``, drops and counts the step); nothing non-finite is
ever saved, so the last good checkpoint survives any rotation setting."""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import torch
from mmengine.hooks import Hook

from glocal.tasks.checkpoint import CheckpointError, AtomicCheckpointHook, read_state_dict
from glocal.tasks.engine import build_runner, load_config, run_tool

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "tests" / "tasks" / "configs" / "tiny_fashion_mnist.py"


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """One thread (conftest's one_thread)."""


def _train_main(argv):
    spec = importlib.util.spec_from_file_location("glocal_tool_train_div", ROOT / "tools" / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(SystemExit) as exit_:
        run_tool(lambda: module.main(argv))
    return exit_.value.code


def test_a_run_that_diverges_after_a_good_epoch_stops_and_keeps_the_good_checkpoint(tmp_path, capsys):
    # epoch 1 trains normally; from epoch 2 the lr is 1e12 times larger: the weights blow up
    config = tmp_path / "diverging.py"
    config.write_text(f"_base_ = [{str(CONFIG)!r}]\n"
                      f"param_scheduler = [dict(type='MultiStepLR', milestones=[1], gamma=1e12, by_epoch=True)]\n")
    code = _train_main([str(config), "--work-dir", str(tmp_path), "--cfg-options", "train_cfg.max_epochs=3",
                        "default_hooks.checkpoint.max_keep_ckpts=1", "optim_wrapper.clip_grad=None"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert re.search(r"error: training diverged at iteration (9|1\d) \(epoch 2\): the (loss is (nan|inf)|gradient "
                     r"is not finite in parameter group 0 \(lr 2e\+09\), first at \S+)", err), err
    assert f"the last good checkpoint is {tmp_path / 'epoch_1.pth'}" in err and "Lower the learning rate" in err
    assert "Traceback" not in err
    # the good checkpoint is on disk, complete and finite; nothing later was written
    assert sorted(p.name for p in tmp_path.glob("*.pth")) == ["epoch_1.pth"]
    state = read_state_dict(tmp_path / "epoch_1.pth")
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
    assert (tmp_path / "last_checkpoint").read_text() == str(tmp_path / "epoch_1.pth")


class PoisonBatch(Hook):
    """NaN inputs at the given iterations (as a corrupt sample or a bad augmentation would give)."""

    def __init__(self, iters):
        self.iters = set(iters)

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter in self.iters:
            data_batch["inputs"] = [x.float() * float("nan") for x in data_batch["inputs"]] \
                if isinstance(data_batch["inputs"], list) else data_batch["inputs"].float() * float("nan")


def _runner(tmp_path, **optim):
    cfg = load_config(CONFIG)
    cfg.work_dir = str(tmp_path)
    cfg.train_cfg.max_epochs = 1
    cfg.optim_wrapper.update(optim)
    return build_runner(cfg)


def test_stop_names_the_iteration_and_saves_nothing(tmp_path):
    runner = _runner(tmp_path)
    runner.register_hook(PoisonBatch({3}), "LOWEST")
    with pytest.raises(Exception, match=r"training diverged at iteration 4 \(epoch 1\): the loss is nan\. Nothing "
                                        r"was saved after this point; the last good checkpoint is none"):
        runner.train()
    assert not list(tmp_path.glob("*.pth"))


def test_skip_drops_the_step_counts_it_and_stops_past_max_skips(tmp_path):
    runner = _runner(tmp_path, nonfinite="skip", max_skips=2)
    runner.register_hook(PoisonBatch({2, 5}), "LOWEST")
    before = {}

    class Watch(Hook):
        def before_train_iter(self, runner, batch_idx, data_batch=None):
            if runner.iter == 2:
                before.update({n: p.detach().clone() for n, p in runner.model.named_parameters()})

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            if runner.iter == 2:  # the skipped step left every parameter untouched
                assert all(torch.equal(before[n], p) for n, p in runner.model.named_parameters())

    runner.register_hook(Watch(), "LOWEST")
    runner.train()
    assert runner.optim_wrapper.skipped_steps == 2
    state = read_state_dict(tmp_path / "epoch_1.pth")
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())

    runner = _runner(tmp_path / "again", nonfinite="skip", max_skips=1)
    runner.register_hook(PoisonBatch({2, 5}), "LOWEST")
    with pytest.raises(Exception, match=r"iteration 6 \(epoch 1\): more than max_skips=1 non-finite steps"):
        runner.train()


def test_non_finite_weights_are_never_saved(tmp_path):
    runner = _runner(tmp_path)
    hook = next(h for h in runner.hooks if isinstance(h, AtomicCheckpointHook))
    with torch.no_grad():
        next(runner.model.parameters())[0] = float("inf")
    with pytest.raises(CheckpointError, match=r"not saving checkpoint epoch_1\.pth: \S+ holds NaN or inf"):
        hook._save_checkpoint_with_step(runner, 1, {})
    assert not list(tmp_path.glob("*.pth*"))


def test_the_policy_is_checked():
    cfg = load_config(CONFIG)
    cfg.optim_wrapper.nonfinite = "ignore"
    with pytest.raises(Exception, match=r"optim_wrapper\.nonfinite='ignore': use 'stop' or 'skip'"):
        build_runner(cfg)

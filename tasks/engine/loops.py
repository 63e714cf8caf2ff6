"""Train loops, AMP on CPU, the divergence guard, and the parameter-digest hook.

The train loops resume mid-epoch by positioning the sampler (no data is re-read to skip
batches): a sampler with ``skip_next`` is told how many keys (or, a batch sampler, how many
batches) of its next iteration to drop. ``AmpOptimWrapper`` runs on CPU as bfloat16 autocast.
"""
from __future__ import annotations

import logging

import torch
from mmengine.dist import all_gather_object
from mmengine.hooks import Hook
from mmengine.optim import AmpOptimWrapper as _MMAmpOptimWrapper
from mmengine.optim import OptimWrapper as _MMOptimWrapper
from mmengine.runner.loops import EpochBasedTrainLoop as _MMEpochBasedTrainLoop
from mmengine.runner.loops import IterBasedTrainLoop as _MMIterBasedTrainLoop
from torch.utils.data import DataLoader

from mmengine.logging import MessageHub, print_log

from glocal.core.errors import ConfigError, GlocalError

from ..checkpoint import parameter_digest

__all__ = ["EpochBasedTrainLoop", "IterBasedTrainLoop", "OptimWrapper", "AmpOptimWrapper", "ParameterDigestHook",
           "DivergenceError"]


def _position(loader: DataLoader, batches: int) -> bool:
    """Make the next iteration of ``loader`` start ``batches`` batches into its epoch: its sampler
    skips ``batches * batch_size`` keys, or its batch sampler (``batch_size`` None) ``batches``."""
    if batches <= 0:
        return False
    if loader.batch_size is None:  # the batches come from a batch sampler
        sampler, skip = getattr(loader, "batch_sampler", None), batches
    else:
        sampler, skip = getattr(loader, "sampler", None), batches * loader.batch_size
    if not hasattr(sampler, "skip_next"):
        return False
    sampler.skip_next(skip)
    return True


def _set_epoch(loader: DataLoader, epoch: int) -> None:
    """Set the epoch of the loader's sampler, and of its batch sampler when that is one of glocal's."""
    for sampler in (getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None)):
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)


class EpochBasedTrainLoop(_MMEpochBasedTrainLoop):
    """mmengine's epoch loop; a run resumed from a mid-epoch checkpoint continues that epoch at
    the next batch instead of starting it again."""

    def run_epoch(self) -> None:
        self.runner.call_hook("before_train_epoch")
        self.runner.model.train()
        done = self._iter - self._epoch * len(self.dataloader)
        start = done if 0 < done < len(self.dataloader) and _position(self.dataloader, done) else 0
        for idx, data_batch in enumerate(self.dataloader, start):
            self.run_iter(idx, data_batch)
        self.runner.call_hook("after_train_epoch")
        self._epoch += 1


class _EndlessIterator:
    """Cycles a DataLoader, advancing the sampler's epoch at each pass (no pause between passes);
    ``seek(n)`` positions it after ``n`` batches without loading them."""

    def __init__(self, loader: DataLoader):
        self.loader, self.epoch, self._it = loader, 0, None

    def _set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        _set_epoch(self.loader, epoch)

    def seek(self, batches: int) -> None:
        epoch, offset = divmod(batches, len(self.loader))
        self._set_epoch(epoch)
        if offset and not _position(self.loader, offset):  # a sampler that cannot skip: read through
            self._it = iter(self.loader)
            for _ in range(offset):
                next(self._it)
            return
        self._it = None

    def __iter__(self):
        return self

    def __next__(self):
        if self._it is None:
            self._it = iter(self.loader)
        try:
            return next(self._it)
        except StopIteration:
            self._set_epoch(self.epoch + 1)
            self._it = iter(self.loader)
            return next(self._it)


class IterBasedTrainLoop(_MMIterBasedTrainLoop):
    """mmengine's iteration loop; on resume it positions the sampler at the next batch (mmengine
    loads and discards every batch already trained on), and it passes from one epoch of the data
    to the next without mmengine's 2 s pause."""

    def __init__(self, runner, dataloader, max_iters: int, val_begin: int = 1, val_interval: int = 1000,
                 dynamic_intervals=None):
        super().__init__(runner, dataloader, max_iters, val_begin, val_interval, dynamic_intervals)
        self.dataloader_iterator = _EndlessIterator(self.dataloader)

    def run(self):
        self.runner.call_hook("before_train")
        self.runner.call_hook("before_train_epoch")
        if self._iter > 0:
            self.dataloader_iterator.seek(self._iter)
        while self._iter < self._max_iters and not self.stop_training:
            self.runner.model.train()
            data_batch = next(self.dataloader_iterator)
            self.run_iter(data_batch)
            self._decide_current_val_interval()
            if (self.runner.val_loop is not None and self._iter >= self.val_begin
                    and (self._iter % self.val_interval == 0 or self._iter == self._max_iters)):
                self.runner.val_loop.run()
        self.runner.call_hook("after_train_epoch")
        self.runner.call_hook("after_train")
        return self.runner.model


class DivergenceError(GlocalError, FloatingPointError):
    """Training produced a NaN or inf loss or gradient."""


class _NonFiniteGuard:
    """Checks the loss before backward and the gradients before the optimizer step."""

    def _init_guard(self, nonfinite: str, max_skips: int) -> None:
        if nonfinite not in ("stop", "skip"):
            raise ConfigError(f"optim_wrapper.nonfinite={nonfinite!r}: use 'stop' (end the run with an error) or "
                              f"'skip' (drop the step, count it, stop after max_skips)")
        self.nonfinite, self.max_skips, self.skipped_steps = nonfinite, int(max_skips), 0
        self.param_names: dict[int, str] = {}  # id(parameter) -> name, filled in by the runner

    def update_params(self, loss: torch.Tensor, step_kwargs=None, zero_kwargs=None) -> None:
        if not bool(torch.isfinite(loss.detach()).all()):
            return self._on_nonfinite(f"the loss is {loss.detach().float().sum().item()}", zero_kwargs)
        loss = self.scale_loss(loss)
        self.backward(loss)
        if self.should_update():
            bad = self._first_nonfinite_grad()
            if bad is not None:
                return self._on_nonfinite(bad, zero_kwargs)
            self.step(**(step_kwargs or {}))
            self.zero_grad(**(zero_kwargs or {}))

    def _first_nonfinite_grad(self) -> str | None:
        if getattr(self, "loss_scaler", None) is not None and self.loss_scaler.is_enabled():
            return None  # fp16 loss scaling skips inf steps itself (and lowers the scale)
        for g, group in enumerate(self.optimizer.param_groups):
            grads = [p.grad for p in group["params"] if p.grad is not None]
            if not grads or all(bool(torch.isfinite(n)) for n in torch._foreach_norm(grads)):
                continue
            for p in group["params"]:
                if p.grad is not None and not bool(torch.isfinite(p.grad).all()):
                    name = self.param_names.get(id(p), f"a parameter of shape {tuple(p.shape)}")
                    return (f"the gradient is not finite in parameter group {g} (lr {group['lr']:.3g}), first "
                            f"at {name}")
        return None

    def _on_nonfinite(self, what: str, zero_kwargs) -> None:
        hub = MessageHub.get_current_instance()
        it, epoch = hub.get_info("iter", 0), hub.get_info("epoch", 0)
        last = hub.get_info("last_ckpt")
        self.zero_grad(**(zero_kwargs or {}))
        if self.nonfinite == "skip" and self.skipped_steps < self.max_skips:
            self.skipped_steps += 1
            print_log(f"iteration {it + 1} (epoch {epoch + 1}): {what}; step skipped "
                      f"({self.skipped_steps} of at most {self.max_skips})", logger="current", level=logging.WARNING)
            return
        why = (f"more than max_skips={self.max_skips} non-finite steps; " if self.nonfinite == "skip" else "")
        raise DivergenceError(
            f"training diverged at iteration {it + 1} (epoch {epoch + 1}): {why}{what}. Nothing was saved after "
            f"this point; the last good checkpoint is {last or 'none (no checkpoint was saved yet)'}. Lower the "
            f"learning rate (optim_wrapper.optimizer.lr), clip gradients (optim_wrapper.clip_grad="
            f"dict(max_norm=1.0)), then --resume {last or ''}".rstrip())


class OptimWrapper(_NonFiniteGuard, _MMOptimWrapper):
    """mmengine's ``OptimWrapper`` with the divergence guard (``nonfinite``, ``max_skips``)."""

    def __init__(self, optimizer, nonfinite: str = "stop", max_skips: int = 100, **kwargs):
        super().__init__(optimizer, **kwargs)
        self._init_guard(nonfinite, max_skips)


class AmpOptimWrapper(_NonFiniteGuard, _MMAmpOptimWrapper):
    """mmengine's ``AmpOptimWrapper``, which also runs on CPU: bfloat16 autocast, no loss scaling
    (bfloat16 has float32's range). With CUDA it is mmengine's wrapper. Guarded like
    :class:`OptimWrapper`."""

    def __init__(self, loss_scale="dynamic", dtype=None, use_fsdp: bool = False, nonfinite: str = "stop",
                 max_skips: int = 100, **kwargs):
        self._init_guard(nonfinite, max_skips)
        if torch.cuda.is_available():
            super().__init__(loss_scale=loss_scale, dtype=dtype, use_fsdp=use_fsdp, **kwargs)
            return
        if dtype not in (None, "bfloat16", torch.bfloat16):
            raise ConfigError(f"AmpOptimWrapper on CPU supports dtype='bfloat16' only; got {dtype!r}")
        _MMOptimWrapper.__init__(self, **kwargs)
        self._scale_update_param = None
        self.loss_scaler = torch.amp.GradScaler("cpu", enabled=False)
        self.cast_dtype = torch.bfloat16


class ParameterDigestHook(Hook):
    """After training, every rank hashes its parameters; rank 0 logs the digests and warns if the
    ranks disagree (DDP keeps them bitwise equal)."""

    priority = "LOWEST"

    def after_train(self, runner) -> None:
        digest = parameter_digest(runner.model)
        digests = all_gather_object(digest) if runner.world_size > 1 else [digest]
        same = len(set(digests)) == 1
        runner.logger.info(f"parameter digest (sha256) per rank: {' '.join(digests)} "
                           f"({'identical' if same else 'DIFFERENT'} across {len(digests)} rank(s))")
        if not same:
            runner.logger.warning("ranks ended with different parameters")

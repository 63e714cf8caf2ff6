"""The training engine: an mmengine ``Runner`` built from a flat glocal config.

``build_runner(cfg)``

1. validates the config before anything is built: every ``type=`` resolves (glocal's registries
   for the model, datasets, transforms and metrics; mmengine's for optimizers, schedulers, hooks,
   visualizers and loops), unknown names and keys raise :class:`~glocal.core.errors.ConfigError`
   with the closest names;
2. builds the model, datasets, data loaders and metrics itself (glocal's registries give the
   clear errors) and hands the built objects to ``Runner``;
3. samples ``(index, seed)`` keys (:class:`SeededSampler`): augmentation depends only on
   ``(seed, epoch, index)``, never on the global RNG or on worker scheduling; every data loader
   has its own ``torch.Generator``, so creating an iterator draws nothing from torch's global RNG;
4. uses train loops that resume mid-epoch by positioning the sampler (no data is re-read to skip
   batches), fills each scheduler's missing ``end`` from the loop length, and adds
   :class:`~glocal.tasks.checkpoint.SafeCheckpointHook` (checkpoints that load under
   ``weights_only=True``, RNG states saved and restored);
5. on CPU with ``launcher='pytorch'`` initialises gloo itself and wraps the model in DDP without
   ``device_ids`` (mmengine would call ``torch.cuda.set_device`` and pass ``device_ids=[rank]``,
   both of which fail without CUDA); ``AmpOptimWrapper`` runs on CPU as bfloat16 autocast.

The resolved config is written to the work dir by the Runner; logs go to text files and
TensorBoard under ``work_dir/<timestamp>/``.
"""
from __future__ import annotations

import copy
import datetime
import functools
import inspect
import os
import random
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from mmengine.config import Config
from mmengine.dataset import DefaultSampler
from mmengine.dist import all_gather_object, get_dist_info, sync_random_seed
from mmengine.evaluator import Evaluator
from mmengine.hooks import CheckpointHook, Hook
from mmengine.logging import print_log
from mmengine.optim import AmpOptimWrapper as _MMAmpOptimWrapper
from mmengine.optim import OptimWrapper
from mmengine.registry import (HOOKS, LOG_PROCESSORS, LOOPS, MODEL_WRAPPERS, OPTIM_WRAPPER_CONSTRUCTORS,
                               OPTIM_WRAPPERS, OPTIMIZERS, PARAM_SCHEDULERS, VISBACKENDS, VISUALIZERS)
from mmengine.runner import Runner, find_latest_checkpoint, set_random_seed
from mmengine.runner.loops import EpochBasedTrainLoop as _MMEpochBasedTrainLoop
from mmengine.runner.loops import IterBasedTrainLoop as _MMIterBasedTrainLoop
from torch.utils.data import DataLoader

from glocal.core.errors import ConfigError, GlocalError, close_names
from glocal.core.registry import (ALL_REGISTRIES, DATASETS, METRICS, MODELS, TRANSFORMS, accepted_args,
                                  load_catalogs)

from .checkpoint import (CheckpointError, SafeCheckpointHook, decode_state, load_weights, parameter_digest,
                         save_safetensors)

__all__ = ["build_runner", "load_config", "validate_config", "apply_cfg_options", "resolve_config",
           "prepare_config", "run_tool", "SeededSampler",
           "sample_seeds", "EpochBasedTrainLoop", "IterBasedTrainLoop", "AmpOptimWrapper",
           "ParameterDigestHook", "build_model", "build_dataloader", "load_weights", "save_safetensors",
           "CheckpointError"]

# Runner keyword arguments a config may set at its top level (beyond what it already holds).
RUNNER_KEYS = tuple(n for n in inspect.signature(Runner.__init__).parameters if n not in ("self", "cfg")) + (
    "model_wrapper_cfg", "find_unused_parameters", "sync_bn", "compile", "activation_checkpointing",
    "efficient_conv_bn_eval")
DATALOADER_KEYS = ("dataset", "sampler", "batch_size", "num_workers", "persistent_workers", "pin_memory",
                   "drop_last", "prefetch_factor", "timeout")
SAMPLER_KEYS = ("type", "shuffle", "round_up", "seed")


# ================================================================================================
# config loading, validation, --cfg-options
# ================================================================================================
def load_config(cfg: str | os.PathLike | Mapping | Config) -> Config:
    """A ``Config`` from a path, a dict or a Config (copied)."""
    if isinstance(cfg, Config):
        return copy.deepcopy(cfg)
    if isinstance(cfg, Mapping):
        return Config(copy.deepcopy(dict(cfg)))
    path = Path(cfg)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    return Config.fromfile(str(path))


def _accepted_args(factory) -> set[str] | None:
    names = accepted_args(factory)
    return None if names is None else set(names)


def _glocal_factory(name: str):
    load_catalogs()
    for reg in ALL_REGISTRIES:
        if name in reg:
            return reg.get(name)
    return None


def _glocal_names() -> set[str]:
    return {n for reg in ALL_REGISTRIES for n in reg.names()}


def _check_glocal(node: Any, path: str, registry=None) -> None:
    """Every ``type=`` string in ``node`` names a glocal component (``registry`` for the top one)."""
    if isinstance(node, Mapping):
        kind = node.get("type")
        if isinstance(kind, str):
            if registry is not None:
                if kind not in registry:
                    raise ConfigError(f"{path}: unknown {registry.name} type={kind!r}; "
                                      f"{close_names(kind, registry.names())}")
            elif _glocal_factory(kind) is None:
                raise ConfigError(f"{path}: unknown type={kind!r} (no glocal registry has it); "
                                  f"{close_names(kind, _glocal_names())}")
        for key, value in node.items():
            if key not in ("type", "init_cfg"):  # init_cfg names mmengine's weight initialisers
                _check_glocal(value, f"{path}.{key}", TRANSFORMS if key == "transforms" and
                              isinstance(value, Sequence) else None)
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            if registry is TRANSFORMS and isinstance(value, Mapping) and isinstance(value.get("type"), str):
                _check_glocal(dict(value), f"{path}[{i}]", TRANSFORMS)
            else:
                _check_glocal(value, f"{path}[{i}]")


def _check_keys(node: Mapping, allowed, path: str, what: str) -> None:
    for key in node:
        if key not in allowed:
            raise ConfigError(f"{path}: {what} has no key {key!r}; {close_names(key, allowed)}")


def _check_mm(node: Any, path: str, registry, default_type: str | None = None, extra=(), skip=()) -> None:
    """An mmengine component dict: its type is in ``registry`` and its keys are arguments."""
    if node is None or isinstance(node, Hook) or not isinstance(node, Mapping):
        return
    kind = node.get("type", default_type)
    if kind is None:
        raise ConfigError(f"{path}: needs a 'type' ({registry.name}); got keys {sorted(node)}")
    if isinstance(kind, str):
        factory = registry.get(kind)
        if factory is None:
            raise ConfigError(f"{path}: unknown {registry.name} type={kind!r}; "
                              f"{close_names(kind, registry.module_dict)}")
    else:
        factory = kind
    accepted = _accepted_args(factory)
    if factory is CheckpointHook:  # its **kwargs go to Runner.save_checkpoint
        accepted = (accepted or set()) | set(inspect.signature(Runner.save_checkpoint).parameters)
    if accepted is not None:
        allowed = (accepted - set(skip)) | {"type", "_scope_", *extra}
        _check_keys(node, allowed, path, getattr(factory, "__name__", str(kind)))


def _as_list(x) -> list:
    return [] if x is None else list(x) if isinstance(x, (list, tuple)) else [x]


def validate_config(cfg: Config) -> None:
    """Check every ``type=`` and the keys of the engine's sections before anything is built."""
    if not isinstance(cfg.get("model"), Mapping):
        raise ConfigError("the config has no 'model' dict")
    _check_glocal(cfg.model, "model", MODELS)
    for split in ("train", "val", "test"):
        loader = cfg.get(f"{split}_dataloader")
        if loader is None:
            continue
        path = f"{split}_dataloader"
        _check_keys(loader, DATALOADER_KEYS, path, "a data loader")
        if not isinstance(loader.get("dataset"), Mapping):
            raise ConfigError(f"{path}.dataset: needs a dataset config dict(type=..., ...)")
        _check_glocal(loader.dataset, f"{path}.dataset", DATASETS)
        sampler = loader.get("sampler") or {}
        _check_keys(sampler, SAMPLER_KEYS, f"{path}.sampler", "the sampler (SeededSampler)")
        if sampler.get("type", "DefaultSampler") not in ("DefaultSampler", "SeededSampler"):
            raise ConfigError(f"{path}.sampler: type={sampler['type']!r} is not supported; glocal samples "
                              f"(index, seed) keys with SeededSampler (type='DefaultSampler' or 'SeededSampler')")
    for name in ("val_evaluator", "test_evaluator"):
        for i, metric in enumerate(_as_list(cfg.get(name))):
            _check_glocal(metric, f"{name}[{i}]" if isinstance(cfg[name], (list, tuple)) else name, METRICS)
    optim = cfg.get("optim_wrapper")
    if optim is not None:
        _check_mm(optim, "optim_wrapper", OPTIM_WRAPPERS, "OptimWrapper",
                  extra=("optimizer", "paramwise_cfg", "constructor"))
        if isinstance(optim.get("constructor"), str) and OPTIM_WRAPPER_CONSTRUCTORS.get(optim.constructor) is None:
            raise ConfigError(f"optim_wrapper.constructor: unknown {optim.constructor!r}; "
                              f"{close_names(optim.constructor, OPTIM_WRAPPER_CONSTRUCTORS.module_dict)}")
        if not isinstance(optim.get("optimizer"), Mapping):
            raise ConfigError("optim_wrapper: needs optimizer=dict(type=..., lr=...)")
        _check_mm(optim.optimizer, "optim_wrapper.optimizer", OPTIMIZERS, skip=("params",))
    scheds = cfg.get("param_scheduler")
    for i, sched in enumerate(_as_list(scheds)):
        _check_mm(sched, f"param_scheduler[{i}]", PARAM_SCHEDULERS, extra=("convert_to_iter_based",),
                  skip=("optimizer",))
    for name, hook in (cfg.get("default_hooks") or {}).items():
        _check_mm(hook, f"default_hooks.{name}", HOOKS, extra=("priority",))
    for i, hook in enumerate(_as_list(cfg.get("custom_hooks"))):
        _check_mm(hook, f"custom_hooks[{i}]", HOOKS, extra=("priority",))
    vis = cfg.get("visualizer")
    if vis is not None:
        _check_mm(vis, "visualizer", VISUALIZERS, "Visualizer")
        for i, backend in enumerate(_as_list(vis.get("vis_backends"))):
            _check_mm(backend, f"visualizer.vis_backends[{i}]", VISBACKENDS)
    if cfg.get("log_processor") is not None:
        _check_mm(cfg.log_processor, "log_processor", LOG_PROCESSORS, "LogProcessor")
    if cfg.get("model_wrapper_cfg") is not None:
        _check_mm(cfg.model_wrapper_cfg, "model_wrapper_cfg", MODEL_WRAPPERS, "MMDistributedDataParallel",
                  skip=("module",))
    train_cfg = cfg.get("train_cfg")
    if train_cfg is not None:
        by_epoch = _loop_by_epoch(train_cfg)
        loop = "EpochBasedTrainLoop" if by_epoch else "IterBasedTrainLoop"
        # an iteration loop ignores a max_epochs left over from switching with by_epoch=False
        _check_mm(train_cfg, "train_cfg", LOOPS, loop, extra=("by_epoch",) + (() if by_epoch else ("max_epochs",)),
                  skip=("runner", "dataloader"))
    for name, loop in (("val_cfg", "ValLoop"), ("test_cfg", "TestLoop")):
        if cfg.get(name) is not None:
            _check_mm(cfg[name], name, LOOPS, loop, skip=("runner", "dataloader", "evaluator"))
    for split in ("val", "test"):
        parts = [cfg.get(f"{split}_dataloader"), cfg.get(f"{split}_cfg"), cfg.get(f"{split}_evaluator")]
        if any(p is not None for p in parts) and any(p is None for p in parts):
            raise ConfigError(f"{split}_dataloader, {split}_cfg and {split}_evaluator go together: set all "
                              f"three or none")


def _options_candidates(node: Mapping, path: list[str]) -> set[str]:
    names = set(node)
    kind = node.get("type")
    if isinstance(kind, str):
        factory = _glocal_factory(kind)
        if factory is None:
            for reg in (OPTIMIZERS, OPTIM_WRAPPERS, PARAM_SCHEDULERS, HOOKS, VISUALIZERS, VISBACKENDS,
                        LOG_PROCESSORS, LOOPS, MODEL_WRAPPERS):
                factory = reg.get(kind)
                if factory is not None:
                    break
        names |= (_accepted_args(factory) or set()) if factory is not None else set()
    elif not path:
        names |= set(RUNNER_KEYS)
    elif path == ["train_cfg"]:  # either loop's arguments: by_epoch=False max_iters=N switches loops
        names |= (_accepted_args(_MMEpochBasedTrainLoop) | _accepted_args(_MMIterBasedTrainLoop)) | {"by_epoch"}
    elif path == ["optim_wrapper"]:
        names |= (_accepted_args(OptimWrapper) or set()) | {"paramwise_cfg", "constructor"}
    return names - {"self", "runner", "dataloader", "evaluator", "module", "params"}


def apply_cfg_options(cfg: Config, options: Mapping[str, Any] | None) -> Config:
    """``--cfg-options``: every dotted key must exist in the config, or be an argument the
    component at that place accepts (``model.backbone.drop_path_rate`` when the backbone takes it);
    otherwise a ConfigError names the key and the closest ones."""
    if not options:
        return cfg
    for key in options:
        parts = key.split(".")
        node: Any = cfg._cfg_dict  # the Config's ConfigDict
        for i, part in enumerate(parts):
            here = ".".join(parts[:i]) or "the top level"
            if isinstance(node, (list, tuple)):
                if not part.isdigit() or int(part) >= len(node):
                    raise ConfigError(f"--cfg-options {key}: {here} is a list of {len(node)}; "
                                      f"{part!r} is not an index in it")
                node = node[int(part)]
                continue
            if not isinstance(node, Mapping):
                raise ConfigError(f"--cfg-options {key}: {here} is a {type(node).__name__}, not a dict; "
                                  f"it has no key {part!r}")
            if part in node:
                node = node[part]
                continue
            candidates = _options_candidates(node, parts[:i])
            if part in candidates and (i == len(parts) - 1 or i == 0):
                break  # a valid argument the config leaves at its default
            raise ConfigError(f"--cfg-options {key}: the config has no key {part!r} under {here}; "
                              f"{close_names(part, candidates)}")
    cfg.merge_from_dict(dict(options))
    return cfg


# ================================================================================================
# data: (index, seed) keys
# ================================================================================================
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


def _worker_init(worker_id: int, base: int) -> None:
    """Seed the global RNGs of a data loader worker (glocal's own pipeline does not use them)."""
    seed = (base + worker_id) % 2**32
    np.random.seed(seed)
    torch.manual_seed(seed)
    random.seed(seed)


def build_dataloader(loader_cfg: Mapping, seed: int, train: bool) -> DataLoader:
    """A DataLoader over a dataset built from glocal's ``DATASETS``, with a :class:`SeededSampler`,
    the dataset's own ``collate`` and a private ``torch.Generator``."""
    cfg = dict(loader_cfg)
    dataset = DATASETS.build(cfg.pop("dataset"))
    sampler_cfg = dict(cfg.pop("sampler", None) or {})
    sampler_cfg.pop("type", None)
    sampler_cfg.setdefault("shuffle", train)
    sampler_cfg.setdefault("seed", seed)
    sampler = SeededSampler(dataset, **sampler_cfg)
    rank, _ = get_dist_info()
    workers = int(cfg.get("num_workers", 0))
    cfg.setdefault("batch_size", 1)
    if workers == 0:
        cfg.pop("persistent_workers", None)
        cfg.pop("prefetch_factor", None)
    collate = getattr(dataset, "collate", None)
    if collate is None:
        raise ConfigError(f"dataset {type(dataset).__name__} has no collate(samples) method; glocal datasets "
                          f"derive from glocal.modalities.dataset.GlocalDataset")
    return DataLoader(dataset, sampler=sampler, collate_fn=collate,
                      generator=torch.Generator().manual_seed(int(seed) % 2**63),
                      worker_init_fn=functools.partial(_worker_init, base=int(seed) + rank * max(workers, 1)),
                      **cfg)


# ================================================================================================
# loops, AMP on CPU, hooks
# ================================================================================================
def _position(loader: DataLoader, batches: int) -> bool:
    """Make the next iteration of ``loader`` start ``batches`` batches into its epoch."""
    sampler = getattr(loader, "sampler", None)
    if batches <= 0 or not hasattr(sampler, "skip_next") or loader.batch_size is None:
        return False
    sampler.skip_next(batches * loader.batch_size)
    return True


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
        if hasattr(self.loader.sampler, "set_epoch"):
            self.loader.sampler.set_epoch(epoch)

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


class AmpOptimWrapper(_MMAmpOptimWrapper):
    """mmengine's ``AmpOptimWrapper``, which also runs on CPU: bfloat16 autocast, no loss scaling
    (bfloat16 has float32's range). With CUDA it is mmengine's wrapper unchanged."""

    def __init__(self, loss_scale="dynamic", dtype=None, use_fsdp: bool = False, **kwargs):
        if torch.cuda.is_available():
            super().__init__(loss_scale=loss_scale, dtype=dtype, use_fsdp=use_fsdp, **kwargs)
            return
        if dtype not in (None, "bfloat16", torch.bfloat16):
            raise ConfigError(f"AmpOptimWrapper on CPU supports dtype='bfloat16' only; got {dtype!r}")
        OptimWrapper.__init__(self, **kwargs)
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


# ================================================================================================
# build_runner
# ================================================================================================
def build_model(cfg: Config):
    model_cfg = dict(cfg.model)
    if cfg.get("data_preprocessor") is not None:
        model_cfg.setdefault("data_preprocessor", cfg.data_preprocessor)
    return MODELS.build(model_cfg)


def _resolve_backend(backend) -> str:
    cuda = torch.cuda.is_available()
    if backend in (None, "auto"):
        return "nccl" if cuda else "gloo"
    if backend == "nccl" and not cuda:
        print_log("dist_cfg.backend='nccl' needs CUDA; using gloo", logger="current")
        return "gloo"
    return backend


def _init_distributed(cfg: Config) -> None:
    """Initialise torch.distributed for ``launcher='pytorch'`` (torchrun's environment)."""
    dist_cfg = dict(cfg.env_cfg.dist_cfg)
    backend = dist_cfg.pop("backend")
    if dist.is_available() and dist.is_initialized():
        return
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise ConfigError("--launcher pytorch needs torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK): "
                          "start with `python -m torch.distributed.run --nproc_per_node=N tools/train.py ...`")
    if "timeout" in dist_cfg:
        dist_cfg["timeout"] = datetime.timedelta(seconds=dist_cfg["timeout"])
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend=backend, **dist_cfg)


def _checkpoint_seed(cfg: Config) -> int | None:
    """The seed a resumed run used (so that a config without a fixed seed resumes with it)."""
    path = cfg.get("load_from") or find_latest_checkpoint(cfg.work_dir)
    if not path or not Path(path).is_file():
        return None
    meta = torch.load(path, map_location="cpu").get("meta", {})
    return decode_state(meta).get("seed")


def _fill_scheduler_ends(cfg: Config, iters_per_epoch: int | None) -> None:
    """Give each scheduler without ``end`` the loop's length: in epochs for by-epoch schedulers of
    an epoch loop, in iterations otherwise. Written into the config, so the dumped config and a
    resumed run (whose schedulers keep their shape from the config) agree."""
    train_cfg = cfg.get("train_cfg") or {}
    by_epoch_loop = _loop_by_epoch(train_cfg) and "max_epochs" in train_cfg
    scheds = cfg.get("param_scheduler")
    if scheds is None:
        return
    for sched in _as_list(scheds):
        if not isinstance(sched, Mapping) or "end" in sched:
            continue
        by_epoch = sched.get("by_epoch", True)
        if by_epoch_loop and by_epoch:
            sched["end"] = int(train_cfg["max_epochs"])
        elif by_epoch_loop and iters_per_epoch is not None:
            sched["end"] = int(train_cfg["max_epochs"]) * iters_per_epoch
        elif not by_epoch_loop and not by_epoch and "max_iters" in train_cfg:
            sched["end"] = int(train_cfg["max_iters"])


def resolve_config(cfg: Config, iters_per_epoch: int | None = None) -> Config:
    """Fill in what the engine decides at run time, in the config itself (so the dumped config
    says what ran): the launcher, the work dir, the dist backend, the seed, each scheduler's
    missing ``end``, and ``by_epoch`` of the checkpoint hook and log processor from the loop."""
    launcher = cfg.get("launcher", "none") or "none"
    if launcher not in ("none", "pytorch"):
        raise ConfigError(f"launcher must be 'none' or 'pytorch'; got {launcher!r}")
    cfg.launcher = launcher
    if not cfg.get("work_dir"):
        stem = Path(cfg.filename).stem if cfg.filename else "glocal"
        cfg.work_dir = str(Path("work_dirs") / stem)
    env_cfg = dict(cfg.get("env_cfg") or {})
    dist_cfg = dict(env_cfg.get("dist_cfg") or {})
    dist_cfg["backend"] = _resolve_backend(dist_cfg.get("backend"))
    cfg.env_cfg = {**env_cfg, "dist_cfg": dist_cfg}
    train_cfg = cfg.get("train_cfg")
    if train_cfg is not None:
        by_epoch = _loop_by_epoch(train_cfg)
        _fill_scheduler_ends(cfg, iters_per_epoch)
        hooks = cfg.get("default_hooks") or {}
        if isinstance(hooks.get("checkpoint"), Mapping):
            hooks.checkpoint.setdefault("by_epoch", by_epoch)
        cfg.log_processor = {**(cfg.get("log_processor") or {})}
        cfg.log_processor.setdefault("by_epoch", by_epoch)
    if launcher == "pytorch" and not torch.cuda.is_available() and cfg.get("model_wrapper_cfg") is None:
        # mmengine passes device_ids=[LOCAL_RANK] by default, which DDP rejects for CPU modules
        cfg.model_wrapper_cfg = dict(type="MMDistributedDataParallel", device_ids=None, broadcast_buffers=False,
                                     find_unused_parameters=cfg.get("find_unused_parameters", False))
    return cfg


def _loop_by_epoch(train_cfg: Mapping) -> bool:
    """``by_epoch`` when given, else an iteration loop exactly when ``max_iters`` is set."""
    return bool(train_cfg.get("by_epoch", "max_iters" not in train_cfg))


def build_runner(cfg: str | os.PathLike | Mapping | Config, for_test: bool = False) -> Runner:
    """Validate ``cfg``, build the model, data and metrics through glocal's registries, and return
    an mmengine ``Runner`` ready to ``train()`` / ``test()``.

    Keys read beyond the Runner's own: ``launcher`` ('none' | 'pytorch'), ``work_dir`` (default
    ``work_dirs/<config stem>``), ``resume`` / ``load_from``, ``experiment_name``.
    ``for_test=True`` builds only what ``runner.test()`` needs (the dumped config stays whole).
    """
    cfg = load_config(cfg)
    validate_config(cfg)
    if for_test:
        for key in ("test_dataloader", "test_cfg", "test_evaluator"):
            if cfg.get(key) is None:
                raise ConfigError(f"testing needs test_dataloader, test_cfg and test_evaluator; the config "
                                  f"has no {key}")
    resolve_config(cfg)
    if cfg.launcher == "pytorch":
        _init_distributed(cfg)

    # one seed for the model init, the samplers and the Runner (which re-seeds with it)
    randomness = dict(cfg.get("randomness") or {})
    if randomness.get("seed") is None:
        randomness["seed"] = (_checkpoint_seed(cfg) if cfg.get("resume") else None) or sync_random_seed()
    cfg.randomness = randomness
    seed = int(randomness["seed"])
    set_random_seed(seed, deterministic=randomness.get("deterministic", False),
                    diff_rank_seed=randomness.get("diff_rank_seed", False))

    model = build_model(cfg)
    splits = ("test",) if for_test else ("train", "val", "test")
    loaders = {split: build_dataloader(cfg[f"{split}_dataloader"], seed, train=split == "train")
               for split in splits if cfg.get(f"{split}_dataloader") is not None}
    evaluators = {split: Evaluator([METRICS.build(m) for m in _as_list(cfg[f"{split}_evaluator"])])
                  for split in splits if split != "train" and cfg.get(f"{split}_evaluator") is not None}
    if "train" in loaders:
        _fill_scheduler_ends(cfg, len(loaders["train"]))  # by-iteration schedulers of an epoch loop

    # what the Runner gets: built objects, and glocal's classes where mmengine's need replacing
    train_cfg = None if for_test else cfg.get("train_cfg")
    loop_cfg = None
    if train_cfg is not None:
        loop_cfg = {k: v for k, v in train_cfg.items() if k != "by_epoch"}
        if "type" not in loop_cfg or loop_cfg["type"] in ("EpochBasedTrainLoop", "IterBasedTrainLoop"):
            loop_cfg["type"] = EpochBasedTrainLoop if _loop_by_epoch(train_cfg) else IterBasedTrainLoop
            if loop_cfg["type"] is IterBasedTrainLoop:
                loop_cfg.pop("max_epochs", None)
    optim_wrapper = None if for_test else copy.deepcopy(cfg.get("optim_wrapper"))
    if isinstance(optim_wrapper, Mapping) and optim_wrapper.get("type") == "AmpOptimWrapper":
        optim_wrapper = {**optim_wrapper, "type": AmpOptimWrapper}
    custom_hooks = list(copy.deepcopy(cfg.get("custom_hooks") or [])) + [SafeCheckpointHook(),
                                                                         ParameterDigestHook()]
    return Runner(
        model=model,
        work_dir=cfg.work_dir,
        train_dataloader=loaders.get("train"),
        val_dataloader=loaders.get("val"),
        test_dataloader=loaders.get("test"),
        train_cfg=loop_cfg,
        val_cfg=None if for_test else copy.deepcopy(cfg.get("val_cfg")),
        test_cfg=copy.deepcopy(cfg.get("test_cfg")),
        auto_scale_lr=copy.deepcopy(cfg.get("auto_scale_lr")),
        optim_wrapper=optim_wrapper,
        param_scheduler=None if for_test else copy.deepcopy(cfg.get("param_scheduler")),
        val_evaluator=evaluators.get("val"),
        test_evaluator=evaluators.get("test"),
        default_hooks=copy.deepcopy(cfg.get("default_hooks")),
        custom_hooks=custom_hooks,
        load_from=None if for_test else cfg.get("load_from"),
        resume=False if for_test else bool(cfg.get("resume", False)),
        launcher=cfg.launcher,
        env_cfg=copy.deepcopy(cfg.env_cfg),
        log_processor=copy.deepcopy(cfg.get("log_processor")),
        log_level=cfg.get("log_level", "INFO"),
        visualizer=copy.deepcopy(cfg.get("visualizer")),
        default_scope=cfg.get("default_scope", "mmengine"),
        randomness=dict(randomness),
        experiment_name=cfg.get("experiment_name"),
        cfg=cfg,
    )


def prepare_config(config, cfg_options: Mapping | None = None, work_dir: str | None = None,
                   launcher: str = "none") -> Config:
    """What every tool does first: load, apply ``--cfg-options`` (checked), set the launcher and
    the work dir (``--work-dir``, else the config's, else ``work_dirs/<config stem>``)."""
    cfg = apply_cfg_options(load_config(config), cfg_options)
    cfg.launcher = launcher
    if work_dir:
        cfg.work_dir = str(work_dir)
    elif not cfg.get("work_dir"):
        cfg.work_dir = str(Path("work_dirs") / Path(str(config)).stem)
    return cfg


def run_tool(main) -> None:
    """Run a tool's ``main()``; glocal's own errors print as ``error: <message>`` (exit code 2)
    instead of a traceback. A process group the run created is destroyed before exit: left to the
    interpreter's teardown, gloo's threads can outlive it and abort the process after a good run."""
    try:
        code = main()
    except GlocalError as e:
        print(f"error: {e}", file=sys.stderr)
        code = 2
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    sys.exit(code or 0)

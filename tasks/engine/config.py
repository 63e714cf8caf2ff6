"""Config loading, validation, ``--cfg-options`` and run-time resolution.

:func:`validate_config` checks the config before anything is built: every ``type=`` resolves
(glocal's registries for the model, datasets, transforms and metrics; mmengine's for optimizers,
schedulers, hooks, visualizers and loops), unknown names and keys raise
:class:`~glocal.core.errors.ConfigError` with the closest names. :func:`resolve_config` fills in
what the engine decides at run time (launcher, work dir, dist backend, each scheduler's missing
``end`` from the loop length, ``by_epoch`` of the checkpoint hook and log processor, the
visualizer's backends), in the config itself, so the config the Runner dumps says what ran.
"""
from __future__ import annotations

import copy
import difflib
import inspect
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from mmengine.config import Config
from mmengine.hooks import CheckpointHook, Hook
from mmengine.logging import print_log
from mmengine.optim import OptimWrapper
from mmengine.registry import (HOOKS, LOG_PROCESSORS, LOOPS, MODEL_WRAPPERS, OPTIM_WRAPPER_CONSTRUCTORS,
                               OPTIM_WRAPPERS, OPTIMIZERS, PARAM_SCHEDULERS, VISBACKENDS, VISUALIZERS)
from mmengine.runner import Runner
from mmengine.runner.loops import EpochBasedTrainLoop as _MMEpochBasedTrainLoop
from mmengine.runner.loops import IterBasedTrainLoop as _MMIterBasedTrainLoop

from glocal.core.errors import ConfigError, close_names
from glocal.core.registry import accepted_args
from glocal.modalities.registry import COLLATES, DATASETS, TRANSFORMS
from glocal.tasks.registry import ALL_REGISTRIES, METRICS, MODELS, load_catalogs

from .console import tensorboard_available
from .pictures import ResultPictures

__all__ = ["load_config", "validate_config", "apply_cfg_options", "resolve_config"]

# Runner keyword arguments a config may set at its top level (beyond what it already holds).
RUNNER_KEYS = tuple(n for n in inspect.signature(Runner.__init__).parameters if n not in ("self", "cfg")) + (
    "model_wrapper_cfg", "find_unused_parameters", "sync_bn", "compile", "activation_checkpointing",
    "efficient_conv_bn_eval")
DATALOADER_KEYS = ("dataset", "sampler", "batch_size", "num_workers", "persistent_workers", "pin_memory",
                   "drop_last", "prefetch_factor", "timeout", "collate_fn")
SAMPLER_KEYS = ("type", "shuffle", "round_up", "seed")
# the keys each sampler type takes: (index, seed) keys one by one, or whole batches of them
SAMPLERS = {"DefaultSampler": SAMPLER_KEYS, "SeededSampler": SAMPLER_KEYS,
            "BucketBatchSampler": ("type", "shuffle", "seed", "bucket_size", "drop_last")}


def load_config(cfg: str | os.PathLike | Mapping | Config) -> Config:
    """A ``Config`` from a path, a dict or a Config (copied)."""
    if isinstance(cfg, Config):
        return copy.deepcopy(cfg)
    if isinstance(cfg, Mapping):
        return Config(copy.deepcopy(dict(cfg)))
    path = Path(cfg)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        source = path.read_text()
        compile(source, str(path), "exec")
    except SyntaxError as e:
        text = (e.text or "").rstrip("\n")
        raise ConfigError(f"{path}, line {e.lineno}: syntax error: {e.msg}" + (f"\n    {text}" if text else "")) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {path} cannot be read: {e}") from None
    try:
        return Config.fromfile(str(path))
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - a config is a Python file: anything can fail while running it
        raise ConfigError(f"config file {path} failed while running: {type(e).__name__}: {e}") from e


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
            factory = registry.get(kind) if registry is not None else _glocal_factory(kind)
            if callable(factory):
                _check_arg_values(node, factory, path)
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
    _check_arg_values(node, factory, path)


def _as_list(x) -> list:
    return [] if x is None else list(x) if isinstance(x, (list, tuple)) else [x]


def _check_sampler(sampler: Mapping, path: str) -> None:
    """A data loader's ``sampler``: one of glocal's key samplers, with that sampler's keys."""
    kind = sampler.get("type", "DefaultSampler")
    if kind not in SAMPLERS:
        raise ConfigError(f"{path}: type={kind!r} is not supported; glocal samples (index, seed) keys with "
                          f"SeededSampler (type='DefaultSampler' or 'SeededSampler') or batches of them with "
                          f"type='BucketBatchSampler'; {close_names(str(kind), SAMPLERS)}")
    name = "BucketBatchSampler" if kind == "BucketBatchSampler" else "SeededSampler"
    _check_keys(sampler, SAMPLERS[kind], path, f"the sampler ({name})")


# What the engine reads at the top level of a config besides the Runner's own arguments.
ENGINE_KEYS = ("data_preprocessor", "launcher", "cpu_procs", "work_dir", "resume", "load_from", "randomness", "env_cfg",
               "log_level", "default_scope", "experiment_name", "test_pictures", "_base_")
# top-level keys --cfg-options may set though the config leaves them out
OPTION_KEYS = RUNNER_KEYS + ("test_pictures",)
# (section, kind): the top-level sections that must be dicts (or lists of dicts)
SECTIONS = {"model": Mapping, "train_dataloader": Mapping, "val_dataloader": Mapping, "test_dataloader": Mapping,
            "train_cfg": Mapping, "val_cfg": Mapping, "test_cfg": Mapping, "optim_wrapper": Mapping,
            "default_hooks": Mapping, "env_cfg": Mapping, "randomness": Mapping, "visualizer": Mapping,
            "log_processor": Mapping, "param_scheduler": (Mapping, list, tuple), "custom_hooks": (list, tuple),
            "val_evaluator": (Mapping, list, tuple), "test_evaluator": (Mapping, list, tuple)}
# data loader values: (kind, lowest allowed)
LOADER_VALUES = {"batch_size": (int, 1), "num_workers": (int, 0), "prefetch_factor": (int, 1),
                 "timeout": ((int, float), 0), "drop_last": (bool, None), "pin_memory": (bool, None),
                 "persistent_workers": (bool, None)}


def _check_top_level(cfg: Config) -> None:
    """A top-level name that is not one the engine reads but is spelt like one is a typo (helper
    variables such as ``num_classes = 10`` are fine); the engine's sections have the right kind."""
    known = set(RUNNER_KEYS) | set(ENGINE_KEYS)
    for key in cfg.keys():
        if key in known or key.startswith("_"):
            continue
        hits = difflib.get_close_matches(key, known, n=3, cutoff=0.8)
        if hits:
            raise ConfigError(f"{cfg.filename or 'the config'}: top-level key {key!r} is not read by glocal; did you "
                              f"mean: {', '.join(hits)}? (a helper variable of the file must not look like one of "
                              f"the engine's keys; start its name with '_')")
    for key, kind in SECTIONS.items():
        value = cfg.get(key)
        if value is not None and not isinstance(value, kind):
            raise ConfigError(f"{key}: expected a dict(...){' or a list of them' if kind is not Mapping else ''}; "
                              f"got {type(value).__name__} {value!r}")


def _check_pictures(value: Any) -> None:
    """``test_pictures``: None / False (off), True, or a dict of :class:`~.pictures.ResultPictures`'
    arguments."""
    if value is None or isinstance(value, bool):
        return
    if not isinstance(value, Mapping):
        raise ConfigError(f"test_pictures: expected dict(num_examples=..., ...), or None to turn the test "
                          f"pictures off; got {type(value).__name__} {value!r}")
    _check_keys(value, _accepted_args(ResultPictures), "test_pictures", "ResultPictures")
    _check_arg_values(value, ResultPictures, "test_pictures")


def _expects(param: inspect.Parameter) -> type | None:
    """``int`` or ``float`` when a parameter takes a number and never a string, from its default
    or annotation; None when it cannot tell."""
    default, ann = param.default, param.annotation
    ann = ann if isinstance(ann, str) else getattr(ann, "__name__", str(ann))
    if isinstance(default, bool) or "bool" in ann:
        return None
    if "str" in ann or isinstance(default, str):
        return None
    if isinstance(default, int) or re.fullmatch(r"(Optional\[)?int\]?( \| None)?", ann):
        return int
    if isinstance(default, float) or re.search(r"\bfloat\b", ann):
        return float
    return None


def _check_value(value: Any, kind: type | tuple, path: str, lowest=None) -> None:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
    if float in kinds and isinstance(value, int) and not isinstance(value, bool):
        ok = True
    if int in kinds and isinstance(value, float) and value.is_integer():
        ok = True
    if not ok:
        want = " or ".join({int: "an integer", float: "a number", bool: "True or False"}.get(k, k.__name__)
                           for k in kinds)
        raise ConfigError(f"{path}: expected {want}; got {type(value).__name__} {value!r}")
    if lowest is not None and value < lowest:
        raise ConfigError(f"{path}: must be at least {lowest}; got {value!r}")


def _check_arg_values(node: Mapping, factory, path: str) -> None:
    """Numbers where the component's signature takes numbers (``lr='abc'`` fails here, not in torch)."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return
    for key, value in node.items():
        if key in params and value is not None and not isinstance(value, (Mapping, list, tuple)):
            kind = _expects(params[key])
            if kind is not None:
                _check_value(value, float if kind is float else int, f"{path}.{key}")


def validate_config(cfg: Config) -> None:
    """Check the whole config before anything is built: the top-level names, every ``type=``,
    the keys of each section and component, and the kinds of their values."""
    _check_top_level(cfg)
    _check_pictures(cfg.get("test_pictures", {}))
    if not isinstance(cfg.get("model"), Mapping):
        raise ConfigError("the config has no 'model' dict")
    _check_glocal(cfg.model, "model", MODELS)
    for split in ("train", "val", "test"):
        loader = cfg.get(f"{split}_dataloader")
        if loader is None:
            continue
        path = f"{split}_dataloader"
        _check_keys(loader, DATALOADER_KEYS, path, "a data loader")
        for key, (kind, lowest) in LOADER_VALUES.items():
            if loader.get(key) is not None:
                _check_value(loader[key], kind, f"{path}.{key}", lowest)
        if not isinstance(loader.get("dataset"), Mapping):
            raise ConfigError(f"{path}.dataset: needs a dataset config dict(type=..., ...)")
        _check_glocal(loader.dataset, f"{path}.dataset", DATASETS)
        if loader.get("collate_fn") is not None:
            _check_glocal(loader.collate_fn, f"{path}.collate_fn", COLLATES)
        _check_sampler(loader.get("sampler") or {}, f"{path}.sampler")
    auto_scale_lr = cfg.get("auto_scale_lr") or {}
    train_sampler = (cfg.get("train_dataloader") or {}).get("sampler") or {}
    if auto_scale_lr.get("enable", False) and train_sampler.get("type") == "BucketBatchSampler":
        raise ConfigError("auto_scale_lr: mmengine reads the batch size from the train DataLoader, which has "
                          "none with a BucketBatchSampler (it makes the batches); scale optim_wrapper's lr in the "
                          "config instead")
    for name in ("val_evaluator", "test_evaluator"):
        for i, metric in enumerate(_as_list(cfg.get(name))):
            _check_glocal(metric, f"{name}[{i}]" if isinstance(cfg[name], (list, tuple)) else name, METRICS)
    optim = cfg.get("optim_wrapper")
    if optim is not None:
        _check_mm(optim, "optim_wrapper", OPTIM_WRAPPERS, "OptimWrapper",
                  extra=("optimizer", "paramwise_cfg", "constructor", "nonfinite", "max_skips"))
        if optim.get("nonfinite", "stop") not in ("stop", "skip"):
            raise ConfigError(f"optim_wrapper.nonfinite={optim.nonfinite!r}: use 'stop' or 'skip'")
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
    if len(path) == 2 and path[0].endswith("_dataloader") and path[1] == "sampler":
        # every sampler's keys: the same options may switch the type (validate_config checks the pair)
        names |= {key for keys in SAMPLERS.values() for key in keys}
    elif isinstance(kind, str):
        factory = _glocal_factory(kind)
        if factory is None:
            for reg in (OPTIMIZERS, OPTIM_WRAPPERS, PARAM_SCHEDULERS, HOOKS, VISUALIZERS, VISBACKENDS,
                        LOG_PROCESSORS, LOOPS, MODEL_WRAPPERS):
                factory = reg.get(kind)
                if factory is not None:
                    break
        names |= (_accepted_args(factory) or set()) if factory is not None else set()
    elif not path:
        names |= set(OPTION_KEYS)
    elif len(path) == 1 and path[0].endswith("_dataloader"):  # what a loader takes (validate_config's list)
        names |= set(DATALOADER_KEYS)
    elif path == ["train_cfg"]:  # either loop's arguments: by_epoch=False max_iters=N switches loops
        names |= (_accepted_args(_MMEpochBasedTrainLoop) | _accepted_args(_MMIterBasedTrainLoop)) | {"by_epoch"}
    elif path == ["optim_wrapper"]:
        names |= (_accepted_args(OptimWrapper) or set()) | {"paramwise_cfg", "constructor", "nonfinite", "max_skips"}
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


def _resolve_backend(backend) -> str:
    cuda = torch.cuda.is_available()
    if backend in (None, "auto"):
        return "nccl" if cuda else "gloo"
    if backend == "nccl" and not cuda:
        print_log("dist_cfg.backend='nccl' needs CUDA; using gloo", logger="current")
        return "gloo"
    return backend


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


def _resolve_visualizer(cfg: Config) -> None:
    """Every run writes the scalars JSON (``LocalVisBackend``, which ``tools/results.py`` and
    ``tools/plot_logs.py`` read) and TensorBoard events (``TensorboardVisBackend``): a visualizer
    that lists other backends gets these two added, a config without one gets mmengine's
    ``Visualizer`` with both. ``visualizer=None`` turns TensorBoard off (mmengine then writes the
    scalars JSON only). Without tensorboard installed no events are written (the banner says so)."""
    if "visualizer" in cfg and cfg.visualizer is None:
        return
    vis = {"type": "Visualizer", **(cfg.get("visualizer") or {})}
    backends = list(vis.get("vis_backends") or [])
    kinds = [b.get("type") if isinstance(b, Mapping) else type(b).__name__ for b in backends]
    if "LocalVisBackend" not in kinds:
        backends.insert(0, dict(type="LocalVisBackend"))
    if not tensorboard_available():
        backends = [b for b in backends if not (isinstance(b, Mapping) and b.get("type") == "TensorboardVisBackend")]
    elif "TensorboardVisBackend" not in kinds:
        backends.append(dict(type="TensorboardVisBackend"))
    vis["vis_backends"] = backends
    cfg.visualizer = vis


def resolve_config(cfg: Config, iters_per_epoch: int | None = None) -> Config:
    """Fill in what the engine decides at run time, in the config itself (so the dumped config
    says what ran): the launcher, the work dir, the dist backend, the seed, each scheduler's
    missing ``end``, ``by_epoch`` of the checkpoint hook and log processor from the loop, and
    the visualizer's backends (scalars JSON and TensorBoard, :func:`_resolve_visualizer`)."""
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
    _resolve_visualizer(cfg)
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

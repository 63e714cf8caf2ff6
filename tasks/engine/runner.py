"""``build_runner(cfg)``: an mmengine ``Runner`` from a flat glocal config.

It validates the config (:mod:`.config`), then builds the model, datasets, data loaders and
metrics itself (glocal's registries give the clear errors) and hands the built objects to
``Runner``, with glocal's train loops, ``AmpOptimWrapper`` on CPU, and
:class:`~glocal.tasks.checkpoint.SafeCheckpointHook` (checkpoints that load under
``weights_only=True``, RNG states saved and restored).

On CPU with ``launcher='pytorch'`` it initialises gloo itself and wraps the model in DDP without
``device_ids`` (mmengine would call ``torch.cuda.set_device`` and pass ``device_ids=[rank]``,
both of which fail without CUDA).
"""
from __future__ import annotations

import copy
import datetime
import os
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.distributed as dist
from mmengine.config import Config
from mmengine.dist import sync_random_seed
from mmengine.evaluator import Evaluator
from mmengine.runner import Runner, find_latest_checkpoint, set_random_seed

from glocal.core.errors import ConfigError
from glocal.tasks.registry import METRICS, MODELS

from ..checkpoint import SafeCheckpointHook, decode_state
from .config import _as_list, _fill_scheduler_ends, _loop_by_epoch, load_config, resolve_config, validate_config
from .data import build_dataloader
from .loops import AmpOptimWrapper, EpochBasedTrainLoop, IterBasedTrainLoop, ParameterDigestHook

__all__ = ["build_model", "build_runner"]


def build_model(cfg: Config):
    model_cfg = dict(cfg.model)
    if cfg.get("data_preprocessor") is not None:
        model_cfg.setdefault("data_preprocessor", cfg.data_preprocessor)
    return MODELS.build(model_cfg)


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

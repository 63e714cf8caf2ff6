"""``build_runner(cfg)``: an mmengine ``Runner`` from a flat glocal config.

It validates the config (:mod:`.config`), then builds the model, datasets, data loaders and
metrics itself (glocal's registries give the clear errors) and hands the built objects to
``Runner``, with glocal's train loops, ``AmpOptimWrapper`` on CPU, and
:class:`~glocal.tasks.checkpoint.SafeCheckpointHook` (checkpoints that load under
``weights_only=True``, RNG states saved and restored).

On CPU with ``launcher='pytorch'`` it initialises gloo itself and wraps the model in DDP without
``device_ids`` (mmengine would call ``torch.cuda.set_device`` and pass ``device_ids=[rank]``,
both of which fail without CUDA).

The console shows a banner, a progress display and warnings (:mod:`.console`); mmengine's
environment, config and hook-order dump and its periodic log lines go to the log file only.

A runner built for testing draws pictures of the results into ``<log_dir>/pictures/``
(:class:`~.pictures.ResultPictures`; the config's ``test_pictures``).
"""
from __future__ import annotations

import copy
import datetime
import math
import os
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.distributed as dist
from mmengine.config import Config
from mmengine.dist import get_rank, master_only, sync_random_seed
from mmengine.evaluator import Evaluator
from mmengine.hooks import CheckpointHook, Hook
from mmengine.runner import Runner, set_random_seed

from glocal.core.errors import ConfigError
from glocal.tasks.registry import METRICS, MODELS

from ..checkpoint import (PART, AtomicCheckpointHook, CheckpointError, SafeCheckpointHook, check_fits,
                          commit_checkpoint, decode_state, latest_checkpoint, load_weights, read_checkpoint,
                          strip_module_prefix)
from .config import _as_list, _fill_scheduler_ends, _loop_by_epoch, load_config, resolve_config, validate_config
from .console import BuildLog, ConsoleHandler, ConsoleHook, RunConsole, quiet_third_party
from .data import build_dataloader
from .loops import AmpOptimWrapper, EpochBasedTrainLoop, IterBasedTrainLoop, OptimWrapper, ParameterDigestHook
from .pictures import ResultPictures

__all__ = ["build_model", "build_runner", "GlocalRunner", "ReliabilityHook"]

# the optimizer hyper-parameters a resumed run takes from its config (the checkpoint has the old ones)
HYPER = ("lr", "weight_decay", "momentum", "betas", "eps", "alpha", "nesterov", "dampening")


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
    path = cfg.get("load_from") or latest_checkpoint(cfg.work_dir)
    if not path:
        return None
    ckpt = read_checkpoint(path)
    meta = ckpt.get("meta", {}) if isinstance(ckpt, Mapping) else {}
    return decode_state(meta).get("seed")


class GlocalRunner(Runner):
    """mmengine's ``Runner`` with glocal's file safety: every checkpoint is written to a ``.part``
    file and renamed when complete; every load (resume, ``load_from``) goes through
    :func:`~glocal.tasks.checkpoint.read_checkpoint` (``weights_only=True``, checksum, glocal's
    errors) and must fit the model exactly; auto-resume never picks a partial file and says when
    it starts fresh; a resumed run takes the optimizer hyper-parameters of its config.

    Its console (``progress``, ``verbose``: :class:`~.console.RunConsole`) replaces mmengine's
    stdout handler from the start, so the environment and config dump reach only the log file
    (unless verbose); ``train()``, ``val()`` and ``test()`` end a live progress bar however they end.
    """

    def __init__(self, *args, console: RunConsole | None = None, progress: str | None = None,
                 verbose: bool | None = None, **kwargs):
        self.console = console if console is not None else RunConsole(progress, verbose)
        self.resumed_from = self.loaded_from = self.weights_from = None  # for the banner
        super().__init__(*args, **kwargs)

    def build_logger(self, log_level="INFO", log_file=None, **kwargs):
        logger = super().build_logger(log_level=log_level, log_file=log_file, **kwargs)
        ConsoleHandler.attach(logger, self.console, rank=self.rank)  # setup_env has set the rank
        return logger

    def train(self):
        try:
            return super().train()
        finally:
            self.console.close()

    def val(self):
        try:
            return super().val()
        finally:
            self.console.close()

    def test(self):
        try:
            return super().test()
        finally:
            self.console.close()

    def load_weights(self, path: str | os.PathLike) -> None:
        """Load a weights file (``.pth`` checkpoint or ``.safetensors``) into the model for testing;
        the banner names it."""
        load_weights(getattr(self.model, "module", self.model), path)
        self.weights_from = str(path)
        self.logger.info(f"loaded weights from {path}")

    @master_only
    def save_checkpoint(self, out_dir: str, filename: str, *args, **kwargs) -> None:
        part = f"{filename}{PART}"
        super().save_checkpoint(out_dir, part, *args, **kwargs)
        commit_checkpoint(Path(out_dir) / part, Path(out_dir) / filename)

    def load_checkpoint(self, filename: str, map_location="cpu", strict: bool = False,
                        revise_keys=((r"^module\.", ""),)) -> dict:
        checkpoint = read_checkpoint(filename)
        if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), Mapping):
            raise CheckpointError(f"{filename} is not a training checkpoint (no state_dict); weights-only files "
                                  f"go to tools/test.py or load_weights()")
        self.call_hook("after_load_checkpoint", checkpoint=checkpoint)
        state = strip_module_prefix(checkpoint["state_dict"])
        model = getattr(self.model, "module", self.model)
        check_fits(model, state, filename)
        model.load_state_dict(state, strict=True)
        self._has_loaded = True
        self.loaded_from = str(filename)
        self.logger.info(f"loaded checkpoint {filename}")
        return checkpoint

    def load_or_resume(self) -> None:
        if self._has_loaded:
            return
        if self._resume and self._load_from is None:
            path = latest_checkpoint(self.work_dir)
            if path is None:
                self.logger.warning(f"--resume: no complete checkpoint in {self.work_dir}; starting a fresh run")
                return
            self.logger.info(f"resuming from {path}, the latest complete checkpoint in {self.work_dir}")
            self.resume(str(path))
        elif self._resume:
            self.resume(self._load_from)
        elif self._load_from is not None:
            self.load_checkpoint(self._load_from)
        self._has_loaded = True

    def resume(self, filename: str, resume_optimizer: bool = True, resume_param_scheduler: bool = True,
               map_location="default") -> None:
        wanted = self._config_hyper()
        super().resume(filename, resume_optimizer, resume_param_scheduler, map_location)
        self.resumed_from = str(filename)
        self._apply_config_hyper(wanted, filename)

    def _optimizers(self) -> dict:
        wrapper = self.optim_wrapper
        if hasattr(wrapper, "optim_wrappers"):  # OptimWrapperDict
            return {name: w.optimizer for name, w in wrapper.optim_wrappers.items()}
        return {"": wrapper.optimizer} if hasattr(wrapper, "optimizer") else {}

    def _config_hyper(self) -> dict:
        """Each optimizer's groups' hyper-parameters as the config builds them (before resume)."""
        return {name: [{k: g.get("initial_lr", g["lr"]) if k == "lr" else g[k] for k in HYPER if k in g}
                       for g in opt.param_groups] for name, opt in self._optimizers().items()}

    def _apply_config_hyper(self, wanted: dict, filename: str) -> None:
        """The checkpoint's optimizer state carries the old run's lr, weight decay, ...; a config that
        changed them wins, and says so. The lr keeps its place in the schedule: scaled by new/old."""
        for name, opt in self._optimizers().items():
            scheds = self.param_schedulers.get(name, []) if isinstance(self.param_schedulers, dict) else \
                (self.param_schedulers or [])
            for i, (group, want) in enumerate(zip(opt.param_groups, wanted.get(name, []))):
                for key, value in want.items():
                    old = group.get("initial_lr", group["lr"]) if key == "lr" else group.get(key)
                    if old == value or (isinstance(old, float) and math.isclose(old, value, rel_tol=1e-12)):
                        continue
                    where = f"optimizer{' ' + name if name else ''} group {i}"
                    if key == "lr":
                        ratio = value / old if old else 1.0
                        now = group["lr"]
                        group["lr"], group["initial_lr"] = now * ratio, value
                        for sched in scheds:
                            if getattr(sched, "param_name", None) == "lr":
                                sched.base_values[i] = value
                                sched._last_value = [v * ratio if j == i else v
                                                     for j, v in enumerate(sched._last_value)]
                        self.logger.warning(f"resume: {where} lr is {value:g} in the config and {old:g} in {filename}; "
                                            f"using the config's (current lr {now:.4g} -> {now * ratio:.4g})")
                    else:
                        group[key] = value
                        self.logger.warning(f"resume: {where} {key} is {value!r} in the config and {old!r} in "
                                            f"{filename}; using the config's")


class ReliabilityHook(Hook):
    """Gives the divergence guard the parameter names, and reports at the end what was skipped:
    optimizer steps with a NaN/inf loss (``optim_wrapper.nonfinite='skip'``) and samples that
    failed to load (a dataset's ``on_error='skip'``)."""

    priority = "LOWEST"

    def before_train(self, runner) -> None:
        wrappers = getattr(runner.optim_wrapper, "optim_wrappers", {"": runner.optim_wrapper})
        names = {id(p): n for n, p in getattr(runner.model, "module", runner.model).named_parameters()}
        for wrapper in wrappers.values():
            if hasattr(wrapper, "param_names"):
                wrapper.param_names = names

    def _report(self, runner, what: str) -> None:
        wrappers = getattr(runner.optim_wrapper, "optim_wrappers", {"": runner.optim_wrapper})
        steps = sum(getattr(w, "skipped_steps", 0) for w in wrappers.values()) if what == "training" else 0
        if steps:
            runner.logger.warning(f"{what}: {steps} optimizer step(s) skipped for a NaN/inf loss or gradient")
        pre = getattr(getattr(runner.model, "module", runner.model), "data_preprocessor", None)
        skipped = list(getattr(pre, "skipped", None) or [])
        if skipped:
            first = "; ".join(f"#{i} {p or ''} ({m})" for i, p, m in skipped[:5])
            runner.logger.warning(f"{what}: {len(skipped)} sample(s) failed to load and were skipped: {first}"
                                  + (" ..." if len(skipped) > 5 else ""))

    def after_train(self, runner) -> None:
        self._report(runner, "training")

    def after_test(self, runner) -> None:
        self._report(runner, "testing")


def _picture_hooks(cfg: Config) -> list[Hook]:
    """``[ResultPictures(**cfg.test_pictures)]``, or ``[]`` when the config turns pictures off."""
    pictures = cfg.get("test_pictures", {})
    if pictures is None or pictures is False:
        return []
    return [ResultPictures(**(dict(pictures) if isinstance(pictures, Mapping) else {}))]


WRAPPERS = {"OptimWrapper": OptimWrapper, "AmpOptimWrapper": AmpOptimWrapper}


def build_runner(cfg: str | os.PathLike | Mapping | Config, for_test: bool = False, *,
                 progress: str | None = None, verbose: bool | None = None) -> Runner:
    """Validate ``cfg``, build the model, data and metrics through glocal's registries, and return
    an mmengine ``Runner`` ready to ``train()`` / ``test()``.

    Keys read beyond the Runner's own: ``launcher`` ('none' | 'pytorch'), ``work_dir`` (default
    ``work_dirs/<config stem>``), ``resume`` / ``load_from``, ``experiment_name``.
    ``for_test=True`` builds only what ``runner.test()`` needs (the dumped config stays whole) and
    adds :class:`~.pictures.ResultPictures` (``test_pictures``: its arguments as a dict, default
    ``dict()``; None or False: no pictures).
    ``progress`` ('auto' | 'bar' | 'lines' | 'off'; default ``$GLOCAL_PROGRESS`` or 'auto') and
    ``verbose`` (default ``$GLOCAL_VERBOSE``): the console (:mod:`.console`).
    """
    quiet_third_party()
    cfg = load_config(cfg)
    validate_config(cfg)
    if for_test:
        for key in ("test_dataloader", "test_cfg", "test_evaluator"):
            if cfg.get(key) is None:
                raise ConfigError(f"testing needs test_dataloader, test_cfg and test_evaluator; the config "
                                  f"has no {key}")
    resolve_config(cfg)
    console = RunConsole(progress, verbose)
    if cfg.launcher == "pytorch":
        _init_distributed(cfg)
    early = BuildLog(console, rank=get_rank())  # what building logs reaches the run's log file

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
    if isinstance(optim_wrapper, Mapping) and optim_wrapper.get("type", "OptimWrapper") in WRAPPERS:
        optim_wrapper = {**optim_wrapper, "type": WRAPPERS[optim_wrapper.get("type", "OptimWrapper")]}
    default_hooks = copy.deepcopy(cfg.get("default_hooks"))
    if isinstance((default_hooks or {}).get("checkpoint"), Mapping) and \
            default_hooks["checkpoint"].get("type") in ("CheckpointHook", CheckpointHook):
        default_hooks["checkpoint"] = {**default_hooks["checkpoint"], "type": AtomicCheckpointHook}
    custom_hooks = list(copy.deepcopy(cfg.get("custom_hooks") or [])) + [
        SafeCheckpointHook(), ParameterDigestHook(), ReliabilityHook(), ConsoleHook()]
    if for_test:
        custom_hooks += _picture_hooks(cfg)
    runner = GlocalRunner(
        console=console,
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
        default_hooks=default_hooks,
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
    early.replay(runner.logger)
    return runner

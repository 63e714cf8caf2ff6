"""The training engine: an mmengine ``Runner`` built from a flat glocal config.

``build_runner(cfg)``

1. validates the whole config before anything is built (:mod:`.config`): top-level names, every
   ``type=``, keys and value kinds; mistakes raise :class:`~glocal.core.errors.ConfigError` with
   the key path and the closest names;
2. builds the model, datasets, data loaders and metrics itself and hands the built objects to
   ``Runner`` (:mod:`.runner`);
3. samples ``(index, seed)`` keys (:mod:`.data`: :class:`SeededSampler`, or
   :class:`BucketBatchSampler` for batches of similar length): augmentation depends only on
   ``(seed, epoch, index)``;
4. uses train loops that resume mid-epoch by positioning the sampler (:mod:`.loops`), fills each
   scheduler's missing ``end`` from the loop length, and adds
   :class:`~glocal.tasks.checkpoint.SafeCheckpointHook`;
5. keeps long runs safe (:class:`GlocalRunner`): crash-safe checkpoints (written to ``.part``,
   renamed when complete, checksummed, rotated only afterwards), one safe reader for every load,
   and the divergence guard in both optimizer wrappers (:class:`DivergenceError`);
6. runs distributed on CPU (gloo, DDP without ``device_ids``) and AMP on CPU (bfloat16);
7. keeps the console short (:mod:`.console`): a banner, a progress display (a live bar, or plain
   lines when the output is not a terminal) and warnings; third-party warnings a user cannot act
   on are filtered there, in one place.

The command-line tools share :func:`prepare_config` and :func:`run_tool` (:mod:`.cli`).

The resolved config is written to the work dir by the Runner; everything logged (mmengine's
environment and config dump included) goes to ``work_dir/<timestamp>/<timestamp>.log``, scalars to
``vis_data/scalars.json`` and TensorBoard events beside it.
"""
from __future__ import annotations

from ..checkpoint import CheckpointError, load_weights, save_safetensors
from .cli import free_port, launch_cpu_procs, prepare_config, run_tool
from .config import apply_cfg_options, load_config, resolve_config, validate_config
from .data import BucketBatchSampler, SeededSampler, build_dataloader, padding_share, sample_seeds
from .loops import (AmpOptimWrapper, DivergenceError, EpochBasedTrainLoop, IterBasedTrainLoop, OptimWrapper,
                    ParameterDigestHook)
from .runner import GlocalRunner, ReliabilityHook, build_model, build_runner

__all__ = ["build_runner", "load_config", "validate_config", "apply_cfg_options", "resolve_config",
           "prepare_config", "run_tool", "launch_cpu_procs", "free_port", "SeededSampler", "BucketBatchSampler", "padding_share",
           "sample_seeds", "EpochBasedTrainLoop", "IterBasedTrainLoop", "AmpOptimWrapper",
           "ParameterDigestHook", "build_model", "build_dataloader", "load_weights", "save_safetensors",
           "CheckpointError", "OptimWrapper", "DivergenceError", "GlocalRunner", "ReliabilityHook"]

"""The Python API: build any registered model, bring a modality of your own, train and test
without a config file. One import path for all of it::

    from glocal.tasks.api import ADAPTERS, DATASETS, GlocalDataset, Tokens, train, test

1. **A dataset**: derive from :class:`GlocalDataset`, implement ``__len__`` and ``load(i) -> dict``
   (``inputs`` plus targets such as ``label``); ragged samples set ``collate = PadCollate()`` and
   expose ``lengths()``. Register it: ``@DATASETS.add``.
2. **An adapter**: an ``nn.Module`` with ``out_dim`` whose ``forward(batch)`` reads
   ``batch['inputs']`` (and any structure the collate adds) and returns :class:`Tokens` carrying
   the structure the mixers need (``grid``, ``mask``, ``edge_index``, ``order``, ``pos``), or
   ``(Tokens, undo)`` so that dense heads can come back to the input elements
   (:class:`GridUndo`, :class:`IdentityUndo`, ...). Register it: ``@ADAPTERS.add``.
3. **A config as a dict** naming them by ``type=``, as a config file would; :func:`train` and
   :func:`test` run mmengine's Runner on it (the command-line tools' defaults apply).

Building pieces directly works too::

    >>> import torch
    >>> from glocal.tasks.api import build_model
    >>> model = build_model(dict(type="TaskModel",
    ...     adapter=dict(type="PatchStem", in_chans=1, dim=32, patch=4),
    ...     backbone=dict(type="Backbone", stages=[dict(dim=32, depth=1, blocks=dict(
    ...         local=dict(type="DepthwiseConv", kernel=3), global_=dict(type="FullAttention", heads=2)))]),
    ...     head=dict(type="ClsHead", num_classes=10)))
    >>> model(torch.randn(2, 1, 28, 28)).shape
    torch.Size([2, 10])
"""
from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path

from mmengine.runner import find_latest_checkpoint

from glocal.core.backbone import Backbone, BackboneOutput
from glocal.core.block import LocalGlobalBlock
from glocal.core.errors import ConfigError
from glocal.core.registry import BACKBONES, BLOCKS, DOWNSAMPLERS, MIXERS, NORMS
from glocal.core.tokens import Tokens
from glocal.core.undo import ClusterUndo, GridUndo, IdentityUndo, Undo
from glocal.modalities.batch import BatchPreprocessor, PadCollate, StackCollate, batch_inputs, require_field
from glocal.modalities.dataset import GlocalDataset
from glocal.modalities.registry import ADAPTERS, COLLATES, DATASETS, PREPROCESSORS, TRANSFORMS

from .engine import build_runner
from .model import TaskModel
from .registry import HEADS, LOSSES, METRICS, MODELS, POSTPROCESSORS, TTAS

__all__ = ["build_model", "build_backbone", "train", "test", "TaskModel", "Tokens", "Undo", "GridUndo",
           "ClusterUndo", "IdentityUndo", "Backbone", "BackboneOutput", "LocalGlobalBlock", "GlocalDataset",
           "StackCollate", "PadCollate", "BatchPreprocessor", "batch_inputs", "require_field",
           "MIXERS", "NORMS", "BLOCKS", "DOWNSAMPLERS", "BACKBONES", "ADAPTERS", "DATASETS", "TRANSFORMS",
           "PREPROCESSORS", "COLLATES", "MODELS", "HEADS", "LOSSES", "METRICS", "POSTPROCESSORS", "TTAS"]


def build_model(cfg: Mapping | str, **overrides):
    """A task model from a config dict (``type='TaskModel'``/``'Classifier'``), or a config file's
    ``model``; ``overrides`` replace top-level keys of the model dict."""
    if isinstance(cfg, (str, Path)):
        from .engine import load_config
        cfg = load_config(cfg).model.to_dict()
    return MODELS.build({**dict(cfg), **overrides})


def build_backbone(name: str, **overrides):
    """A registered backbone by name (``"swin_t"``, ``"nat_mini"``, ``"conformer_s"``, ...)."""
    return BACKBONES.build(dict(type=name, **overrides))


def train(cfg: Mapping | str, **changes):
    """Train from a config dict (or file); ``changes`` override its top-level keys (``work_dir=``,
    ``randomness=``, ...). Returns the trained model."""
    cfg = _config(cfg, changes)
    return build_runner(cfg).train()


def test(cfg: Mapping | str, checkpoint: str | None = None, **changes) -> dict:
    """Test a checkpoint (default: the latest in the config's ``work_dir``) on the config's test
    set; returns the metrics."""
    cfg = _config(cfg, changes)
    if checkpoint is None:
        work_dir = cfg.get("work_dir")
        checkpoint = find_latest_checkpoint(work_dir) if work_dir else None
        if checkpoint is None:
            raise ConfigError(f"test(): no checkpoint given and none found in work_dir={work_dir!r}")
    runner = build_runner(cfg, for_test=True)
    runner.load_weights(checkpoint)
    return {k: float(v) if hasattr(v, "__float__") else v for k, v in runner.test().items()}


def _config(cfg, changes):
    if isinstance(cfg, Mapping):
        return {**copy.deepcopy(dict(cfg)), **changes}
    from .engine import load_config
    loaded = load_config(cfg)
    loaded.merge_from_dict(changes)
    return loaded

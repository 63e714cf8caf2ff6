"""Backbones: stages of blocks, joined by downsamplers.

A hierarchical backbone is a list of stages; every stage after the first starts with a downsampler
(supplied by the config, or by the adapter, which knows the structure of its tokens: patch merging
on a grid, grid pooling on point positions, ...). An isotropic backbone is one stage. The output
keeps every stage's tokens and what each downsampling needs to be undone, for dense heads.
"""
from __future__ import annotations

import copy
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from .block import BlockSequence, apply_norm, build_norm
from .errors import ConfigError
from .registry import BLOCKS, DOWNSAMPLERS
from .tokens import Tokens
from .undo import Undo

__all__ = ["BackboneOutput", "Backbone", "IsotropicBackbone"]


@dataclass
class BackboneOutput:
    """Every stage's tokens and the way back from each: ``undo[i]`` brings stage ``i`` features to
    stage ``i - 1``'s tokens (None where stage ``i`` does not downsample), ``stem`` brings stage
    0's tokens back to the input elements (pixels, frames, points; None when the adapter cannot)."""

    stages: list[Tokens]  # per-stage output tokens, finest first
    undo: list[Undo | None] = field(default_factory=list)
    stem: Undo | None = None

    @property
    def last(self) -> Tokens:
        return self.stages[-1]

    @property
    def dims(self) -> list[int]:
        return [t.dim for t in self.stages]


def _stage_blocks(spec: Mapping, dim: int, drop_paths: Sequence[float]) -> list[nn.Module]:
    """``spec['blocks']``: one block config or a list cycled over the stage's depth (Swin's
    unshifted/shifted pairs, DiNAT's alternating dilation)."""
    pattern = spec.get("blocks")
    if pattern is None:
        raise ConfigError(f"a stage needs 'blocks' (a block config or a list of them); got keys {sorted(spec)}")
    pattern = [pattern] if isinstance(pattern, Mapping) or isinstance(pattern, nn.Module) else list(pattern)
    blocks = []
    for cfg, dp in zip(itertools.cycle(pattern), drop_paths):
        if isinstance(cfg, nn.Module):
            blocks.append(copy.deepcopy(cfg))
            continue
        cfg = dict(cfg)
        cfg.setdefault("type", "LocalGlobalBlock")
        cfg.setdefault("drop_path", dp)
        blocks.append(BLOCKS.build(cfg, dim=dim))
    return blocks


class Backbone(nn.Module):
    """Stages of blocks joined by downsamplers.

    Args:
        in_dim: channels of the adapter's tokens.
        stages: per stage ``dict(dim=..., depth=..., blocks=block_cfg_or_list[, downsample=cfg])``.
        downsample: default downsampler config between stages (built with ``dim``/``out_dim``).
        drop_path_rate: stochastic depth, rising linearly from 0 over all blocks.
        out_norm: norm on the last stage's output (None for none).
    """

    def __init__(self, in_dim: int, stages: Sequence[Mapping], downsample=None, drop_path_rate: float = 0.0,
                 out_norm="LayerNorm"):
        super().__init__()
        depths = [int(s["depth"]) for s in stages]
        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist() if sum(depths) else []
        self.in_dim = in_dim
        self.dims = [int(s.get("dim", in_dim)) for s in stages]
        self.downsamplers = nn.ModuleList()
        self.stages = nn.ModuleList()
        prev, start = in_dim, 0
        for i, (spec, dim, depth) in enumerate(zip(stages, self.dims, depths)):
            ds_cfg = spec.get("downsample", downsample if i > 0 else None)
            if ds_cfg is None and dim != prev:
                what = (f"the backbone takes {prev}-wide tokens (in_dim) but stage 0 is {dim} wide" if i == 0
                        else f"stage {i} changes width {prev} -> {dim}")
                raise ConfigError(f"{what} and has no downsampler: give the backbone (or the stage) a "
                                  f"'downsample' config" + (", or make the adapter's width match" if i == 0 else ""))
            self.downsamplers.append(DOWNSAMPLERS.build(ds_cfg, dim=prev, out_dim=dim) if ds_cfg else nn.Identity())
            self.stages.append(BlockSequence(_stage_blocks(spec, dim, rates[start:start + depth])))
            prev, start = dim, start + depth
        self.out_dim = prev
        self.out_norm = build_norm(out_norm, prev)

    def forward(self, tokens: Tokens | tuple[Tokens, Undo], stem: Undo | None = None) -> BackboneOutput:
        """``tokens`` from the adapter (``[B, L, in_dim]``); ``stem``: the adapter's undo, handed
        through to the output for dense heads. An adapter's ``(tokens, undo)`` pair is taken as
        it is: ``backbone(adapter(batch))``."""
        if isinstance(tokens, tuple):
            tokens, stem = tokens
        outs, undo = [], []
        for downsample, stage in zip(self.downsamplers, self.stages):
            info = None
            if not isinstance(downsample, nn.Identity):
                tokens, info = downsample(tokens)
            tokens = stage(tokens)
            outs.append(tokens)
            undo.append(info)
        outs[-1] = outs[-1].replace(x=apply_norm(self.out_norm, outs[-1].x, outs[-1]))
        return BackboneOutput(outs, undo, stem)


def IsotropicBackbone(in_dim: int, depth: int, blocks, dim: int | None = None, drop_path_rate: float = 0.0,
                      out_norm="LayerNorm") -> Backbone:
    """One stage of ``depth`` blocks at constant width (ViT, GraphGPS, Conformer)."""
    return Backbone(in_dim, [dict(dim=dim or in_dim, depth=depth, blocks=blocks)],
                    drop_path_rate=drop_path_rate, out_norm=out_norm)

"""Heads read the whole :class:`~glocal.core.backbone.BackboneOutput` (every stage, the undo of
every downsampling and of the stem) and return the task's raw output: a tensor per sample
(classification logits ``[B, K]``) or ``Tokens`` per element (per-pixel / per-point / per-frame
logits ``x [B, L, K]`` with their structure). Each head names the post-processing that suits it."""
from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from glocal.core.backbone import BackboneOutput
from glocal.core.block import apply_norm, build_norm
from glocal.core.dropout import Dropout
from glocal.core.errors import ConfigError, InputError
from glocal.core.registry import BLOCKS
from glocal.core.tokens import Tokens

__all__ = ["ClsHead", "UNetHead", "last_tokens"]


def last_tokens(feats: BackboneOutput | Tokens) -> Tokens:
    """The last stage's tokens (a bare ``Tokens`` is taken as it is)."""
    return feats.last if isinstance(feats, BackboneOutput) else feats


class ClsHead(nn.Module):
    """Masked mean pool of the last stage -> [pre-logits Linear + act] -> dropout -> Linear to
    ``num_classes``. ``feats -> logits [B, num_classes]``; padded tokens never enter the pool.
    ``pre_logits`` is MaxViT's extra projection (``Linear(C, pre_logits) + Tanh``).
    """

    postprocess = dict(type="ClassifyPost")

    def __init__(self, in_dim: int, num_classes: int, pre_logits: int | None = None,
                 pre_logits_act: str = "Tanh", drop: float = 0.0):
        super().__init__()
        self.num_classes = num_classes
        self.pre_logits = (nn.Sequential(nn.Linear(in_dim, pre_logits), getattr(nn, pre_logits_act)())
                           if pre_logits else nn.Identity())
        self.drop = Dropout(drop)
        self.fc = nn.Linear(pre_logits or in_dim, num_classes)

    def forward(self, feats: BackboneOutput | Tokens) -> Tensor:
        return self.fc(self.drop(self.pre_logits(last_tokens(feats).masked_mean())))  # [B, K]


class UNetHead(nn.Module):
    """A U-Net / FPN decoder over every stage: per-element logits at the input resolution.

    From the coarsest stage down: bring the features to the next finer stage with that stage's
    undo (``undo.up``), add the finer stage's projected features (a lateral ``Linear``), and refine
    with ``depth`` blocks (any block config: a depthwise convolution on grids, message passing on
    graphs) on the finer tokens, whose structure the undo restores. Then a ``Linear`` to the
    classes, and the stem's undo takes the logits from the first stage's tokens to the input
    elements (pixels, points, frames): ``feats -> Tokens(x [B, L_in, K])``.

    Args:
        in_dims: the widths of the backbone's stages (filled in by the task model).
        num_classes: output channels per element.
        dim: decoder width.
        block: the refinement block config (``LocalGlobalBlock`` by default; ``None``: none).
        depth: blocks per decoder level.
        upsample: ``"linear"`` or ``"nearest"`` for every undo.
        to_input: bring the logits to the input elements through the stem's undo (else they stay
            on the first stage's tokens).
        drop: dropout before the classifier.
        stem_dim: the width of the features the stem's undo carries at the input resolution
            (``adapter.fine_dim``, filled in by the task model); with them the decoder takes one
            more step, to the input elements, with those features as the skip, and classifies
            there (a U-Net's full-resolution skip). None: the logits are upsampled instead.
    """

    postprocess = dict(type="SegmentPost")

    def __init__(self, in_dims: Sequence[int], num_classes: int, dim: int = 64,
                 block=dict(local=dict(type="DepthwiseConv", kernel=3), ffn=dict(type="Mlp", ratio=2)),
                 depth: int = 1, upsample: str = "linear", to_input: bool = True, drop: float = 0.0,
                 norm="LayerNorm", stem_dim: int | None = None):
        super().__init__()
        if not in_dims:
            raise ConfigError("UNetHead needs the widths of the backbone's stages (in_dims)")
        self.num_classes, self.upsample, self.to_input = num_classes, upsample, to_input
        self.lateral = nn.ModuleList(nn.Linear(d, dim) for d in in_dims)
        self.blocks = nn.ModuleList(
            nn.Sequential(*[BLOCKS.build({"type": "LocalGlobalBlock", **block}, dim=dim) for _ in range(depth)])
            if block is not None else nn.Sequential() for _ in in_dims)
        self.stem_lateral = nn.Linear(stem_dim, dim) if stem_dim and to_input else None
        self.norm = build_norm(norm, dim)
        self.drop = Dropout(drop)
        self.cls = nn.Linear(dim, num_classes)

    def forward(self, feats: BackboneOutput) -> Tokens:
        if not isinstance(feats, BackboneOutput):
            raise InputError("UNetHead reads every stage: give it the BackboneOutput, not one stage's tokens")
        stages = feats.stages
        if len(stages) != len(self.lateral):
            raise InputError(f"UNetHead was built for {len(self.lateral)} stages; the backbone gave {len(stages)}")
        t = stages[-1].replace(x=self.lateral[-1](stages[-1].x))
        t = self.blocks[-1](t)
        for i in range(len(stages) - 2, -1, -1):
            undo = feats.undo[i + 1]
            y = t.x if undo is None else undo.up(t.x, self.upsample)  # [B, L_i, dim]
            t = stages[i].replace(x=stages[i].zero_padding(y + self.lateral[i](stages[i].x)))
            t = self.blocks[i](t)
        stem = feats.stem
        if self.stem_lateral is not None and stem is not None and stem.fine is not None:
            y = stem.up(t.x, self.upsample) + self.stem_lateral(stem.fine.x)  # [B, L_in, dim]
            t = stem.restore(stem.fine.zero_padding(y))
            return t.replace(x=self.cls(self.drop(apply_norm(self.norm, t.x, t))))  # [B, L_in, K]
        logits = self.cls(self.drop(apply_norm(self.norm, t.x, t)))  # [B, L_0, K]
        if not self.to_input:
            return t.replace(x=logits)
        if stem is None:
            raise InputError(
                "UNetHead(to_input=True) brings the logits back to the input elements through the stem's "
                "undo, but this model's adapter returned none (it returns Tokens alone, so its stem "
                "cannot be undone). Use an adapter that returns (Tokens, undo), or UNetHead(to_input=False) "
                "for logits on the first stage's tokens.")
        return feats.stem.restore(feats.stem.up(logits, self.upsample))  # [B, L_in, K]

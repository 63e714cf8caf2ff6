"""Post-processing: the head's output -> one dict per sample, what metrics and users read.

``activate(output)`` maps raw outputs to the space in which test-time augmentation averages them
(class probabilities); ``__call__(scores, data_samples)`` makes the per-sample dicts.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from glocal.core.errors import InputError
from glocal.core.tokens import Tokens

from .losses import target_of

__all__ = ["ClassifyPost", "SegmentPost", "softmax"]


def softmax(output: Tensor | Tokens) -> Tensor | Tokens:
    """Class probabilities over the last dim, in float32, for a tensor or per-element tokens."""
    if isinstance(output, Tokens):
        return output.replace(x=output.x.float().softmax(-1))
    return output.float().softmax(-1)


class ClassifyPost:
    """``scores [B, K] -> [dict(pred_scores [K], pred_label, gt_label)]``."""

    activate = staticmethod(softmax)

    def __init__(self, target: str = "label"):
        self.target = target

    def __call__(self, scores: Tensor, data_samples: Mapping | None) -> list[dict]:
        if isinstance(scores, Tokens):
            raise InputError("ClassifyPost got per-element outputs (Tokens); use SegmentPost, or a head "
                             "that pools (ClsHead)")
        labels = data_samples.get(self.target) if data_samples else None
        labels = [None] * len(scores) if labels is None else labels
        return [dict(pred_scores=s, pred_label=s.argmax(), gt_label=y) for s, y in zip(scores, labels)]


class SegmentPost:
    """Per-element classes: ``Tokens(x [B, L, K]) -> [dict(pred_seg [L], gt_seg [L])]`` with
    padded elements (the tokens' mask) set to ``ignore_index`` in both."""

    activate = staticmethod(softmax)

    def __init__(self, target: str = "seg", ignore_index: int = -100):
        self.target, self.ignore_index = target, ignore_index

    def __call__(self, scores: Tokens, data_samples: Mapping | None) -> list[dict]:
        if not isinstance(scores, Tokens):
            raise InputError("SegmentPost needs per-element outputs (Tokens from a dense head such as UNetHead)")
        B, L, _ = scores.x.shape
        pred = scores.x.argmax(-1)  # [B, L]
        gt = None
        if data_samples and self.target in data_samples:
            gt = torch.as_tensor(target_of(data_samples, self.target, "SegmentPost")).reshape(B, L).long()
        if scores.mask is not None:
            pred = pred.masked_fill(~scores.mask, self.ignore_index)
            gt = None if gt is None else gt.masked_fill(~scores.mask, self.ignore_index)
        return [dict(pred_seg=pred[b], gt_seg=None if gt is None else gt[b]) for b in range(B)]

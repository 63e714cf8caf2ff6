"""Losses read the head's output, the batch's targets (``data_samples``) and the tokens:
``loss(output, data_samples, tokens) -> Tensor`` (or a dict of named terms that mmengine sums)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from glocal.core.errors import InputError
from glocal.core.tokens import Tokens

__all__ = ["CrossEntropyLoss", "target_of"]


def target_of(data_samples: Mapping | None, key: str, who: str) -> Tensor:
    """``data_samples[key]``, or an InputError naming the key and the keys the batch has."""
    if not isinstance(data_samples, Mapping) or key not in data_samples:
        have = sorted(data_samples) if isinstance(data_samples, Mapping) else "no data_samples"
        raise InputError(f"{who} reads the target {key!r} from the batch's data_samples, which has {have}. "
                         f"Set the loss's target= to the dataset's key.")
    return data_samples[key]


class CrossEntropyLoss(nn.Module):
    """Cross-entropy for per-sample logits ``[B, K]`` (target ``[B]``) and per-element logits
    ``Tokens(x [B, L, K])`` (target ``[B, ...]`` with ``L`` elements per sample, e.g. ``[B, H, W]``;
    ``ignore_index`` marks unlabelled elements; padded tokens are ignored whatever their target).

    Args are torch's: ``label_smoothing``, ``weight`` (per class), ``ignore_index``; ``target``
    names the key in ``data_samples``.
    """

    def __init__(self, target: str = "label", ignore_index: int = -100, label_smoothing: float = 0.0,
                 weight: Sequence[float] | None = None, reduction: str = "mean"):
        super().__init__()
        self.target, self.ignore_index = target, ignore_index
        self.label_smoothing, self.reduction = label_smoothing, reduction
        self.register_buffer("weight", None if weight is None else torch.tensor(weight, dtype=torch.float32),
                             persistent=False)

    def forward(self, output: Tensor | Tokens, data_samples: Mapping, tokens: Tokens | None = None) -> Tensor:
        target = target_of(data_samples, self.target, "CrossEntropyLoss")
        target = torch.as_tensor(target, device=(output.x if isinstance(output, Tokens) else output).device)
        if isinstance(output, Tokens):
            B, L, K = output.x.shape
            if target.numel() != B * L:
                raise InputError(f"CrossEntropyLoss: per-element logits {tuple(output.x.shape)} need {L} targets "
                                 f"per sample; data_samples[{self.target!r}] has shape {tuple(target.shape)}")
            target = target.reshape(B, L).long()
            if output.mask is not None:  # padding never counts, whatever the collate filled in
                target = target.masked_fill(~output.mask, self.ignore_index)
            logits, target = output.x.reshape(B * L, K), target.reshape(B * L)
        else:
            logits = output
            if target.dim() != 1 or target.shape[0] != logits.shape[0]:
                raise InputError(f"CrossEntropyLoss: logits {tuple(logits.shape)} need one class index per "
                                 f"sample; data_samples[{self.target!r}] has shape {tuple(target.shape)}")
            target = target.long()
        return F.cross_entropy(logits.float(), target, weight=self.weight, ignore_index=self.ignore_index,
                               label_smoothing=self.label_smoothing, reduction=self.reduction)

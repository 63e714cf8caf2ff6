"""Heads read the backbone's tokens. Classification pools the valid tokens of the last stage."""
from __future__ import annotations

from torch import Tensor, nn

from glocal.core.tokens import Tokens

__all__ = ["ClsHead"]


class ClsHead(nn.Module):
    """Masked mean pool -> [pre-logits Linear + act] -> dropout -> Linear to ``num_classes``.

    ``Tokens(x [B, L, C]) -> logits [B, num_classes]``; padded tokens never enter the pool.
    ``pre_logits`` is MaxViT's extra projection (``Linear(C, pre_logits) + Tanh``).
    """

    def __init__(self, in_dim: int, num_classes: int, pre_logits: int | None = None,
                 pre_logits_act: str = "Tanh", drop: float = 0.0):
        super().__init__()
        self.num_classes = num_classes
        self.pre_logits = (nn.Sequential(nn.Linear(in_dim, pre_logits), getattr(nn, pre_logits_act)())
                           if pre_logits else nn.Identity())
        self.drop = nn.Dropout(drop)
        self.fc = nn.Linear(pre_logits or in_dim, num_classes)

    def forward(self, tokens: Tokens) -> Tensor:
        return self.fc(self.drop(self.pre_logits(tokens.masked_mean())))  # [B, K]

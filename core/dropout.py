"""Dropout with fast masks, and attention with dropout on the attention weights.

On CPU, ``torch.bernoulli_`` draws one 64-bit random number per element and costs more than the
matrix products of a small speech or vision model's training step (a fifth of a Conformer-S step).
:func:`keep_mask` draws one 64-bit word per FOUR elements instead: each 16-bit lane is a uniform
integer, kept when it clears a threshold. The drop probability is thereby rounded to a multiple of
``2**-16`` (0.1 becomes 0.100006), and the kept values are scaled by the reciprocal of the exact keep
probability that results, so the expectation is unchanged, as with ``nn.Dropout``. The numbers come
from torch's global generator (``torch.manual_seed`` makes them reproducible). Ten times faster
than ``bernoulli_`` on one thread; the reference is :func:`dropout_reference` (``nn.Dropout``'s
arithmetic given a mask), tested next to it.

:func:`attention` is ``F.scaled_dot_product_attention`` when there is no dropout (its fused CPU
kernel) and, with dropout, the same arithmetic written out (``softmax(q k^T / sqrt(d) + mask)``,
dropout on the weights, times ``v``) with the fast mask: PyTorch's CPU attention with dropout runs that
very math path, with ``bernoulli_`` masks.

Example:
    >>> import torch
    >>> drop = Dropout(0.25)
    >>> y = drop(torch.ones(4, 1000))
    >>> [round(v, 4) for v in y.unique().tolist()]  # dropped, or kept and scaled by 1 / 0.75
    [0.0, 1.3333]
    >>> bool(drop.eval()(torch.ones(3)).eq(1).all())
    True
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["keep_mask", "scaled_keep_mask", "keep_probability", "dropout", "dropout_reference", "Dropout", "attention"]

_LANES = 1 << 16  # values of one 16-bit lane


def _threshold(p: float) -> int:
    """Lanes (int16) at or above this are kept: ``round(p * 2**16)`` of the ``2**16`` values drop."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must be in [0, 1); got {p}")
    return -(_LANES // 2) + round(p * _LANES)


def keep_probability(p: float) -> float:
    """The exact keep probability of :func:`keep_mask` for drop probability ``p``."""
    return 1.0 - (_threshold(p) + _LANES // 2) / _LANES


def _lanes(shape, device) -> Tensor:
    """``prod(shape)`` uniform 16-bit integers (int16), four to a 64-bit random word."""
    n = math.prod(shape)
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_(-2**63, 2**63 - 1)
    return words.view(torch.int16)[:n]


def keep_mask(shape, p: float, device=None) -> Tensor:
    """Bool mask of ``shape``, each element True (kept) with probability :func:`keep_probability`,
    independently: one uniform 16-bit lane of a 64-bit random word per element."""
    return (_lanes(shape, device) >= _threshold(p)).view(shape)


def scaled_keep_mask(shape, p: float, dtype=torch.float32, device=None) -> Tensor:
    """:func:`keep_mask` as ``dtype`` values ``0`` and ``1 / keep_probability(p)`` (the same random
    numbers give the same mask): the lanes are converted and compared in floating point, which
    vectorises where a bool mask and a masked fill do not."""
    mask = _lanes(shape, device).to(dtype).ge_(_threshold(p)).view(shape)
    return mask.mul_(1.0 / keep_probability(p))


def dropout_reference(x: Tensor, keep: Tensor, p: float) -> Tensor:
    """``nn.Dropout``'s arithmetic given the mask: kept values scaled by ``1 / keep probability``."""
    return x * keep.to(x.dtype) / keep_probability(p)


def dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    """Dropout of ``x`` with drop probability ``p`` (identity when not training or ``p == 0``).
    Autograd keeps the scaled mask (``x``'s dtype) for the backward pass."""
    if not training or p == 0.0:
        return x
    return x * scaled_keep_mask(x.shape, p, x.dtype, x.device)


class Dropout(nn.Dropout):
    """``nn.Dropout`` (same arguments, state and repr) with :func:`keep_mask` masks."""

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, self.training)


def attention(q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None = None, dropout_p: float = 0.0) -> Tensor:
    """``F.scaled_dot_product_attention(q, k, v, attn_mask, dropout_p)`` (``[..., L, d]`` inputs;
    a bool mask is True where a query may attend, a float mask is added to the logits).

    With dropout: the logits, a softmax, :func:`dropout` on the weights, the weighted sum. A query
    row with no allowed key gets zero weights (and output), as PyTorch's attention gives it."""
    if not dropout_p:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
    logits = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)  # [..., Lq, Lk]
    if attn_mask is not None and attn_mask.dtype == torch.bool:
        logits = logits.masked_fill(~attn_mask, float("-inf"))
    elif attn_mask is not None:
        logits = logits + attn_mask
    weights = torch.softmax(logits, dim=-1)
    if attn_mask is not None:
        weights = weights.nan_to_num(0.0)  # rows with every key masked
    return dropout(weights, dropout_p) @ v  # [..., Lq, d]

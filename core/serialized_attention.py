"""Serialized patch attention (Point Transformer V3, Wu et al., CVPR 2024, section 3.2): the tokens,
in the order of a space-filling curve (``Tokens.order``), are cut into patches of ``patch``
consecutive valid tokens, and multi-head attention runs inside each patch. A local encoder whose
cost is linear in L (``L * patch``), whose neighbourhoods follow the curve.

Patches per sample: the valid tokens in ``Tokens.order`` (padding, wherever it sits in the order,
is skipped), then ``ceil(n / patch)`` patches of consecutive ones. A sample with ``n`` not a
multiple of ``patch`` has a short last patch; ``tail`` says what it attends to:

- ``"masked"`` (default): only its own ``n % patch`` tokens (the patch is padded, the pad masked);
- ``"overlap"``: the sample's last ``patch`` valid tokens, as Pointcept's flash-attention path
  does (it fills the last patch with tokens of the previous one): every patch is full; the
  borrowed tokens take their own outputs from their own patch.

A sample with fewer than ``patch`` tokens is one patch in both modes (the patch length shrinks to
the largest sample's token count when that is smaller: the same patches, less masked work). The fast path gathers the
patches of the whole batch into ``[T, patch, C]`` (the patch table is computed once per batch and
order, ``Tokens.derived``), runs ``scaled_dot_product_attention`` and scatters back;
:func:`serialized_attention_reference` is the dense ``[L, L]`` attention with the block-diagonal
mask these patches make, for the tests.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .attention import dense_attention
from .dropout import Dropout, attention
from .errors import InputError
from .serialize import cached_on
from .tokens import Tokens

__all__ = ["SerializedAttention", "PatchTable", "patch_table", "serialized_rank", "serialized_attention_reference"]

TAILS = ("masked", "overlap")


@dataclass(eq=False)
class PatchTable:
    """Patches of a padded batch: ``index [T, P]`` flattened token indices ``b * L + i`` (any valid
    token in a masked slot), ``keys [T, P]`` bool slots that are keys (None: all), ``rows [N]``
    the slots (in ``T * P``) that write the N valid tokens' outputs, ``targets [N]`` those tokens."""

    index: Tensor
    keys: Tensor | None
    rows: Tensor
    targets: Tensor


def serialized_rank(order: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
    """``(seq [B, L], n [B])``: per sample the token indices with the valid ones first, in
    ``order``; ``n`` valid tokens each."""
    if mask is None:
        B, L = order.shape
        return order, torch.full((B,), L, dtype=torch.long, device=order.device)
    valid = mask.gather(1, order)  # [B, L] validity along the order
    first = torch.sort((~valid).to(torch.uint8), dim=1, stable=True).indices
    return order.gather(1, first), valid.sum(1)


@torch.no_grad()
def patch_table(order: Tensor, mask: Tensor | None, patch: int, tail: str = "masked") -> PatchTable:
    """The :class:`PatchTable` of ``order [B, L]`` / ``mask [B, L]`` for patches of ``patch``."""
    B, L = order.shape
    dev = order.device
    seq, n = serialized_rank(order, mask)
    # no sample fills more than its own tokens: patches no longer than the largest sample (the
    # same patches, fewer masked slots)
    patch = max(1, min(patch, int(n.max()) if B else 1))
    n_patches = (n + patch - 1) // patch  # [B]
    T = int(n_patches.sum())
    b = torch.repeat_interleave(torch.arange(B, device=dev), n_patches)  # [T] sample of each patch
    j = torch.arange(T, device=dev) - (torch.cumsum(n_patches, 0) - n_patches)[b]  # [T] patch within it
    slot = torch.arange(patch, device=dev)
    rank = j[:, None] * patch + slot  # [T, P] rank along the sample's valid sequence
    nb = n[b][:, None]  # [T, 1]
    own = rank < nb  # slots holding the patch's own tokens
    keys = own
    if tail == "overlap":  # a short last patch (of a sample with more than one) takes the last P tokens
        short = (j[:, None] == n_patches[b][:, None] - 1) & (nb % patch != 0) & (nb > patch)
        shifted = nb - patch + slot  # [T, P]
        own = torch.where(short, shifted >= j[:, None] * patch, own)
        rank = torch.where(short, shifted, rank)
        keys = own | short
    rank = torch.minimum(rank, nb - 1)  # masked slots read a valid token (never a key)
    index = b[:, None] * L + seq[b[:, None], rank]  # [T, P]
    rows = own.reshape(-1).nonzero().squeeze(1)
    return PatchTable(index, None if bool(keys.all()) else keys, rows, index.reshape(-1)[rows])


class SerializedAttention(nn.Module):
    """PTv3's serialized patch attention: multi-head attention inside patches of ``patch``
    consecutive valid tokens along ``Tokens.order`` (module docstring).

    Reads ``Tokens.order`` (required) and ``Tokens.mask``; zero at padded tokens.

    Args:
        dim: channels; ``heads``: attention heads.
        patch: tokens per patch (PTv3: 1024; 48 in Pointcept's default class).
        tail: what a short last patch attends to, ``"masked"`` or ``"overlap"`` (module docstring).
        qkv_bias, attn_drop, proj_drop: as in ``FullAttention``.

    Example:
        >>> import torch
        >>> from glocal.core import Tokens
        >>> attn = SerializedAttention(16, heads=2, patch=8)
        >>> t = Tokens(torch.randn(2, 20, 16), order=torch.stack([torch.randperm(20) for _ in range(2)]))
        >>> attn(t.x, t).shape
        torch.Size([2, 20, 16])
    """

    def __init__(self, dim: int, heads: int = 8, patch: int = 1024, tail: str = "masked", qkv_bias: bool = True,
                 attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        if dim % heads:
            raise ValueError(f"SerializedAttention: dim {dim} is not divisible by heads {heads}")
        if tail not in TAILS:
            raise ValueError(f"SerializedAttention tail must be one of {TAILS}; got {tail!r}")
        if patch < 1:
            raise ValueError(f"SerializedAttention: patch must be positive; got {patch}")
        self.heads, self.patch, self.tail, self.attn_drop = heads, int(patch), tail, attn_drop
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = Dropout(proj_drop)

    def extra_repr(self):
        return f"heads={self.heads}, patch={self.patch}, tail={self.tail!r}"

    def table(self, tokens: Tokens) -> PatchTable:
        order = tokens.require("order", "SerializedAttention")
        if order.shape != tokens.x.shape[:2]:
            raise InputError(f"SerializedAttention: Tokens.order {tuple(order.shape)} does not match the tokens "
                             f"{tuple(tokens.x.shape[:2])}")
        return cached_on(tokens, f"patches/{self.patch}/{self.tail}", order,
                         lambda: patch_table(order, tokens.mask, self.patch, self.tail))

    def forward(self, x: Tensor, tokens: Tokens) -> Tensor:
        B, L, C = x.shape
        t = self.table(tokens)
        T, P = t.index.shape
        h = self.heads
        rows = x.reshape(B * L, C).index_select(0, t.index.reshape(-1))  # [T * P, C]
        q, k, v = self.qkv(rows).view(T, P, 3, h, C // h).permute(2, 0, 3, 1, 4)  # [T, h, P, d] each
        mask = None if t.keys is None else t.keys[:, None, None, :]  # [T, 1, 1, P] True = may attend
        o = attention(q, k, v, attn_mask=mask, dropout_p=self.attn_drop if self.training else 0.0)
        o = o.transpose(1, 2).reshape(T * P, C).index_select(0, t.rows)  # [N, C] the valid tokens' outputs
        o = self.proj_drop(self.proj(o))
        return o.new_zeros(B * L, C).index_copy(0, t.targets, o).view(B, L, C)

    def extra_macs(self, x: Tensor, tokens: Tokens) -> int:
        """``q k^T`` and ``attn v`` in every patch: ``2 * T * P^2 * C`` (masked slots included)."""
        T, P = self.table(tokens).index.shape
        return 2 * T * P * P * x.shape[-1]


def serialized_attention_reference(layer: SerializedAttention, x: Tensor, tokens: Tokens) -> Tensor:
    """Dense reference of ``layer``: attention over all ``L`` tokens of a sample with the mask of
    the patches: query ``i`` sees key ``j`` when both are valid and in the same patch of ranks
    (for ``tail="overlap"``, a token of a short last patch sees the sample's last ``patch`` ranks).
    ``O(L^2)``; outputs zero at padding."""
    B, L, C = x.shape
    seq, n = serialized_rank(tokens.order, tokens.mask)
    rank = torch.empty_like(seq).scatter_(1, seq, torch.arange(L, device=x.device).expand(B, L))  # [B, L]
    valid = rank < n[:, None]
    P = layer.patch
    group = rank // P
    allowed = (group[:, :, None] == group[:, None, :]) & valid[:, :, None] & valid[:, None, :]  # [B, Lq, Lk]
    if layer.tail == "overlap":
        nq = n[:, None, None]
        in_short = (group[:, :, None] == (nq - 1) // P) & (nq % P != 0) & (nq > P)  # query in a short last patch
        last = (rank[:, None, :] >= nq - P) & valid[:, None, :]
        allowed = torch.where(in_short, last, allowed)
    h = layer.heads
    q, k, v = layer.qkv(x).view(B, L, 3, h, C // h).permute(2, 0, 3, 1, 4)  # [B, h, L, d]
    o = dense_attention(q, k, v, mask=allowed[:, None])
    o = layer.proj(o.transpose(1, 2).reshape(B, L, C))
    return o * valid.unsqueeze(-1).to(o.dtype)

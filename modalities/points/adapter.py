"""The point-cloud adapter: a collated batch of clouds -> ``Tokens``.

:class:`PointStem` takes :class:`~glocal.modalities.points.datasets.PointCollate`'s batch
(``inputs [B, L, F]`` per-point features, ``pos [B, L, 3]``, ``mask [B, L]``) and returns
``Tokens(x, mask, pos)`` with one token per point, plus, on request, the structure a local encoder
needs: ``edge_index`` of each point's ``knn`` nearest neighbours (for the message-passing encoders,
``GINE`` / ``GatedGCN``). By default the features pass through unchanged: PTv3 embeds them itself
(a sparse convolution on the voxels of ``pos``) and serialises the points itself, so its adapter
has nothing to learn; ``dim`` adds a linear embedding for backbones that expect a token width.

Example:
    >>> import torch
    >>> batch = {"inputs": torch.randn(2, 5, 6), "pos": torch.rand(2, 5, 3),
    ...          "mask": torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=torch.bool)}
    >>> tokens, undo = PointStem(in_dim=6, knn=2)(batch)
    >>> tokens.x.shape, tokens.edge_index.shape  # 8 valid points x 2 neighbours
    (torch.Size([2, 5, 6]), torch.Size([2, 16]))
"""
from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from glocal.core.errors import ConfigError, InputError
from glocal.core.mpnn import knn_edges
from glocal.core.tokens import Tokens
from glocal.core.undo import IdentityUndo

from ..batch import batch_inputs, require_field

__all__ = ["PointStem"]


class PointStem(nn.Module):
    """One token per point: ``Tokens(x [B, L, C], mask, pos [B, L, 3], edge_index)``.

    Args:
        in_dim: per-point input features (the dataset's ``features``: coords 3, colors 3, ...);
            checked against the batch.
        dim: width of a linear embedding of the features, or None to pass them through.
        knn: add ``edge_index`` from each valid point's ``knn`` nearest valid points (padding never
            links), or None for none.
    """

    def __init__(self, in_dim: int, dim: int | None = None, knn: int | None = None):
        super().__init__()
        if in_dim < 1 or (dim is not None and dim < 1) or (knn is not None and knn < 1):
            raise ConfigError(f"PointStem: in_dim, dim and knn must be >= 1; got {in_dim}, {dim}, {knn}")
        self.in_dim, self.knn = in_dim, knn
        self.embed = nn.Linear(in_dim, dim) if dim else None
        self.out_dim = dim or in_dim

    def forward(self, batch) -> tuple[Tokens, IdentityUndo]:
        if not isinstance(batch, Mapping):
            raise InputError("PointStem takes the batch mapping of PointCollate (inputs, pos, mask), not a bare "
                             "tensor")
        x = batch_inputs(batch, "PointStem")  # [B, L, F]
        pos = require_field(batch, "pos", "PointStem")  # [B, L, 3]
        mask = batch.get("mask")  # [B, L] or None (all valid)
        if x.dim() != 3 or x.shape[-1] != self.in_dim:
            raise InputError(f"PointStem: 'inputs' must be [B, L, {self.in_dim}] (in_dim={self.in_dim}: the "
                             f"dataset's features); got {tuple(x.shape)}")
        if pos.shape != (*x.shape[:2], 3) or (mask is not None and mask.shape != x.shape[:2]):
            raise InputError(f"PointStem: 'pos' must be [B, L, 3] and 'mask' [B, L] like the inputs "
                             f"{tuple(x.shape[:2])}; got pos {tuple(pos.shape)}, mask "
                             f"{None if mask is None else tuple(mask.shape)}")
        dtype = self.embed.weight.dtype if self.embed is not None else x.dtype
        h = x.to(dtype)
        if self.embed is not None:
            h = self.embed(h)
        h = Tokens(h, mask=mask).zero_padding(h)  # [B, L, C], padding 0
        edge_index = knn_edges(pos, self.knn, mask) if self.knn else None  # [2, B * L * knn]
        tokens = Tokens(h, mask=mask, pos=pos.to(dtype), edge_index=edge_index)
        return tokens, IdentityUndo(fine=tokens)

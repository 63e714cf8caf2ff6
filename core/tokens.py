"""`Tokens`: the one structured batch every adapter produces and every block consumes.

Features are always ``x: [B, L, C]``. Everything else is optional structure, carried explicitly so
that a mixer reads only the fields it needs (and says which one is missing when it is absent):

- ``mask [B, L]`` bool, True for valid tokens (ragged graphs, point clouds, padded clips);
- ``grid``: the regular layout of L, ``(T,)``, ``(H, W)`` or ``(T, H, W)``; ``prod(grid) == L``;
- ``edge_index [2, E]`` (+ ``edge_attr [E, De]``): sparse neighbours between *flattened* token
  indices ``b * L + i``, so one edge list covers the whole padded batch;
- ``order [B, L]``: a permutation per sample that serialises tokens for scans and serialised windows;
- ``pos [B, L, P]``: coordinates (xyz, time, pixel centres) for positional encodings.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .errors import InputError, MissingStructureError

__all__ = ["Tokens", "PROVIDERS"]

# Which adapters provide each structural field: quoted in MissingStructureError messages.
PROVIDERS = {
    "mask": "any adapter that batches ragged samples (graphs, point clouds, padded audio/video clips)",
    "grid": "grid adapters: image PatchStem/ConvStem, video tubelet stem, audio fbank stem",
    "edge_index": "graph adapters (node encoder over a PyG batch) and point-cloud kNN adapters",
    "edge_attr": "graph adapters with bond/edge features",
    "order": "point-cloud serialisation (z-order / Hilbert) and graph orderings",
    "pos": "point-cloud adapters (xyz), video/audio adapters (time), image adapters (pixel centres)",
}


@dataclass(frozen=True)
class Tokens:
    x: Tensor  # [B, L, C]
    mask: Tensor | None = None  # [B, L] bool, True = valid
    grid: tuple[int, ...] | None = None  # prod(grid) == L
    edge_index: Tensor | None = None  # [2, E] long, flattened b * L + i
    edge_attr: Tensor | None = None  # [E, De]
    order: Tensor | None = None  # [B, L] long, a permutation of range(L) per sample
    pos: Tensor | None = None  # [B, L, P]
    extras: dict[str, Any] = dataclasses.field(default_factory=dict)  # adapter-specific, passed along

    def __post_init__(self):
        x = self.x
        if not isinstance(x, Tensor) or x.dim() != 3:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise InputError(f"Tokens.x must be a tensor of shape [B, L, C]; got {shape}")
        B, L, _ = x.shape
        if self.mask is not None:
            if self.mask.shape != (B, L) or self.mask.dtype != torch.bool:
                raise InputError(
                    f"Tokens.mask must be a bool tensor of shape [B, L] = [{B}, {L}]; got "
                    f"{self.mask.dtype} {tuple(self.mask.shape)}")
        if self.grid is not None:
            object.__setattr__(self, "grid", tuple(int(g) for g in self.grid))
            if math.prod(self.grid) != L:
                raise InputError(f"Tokens.grid {self.grid} has {math.prod(self.grid)} cells but "
                                 f"there are L={L} tokens")
        if self.edge_index is not None:
            ei = self.edge_index
            if ei.dim() != 2 or ei.shape[0] != 2 or ei.dtype != torch.long:
                raise InputError(f"Tokens.edge_index must be a long tensor [2, E]; got "
                                 f"{ei.dtype} {tuple(ei.shape)}")
        if self.edge_attr is not None and (self.edge_index is None
                                           or self.edge_attr.shape[0] != self.edge_index.shape[1]):
            raise InputError("Tokens.edge_attr needs an edge_index with one column per row of edge_attr")
        if self.order is not None and self.order.shape != (B, L):
            raise InputError(f"Tokens.order must be [B, L] = [{B}, {L}]; got {tuple(self.order.shape)}")
        if self.pos is not None and (self.pos.dim() != 3 or self.pos.shape[:2] != (B, L)):
            raise InputError(f"Tokens.pos must be [B, L, P] with B={B}, L={L}; got {tuple(self.pos.shape)}")

    # -- shape helpers ------------------------------------------------------------------------
    @property
    def shape(self) -> torch.Size:
        return self.x.shape

    @property
    def dim(self) -> int:
        return self.x.shape[-1]

    def replace(self, **changes) -> Tokens:
        """A copy with some fields changed (the dataclass is frozen: blocks never mutate)."""
        return dataclasses.replace(self, **changes)

    def require(self, field: str, by: str):
        """Return structure field ``field``, or raise a clear error naming who needs it and who
        provides it."""
        value = getattr(self, field)
        if value is None:
            raise MissingStructureError(
                f"{by} needs Tokens.{field}, which these tokens do not carry. "
                f"It is provided by {PROVIDERS[field]}.")
        return value

    def zero_padding(self, x: Tensor) -> Tensor:
        """Zero the features of padded tokens (``x: [B, L, C]``); identity when there is no mask."""
        return x if self.mask is None else x * self.mask.unsqueeze(-1).to(x.dtype)

    def valid(self) -> Tensor:
        """The validity mask, all-True when the tokens carry none. ``[B, L]`` bool."""
        if self.mask is not None:
            return self.mask
        return torch.ones(self.x.shape[:2], dtype=torch.bool, device=self.x.device)

    def grid_view(self, x: Tensor | None = None, by: str = "this component") -> Tensor:
        """``[B, L, C] -> [B, *grid, C]`` using the tokens' grid."""
        x = self.x if x is None else x
        grid = self.require("grid", by)
        return x.reshape(x.shape[0], *grid, x.shape[-1])

    def masked_mean(self, x: Tensor | None = None) -> Tensor:
        """Mean over valid tokens: ``[B, L, C] -> [B, C]``; padding never contributes."""
        x = self.x if x is None else x
        if self.mask is None:
            return x.mean(1)
        w = self.mask.unsqueeze(-1).to(x.dtype)
        return (x * w).sum(1) / w.sum(1).clamp_min(1.0)

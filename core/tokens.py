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
from collections.abc import Callable
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


def _device_of(args, kwargs) -> torch.device | None:
    """The device named in ``Tensor.to``-style arguments, if any."""
    for a in (*args, kwargs.get("device")):
        if isinstance(a, (str, torch.device)):
            return torch.device(a)
        if isinstance(a, Tensor):
            return a.device
    return None


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
    # values derived from the structure (see `derived`); shared by copies with the same structure
    _derived: dict[str, Any] = dataclasses.field(default_factory=dict, init=False, repr=False, compare=False)

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
        """A copy with some fields changed (the dataclass is frozen: blocks never mutate). The copy
        keeps the values :meth:`derived` from ``mask`` and ``edge_index`` when neither they nor
        ``B, L`` change (a block replacing ``x``)."""
        new = dataclasses.replace(self, **changes)
        if (new.mask is self.mask and new.edge_index is self.edge_index
                and new.x.shape[:2] == self.x.shape[:2]):
            object.__setattr__(new, "_derived", self._derived)
        return new

    def to(self, *args, **kwargs) -> Tokens:
        """Every tensor (features, structure, tensors in ``extras``) moved/cast like ``Tensor.to``;
        integer and bool structure keeps its dtype (only the device follows)."""
        def move(t):
            if not isinstance(t, Tensor):
                return t
            if t.is_floating_point():
                return t.to(*args, **kwargs)
            device = _device_of(args, kwargs)
            return t if device is None else t.to(device)

        fields = {f.name: move(getattr(self, f.name)) for f in dataclasses.fields(self) if f.init}
        fields["extras"] = {k: move(v) for k, v in self.extras.items()}
        return Tokens(**fields)

    def derived(self, key: str, compute: Callable[[], Any]) -> Any:
        """``compute()``, run once for this batch's structure (``mask``, ``edge_index``, ``B, L``)
        and then reused by every layer that asks for ``key``, here and in the copies
        :meth:`replace` makes: edge checks and valid-token indices cost once per batch, not per
        layer. ``compute`` must depend on nothing else; structure tensors are never edited in place.
        """
        if key not in self._derived:
            self._derived[key] = compute()
        return self._derived[key]

    def valid_index(self) -> Tensor | None:
        """Flattened indices ``b * L + i`` of the valid tokens, ``[N]`` long (computed once per
        batch); None when the tokens carry no mask."""
        if self.mask is None:
            return None
        return self.derived("valid_index", lambda: self.mask.reshape(-1).nonzero().squeeze(1))

    def pack(self, x: Tensor) -> Tensor:
        """The rows of the valid tokens: ``[B, L, C] -> [N, C]`` (all ``B * L`` rows without a mask),
        for position-wise work that padding does not need."""
        flat = x.reshape(-1, x.shape[-1])  # [B * L, C]
        index = self.valid_index()
        return flat if index is None else flat.index_select(0, index)

    def unpack(self, rows: Tensor) -> Tensor:
        """Inverse of :meth:`pack`: ``[N, C] -> [B, L, C]``, padded tokens zero."""
        B, L = self.x.shape[:2]
        index = self.valid_index()
        if index is None:
            return rows.reshape(B, L, rows.shape[-1])
        return rows.new_zeros(B * L, rows.shape[-1]).index_copy(0, index, rows).view(B, L, -1)

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

"""Undo objects: what brings coarse features back to the finer tokens they were made from.

Every stem and downsampler returns one next to its tokens. A dense head walks them backwards:
``undo.up(x_coarse)`` gives features on the fine tokens (``[B, L', C] -> [B, L, C]``) and
``undo.restore(x_fine)`` gives the fine ``Tokens`` with every structure field the downsampling
dropped (mask, grid, edges, order, positions).

- :class:`GridUndo`: a grid of any rank reduced by integer ``factors`` (patch merging, strided
  convolution, a patch or convolutional stem); ``up`` interpolates (nearest or (bi/tri)linear) to
  the padded fine grid and crops it, as the downsampling padded it.
- :class:`ClusterUndo`: tokens pooled into clusters (grid pooling of points, graph coarsening);
  ``up`` gathers each fine token's cluster feature.
- :class:`IdentityUndo`: a stem that keeps one token per input element (graph nodes, points).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from .errors import InputError
from .gridops import crop_grid
from .tokens import Tokens

__all__ = ["Undo", "GridUndo", "ClusterUndo", "IdentityUndo"]

_LINEAR = {1: "linear", 2: "bilinear", 3: "trilinear"}


class Undo:
    """Base: ``up(x [B, L', C]) -> [B, L, C]`` and ``restore(x [B, L, C]) -> Tokens``."""

    fine: Tokens | None  # the tokens before the downsampling (None: a stem's input elements)

    def up(self, x: Tensor, mode: str = "nearest") -> Tensor:
        raise NotImplementedError

    def restore(self, x: Tensor) -> Tokens:
        if self.fine is None:
            raise NotImplementedError
        return self.fine.replace(x=x)


@dataclass(eq=False)
class GridUndo(Undo):
    """A grid ``grid`` (the fine one) reduced by ``factors``, after zero-padding every side to a
    multiple of its factor; ``fine`` holds the fine tokens (None for a stem, whose fine level is the
    input itself: then ``restore`` builds tokens on ``grid`` with ``mask``)."""

    grid: tuple[int, ...]
    factors: tuple[int, ...]
    fine: Tokens | None = None
    mask: Tensor | None = None  # [B, L] of the fine level, when there is no `fine`

    def __post_init__(self):
        self.grid, self.factors = tuple(int(g) for g in self.grid), tuple(int(f) for f in self.factors)
        if len(self.grid) != len(self.factors):
            raise InputError(f"GridUndo: grid {self.grid} and factors {self.factors} differ in rank")

    @property
    def coarse_grid(self) -> tuple[int, ...]:
        return tuple(math.ceil(g / f) for g, f in zip(self.grid, self.factors))

    def up(self, x: Tensor, mode: str = "nearest") -> Tensor:
        """``[B, prod(coarse), C] -> [B, prod(grid), C]``; ``mode`` is ``"nearest"`` or ``"linear"``
        (linear, bilinear or trilinear by the grid's rank; half-pixel centres)."""
        B, Lc, C = x.shape
        coarse = self.coarse_grid
        if Lc != math.prod(coarse):
            raise InputError(f"GridUndo.up: expected {math.prod(coarse)} coarse tokens (grid {coarse}, "
                             f"the fine grid {self.grid} reduced by {self.factors}); got {Lc}")
        if mode not in ("nearest", "linear"):
            raise InputError(f"GridUndo.up: mode must be 'nearest' or 'linear'; got {mode!r}")
        padded = tuple(c * f for c, f in zip(coarse, self.factors))
        y = x.transpose(1, 2).reshape(B, C, *coarse)  # [B, C, *coarse]
        if mode == "nearest":
            for d, f in enumerate(self.factors):
                if f > 1:
                    y = y.repeat_interleave(f, dim=2 + d)
        else:
            y = F.interpolate(y, size=padded, mode=_LINEAR[len(coarse)], align_corners=False)
        y = crop_grid(y.movedim(1, -1), self.grid)  # [B, *grid, C]
        return y.reshape(B, -1, C)

    def restore(self, x: Tensor) -> Tokens:
        if self.fine is not None:
            return self.fine.replace(x=x)
        return Tokens(x, mask=self.mask, grid=self.grid)


@dataclass(eq=False)
class ClusterUndo(Undo):
    """Tokens pooled into clusters: ``cluster [B, L]`` is the coarse index of every fine token
    (any value at padded fine tokens)."""

    cluster: Tensor
    fine: Tokens

    def up(self, x: Tensor, mode: str = "nearest") -> Tensor:
        B, L = self.cluster.shape
        index = self.cluster.clamp(0, x.shape[1] - 1).unsqueeze(-1).expand(B, L, x.shape[-1])
        return self.fine.zero_padding(x.gather(1, index))  # [B, L, C]


@dataclass(eq=False)
class IdentityUndo(Undo):
    """A stem whose tokens are the input elements themselves (one per node, point or frame)."""

    fine: Tokens

    def up(self, x: Tensor, mode: str = "nearest") -> Tensor:
        return x

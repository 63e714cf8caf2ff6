"""Test-time augmentation as a component: views of a batch and the way each view's output maps
back, so that the task model averages (activated) outputs of all views.

``views(batch) -> [(batch_view, back)]``; ``back(output)`` undoes the view's geometry on the output
(identity for per-sample outputs). Multi-clip / multi-crop averaging follows the same interface.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor

from glocal.core.errors import ConfigError
from glocal.core.tokens import Tokens

__all__ = ["FlipTTA"]


class FlipTTA:
    """The batch and one flipped copy per entry of ``dims`` (e.g. ``(-1,)``: a horizontal flip of
    ``[B, C, H, W]`` images). Dims count from the end, of the inputs and of a per-element output's
    grid alike: flipping input dim -1 (W) is undone on the output by flipping grid dim -1 (W)."""

    def __init__(self, dims: Sequence[int] = (-1,)):
        self.dims = tuple(int(d) for d in dims)
        if any(d >= 0 for d in self.dims):
            raise ConfigError(f"FlipTTA dims count from the end (e.g. -1 for the width); got {self.dims}")

    def views(self, batch: Mapping) -> list[tuple[Mapping, object]]:
        out = [(batch, None)]
        for d in self.dims:
            out.append(({**batch, "inputs": batch["inputs"].flip(d)}, lambda o, d=d: _flip_output(o, d)))
        return out

    def __repr__(self):
        return f"FlipTTA(dims={self.dims})"


def _flip_output(output: Tensor | Tokens, d: int):
    if not isinstance(output, Tokens):
        return output  # per-sample outputs do not move
    output.require("grid", "FlipTTA (flipping a per-element output back)")
    x = output.grid_view(output.x).flip(d - 1)  # [B, *grid, K]: grid dim d is tensor dim d - 1
    return output.replace(x=x.reshape(output.x.shape))

"""Test-time augmentation as a component: views of a batch and the way each view's output maps
back, so that the task model averages (activated) outputs of all views.

``views(batch) -> [(batch_view, back)]``; ``back(output)`` undoes the view's geometry on the output
(identity for per-sample outputs), and may also change its batch: :class:`MultiViewTTA` folds the
``V`` views of every sample (several clips x three crops of a video) into one batch of ``B * V``
and its ``back`` averages them to ``B``.

What is averaged is the TTA's ``average`` (``'prob'`` when it has none): ``'prob'``, the activated
outputs (class probabilities, mmaction2's default ``average_clips='prob'``), or ``'score'``, the raw
outputs (logits), activated once after averaging.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor

from glocal.core.errors import ConfigError, InputError
from glocal.core.tokens import Tokens

__all__ = ["FlipTTA", "MultiViewTTA", "AVERAGES"]

AVERAGES = ("prob", "score")


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


class MultiViewTTA:
    """Multi-view testing (mmaction2's ``num_clips`` x ``ThreeCrop``): a batch whose ``inputs`` hold
    ``V`` views per sample, ``[B, V, *sample]`` (``[B, V, C, T, H, W]`` from ``ClipCollate`` after
    multi-clip sampling and ``ThreeCropClip``), runs as ONE batch of ``B * V`` single views (views
    of a sample adjacent), and the ``V`` outputs of each sample are averaged: class probabilities
    with ``average='prob'`` (mmaction2's default), logits with ``average='score'`` (softmaxed once
    after; the ranking is mmaction2's ``'score'``).

    A batch of single views (``inputs`` of rank ``sample_dims + 1``: the val loader's centre crop)
    passes through unchanged, so one model config serves both loaders. Other per-sample tensors of
    the batch (first dim ``B``: ``lengths``, a frame ``mask``) are repeated for every view; the
    targets (``data_samples``) never pass through here and stay one per sample.

    Args:
        sample_dims: the rank of one view: 4 for clips ``[C, T, H, W]``, 3 for images.
        average: ``'prob'`` or ``'score'``.

    Example:
        >>> import torch
        >>> tta = MultiViewTTA(sample_dims=1)
        >>> (view, back), = tta.views(dict(inputs=torch.randn(2, 3, 5)))  # B=2, V=3 views of [5]
        >>> view["inputs"].shape, back(torch.arange(6.).view(6, 1)).tolist()  # per-view scores averaged
        (torch.Size([6, 5]), [[1.0], [4.0]])
    """

    def __init__(self, sample_dims: int = 4, average: str = "prob"):
        if isinstance(sample_dims, bool) or not isinstance(sample_dims, int) or sample_dims < 1:
            raise ConfigError(f"MultiViewTTA sample_dims must be an int >= 1 (the rank of one view: 4 for clips "
                              f"[C, T, H, W], 3 for images [C, H, W]); got {sample_dims!r}")
        if average not in AVERAGES:
            raise ConfigError(f"MultiViewTTA average must be one of {', '.join(map(repr, AVERAGES))}; got {average!r}")
        self.sample_dims, self.average = sample_dims, average

    def views(self, batch: Mapping) -> list[tuple[Mapping, object]]:
        x = batch["inputs"]
        if not isinstance(x, Tensor) or x.dim() not in (self.sample_dims + 1, self.sample_dims + 2):
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise InputError(f"MultiViewTTA(sample_dims={self.sample_dims}) takes inputs [B, V, ...] of rank "
                             f"{self.sample_dims + 2} (V views of a {self.sample_dims}-dim sample) or single views of "
                             f"rank {self.sample_dims + 1}; got {got}")
        if x.dim() == self.sample_dims + 1:
            return [(batch, None)]
        B, V = x.shape[:2]
        view = {k: (v.repeat_interleave(V, 0) if isinstance(v, Tensor) and v.dim() and v.shape[0] == B else v)
                for k, v in batch.items() if k != "inputs"}
        view["inputs"] = x.flatten(0, 1)  # [B * V, *sample], the views of a sample adjacent
        return [(view, lambda out, B=B, V=V: _mean_views(out, B, V))]

    def __repr__(self):
        return f"MultiViewTTA(sample_dims={self.sample_dims}, average={self.average!r})"


def _mean_views(output, B: int, V: int) -> Tensor:
    """``[B * V, ...]`` per-view outputs -> ``[B, ...]``, the mean over each sample's views."""
    if isinstance(output, Tokens):
        raise InputError("MultiViewTTA averages per-sample outputs (class scores); a per-element output (Tokens) "
                         "of different crops has no common grid to average on: test dense models on one view")
    return output.reshape(B, V, *output.shape[1:]).mean(1)

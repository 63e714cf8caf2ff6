#!/usr/bin/env python
"""The effective receptive field (ERF) of a model's backbone: how strongly each input element
(pixel, frame, voxel, node, point) moves one central output token of the last stage.

    python tools/erf.py CONFIG [CHECKPOINT] [--samples 16] [--out erf.png]
                        [--compare CONFIG2 [CHECKPOINT2]] [--log] [--target {relu,sum,random}]
                        [--wrt {auto,inputs,tokens}] [--random [--input-shape 1,1,64,64]]
                        [--seed 0] [--device cpu] [--cfg-options KEY=VALUE ...]

Examples::

    # local-only vs local + global at matched size, side by side on one colour scale
    python tools/erf.py configs/image/scenes_unet_local.py work_dirs/scenes_local/epoch_4.pth \\
        --compare configs/image/scenes_unet_local_global.py work_dirs/scenes_local_global/epoch_4.pth \\
        --out erf_scenes.png --log
    # untrained (no checkpoint), on random inputs when the test data is not at hand
    python tools/erf.py configs/image/fashion_mnist_demo.py --random --input-shape 1,1,28,28
    # a hop-distance profile of a graph model; a time profile of a speech encoder
    python tools/erf.py configs/graph/longrange_gine.py --compare configs/graph/longrange_gps.py
    python tools/erf.py configs/audio/ctc_local.py --compare configs/audio/ctc_mamba.py --samples 8

**What is measured** (Luo et al., "Understanding the Effective Receptive Field in Deep
Convolutional Neural Networks", NeurIPS 2016; the plots of RepLKNet, Ding et al., CVPR 2022): for
each of ``--samples`` inputs (a batch of one), the gradient of a scalar made from the central token
of the backbone's last stage (after its output norm) with respect to the model input, its absolute
value summed over the input's channels (features), then averaged over the inputs. The model is in
eval mode (no dropout or drop-path; batch norms use their running statistics) with gradients
enabled for the input only. The input is the tensor that goes into the adapter, i.e. after the
data preprocessor (which may normalise); with test-time augmentation, the first test view
(multi-view video: the first clip-crop of each sample).

**The scalar** (``--target``): ``relu`` (default) is RepLKNet's ``relu(out[centre]).sum()``;
``sum`` is Luo et al.'s unit gradient on every channel of the centre, ``out[centre].sum()``, which
is degenerate behind a LayerNorm (the channel sum of a normalised vector is constant: the gradient
is zero while the norm's scale is the same for every channel, as before training); ``random`` is
``out[centre] . u`` with ``u`` a random unit direction drawn per sample (``--seed``).

**The central token**, by the structure the last stage's tokens carry:

- a ``grid`` (images ``[B, C, H, W]``, speech features ``[B, T, F]``, video ``[B, C, T, H, W]``):
  the token at the centre ``g // 2`` of the grid (of the valid tokens' extent when the tokens are
  masked: for a padded sequence, the middle valid token). Input elements are placed by their
  offset from the input element at the centre token's middle, ``floor((c + 0.5) * S / g)``, so
  inputs of different sizes line up. The map is 2D (a heat map), 1D (a profile over time) or 3D
  (one panel per frame). Reported: the smallest square (interval, cube) around the centre that holds
  20 / 30 / 50 / 90 / 99% of the gradient, its side and its share of the input's area (RepLKNet's
  "area ratio", computed here on the map itself rather than on ``log10(ERF + 1)``, which depends
  on the gradient's units);
- a graph (the batch has ``edge_index`` and the last stage keeps one token per node): the node of
  highest degree (the first on ties); the profile is the mean ``|grad|`` per node at each
  shortest-path hop distance from it (breadth-first search over the batch's edges, undirected), and
  the hops that hold 90% of the gradient;
- points (tokens with ``pos``, possibly pooled): the valid last-stage token nearest to the centroid
  of the valid last-stage positions; the profile is the mean ``|grad|`` per input point over bins of
  Euclidean distance from that token's position, the radius that holds 90% of the gradient, and a
  top-down (x, y) scatter of every point coloured by its share.

Anything else (no grid, no graph edges in the batch, no positions) is an error.

``--wrt tokens`` takes the gradient with respect to the adapter's output tokens instead (the
backbone's own receptive field on the stem's token grid); ``auto`` (default) does so only when the
inputs are not floating point (categorical node features, which have no gradient).

**Inputs**: the config's test dataset (``test_dataloader.dataset``), ``--samples`` samples spread
evenly over it (``--compare``: each model through its own config's test dataset, so two configs
with the same test set see the same samples), or with ``--random`` standard-normal inputs of
``--input-shape`` (a batch shape as in ``tools/summary.py``; the batch dimension is taken as 1),
else of the config's ``input_shape``, given to the data preprocessor as they are: only for
adapters that need nothing but ``inputs``.

**Outputs**: ``--out erf.png`` (matplotlib, Agg), ``erf.json`` (per model: config, checkpoint,
what was measured, the centre, the mass numbers, the profiles and, when it has at most 65,536
values, the map) and ``erf.npz`` (every model's full raw map ``map_<i>``, the mean ``|grad|`` per
input element, and for points ``dist_<i>``, ``grad_<i>``, ``xy_<i>``). Pictures show each map as
its share of the model's total gradient, so that models whose gradients differ in scale share one
colour scale (``--log``: ``log10`` of the share, over ``--decades`` decades below the larger
maximum). A line per model is printed.

**Errors**: a config whose model is not a task model (adapter + backbone), whose last stage has
none of the structures above, a checkpoint that does not fit the model, a test dataset that
cannot be built (run with ``--random``), and ``--random`` for an adapter that needs more than
``inputs`` stop the run (``error: ...``, exit code 2).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from mmengine.config import DictAction

THRESHOLDS = (0.2, 0.3, 0.5, 0.9, 0.99)  # shares of the gradient reported for grids
MAX_JSON_VALUES = 65_536  # maps up to this size also go into the JSON
POINT_BINS = 20  # distance bins of the point profile


def parse_args(argv=None):
    from glocal.tasks.engine.cli import int_tuple

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("config", help="config file")
    p.add_argument("checkpoint", nargs="?", help=".pth checkpoint or .safetensors weights (default: untrained)")
    p.add_argument("--compare", nargs="+", metavar=("CONFIG2", "CHECKPOINT2"),
                   help="a second model (config, optional checkpoint) drawn beside the first on one scale")
    p.add_argument("--samples", type=int, default=16, help="inputs averaged over (default 16)")
    p.add_argument("--out", default="erf.png", help="the PNG; the .json and .npz go beside it (default erf.png)")
    p.add_argument("--target", choices=("relu", "sum", "random"), default="relu",
                   help="the scalar of the central token (default relu: RepLKNet's relu(out).sum())")
    p.add_argument("--wrt", choices=("auto", "inputs", "tokens"), default="auto",
                   help="gradient with respect to the model inputs or the adapter's tokens (default auto: "
                        "inputs when they are floating point)")
    p.add_argument("--log", action="store_true", help="log10 colour / y scale")
    p.add_argument("--decades", type=float, default=4.0, help="decades shown with --log (default 4)")
    p.add_argument("--random", action="store_true", help="random inputs instead of the test dataset")
    p.add_argument("--input-shape", type=int_tuple, help="with --random: the input batch shape, e.g. 1,1,64,64")
    p.add_argument("--seed", type=int, default=0, help="seed of the untrained weights, random inputs and "
                                                       "directions (default 0)")
    p.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--cfg-options", nargs="+", action=DictAction, metavar="KEY=VALUE",
                   help="override config keys (of both configs)")
    args = p.parse_args(argv)
    if args.samples < 1:
        p.error("--samples must be >= 1")
    if args.compare is not None and len(args.compare) > 2:
        p.error("--compare takes a config and at most one checkpoint")
    if args.decades <= 0:
        p.error("--decades must be > 0")
    return args


# ------------------------------------------------------------------------------------------------
# one input: the gradient of the central token
# ------------------------------------------------------------------------------------------------
@dataclass
class Probe:
    """What one input gives: ``grad`` (``|grad|`` per input element: an array on the input grid, or
    ``[L]`` per node / point), the kind of structure, and where the central token is."""

    kind: str  # "grid" | "graph" | "points"
    grad: np.ndarray
    centre: tuple[int, ...] | int  # grid: the input element under the central token; graph/points: token index
    token: tuple[int, ...] | int  # the central token (grid coordinates, or its index)
    last_grid: tuple[int, ...] | None = None
    hops: np.ndarray | None = None  # graph: hop distance of each node (-1: unreached)
    dist: np.ndarray | None = None  # points: distance of each point from the central token
    xy: np.ndarray | None = None  # points: (x, y) of each point relative to the central token
    wrt: str = "inputs"


@contextlib.contextmanager
def _frozen(model):
    """Parameters without gradients (only the input's is wanted), restored after."""
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def _name(obj) -> str:
    return type(obj).__name__


def _count(n: int, what: str) -> str:
    return f"{n} {what}" + ("" if n == 1 else "s")


def central_grid_token(grid: tuple[int, ...], mask) -> tuple[int, ...]:
    """The token at the centre of the grid: ``g // 2`` per axis over the extent of the valid tokens
    (``mask [L]`` bool or None), the valid token nearest to it when it is padding."""
    grid = tuple(int(g) for g in grid)
    valid = np.ones(math.prod(grid), bool) if mask is None else np.asarray(mask, bool).reshape(-1)
    if not valid.any():
        from glocal.core.errors import InputError
        raise InputError("the last stage has no valid token to take the receptive field of")
    coords = np.stack(np.unravel_index(np.flatnonzero(valid), grid), 1)  # [N, rank]
    lo, hi = coords.min(0), coords.max(0)
    centre = lo + (hi - lo + 1) // 2
    best = int(np.argmin(((coords - centre) ** 2).sum(1)))
    return tuple(int(c) for c in coords[best])


def central_node(edge_index: np.ndarray, valid: np.ndarray) -> int:
    """The valid node of highest degree (edges counted undirected, each neighbour once), the first on ties."""
    degree = np.zeros(len(valid), np.int64)
    if edge_index.size:
        pairs = np.unique(np.sort(edge_index.T, 1), axis=0)
        pairs = pairs[pairs[:, 0] != pairs[:, 1]]
        np.add.at(degree, pairs.reshape(-1), 1)
    degree[~valid] = -1
    return int(np.argmax(degree))


def hop_distances(edge_index: np.ndarray, n: int, source: int) -> np.ndarray:
    """Shortest-path hops from ``source`` over the undirected edges (``-1``: unreached)."""
    neighbours = [[] for _ in range(n)]
    for a, b in edge_index.T.tolist():
        if a != b and a < n and b < n:
            neighbours[a].append(b)
            neighbours[b].append(a)
    hops = np.full(n, -1, np.int64)
    hops[source] = 0
    queue = deque([source])
    while queue:
        a = queue.popleft()
        for b in neighbours[a]:
            if hops[b] < 0:
                hops[b] = hops[a] + 1
                queue.append(b)
    return hops


def spatial_axes(shape: tuple[int, ...], grid: tuple[int, ...] | None, rank: int) -> tuple[int, ...]:
    """The axes of one input (``shape``, no batch dimension) that hold its ``rank``-dimensional grid:
    those matching ``grid`` (the input grid the adapter's undo names) when known, else by the usual
    layouts: ``[C, *grid]`` (images, clips), ``[*grid, F]`` (sequences of features), ``[*grid]``."""
    n = len(shape)
    leading, trailing = tuple(range(rank)), tuple(range(n - rank, n))
    # sequences carry features last ([T, F]); images and clips carry channels first ([C, H, W])
    layouts = (leading, trailing) if rank == 1 else (trailing, leading)
    if grid is not None:
        for axes in layouts:
            if tuple(shape[a] for a in axes) == tuple(grid):
                return axes
    if n == rank:
        return leading
    if n == rank + 1:
        return layouts[0]
    from glocal.core.errors import ConfigError
    raise ConfigError(f"cannot tell which axes of the inputs {tuple(shape)} (one sample) hold the last stage's "
                      f"rank-{rank} grid" + (f" (the adapter's input grid is {tuple(grid)})" if grid else "")
                      + ": use --wrt tokens")


def probe(model, batch, target: str = "relu", wrt: str = "auto", generator=None) -> Probe:
    """The ERF of one collated ``batch`` (its first sample): see the module doc.

    ``model``: a task model (``data_preprocessor``, ``adapter``, ``backbone``, optional ``tta``);
    ``generator``: a ``torch.Generator`` for ``target='random'``."""
    import torch

    from glocal.core.errors import ConfigError, InputError
    from glocal.core.tokens import Tokens

    if not all(hasattr(model, k) for k in ("adapter", "backbone", "extract")):
        raise ConfigError(f"the ERF needs a task model (adapter -> backbone -> head); got {_name(model)}")
    data = dict(model.data_preprocessor(batch, False))
    data.pop("data_samples", None)
    if getattr(model, "tta", None) is not None:  # the first test view (multi-view: its views folded in)
        data = dict(model.tta.views(data)[0][0])
    inputs = data.get("inputs")
    if not isinstance(inputs, torch.Tensor):
        raise InputError(f"the batch's inputs are {_name(inputs)}, not a tensor: no gradient to take")
    floating = inputs.is_floating_point()
    if wrt == "auto":
        wrt = "inputs" if floating else "tokens"
    if wrt == "inputs":
        if not floating:
            raise ConfigError(f"the inputs are {inputs.dtype} (categorical), which have no gradient: use --wrt tokens")
        inputs = inputs.detach().clone().requires_grad_(True)
        data["inputs"] = inputs

    seen = {}

    def grab(module, args, out):  # the adapter's tokens; with --wrt tokens, a leaf that takes the gradient
        tokens, stem = out if isinstance(out, tuple) and len(out) == 2 else (out, None)
        if isinstance(tokens, Tokens) and wrt == "tokens":
            tokens = tokens.replace(x=tokens.x.detach().requires_grad_(True))
            out = (tokens, stem) if stem is not None or isinstance(out, tuple) else tokens
        seen["tokens"] = tokens
        return out

    handle = model.adapter.register_forward_hook(grab)
    try:
        with _frozen(model), torch.enable_grad():
            feats = model.extract(data)
            last, tokens = feats.last, seen["tokens"]
            kind, token, grid_in, pos = _structure(last, tokens, data, inputs, feats.stem, wrt)
            index = int(np.ravel_multi_index(token, last.grid)) if kind == "grid" else int(token)
            v = last.x[0, index]  # [C]
            if target == "relu":
                scalar = torch.relu(v).sum()
            elif target == "sum":
                scalar = v.sum()
            elif target == "random":
                u = torch.randn(v.shape[0], generator=generator, dtype=torch.float64).to(v)
                scalar = (v * (u / u.norm())).sum()
            else:
                raise ConfigError(f"target must be 'relu', 'sum' or 'random'; got {target!r}")
            leaf = inputs if wrt == "inputs" else tokens.x
            if not scalar.requires_grad:
                raise ConfigError(f"the central token does not depend on the {wrt} (no gradient path): nothing to "
                                  f"measure")
            (grad,) = torch.autograd.grad(scalar, leaf, allow_unused=True)
    finally:
        handle.remove()
    grad = torch.zeros_like(leaf) if grad is None else grad
    g = grad[0].detach().abs().double().cpu().numpy()  # one sample, no batch dimension
    if kind == "grid":
        if wrt == "tokens":
            if tokens.grid is None or len(tokens.grid) != len(last.grid):
                raise ConfigError(f"--wrt tokens: the adapter's tokens have grid {tokens.grid}, the last stage "
                                  f"{tuple(last.grid)}: no common grid to place the gradient on; use --wrt inputs")
            g = g.sum(-1).reshape(tokens.grid)
            grid_in = tokens.grid
        else:
            axes = spatial_axes(g.shape, grid_in, len(last.grid))
            other = tuple(a for a in range(g.ndim) if a not in axes)
            g = g.sum(other) if other else g
            grid_in = g.shape
        centre = tuple(min(s - 1, int((c + 0.5) * s / n)) for c, s, n in zip(token, grid_in, last.grid))
        return Probe("grid", g, centre, token, tuple(last.grid), wrt=wrt)
    g = g.reshape(g.shape[0], -1).sum(1)  # [L]
    valid = _valid(tokens, data, g.shape[0])
    g = np.where(valid, g, 0.0)
    if kind == "graph":
        edges = data["edge_index"].detach().cpu().numpy()
        hops = hop_distances(edges, g.shape[0], token)
        hops[~valid] = -2  # padding: not a node
        return Probe("graph", g, token, token, hops=hops, wrt=wrt)
    centre_pos = last.pos[0, index].detach().double().cpu().numpy()
    p = pos[0].detach().double().cpu().numpy()  # [L, P]
    rel = p - centre_pos
    dist = np.where(valid, np.sqrt((rel ** 2).sum(1)), np.nan)
    xy = rel[:, :2] if rel.shape[1] >= 2 else np.concatenate([rel, np.zeros_like(rel)], 1)
    return Probe("points", g[valid], token, token, dist=dist[valid], xy=xy[valid], wrt=wrt)


def _valid(tokens, data, n: int) -> np.ndarray:
    mask = data.get("mask")
    if mask is None or mask.dim() != 2 or mask.shape[1] != n:
        mask = tokens.mask if tokens.mask is not None and tokens.mask.shape[1] == n else None
    return np.ones(n, bool) if mask is None else mask[0].detach().cpu().numpy().astype(bool)


def _structure(last, tokens, data, inputs, stem, wrt):
    """``(kind, central token, input grid or None, input positions or None)`` from what the last
    stage's tokens and the batch carry (see the module doc)."""
    from glocal.core.errors import ConfigError

    if last.grid is not None:
        mask = None if last.mask is None else last.mask[0].detach().cpu().numpy()
        grid_in = getattr(stem, "grid", None)
        grid_in = tuple(grid_in) if grid_in is not None and len(grid_in) == len(last.grid) else None
        return "grid", central_grid_token(last.grid, mask), grid_in, None
    n_in = tokens.x.shape[1] if wrt == "tokens" else (inputs.shape[1] if inputs.dim() >= 2 else 0)
    if data.get("edge_index") is not None:
        if last.x.shape[1] != n_in:
            raise ConfigError(f"the batch is a graph (edge_index) but the last stage has {last.x.shape[1]} tokens for "
                              f"{n_in} input nodes: a pooled graph backbone has no node-level hop profile")
        edges = data["edge_index"].detach().cpu().numpy()
        valid = _valid(tokens, data, n_in)
        return "graph", central_node(edges, valid), None, None
    pos = tokens.pos if wrt == "tokens" else data.get("pos")
    if last.pos is not None and pos is not None and pos.dim() == 3 and pos.shape[1] == n_in:
        lp = last.pos[0].detach().double()
        valid = np.ones(lp.shape[0], bool) if last.mask is None else last.mask[0].detach().cpu().numpy()
        lp = lp.cpu().numpy()
        centroid = lp[valid].mean(0)
        idx = np.flatnonzero(valid)
        token = int(idx[np.argmin(((lp[valid] - centroid) ** 2).sum(1))])
        return "points", token, None, pos
    raise ConfigError("the ERF needs structure to place the input elements around a central token, and the last "
                      "stage's tokens carry none it can use: no grid (images, speech, video), no graph edges in the "
                      "batch (edge_index) and no point positions (pos) on both the last stage and the inputs")


# ------------------------------------------------------------------------------------------------
# many inputs: the average
# ------------------------------------------------------------------------------------------------
@dataclass
class ERF:
    """The average of the probes of one model, and the numbers reported about it."""

    kind: str
    probes: list = field(default_factory=list)
    arrays: dict = field(default_factory=dict)  # raw arrays for the .npz
    stats: dict = field(default_factory=dict)  # JSON-ready

    @property
    def rank(self) -> int:
        return self.arrays["map"].ndim if self.kind == "grid" else 0


def average(probes: list[Probe]) -> ERF:
    """Average the probes of one model (all of one kind) into an :class:`ERF`."""
    from glocal.core.errors import InputError

    kinds = {p.kind for p in probes}
    if len(kinds) != 1:
        raise InputError(f"the samples gave different structures {sorted(kinds)}")
    kind = kinds.pop()
    erf = ERF(kind, probes)
    {"grid": _average_grid, "graph": _average_graph, "points": _average_points}[kind](erf)
    erf.stats["wrt"] = probes[0].wrt
    erf.stats["samples"] = len(probes)
    total = float(erf.stats.get("total", 0.0))
    erf.stats["zero"] = not total > 0
    return erf


def _average_grid(erf: ERF) -> None:
    probes = erf.probes
    ranks = {p.grad.ndim for p in probes}
    if len(ranks) != 1:
        from glocal.core.errors import InputError
        raise InputError(f"the samples' maps differ in rank: {sorted(ranks)}")
    # every map placed by its offset from its centre element: inputs of different sizes line up
    lo = np.min([[-c for c in p.centre] for p in probes], 0)
    hi = np.max([[s - 1 - c for s, c in zip(p.grad.shape, p.centre)] for p in probes], 0)
    canvas = np.zeros(tuple(int(v) for v in hi - lo + 1))
    for p in probes:
        start = [int(-c - l) for c, l in zip(p.centre, lo)]
        canvas[tuple(slice(s, s + n) for s, n in zip(start, p.grad.shape))] += p.grad
    canvas /= len(probes)
    origin = tuple(int(-l) for l in lo)
    erf.arrays["map"] = canvas
    total = float(canvas.sum())
    # the smallest square / interval / cube around the centre holding each share of the gradient
    idx = np.indices(canvas.shape)
    radius = np.max([np.abs(i - o) for i, o in zip(idx, origin)], 0).reshape(-1)
    mass = np.cumsum(np.bincount(radius, weights=canvas.reshape(-1)))
    cells = np.cumsum(np.bincount(radius))
    within = {}
    for t in THRESHOLDS:
        r = int(np.searchsorted(mass, t * total - 1e-12 * total)) if total > 0 else None
        within[f"{round(100 * t)}%"] = (None if r is None or r >= len(mass) else
                                       dict(side=2 * r + 1, area_ratio=float(cells[r] / canvas.size)))
    sizes = np.array([p.grad.shape for p in probes])
    erf.stats.update(kind="grid", rank=canvas.ndim, shape=list(canvas.shape), origin=list(origin),
                     input_sizes=[sizes.min(0).tolist(), sizes.max(0).tolist()],
                     centres=[list(p.centre) for p in probes], tokens=[list(p.token) for p in probes],
                     last_grids=[list(p.last_grid) for p in probes], total=total, within=within)


def _average_graph(erf: ERF) -> None:
    probes = erf.probes
    top = max(int(p.hops.max()) for p in probes)
    mass, count = np.zeros(top + 1), np.zeros(top + 1, np.int64)
    unreached_mass, unreached = 0.0, 0
    for p in probes:
        on = p.hops >= 0
        mass += np.bincount(p.hops[on], weights=p.grad[on], minlength=top + 1)
        count += np.bincount(p.hops[on], minlength=top + 1)
        off = p.hops == -1
        unreached_mass += float(p.grad[off].sum())
        unreached += int(off.sum())
    n = len(probes)
    total = (mass.sum() + unreached_mass) / n
    mean = np.divide(mass, count, out=np.zeros_like(mass), where=count > 0)  # per node, over samples
    share = np.cumsum(mass / n) / total if total > 0 else np.zeros_like(mass)
    hops_90 = int(np.searchsorted(share, 0.9 - 1e-12)) if total > 0 and share[-1] >= 0.9 - 1e-12 else None
    nonzero = np.flatnonzero(mass > 0)
    erf.arrays.update(mass=mass / n, count=count, mean=mean)
    erf.stats.update(kind="graph", centre=[int(p.centre) for p in probes], total=float(total),
                     mass_per_hop=(mass / n).tolist(), nodes_per_hop=(count / n).tolist(),
                     mean_per_node=mean.tolist(), unreached_mass=unreached_mass / n,
                     unreached_nodes=unreached / n, hops_90=hops_90,
                     max_hop_with_gradient=int(nonzero[-1]) if nonzero.size else None)


def _average_points(erf: ERF) -> None:
    probes = erf.probes
    dist = np.concatenate([p.dist for p in probes])
    grad = np.concatenate([p.grad for p in probes])
    xy = np.concatenate([p.xy for p in probes])
    n = len(probes)
    edges = np.linspace(0.0, float(dist.max()) if dist.size and dist.max() > 0 else 1.0, POINT_BINS + 1)
    which = np.clip(np.searchsorted(edges, dist, side="right") - 1, 0, POINT_BINS - 1)
    mass = np.bincount(which, weights=grad, minlength=POINT_BINS)
    count = np.bincount(which, minlength=POINT_BINS)
    mean = np.divide(mass, count, out=np.zeros_like(mass), where=count > 0)
    total = float(grad.sum()) / n
    order = np.argsort(dist, kind="stable")
    cum = np.cumsum(grad[order])
    radius_90 = (float(dist[order][np.searchsorted(cum, 0.9 * cum[-1] - 1e-12 * cum[-1])])
                 if cum.size and cum[-1] > 0 else None)
    erf.arrays.update(dist=dist, grad=grad, xy=xy, edges=edges, mean=mean, mass=mass / n)
    erf.stats.update(kind="points", centre=[int(p.centre) for p in probes], total=total,
                     bin_edges=edges.tolist(), mean_per_point=mean.tolist(), mass_per_bin=(mass / n).tolist(),
                     points_per_bin=(count / n).tolist(), radius_90=radius_90, max_distance=float(edges[-1]))


# ------------------------------------------------------------------------------------------------
# models and inputs from the command line
# ------------------------------------------------------------------------------------------------
@dataclass
class Subject:
    """One model of the picture: its config, checkpoint and ERF."""

    config: str
    checkpoint: str | None
    erf: ERF | None = None
    source: str = ""

    @property
    def label(self) -> str:
        return Path(self.config).stem

    @property
    def weights(self) -> str:
        return f"trained: {Path(self.checkpoint).name}" if self.checkpoint else "untrained (random init)"


def load_model(config: str, checkpoint: str | None, cfg_options, seed: int, device: str):
    """``(cfg, model)``: the config's model in eval mode on ``device``, with the checkpoint's weights
    (a checkpoint that does not fit is a :class:`CheckpointError` naming the tensors) or untrained
    (seeded)."""
    import torch

    from glocal.core.errors import ConfigError
    from glocal.tasks.engine import build_model, load_weights, prepare_config, validate_config

    cfg = prepare_config(config, cfg_options)
    validate_config(cfg)
    torch.manual_seed(seed)
    model = build_model(cfg)
    if not all(hasattr(model, k) for k in ("adapter", "backbone", "extract")):
        raise ConfigError(f"{config}: the ERF needs a task model (adapter -> backbone -> head); its model is "
                          f"{_name(model)}")
    if checkpoint:
        model = load_weights(model, checkpoint)
    try:
        model = model.to(device).eval()
    except (RuntimeError, AssertionError) as e:
        raise ConfigError(f"--device {device}: {e}") from e
    return cfg, model


def sample_batches(cfg, config: str, samples: int, random: bool, input_shape, seed: int):
    """``(batches, description)``: one collated batch per sample (see the module doc)."""
    import torch

    from glocal.core.errors import ConfigError, DataError, GlocalError
    from glocal.modalities.registry import COLLATES, DATASETS

    if random:
        shape = tuple(input_shape or cfg.get("input_shape", ()) or ())
        if len(shape) < 2:
            raise ConfigError(f"--random needs the input batch shape: give --input-shape (e.g. 1,1,64,64) or "
                              f"input_shape in {config}")
        shape = (1, *shape[1:])
        g = torch.Generator().manual_seed(seed)
        batches = [dict(inputs=torch.randn(shape, generator=g)) for _ in range(samples)]
        return batches, f"{_count(samples, 'random N(0, 1) input')} of shape {list(shape)}"
    loader = cfg.get("test_dataloader") or {}
    spec = loader.get("dataset")
    if not spec:
        raise ConfigError(f"{config} has no test_dataloader.dataset to take inputs from: run with --random "
                          f"--input-shape ...")
    spec = spec.to_dict() if hasattr(spec, "to_dict") else dict(spec)
    try:
        dataset = DATASETS.build(spec)
    except (GlocalError, OSError) as e:
        raise DataError(f"{config}: its test dataset {spec.get('type')} cannot be built ({e}); run with --random "
                        f"--input-shape ... for random inputs") from e
    collate_cfg = loader.get("collate_fn")
    collate = COLLATES.build(collate_cfg) if collate_cfg is not None else getattr(dataset, "collate", None)
    if not callable(collate):
        raise ConfigError(f"{config}: dataset {_name(dataset)} has no collate: give test_dataloader a collate_fn")
    n = len(dataset)
    if n == 0:
        raise DataError(f"{config}: the test dataset {_name(dataset)} is empty")
    indices = sorted(set(np.linspace(0, n - 1, min(samples, n)).round().astype(int).tolist()))
    batches = [collate([dataset[(i, seed)]]) for i in indices]
    return batches, f"{_count(len(indices), 'sample')} of the test set ({_name(dataset)}, {_count(n, 'sample')})"


def measure(model, batches, target: str, wrt: str, seed: int) -> ERF:
    """The averaged ERF of ``model`` over ``batches`` (one probe each)."""
    import torch

    from glocal.core.errors import ConfigError, InputError

    g = torch.Generator().manual_seed(seed)
    probes = []
    for batch in batches:
        try:
            probes.append(probe(model, batch, target=target, wrt=wrt, generator=g))
        except InputError as e:  # MissingStructureError included
            if set(batch) != {"inputs"}:
                raise
            raise ConfigError(f"--random gives the model a batch of inputs only (shape {list(batch['inputs'].shape)}), "
                              f"which does not fit it: {e} Set --input-shape, or use the config's test dataset (drop "
                              f"--random).") from e
    return average(probes)


# ------------------------------------------------------------------------------------------------
# text, files and the picture
# ------------------------------------------------------------------------------------------------
def describe(s: Subject) -> str:
    """The line printed for one model."""
    st = s.erf.stats
    head = f"{s.label} ({s.weights}): "
    if st["kind"] == "grid":
        lo, hi = st["input_sizes"]
        dims = "x".join(str(a) if a == b else f"{a}-{b}" for a, b in zip(lo, hi))
        what = {1: f"1D ERF over inputs of {dims} steps", 2: f"2D ERF on {dims} inputs",
                3: f"3D ERF on {dims} inputs"}[st["rank"]]
        if len({(tuple(t), tuple(g)) for t, g in zip(st["tokens"], st["last_grids"])}) == 1:
            grid = "x".join(map(str, st["last_grids"][0]))
            token = f"central token {tuple(st['tokens'][0])} of the {grid} last stage"
        else:
            token = "the central token of each input's last stage"
        word = {1: "windows", 2: "squares", 3: "cubes"}[st["rank"]]
        parts = [(k, v) for k, v in st["within"].items() if k in ("20%", "30%", "50%", "99%")]
        sides = "/".join(str(v["side"]) if v else "-" for _, v in parts)
        ratios = "/".join(f"{100 * v['area_ratio']:.1f}%" if v else "-" for _, v in parts)
        text = (f"{what}, {token}; {'/'.join(k for k, _ in parts)} of the gradient within {word} of side {sides} "
                f"(area ratio {ratios})")
    elif st["kind"] == "graph":
        hop = st["hops_90"]
        text = (f"hop profile around the highest-degree node, {len(st['mass_per_hop'])} hop distances; 90% of the "
                f"gradient within {hop if hop is not None else '(never: unreached nodes hold over 10%)'} hops; "
                f"gradient up to hop {st['max_hop_with_gradient']}")
    else:
        r = st["radius_90"]
        text = (f"point profile around the token nearest the centroid; 90% of the gradient within distance "
                f"{r:.3g} of {st['max_distance']:.3g}" if r is not None else "point profile: no gradient")
    if st["zero"]:
        text += " [the gradient is zero everywhere: try --target random]"
    return head + text + f" [{_count(st['samples'], 'input')}, wrt {st['wrt']}]"


def write_outputs(subjects: list[Subject], out: Path, args) -> tuple[Path, Path]:
    """The JSON and the .npz beside ``out``."""
    records, arrays = [], {}
    for i, s in enumerate(subjects):
        st = dict(s.erf.stats)
        if s.erf.kind == "grid" and s.erf.arrays["map"].size <= MAX_JSON_VALUES:
            st["map"] = s.erf.arrays["map"].tolist()
        records.append(dict(config=s.config, checkpoint=s.checkpoint, trained=bool(s.checkpoint), inputs=s.source,
                            target=args.target, **st))
        for k, v in s.erf.arrays.items():
            arrays[f"{k}_{i}"] = np.asarray(v)
    js, npz = out.with_suffix(".json"), out.with_suffix(".npz")
    js.write_text(json.dumps(dict(models=records, npz=npz.name), indent=1) + "\n")
    np.savez_compressed(npz, **arrays)
    return js, npz


def draw(subjects: list[Subject], out: Path, log: bool = False, decades: float = 4.0, title: str = "") -> Path:
    """The PNG: the models side by side (rows for 3D maps and points) on one scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kind = subjects[0].erf.kind
    rank = subjects[0].erf.rank
    n = len(subjects)
    totals = [s.erf.stats["total"] for s in subjects]
    if kind == "grid":
        shares = [s.erf.arrays["map"] / t if t > 0 else s.erf.arrays["map"] * 0 for s, t in zip(subjects, totals)]
    elif kind == "graph":
        shares = [s.erf.arrays["mean"] / t if t > 0 else s.erf.arrays["mean"] * 0 for s, t in zip(subjects, totals)]
    else:
        shares = [s.erf.arrays["grad"] / (t * s.erf.stats["samples"]) if t > 0 else s.erf.arrays["grad"] * 0
                  for s, t in zip(subjects, totals)]
    top = max(float(np.max(v)) if np.size(v) else 0.0 for v in shares) or 1.0
    floor = top / 10 ** decades
    scale = "log10(share of the total gradient)" if log else "share of the total gradient"

    def show(v):
        return np.log10(np.maximum(v, floor)) if log else v

    vmin, vmax = (math.log10(floor), math.log10(top)) if log else (0.0, top)
    names = [f"{s.label}\n{s.weights}" for s in subjects]
    if kind == "grid" and rank == 2:
        fig, axes = plt.subplots(1, n, figsize=(4.6 * n + 1.2, 4.9), squeeze=False, layout="constrained")
        for ax, s, v, name in zip(axes[0], subjects, shares, names):
            st = s.erf.stats
            im = ax.imshow(show(v), cmap="inferno", vmin=vmin, vmax=vmax, interpolation="nearest")
            oy, ox = st["origin"]
            ax.plot([ox], [oy], marker="+", color="cyan", ms=9)
            for key, style in (("50%", "--"), ("90%", ":")):
                w = st["within"].get(key)
                if w:
                    h = (w["side"] - 1) / 2
                    ax.add_patch(plt.Rectangle((ox - h - 0.5, oy - h - 0.5), w["side"], w["side"], fill=False,
                                               ec="cyan", ls=style, lw=1))
            sides = ", ".join(f"{k}: {st['within'][k]['side']}" for k in ("50%", "90%", "99%") if st["within"].get(k))
            ax.set_title(f"{name}\nside holding {sides}", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
        fig.colorbar(im, ax=list(axes[0]), shrink=0.8, label=scale)
    elif kind == "grid" and rank == 1:
        fig, axes = plt.subplots(1, n, figsize=(5.2 * n, 3.8), squeeze=False, layout="constrained", sharey=True)
        for ax, s, v, name in zip(axes[0], subjects, shares, names):
            st = s.erf.stats
            offsets = np.arange(v.shape[0]) - st["origin"][0]
            ax.fill_between(offsets, v, step="mid", alpha=0.6)
            ax.step(offsets, v, where="mid", lw=0.8)
            w = st["within"].get("90%")
            if w:
                h = (w["side"] - 1) / 2
                ax.axvspan(-h - 0.5, h + 0.5, color="grey", alpha=0.15, label=f"90% within {w['side']} steps")
                ax.legend(fontsize=8, loc="upper right")
            if log:
                ax.set_yscale("log")
                ax.set_ylim(floor, top * 1.5)
            ax.set_xlabel("input step relative to the central token's (frames)")
            ax.set_title(name, fontsize=9)
        axes[0][0].set_ylabel(scale.replace("log10(", "").rstrip(")") if log else scale)
    elif kind == "grid":
        T = max(v.shape[0] for v in shares)
        frames = list(range(T)) if T <= 16 else sorted(set(np.linspace(0, T - 1, 16).round().astype(int).tolist()))
        fig, axes = plt.subplots(n, len(frames), figsize=(1.5 * len(frames) + 1.5, 1.7 * n + 0.7), squeeze=False,
                                 layout="constrained")
        for r, (s, v, name) in enumerate(zip(subjects, shares, names)):
            o = s.erf.stats["origin"]
            for c, t in enumerate(frames):
                ax = axes[r][c]
                if t < v.shape[0]:
                    im = ax.imshow(show(v[t]), cmap="inferno", vmin=vmin, vmax=vmax, interpolation="nearest")
                    ax.set_title(f"t {t - o[0]:+d}", fontsize=7)
                    if t == o[0]:
                        ax.plot([o[2]], [o[1]], marker="+", color="cyan", ms=7)
                ax.set_xticks([])
                ax.set_yticks([])
            axes[r][0].set_ylabel(name, fontsize=7)
        fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label=scale)
    elif kind == "graph":
        fig, axes = plt.subplots(1, n, figsize=(5 * n, 3.8), squeeze=False, layout="constrained", sharey=True)
        for ax, s, v, name in zip(axes[0], subjects, shares, names):
            st = s.erf.stats
            hops = np.arange(v.shape[0])
            ax.bar(hops, np.maximum(v, floor) if log else v, color="tab:blue")
            if st["hops_90"] is not None:
                ax.axvline(st["hops_90"] + 0.5, color="grey", ls="--", lw=1, label=f"90% within {st['hops_90']} hops")
                ax.legend(fontsize=8)
            if log:
                ax.set_yscale("log")
                ax.set_ylim(floor, top * 1.5)
            ax.set_xlabel("hops from the central node")
            ax.set_title(name, fontsize=9)
        axes[0][0].set_ylabel("mean share per node")
    else:  # points
        fig, axes = plt.subplots(n, 2, figsize=(10, 4.2 * n), squeeze=False, layout="constrained")
        ptop = max(float(np.max(s.erf.arrays["mean"])) / max(t, 1e-300) for s, t in zip(subjects, totals)) or 1.0
        for r, (s, v, name, t) in enumerate(zip(subjects, shares, names, totals)):
            a = s.erf.arrays
            st = s.erf.stats
            centres = (a["edges"][:-1] + a["edges"][1:]) / 2
            prof = a["mean"] / t if t > 0 else a["mean"] * 0
            axes[r][0].bar(centres, prof, width=np.diff(a["edges"]), color="tab:blue", align="center")
            if st["radius_90"] is not None:
                axes[r][0].axvline(st["radius_90"], color="grey", ls="--", lw=1,
                                   label=f"90% within {st['radius_90']:.3g}")
                axes[r][0].legend(fontsize=8)
            if log:
                axes[r][0].set_yscale("log")
                axes[r][0].set_ylim(ptop / 10 ** decades, ptop * 1.5)
            else:
                axes[r][0].set_ylim(0, ptop * 1.05)
            axes[r][0].set_xlabel("distance from the central token")
            axes[r][0].set_ylabel("mean share per point (per input)")
            axes[r][0].set_title(name, fontsize=9)
            order = np.argsort(v)
            sc = axes[r][1].scatter(a["xy"][order, 0], a["xy"][order, 1], c=show(v[order]), s=3, cmap="inferno",
                                    vmin=vmin, vmax=vmax)
            axes[r][1].plot([0], [0], marker="+", color="cyan", ms=10)
            axes[r][1].set_aspect("equal")
            axes[r][1].set_title("top-down (x, y) relative to the central token", fontsize=9)
        fig.colorbar(sc, ax=axes[:, 1].tolist(), shrink=0.8, label=scale)
    if kind == "grid" and rank == 2:
        title += "\nsquares: the smallest around the centre (+) holding 50% (dashed) and 90% (dotted) of the gradient"
    if title:
        fig.suptitle(title, fontsize=10)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return out


# ------------------------------------------------------------------------------------------------
def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from glocal.core.errors import ConfigError

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    subjects = [Subject(args.config, args.checkpoint)]
    if args.compare:
        subjects.append(Subject(args.compare[0], args.compare[1] if len(args.compare) > 1 else None))
    for s in subjects:
        cfg, model = load_model(s.config, s.checkpoint, args.cfg_options, args.seed, device)
        batches, s.source = sample_batches(cfg, s.config, args.samples, args.random, args.input_shape, args.seed)
        s.erf = measure(model, batches, args.target, args.wrt, args.seed)
        del model
    kinds = {(s.erf.kind, s.erf.rank) for s in subjects}
    if len(kinds) > 1:
        raise ConfigError(f"--compare: the two models' receptive fields are of different kinds "
                          f"({', '.join(f'{k} rank {r}' if k == 'grid' else k for k, r in kinds)}): nothing to draw "
                          f"side by side")
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        out = out.with_suffix(".png")
    out.parent.mkdir(parents=True, exist_ok=True)
    title = (f"Effective receptive field: |d {args.target}(central token) / d {subjects[0].erf.stats['wrt']}|\n"
             f"mean over {subjects[0].source}")
    for s in subjects:
        print(describe(s))
    js, npz = write_outputs(subjects, out, args)
    draw(subjects, out, log=args.log, decades=args.decades, title=title)
    print(f"wrote {out}, {js}, {npz}")
    return 0


if __name__ == "__main__":
    from glocal.tasks.engine import run_tool
    run_tool(main)

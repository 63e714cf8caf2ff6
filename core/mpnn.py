"""Message passing local encoders over ``Tokens.edge_index`` (torch_geometric), and kNN graphs for
point clouds.

- :class:`GINE`: the graph isomorphism network with edge features (Hu et al., "Strategies for
  Pre-training Graph Neural Networks", ICLR 2020), through PyG's ``GINEConv``:
  ``h_i' = MLP((1 + eps) h_i + sum_{j -> i} ReLU(h_j + e_ji))``.
- :class:`GatedGCN`: the edge-gated residual graph convnet (Bresson & Laurent, "Residual Gated
  Graph ConvNets", 2017; the edge-feature form of Dwivedi et al.'s benchmark and GraphGPS):
  ``g_ji = sigmoid(D h_i + E h_j + C e_ji)``,
  ``h_i' = act(A h_i + sum_j g_ji * B h_j / (sum_j g_ji + 1e-6))``.
  PyG's ``ResGatedGraphConv`` has neither the edge term ``C e`` nor the normalisation by the gate
  sum, so the layer is a ``MessagePassing`` of its own (``EdgeGatedConv``).

Both are token mixers with the edge list ``Tokens.edge_index [2, E]`` over flattened token indices
``b * L + i`` (row 0 the source ``j``, row 1 the target ``i``: PyG's ``source_to_target`` flow;
undirected graphs list both directions). Padded tokens carry no edges (checked once per batch), so
they never reach valid tokens; the layers run on the valid tokens only (``Tokens.pack``, the edges
renumbered to match) and return zero for padding. ``Tokens.edge_attr`` is optional; the edge
features are consumed per layer, not updated (a mixer returns node features only).

Edge features (``edge_dim``):
- ``None`` (default): ``Tokens.edge_attr``, when present, is already ``[E, dim]`` (embedded by the
  adapter's edge encoder, as in GraphGPS) and used as is; without it GINE's edge term is zero and
  GatedGCN drops its ``C e`` term;
- an int ``> 0``: ``Tokens.edge_attr [E, edge_dim]`` is required and projected to ``dim``;
- ``0``: the layer uses no edge features (kNN graphs): no edge projection is created.

Dense references (:func:`gine_reference`, :func:`gated_gcn_reference`) compute the same functions
with an adjacency tensor and einsums, one graph at a time over the padded batch; the tests check
the sparse layers against them.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from .errors import InputError
from .tokens import Tokens

__all__ = ["GINE", "GatedGCN", "KnnGINE", "knn_edges", "gine_reference", "gated_gcn_reference",
           "dense_adjacency"]


def _check_edges(edge_index: Tensor, tokens: Tokens, by: str) -> None:
    """Edges must index tokens of this batch and never touch padding (checked once per batch)."""
    tokens.derived("edges_checked", lambda: _validate_edges(edge_index, tokens, by))


def _validate_edges(edge_index: Tensor, tokens: Tokens, by: str) -> bool:
    if edge_index.numel() == 0:
        return True
    B, L = tokens.x.shape[:2]
    lo, hi = int(edge_index.min()), int(edge_index.max())
    if lo < 0 or hi >= B * L:
        raise InputError(f"{by}: Tokens.edge_index holds flattened indices b * L + i in [0, {B * L}); "
                         f"got values in [{lo}, {hi}]")
    if tokens.mask is not None and not bool(tokens.mask.reshape(-1)[edge_index].all()):
        raise InputError(f"{by}: an edge of Tokens.edge_index touches a padded token (mask False); "
                         f"padding must carry no edges")
    return True


def _packed_edges(tokens: Tokens) -> Tensor:
    """``Tokens.edge_index`` renumbered to the rows of ``tokens.pack(x)`` (computed once per batch;
    the edges are checked first, so none touches padding)."""
    index = tokens.valid_index()  # [N]
    if index is None:
        return tokens.edge_index

    def renumber() -> Tensor:
        row = torch.full((tokens.mask.numel(),), -1, dtype=torch.long, device=index.device)  # [B * L]
        row[index] = torch.arange(index.numel(), device=index.device)
        return row[tokens.edge_index]  # [2, E]

    return tokens.derived("packed_edge_index", renumber)


def _valid_count(tokens: Tokens) -> int:
    index = tokens.valid_index()
    return tokens.x.shape[0] * tokens.x.shape[1] if index is None else index.numel()


def _act(name: str | None) -> nn.Module:
    return nn.Identity() if name is None else getattr(nn, name)()


class _EdgeFeatures(nn.Module):
    """Edge features per the ``edge_dim`` rule in the module docstring: ``[E, dim]`` or None."""

    def __init__(self, dim: int, edge_dim: int | None, by: str):
        super().__init__()
        if edge_dim is not None and edge_dim < 0:
            raise ValueError(f"{by}: edge_dim must be None, 0 or positive; got {edge_dim}")
        self.dim, self.edge_dim, self.by = dim, edge_dim, by
        self.proj = nn.Linear(edge_dim, dim) if edge_dim else None

    def forward(self, tokens: Tokens) -> Tensor | None:
        if self.edge_dim == 0:
            return None
        if self.proj is not None:
            e = tokens.require("edge_attr", self.by)
            if e.shape[-1] != self.edge_dim:
                raise InputError(f"{self.by} was built with edge_dim={self.edge_dim} but Tokens.edge_attr "
                                 f"has {e.shape[-1]} features")
            return self.proj(e)
        e = tokens.edge_attr
        if e is not None and e.shape[-1] != self.dim:
            raise InputError(f"{self.by}: Tokens.edge_attr has {e.shape[-1]} features but the layer has "
                             f"dim={self.dim}; give edge_dim={e.shape[-1]} to project them")
        return e

    def extra_repr(self):
        return f"edge_dim={self.edge_dim}"


class GINE(nn.Module):
    """GINE token mixer (Hu et al. 2020) via ``torch_geometric.nn.GINEConv``.

    Reads ``Tokens.edge_index`` (required), ``Tokens.edge_attr`` (see ``edge_dim``) and
    ``Tokens.mask``.

    Args:
        dim: channels C.
        edge_dim: edge feature rule (module docstring): None, 0, or the width of ``edge_attr``.
        mlp_ratio: hidden width of the update MLP ``Linear(C, r*C) -> act -> Linear(r*C, C)``
            (GraphGPS uses 1).
        eps: initial epsilon of the self term ``(1 + eps) h_i``; ``train_eps`` learns it.

    Example:
        >>> import torch
        >>> from glocal.core import Tokens
        >>> ei = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])  # a path 0-1-2, both directions
        >>> GINE(16)(torch.randn(1, 3, 16), Tokens(torch.randn(1, 3, 16), edge_index=ei)).shape
        torch.Size([1, 3, 16])
    """

    def __init__(self, dim: int, edge_dim: int | None = None, mlp_ratio: float = 1.0, eps: float = 0.0,
                 train_eps: bool = False, act: str = "ReLU"):
        super().__init__()
        from torch_geometric.nn import GINEConv  # imported on use: registry lookups stay light

        hidden = int(dim * mlp_ratio)
        self.edges = _EdgeFeatures(dim, edge_dim, "GINE")
        self.conv = GINEConv(nn.Sequential(nn.Linear(dim, hidden), _act(act), nn.Linear(hidden, dim)),
                             eps=eps, train_eps=train_eps)

    def forward(self, x: Tensor, tokens: Tokens) -> Tensor:
        edge_index = tokens.require("edge_index", "GINE")  # [2, E]
        _check_edges(edge_index, tokens, "GINE")
        h = tokens.pack(x)  # [N, C]: the valid tokens (padding carries no edges)
        e = self.edges(tokens)  # [E, C] or None
        if e is None:  # no edge features: the edge term of the message is zero
            e = h.new_zeros(edge_index.shape[1], h.shape[-1])
        return tokens.unpack(self.conv(h, _packed_edges(tokens), e.to(h.dtype)))  # [B, L, C], padding 0

    def extra_macs(self, x: Tensor, tokens: Tokens) -> int:
        """Per edge: ``h_j + e_ji`` (C) and its scatter-sum into ``i`` (C); per node the self
        term ``(1 + eps) h_i + aggr`` (C), valid nodes only. Linear layers are counted by hooks."""
        E = tokens.require("edge_index", "GINE").shape[1]
        return 2 * E * x.shape[-1] + _valid_count(tokens) * x.shape[-1]


def _edge_gated_conv_class():
    """The ``MessagePassing`` of :class:`GatedGCN`, defined on first use so that importing this module
    (and with it every registry lookup) does not import torch_geometric. Also reachable as
    ``glocal.core.mpnn.EdgeGatedConv``."""
    global _EdgeGatedConv
    if _EdgeGatedConv is not None:
        return _EdgeGatedConv
    from torch_geometric.nn import MessagePassing

    class EdgeGatedConv(MessagePassing):
        """Messages ``[g_ji * Bh_j, g_ji]`` with ``g_ji = sigmoid(Dh_i + Eh_j (+ Ce_ji))``, summed
        per target; ``forward(Ah, Bh, Dh, Eh, Ce, edge_index) -> Ah + sum g Bh / (sum g + eps)``."""

        def __init__(self, eps: float = 1e-6):
            super().__init__(aggr="add", flow="source_to_target")
            self.eps = eps

        def forward(self, Ah: Tensor, Bh: Tensor, Dh: Tensor, Eh: Tensor, Ce: Tensor | None,
                    edge_index: Tensor) -> Tensor:
            N, C = Ah.shape
            agg = self.propagate(edge_index, Bh=Bh, Dh=Dh, Eh=Eh, Ce=Ce, size=(N, N))  # [N, 2C]
            num, den = agg[:, :C], agg[:, C:]
            return Ah + num / (den + self.eps)

        def message(self, Bh_j: Tensor, Dh_i: Tensor, Eh_j: Tensor, Ce: Tensor | None) -> Tensor:
            g = Dh_i + Eh_j  # [E, C]
            if Ce is not None:
                g = g + Ce
            g = torch.sigmoid(g)
            return torch.cat([g * Bh_j, g], dim=-1)  # [E, 2C]

    EdgeGatedConv.__module__, EdgeGatedConv.__qualname__ = __name__, "EdgeGatedConv"  # pickles by name
    _EdgeGatedConv = EdgeGatedConv
    return EdgeGatedConv


_EdgeGatedConv = None


def __getattr__(name: str):
    if name == "EdgeGatedConv":
        return _edge_gated_conv_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class GatedGCN(nn.Module):
    """Edge-gated GCN token mixer (Bresson & Laurent 2017; GraphGPS's GatedGCN layer without its
    internal norm/residual, which the block provides).

    Reads ``Tokens.edge_index`` (required), ``Tokens.edge_attr`` (see ``edge_dim``) and
    ``Tokens.mask``.

    Args:
        dim: channels C.
        edge_dim: edge feature rule (module docstring): None, 0, or the width of ``edge_attr``.
        act: activation on the output (GraphGPS applies ReLU before its residual); None for none.
    """

    def __init__(self, dim: int, edge_dim: int | None = None, act: str | None = "ReLU", bias: bool = True):
        super().__init__()
        self.edges = _EdgeFeatures(dim, edge_dim, "GatedGCN")
        self.A, self.B, self.D, self.E = (nn.Linear(dim, dim, bias=bias) for _ in range(4))
        self.C = None if edge_dim == 0 else nn.Linear(dim, dim, bias=bias)
        self.conv = _edge_gated_conv_class()()
        self.act = _act(act)

    def forward(self, x: Tensor, tokens: Tokens) -> Tensor:
        edge_index = tokens.require("edge_index", "GatedGCN")  # [2, E]
        _check_edges(edge_index, tokens, "GatedGCN")
        h = tokens.pack(x)  # [N, C]: the valid tokens (padding carries no edges)
        e = self.edges(tokens)  # [E, C] or None
        Ce = None if e is None or self.C is None else self.C(e.to(h.dtype))
        out = self.conv(self.A(h), self.B(h), self.D(h), self.E(h), Ce, _packed_edges(tokens))
        return tokens.unpack(self.act(out))  # [B, L, C], padding 0

    def extra_macs(self, x: Tensor, tokens: Tokens) -> int:
        """Per edge: the gate sum ``Dh_i + Eh_j (+ Ce)`` (2C or C), ``g * Bh_j`` (C) and the
        scatter-sums of ``g * Bh_j`` and ``g`` (2C); per valid node the division and ``Ah +`` (2C).
        Linear layers are counted by hooks; the sigmoid is not counted."""
        C = x.shape[-1]
        E = tokens.require("edge_index", "GatedGCN").shape[1]
        has_edges = self.C is not None and (bool(self.edges.edge_dim) or tokens.edge_attr is not None)
        gate = 2 if has_edges else 1
        return (gate + 3) * E * C + 2 * _valid_count(tokens) * C


# --- kNN graphs for point clouds --------------------------------------------------------------------

class KnnGINE(nn.Module):
    """The kNN message-passing local encoder of point clouds: :class:`GINE` over each valid token's
    ``k`` nearest valid tokens by ``Tokens.pos`` (DGCNN / PointNet++ neighbourhoods), the relative
    position ``pos_j - pos_i`` projected to ``dim`` as the edge feature.

    The graph is built in the layer from the tokens it is given, so it serves at every level of a
    pooling hierarchy (PTv3's coarse tokens carry their members' mean position) where an adapter's
    ``edge_index`` would belong to the finest level only.

    Reads ``Tokens.pos [B, L, 3]`` (required) and ``Tokens.mask``.

    Example:
        >>> import torch
        >>> from glocal.core import Tokens
        >>> t = Tokens(torch.randn(2, 50, 16), pos=torch.rand(2, 50, 3))
        >>> KnnGINE(16, k=8)(t.x, t).shape
        torch.Size([2, 50, 16])
    """

    def __init__(self, dim: int, k: int = 16, mlp_ratio: float = 1.0, act: str = "ReLU"):
        super().__init__()
        if k < 1:
            raise ValueError(f"KnnGINE: k must be >= 1; got {k}")
        self.k = k
        self.conv = GINE(dim, edge_dim=3, mlp_ratio=mlp_ratio, act=act)

    def graph(self, tokens: Tokens) -> Tokens:
        """``tokens`` with ``edge_index`` (the kNN graph) and ``edge_attr`` (``pos_j - pos_i``)."""
        pos = tokens.require("pos", "KnnGINE")  # [B, L, 3]
        edge_index = knn_edges(pos.detach(), self.k, tokens.mask)  # [2, E]
        flat = pos.reshape(-1, pos.shape[-1])
        return tokens.replace(edge_index=edge_index, edge_attr=flat[edge_index[0]] - flat[edge_index[1]])

    def forward(self, x: Tensor, tokens: Tokens) -> Tensor:
        return self.conv(x, self.graph(tokens))  # [B, L, C], padding 0

    def extra_macs(self, x: Tensor, tokens: Tokens) -> int:
        return self.conv.extra_macs(x, self.graph(tokens))

    def extra_repr(self):
        return f"k={self.k}"


@torch.no_grad()
def knn_edges(pos: Tensor, k: int, mask: Tensor | None = None, chunk: int = 2048,
              loop: bool = False, method: str = "auto") -> Tensor:
    """Edges from each valid point's ``k`` nearest valid neighbours to it: ``[2, E]`` over
    flattened indices ``b * L + i`` (row 0 neighbour ``j``, row 1 point ``i``).

    Padded points are excluded both as queries and as neighbours, the point itself unless
    ``loop``; a point with fewer than ``k`` valid others links to all of them. Two ways, the same
    neighbours (up to ties in distance):

    - ``"brute"``: distances from ``chunk`` query points at a time to all (``cdist``, memory
      ``chunk * L``), O(L^2): the reference;
    - ``"grid"`` (3D): :func:`_knn_grid`, candidates from each point's 3x3x3 block of cells of a
      uniform grid, exact (a point whose k-th candidate lies farther than a cell side is searched
      again with larger cells, finally against all points), about O(L k).

    ``"auto"``: the grid for 3D clouds of more than ``chunk`` points, else brute force.

    Args:
        pos: ``[B, L, P]`` coordinates.
        k: neighbours per point.
        mask: ``[B, L]`` bool validity, or None for all valid.
    """
    if pos.dim() != 3:
        raise InputError(f"knn_edges: pos must be [B, L, P]; got {tuple(pos.shape)}")
    if method not in ("auto", "grid", "brute"):
        raise InputError(f"knn_edges: method must be 'auto', 'grid' or 'brute'; got {method!r}")
    B, L, P = pos.shape
    valid = torch.ones(B, L, dtype=torch.bool, device=pos.device) if mask is None else mask
    sources, targets = [], []
    for b in range(B):
        rows = valid[b].nonzero().squeeze(1)  # [n] the sample's valid points
        n = rows.numel()
        kk = min(k, n if loop else n - 1)
        if kk <= 0:
            continue
        p = pos[b, rows]
        grid = method == "grid" or (method == "auto" and n > chunk)
        if grid and P != 3:
            raise InputError(f"knn_edges: method='grid' needs 3D points; got P={P}")
        idx = _knn_grid(p, kk, loop, chunk) if grid else _knn_brute(p, None, kk, loop, chunk)  # [n, kk]
        sources.append(rows[idx].reshape(-1) + b * L)
        targets.append(rows.repeat_interleave(kk) + b * L)
    if not sources:
        return torch.empty(2, 0, dtype=torch.long, device=pos.device)
    return torch.stack([torch.cat(sources), torch.cat(targets)])


def _knn_brute(p: Tensor, queries: Tensor | None, k: int, loop: bool, chunk: int) -> Tensor:
    """``[q, k]`` indices of the ``k`` nearest of ``p [n, P]`` to each query row (all rows when
    ``queries`` is None), from full distance rows, ``chunk`` queries at a time."""
    queries = torch.arange(p.shape[0], device=p.device) if queries is None else queries
    out = []
    for start in range(0, queries.numel(), chunk):
        q = queries[start:start + chunk]
        d = torch.cdist(p[q], p)  # [q, n]
        if not loop:
            d[torch.arange(q.numel(), device=p.device), q] = float("inf")
        out.append(d.topk(k, dim=-1, largest=False).indices)
    return torch.cat(out) if out else queries.new_zeros(0, k)


def _cells(p: Tensor, lo: Tensor, h: float):
    """Points sorted into cubic cells of side ``h``: ``(key [n], perm [n], keys [U], counts [U],
    starts [U], step [27])``: each point's cell key (a one-cell margin, so neighbour keys never
    wrap), the order that sorts the points by cell, the occupied cells, their sizes and first
    positions in that order, and the key offsets of the 27 cells of a 3x3x3 block."""
    cell = torch.floor((p - lo) / h).long()  # [n, 3]
    dims = cell.amax(0) + 3
    key = ((cell[:, 0] + 1) * dims[1] + cell[:, 1] + 1) * dims[2] + cell[:, 2] + 1
    key_sorted, perm = key.sort()
    keys, counts = torch.unique_consecutive(key_sorted, return_counts=True)
    d = torch.arange(-1, 2, device=p.device)
    offs = torch.cartesian_prod(d, d, d)  # [27, 3]
    step = (offs[:, 0] * dims[1] + offs[:, 1]) * dims[2] + offs[:, 2]
    return key, perm, keys, counts, torch.cumsum(counts, 0) - counts, step


def _block(key: Tensor, keys: Tensor, counts: Tensor, step: Tensor) -> tuple[Tensor, Tensor]:
    """``(at [q, 27], cnt [q, 27])``: for points of cell ``key [q]``, the index of each of their 27
    block cells among the occupied ``keys`` and its point count (0 where the cell is empty)."""
    nk = key[:, None] + step
    at = torch.searchsorted(keys, nk).clamp_max(keys.numel() - 1)
    return at, torch.where(keys[at] == nk, counts[at], torch.zeros_like(at))


def _knn_grid(p: Tensor, k: int, loop: bool, chunk: int) -> Tensor:
    """``[n, k]`` exact k nearest neighbours of 3D points ``p [n, 3]`` through a uniform grid.

    Cells of side ``h``, grown from below a surface's point spacing until 95% of a sample of points
    have at least ``4k`` points in their 3x3x3 block of cells (on a surface, the radius-``h`` ball
    around a point covers about a third of its block's area); each point's candidates are the
    points of its block. Every point within ``h`` of a point lies in its block, so where the k-th
    candidate is at most ``h`` away the k found are the true nearest. The points not proven so
    (sparse regions) are searched again with cells twice as large, up to four times, and the
    few left after that by full distance rows.

    The work is laid out for gathers of contiguous memory: the points are sorted by cell, each
    cell's candidate list (the concatenated index ranges of its 27 block cells) is built once for
    all its points, and the queries go in order of their block's size, ``chunk * 256`` candidate
    distances at a time, each chunk padded only to its own largest block (an empty slot points at
    a sentinel at infinity)."""
    n, dev = p.shape[0], p.device
    lo = p.amin(0)
    extent = (p.amax(0) - lo).clamp_min(1e-12)
    probe = torch.linspace(0, n - 1, min(n, 512), device=dev).long()  # points whose blocks size h
    h = float(extent.max()) * (k / n) ** 0.5 / 4  # below a surface's spacing (k points per h^2); grown
    for _ in range(40):
        key, perm, keys, counts, starts, step = _cells(p, lo, h)
        block = _block(key[probe], keys, counts, step)[1].sum(1)  # [probe]
        if float(block.float().quantile(0.05)) >= 4 * k:  # a radius-h ball then holds k for nearly all
            break
        h *= 1.5
    out = torch.empty(n, k, dtype=torch.long, device=dev)
    todo = None  # first pass: every point
    for attempt in range(5):
        if attempt:
            h *= 2
            key, perm, keys, counts, starts, step = _cells(p, lo, h)
        sentinel = p.new_full((1,), float("inf"))
        xs, ys, zs = (torch.cat([p[perm, d], sentinel]) for d in range(3))  # [n + 1] coordinates by cell
        at, cnt = _block(keys, keys, counts, step)  # [U, 27] each occupied cell's block
        ends = cnt.cumsum(1)  # [U, 27] end of each block cell's range in the cell's candidate list
        total = ends[:, -1]  # [U] candidates per cell
        if todo is None:
            qs = torch.arange(n, device=dev)  # positions in cell order
            qcell = torch.repeat_interleave(torch.arange(keys.numel(), device=dev), counts)
        else:
            rank = torch.empty_like(perm)
            rank[perm] = torch.arange(n, device=dev)
            qs = rank[todo].sort().values
            qcell = torch.searchsorted(starts, qs, right=True) - 1
        order = total[qcell].argsort(stable=True)  # by block size; a cell's points stay together
        qs, qcell = qs[order], qcell[order]
        qtot = total[qcell]
        far, s, budget = [], 0, chunk * 256
        while s < qs.numel():
            e = min(qs.numel(), s + max(1, budget // max(1, int(qtot[s]))))
            e = min(qs.numel(), s + max(1, budget // max(1, int(qtot[e - 1]))))  # padded to the chunk's largest
            q, T = qs[s:e], max(k, int(qtot[e - 1]))  # at least k slots: a sparse block pads with the sentinel
            cells, ci = torch.unique_consecutive(qcell[s:e], return_inverse=True)
            slot = torch.arange(T, device=dev)
            j = torch.searchsorted(ends[cells], slot.expand(cells.numel(), T).contiguous(), right=True)
            j = j.clamp_max(26)  # [u, T] which block cell a slot falls in
            src = starts[at[cells].gather(1, j)] + slot - (ends[cells].gather(1, j) - cnt[cells].gather(1, j))
            src = torch.where(slot < total[cells][:, None], src, n)  # [u, T] candidate positions; n: sentinel
            cand = src[ci]  # [q, T]
            dx = xs[cand] - xs[q, None]
            dist = dx * dx
            dy = ys[cand] - ys[q, None]
            dist.addcmul_(dy, dy)
            dz = zs[cand] - zs[q, None]
            dist.addcmul_(dz, dz)  # [q, T] squared distances, inf at the sentinel
            if not loop:
                dist.masked_fill_(cand == q[:, None], float("inf"))
            best, arg = dist.topk(k, dim=-1, largest=False)  # [q, k]
            rows = perm[q]
            out[rows] = perm[cand.gather(1, arg).clamp_max(n - 1)]
            bad = ~(best[:, -1] <= h * h)  # k-th candidate beyond h (or too few): not proven nearest
            if bad.any():
                far.append(rows[bad])
            s = e
        if not far:
            return out
        todo = torch.cat(far)
    out[todo] = _knn_brute(p, todo, k, loop, chunk)
    return out


# --- dense references -------------------------------------------------------------------------------

def dense_adjacency(tokens: Tokens, edge_attr: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
    """``A [B, L, L]`` with ``A[b, i, j]`` = number of edges ``j -> i``, and the edge features
    scattered to ``[B, L, L, C]`` (graphs without multi-edges)."""
    B, L = tokens.x.shape[:2]
    src, dst = tokens.require("edge_index", "dense_adjacency")
    b, i, j = dst // L, dst % L, src % L
    A = torch.zeros(B, L, L, dtype=tokens.x.dtype, device=tokens.x.device)
    A.index_put_((b, i, j), torch.ones_like(b, dtype=A.dtype), accumulate=True)
    Ed = None
    if edge_attr is not None:
        Ed = edge_attr.new_zeros(B, L, L, edge_attr.shape[-1])
        Ed[b, i, j] = edge_attr
    return A, Ed


def gine_reference(layer: GINE, x: Tensor, tokens: Tokens) -> Tensor:
    """:class:`GINE` with a dense adjacency: ``mlp((1+eps) h_i + sum_j A_ij relu(h_j + E_ij))``."""
    e = layer.edges(tokens)
    if e is None:
        e = x.new_zeros(tokens.edge_index.shape[1], x.shape[-1])
    A, Ed = dense_adjacency(tokens, e.to(x.dtype))  # [B, L, L], [B, L, L, C]
    msg = torch.relu(x[:, None, :, :] + Ed)  # [B, L(i), L(j), C]
    agg = torch.einsum("bij,bijc->bic", A, msg)
    return layer.conv.nn((1 + layer.conv.eps) * x + agg)


def gated_gcn_reference(layer: GatedGCN, x: Tensor, tokens: Tokens) -> Tensor:
    """:class:`GatedGCN` with a dense adjacency and einsums."""
    e = layer.edges(tokens)
    Ce = None if e is None or layer.C is None else layer.C(e.to(x.dtype))
    A, CeD = dense_adjacency(tokens, Ce)
    gate = layer.D(x)[:, :, None, :] + layer.E(x)[:, None, :, :]  # [B, L(i), L(j), C]
    if CeD is not None:
        gate = gate + CeD
    g = torch.sigmoid(gate)
    num = torch.einsum("bij,bijc,bjc->bic", A, g, layer.B(x))
    den = torch.einsum("bij,bijc->bic", A, g)
    return layer.act(layer.A(x) + num / (den + layer.conv.eps))

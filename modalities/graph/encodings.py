"""Positional and structural encodings of graphs, as pipeline transforms, computed once per graph.

- :class:`RWSE` (random-walk structural encoding; Dwivedi et al., "Graph Neural Networks with
  Learnable Structural and Positional Representations", ICLR 2022, as GraphGPS uses it): for each
  node ``i`` the return probabilities ``[P^1_ii, ..., P^steps_ii]`` of the random walk
  ``P = D^-1 A``. Sample field ``rwse`` float32 ``[N, steps]``. A node without edges has zeros.
- :class:`LapPE` (Laplacian eigenvector positional encoding; Dwivedi & Bresson 2020, Kreuzer et
  al. 2021): the ``k`` eigenvectors of the normalised Laplacian ``L = I - D^-1/2 A D^-1/2`` that
  follow the first (eigenvalue 0) in ascending order, and their eigenvalues. Sample fields
  ``lap_vec`` float32 ``[N, k]`` (row ``i``: node ``i``'s entry of each eigenvector) and
  ``lap_val`` float32 ``[N, k]`` (the eigenvalues, the same for every node). A graph with fewer
  than ``k + 1`` nodes has ``N - 1`` such pairs: the rest is zero-padded, and the ``LapPEEncoder``
  reads which pairs are real from the graph's node count. Graphs of up to
  :data:`DENSE_MAX_NODES` nodes use the dense ``numpy.linalg.eigh``; larger ones scipy's sparse
  ``eigsh`` in shift-invert mode around ``-1e-3`` (a sparse factorisation, no ``N x N`` matrix).
  Each eigenvector's sign is fixed (its largest-magnitude entry positive) so the cached values do
  not depend on the solver; with ``sign_flip=True`` (training) every eigenvector is multiplied by
  a random sign drawn from the sample's rng, as GraphGPS does: set ``sign_flip=False`` in the
  validation and test pipelines.

Both are transforms ``t(sample, rng) -> sample`` over the sample format of
:mod:`glocal.modalities.graph.base` (``inputs [N, ...]``, ``edge_index [2, E]``) and can run
anywhere. Inside a graph dataset they run once per graph: the dataset finds them in its pipeline,
looks each graph up in the on-disk cache (:class:`EncodingCache`, keyed by the graph's content:
a hash of ``edge_index`` and ``N``, and by the transform's settings), computes only the graphs it
does not find, and logs ``PE cache: N hits, M computed in X s``. The transform then only attaches
the values (and flips signs).

Dense references (:func:`rwse_reference`, :func:`lap_pe_reference`) compute the same quantities
with plain dense linear algebra in float64, for the tests.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import numpy as np
import torch
from mmengine.logging import print_log

from glocal.core.errors import ConfigError, DataError

from .cache import cache_root, graph_keys, load_cache, save_cache, settings_key

__all__ = ["RWSE", "LapPE", "GraphEncoding", "EncodingCache", "rwse", "lap_pe", "rwse_reference",
           "lap_pe_reference", "DENSE_MAX_NODES", "EncodingTable", "precompute_encodings"]

DENSE_MAX_NODES = 256  # up to this many nodes, dense matrices (fast, exact); above, scipy.sparse
_CACHE_VERSION = 1  # bump when a cached file's layout changes


# ------------------------------------------------------------------------------------------------
# the computations (numpy / scipy, one graph at a time)
# ------------------------------------------------------------------------------------------------
def _adjacency(edge_index: np.ndarray, num_nodes: int, dense: bool):
    """``A`` with ``A[i, j]`` = number of edges ``i -> j`` (float64), dense or scipy CSR."""
    src, dst = np.asarray(edge_index, dtype=np.int64)
    if dense:
        a = np.zeros((num_nodes, num_nodes))
        np.add.at(a, (src, dst), 1.0)
        return a
    from scipy import sparse

    return sparse.csr_matrix((np.ones(len(src)), (src, dst)), shape=(num_nodes, num_nodes))


def rwse(edge_index: np.ndarray, num_nodes: int, steps: int) -> np.ndarray:
    """Random-walk return probabilities ``diag(P^k)``, ``k = 1..steps``, ``P = D^-1 A``: float32
    ``[N, steps]``. Dense matrix powers up to :data:`DENSE_MAX_NODES` nodes; above, sparse products
    (cost grows with the number of nodes within ``steps`` hops of each node)."""
    dense = num_nodes <= DENSE_MAX_NODES
    a = _adjacency(edge_index, num_nodes, dense)
    deg = np.asarray(a.sum(1)).reshape(-1)
    inv = np.divide(1.0, deg, out=np.zeros_like(deg), where=deg > 0)
    out = np.empty((num_nodes, steps), dtype=np.float32)
    if dense:
        p = a * inv[:, None]  # [N, N]
        pk = p
        for k in range(steps):
            out[:, k] = np.diagonal(pk)
            if k + 1 < steps:
                pk = pk @ p
        return out
    from scipy import sparse

    p = sparse.diags(inv) @ a
    pk = p.tocsr()
    for k in range(steps):
        out[:, k] = pk.diagonal()
        if k + 1 < steps:
            pk = (pk @ p).tocsr()
    return out


def _fix_signs(vecs: np.ndarray) -> np.ndarray:
    """Each column multiplied by the sign that makes its largest-magnitude entry positive."""
    if vecs.size == 0:
        return vecs
    pick = np.abs(vecs).argmax(0)  # [k]
    signs = np.sign(vecs[pick, np.arange(vecs.shape[1])])
    return vecs * np.where(signs == 0, 1.0, signs)


def _normalised_laplacian(edge_index: np.ndarray, num_nodes: int, dense: bool):
    a = _adjacency(edge_index, num_nodes, dense)
    if dense:
        a = np.minimum(a + a.T, 1.0)  # symmetric, unweighted
    else:
        a = (a + a.T).sign()
    deg = np.asarray(a.sum(1)).reshape(-1)
    d = np.divide(1.0, np.sqrt(deg), out=np.zeros_like(deg), where=deg > 0)
    if dense:
        return np.eye(num_nodes) - d[:, None] * a * d[None, :]
    from scipy import sparse

    return (sparse.identity(num_nodes, format="csr") - sparse.diags(d) @ a @ sparse.diags(d)).tocsc()


def lap_pe(edge_index: np.ndarray, num_nodes: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` eigenpairs of the normalised Laplacian after the first: ``(vecs [N, k], vals [k])``
    float32, eigenvalues ascending, missing pairs (``N <= k``) zero. The graph is read as
    undirected and unweighted (``A`` symmetrised, duplicate edges counted once)."""
    m = min(k, num_nodes - 1)  # non-trivial pairs that exist
    vecs = np.zeros((num_nodes, k), dtype=np.float32)
    vals = np.zeros(k, dtype=np.float32)
    if m <= 0:
        return vecs, vals
    if num_nodes <= DENSE_MAX_NODES or m + 1 >= num_nodes - 1:
        lap = _normalised_laplacian(edge_index, num_nodes, dense=True)
        w, v = np.linalg.eigh(lap)
    else:
        from scipy.sparse.linalg import eigsh

        lap = _normalised_laplacian(edge_index, num_nodes, dense=False)
        v0 = np.random.default_rng(0).standard_normal(num_nodes)  # a fixed start: reproducible
        w, v = eigsh(lap, k=m + 1, sigma=-1e-3, which="LM", v0=v0)
        order = np.argsort(w)
        w, v = w[order], v[:, order]
    vals[:m] = np.clip(w[1:m + 1], 0.0, 2.0)
    vecs[:, :m] = _fix_signs(v[:, 1:m + 1])
    return vecs, vals


def rwse_reference(edge_index: np.ndarray, num_nodes: int, steps: int) -> np.ndarray:
    """``diag(matrix_power(D^-1 A, k))`` for each k, dense float64: the reference for :func:`rwse`."""
    a = np.zeros((num_nodes, num_nodes))
    for s, t in np.asarray(edge_index).T:
        a[s, t] += 1.0
    deg = a.sum(1, keepdims=True)
    p = np.where(deg > 0, a / np.where(deg > 0, deg, 1.0), 0.0)
    return np.stack([np.diagonal(np.linalg.matrix_power(p, k)) for k in range(1, steps + 1)], 1)


def lap_pe_reference(edge_index: np.ndarray, num_nodes: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Dense float64 eigendecomposition of ``I - D^-1/2 A D^-1/2``: ``(vecs [N, N], vals [N])``
    ascending, the reference for :func:`lap_pe` (compare up to each eigenvector's sign)."""
    a = np.zeros((num_nodes, num_nodes))
    for s, t in np.asarray(edge_index).T:
        a[s, t] = a[t, s] = 1.0
    deg = a.sum(1)
    d = np.where(deg > 0, 1.0 / np.sqrt(np.where(deg > 0, deg, 1.0)), 0.0)
    w, v = np.linalg.eigh(np.eye(num_nodes) - d[:, None] * a * d[None, :])
    return v, w


# ------------------------------------------------------------------------------------------------
# the transforms
# ------------------------------------------------------------------------------------------------
def _graph_of(sample: dict, who: str) -> tuple[np.ndarray, int]:
    """``(edge_index [2, E] int64, N)`` of a sample, with a :class:`DataError` naming the field."""
    x, ei = sample.get("inputs"), sample.get("edge_index")
    if x is None or ei is None:
        raise DataError(f"{who} needs a graph sample with 'inputs' [N, ...] and 'edge_index' [2, E]; got fields "
                        f"{sorted(sample)}")
    n = int(x.shape[0]) if hasattr(x, "shape") and len(x.shape) else 0
    ei = ei.numpy() if isinstance(ei, torch.Tensor) else np.asarray(ei)
    if ei.ndim != 2 or ei.shape[0] != 2 or ei.dtype.kind not in "iu":
        raise DataError(f"{who}: edge_index must be integer [2, E]; got {ei.dtype} {ei.shape}")
    if ei.size and (ei.min() < 0 or ei.max() >= n):
        raise DataError(f"{who}: edge_index refers to node {int(ei.max() if ei.max() >= n else ei.min())} but the "
                        f"graph has {n} nodes")
    return ei.astype(np.int64, copy=False), n


class GraphEncoding:
    """Base of the cached per-graph encodings: ``compute(edge_index, N) -> dict of arrays`` (done
    once per graph and cached), ``attach(sample, values, rng) -> sample`` (done for every sample).

    ``fields``: the per-node sample fields it adds (collated by ``PadCollate(node_keys=...)``);
    ``settings()``: what the computed values depend on (the cache key), ``name``: the class name.
    A dataset that precomputes the values hands them over in ``sample[self.cache_field]``.
    """

    fields: tuple[str, ...] = ()
    graph_values: tuple[str, ...] = ()  # computed values that are one per graph, not one per node

    @property
    def name(self) -> str:
        return type(self).__name__

    def settings(self) -> dict:
        raise NotImplementedError

    @property
    def cache_field(self) -> str:
        return "_" + self.name + "-" + settings_key(self.settings(), 8)

    def compute(self, edge_index: np.ndarray, num_nodes: int) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def attach(self, sample: dict, values: dict, rng: np.random.Generator) -> dict:
        raise NotImplementedError

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        values = sample.get(self.cache_field)
        if values is None:
            values = self.compute(*_graph_of(sample, self.name))
        out = {k: v for k, v in sample.items() if k != self.cache_field}
        return self.attach(out, values, rng)

    def __repr__(self):
        return f"{self.name}(" + ", ".join(f"{k}={v!r}" for k, v in self.settings().items()) + ")"


class RWSE(GraphEncoding):
    """Random-walk structural encoding, ``rwse [N, steps]`` (see the module doc).

    >>> import torch
    >>> ring = dict(inputs=torch.zeros(4, 1), edge_index=torch.tensor([[0, 1, 1, 2, 2, 3, 3, 0],
    ...                                                                [1, 0, 2, 1, 3, 2, 0, 3]]))
    >>> RWSE(steps=4)(ring, None)["rwse"][0].tolist()  # a 4-cycle: back after 2 steps half the time
    [0.0, 0.5, 0.0, 0.5]
    """

    fields = ("rwse",)

    def __init__(self, steps: int = 20):
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ConfigError(f"RWSE steps must be an int >= 1; got {steps!r}")
        self.steps = steps

    def settings(self) -> dict:
        return dict(steps=self.steps)

    def compute(self, edge_index, num_nodes):
        return dict(rwse=rwse(edge_index, num_nodes, self.steps))

    def attach(self, sample, values, rng):
        # a copy: the cached table stays intact whatever later transforms do
        return {**sample, "rwse": torch.from_numpy(np.array(values["rwse"], dtype=np.float32))}


class LapPE(GraphEncoding):
    """Laplacian eigenvector positional encoding, ``lap_vec [N, k]`` and ``lap_val [N, k]`` (see the
    module doc); ``sign_flip`` multiplies each eigenvector by a random sign from the sample's rng
    (training pipelines only)."""

    fields = ("lap_vec", "lap_val")
    graph_values = ("lap_val",)  # computed: vals [k] per graph, attached as [N, k]

    def __init__(self, k: int = 8, sign_flip: bool = True):
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ConfigError(f"LapPE k must be an int >= 1; got {k!r}")
        self.k, self.sign_flip = k, bool(sign_flip)

    def settings(self) -> dict:
        return dict(k=self.k)  # sign_flip happens after the cache

    def compute(self, edge_index, num_nodes):
        vecs, vals = lap_pe(edge_index, num_nodes, self.k)
        return dict(lap_vec=vecs, lap_val=vals)

    def attach(self, sample, values, rng):
        vecs = np.array(values["lap_vec"], dtype=np.float32)  # [N, k], a copy of the cached values
        vals = np.asarray(values["lap_val"], dtype=np.float32)  # [k]
        if self.sign_flip:
            if rng is None:
                raise DataError("LapPE(sign_flip=True) needs the sample's rng; use sign_flip=False outside a dataset")
            vecs = vecs * rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=self.k)
        return {**sample, "lap_vec": torch.from_numpy(vecs),
                "lap_val": torch.from_numpy(np.repeat(vals[None], len(vecs), 0))}

    def __repr__(self):
        return f"LapPE(k={self.k}, sign_flip={self.sign_flip})"


# ------------------------------------------------------------------------------------------------
# the cache: one file per (dataset, encoding settings), graphs keyed by content
# ------------------------------------------------------------------------------------------------
class EncodingTable:
    """The values of one encoding for the graphs of a dataset, in the dataset's order: per-node
    arrays concatenated (``ptr`` marks each graph's rows), per-graph arrays stacked. Few large
    arrays rather than one small array per graph: cheap to hold, to fork into data-loader workers
    and to slice."""

    def __init__(self, position: np.ndarray, ptr: np.ndarray, node: dict, graph: dict):
        self.position, self.ptr, self.node, self.graph = position, ptr, node, graph

    def get(self, g: int) -> dict | None:
        """The values of dataset graph ``g`` (None when it failed its checks)."""
        p = self.position[g]
        if p < 0:
            return None
        out = {k: v[self.ptr[p]:self.ptr[p + 1]] for k, v in self.node.items()}
        out.update({k: v[p] for k, v in self.graph.items()})
        return out


class EncodingCache:
    """The values of one :class:`GraphEncoding` for the graphs of one dataset, on disk.

    The file ``<cache_dir>/pe/<namespace>-<Encoding>-<settings digest>.pt`` holds, for every graph it
    has seen, its content key (:func:`~glocal.modalities.graph.cache.graph_keys`), its node count
    and the values: per-node arrays (first dim ``N``) concatenated over the graphs, per-graph
    arrays (``encoding.graph_values``) stacked. :meth:`lookup` returns the values of the given
    graphs, computing those the file lacks and writing the file back (atomically, once) with them
    added; graphs already there are read, never recomputed.
    """

    def __init__(self, encoding: GraphEncoding, namespace: str, cache_dir=None):
        self.encoding = encoding
        self.settings = dict(encoding.settings(), encoding=encoding.name, version=_CACHE_VERSION)
        self.path = cache_root("pe", cache_dir) / f"{namespace}-{encoding.name}-{settings_key(self.settings)}.pt"

    def _read(self) -> dict | None:
        obj = load_cache(self.path, _CACHE_VERSION, f"{self.encoding.name} cache")
        if (obj is None or obj.get("settings") != self.settings
                or set(obj.get("graph", {})) != set(self.encoding.graph_values)):
            return None
        return dict(keys=obj["keys"].numpy(), num_nodes=obj["num_nodes"].numpy(),
                    node={k: v.numpy() for k, v in obj["node"].items()},
                    graph={k: v.numpy() for k, v in obj["graph"].items()})

    def _merge(self, old: dict | None, new: list[dict], keys: np.ndarray, sizes: np.ndarray) -> dict:
        graph_names = [k for k in new[0] if k in self.encoding.graph_values]
        node_names = [k for k in new[0] if k not in graph_names]
        merged = dict(keys=keys, num_nodes=sizes,
                      node={k: np.concatenate([v[k] for v in new]) for k in node_names},
                      graph={k: np.stack([v[k] for v in new]) for k in graph_names})
        if old is not None and set(old["node"]) == set(node_names):
            merged = dict(keys=np.concatenate([old["keys"], keys]),
                          num_nodes=np.concatenate([old["num_nodes"], sizes]),
                          node={k: np.concatenate([old["node"][k], v]) for k, v in merged["node"].items()},
                          graph={k: np.concatenate([old["graph"][k], v]) for k, v in merged["graph"].items()})
        save_cache(self.path, dict(version=_CACHE_VERSION, settings=self.settings,
                                   keys=torch.from_numpy(merged["keys"]),
                                   num_nodes=torch.from_numpy(merged["num_nodes"]),
                                   node={k: torch.from_numpy(v) for k, v in merged["node"].items()},
                                   graph={k: torch.from_numpy(v) for k, v in merged["graph"].items()}))
        return merged

    @staticmethod
    def _rows(store: dict | None, keys: np.ndarray, sizes: np.ndarray) -> np.ndarray:
        """The row of each key in ``store`` (-1 where it is absent)."""
        if store is None or not len(store["keys"]) or not len(keys):
            return np.full(len(keys), -1, dtype=np.int64)
        order = np.argsort(store["keys"], kind="stable")
        pos = np.minimum(np.searchsorted(store["keys"][order], keys), len(order) - 1)
        rows = order[pos]
        hit = (store["keys"][rows] == keys) & (store["num_nodes"][rows] == sizes)
        return np.where(hit, rows, -1)

    def lookup(self, graphs: Sequence[tuple[np.ndarray, int] | None], who: str) -> tuple[EncodingTable, str]:
        """``(table, log line)`` for ``graphs[g] = (edge_index [2, E], N)``, or None for a graph
        that failed its checks (it has no values; it fails again when it is loaded)."""
        start = time.perf_counter()
        present = np.array([g for g, item in enumerate(graphs) if item is not None], dtype=np.int64)
        keys = graph_keys([graphs[g][0] for g in present], [graphs[g][1] for g in present])
        sizes = np.array([graphs[g][1] for g in present], dtype=np.int64)
        store = self._read()
        rows = self._rows(store, keys, sizes)
        missing = np.flatnonzero(rows < 0)
        # a graph may occur several times (same structure): compute each key once
        _, first = np.unique(keys[missing], return_index=True)
        todo = missing[np.sort(first)]
        t0 = time.perf_counter()
        new = [self.encoding.compute(*graphs[present[i]]) for i in todo]
        computed_s = time.perf_counter() - t0
        if new:
            store = self._merge(store, new, keys[todo], sizes[todo])
            rows = self._rows(store, keys, sizes)
            assert (rows >= 0).all(), "every graph is in the cache once its missing values are added"
        table = self._table(store, rows, sizes, len(graphs), present)
        repeats = f", {len(missing) - len(todo)} repeated structures" if len(missing) > len(todo) else ""
        line = (f"{who}: PE cache: {len(keys) - len(missing)} hits, {len(todo)} computed in {computed_s:.1f} s "
                f"({self.encoding!r} of {len(keys)} graphs{repeats}: {time.perf_counter() - start:.1f} s in all; "
                f"{self.path})")
        return table, line

    @staticmethod
    def _table(store: dict | None, rows: np.ndarray, sizes: np.ndarray, num_graphs: int,
               present: np.ndarray) -> EncodingTable:
        position = np.full(num_graphs, -1, dtype=np.int64)
        position[present] = np.arange(len(present))
        ptr = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        if store is None:  # no graph passed its checks
            return EncodingTable(position, ptr, {}, {})
        src_ptr = np.concatenate([[0], np.cumsum(store["num_nodes"])]).astype(np.int64)
        # node rows of each graph, gathered in dataset order: src_ptr[row] + 0..N-1
        index = np.repeat(src_ptr[rows] - ptr[:-1], sizes) + np.arange(ptr[-1])
        node = {k: v[index] for k, v in store["node"].items()}
        graph = {k: v[rows] for k, v in store["graph"].items()}
        return EncodingTable(position, ptr, node, graph)


def precompute_encodings(pipeline, graphs: Sequence[tuple[np.ndarray, int] | None], namespace: str,
                         cache_dir, who: str) -> tuple[dict[str, EncodingTable], list[str]]:
    """For each :class:`GraphEncoding` at the start of ``pipeline`` (before any other transform,
    which could change the graph), the values of every graph, from the cache or computed:
    ``{encoding.cache_field: table}``, and the log lines (also printed)."""
    out, lines = {}, []
    for t in getattr(pipeline, "transforms", []):
        if not isinstance(t, GraphEncoding):
            break
        table, line = EncodingCache(t, namespace, cache_dir).lookup(graphs, who)
        print_log(line, logger="current", level=logging.INFO)
        out[t.cache_field] = table
        lines.append(line)
    return out, lines

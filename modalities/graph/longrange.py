"""A generated long-range node-classification task: the label of a node lies more than ``depth``
hops away, so a local-only network of ``depth`` message-passing layers provably cannot beat chance,
while one global attention layer can solve it.

**The graphs.** Each sample is a *ladder*: two rails (paths) of ``m`` nodes each, joined by rungs
between their ``i``-th nodes. Rung 0 is always present and every other rung is kept with probability
``rung_prob``, so the ladders differ in structure but stay connected; the hop distance between two
nodes is about their distance along the rails. ``n`` (the node count) is drawn uniformly from
``nodes = (lo, hi)``, ``m = n // 2`` (an odd ``n`` adds one node at the end of rail 0). Node ids are
shuffled, so an id says nothing about the node's place.

**The evidence.** One *key* node, placed uniformly among the nodes that have some node more than
``depth`` hops away, carries a colour ``c``, uniform over ``colors`` values and drawn independently
of everything else in the sample. ``distractors`` other nodes carry colours of their own (each
uniform and independent) but are marked as distractors, not keys. Every other node is plain.
Node features (``features='categorical'``): one token per node, ``inputs [N, 1]`` long,

    0: plain;   1 + k: the key, colour k;   1 + colors + k: a distractor, colour k;

so ``vocab_size = 1 + 2 * colors`` (``features='onehot'``: the same as a float one-hot
``[N, vocab_size]``). There are no edge features.

**The labels.** ``node_label [N]``: every node more than ``depth`` hops from the key is labelled
with the key's colour ``c``; the key and the nodes within ``depth`` hops of it are unlabelled
(``-100``, the ignore index). Chance accuracy is ``1 / colors`` (25% with the default 4 colours).
All labelled nodes of a graph share one colour, so on a finite split a model blind to the key
scatters around chance by about ``sqrt(p (1 - p) / graphs)`` (p = 1 / colors: 1.9 points on 500
graphs); :meth:`LongRangeNodes.label_counts` gives the majority-class rate of a split.

**Why a local-only model of depth ``depth`` stays at chance (the proof).** Let a *local model of
depth d* be any network whose output at node ``v`` is computed by ``d`` rounds of message passing
along ``edge_index`` plus per-node operations (GINE, GatedGCN, their MLPs, per-node encoders and
heads, BatchNorm with fixed statistics, i.e. in eval mode), optionally fed structure-only inputs
such as RWSE or LapPE. After ``d`` rounds the state of ``v`` is a function of the graph's structure
and of the features of the nodes within ``d`` hops of ``v`` only (induction on the rounds: round
``t`` combines the states of ``v`` and its neighbours, each a function of the features within
``t - 1`` hops of them). For a labelled node ``v`` the key is more than ``d`` hops away, so none of
those features is the key's; the structure, the key's position and the distractors are drawn
independently of ``c``. So the output at ``v`` is independent of ``c``, and since ``c`` is uniform,
``P(prediction at v == c) = 1 / colors`` exactly, whatever the model learned: its expected accuracy
on the labelled nodes is chance. (:func:`recolor_key` makes the counterexample pair the tests use:
the same sample with another key colour, identical within ``depth`` hops of every labelled node,
with every label changed.) Global attention is not bound by this: the key is the only node whose
token lies in ``1..colors``, so one attention layer can make every node attend to it and read its
colour. The model's own BatchNorm in *training* mode mixes statistics across nodes and graphs, which
is why the proof is stated for the evaluated model.

**Splits.** Sample ``i`` of split ``s`` is generated from ``numpy.random.default_rng([seed, s, i])``
(``s`` = 0, 1, 2 for train, val, test), so the splits are disjoint random streams, a sample is
made on demand (about a millisecond at 80 nodes) and the whole set is a pure function of the
arguments. Positional encodings (``RWSE``, ``LapPE`` first in ``transforms``) are computed once per
graph and cached on disk by the graph dataset base, keyed by content.

**Node order for scans.** ``order='bfs'`` adds ``order [N]``, a breadth-first order from node 0
(:func:`bfs_order`), which :class:`~glocal.modalities.batch.PadCollate` pads into ``order [B, L]``
for ``Mamba(direction='order')`` and ``'order_bidirectional'``; the adapter passes it on as
``Tokens.order``.

Example:
    >>> ds = LongRangeNodes(split="val", num_graphs=4, nodes=(24, 30), depth=3)
    >>> s = ds[0]
    >>> s["inputs"].shape[1], s["edge_index"].shape[0], s["node_label"].shape == s["inputs"].shape[:1]
    (1, 2, True)
    >>> batch = ds.collate([ds[0], ds[1]])
    >>> sorted(k for k in batch if k != "data_samples")
    ['batch', 'edge_index', 'inputs', 'lengths', 'mask']
"""
from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import numpy as np
import torch

from glocal.core.errors import ConfigError, InputError

from .base import GraphDataset

__all__ = ["LongRangeNodes", "ladder_graph", "hop_distances", "bfs_order", "recolor_key", "IGNORE_INDEX"]

IGNORE_INDEX = -100
_SPLITS = {"train": 0, "val": 1, "test": 2}
_DEFAULT_NUM = {"train": 2000, "val": 500, "test": 500}


# --- graph helpers ---------------------------------------------------------------------------------

def _adjacency(edge_index, num_nodes: int) -> list[list[int]]:
    """Neighbour lists (sorted) of an edge list ``[2, E]`` read as directed edges ``src -> dst``."""
    ei = np.asarray(edge_index, dtype=np.int64).reshape(2, -1)
    adj: list[set[int]] = [set() for _ in range(num_nodes)]
    for s, d in ei.T:
        adj[int(s)].add(int(d))
    return [sorted(a) for a in adj]


def hop_distances(edge_index, num_nodes: int, source: int) -> np.ndarray:
    """Hop distance from ``source`` to every node along the edges (``[N]`` int64; -1 where
    unreachable). ``edge_index [2, E]`` lists directed edges; undirected graphs list both."""
    return _bfs(_adjacency(edge_index, num_nodes), source)


def _bfs(adj: list[list[int]], source: int) -> np.ndarray:
    num_nodes = len(adj)
    dist = np.full(num_nodes, -1, dtype=np.int64)
    dist[source] = 0
    queue = deque([source])
    while queue:
        u = queue.popleft()
        for w in adj[u]:
            if dist[w] < 0:
                dist[w] = dist[u] + 1
                queue.append(w)
    return dist


def _all_pairs_hops(edge_index: np.ndarray, num_nodes: int) -> np.ndarray:
    """``[N, N]`` hop distances of a connected graph (scipy's breadth-first all-pairs search)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import shortest_path

    ones = np.ones(edge_index.shape[1], dtype=np.float64)
    graph = coo_matrix((ones, (edge_index[0], edge_index[1])), shape=(num_nodes, num_nodes)).tocsr()
    return shortest_path(graph, unweighted=True).astype(np.int64)


def bfs_order(edge_index, num_nodes: int, start: int = 0) -> np.ndarray:
    """A breadth-first order of the nodes, ``[N]`` int64, a permutation of ``range(N)``: from
    ``start``, neighbours in increasing id; a disconnected graph continues from its smallest
    unvisited node. The node order a graph scan (``Mamba(direction='order')``) runs along.

    >>> bfs_order([[0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]], 5, start=2).tolist()
    [2, 1, 3, 0, 4]
    """
    adj = _adjacency(edge_index, num_nodes)
    seen = np.zeros(num_nodes, dtype=bool)
    order: list[int] = []
    for root in [start] + list(range(num_nodes)):
        if num_nodes == 0 or seen[root]:
            continue
        seen[root] = True
        queue = deque([root])
        while queue:
            u = queue.popleft()
            order.append(u)
            for w in adj[u]:
                if not seen[w]:
                    seen[w] = True
                    queue.append(w)
    return np.asarray(order, dtype=np.int64)


def ladder_graph(n: int, rung_prob: float, rng: np.random.Generator) -> np.ndarray:
    """A ladder on ``n`` nodes (rails ``0..m-1`` and ``m..2m-1``, ``m = n // 2``; node ``2m``, if
    any, hangs off the end of rail 0): rung 0 always, rung ``i > 0`` with probability
    ``rung_prob``. Returns the undirected edges, both directions, ``[2, E]`` int64, before any
    relabelling."""
    m = n // 2
    rail = np.arange(m - 1)
    pairs = [np.stack([rail, rail + 1]), np.stack([rail + m, rail + m + 1])]
    keep = np.concatenate([[True], rng.random(m - 1) < rung_prob])
    rungs = np.arange(m)[keep]
    pairs.append(np.stack([rungs, rungs + m]))
    if n % 2:
        pairs.append(np.array([[m - 1], [2 * m]]))
    und = np.concatenate(pairs, axis=1)
    return np.concatenate([und, und[::-1]], axis=1)


def recolor_key(sample: dict, color: int, colors: int) -> dict:
    """The same sample with the key's colour set to ``color``: the key's token and every label
    change, nothing else does (so every labelled node's ``depth``-hop neighbourhood is unchanged).
    Categorical features only."""
    x = sample["inputs"]
    if x.dtype != torch.long or x.shape[-1] != 1:
        raise InputError("recolor_key: takes categorical features (inputs [N, 1] long)")
    key = int(((x[:, 0] >= 1) & (x[:, 0] <= colors)).nonzero()[0])
    out = dict(sample)
    out["inputs"] = x.clone()
    out["inputs"][key, 0] = 1 + color
    labels = sample["node_label"].clone()
    labels[labels != IGNORE_INDEX] = color
    out["node_label"] = labels
    return out


# --- the dataset -----------------------------------------------------------------------------------

def _range(nodes) -> tuple[int, int]:
    lo, hi = (nodes, nodes) if isinstance(nodes, int) else tuple(int(v) for v in nodes)
    return lo, hi


class LongRangeNodes(GraphDataset):
    """Node classification where every labelled node is more than ``depth`` hops from its evidence
    (the module docstring has the construction and the proof that a local-only model of depth
    ``depth`` is at chance, ``1 / colors``).

    Args:
        split: ``'train'``, ``'val'`` or ``'test'`` (disjoint random streams).
        num_graphs: samples in this split (default 2000 train, 500 val/test).
        nodes: nodes per graph, an int or an inclusive range ``(lo, hi)``; ``lo >= 2 * (depth + 2)``.
        depth: labelled nodes are more than ``depth`` hops from the key.
        colors: number of classes (key colours); chance is ``1 / colors``.
        distractors: coloured non-key nodes per graph.
        rung_prob: probability of each ladder rung after the first.
        features: ``'categorical'`` (``inputs [N, 1]`` long tokens, for an embedding encoder of
            ``vocab_size`` rows) or ``'onehot'`` (``inputs [N, vocab_size]`` float).
        order: None, or ``'bfs'`` to add the breadth-first node ``order [N]`` for scans.
        seed: the base seed of all three splits.
        transforms, check, cache_dir, on_error, max_skips: as
            :class:`~glocal.modalities.graph.base.GraphDataset` (``RWSE`` / ``LapPE`` first in
            ``transforms`` are computed once per graph and cached on disk).
    """

    metainfo = dict(task="node classification", ignore_index=IGNORE_INDEX)
    cache_name = "longrange"

    def __init__(self, split: str = "train", num_graphs: int | None = None, nodes: int | Sequence[int] = (40, 80),
                 depth: int = 6, colors: int = 4, distractors: int = 2, rung_prob: float = 0.5,
                 features: str = "categorical", order: str | None = None, seed: int = 0, transforms=None,
                 check=None, cache_dir=None, on_error: str = "error", max_skips: int | None = None):
        super().__init__(transforms, check=check, cache_dir=cache_dir, on_error=on_error, max_skips=max_skips)
        if split not in _SPLITS:
            raise ConfigError(f"LongRangeNodes: split must be one of {sorted(_SPLITS)}; got {split!r}")
        lo, hi = _range(nodes)
        if depth < 0 or colors < 2 or distractors < 0:
            raise ConfigError(f"LongRangeNodes: needs depth >= 0, colors >= 2, distractors >= 0; got depth={depth}, "
                              f"colors={colors}, distractors={distractors}")
        if lo > hi or lo < 2 * (depth + 2):
            raise ConfigError(f"LongRangeNodes: nodes={nodes!r} must be a range lo <= hi with lo >= 2 * (depth + 2) = "
                              f"{2 * (depth + 2)}, so that every ladder has nodes more than depth={depth} hops apart")
        if distractors > lo - 1:
            raise ConfigError(f"LongRangeNodes: {distractors} distractors do not fit in graphs of {lo} nodes")
        if features not in ("categorical", "onehot"):
            raise ConfigError(f"LongRangeNodes: features must be 'categorical' or 'onehot'; got {features!r}")
        if order not in (None, "bfs"):
            raise ConfigError(f"LongRangeNodes: order must be None or 'bfs'; got {order!r}")
        if not 0.0 <= rung_prob <= 1.0:
            raise ConfigError(f"LongRangeNodes: rung_prob must lie in [0, 1]; got {rung_prob}")
        self.split, self.seed = split, int(seed)
        self.num_graphs = _DEFAULT_NUM[split] if num_graphs is None else int(num_graphs)
        self.nodes, self.depth, self.colors, self.distractors = (lo, hi), int(depth), int(colors), int(distractors)
        self.rung_prob, self.features, self.order = float(rung_prob), features, order
        self._sizes = np.array([self._rng(i).integers(lo, hi + 1) for i in range(self.num_graphs)], dtype=np.int64)
        self._setup()  # the pipeline's leading encodings, once per graph (cached on disk)

    @property
    def vocab_size(self) -> int:
        """Distinct node tokens: plain, ``colors`` key colours, ``colors`` distractor colours."""
        return 1 + 2 * self.colors

    @property
    def chance(self) -> float:
        """Expected accuracy of any model that cannot see the key: ``1 / colors``."""
        return 1.0 / self.colors

    def __len__(self) -> int:
        return self.num_graphs

    def _rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, _SPLITS[self.split], index])

    def num_nodes(self) -> np.ndarray:
        """Nodes per graph, ``[num_graphs]`` (the first draw of each graph's stream: no graph is built)."""
        return self._sizes

    def name_of(self, index: int) -> str:
        return f"longrange-{self.split}-{index}"

    def generate(self, index: int) -> tuple[dict, int]:
        """Sample ``index`` before the transforms (the fields of the module docstring and ``name``)
        and the key's node id."""
        rng = self._rng(index)
        lo, hi = self.nodes
        n = int(rng.integers(lo, hi + 1))  # the first draw: num_nodes() reads it alone
        edges = ladder_graph(n, self.rung_prob, rng)
        perm = rng.permutation(n)  # shuffle the ids: an id says nothing about the place
        edges = perm[edges]
        # the key: any node with some node more than `depth` hops away (structure only, never the colour)
        dist = _all_pairs_hops(edges, n)  # [n, n]
        far = np.flatnonzero(dist.max(1) > self.depth)
        key = int(far[rng.integers(len(far))])
        color = int(rng.integers(self.colors))
        others = np.delete(np.arange(n), key)
        chosen = rng.choice(others, size=self.distractors, replace=False)
        tokens = np.zeros(n, dtype=np.int64)
        tokens[key] = 1 + color
        tokens[chosen] = 1 + self.colors + rng.integers(self.colors, size=self.distractors)
        labels = np.where(dist[key] > self.depth, color, IGNORE_INDEX)
        if self.features == "categorical":
            inputs = torch.from_numpy(tokens).unsqueeze(1)  # [N, 1] long
        else:
            inputs = torch.nn.functional.one_hot(torch.from_numpy(tokens), self.vocab_size).float()  # [N, V]
        sample = dict(inputs=inputs, edge_index=torch.from_numpy(np.ascontiguousarray(edges)),
                      node_label=torch.from_numpy(labels), name=self.name_of(index))
        if self.order == "bfs":
            sample["order"] = torch.from_numpy(bfs_order(edges, n, start=0))
        return sample, key

    def graph(self, index: int) -> dict:
        return self.generate(index)[0]

    def key_of(self, index: int) -> int:
        """The key's node id in sample ``index``."""
        return self.generate(index)[1]

    def label_counts(self) -> np.ndarray:
        """Labelled nodes per class over the split, ``[colors]``: ``max / sum`` is the majority-class
        accuracy of this finite split (``1 / colors`` in expectation)."""
        counts = np.zeros(self.colors, dtype=np.int64)
        for i in range(len(self)):
            y = self.graph(i)["node_label"].numpy()
            counts += np.bincount(y[y != IGNORE_INDEX], minlength=self.colors)
        return counts

    def __repr__(self):
        return (f"LongRangeNodes(split={self.split!r}, num_graphs={self.num_graphs}, nodes={self.nodes}, "
                f"depth={self.depth}, colors={self.colors}, distractors={self.distractors})")

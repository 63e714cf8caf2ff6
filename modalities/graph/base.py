"""Graph samples, their checks, the dataset base and :class:`GraphList` (PyG ``Data`` in).

**The sample format.** One graph is a dict:

============  ==============================  ===============================================
key           type, shape                     meaning
============  ==============================  ===============================================
inputs        long or float ``[N, F]``        node features (categorical indices, or floats)
edge_index    long ``[2, E]``                 local node indices; undirected graphs list both
                                              directions (row 0 source, row 1 target)
edge_attr     long or float ``[E, Fe]``       edge features (optional)
pos           float32 ``[N, 3]``              3D coordinates (optional: QM9)
rwse          float32 ``[N, steps]``          random-walk encoding (transform ``RWSE``)
lap_vec       float32 ``[N, k]``              Laplacian eigenvectors (transform ``LapPE``)
lap_val       float32 ``[N, k]``              their eigenvalues, per node (transform ``LapPE``)
target        float32 ``[T]``                 graph regression targets
label         int                             graph class
node_label    long ``[N]``                    node classes
name          str                             SMILES or an id, for messages
============  ==============================  ===============================================

A graph dataset batches with ``PadCollate(node_keys=('rwse', 'lap_vec', 'lap_val'),
token_keys=('node_label',))``: ``inputs [B, L, F]`` and the node keys ``[B, L, k]`` padded with 0,
``mask [B, L]``, ``lengths [B]``, ``batch [N]``, ``edge_index [2, E]`` in the flattened ``b * L + i``
indexing, ``edge_attr [E, Fe]``, ``pos [B, L, 3]``; ``data_samples`` holds ``target [B, T]``,
``label [B]``, ``node_label [B, L]`` (padding -100) and ``name`` (a list).

**Checks** (:func:`check_graph`, run when a sample is loaded, so ``on_error='skip'`` can skip a bad
graph): a graph without nodes, an ``edge_index`` of the wrong dtype or shape or with indices out of
range, per-node and per-edge fields whose first dimension does not match, are always errors.
Self loops and isolated nodes (a graph without edges has only isolated nodes) are errors by
default too, because a graph that has them where it should not is the common bug (a wrong offset
when edge lists were joined, a dropped edge list). Both are legal in some data: the molecule sets
without hydrogens have single-atom molecules and salts of several ions, so their default is
``check=dict(isolated_nodes=False)``; any dataset takes ``check=dict(self_loops=False,
isolated_nodes=False)`` to allow them. Every error is a :class:`~glocal.core.errors.DataError`
naming the graph and the field.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from glocal.core.errors import ConfigError, DataError, GlocalError

from ..batch import PadCollate
from ..dataset import GlocalDataset
from .encodings import GraphEncoding, precompute_encodings

__all__ = ["check_graph", "GraphDataset", "GraphList", "GraphStore", "NODE_KEYS", "DEFAULT_CHECK"]

NODE_KEYS = ("rwse", "lap_vec", "lap_val")  # per-node model inputs the collate pads next to 'inputs'
NODE_FIELDS = ("pos", "node_label", "order") + NODE_KEYS  # first dim must be N
DEFAULT_CHECK = dict(self_loops=True, isolated_nodes=True)  # True: an error


def _shape(v) -> str:
    return f"{v.dtype} {tuple(v.shape)}" if isinstance(v, Tensor) else type(v).__name__


def _allow(field: str) -> str:
    return f"check=dict({field}=False) in the dataset's config"


def check_graph(sample: Mapping, name: str, self_loops: bool = True, isolated_nodes: bool = True) -> None:
    """Raise a :class:`DataError` naming graph ``name`` and the field when ``sample`` is not a valid
    graph of the sample format (see the module doc for what is checked and what is optional).

    >>> import torch
    >>> check_graph(dict(inputs=torch.zeros(2, 1), edge_index=torch.tensor([[0, 1], [1, 0]])), "g")
    >>> check_graph(dict(inputs=torch.zeros(2, 1), edge_index=torch.tensor([[0, 1], [1, 2]])), "g")
    Traceback (most recent call last):
    ...
    glocal.core.errors.DataError: graph g: 'edge_index' refers to node 2 (edge 1) but the graph has 2 nodes (0..1)
    """
    x = sample.get("inputs")
    if not isinstance(x, Tensor) or x.dim() == 0:
        raise DataError(f"graph {name}: 'inputs' must be a tensor of node features [N, F]; got {_shape(x)}")
    n = x.shape[0]
    if n == 0:
        raise DataError(f"graph {name} has no nodes ('inputs' of shape {tuple(x.shape)}): a graph needs at least one "
                        f"node; drop it from the data")
    ei = sample.get("edge_index")
    if not isinstance(ei, Tensor):
        raise DataError(f"graph {name}: 'edge_index' must be a long tensor [2, E]; got {_shape(ei)}")
    if ei.dtype.is_floating_point or ei.dtype.is_complex or ei.dtype == torch.bool:
        raise DataError(f"graph {name}: 'edge_index' has dtype {ei.dtype}; node indices must be integers "
                        f"(torch.long): edge_index.long() if the values are whole numbers")
    if ei.dim() != 2 or ei.shape[0] != 2:
        hint = " (transposed? [E, 2] needs edge_index.t())" if ei.dim() == 2 and ei.shape[1] == 2 else ""
        raise DataError(f"graph {name}: 'edge_index' must have shape [2, E]; got {tuple(ei.shape)}{hint}")
    num_edges = ei.shape[1]
    if num_edges:
        lo, hi = int(ei.min()), int(ei.max())
        if lo < 0 or hi >= n:
            bad = lo if lo < 0 else hi
            col = int(((ei == bad).any(0)).nonzero()[0])
            raise DataError(f"graph {name}: 'edge_index' refers to node {bad} (edge {col}) but the graph has {n} "
                            f"nodes (0..{n - 1})")
    if self_loops and num_edges:
        loops = (ei[0] == ei[1]).nonzero().squeeze(1)
        if loops.numel():
            nodes = ei[0, loops].unique().tolist()
            raise DataError(f"graph {name}: 'edge_index' has self loops (an edge from a node to itself) at node(s) "
                            f"{nodes[:5]}{' ...' if len(nodes) > 5 else ''}; remove them "
                            f"(torch_geometric.utils.remove_self_loops) or allow them with {_allow('self_loops')}")
    if isolated_nodes:
        if num_edges == 0:
            raise DataError(f"graph {name} has no edges ('edge_index' of shape {tuple(ei.shape)}, {n} node(s)): "
                            f"message passing would see no neighbours; allow such graphs (single atoms, "
                            f"edgeless inputs) with {_allow('isolated_nodes')}")
        touched = torch.zeros(n, dtype=torch.bool)
        touched[ei.reshape(-1).long()] = True
        if not bool(touched.all()):
            nodes = (~touched).nonzero().squeeze(1).tolist()
            raise DataError(f"graph {name} has {len(nodes)} isolated node(s) (no edge in 'edge_index'): "
                            f"{nodes[:5]}{' ...' if len(nodes) > 5 else ''} of {n}; allow them with "
                            f"{_allow('isolated_nodes')}")
    ea = sample.get("edge_attr")
    if ea is not None:
        if not isinstance(ea, Tensor) or ea.dim() == 0 or ea.shape[0] != num_edges:
            raise DataError(f"graph {name}: 'edge_attr' must be [E, Fe] with one row per edge of 'edge_index' "
                            f"({num_edges}); got {_shape(ea)}")
    for key in NODE_FIELDS:
        v = sample.get(key)
        if v is not None and (not isinstance(v, Tensor) or v.dim() == 0 or v.shape[0] != n):
            raise DataError(f"graph {name}: {key!r} must have one row per node ({n}); got {_shape(v)}")


def _check_settings(check, who: str, default: dict) -> dict:
    check = dict(check or {})
    unknown = sorted(set(check) - set(DEFAULT_CHECK))
    if unknown:
        raise ConfigError(f"{who}: check= takes {sorted(DEFAULT_CHECK)} (True: an error); got {unknown}")
    return {**default, **{k: bool(v) for k, v in check.items()}}


def _edges_of(sample: Mapping) -> tuple[np.ndarray, int] | None:
    """``(edge_index [2, E] int64 numpy, N)`` when the structure is usable for encodings, else None."""
    x, ei = sample.get("inputs"), sample.get("edge_index")
    if not isinstance(x, Tensor) or x.dim() == 0 or x.shape[0] == 0 or not isinstance(ei, Tensor):
        return None
    if ei.dim() != 2 or ei.shape[0] != 2 or ei.dtype.is_floating_point or ei.dtype == torch.bool:
        return None
    n = x.shape[0]
    if ei.numel() and (int(ei.min()) < 0 or int(ei.max()) >= n):
        return None
    return ei.numpy().astype(np.int64, copy=False), n


class GraphDataset(GlocalDataset):
    """Base of graph datasets. A subclass sets up its graphs, then calls :meth:`_setup`, and
    implements ``__len__``, :meth:`graph` (the raw sample of graph ``i``), :meth:`name_of` and
    :meth:`num_nodes`; :meth:`structure` has a default.

    ``load(i)`` checks the graph (:func:`check_graph`, with ``check``) and hands the cached
    encodings to the pipeline's encoding transforms; ``lengths()`` are the node counts;
    ``describe(i)`` names the graph; ``collate`` is ``PadCollate(node_keys=..., token_keys=('node_label',))``.

    Args of every graph dataset:
        transforms: list of transforms (config dicts or callables): ``RWSE`` / ``LapPE`` first (they
            are then computed once per graph and cached), then any others.
        check: which structural oddities are errors, ``dict(self_loops=True, isolated_nodes=True)``
            by default (see the module doc).
        cache_dir: the cache root: encodings go to ``<cache_dir>/pe`` (default ``$GLOCAL_CACHE/data/pe``,
            else ``~/.cache/glocal/data/pe``).
        on_error, max_skips: a graph that fails its checks or transforms raises, or is skipped, see
            :class:`~glocal.modalities.dataset.GlocalDataset`.
    """

    default_check = DEFAULT_CHECK
    cache_name = "graphs"  # the encodings' cache file prefix (graphs are keyed by content inside)

    def __init__(self, transforms=None, check=None, cache_dir=None, on_error: str = "error",
                 max_skips: int | None = None):
        super().__init__(transforms, on_error=on_error, max_skips=max_skips)
        self.check = _check_settings(check, type(self).__name__, self.default_check)
        self._checked: set[int] = set()  # graphs that passed check_graph (a graph's structure never changes)
        self.cache_dir = cache_dir
        self.pe_log: list[str] = []  # the "PE cache: ..." lines of this construction
        self._encodings: dict = {}
        self.collate = self.collate_for(self.pipeline)

    @staticmethod
    def collate_for(pipeline) -> PadCollate:
        """The collate of a graph dataset with this pipeline (a ``Compose``): ``PadCollate`` with the
        node keys of its encodings and ``token_keys=('node_label',)``; also what ``tools/infer.py``
        batches ``from_file`` samples with."""
        extra = tuple(f for t in pipeline.transforms if isinstance(t, GraphEncoding) for f in t.fields)
        node_keys = NODE_KEYS + tuple(f for f in dict.fromkeys(extra) if f not in NODE_KEYS)
        return PadCollate(node_keys=node_keys, token_keys=("node_label",))

    # -- what a subclass provides --------------------------------------------------------------
    def graph(self, index: int) -> dict:
        """The raw sample of graph ``index`` (tensors of the sample format, plus ``name``)."""
        raise NotImplementedError

    def name_of(self, index: int) -> str:
        return f"{index}"

    def num_nodes(self) -> np.ndarray:
        """Node count of every graph, ``[G]`` int64."""
        raise NotImplementedError

    def structure(self, index: int) -> tuple[np.ndarray, int] | None:
        """``(edge_index [2, E] int64, N)`` of graph ``index``, or None when it is not a usable
        graph (its load will raise the error)."""
        try:
            return _edges_of(self.graph(index))
        except GlocalError:
            return None

    # -- the dataset ------------------------------------------------------------------------------
    def _setup(self) -> None:
        """Precompute the pipeline's leading encodings (from the cache where it has them)."""
        if any(isinstance(t, GraphEncoding) for t in self.pipeline.transforms[:1]):
            graphs = [self.structure(i) for i in range(len(self))]
            self._encodings, self.pe_log = precompute_encodings(self.pipeline, graphs, self.cache_name,
                                                                self.cache_dir, type(self).__name__)

    def lengths(self) -> list[int]:
        return self.num_nodes().tolist()

    def describe(self, index: int) -> str:
        return f"graph {self.name_of(index)}"

    def load(self, index: int) -> dict:
        sample = self.graph(index)
        if index not in self._checked:  # once per graph, not every epoch
            check_graph(sample, self.name_of(index), **self.check)
            self._checked.add(index)
        for field, table in self._encodings.items():
            values = table.get(index)
            if values is not None:
                sample[field] = values
        return sample


# ------------------------------------------------------------------------------------------------
# many graphs in a few tensors
# ------------------------------------------------------------------------------------------------
class GraphStore:
    """Many graphs held as a few concatenated tensors (as PyG's ``InMemoryDataset`` does): per-node
    fields ``[sum N, ...]``, per-edge fields ``[sum E, ...]`` (``edge_index`` local to each graph,
    ``[2, sum E]``), per-graph fields ``[G, ...]``, and the offsets. Categorical features are kept
    as small integers and widened to int64 per sample. :meth:`state` is a dict of tensors and
    strings (``torch.load(weights_only=True)`` reads it back)."""

    def __init__(self, node: dict, edge: dict, graph: dict, node_ptr: Tensor, edge_ptr: Tensor, names: list[str]):
        self.node, self.edge, self.graph_fields = node, edge, graph
        self.node_ptr, self.edge_ptr, self.names = node_ptr, edge_ptr, names
        self._nptr, self._eptr = node_ptr.numpy(), edge_ptr.numpy()
        self._edges = edge["edge_index"].numpy()

    @staticmethod
    def _compact(a: np.ndarray) -> Tensor:
        """Integers in the smallest of uint8 / int16 / int32 / int64 that holds them; floats float32."""
        if a.dtype.kind == "f":
            return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
        lo, hi = (int(a.min()), int(a.max())) if a.size else (0, 0)
        for dt in (np.uint8, np.int16, np.int32):
            if np.iinfo(dt).min <= lo and hi <= np.iinfo(dt).max:
                return torch.from_numpy(np.ascontiguousarray(a, dtype=dt))
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64))

    @classmethod
    def from_graphs(cls, graphs: Sequence[dict], names: Sequence[str], node_keys=("inputs", "pos"),
                    edge_keys=("edge_index", "edge_attr")) -> GraphStore:
        """From per-graph numpy dicts (the fields named in ``node_keys``/``edge_keys`` that the
        graphs have; ``edge_index`` required)."""
        sizes = np.array([len(g["inputs"]) for g in graphs], dtype=np.int64)
        esizes = np.array([g["edge_index"].shape[1] for g in graphs], dtype=np.int64)
        node = {k: cls._compact(np.concatenate([g[k] for g in graphs])) for k in node_keys if k in graphs[0]}
        edge = {k: cls._compact(np.concatenate([g[k] for g in graphs], axis=1 if k == "edge_index" else 0))
                for k in edge_keys if k in graphs[0]}
        ptr = lambda s: torch.from_numpy(np.concatenate([[0], np.cumsum(s)]).astype(np.int64))  # noqa: E731
        return cls(node, edge, {}, ptr(sizes), ptr(esizes), list(names))

    def state(self) -> dict:
        return dict(node=self.node, edge=self.edge, graph=self.graph_fields, node_ptr=self.node_ptr,
                    edge_ptr=self.edge_ptr, names=self.names)

    @classmethod
    def from_state(cls, state: dict) -> GraphStore:
        return cls(state["node"], state["edge"], state["graph"], state["node_ptr"], state["edge_ptr"], state["names"])

    def __len__(self) -> int:
        return len(self.names)

    def num_nodes(self) -> np.ndarray:
        return np.diff(self._nptr)

    def edges(self, g: int) -> tuple[np.ndarray, int]:
        """``(edge_index [2, E] int64, N)`` of graph ``g``, without building the sample."""
        a, b = self._eptr[g], self._eptr[g + 1]
        return self._edges[:, a:b].astype(np.int64), int(self._nptr[g + 1] - self._nptr[g])

    @staticmethod
    def _widen(t: Tensor) -> Tensor:
        return t.clone() if t.is_floating_point() else t.long()  # a copy either way: the store stays intact

    def sample(self, g: int) -> dict:
        """Graph ``g`` in the sample format (fresh tensors; categorical fields int64)."""
        n0, n1 = int(self._nptr[g]), int(self._nptr[g + 1])
        e0, e1 = int(self._eptr[g]), int(self._eptr[g + 1])
        out = {k: self._widen(v[n0:n1]) for k, v in self.node.items()}
        for k, v in self.edge.items():
            out[k] = self._widen(v[:, e0:e1] if k == "edge_index" else v[e0:e1])
        out["name"] = self.names[g]
        return out


# ------------------------------------------------------------------------------------------------
# PyG in
# ------------------------------------------------------------------------------------------------
_Y_AS = ("auto", "target", "label", "node_label", None)


def data_to_sample(data, name: str, y_as: str | None = "auto") -> dict:
    """A PyG ``Data`` (or any object with ``x``, ``edge_index``, optional ``edge_attr``, ``pos``,
    ``y``, or a dict in the sample format) -> a sample dict named ``name``. ``x`` None -> one constant categorical
    feature ``zeros [N, 1]``; 1-D ``x`` / ``edge_attr`` get a feature dim. ``y_as`` says what ``y``
    is: ``'target'`` (float ``[T]``), ``'label'`` (an int), ``'node_label'`` (``[N]``), None (dropped),
    or ``'auto'``: floats are targets, one integer a label, ``N > 1`` integers node labels."""
    if isinstance(data, Mapping):
        return {**data, "name": name}
    get = lambda key: getattr(data, key, None)  # noqa: E731 - PyG Data answers None for missing keys
    x, ei = get("x"), get("edge_index")
    num_nodes = get("num_nodes")
    if x is None:
        if num_nodes is None:
            raise DataError(f"graph {name}: has neither 'x' nor 'num_nodes': the node count is unknown")
        x = torch.zeros(int(num_nodes), 1, dtype=torch.long)
    x = torch.as_tensor(x)
    sample = dict(inputs=x[:, None] if x.dim() == 1 else x,
                  edge_index=torch.zeros(2, 0, dtype=torch.long) if ei is None else torch.as_tensor(ei))
    ea = get("edge_attr")
    if ea is not None:
        ea = torch.as_tensor(ea)
        sample["edge_attr"] = ea[:, None] if ea.dim() == 1 else ea
    if get("pos") is not None:
        sample["pos"] = torch.as_tensor(get("pos")).float()
    y = get("y")
    if y is not None and y_as is not None:
        y = torch.as_tensor(y)
        kind = y_as
        if kind == "auto":
            if y.is_floating_point():
                kind = "target"
            elif y.numel() == 1:
                kind = "label"
            else:
                kind = "node_label"
        if kind == "target":
            sample["target"] = y.float().reshape(-1)
        elif kind == "label":
            if y.numel() != 1:
                raise DataError(f"graph {name}: 'y' of shape {tuple(y.shape)} is not one graph label (y_as='label')")
            sample["label"] = int(y.reshape(-1)[0])
        else:
            sample["node_label"] = y.long().reshape(-1)
    sample["name"] = name
    return sample


class GraphList(GraphDataset):
    """Any list of PyG ``Data`` (or a PyG ``InMemoryDataset``, or dicts in the sample format) as a
    graph dataset: ``x -> inputs``, ``edge_index``, ``edge_attr``, ``pos``, ``y`` -> ``target`` /
    ``label`` / ``node_label`` (see :func:`data_to_sample` for ``y_as``).

    >>> import torch
    >>> from torch_geometric.data import Data
    >>> ds = GraphList([Data(x=torch.ones(3, 4), edge_index=torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]]),
    ...                      y=torch.tensor([0.5]))])
    >>> s = ds[0]; s["inputs"].shape, s["target"], s["name"]
    (torch.Size([3, 4]), tensor([0.5000]), '0')

    Args:
        graphs: the graphs (indexable, with ``len``).
        y_as: what ``y`` is (``'auto'``, ``'target'``, ``'label'``, ``'node_label'`` or None).
        cache_name: prefix of the encodings' cache file (graphs are keyed by content inside it).
        transforms, check, cache_dir, on_error, max_skips: see :class:`GraphDataset`.
    """

    def __init__(self, graphs, transforms=None, y_as: str | None = "auto", check=None, cache_name: str = "graphs",
                 cache_dir=None, on_error: str = "error", max_skips: int | None = None):
        super().__init__(transforms, check=check, cache_dir=cache_dir, on_error=on_error, max_skips=max_skips)
        if y_as not in _Y_AS:
            raise ConfigError(f"GraphList y_as must be one of {_Y_AS}; got {y_as!r}")
        if not hasattr(graphs, "__len__") or not hasattr(graphs, "__getitem__"):
            raise ConfigError(f"GraphList takes a list of graphs (PyG Data, an InMemoryDataset, or sample dicts); "
                              f"got {type(graphs).__name__}")
        self.graphs, self.y_as, self.cache_name = graphs, y_as, cache_name
        self._sizes = np.array([self._size(self.graphs[i]) for i in range(len(graphs))], dtype=np.int64)
        self._setup()

    @staticmethod
    def _size(g) -> int:
        if isinstance(g, Mapping):
            x = g.get("inputs")
            return int(x.shape[0]) if hasattr(x, "shape") and len(x.shape) else 0
        n = getattr(g, "num_nodes", None)
        return int(n) if n is not None else 0

    def __len__(self) -> int:
        return len(self.graphs)

    def name_of(self, index: int) -> str:
        g = self.graphs[index]
        name = g.get("name") if isinstance(g, Mapping) else getattr(g, "name", None)
        return name if isinstance(name, str) else f"{index}"

    def graph(self, index: int) -> dict:
        return data_to_sample(self.graphs[index], self.name_of(index), self.y_as)

    def load(self, index: int) -> dict:
        sample = super().load(index)
        sample["edge_index"] = sample["edge_index"].long()  # any integer dtype passed the checks
        return sample

    def num_nodes(self) -> np.ndarray:
        return self._sizes

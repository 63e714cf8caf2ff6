"""The graph adapter: node/edge encoders and positional encodings -> ``Tokens``.

:class:`GraphStem` turns a batch of the graph collate (``inputs [B, L, F]``, ``mask``,
``edge_index`` flattened ``b * L + i``, ``edge_attr [E, Fe]``, ``pos``, ``rwse`` / ``lap_vec`` /
``lap_val [B, L, k]``) into ``Tokens(x [B, L, dim], mask, edge_index, edge_attr [E, dim], pos,
order)``. As in GraphGPS (Rampášek et al., "Recipe for a General, Powerful, Scalable Graph
Transformer", NeurIPS 2022), the node encoder makes ``dim - sum(pe dims)`` channels and each
positional-encoding encoder its own ``dim_pe``, concatenated to ``dim``; the edge encoder makes
``dim`` channels (what ``GINE`` / ``GatedGCN`` with ``edge_dim=None`` read).

Encoders work on the valid nodes only (``[N, ...]`` rows, padding never enters a batch norm) and
are listed in :data:`~glocal.modalities.registry.ENCODERS` (by ``glocal.modalities.catalog``):

- ``AtomEncoder(dim, feature_dims=ATOM_FEATURE_DIMS)`` / ``BondEncoder(dim, feature_dims=BOND_FEATURE_DIMS)``:
  sum of one embedding table per categorical feature (the vocabulary of
  :mod:`glocal.modalities.graph.features`, OGB's); ``CategoricalEncoder`` is the same for any
  ``feature_dims``;
- ``EmbeddingEncoder(num_embeddings, dim)``: one categorical feature;
- ``LinearEncoder(in_dim, dim)``: float features;
- ``RWSEEncoder(steps, dim, norm='BatchNorm')``: GraphGPS's kernel PE encoder, a batch norm of the
  raw ``[N, steps]`` vector then a linear map (``layers=2``: a ReLU MLP);
- ``LapPEEncoder(k, dim, layers=2, post_layers=0)``: GraphGPS's DeepSet over the eigenpairs:
  ``phi([vec_ij, val_j])`` (a ReLU MLP from 2 to ``dim``) summed over the real pairs ``j`` (those
  beyond ``N - 1`` are padding: masked), then ``post_layers`` ReLU layers.

A field whose width does not match its encoder is an :class:`~glocal.core.errors.InputError` naming
the field, the size found and the size the config expects.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from glocal.core.errors import ConfigError, InputError
from glocal.core.tokens import Tokens

from ..batch import batch_inputs, require_field
from ..registry import ENCODERS
from .features import ATOM_FEATURE_DIMS, ATOM_FEATURE_NAMES, BOND_FEATURE_DIMS, BOND_FEATURE_NAMES

__all__ = ["GraphStem", "CategoricalEncoder", "AtomEncoder", "BondEncoder", "EmbeddingEncoder",
           "LinearEncoder", "RWSEEncoder", "LapPEEncoder"]



def _as_rows(x: Tensor, field: str, who: str) -> Tensor:
    """``[N]`` -> ``[N, 1]``; anything but ``[N, F]`` is an error naming the field."""
    if x.dim() == 1:
        return x[:, None]
    if x.dim() != 2:
        raise InputError(f"{who}: {field!r} must be [B, L, F] (per node) or [E, F] (per edge); got rows "
                         f"{tuple(x.shape)}")
    return x


class CategoricalEncoder(nn.Module):
    """Sum of one ``nn.Embedding(size, dim)`` per categorical feature: ``[N, F] long -> [N, dim]``
    (Hu et al. 2020's atom/bond encoders). ``names`` label the features in error messages."""

    def __init__(self, dim: int, feature_dims: Sequence[int], names: Sequence[str] | None = None):
        super().__init__()
        if dim < 1 or not feature_dims or min(feature_dims) < 1:
            raise ConfigError(f"{type(self).__name__}: dim and every feature size must be >= 1; got dim={dim}, "
                              f"feature_dims={tuple(feature_dims)}")
        self.out_dim, self.feature_dims = dim, tuple(int(d) for d in feature_dims)
        self.names = tuple(names) if names is not None else None
        self.tables = nn.ModuleList(nn.Embedding(d, dim) for d in self.feature_dims)
        for t in self.tables:
            nn.init.xavier_uniform_(t.weight)
        self.register_buffer("_sizes", torch.tensor(self.feature_dims), persistent=False)

    def forward(self, x: Tensor, field: str = "inputs") -> Tensor:
        who = type(self).__name__
        x = _as_rows(x, field, who)
        if x.is_floating_point() or x.dtype == torch.bool:
            raise InputError(f"{who}: {field!r} holds {x.dtype} values, but this encoder takes categorical indices "
                             f"(integers); float features need LinearEncoder(in_dim={x.shape[1]})")
        if x.shape[1] != len(self.tables):
            named = f" ({', '.join(self.names)})" if self.names else ""
            raise InputError(f"{who}: {field!r} has {x.shape[1]} features per row, but the config expects "
                             f"{len(self.tables)}{named}; set feature_dims to the data's vocabulary sizes, or use "
                             f"the featuriser this encoder was made for")
        if x.numel():
            bad = (x < 0) | (x >= self._sizes)  # [N, F]
            if bool(bad.any()):
                f = int(bad.any(0).nonzero()[0])
                value = int(x[:, f][bad[:, f]][0])
                label = f"feature {f}" + (f" ({self.names[f]})" if self.names else "")
                raise InputError(f"{who}: {field!r} {label} has value {value}, outside its "
                                 f"table of {self.feature_dims[f]} entries (0..{self.feature_dims[f] - 1}); "
                                 f"raise feature_dims[{f}] in the config")
        x = x.long()
        out = self.tables[0](x[:, 0])
        for i in range(1, len(self.tables)):
            out = out + self.tables[i](x[:, i])
        return out  # [N, dim]

    def extra_repr(self):
        return f"dim={self.out_dim}, feature_dims={self.feature_dims}"


class AtomEncoder(CategoricalEncoder):
    """Atom features of :mod:`~glocal.modalities.graph.features` (9 tables) -> ``[N, dim]``."""

    def __init__(self, dim: int, feature_dims: Sequence[int] = ATOM_FEATURE_DIMS):
        super().__init__(dim, feature_dims, ATOM_FEATURE_NAMES if len(feature_dims) == len(ATOM_FEATURE_NAMES)
                         else None)


class BondEncoder(CategoricalEncoder):
    """Bond features of :mod:`~glocal.modalities.graph.features` (4 tables) -> ``[E, dim]``."""

    def __init__(self, dim: int, feature_dims: Sequence[int] = BOND_FEATURE_DIMS):
        super().__init__(dim, feature_dims, BOND_FEATURE_NAMES if len(feature_dims) == len(BOND_FEATURE_NAMES)
                         else None)


class EmbeddingEncoder(CategoricalEncoder):
    """One categorical feature (``[N]`` or ``[N, 1]`` long, values ``0..num_embeddings-1``) -> ``[N, dim]``."""

    def __init__(self, num_embeddings: int, dim: int):
        super().__init__(dim, (num_embeddings,), ("category",))


class LinearEncoder(nn.Module):
    """Float features ``[N, in_dim]`` -> ``[N, dim]`` by one linear layer."""

    def __init__(self, in_dim: int, dim: int, bias: bool = True):
        super().__init__()
        if in_dim < 1 or dim < 1:
            raise ConfigError(f"LinearEncoder: in_dim and dim must be >= 1; got {in_dim}, {dim}")
        self.in_dim, self.out_dim = in_dim, dim
        self.proj = nn.Linear(in_dim, dim, bias=bias)

    def forward(self, x: Tensor, field: str = "inputs") -> Tensor:
        x = _as_rows(x, field, "LinearEncoder")
        if x.shape[1] != self.in_dim:
            raise InputError(f"LinearEncoder: {field!r} has {x.shape[1]} features per row, but the config expects "
                             f"in_dim={self.in_dim}")
        return self.proj(x.to(self.proj.weight.dtype))


def _mlp(sizes: Sequence[int]) -> nn.Sequential:
    """Linear layers between ``sizes``, each followed by a ReLU."""
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers)


def _pe_field(rows: Mapping[str, Tensor], key: str, width: int, setting: str, who: str) -> Tensor:
    v = rows[key]
    if v.dim() != 2 or v.shape[1] != width:
        found = v.shape[1] if v.dim() == 2 else tuple(v.shape)
        raise InputError(f"{who}: {key!r} has {found} values per node, but the config expects {setting}={width} "
                         f"(the dataset's {who.replace('Encoder', '')} transform and the adapter's encoder must agree)")
    return v


class RWSEEncoder(nn.Module):
    """GraphGPS's RWSE encoder: ``BatchNorm1d(steps)`` of the raw ``rwse [N, steps]`` (``norm=None``:
    none), then ``Linear(steps, dim)`` (``layers=2``: ``Linear -> ReLU -> Linear``) -> ``[N, dim]``."""

    fields = ("rwse",)

    def __init__(self, steps: int = 20, dim: int = 16, norm: str | None = "BatchNorm", layers: int = 1):
        super().__init__()
        if steps < 1 or dim < 1 or layers not in (1, 2):
            raise ConfigError(f"RWSEEncoder: steps and dim must be >= 1 and layers 1 or 2; got steps={steps}, "
                              f"dim={dim}, layers={layers}")
        if norm not in ("BatchNorm", None):
            raise ConfigError(f"RWSEEncoder norm must be 'BatchNorm' or None; got {norm!r}")
        self.steps, self.out_dim = steps, dim
        self.norm = nn.BatchNorm1d(steps) if norm else nn.Identity()
        self.proj = (nn.Linear(steps, dim) if layers == 1
                     else nn.Sequential(nn.Linear(steps, 2 * dim), nn.ReLU(), nn.Linear(2 * dim, dim)))

    def forward(self, rows: Mapping[str, Tensor], sizes: Tensor) -> Tensor:
        x = _pe_field(rows, "rwse", self.steps, "steps", "RWSEEncoder")
        return self.proj(self.norm(x.to(next(self.parameters()).dtype)))  # [N, dim]


class LapPEEncoder(nn.Module):
    """GraphGPS's LapPE DeepSet: per node and eigenpair ``j``, ``phi([vec_j, val_j])`` (ReLU MLP
    ``2 -> dim``, ``layers`` deep), summed over the real pairs (``j < N - 1`` for a graph of ``N``
    nodes: the rest is padding), then ``post_layers`` ``Linear -> ReLU`` -> ``[N, dim]``."""

    fields = ("lap_vec", "lap_val")

    def __init__(self, k: int = 8, dim: int = 16, layers: int = 2, post_layers: int = 0):
        super().__init__()
        if k < 1 or dim < 1 or layers < 1 or post_layers < 0:
            raise ConfigError(f"LapPEEncoder: k, dim, layers must be >= 1 and post_layers >= 0; got k={k}, dim={dim}, "
                              f"layers={layers}, post_layers={post_layers}")
        self.k, self.out_dim = k, dim
        self.phi = _mlp([2] + [dim] * layers)
        self.post = _mlp([dim] * (post_layers + 1))

    def forward(self, rows: Mapping[str, Tensor], sizes: Tensor) -> Tensor:
        vec = _pe_field(rows, "lap_vec", self.k, "k", "LapPEEncoder")  # [N, k]
        val = _pe_field(rows, "lap_val", self.k, "k", "LapPEEncoder")  # [N, k]
        dtype = self.phi[0].weight.dtype
        pairs = torch.stack([vec, val], -1).to(dtype)  # [N, k, 2]
        real = torch.arange(self.k, device=vec.device) < (sizes[:, None] - 1)  # [N, k]
        h = self.phi(pairs) * real.unsqueeze(-1).to(dtype)  # [N, k, dim]
        return self.post(h.sum(1))  # [N, dim]


class GraphStem(nn.Module):
    """Graph batch -> ``Tokens`` (see the module doc).

    Args:
        dim: the token width.
        node_encoder: config of the node encoder (gets ``dim - sum(pe dims)`` as its ``dim``).
        edge_encoder: config of the edge encoder (gets ``dim``), or None: no edge features in the
            tokens (``Tokens.edge_attr`` None; a batch's ``edge_attr`` is then ignored).
        pe: configs of positional-encoding encoders (``RWSEEncoder``, ``LapPEEncoder``), each with
            its own ``dim``; their outputs are concatenated after the node embedding.

    Example (QM9 with RWSE, as GraphGPS's ZINC config: 20 steps, 28 of 64 channels)::

        dict(type='GraphStem', dim=64, node_encoder=dict(type='AtomEncoder'),
             edge_encoder=dict(type='BondEncoder'), pe=[dict(type='RWSEEncoder', steps=20, dim=28)])
    """

    downsample = None  # graphs stay isotropic

    def __init__(self, dim: int, node_encoder=dict(type="AtomEncoder"), edge_encoder=dict(type="BondEncoder"),
                 pe: Sequence | None = None):
        super().__init__()
        self.pe = nn.ModuleList(ENCODERS.build(cfg) for cfg in (pe or []))
        pe_dim = sum(int(e.out_dim) for e in self.pe)
        if pe_dim >= dim:
            raise ConfigError(f"GraphStem: the positional encodings take {pe_dim} of dim={dim} channels, leaving "
                              f"none for the node features; make dim larger or the pe dims smaller")
        self.node_encoder = ENCODERS.build(node_encoder, dim=dim - pe_dim)
        if getattr(self.node_encoder, "out_dim", dim - pe_dim) != dim - pe_dim:
            raise ConfigError(f"GraphStem: the node encoder makes {self.node_encoder.out_dim} channels, but "
                              f"dim={dim} less the positional encodings' {pe_dim} leaves {dim - pe_dim}: leave its "
                              f"dim out of the config (the stem sets it)")
        self.edge_encoder = None if edge_encoder is None else ENCODERS.build(edge_encoder, dim=dim)
        if self.edge_encoder is not None and getattr(self.edge_encoder, "out_dim", dim) != dim:
            raise ConfigError(f"GraphStem: the edge encoder makes {self.edge_encoder.out_dim} channels; the layers "
                              f"read edge features of dim={dim}: leave its dim out of the config")
        self.out_dim, self.pe_dim = dim, pe_dim

    def forward(self, batch) -> Tokens:
        x = batch_inputs(batch, "GraphStem")  # [B, L, F] (or [B, L])
        if not isinstance(batch, Mapping):
            raise InputError("GraphStem takes the batch mapping of a graph dataset's collate (inputs, mask, "
                             "edge_index, ...), not a bare tensor")
        mask = require_field(batch, "mask", "GraphStem")  # [B, L]
        edge_index = require_field(batch, "edge_index", "GraphStem")  # [2, E]
        if x.dim() < 2 or x.shape[:2] != mask.shape:
            raise InputError(f"GraphStem: 'inputs' must be [B, L, F] matching mask {tuple(mask.shape)}; got "
                             f"{tuple(x.shape)}")
        B, L = mask.shape
        flat = mask.reshape(-1).nonzero().squeeze(1)  # [N] flattened indices of the valid nodes
        h = self.node_encoder(x.reshape(B * L, *x.shape[2:])[flat], field="inputs")  # [N, dim - pe]
        if self.pe:
            lengths = batch.get("lengths")
            lengths = mask.sum(1) if lengths is None else lengths
            sizes = lengths.to(mask.device).repeat_interleave(mask.sum(1))  # [N]: nodes of each node's graph
            parts = [h]
            for enc in self.pe:
                rows = {f: self._rows(require_field(batch, f, "GraphStem"), f, B, L, flat) for f in enc.fields}
                parts.append(enc(rows, sizes).to(h.dtype))  # [N, dim_pe]
            h = torch.cat(parts, -1)  # [N, dim]
        out = h.new_zeros(B * L, self.out_dim).index_copy(0, flat, h).view(B, L, self.out_dim)  # [B, L, C], padding 0
        edge_attr = None
        if self.edge_encoder is not None:
            e = require_field(batch, "edge_attr", "GraphStem")  # [E, Fe]
            if e.shape[0] != edge_index.shape[1]:
                raise InputError(f"GraphStem: 'edge_attr' has {e.shape[0]} rows for {edge_index.shape[1]} edges")
            edge_attr = self.edge_encoder(e, field="edge_attr").to(out.dtype)  # [E, C]
        pos = batch.get("pos")
        pos = pos.to(out.dtype) if pos is not None else None  # [B, L, 3]
        return Tokens(out, mask=mask, edge_index=edge_index.long(), edge_attr=edge_attr, pos=pos,
                      order=batch.get("order"))

    @staticmethod
    def _rows(v: Tensor, field: str, B: int, L: int, flat: Tensor) -> Tensor:
        if v.dim() < 2 or v.shape[:2] != (B, L):
            raise InputError(f"GraphStem: {field!r} must be [B, L, k] = [{B}, {L}, k] like the inputs; got "
                             f"{tuple(v.shape)} (collate it with PadCollate(node_keys=({field!r}, ...)))")
        return v.reshape(B * L, *v.shape[2:])[flat]  # [N, k]

"""Parameters and MACs (multiply-accumulates, what papers call "FLOPs") per module, measured on
one forward pass with forward hooks.

Counting rules (per call, summed over calls; biases, activations, softmax, exp, dropout and
indexing are not counted):

- ``nn.Linear`` (and PyG's ``Linear``): ``in * out`` per token, i.e.
  ``output.numel() / out * in * out``.
- ``nn.Conv1d/2d/3d``: per output element ``in / groups * prod(kernel)``;
  ``nn.ConvTranspose*``: per input element ``out / groups * prod(kernel)``.
- norms (``LayerNorm``, ``RMSNorm``, ``GroupNorm``, ``BatchNorm*``, ``InstanceNorm*``):
  ``input.numel()``, one MAC per element for the scale-and-shift (statistics not counted; the
  convention of Swin's own FLOP count).
- ``nn.Embedding``: 0 (a lookup).
- ``nn.MultiheadAttention`` (called with ``F.linear``/matmuls inside, invisible to hooks; counted
  for peers such as PyG's ``GPSConv``): the input and output projections plus
  ``2 * B * Lq * Lk * E`` for ``q k^T`` and ``attn v``.
- any module that defines ``extra_macs(self, x, tokens) -> int`` adds what that returns for the
  call's ``(x, tokens)``: the non-parameterised work hooks cannot see (attention ``q k^T`` and
  ``attn v``, scan recurrences, scatter aggregation of messages, pooled attention). In those,
  an elementwise product/sum that combines two tensors, and each accumulate of a scatter-sum,
  counts as one MAC per element.

Parameters are counted once per module (shared modules once), recursively per row.

Example:
    >>> import torch
    >>> from glocal.core import Mlp, Tokens
    >>> r = count(Mlp(8, ratio=2), torch.randn(1, 5, 8), Tokens(torch.randn(1, 5, 8)))
    >>> r.total_macs  # 5 tokens * (8*16 + 16*8)
    1280
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

__all__ = ["Row", "Report", "count", "module_macs", "format_count"]

_NORMS = (nn.LayerNorm, nn.GroupNorm, nn.RMSNorm, nn.LocalResponseNorm,
          nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm)
_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_TCONVS = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def _first_tensor(obj) -> Tensor | None:
    if isinstance(obj, Tensor):
        return obj
    if isinstance(obj, (list, tuple)):
        for o in obj:
            t = _first_tensor(o)
            if t is not None:
                return t
    if isinstance(obj, Mapping):
        return _first_tensor(list(obj.values()))
    x = getattr(obj, "x", None)  # Tokens
    return x if isinstance(x, Tensor) else None


def _is_pyg_linear(m: nn.Module) -> bool:
    return (type(m).__name__ == "Linear" and type(m).__module__.startswith("torch_geometric")
            and hasattr(m, "in_channels") and hasattr(m, "out_channels"))


def _mha_macs(m: nn.MultiheadAttention, args: tuple, kwargs: dict) -> int:
    q = args[0] if args else kwargs["query"]
    k = args[1] if len(args) > 1 else kwargs.get("key", q)
    E = m.embed_dim
    if m.batch_first or q.dim() == 2:
        Lq, Lk = q.shape[-2], k.shape[-2]
    else:
        Lq, Lk = q.shape[0], k.shape[0]
    B = q.numel() // (Lq * q.shape[-1])
    kdim, vdim = m.kdim, m.vdim
    proj = B * (Lq * E * E + Lk * kdim * E + Lk * vdim * E + Lq * E * E)
    return proj + 2 * B * Lq * Lk * E


def module_macs(m: nn.Module, args: tuple, kwargs: dict, output) -> int:
    """MACs of one call of ``m`` by the rules above, excluding its children's own MACs."""
    macs = 0
    out = _first_tensor(output)
    inp = _first_tensor(args) if args else _first_tensor(kwargs)
    if isinstance(m, nn.Linear) and out is not None:
        macs += out.numel() // m.out_features * m.in_features * m.out_features
    elif _is_pyg_linear(m) and out is not None and m.in_channels > 0:
        macs += out.numel() // m.out_channels * m.in_channels * m.out_channels
    elif isinstance(m, _CONVS) and out is not None:
        macs += out.numel() * (m.in_channels // m.groups) * math.prod(m.kernel_size)
    elif isinstance(m, _TCONVS) and inp is not None:
        macs += inp.numel() * (m.out_channels // m.groups) * math.prod(m.kernel_size)
    elif isinstance(m, _NORMS) and inp is not None:
        macs += inp.numel()
    elif isinstance(m, nn.MultiheadAttention):
        macs += _mha_macs(m, args, kwargs)
    extra = getattr(m, "extra_macs", None)
    if callable(extra):
        x = args[0] if args else kwargs.get("x")
        tokens = args[1] if len(args) > 1 else kwargs.get("tokens")
        macs += int(extra(x, tokens))
    return macs


@dataclass
class Row:
    name: str  # qualified module name, "" for the root
    type: str
    params: int  # parameters of this module and its children
    macs: int  # MACs of this module and its children, over all calls in the counted forward
    calls: int  # times the module ran
    depth: int


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)  # every module, in definition order
    macs_counted: bool = True  # False: parameters only (count_params), the MACs columns left out

    @property
    def total_params(self) -> int:
        return self.rows[0].params if self.rows else 0

    @property
    def total_macs(self) -> int:
        return self.rows[0].macs if self.rows else 0

    def __getitem__(self, name: str) -> Row:
        for row in self.rows:
            if row.name == name:
                return row
        raise KeyError(name)

    def table(self, max_depth: int = 2, min_share: float = 0.0) -> str:
        """A text table of the modules up to ``max_depth`` (root depth 0), skipping rows below
        ``min_share`` of the total MACs and parameters."""
        total_p, total_m = max(self.total_params, 1), max(self.total_macs, 1)
        rows = [r for r in self.rows if r.depth <= max_depth
                and (r.depth == 0 or r.macs / total_m >= min_share or r.params / total_p >= min_share)]
        names = ["  " * r.depth + (r.name.rsplit(".", 1)[-1] or "(model)") + f" ({r.type})" for r in rows]
        w = max([len(n) for n in names] + [6])
        if not self.macs_counted:
            lines = [f"{'module':<{w}}  {'params':>10}  {'params %':>8}", "-" * (w + 22)]
            lines += [f"{n:<{w}}  {format_count(r.params):>10}  {100 * r.params / total_p:8.1f}" for n, r in zip(names, rows)]
            lines += ["-" * (w + 22), f"{'total':<{w}}  {format_count(self.total_params):>10}",
                      f"params {self.total_params:,}"]
            return "\n".join(lines)
        lines = [f"{'module':<{w}}  {'params':>10}  {'MACs':>10}  {'MACs %':>6}", "-" * (w + 34)]
        for n, r in zip(names, rows):
            lines.append(f"{n:<{w}}  {format_count(r.params):>10}  {format_count(r.macs):>10}  "
                         f"{100 * r.macs / total_m:6.1f}")
        lines.append("-" * (w + 34))
        lines.append(f"{'total':<{w}}  {format_count(self.total_params):>10}  "
                     f"{format_count(self.total_macs):>10}")
        lines.append(f"params {self.total_params:,}   MACs {self.total_macs:,}")
        return "\n".join(lines)

    def __str__(self):
        return self.table()


def format_count(n: int) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)


def count_params(model: nn.Module) -> Report:
    """Parameters per module, without running the model (no input needed; no MACs)."""
    rows = [Row(name, type(m).__name__, sum(p.numel() for p in m.parameters()), 0, 0,
                name.count(".") + 1 if name else 0) for name, m in model.named_modules()]
    return Report(rows, macs_counted=False)


@torch.no_grad()
def count(model: nn.Module, *inputs, **kwargs) -> Report:
    """Run ``model(*inputs, **kwargs)`` once in eval mode under ``no_grad`` and count parameters and
    MACs per module by the rules in the module docstring. The model's mode is restored."""
    modules = list(model.named_modules())
    own: dict[int, int] = {id(m): 0 for _, m in modules}
    calls: dict[int, int] = {id(m): 0 for _, m in modules}

    def hook(m, args, kwargs_, output):
        own[id(m)] += module_macs(m, args, kwargs_, output)
        calls[id(m)] += 1

    handles = [m.register_forward_hook(hook, with_kwargs=True) for _, m in modules]
    was_training = model.training
    model.eval()
    try:
        model(*inputs, **kwargs)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()

    rows = [Row(name, type(m).__name__, sum(p.numel() for p in m.parameters()), 0, calls[id(m)],
                name.count(".") + 1 if name else 0) for name, m in modules]
    index = {row.name: row for row in rows}
    for name, m in modules:  # a module's MACs: its own plus its descendants'
        parts = name.split(".") if name else []
        for k in range(len(parts) + 1):
            ancestor = index.get(".".join(parts[:k]))
            if ancestor is not None:
                ancestor.macs += own[id(m)]
    return Report(rows)

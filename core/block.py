"""The one block: pre-norm residual ``local -> global -> FFN``.

Components are token mixers: ``forward(x: [B, L, C], tokens: Tokens) -> [B, L, C]``. They are
passed in as modules or as config dicts (built from ``MIXERS`` with ``dim`` filled in), never
switched on by flags. Sequential composition (MaxViT, Conformer, UniFormer) applies one residual
step per component; parallel composition (GraphGPS, HiLo) sums the local and global branches in a
single residual step.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .dropout import Dropout
from .registry import MIXERS, NORMS
from .tokens import Tokens

__all__ = ["DropPath", "LayerScale", "Mlp", "Residual", "Parallel", "LocalGlobalBlock", "TokenNorm",
           "build_norm", "build_mixer", "apply_norm", "BlockSequence"]


def build_mixer(cfg, dim: int) -> nn.Module | None:
    return MIXERS.build(cfg, dim=dim)


def build_norm(cfg, dim: int) -> nn.Module:
    if cfg is None:
        return nn.Identity()
    if isinstance(cfg, str):
        cfg = dict(type=cfg)
    return NORMS.build(cfg, dim=dim)


def apply_norm(norm: nn.Module, x: Tensor, tokens: Tokens) -> Tensor:
    """Norms that need the mask (BatchNorm over valid tokens) get the tokens; others just ``x``."""
    return norm(x, tokens) if isinstance(norm, TokenNorm) else norm(x)


class DropPath(nn.Module):
    """Stochastic depth: drop the whole residual branch per sample with probability ``p``."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = float(p)

    def forward(self, x: Tensor) -> Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        shape = (x.shape[0],) + (1,) * (x.dim() - 1)
        return x * x.new_empty(shape).bernoulli_(keep).div_(keep)

    def extra_repr(self):
        return f"p={self.p}"


class LayerScale(nn.Module):
    """Per-channel learnable scale of a residual branch (CaiT), ``gamma`` initialised to ``init``."""

    def __init__(self, dim: int, init: float = 1e-5):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init)))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


class TokenNorm(nn.Module):
    """LayerNorm over channels, or BatchNorm over the valid tokens of a ``[B, L, C]`` batch."""

    def __init__(self, dim: int, kind: str = "layer", eps: float | None = None):
        super().__init__()
        self.kind = kind
        if kind == "layer":
            self.norm = nn.LayerNorm(dim, eps=eps or 1e-5)
        elif kind == "rms":
            self.norm = nn.RMSNorm(dim, eps=eps or 1e-6)
        elif kind == "batch":
            self.norm = nn.BatchNorm1d(dim, eps=eps or 1e-5)
        else:
            raise ValueError(f"TokenNorm kind must be 'layer', 'rms' or 'batch'; got {kind!r}")

    def forward(self, x: Tensor, tokens: Tokens | None = None) -> Tensor:
        if self.kind != "batch":
            return self.norm(x)
        if tokens is None or tokens.mask is None:
            return self.norm(x.reshape(-1, x.shape[-1])).reshape(x.shape)
        # statistics from valid tokens only: padding must not shift the batch statistics
        return tokens.unpack(self.norm(tokens.pack(x)))  # padded tokens zero


def LayerNorm(dim: int, eps: float = 1e-5) -> TokenNorm:
    return TokenNorm(dim, "layer", eps)


def RMSNorm(dim: int, eps: float = 1e-6) -> TokenNorm:
    return TokenNorm(dim, "rms", eps)


def BatchNorm(dim: int, eps: float = 1e-5) -> TokenNorm:
    return TokenNorm(dim, "batch", eps)


class Mlp(nn.Module):
    """Position-wise feed-forward network ``C -> ratio*C -> C`` (the block's usual FFN). With a
    ``Tokens.mask`` it runs on the valid tokens only; its output is zero on padding."""

    def __init__(self, dim: int, ratio: float = 4.0, hidden: int | None = None, act: str = "GELU",
                 drop: float = 0.0, bias: bool = True):
        super().__init__()
        hidden = hidden or int(dim * ratio)
        self.fc1 = nn.Linear(dim, hidden, bias=bias)
        self.act = getattr(nn, act)()
        self.fc2 = nn.Linear(hidden, dim, bias=bias)
        self.drop = Dropout(drop)

    def forward(self, x: Tensor, tokens: Tokens | None = None) -> Tensor:  # [B, L, C]
        if tokens is None or tokens.mask is None:
            return self._ffn(x)
        return tokens.unpack(self._ffn(tokens.pack(x)))  # position-wise: valid tokens only, padding zero

    def _ffn(self, x: Tensor) -> Tensor:  # [..., C]
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class Residual(nn.Module):
    """One pre-norm residual step: ``x + drop_path(scale * f(norm(x), tokens))``."""

    def __init__(self, dim: int, fn: nn.Module, norm="LayerNorm", drop_path: float = 0.0,
                 layer_scale: float | None = None, scale: float = 1.0):
        super().__init__()
        self.norm = build_norm(norm, dim)
        self.fn = fn
        self.layer_scale = LayerScale(dim, layer_scale) if layer_scale else nn.Identity()
        self.drop_path = DropPath(drop_path)
        self.scale = scale  # fixed branch weight, e.g. 0.5 for the macaron half-step FFN

    def forward(self, x: Tensor, tokens: Tokens) -> Tensor:
        h = self.fn(apply_norm(self.norm, x, tokens), tokens)
        if self.scale != 1.0:
            h = h * self.scale
        return x + self.drop_path(self.layer_scale(h))


class Parallel(nn.Module):
    """Sum of branches that read the same input: ``sum_i f_i(x, tokens)`` (GraphGPS, HiLo)."""

    def __init__(self, *branches: nn.Module):
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x: Tensor, tokens: Tokens) -> Tensor:
        out = self.branches[0](x, tokens)
        for branch in self.branches[1:]:
            out = out + branch(x, tokens)
        return out


class LocalGlobalBlock(nn.Module):
    """Pre-norm residual block ``local -> global -> FFN``.

    Args:
        dim: channels C of ``x [B, L, C]``.
        local: local encoder (module or ``MIXERS`` config), or None.
        global_: global mixer (module or config), or None.
        ffn: feed-forward mixer (module or config); default ``Mlp(ratio=4)``; None for no FFN.
        composition: ``"sequential"`` (one residual step per component) or ``"parallel"`` (local
            and global summed in one residual step, then the FFN).
        norm: norm config/name before each step (``"LayerNorm"``, ``"BatchNorm"``, ``"RMSNorm"``).
        drop_path: stochastic-depth rate of every residual step.
        layer_scale: initial LayerScale value, or None for none.
        pos: a conditional position encoding run first, as ``x + pos(x, tokens)`` with no norm,
            drop-path or layer scale (a mixer or config: UniFormer's dynamic position embedding,
            CPVT's PEG: a depthwise convolution over the grid), or None.

    Example:
        >>> import torch
        >>> from glocal.core import LocalGlobalBlock, Tokens
        >>> block = LocalGlobalBlock(32, local=dict(type="WindowAttention", heads=2, window=4),
        ...                          global_=dict(type="FullAttention", heads=2))
        >>> t = Tokens(torch.randn(2, 64, 32), grid=(8, 8))
        >>> block(t).x.shape
        torch.Size([2, 64, 32])
    """

    def __init__(self, dim: int, local=None, global_=None, ffn=dict(type="Mlp"),
                 composition: str = "sequential", norm="LayerNorm", drop_path: float = 0.0,
                 layer_scale: float | None = None, pos=None):
        super().__init__()
        if composition not in ("sequential", "parallel"):
            raise ValueError(f"composition must be 'sequential' or 'parallel'; got {composition!r}")
        self.dim, self.composition = dim, composition
        self.pos = build_mixer(pos, dim)  # None, or a module: x + pos(x, tokens) before the steps
        local, global_, ffn = (build_mixer(c, dim) for c in (local, global_, ffn))
        if local is None and global_ is None and ffn is None:
            raise ValueError("LocalGlobalBlock needs at least one of local, global_ or ffn")
        step = dict(norm=norm, drop_path=drop_path, layer_scale=layer_scale)
        mixers = [m for m in (local, global_) if m is not None]
        if composition == "parallel" and len(mixers) == 2:
            steps = [Residual(dim, Parallel(*mixers), **step)]
        else:
            steps = [Residual(dim, m, **step) for m in mixers]
        if ffn is not None:
            steps.append(Residual(dim, ffn, **step))
        self.steps = nn.ModuleList(steps)
        # role -> module, unregistered (the modules live in self.steps; no duplicate state_dict keys)
        self.__dict__["_roles"] = dict(local=local, global_=global_, ffn=ffn)

    @property
    def local(self) -> nn.Module | None:
        return self._roles["local"]

    @property
    def global_(self) -> nn.Module | None:
        return self._roles["global_"]

    @property
    def ffn(self) -> nn.Module | None:
        return self._roles["ffn"]

    def forward(self, tokens: Tokens) -> Tokens:
        x = tokens.x  # [B, L, C]
        if self.pos is not None:
            x = x + self.pos(x, tokens)
        for step in self.steps:
            x = step(x, tokens)
        return tokens.replace(x=x)


class BlockSequence(nn.Module):
    """Apply blocks in order; each consumes and returns ``Tokens``."""

    def __init__(self, blocks: Sequence[nn.Module]):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)

    def forward(self, tokens: Tokens) -> Tokens:
        for block in self.blocks:
            tokens = block(tokens)
        return tokens

    def __len__(self):
        return len(self.blocks)

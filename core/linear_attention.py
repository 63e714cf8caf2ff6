"""Linear attention: kernel feature maps make attention O(L).

Katharopoulos et al., "Transformers are RNNs: Fast Autoregressive Transformers with Linear
Attention" (ICML 2020): ``softmax(q k^T)`` is replaced by ``phi(q) phi(k)^T`` with
``phi(x) = elu(x) + 1``, so ``out_i = phi(q_i) (sum_j phi(k_j) v_j^T) / phi(q_i) . sum_j phi(k_j)``
costs O(L). Choromanski et al., "Rethinking Attention with Performers" (ICLR 2021): FAVOR+'s
positive orthogonal random features ``phi(x) = exp(w^T x - |x|^2 / 2) / sqrt(m)`` make
``phi(q) . phi(k)`` an unbiased estimate of ``exp(q . k / sqrt(d))``.

:func:`linear_attention` (the O(L) path; causal through chunked cumulative sums) sits beside
:func:`linear_attention_ref`, the dense masked ``phi(q) phi(k)^T`` normalised row by row.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .dropout import Dropout
from .tokens import Tokens

__all__ = ["LinearAttention", "linear_attention", "linear_attention_ref", "elu_features",
           "favor_features", "orthogonal_random_features"]


# --- feature maps ----------------------------------------------------------------------------------

def elu_features(x: Tensor) -> Tensor:
    """``elu(x) + 1``: positive, so every normaliser is positive (Katharopoulos et al.)."""
    return F.elu(x) + 1.0


def orthogonal_random_features(m: int, d: int, generator: torch.Generator | None = None,
                               dtype=torch.float32) -> Tensor:
    """``[m, d]`` Gaussian rows made orthogonal in blocks of ``d`` (QR), each row rescaled to the
    norm of an independent Gaussian vector (FAVOR+'s orthogonal random features).

    The QR factor's columns are multiplied by the signs of ``R``'s diagonal so that each block is
    uniformly (Haar) distributed; without that the kernel estimate is biased."""
    blocks = []
    for _ in range(math.ceil(m / d)):
        q, r = torch.linalg.qr(torch.randn(d, d, generator=generator, dtype=torch.float64))
        blocks.append((q * torch.sign(torch.diagonal(r))).T)
    w = torch.cat(blocks)[:m]
    norms = torch.randn(m, d, generator=generator, dtype=torch.float64).norm(dim=1, keepdim=True)
    return (w * norms).to(dtype)


def favor_features(x: Tensor, proj: Tensor, query: bool, valid: Tensor | None = None) -> Tensor:
    """Positive random features ``exp(w^T x' - |x'|^2 / 2 - c) / sqrt(m)`` with ``x' = x d^-1/4``.

    ``x: [B, h, L, d]``, ``proj: [m, d]`` -> ``[B, h, L, m]``. The stabiliser ``c`` (no gradient)
    cancels in the normalisation: per query row for queries; for keys one constant per
    (sample, head), the maximum over valid keys (Performer's choice), so padding never sets it.
    """
    d = x.shape[-1]
    x = x * d ** -0.25
    wx = x @ proj.to(x.dtype).T  # [B, h, L, m]
    sq = 0.5 * (x * x).sum(-1, keepdim=True)
    if query:
        c = wx.detach().amax(-1, keepdim=True)
    else:
        w = wx.detach()
        if valid is not None:
            w = w.masked_fill(~valid[:, None, :, None], float("-inf"))
        c = w.amax(dim=(-2, -1), keepdim=True)
        c = torch.where(torch.isfinite(c), c, torch.zeros_like(c))  # a sample with no valid key
    return torch.exp(wx - sq - c) / math.sqrt(proj.shape[0])


# --- attention with given features -----------------------------------------------------------------

def _normalise(num: Tensor, den: Tensor, eps: float) -> Tensor:
    """``num / den``; ``den`` is a sum of positive terms, zero only for a query that sees no valid
    key (padding, whose output is never read): clamped so that stays finite."""
    return num / den.clamp_min(eps).unsqueeze(-1)


def linear_attention(fq: Tensor, fk: Tensor, v: Tensor, mask: Tensor | None = None, causal: bool = False,
                     chunk: int = 64, eps: float = 1e-6) -> Tensor:
    """O(L) attention with features ``fq, fk: [B, h, L, m]`` and values ``v: [B, h, L, d]``.

    Padded keys (``mask [B, L]`` False) contribute nothing. Causal: chunks of ``chunk`` queries
    take a masked ``[chunk, chunk]`` product inside the chunk plus the running sums
    ``S = sum phi(k) v^T``, ``z = sum phi(k)`` of all earlier chunks, so memory stays
    ``O(B h chunk (chunk + m d))``.
    """
    if mask is not None:
        keep = mask[:, None, :, None].to(fk.dtype)
        fk, v = fk * keep, v * keep
    if not causal:
        kv = fk.transpose(-2, -1) @ v  # [B, h, m, d]
        ksum = fk.sum(-2)  # [B, h, m]
        return _normalise(fq @ kv, (fq * ksum.unsqueeze(-2)).sum(-1), eps)
    B, h, L, m = fq.shape
    S = fq.new_zeros(B, h, m, v.shape[-1])
    z = fq.new_zeros(B, h, m)
    outs = []
    for s in range(0, L, chunk):
        qc, kc, vc = fq[:, :, s:s + chunk], fk[:, :, s:s + chunk], v[:, :, s:s + chunk]
        a = (qc @ kc.transpose(-2, -1)).tril()  # [B, h, T, T]
        num = a @ vc + qc @ S
        den = a.sum(-1) + (qc * z.unsqueeze(-2)).sum(-1)
        outs.append(_normalise(num, den, eps))
        S = S + kc.transpose(-2, -1) @ vc
        z = z + kc.sum(-2)
    return torch.cat(outs, 2)


def linear_attention_ref(fq: Tensor, fk: Tensor, v: Tensor, mask: Tensor | None = None,
                         causal: bool = False, eps: float = 1e-6) -> Tensor:
    """Dense reference: ``a = phi(q) phi(k)^T`` (padded keys and, if causal, future keys zeroed),
    ``out = a v / a.sum(-1)``. O(L^2) memory."""
    a = fq @ fk.transpose(-2, -1)  # [B, h, L, L]
    if mask is not None:
        a = a * mask[:, None, None, :].to(a.dtype)
    if causal:
        a = a.tril()
    return _normalise(a @ v, a.sum(-1), eps)


# --- the mixer -------------------------------------------------------------------------------------

class LinearAttention(nn.Module):
    """Multi-head linear attention over all valid tokens, O(L) (Katharopoulos et al. 2020), with
    ``feature_map="elu"`` (``elu + 1``) or ``"favor"`` (Performer's FAVOR+ positive orthogonal
    random features, Choromanski et al. 2021; the projection is a buffer, saved with the weights;
    :meth:`redraw_features` draws a new one).

    Reads ``Tokens.mask`` only: padded tokens are never keys. ``causal=True`` lets token ``i``
    attend to tokens ``j <= i`` of the sequence (chunked cumulative sums).

    Args:
        dim: channels C; heads: number of heads (``dim % heads == 0``).
        num_features: random features m per head for ``"favor"`` (default ``d log d``, ``d``
            the head dim, as the Performer).
        chunk: causal chunk length.

    Example:
        >>> import torch
        >>> from glocal.core import Tokens
        >>> attn = LinearAttention(32, heads=4, feature_map="favor")
        >>> attn(torch.randn(2, 10, 32), Tokens(torch.randn(2, 10, 32))).shape
        torch.Size([2, 10, 32])
    """

    def __init__(self, dim: int, heads: int = 8, feature_map: str = "elu", causal: bool = False,
                 num_features: int | None = None, qkv_bias: bool = True, chunk: int = 64,
                 eps: float = 1e-6, proj_drop: float = 0.0):
        super().__init__()
        if dim % heads:
            raise ValueError(f"LinearAttention: dim {dim} is not divisible by heads {heads}")
        if feature_map not in ("elu", "favor"):
            raise ValueError(f"LinearAttention feature_map must be 'elu' or 'favor'; got {feature_map!r}")
        self.heads, self.feature_map, self.causal = heads, feature_map, causal
        self.chunk, self.eps = chunk, eps
        self.head_dim = d = dim // heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = Dropout(proj_drop)
        if feature_map == "favor":
            self.num_features = num_features or max(1, int(d * math.log(d)))
            self.register_buffer("features", orthogonal_random_features(self.num_features, d))
        else:
            self.num_features = d
            self.features = None

    def extra_repr(self):
        return (f"heads={self.heads}, feature_map={self.feature_map!r}, causal={self.causal}, "
                f"num_features={self.num_features}")

    @torch.no_grad()
    def redraw_features(self, generator: torch.Generator | None = None) -> None:
        """Draw a new FAVOR+ projection in place (the Performer redraws periodically in training)."""
        if self.features is None:
            raise ValueError("redraw_features: only feature_map='favor' has random features")
        self.features.copy_(orthogonal_random_features(self.num_features, self.head_dim, generator))

    def _qkv(self, x: Tensor, tokens: Tokens):
        B, L, C = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)  # [B, h, L, d]
        if self.feature_map == "elu":
            return elu_features(q), elu_features(k), v
        return (favor_features(q, self.features, query=True),
                favor_features(k, self.features, query=False, valid=tokens.mask), v)

    def _out(self, o: Tensor) -> Tensor:  # [B, h, L, d] -> [B, L, C]
        B, h, L, d = o.shape
        return self.proj_drop(self.proj(o.transpose(1, 2).reshape(B, L, h * d)))

    def forward(self, x: Tensor, tokens: Tokens) -> Tensor:
        fq, fk, v = self._qkv(x, tokens)
        return self._out(linear_attention(fq, fk, v, tokens.mask, self.causal, self.chunk, self.eps))

    def forward_reference(self, x: Tensor, tokens: Tokens) -> Tensor:
        """The same layer through :func:`linear_attention_ref` (dense, O(L^2)): for tests."""
        fq, fk, v = self._qkv(x, tokens)
        return self._out(linear_attention_ref(fq, fk, v, tokens.mask, self.causal, self.eps))

    def extra_macs(self, x: Tensor, tokens: Tokens) -> int:
        """FAVOR+ projections ``2 B h L m d``; non-causal ``phi(k)^T v``, ``phi(q) (.)`` and the
        normalisers ``2 B h L m (d + 1)``; causal adds the in-chunk ``[T, T]`` products
        ``B h L T (m + d + 1)`` (computed in full, as they are)."""
        B, L, _ = x.shape
        h, d, m = self.heads, self.head_dim, self.num_features
        macs = 2 * B * h * L * m * d if self.feature_map == "favor" else 0
        macs += 2 * B * h * L * m * (d + 1)
        if self.causal:
            T = min(self.chunk, L)
            macs += B * h * L * T * (m + d + 1)
        return macs

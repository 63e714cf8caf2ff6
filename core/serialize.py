"""Point-cloud serialisation: integer voxel coordinates, space-filling-curve codes and the
per-sample orders they induce (Point Transformer V3, Wu et al., CVPR 2024, section 3.1).

- :func:`voxelize`: ``pos [B, L, 3]`` -> integer voxel coordinates ``[B, L, 3]`` (long, >= 0),
  ``floor((pos - origin) / grid_size)`` with each sample's origin at the minimum of its valid
  points (Pointcept takes the minimum over the whole batch; per sample, a cloud's voxels never
  depend on the other clouds it is batched with).
- :func:`morton_encode` (z-order) and :func:`hilbert_encode` (Skilling's transform, "Programming
  the Hilbert curve", AIP Conf. Proc. 707, 2004): ``[..., 3]`` coordinates of ``depth`` bits per
  axis -> ``3 * depth``-bit codes. Both are vectorised over all points: bit spreading with
  magic masks, and Skilling's per-bit loop run on whole tensors. The references are scalar loops
  over Python integers in tests/core/test_serialize.py.
- :func:`encode` names the four curves of PTv3: ``"z"``, ``"z-trans"``, ``"hilbert"``,
  ``"hilbert-trans"``; the transposed ones read the axes as ``(y, x, z)`` (Pointcept's
  ``grid_coord[:, [1, 0, 2]]``).
- :func:`batched_codes`: codes of packed points with the sample index in the high bits
  (``batch << 3 * depth | code``), so one sort orders a whole packed batch sample by sample.
- :func:`serialize` / :func:`serialize_voxels`: ``order [K, B, L]``, for every curve a
  permutation of each sample's tokens with the valid ones first, in curve order (a per-sample sort
  of the codes, padding given the largest code); :func:`inverse_order` undoes it.
- :func:`serialize_tokens`: the same on :class:`Tokens`: the voxels go to ``extras["voxel"]``,
  the K orders (a tuple of ``[B, L]`` long tensors) to ``extras["orders"]`` and the first of them to
  ``Tokens.order``.

Depth: codes use a fixed ``depth`` bits per axis (default 16: 65,536 voxels a side, Pointcept's
limit too). Pointcept adapts the depth to the batch's extent instead; Morton orders do not depend on
the depth, Hilbert orders do only through the curve's orientation (the occupied corner of a deeper
cube is still traversed by a Hilbert curve), so here a sample's orders depend on that sample alone.
Points in the same voxel tie; ties keep token order (stable sort).

Example:
    >>> import torch
    >>> v = torch.tensor([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 1]])
    >>> morton_encode(v, depth=1).tolist()  # x is the most significant bit of each triple
    [0, 4, 2, 7]
    >>> hilbert_encode(torch.cartesian_prod(*[torch.arange(2)] * 3), depth=1).sort().values.tolist()
    [0, 1, 2, 3, 4, 5, 6, 7]
"""
from __future__ import annotations

import torch
from torch import Tensor

from .errors import InputError, MissingStructureError
from .tokens import Tokens

__all__ = ["ORDERS", "MAX_DEPTH", "voxelize", "voxel_coords", "morton_encode", "hilbert_encode", "encode",
           "batched_codes", "serialize", "serialize_voxels", "inverse_order", "serialize_tokens",
           "cached_on", "voxel_keys", "key_voxels"]

ORDERS = ("z", "z-trans", "hilbert", "hilbert-trans")
MAX_DEPTH = 16  # bits per axis; 3 * 16 = 48 bits of code leave 15 bits for the sample index
_TRANS = (1, 0, 2)  # the "-trans" curves read the axes as (y, x, z)
_PAD_CODE = torch.iinfo(torch.int64).max  # padded tokens sort behind every valid one


def cached_on(tokens: Tokens, key: str, tensor: Tensor, compute):
    """``compute()``, cached in ``tokens.derived(key)`` for this very ``tensor`` object (an order or
    a voxel tensor: structure that ``Tokens.derived`` alone does not key on). The cache holds a
    reference to ``tensor``, so a cached entry is never confused with a later tensor at the same
    address; it lives as long as the batch's derived values."""
    store = tokens.derived(key, dict)
    hit = store.get(id(tensor))
    if hit is not None and hit[0] is tensor:
        return hit[1]
    value = compute()
    store[id(tensor)] = (tensor, value)
    return value


# --- voxels ------------------------------------------------------------------------------------------

def voxelize(pos: Tensor, mask: Tensor | None, grid_size: float) -> Tensor:
    """Integer voxel coordinates ``[B, L, 3]`` long: ``floor((pos - origin) / grid_size)``, the
    origin at each sample's minimum over its valid points; padded tokens get 0."""
    if pos.dim() != 3 or pos.shape[-1] != 3:
        raise InputError(f"voxelize: pos must be [B, L, 3]; got {tuple(pos.shape)}")
    if not grid_size > 0:
        raise InputError(f"voxelize: grid_size must be positive; got {grid_size}")
    if mask is None:
        origin = pos.amin(1, keepdim=True)  # [B, 1, 3]
    else:
        origin = pos.masked_fill(~mask.unsqueeze(-1), float("inf")).amin(1, keepdim=True)
        origin = torch.where(torch.isfinite(origin), origin, torch.zeros_like(origin))  # an empty sample
    voxel = torch.floor((pos - origin) / grid_size).long().clamp_min(0)
    if mask is not None:
        voxel = voxel.masked_fill(~mask.unsqueeze(-1), 0)
    return voxel


def voxel_coords(tokens: Tokens, grid_size: float | None, by: str) -> Tensor:
    """The tokens' voxel coordinates ``[B, L, 3]`` long: ``extras["voxel"]`` when set (by an adapter
    that grid-samples, by :func:`serialize_tokens` or by a grid pooling), else :func:`voxelize` of
    ``Tokens.pos`` with ``grid_size`` (computed once per batch)."""
    voxel = tokens.extras.get("voxel")
    if voxel is not None:
        if voxel.shape != (*tokens.x.shape[:2], 3) or voxel.dtype != torch.long:
            raise InputError(f"{by}: Tokens.extras['voxel'] must be long [B, L, 3] = "
                             f"[{tokens.x.shape[0]}, {tokens.x.shape[1]}, 3]; got {voxel.dtype} {tuple(voxel.shape)}")
        return voxel
    if tokens.pos is None:
        raise MissingStructureError(
            f"{by} needs voxel coordinates: Tokens.pos (with grid_size) or Tokens.extras['voxel'], which these "
            f"tokens do not carry. Tokens.pos is provided by point-cloud adapters (xyz).")
    if grid_size is None:
        raise InputError(f"{by}: the tokens carry no extras['voxel'], so the voxels come from Tokens.pos: "
                         f"give {by} a grid_size (the voxel side, in the units of pos)")
    pos = tokens.pos
    if pos.shape[-1] != 3:
        raise InputError(f"{by}: Tokens.pos must be xyz [B, L, 3]; got {tuple(pos.shape)}")
    return cached_on(tokens, f"voxelize/{float(grid_size)!r}", pos,
                     lambda: voxelize(pos, tokens.mask, float(grid_size)))


def _check_range(voxel: Tensor, depth: int, by: str) -> None:
    if not 1 <= depth <= MAX_DEPTH:
        raise InputError(f"{by}: depth must be in [1, {MAX_DEPTH}]; got {depth}")
    if voxel.numel() and (int(voxel.min()) < 0 or int(voxel.max()) >= 1 << depth):
        raise InputError(f"{by}: voxel coordinates must lie in [0, 2**{depth}); got values in "
                         f"[{int(voxel.min())}, {int(voxel.max())}] (a larger grid_size, or a smaller cloud)")


_KEY_BITS = 16  # per axis in a voxel key; the sample index takes the bits above 48


def voxel_keys(voxel: Tensor, batch: Tensor) -> Tensor:
    """One int64 key per packed voxel ``(batch, x, y, z)``, ``voxel [N, 3]`` in ``[0, 2**16)``:
    ``((batch * 2**16 + x) * 2**16 + y) * 2**16 + z``; sorting keys sorts sample by sample, then x, y, z."""
    v = voxel.long()
    return (((batch.long() << _KEY_BITS | v[:, 0]) << _KEY_BITS | v[:, 1]) << _KEY_BITS) | v[:, 2]


def key_voxels(keys: Tensor) -> tuple[Tensor, Tensor]:
    """Inverse of :func:`voxel_keys`: ``(voxel [N, 3], batch [N])``."""
    m = (1 << _KEY_BITS) - 1
    voxel = torch.stack([(keys >> 2 * _KEY_BITS) & m, (keys >> _KEY_BITS) & m, keys & m], -1)
    return voxel, keys >> 3 * _KEY_BITS


# --- curve codes -------------------------------------------------------------------------------------

def _spread3(v: Tensor) -> Tensor:
    """The 16 low bits of ``v`` moved to every third bit: bit ``i`` -> bit ``3 i`` (int64)."""
    v = v & 0xFFFF
    v = (v | (v << 32)) & 0x1F00000000FFFF  # the classic magic-mask cascade (21-bit form)
    v = (v | (v << 16)) & 0x1F0000FF0000FF
    v = (v | (v << 8)) & 0x100F00F00F00F00F
    v = (v | (v << 4)) & 0x10C30C30C30C30C3
    v = (v | (v << 2)) & 0x1249249249249249
    return v


def _interleave(a: Tensor, b: Tensor, c: Tensor) -> Tensor:
    """Bits of ``a`` (most significant of each triple), ``b``, ``c`` interleaved."""
    return (_spread3(a) << 2) | (_spread3(b) << 1) | _spread3(c)


def morton_encode(voxel: Tensor, depth: int = MAX_DEPTH) -> Tensor:
    """Z-order (Morton) codes of ``[..., 3]`` coordinates in ``[0, 2**depth)``: bit ``i`` of x, y, z
    goes to bit ``3 i + 2``, ``3 i + 1``, ``3 i``. Returns ``[...]`` int64."""
    _check_range(voxel, depth, "morton_encode")
    v = voxel.long()
    return _interleave(v[..., 0], v[..., 1], v[..., 2])


def hilbert_encode(voxel: Tensor, depth: int = MAX_DEPTH) -> Tensor:
    """Hilbert codes of ``[..., 3]`` coordinates in ``[0, 2**depth)`` (Skilling 2004): the axes are
    turned into the curve's "transposed" index (inverse undo, then Gray code), whose bits,
    interleaved with axis 0 most significant, are the index along the curve. Consecutive codes
    are face-adjacent voxels. Returns ``[...]`` int64."""
    _check_range(voxel, depth, "hilbert_encode")
    v = voxel.long()
    X = [v[..., 0], v[..., 1], v[..., 2]]
    # inverse undo, from the top bit down: for axis i, if its bit Q is set invert the low bits of
    # axis 0, else exchange the low bits of axes 0 and i
    Q = 1 << (depth - 1)
    while Q > 1:
        P = Q - 1
        for i in range(3):
            bit = (X[i] & Q) != 0
            if i == 0:
                X[0] = torch.where(bit, X[0] ^ P, X[0])
            else:
                t = (X[0] ^ X[i]) & P
                X[0], X[i] = torch.where(bit, X[0] ^ P, X[0] ^ t), torch.where(bit, X[i], X[i] ^ t)
        Q >>= 1
    # Gray encode
    X[1] = X[1] ^ X[0]
    X[2] = X[2] ^ X[1]
    t = torch.zeros_like(X[2])
    Q = 1 << (depth - 1)
    while Q > 1:
        t = t ^ torch.where((X[2] & Q) != 0, Q - 1, 0)
        Q >>= 1
    return _interleave(X[0] ^ t, X[1] ^ t, X[2] ^ t)


def encode(voxel: Tensor, order: str = "z", depth: int = MAX_DEPTH) -> Tensor:
    """Codes of one of PTv3's curves (:data:`ORDERS`) for ``[..., 3]`` voxel coordinates."""
    if order not in ORDERS:
        raise InputError(f"unknown serialisation order {order!r}; known: {', '.join(ORDERS)}")
    if order.endswith("-trans"):
        voxel = voxel[..., list(_TRANS)]
    return (morton_encode if order.startswith("z") else hilbert_encode)(voxel, depth)


def batched_codes(code: Tensor, batch: Tensor, depth: int = MAX_DEPTH) -> Tensor:
    """Codes of packed points made unique across samples: ``batch << 3 * depth | code``."""
    if batch.numel() and int(batch.max()) >= 1 << (63 - 3 * depth):
        raise InputError(f"batched_codes: at most {1 << (63 - 3 * depth)} samples at depth {depth}")
    return (batch.long() << (3 * depth)) | code


# --- orders ------------------------------------------------------------------------------------------

@torch.profiler.record_function("glocal.serialize")  # a named scope for profiles (tools/benchmark.py)
def serialize_voxels(voxel: Tensor, mask: Tensor | None = None, orders=ORDERS, depth: int = MAX_DEPTH) -> Tensor:
    """``order [K, B, L]`` long: per curve and sample, the token indices sorted by code, valid
    tokens first (padding keeps its index order behind them). ``voxel``: ``[B, L, 3]`` long."""
    orders = (orders,) if isinstance(orders, str) else tuple(orders)
    if voxel.dim() != 3 or voxel.shape[-1] != 3:
        raise InputError(f"serialize: voxel coordinates must be [B, L, 3]; got {tuple(voxel.shape)}")
    out = []
    for name in orders:
        code = encode(voxel, name, depth)  # [B, L]
        if mask is not None:
            code = code.masked_fill(~mask, _PAD_CODE)
        out.append(torch.sort(code, dim=1, stable=True).indices)
    return torch.stack(out)


def serialize(pos: Tensor, mask: Tensor | None, grid_size: float, orders=ORDERS, depth: int = MAX_DEPTH) -> Tensor:
    """``order [K, B, L]``: :func:`serialize_voxels` of :func:`voxelize` ``(pos, mask, grid_size)``.

    Example:
        >>> import torch
        >>> pos = torch.tensor([[[0.9, 0.0, 0.0], [0.0, 0.0, 0.0], [0.5, 0.5, 0.5]]])
        >>> serialize(pos, torch.tensor([[True, True, False]]), 0.5, orders=("z",)).tolist()
        [[[1, 0, 2]]]
    """
    return serialize_voxels(voxelize(pos, mask, grid_size), mask, orders, depth)


def inverse_order(order: Tensor) -> Tensor:
    """The inverse permutation along the last dim: ``inverse[..., order[..., i]] = i``."""
    idx = torch.arange(order.shape[-1], device=order.device).expand_as(order)
    return torch.empty_like(order).scatter_(-1, order, idx)


def serialize_tokens(tokens: Tokens, grid_size: float | None = None, orders=ORDERS, shuffle: bool = False,
                     depth: int = MAX_DEPTH) -> Tokens:
    """The tokens with their serialisation: ``extras["voxel"]`` (kept when already set, else from
    ``pos`` and ``grid_size``), ``extras["orders"]``: a tuple of K ``[B, L]`` orders (in a random
    permutation of ``orders`` when ``shuffle``, PTv3's ``shuffle_orders``), and ``Tokens.order``: the
    first of them."""
    voxel = voxel_coords(tokens, grid_size, "serialize_tokens")
    order = serialize_voxels(voxel, tokens.mask, orders, depth)  # [K, B, L]
    if shuffle:
        order = order[torch.randperm(order.shape[0]).to(order.device)]
    serial = tuple(order.unbind(0))
    return tokens.replace(order=serial[0], extras={**tokens.extras, "voxel": voxel, "orders": serial})

"""Serialisation: the vectorised Morton and Hilbert encoders against scalar textbook loops, the
curves' properties (bijective on a full cube, Hilbert steps between face neighbours), and the
per-sample orders of a padded batch."""
import pytest
import torch

from glocal.core import Tokens
from glocal.core.errors import InputError, MissingStructureError
from glocal.core.serialize import (ORDERS, batched_codes, encode, hilbert_encode, inverse_order, key_voxels,
                                   morton_encode, serialize, serialize_tokens, serialize_voxels, voxel_coords,
                                   voxel_keys, voxelize)


# --- references: one point at a time, Python integers ------------------------------------------------

def morton_reference(x: int, y: int, z: int, depth: int) -> int:
    """Bit by bit: bit b of x, y, z to bits 3b + 2, 3b + 1, 3b."""
    code = 0
    for b in range(depth):
        code |= ((x >> b) & 1) << (3 * b + 2)
        code |= ((y >> b) & 1) << (3 * b + 1)
        code |= ((z >> b) & 1) << (3 * b)
    return code


def hilbert_reference(x: int, y: int, z: int, depth: int) -> int:
    """Skilling's AxestoTranspose (AIP Conf. Proc. 707, 2004) on one point, then the transposed
    index read out bit by bit, axis 0 first."""
    X = [x, y, z]
    M = 1 << (depth - 1)
    Q = M
    while Q > 1:  # inverse undo
        P = Q - 1
        for i in range(3):
            if X[i] & Q:
                X[0] ^= P
            else:
                t = (X[0] ^ X[i]) & P
                X[0] ^= t
                X[i] ^= t
        Q >>= 1
    for i in range(1, 3):  # Gray encode
        X[i] ^= X[i - 1]
    t = 0
    Q = M
    while Q > 1:
        if X[2] & Q:
            t ^= Q - 1
        Q >>= 1
    for i in range(3):
        X[i] ^= t
    code = 0
    for b in range(depth - 1, -1, -1):
        for i in range(3):
            code = (code << 1) | ((X[i] >> b) & 1)
    return code


def _cube(depth: int) -> torch.Tensor:
    return torch.cartesian_prod(*[torch.arange(1 << depth)] * 3)  # [8^depth, 3]


@pytest.mark.parametrize("depth", [1, 3, 7, 16])
@pytest.mark.parametrize("curve", ["z", "hilbert"])
def test_fast_encoders_match_the_scalar_references(curve, depth):
    gen = torch.Generator().manual_seed(depth)
    v = torch.randint(0, 1 << depth, (300, 3), generator=gen)
    v[:3] = torch.tensor([[0, 0, 0], [(1 << depth) - 1] * 3, [1, 0, (1 << depth) - 1]])  # corners
    fast = (morton_encode if curve == "z" else hilbert_encode)(v, depth)
    ref = morton_reference if curve == "z" else hilbert_reference
    assert fast.tolist() == [ref(*p, depth) for p in v.tolist()]


@pytest.mark.parametrize("depth", [1, 2, 4])
@pytest.mark.parametrize("order", ORDERS)
def test_codes_are_a_bijection_of_the_full_cube(order, depth):
    codes = encode(_cube(depth), order, depth)
    assert torch.equal(codes.sort().values, torch.arange(8 ** depth))


@pytest.mark.parametrize("depth,full", [(4, 4), (16, 3)])
def test_consecutive_hilbert_codes_are_face_neighbours(depth, full):
    """On a full cube of side 2**full (at depth 16: the corner cube of a deeper curve, which it
    traverses as one piece), voxels in code order differ by one step along one axis."""
    v = _cube(full)
    for order in ("hilbert", "hilbert-trans"):
        path = v[encode(v, order, depth).argsort()]
        step = (path[1:] - path[:-1]).abs()
        assert (step.sum(1) == 1).all(), order
    z = v[morton_encode(v, depth).argsort()]
    assert ((z[1:] - z[:-1]).abs().sum(1) > 1).any()  # z-order jumps: it is no Hilbert curve


def test_transposed_curves_swap_x_and_y():
    v = torch.randint(0, 100, (50, 3))
    for name in ("z", "hilbert"):
        assert torch.equal(encode(v, f"{name}-trans"), encode(v[:, [1, 0, 2]], name))
    assert not torch.equal(encode(v, "z"), encode(v, "z-trans"))


def test_encoders_reject_coordinates_out_of_range_and_unknown_orders():
    with pytest.raises(InputError, match=r"\[0, 2\*\*3\)"):
        morton_encode(torch.tensor([[8, 0, 0]]), depth=3)
    with pytest.raises(InputError, match="serialisation order"):
        encode(torch.zeros(1, 3, dtype=torch.long), "peano")


def test_batched_codes_sort_sample_by_sample_and_keys_round_trip():
    gen = torch.Generator().manual_seed(0)
    v = torch.randint(0, 1000, (200, 3), generator=gen)
    b = torch.randint(0, 4, (200,), generator=gen)
    code = hilbert_encode(v)
    order = batched_codes(code, b).argsort()
    assert (b[order].diff() >= 0).all()
    for s in range(4):
        sel = order[b[order] == s]
        assert (code[sel].diff() > 0).all()
    vv, bb = key_voxels(voxel_keys(v, b))
    assert torch.equal(vv, v) and torch.equal(bb, b)


def _cloud(lengths, L, seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    pos = torch.rand(len(lengths), L, 3, generator=gen, dtype=dtype) * 4
    mask = torch.arange(L)[None] < torch.tensor(lengths)[:, None]
    return pos, mask


def test_voxelize_per_sample_origin_and_padding():
    pos, mask = _cloud([30, 20], 32)
    pos[1] += 100.0  # the second cloud lives elsewhere: its voxels start at 0 all the same
    pos[~mask] = -1e4
    v = voxelize(pos, mask, 0.5)
    assert v.dtype == torch.long and (v >= 0).all() and (v[~mask] == 0).all()
    for b in range(2):
        p = pos[b, mask[b]]
        assert torch.equal(v[b, mask[b]], torch.floor((p - p.min(0).values) / 0.5).long())
        assert (v[b, mask[b]].min(0).values == 0).all()


def test_serialize_orders_valid_tokens_first_in_curve_order():
    pos, mask = _cloud([40, 25, 0], 48)
    order = serialize(pos, mask, 0.25)  # [K, B, L]
    assert order.shape == (4, 3, 48)
    voxel = voxelize(pos, mask, 0.25)
    for k, name in enumerate(ORDERS):
        code = encode(voxel, name)
        for b in range(3):
            o = order[k, b]
            n = int(mask[b].sum())
            assert torch.equal(o.sort().values, torch.arange(48))  # a permutation
            assert mask[b, o[:n]].all() and not mask[b, o[n:]].any()  # valid first
            assert (code[b, o[:n]].diff() >= 0).all()  # in curve order
            assert torch.equal(o[n:], o[n:].sort().values)  # padding keeps its index order
    inv = inverse_order(order)
    assert torch.equal(order.gather(-1, inv), torch.arange(48).expand(4, 3, 48))


def test_serialize_is_per_sample():
    """Padding values, more padding, or another cloud in the batch change nothing for a cloud."""
    pos, mask = _cloud([40, 25], 40)
    base = serialize(pos, mask, 0.25)
    noisy = pos.clone()
    noisy[~mask] = 1e3 * torch.randn_like(noisy[~mask])
    assert torch.equal(serialize(noisy, mask, 0.25), base)
    other, omask = _cloud([40], 40, seed=5)
    more = serialize(torch.cat([pos, other * 50]), torch.cat([mask, omask]), 0.25)
    assert torch.equal(more[:, :2], base)
    wide = serialize(torch.cat([pos, torch.rand(2, 8, 3)], 1), torch.cat([mask, torch.zeros(2, 8, dtype=torch.bool)], 1),
                     0.25)
    n = mask.sum(1)
    for b in range(2):
        assert torch.equal(wide[:, b, :n[b]], base[:, b, :n[b]])


def test_serialize_tokens_sets_voxels_orders_and_shuffles():
    pos, mask = _cloud([40, 25], 40)
    t = Tokens(torch.randn(2, 40, 4), mask=mask, pos=pos)
    s = serialize_tokens(t, grid_size=0.25)
    assert len(s.extras["orders"]) == 4 and s.order is s.extras["orders"][0]
    assert torch.equal(torch.stack(s.extras["orders"]), serialize_voxels(s.extras["voxel"], mask))
    torch.manual_seed(3)
    shuffled = serialize_tokens(t, grid_size=0.25, shuffle=True).extras["orders"]
    as_rows = sorted(tuple(o.flatten().tolist()) for o in shuffled)
    assert as_rows == sorted(tuple(o.flatten().tolist()) for o in s.extras["orders"])
    # voxels given by the adapter take precedence over pos
    given = torch.zeros(2, 40, 3, dtype=torch.long)
    assert serialize_tokens(t.replace(extras={"voxel": given}), grid_size=0.25).extras["voxel"] is given
    with pytest.raises(MissingStructureError, match="Tokens.pos"):
        voxel_coords(Tokens(torch.randn(1, 4, 2)), 0.1, "X")
    with pytest.raises(InputError, match="grid_size"):
        voxel_coords(t, None, "X")

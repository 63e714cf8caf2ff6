"""timm-style suite over every registered token mixer (``MIXERS``, filled by ``core/catalog.py``).

Every name in ``MIXERS.names()`` is a test parameter, so a newly registered mixer is covered at
once; one without an entry in :data:`CASES` fails with a message asking for one. Each case is run
on the token structures it accepts (1D / 2D / 3D grids, a sequence with no structure, a graph on
``edge_index``, a per-sample ``order``), without and with a padded batch (sample 0 full, sample 1
with about 30% of its tokens padded: trailing rows / frames of a grid, as a ragged clip pads;
trailing tokens of a sequence; trailing nodes of a graph, which carry no edges; for ``order`` the
serialisation is a random permutation, so padding is interleaved along the scan).

Checks, per case:

1. forward: ``[B, L, C]`` out, float32, finite;
2. every parameter gets a non-zero gradient from a loss on the valid outputs (exceptions are
   listed per case in ``Case.frozen`` with the reason, and must really get none), and no gradient
   reaches the padded input features (the backward side of check 4: several mixers have
   hand-written backwards);
3. every module holding parameters changes the valid outputs when its parameters are perturbed
   (same exception list);
4. padding is inert: new, large features (and positions) at padded tokens leave the valid outputs
   unchanged (float32 atol 1e-5; float64 1e-10 for one case per mixer), in eval mode and in train
   mode (BatchNorm statistics must come from valid tokens only). The contract does not fix the
   output at padded positions (attention and scans document it as "padding, never read by valid
   tokens"): it must be finite, and exactly zero for the mixers whose docstrings promise that
   (:data:`ZERO_ON_PADDING`; Mamba / SS2D also give zeros at init, but only because their
   ``out_proj`` has no bias and the norm's bias starts at 0, so that is not asserted);
4b. more trailing padding (extra padded rows / tokens / nodes in both samples) leaves the valid
   outputs unchanged, in eval and train mode, except where a mixer's layout depends on where the
   grid ends by definition (:data:`AMOUNT_SENSITIVE`, each entry with its reason);
5. a mixer given tokens without a field it needs raises ``MissingStructureError`` naming the
   field; dropping a field it does not need leaves its output unchanged.

Dropout defaults to 0 in every mixer (asserted), so train mode is deterministic.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import pytest
import torch
from torch import nn

from glocal.core.errors import MissingStructureError
from glocal.core.registry import MIXERS
from glocal.core.tokens import Tokens

B, DIM = 2, 16
GRIDS = {"grid1d": (40,), "grid2d": (6, 8), "grid3d": (3, 4, 4)}  # sides not all multiples of the windows
SEQ_LEN, GRAPH_NODES, EDGE_DIM = 40, 32, 4
PAD_FRACTION = 0.3  # of sample 1's tokens (for grids: whole trailing rows / frames, about this much)
NOISE = 1e3  # scale of the features written into padded tokens
TOL = {torch.float32: 1e-5, torch.float64: 1e-10}
# optional structure a mixer may read without needing it; dropped in check 5 only when the case needs it
OPTIONAL = ("edge_attr",)
# mixers whose docstrings promise exactly zero output at padded tokens
ZERO_ON_PADDING = {"Mlp", "GINE", "GatedGCN", "KnnGINE", "SerializedAttention", "SubMConv3d", "XCPE"}


class Case(NamedTuple):
    kwargs: dict  # constructor arguments besides dim
    structures: tuple[str, ...]  # token structures the configuration accepts (see make_tokens)
    needs: tuple[str, ...] = ()  # Tokens fields it must raise MissingStructureError without
    frozen: dict[str, str] = {}  # parameter-name prefix -> why it legitimately gets no gradient


ONE_CELL = ("the window covers the whole (6, 8) grid: Lo-Fi attends to a single pooled key, whose "
            "softmax weight is 1 whatever the query, so lo_q has no effect")
NO_EDGE_TERM = "edge_dim=None and the tokens carry no edge_attr: the C e gate term is dropped, so C is unused"

CASES: dict[str, list[Case]] = {
    "FullAttention": [
        Case(dict(heads=2), ("seq", "grid2d")),
        Case(dict(heads=4, qkv_bias=False), ("seq",)),
    ],
    "LinearAttention": [
        Case(dict(heads=2), ("seq",)),
        Case(dict(heads=2, causal=True, chunk=16), ("seq",)),
        Case(dict(heads=2, feature_map="favor"), ("seq",)),
        Case(dict(heads=2, feature_map="favor", causal=True, chunk=16), ("seq",)),
    ],
    "Mlp": [
        Case(dict(ratio=2.0), ("seq", "grid2d")),
    ],
    "WindowAttention": [
        Case(dict(heads=2, window=8, shift=4, rank=1), ("grid1d",), ("grid",)),
        Case(dict(heads=2, window=4, shift=2, rank=2), ("grid2d",), ("grid",)),
        Case(dict(heads=2, window=4, rank=2, rel_pos=False), ("grid2d",), ("grid",)),
        Case(dict(heads=2, window=2, shift=1, rank=3), ("grid3d",), ("grid",)),
        # the reference implementations' conventions (Video Swin / torchvision swin3d): zero pad cells
        # as keys, and the bias of a window clipped to the (3, 4, 4) grid's sides from the index prefix
        Case(dict(heads=2, window=(2, 5, 5), rank=3, pad_keys="zeros", clip_bias="prefix"),
             ("grid3d",), ("grid",)),
    ],
    "GridAttention": [
        Case(dict(heads=2, grid=4, rank=1), ("grid1d",), ("grid",)),
        Case(dict(heads=2, grid=3, rank=2), ("grid2d",), ("grid",)),
        Case(dict(heads=2, grid=2, rank=3, rel_pos=False), ("grid3d",), ("grid",)),
    ],
    "NeighborhoodAttention": [
        Case(dict(heads=2, kernel=5, dilation=2, rank=1), ("grid1d",), ("grid",)),
        Case(dict(heads=2, kernel=3, rank=2), ("grid2d",), ("grid",)),
        Case(dict(heads=2, kernel=3, dilation=2, rank=2, backend="torch"), ("grid2d",), ("grid",)),
        Case(dict(heads=2, kernel=3, rank=3), ("grid3d",), ("grid",)),
        Case(dict(heads=2, kernel=3, rank=3, backend="torch", rel_pos=False), ("grid3d",), ("grid",)),
    ],
    "HiLoAttention": [
        Case(dict(heads=4, window=4, rank=1), ("grid1d",), ("grid",)),
        Case(dict(heads=4, window=2, rank=2), ("grid2d",), ("grid",)),
        Case(dict(heads=4, window=1, rank=2), ("grid2d",), ("grid",)),  # every head Lo-Fi, no pooling
        Case(dict(heads=4, window=(2, 4), alpha=0.25, rank=2), ("grid2d",), ("grid",)),
        Case(dict(heads=4, window=2, rank=3), ("grid3d",), ("grid",)),
        Case(dict(heads=4, window=8, rank=2), ("grid2d",), ("grid",), frozen={"lo_q.": ONE_CELL}),
    ],
    "DepthwiseConv": [
        Case(dict(kernel=5, rank=1), ("grid1d",), ("grid",)),
        Case(dict(kernel=3, rank=2, dilation=2), ("grid2d",), ("grid",)),
        Case(dict(kernel=3, rank=3), ("grid3d",), ("grid",)),
    ],
    "LocalAggregator": [
        Case(dict(kernel=5, rank=1), ("grid1d",), ("grid",)),
        Case(dict(kernel=3, rank=2), ("grid2d",), ("grid",)),
        Case(dict(kernel=3, rank=3), ("grid3d",), ("grid",)),
    ],
    "ConvModule": [
        Case(dict(kernel=7, rank=1), ("grid1d",), ("grid",)),
        Case(dict(kernel=3, rank=2, norm="LayerNorm"), ("grid2d",), ("grid",)),
        Case(dict(kernel=3, rank=3), ("grid3d",), ("grid",)),
        Case(dict(kernel=5, rank=1, glu=False), ("grid1d",), ("grid",)),  # Squeezeformer's: Swish, 2C channels
    ],
    "Mamba": [
        Case(dict(d_state=4, chunk=8), ("seq", "grid2d")),
        Case(dict(d_state=4, direction="backward", chunk=8), ("seq",)),
        Case(dict(d_state=4, direction="bidirectional", conv=None), ("seq",)),
        Case(dict(d_state=4, direction="grid", rank=1), ("grid1d",), ("grid",)),
        Case(dict(d_state=4, direction="grid", rank=2, out_norm="LayerNorm", chunk=8), ("grid2d",), ("grid",)),
        Case(dict(d_state=4, direction="grid", rank=3, merge="sum"), ("grid3d",), ("grid",)),
        Case(dict(d_state=4, direction="order", chunk=8), ("order",), ("order",)),
        Case(dict(d_state=4, direction="order_bidirectional", out_norm="BatchNorm"), ("order",), ("order",)),
    ],
    "SS2D": [
        Case(dict(d_state=4, rank=1), ("grid1d",), ("grid",)),
        Case(dict(d_state=4, rank=2, chunk=8), ("grid2d",), ("grid",)),
        Case(dict(d_state=4, rank=3), ("grid3d",), ("grid",)),
    ],
    "GINE": [
        Case(dict(), ("graph",), ("edge_index",)),
        Case(dict(), ("graph+attr",), ("edge_index",)),
        Case(dict(edge_dim=EDGE_DIM, mlp_ratio=2.0, eps=0.3, train_eps=True), ("graph+attr4",),
             ("edge_index", "edge_attr")),
        Case(dict(edge_dim=0), ("graph+attr",), ("edge_index",)),
    ],
    "GatedGCN": [
        Case(dict(), ("graph+attr",), ("edge_index",)),
        Case(dict(), ("graph",), ("edge_index",), frozen={"C.": NO_EDGE_TERM}),
        Case(dict(edge_dim=EDGE_DIM), ("graph+attr4",), ("edge_index", "edge_attr")),
        Case(dict(edge_dim=0, act=None), ("graph+attr",), ("edge_index",)),
    ],
    # point clouds: "order" interleaves padding along the serialisation; "seq" tokens carry pos in
    # [0, 1)^3, voxelised with grid_size (a few voxels hold two tokens: one sparse-conv site)
    "SerializedAttention": [
        Case(dict(heads=2, patch=8), ("order",), ("order",)),
        Case(dict(heads=2, patch=8, tail="overlap"), ("order",), ("order",)),
        Case(dict(heads=4, patch=64, qkv_bias=False), ("order",), ("order",)),  # one patch per sample
    ],
    "SubMConv3d": [
        Case(dict(grid_size=0.25), ("seq",), ("pos",)),
        Case(dict(kernel=5, bias=False, grid_size=0.2), ("seq",), ("pos",)),
    ],
    "XCPE": [
        Case(dict(grid_size=0.25), ("seq",), ("pos",)),
    ],
    "KnnGINE": [  # its graph from Tokens.pos among the valid tokens
        Case(dict(k=4), ("seq",), ("pos",)),
        Case(dict(k=2, mlp_ratio=2.0, act="GELU"), ("seq",), ("pos",)),
    ],
}

# check 4b (more trailing padding changes nothing) does not hold where the mixer's layout, by its
# definition, depends on where the grid ends: (name, case index) -> why; None = every case. These
# cases must then show the dependence (the entry is stale otherwise).
AMOUNT_SENSITIVE: dict[tuple[str, int | None], str] = {
    **{("GridAttention", i): "the lattice stride is side / G, so extra rows regroup the valid tokens "
                             "(case 2's extra frame only fills the side's own round-up)" for i in (0, 1)},
    ("WindowAttention", 4): "pad_keys='zeros': the cells that round the grid up to whole windows act as keys, "
                            "and how many there are follows where the grid ends",
    ("NeighborhoodAttention", None): "a border window shifts inward (NATTEN semantics) and the "
                                     "effective dilation follows the side: near the last valid row "
                                     "the neighbourhood depends on the rows that follow",
    **{("Mamba", i): "the causal conv along a column-major path crosses the padded rows, which it "
                     "reads as zeros where the unpadded sample has valid tokens" for i in (4, 5)},
}
EXTRA = {"grid1d": 8, "grid2d": 2, "grid3d": 1}  # extra trailing rows (frames) in check 4b; others 8 tokens


# --- token structures -----------------------------------------------------------------------------

def _trailing_mask(L: int, pad: int) -> torch.Tensor:
    mask = torch.ones(B, L, dtype=torch.bool)
    mask[1, L - pad:] = False  # sample 0 full, sample 1 padded at its end
    return mask


def _graph(n: int, gen: torch.Generator) -> torch.Tensor:
    """A ring over ``n`` nodes plus ``n // 2`` random chords, both directions, no duplicates: ``[2, E]``."""
    pairs = {(i, (i + 1) % n) for i in range(n)}
    for _ in range(n // 2):
        a, b = torch.randint(0, n, (2,), generator=gen).tolist()
        if a != b:
            pairs.add((a, b))
    und = {(min(a, b), max(a, b)) for a, b in pairs}
    und = torch.tensor(sorted(und)).t()
    return torch.cat([und, und.flip(0)], 1)


def make_tokens(structure: str, masked: bool, dtype=torch.float32, seed: int = 0) -> Tokens:
    """Tokens ``[B, L, DIM]`` of the named structure, every one with ``pos [B, L, 3]`` (read by no
    mixer; carried so that check 5 shows it is unused and check 4 perturbs it at padding):

    - ``seq``: L tokens, no structure; padding: sample 1's last 30%;
    - ``grid1d`` / ``grid2d`` / ``grid3d``: ``grid`` set; padding: whole trailing rows (frames)
      of sample 1, as a ragged clip / shorter image pads;
    - ``order``: ``seq`` plus a random permutation per sample (padding interleaved along it);
    - ``graph`` (+``attr``: ``edge_attr [E, DIM]``, +``attr4``: ``[E, EDGE_DIM]``): a ring with
      chords over the valid nodes of each sample; padded (trailing) nodes carry no edges.
    """
    gen = torch.Generator().manual_seed(seed)
    fields = {}
    if structure.startswith("grid"):
        grid = GRIDS[structure]
        L = math.prod(grid)
        rows = max(1, round(grid[0] * PAD_FRACTION))
        pad = rows * (L // grid[0])
        fields["grid"] = grid
    elif structure in ("seq", "order"):
        L = SEQ_LEN
        pad = round(L * PAD_FRACTION)
        if structure == "order":
            fields["order"] = torch.argsort(torch.rand(B, L, generator=gen), -1)
    elif structure.startswith("graph"):
        L = GRAPH_NODES
        pad = round(L * PAD_FRACTION)
        sizes = [L, L - pad] if masked else [L, L]
        edges = [_graph(n, gen) + b * L for b, n in enumerate(sizes)]
        fields["edge_index"] = torch.cat(edges, 1)
        width = {"graph": None, "graph+attr": DIM, "graph+attr4": EDGE_DIM}[structure]
        if width is not None:
            fields["edge_attr"] = torch.randn(fields["edge_index"].shape[1], width, generator=gen, dtype=dtype)
    else:
        raise ValueError(f"unknown structure {structure!r}")
    x = torch.randn(B, L, DIM, generator=gen, dtype=dtype)
    pos = torch.rand(B, L, 3, generator=gen, dtype=dtype)
    mask = _trailing_mask(L, pad) if masked else None
    return Tokens(x, mask=mask, pos=pos, **fields)


# --- helpers --------------------------------------------------------------------------------------

def build(name: str, kwargs: dict, dtype=torch.float32) -> nn.Module:
    torch.manual_seed(0)
    mixer = MIXERS.build(dict(type=name, **kwargs), dim=DIM).to(dtype)
    for mod in mixer.modules():  # train mode must be deterministic: no active dropout anywhere
        assert not (isinstance(mod, nn.Dropout) and mod.p), f"{name}: dropout {mod} is on by default"
        assert not getattr(mod, "attn_drop", 0.0), f"{name}: attention dropout is on by default"
    return mixer.eval()


def run(mixer: nn.Module, tokens: Tokens) -> torch.Tensor:
    return mixer(tokens.x, tokens)


def _is_frozen(param_name: str, case: Case) -> bool:
    return any(param_name.startswith(prefix) for prefix in case.frozen)


def _padding_inert(name: str, mixer: nn.Module, tokens: Tokens, tol: float) -> None:
    """New, large features and positions at padded tokens: valid outputs unchanged, all finite."""
    valid = tokens.mask
    gen = torch.Generator().manual_seed(1)
    x2, pos2 = tokens.x.clone(), tokens.pos.clone()
    x2[~valid] = NOISE * torch.randn(x2[~valid].shape, generator=gen, dtype=x2.dtype)
    pos2[~valid] = NOISE * torch.randn(pos2[~valid].shape, generator=gen, dtype=pos2.dtype)
    with torch.no_grad():
        out1 = run(mixer, tokens)
        out2 = run(mixer, tokens.replace(x=x2, pos=pos2))
    assert torch.isfinite(out1).all() and torch.isfinite(out2).all(), f"{name}: non-finite output with padding"
    diff = (out1[valid] - out2[valid]).abs().max().item()
    assert diff <= tol, f"{name} ({'train' if mixer.training else 'eval'}): padded features reach valid outputs " \
                        f"(max |diff| {diff:.3g} > {tol:g})"
    if name in ZERO_ON_PADDING:
        assert (out2[~valid] == 0).all(), f"{name}: outputs at padded tokens are not zero"


def extend_padding(tokens: Tokens, structure: str) -> tuple[Tokens, Callable]:
    """The same batch with more padding at the end of both samples (trailing rows / frames of a grid,
    trailing tokens, trailing isolated nodes, appended to the end of ``order``), filled with large
    features; and a function mapping outputs back to the original tokens' layout."""
    x, mask, pos = tokens.x, tokens.valid(), tokens.pos
    Bn, L, C = x.shape
    gen = torch.Generator().manual_seed(4)
    fields = {}
    if tokens.grid is not None:
        g0, rest = tokens.grid[0], math.prod(tokens.grid[1:])
        e = EXTRA[structure]
        fields["grid"] = (g0 + e, *tokens.grid[1:])

        def grow(t, fill):
            t = t.view(Bn, g0, rest, *t.shape[2:])
            return torch.cat([t, fill(Bn, e, rest, *t.shape[3:])], 1).flatten(1, 2)

        def back(out):
            return out.view(Bn, g0 + e, rest, -1)[:, :g0].reshape(Bn, L, -1)
    else:
        e = 8

        def grow(t, fill):
            return torch.cat([t, fill(Bn, e, *t.shape[2:])], 1)

        def back(out):
            return out[:, :L]
        if tokens.order is not None:
            fields["order"] = torch.cat([tokens.order, torch.arange(L, L + e).expand(Bn, e)], 1)
        if tokens.edge_index is not None:
            ei = tokens.edge_index
            fields["edge_index"] = ei // L * (L + e) + ei % L
            fields["edge_attr"] = tokens.edge_attr

    def noise(*shape):
        return NOISE * torch.randn(shape, generator=gen, dtype=x.dtype)

    def false(*shape):
        return torch.zeros(shape, dtype=torch.bool)
    wide = Tokens(grow(x, noise), mask=grow(mask, false), pos=grow(pos, noise), **fields)
    return wide, back


def _amount_sensitive(name: str, index: int) -> str | None:
    return AMOUNT_SENSITIVE.get((name, index)) or AMOUNT_SENSITIVE.get((name, None))


def _params():
    """pytest params ``(name, index, case, structure)`` over every registered mixer; a mixer
    without cases gets one param with ``case=None`` (which fails, asking for a case)."""
    out = []
    for name in MIXERS.names():
        if name not in CASES:
            out.append(pytest.param(name, -1, None, None, id=f"{name}-NO-CASE"))
            continue
        for i, case in enumerate(CASES[name]):
            for structure in case.structures:
                out.append(pytest.param(name, i, case, structure, id=f"{name}[{i}]-{structure}"))
    return out


def _need_case(name: str, case: Case | None) -> None:
    if case is None:
        pytest.fail(f"mixer {name!r} is registered in MIXERS but has no test case: add an entry "
                    f"CASES[{name!r}] = [Case(kwargs, structures, needs)] in {__file__}")


PARAMS = _params()


# --- the tests ------------------------------------------------------------------------------------

@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Inputs here are tiny: a second intra-op thread only adds synchronisation, which on a shared
    2-core machine costs milliseconds per op (30x the op itself). Restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_cases_name_registered_mixers():
    stale = sorted(set(CASES) - set(MIXERS.names()))
    assert not stale, f"CASES lists mixers that are not registered in MIXERS: {stale}"


@pytest.mark.parametrize("masked", [False, True], ids=["full", "padded"])
@pytest.mark.parametrize("name,index,case,structure", PARAMS)
def test_forward_and_gradients(name, index, case, structure, masked):
    """Checks 1 and 2: shape, dtype, finite; every parameter gets a gradient from valid outputs."""
    _need_case(name, case)
    mixer = build(name, case.kwargs)
    tokens = make_tokens(structure, masked)
    x = tokens.x.clone().requires_grad_()
    tokens = tokens.replace(x=x)
    out = run(mixer, tokens)
    assert out.shape == tokens.x.shape, f"{name}: output {tuple(out.shape)} != input {tuple(tokens.x.shape)}"
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all(), f"{name}: non-finite outputs"
    valid = tokens.valid()
    weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(2))
    (out * weight)[valid].sum().backward()
    # the backward side of check 4 (several mixers have hand-written backwards): nothing flows
    # from the valid outputs into padded features
    assert torch.isfinite(x.grad).all(), f"{name}: non-finite input gradient"
    assert (x.grad[~valid] == 0).all(), f"{name}: valid outputs send gradient into padded tokens " \
                                        f"(max {x.grad[~valid].abs().max().item():.3g})"
    no_grad, stale = [], []
    for pname, p in mixer.named_parameters():
        got = p.grad is not None and bool((p.grad != 0).any())
        if p.grad is not None:
            assert torch.isfinite(p.grad).all(), f"{name}: non-finite gradient of {pname}"
        if _is_frozen(pname, case):
            if got:
                stale.append(pname)
        elif not got:
            no_grad.append(pname)
    assert not no_grad, f"{name}: parameters without a gradient from the valid outputs: {no_grad}"
    assert not stale, f"{name}: parameters listed in Case.frozen do get a gradient: {stale}"


@pytest.mark.parametrize("masked", [False, True], ids=["full", "padded"])
@pytest.mark.parametrize("name,index,case,structure", PARAMS)
def test_every_submodule_changes_output(name, index, case, structure, masked):
    """Check 3: perturbing the parameters of any module that holds some changes the valid outputs."""
    _need_case(name, case)
    mixer = build(name, case.kwargs)
    tokens = make_tokens(structure, masked)
    valid = tokens.valid()
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        base = run(mixer, tokens)[valid]
        inert = []
        for mname, mod in mixer.named_modules():
            params = [(pname, p) for pname, p in mod.named_parameters(recurse=False)]
            full = [f"{mname}.{pname}" if mname else pname for pname, _ in params]
            if not params or all(_is_frozen(f, case) for f in full):
                continue
            saved = [p.clone() for _, p in params]
            for _, p in params:
                p.add_(0.5 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
            out = run(mixer, tokens)[valid]
            for (_, p), s in zip(params, saved):
                p.copy_(s)
            # unused parameters leave the output bit-identical; an effect only through rounding
            # (a softmax-invariant key bias) stays near 1e-7; a real one is far above 1e-5 (Mamba's
            # dt_proj, whose dt is small at Mamba's init, moves outputs of ~0.2 by ~2e-4)
            if not (out - base).abs().max() > 1e-5:
                inert.append(mname or "<root>")
        assert not inert, f"{name}: perturbing these modules leaves the valid outputs unchanged: {inert}"
        assert torch.equal(run(mixer, tokens)[valid], base), "parameters were not restored"


@pytest.mark.parametrize("name,index,case,structure", PARAMS)
def test_padding_is_inert(name, index, case, structure):
    """Check 4 in float32, eval mode then train mode."""
    _need_case(name, case)
    mixer = build(name, case.kwargs)
    tokens = make_tokens(structure, masked=True)
    _padding_inert(name, mixer, tokens, TOL[torch.float32])
    _padding_inert(name, mixer.train(), tokens, TOL[torch.float32])


@pytest.mark.parametrize("name,index,case,structure", PARAMS)
def test_padding_amount_is_inert(name, index, case, structure):
    """Check 4b: more trailing padding (in both samples) leaves the valid outputs unchanged, in eval
    and in train mode. New padded *features* cannot show statistics taken over padded positions
    (a BatchNorm over all tokens: the values there come from valid neighbours) or a state that
    decays across padded scan steps; more padded positions do."""
    _need_case(name, case)
    sensitive = _amount_sensitive(name, index)
    mixer = build(name, case.kwargs)
    tokens = make_tokens(structure, masked=True)
    wide, back = extend_padding(tokens, structure)
    valid = tokens.mask
    for mode in ("eval", "train"):
        getattr(mixer, mode)()
        with torch.no_grad():
            out, out_wide = run(mixer, tokens), back(run(mixer, wide))
        assert torch.isfinite(out_wide).all()
        diff = (out[valid] - out_wide[valid]).abs().max().item()
        if sensitive:
            assert diff > TOL[torch.float32], f"{name}: AMOUNT_SENSITIVE says {sensitive!r}, but more " \
                                              f"padding changes nothing: remove the entry"
        else:
            assert diff <= TOL[torch.float32], f"{name} ({mode}): more padding changes valid outputs " \
                                               f"(max |diff| {diff:.3g})"


@pytest.mark.parametrize("name", MIXERS.names())
def test_padding_is_inert_float64(name):
    """Check 4 in float64 at 1e-10, on the first case and structure of each mixer."""
    case = CASES.get(name, [None])[0]
    _need_case(name, case)
    mixer = build(name, case.kwargs, torch.float64)
    tokens = make_tokens(case.structures[0], masked=True, dtype=torch.float64)
    assert run(mixer, tokens).dtype == torch.float64
    _padding_inert(name, mixer, tokens, TOL[torch.float64])
    _padding_inert(name, mixer.train(), tokens, TOL[torch.float64])


@pytest.mark.parametrize("name,index,case,structure", PARAMS)
def test_missing_structure(name, index, case, structure):
    """Check 5: without a field it needs, MissingStructureError naming the field; without a field
    it does not need (``OPTIONAL`` ones aside), the same output."""
    _need_case(name, case)
    mixer = build(name, case.kwargs)
    tokens = make_tokens(structure, masked=False)
    with torch.no_grad():
        base = run(mixer, tokens)
        for field in ("grid", "edge_index", "edge_attr", "order", "pos"):
            if getattr(tokens, field) is None or (field in OPTIONAL and field not in case.needs):
                continue
            drop = {field: None}
            if field == "edge_index":
                drop["edge_attr"] = None  # an edge_attr without edge_index is itself invalid
            without = tokens.replace(**drop)
            if field in case.needs:
                with pytest.raises(MissingStructureError, match=f"Tokens.{field}"):
                    run(mixer, without)
            else:
                out = run(mixer, without)
                assert torch.allclose(out, base, rtol=0, atol=1e-6), \
                    f"{name}: output depends on Tokens.{field}, which the case does not list in needs"

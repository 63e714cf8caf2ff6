"""Selective scans: the chunked scan (each backend: pure PyTorch, and the compiled CPU kernel
wherever a C compiler is present) against the sequential reference (outputs and gradients,
float64 and float32), the hand-written backwards by gradcheck, and the Mamba mixer in every
direction (causality, padding, paths, gradients, MAC count)."""
import os
import shutil
import sys

import pytest
import torch

from glocal.core import MIXERS, Tokens, ckernels, scan_kernel
from glocal.core.errors import InputError, MissingStructureError
from glocal.core.ssm import (SS2D, Mamba, _grid_paths, _mamba_ssm_kernel, scan_macs, selective_scan,
                             selective_scan_ref)

DIRECTIONS = ("forward", "backward", "bidirectional", "grid", "order", "order_bidirectional")
# with a C compiler on the machine the kernel must build: a failed build fails its tests, it is not skipped
HAS_CC = bool(os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc"))
BACKENDS = ["torch", "kernel"] if HAS_CC or scan_kernel.available() else ["torch"]


def _scan_inputs(Bsz=2, D=6, L=37, N=4, G=None, dtype=torch.float64, dt_scale=1.0):
    u = torch.randn(Bsz, D, L, dtype=dtype)
    dt = torch.randn(Bsz, D, L, dtype=dtype) * dt_scale
    A = -torch.rand(D, N, dtype=dtype) * 3
    shape = (Bsz, N, L) if G is None else (Bsz, G, N, L)
    B, C = torch.randn(*shape, dtype=dtype), torch.randn(*shape, dtype=dtype)
    Dp, z, bias = torch.randn(D, dtype=dtype), torch.randn(Bsz, D, L, dtype=dtype), torch.randn(D, dtype=dtype)
    return [t.requires_grad_() for t in (u, dt, A, B, C, Dp, z, bias)]


def _compare(args, chunk, backend="torch", **kw):
    y = selective_scan(*args, chunk=chunk, backend=backend, **kw)
    y_ref = selective_scan_ref(*args, **kw)
    g = torch.randn_like(y_ref)
    grads = torch.autograd.grad(y, args, g)
    grads_ref = torch.autograd.grad(y_ref, args, g)
    err_y = (y - y_ref).abs().max().item()
    err_g = max((a - b).abs().max().item() / max(1.0, b.abs().max().item()) for a, b in zip(grads, grads_ref))
    return err_y, err_g, y


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("L,chunk", [(37, 1), (37, 5), (37, 16), (37, 64), (16, 16), (50, 7)])
@pytest.mark.parametrize("G", [None, 2])
def test_chunked_scan_matches_reference_float64(L, chunk, G, backend):
    err_y, err_g, y = _compare(_scan_inputs(L=L, G=G), chunk, backend)
    assert y.shape == (2, 6, L)
    assert err_y <= 1e-6 and err_g <= 1e-6, (err_y, err_g)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("D,G", [(37, None), (40, 2), (64, 4)])
def test_channel_blocks_full_and_partial(D, G, backend):
    """The kernel vectorises blocks of 16 channels per group: full blocks, a partial last block
    (37 = 2 x 16 + 5; groups of 20 = 16 + 4) and groups of exactly one block."""
    err_y, err_g, _ = _compare(_scan_inputs(D=D, G=G, L=45, N=5), 8, backend)
    assert err_y <= 1e-6 and err_g <= 1e-6, (err_y, err_g)


@pytest.mark.parametrize("backend", BACKENDS)
def test_token_major_storage_matches_reference(backend):
    """[B, D, L] views of [B, L, D] memory (what the Mamba mixer passes) take the no-transpose path."""
    args = _scan_inputs(L=29, G=2)
    args = [a.detach().transpose(-1, -2).contiguous().transpose(-1, -2).requires_grad_() if a.dim() >= 3 else a
            for a in args]
    assert args[0].stride(1) == 1
    err_y, err_g, _ = _compare(args, 8, backend)
    assert err_y <= 1e-6 and err_g <= 1e-6


@pytest.mark.parametrize("backend", BACKENDS)
def test_chunked_scan_matches_reference_float32(backend):
    """float32 tolerance: 1e-4 on outputs and (relative to their scale) on gradients."""
    err_y, err_g, _ = _compare(_scan_inputs(L=100, D=40, N=16, dtype=torch.float32), 16, backend)
    assert err_y <= 1e-4 and err_g <= 1e-4, (err_y, err_g)


@pytest.mark.parametrize("backend", BACKENDS)
def test_chunked_scan_plain_arguments(backend):
    """Without skip, gate, bias or softplus (dt used as given, e.g. a masked dt)."""
    u, dt, A, B, C, *_ = _scan_inputs(L=23)
    dt = dt.detach().abs().requires_grad_()
    args = [u, dt, A, B, C]
    err_y, err_g, _ = _compare(args, 4, backend, dt_softplus=False)
    assert err_y <= 1e-6 and err_g <= 1e-6


@pytest.mark.parametrize("backend", BACKENDS)
def test_strong_decay_stays_finite_and_exact(backend):
    """Large dt * A (state forgets within a step) is where log-space scans overflow; this one
    multiplies decays <= 1 only (the kernel's exp also underflows gracefully, to ~1e-38 / 0)."""
    args = _scan_inputs(L=40, dt_scale=30.0)
    args[2] = (args[2].detach() * 10).requires_grad_()  # A down to -30
    err_y, err_g, y = _compare(args, 16, backend)
    assert torch.isfinite(y).all()
    assert err_y <= 1e-6 and err_g <= 1e-6


@pytest.mark.parametrize("backend", BACKENDS)
def test_hand_written_backward_gradcheck(backend):
    u, dt, A, B, C, Dp, z, bias = _scan_inputs(Bsz=1, D=4, L=7, N=3, G=2)
    assert torch.autograd.gradcheck(lambda *a: selective_scan(*a, chunk=3, backend=backend),
                                    (u, dt, A, B, C, Dp, z, bias))


@pytest.mark.skipif("kernel" not in BACKENDS, reason="no C compiler: the compiled scan cannot be built")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_kernel_threads_split_the_channel_blocks(dtype):
    """Threads run disjoint ranges of channel blocks and sum their partial gradients: any thread
    count gives the one-thread result (up to summation order)."""
    args = _scan_inputs(Bsz=3, D=50, L=33, N=4, G=2, dtype=dtype)
    g = torch.randn(3, 50, 33, dtype=dtype)
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2, 5):
            torch.set_num_threads(n)
            y = selective_scan(*args, chunk=8, backend="kernel")
            results.append((y, *torch.autograd.grad(y, args, g)))
    finally:
        torch.set_num_threads(threads)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert (a - b).abs().max() <= tol * max(1.0, a.abs().max().item())


@pytest.mark.skipif("kernel" not in BACKENDS, reason="no C compiler: the compiled scan cannot be built")
def test_kernel_leaves_denormals_alone():
    """The kernel is built without -ffast-math: loading it must not switch the process to
    flush-denormals-to-zero (which -ffast-math's startup code would do)."""
    assert scan_kernel.available(torch.float32) and scan_kernel.available(torch.float64)
    tiny = torch.tensor([1e-40], dtype=torch.float32)
    assert (tiny * 1.5).item() != 0.0


def test_kernel_can_be_switched_off(monkeypatch):
    """``GLOCAL_KERNELS=0`` (or no compiler): ``auto`` runs PyTorch, ``kernel`` says why it cannot."""
    monkeypatch.setenv("GLOCAL_KERNELS", "0")
    ckernels.load.cache_clear()
    try:
        assert not scan_kernel.available()
        args = [t.detach() for t in _scan_inputs(L=12)]
        assert torch.equal(selective_scan(*args, backend="auto"), selective_scan(*args, backend="torch"))
        with pytest.raises(InputError, match="C compiler"):
            selective_scan(*args, backend="kernel")
    finally:
        monkeypatch.delenv("GLOCAL_KERNELS")
        ckernels.load.cache_clear()


def test_kernel_build_failure_falls_back(monkeypatch, tmp_path):
    """A compiler that fails (here: ``false``) leaves the kernel unavailable instead of raising."""
    monkeypatch.setenv("CC", shutil.which("false") or "/bin/false")
    monkeypatch.setenv("GLOCAL_CACHE", str(tmp_path))
    ckernels.load.cache_clear()
    try:
        assert not scan_kernel.available(torch.float64)
        assert not list(tmp_path.rglob("*.so"))
    finally:
        monkeypatch.undo()
        ckernels.load.cache_clear()


def test_half_precision_inputs_scan_in_float32():
    args = [t.detach() for t in _scan_inputs(L=20, dtype=torch.float32)]
    y32 = selective_scan(*args)
    y16 = selective_scan(*[t.bfloat16() for t in args])
    assert y16.dtype == torch.bfloat16 and torch.isfinite(y16.float()).all()
    assert (y16.float() - y32).abs().max() <= 0.1 * y32.abs().max()


def test_backend_choice_and_missing_mamba_ssm(monkeypatch):
    args = [t.detach() for t in _scan_inputs(L=12)]
    best = "kernel" if "kernel" in BACKENDS else "torch"  # what auto picks on CPU
    assert torch.equal(selective_scan(*args, backend=best), selective_scan(*args, backend="auto"))
    with pytest.raises(ValueError, match="backend"):
        selective_scan(*args, backend="cuda")
    monkeypatch.setitem(sys.modules, "mamba_ssm", None)  # makes the import fail
    assert _mamba_ssm_kernel() is None


def test_bad_shapes_raise_clear_errors():
    u, dt, A, B, C, *_ = [t.detach() for t in _scan_inputs(L=10)]
    with pytest.raises(InputError, match="A"):
        selective_scan(u, dt, A[:3], B, C)
    with pytest.raises(InputError, match="groups|G dividing"):
        selective_scan(u, dt, A, B.view(2, 1, 4, 10).expand(2, 4, 4, 10), C)


def test_scan_macs_counts_state_update_and_readout():
    assert scan_macs(2, 768, 4096, 16) == 4 * 2 * 768 * 4096 * 16 + 2 * 2 * 768 * 4096


# --- the Mamba mixer ------------------------------------------------------------------------------

def _tokens(Bsz=2, grid=(3, 4), C=16, mask=None, order=None, dtype=torch.float64):
    L = grid[0] * grid[1]
    x = torch.randn(Bsz, L, C, dtype=dtype)
    if order is None:
        order = torch.stack([torch.randperm(L) for _ in range(Bsz)])
    return Tokens(x, mask=mask, grid=grid, order=order)


def _mamba(direction, C=16, **kw):
    return Mamba(C, d_state=4, expand=2, direction=direction, **kw).double()


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_mamba_every_direction_shape_grad_and_submodules(direction):
    m = _mamba(direction)
    t = _tokens()
    y = m(t.x, t)
    assert y.shape == t.x.shape and torch.isfinite(y).all()
    y.square().sum().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    n_paths = {"forward": 1, "backward": 1, "bidirectional": 2, "grid": 4, "order": 1,
               "order_bidirectional": 2}[direction]
    assert len(m.paths) == n_paths
    with torch.no_grad():  # every parameter tensor changes the output
        for name, p in m.named_parameters():
            saved = p.clone()
            p.add_(torch.randn_like(p) * 0.5)
            assert not torch.allclose(m(t.x, t), y), name
            p.copy_(saved)


def _influence(m, t, j):
    """Which outputs change when token j of sample 0 changes: [L] bool."""
    y = m(t.x, t)
    x2 = t.x.clone()
    x2[0, j] += 1.0
    y2 = m(x2, t.replace(x=x2))
    return (y2[0] - y[0]).abs().amax(-1) > 1e-12


def test_forward_is_causal_and_backward_anticausal():
    t = _tokens(Bsz=1)
    L, j = t.x.shape[1], 5
    pos = torch.arange(L)
    assert torch.equal(_influence(_mamba("forward"), t, j), pos >= j)
    assert torch.equal(_influence(_mamba("backward"), t, j), pos <= j)
    assert _influence(_mamba("bidirectional"), t, j).all()
    assert _influence(_mamba("grid"), t, j).all()


def test_order_scans_along_tokens_order():
    t = _tokens(Bsz=1)
    order = t.order[0]
    rank = torch.argsort(order)  # position of each token along the order
    j = 4
    assert torch.equal(_influence(_mamba("order"), t, j), rank >= rank[j])
    # "order" == "forward" on the permuted sequence, scattered back
    fwd, by_order = _mamba("forward"), _mamba("order")
    by_order.load_state_dict(fwd.state_dict())
    y = by_order(t.x, t)
    x_perm = t.x[:, order]
    y_perm = fwd(x_perm, Tokens(x_perm))
    torch.testing.assert_close(y[:, order], y_perm)


def test_backward_and_bidirectional_paths():
    t = _tokens(Bsz=1)
    fwd, bwd, bi = _mamba("forward"), _mamba("backward"), _mamba("bidirectional")
    bwd.load_state_dict(fwd.state_dict())
    xf = t.x.flip(1)
    torch.testing.assert_close(bwd(t.x, t), fwd(xf, Tokens(xf)).flip(1))
    # Vim: shared in_proj / out_proj (no bias), one parameter set per path, paths averaged
    state = bi.state_dict()
    for name, one in ((".0.", fwd), (".1.", bwd)):
        one.load_state_dict({k.replace(name, ".0."): v for k, v in state.items()
                             if not k.startswith("paths.") or name in k})
    torch.testing.assert_close(bi(t.x, t), (fwd(t.x, t) + bwd(t.x, t)) / 2)


def test_grid_paths_are_vmamba_cross_scan():
    paths = [p.tolist() for p in _grid_paths((2, 3), "cpu")]
    assert paths == [[0, 1, 2, 3, 4, 5], [0, 3, 1, 4, 2, 5], [5, 4, 3, 2, 1, 0], [5, 2, 4, 1, 3, 0]]
    assert len(_grid_paths((2, 3, 4), "cpu")) == 6


@pytest.mark.parametrize("direction", ["forward", "backward", "bidirectional", "order", "order_bidirectional"])
def test_padding_at_the_end_equals_the_unpadded_sample(direction):
    """Sequence padding at the end (for "order": padded tokens last in the order) gives valid
    tokens exactly the outputs of the unpadded sample."""
    m = _mamba(direction)
    Lv, L, C = 7, 12, 16
    x = torch.randn(1, L, C, dtype=torch.float64) * 3
    mask = torch.zeros(1, L, dtype=torch.bool)
    mask[:, :Lv] = True
    order = torch.cat([torch.randperm(Lv), torch.arange(Lv, L)])[None]  # padded tokens last
    y = m(x, Tokens(x, mask=mask, order=order))
    y_short = m(x[:, :Lv], Tokens(x[:, :Lv], order=order[:, :Lv]))
    torch.testing.assert_close(y[:, :Lv], y_short)


@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
def test_padded_steps_are_identity_steps(direction):
    """A padded step leaves the state unchanged (dt = 0): without the conv, valid tokens get the
    outputs of the sample with the padded tokens removed, wherever they sit."""
    m = _mamba(direction, conv=None)
    x = torch.randn(1, 9, 16, dtype=torch.float64)
    mask = torch.ones(1, 9, dtype=torch.bool)
    mask[0, [2, 5, 6]] = False
    y = m(x, Tokens(x, mask=mask))
    xv = x[mask][None]
    torch.testing.assert_close(y[mask][None], m(xv, Tokens(xv)))


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_padding_anywhere_is_inert(direction):
    """Padded tokens (mask False) anywhere, e.g. the right column of a grid, never influence
    valid outputs, and produce no NaN even when their features are huge."""
    m = _mamba(direction)
    grid = (3, 4)
    mask = torch.ones(2, 12, dtype=torch.bool)
    mask.view(2, 3, 4)[1, :, 3] = False  # sample 1: last column padded
    mask[0, 5] = False
    t = _tokens(grid=grid, mask=mask)
    y = m(t.x, t)
    x2 = t.x.clone()
    x2[~mask] = torch.randn_like(x2[~mask]) * 1e3
    y2 = m(x2, t.replace(x=x2))
    assert torch.isfinite(y2).all()
    torch.testing.assert_close(y2[mask], y[mask])


def test_ss2d_is_vmamba_block_mixer_and_needs_a_grid():
    m = SS2D(16, d_state=4).double()
    assert m.direction == "grid" and m.conv_grid is not None and len(m.paths) == 4
    assert all(p.conv1d is None for p in m.paths)
    t = _tokens()
    y = m(t.x, t)
    assert y.shape == t.x.shape
    with pytest.raises(MissingStructureError, match="grid"):
        m(t.x, Tokens(t.x))
    with pytest.raises(InputError, match="rank"):
        x3 = torch.randn(1, 8, 16, dtype=torch.float64)
        m(x3, Tokens(x3, grid=(2, 2, 2)))


def test_order_direction_needs_order():
    m = _mamba("order")
    x = torch.randn(1, 5, 16, dtype=torch.float64)
    with pytest.raises(MissingStructureError, match="order"):
        m(x, Tokens(x))


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="direction"):
        Mamba(16, direction="diagonal")
    with pytest.raises(ValueError, match="merge"):
        Mamba(16, merge="max")


def test_mamba_extra_macs_and_registry():
    m = Mamba(32, d_state=16, expand=2, direction="bidirectional")
    t = Tokens(torch.randn(2, 10, 32))
    assert m.extra_macs(t.x, t) == 2 * scan_macs(2, 64, 10, 16) + 2 * 2 * 10 * 64
    assert m.dt_rank == 2 and m.d_inner == 64
    built = MIXERS.build(dict(type="Mamba", direction="grid"), dim=32)
    assert isinstance(built, Mamba) and len(built.paths) == 4
    assert isinstance(MIXERS.build(dict(type="SS2D"), dim=32), Mamba)


def test_mamba_in_a_block_with_complexity_count():
    from glocal.core import LocalGlobalBlock
    from glocal.core.complexity import count
    block = LocalGlobalBlock(32, global_=dict(type="Mamba", direction="bidirectional", d_state=8), ffn=None,
                             norm="RMSNorm")
    t = Tokens(torch.randn(1, 20, 32))
    report = count(block, t)
    assert report.total_macs >= block.global_.extra_macs(t.x, t)

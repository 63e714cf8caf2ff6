"""Benchmark: the chunked selective scan against the sequential reference (a tool, not a test).

    python tools/bench_ssm.py                          # B=2, L=4096, D=768, N=16, forward and fwd+bwd
    python tools/bench_ssm.py --threads 1 --repeat 3   # one thread: steadier on a shared machine
    python tools/bench_ssm.py --layout bdl             # channel-major [B, D, L] storage
    python tools/bench_ssm.py --chunks 4 8 16 32 64    # tune the chunk length

Both functions run in this one process on the same inputs and threads (best of ``--repeat``
rounds, taken round-robin); quote the ratios. Inputs include the skip ``D``, the gate ``z`` and
softplus on ``dt``, as a Mamba layer uses them. ``--layout bld`` (default) stores the [B, D, L]
arguments token-major, as a Mamba layer's projections produce them; ``bdl`` stores them
channel-major (mamba_ssm's convention): the reference then steps through strided slices and the
chunked scan transposes its inputs once, in tiles.
"""
from __future__ import annotations

import argparse
import time

import torch

from glocal.core.ssm import DEFAULT_CHUNK, selective_scan, selective_scan_ref


def _inputs(B, D, L, N, requires_grad, layout="bld", seed=0):
    """Scan inputs in the [B, D, L] shapes of the API. ``layout="bld"`` stores them token-major
    (``[B, L, D]`` memory, what a Mamba layer's projections produce) and passes [B, D, L] views;
    ``"bdl"`` stores them channel-major."""
    g = torch.Generator().manual_seed(seed)

    def seq(rows, shift=0.0):  # a [B, rows, L] tensor in the chosen memory layout
        t = torch.randn(B, L, rows, generator=g) + shift
        t = t.transpose(1, 2) if layout == "bld" else t.transpose(1, 2).contiguous()
        return t.requires_grad_(requires_grad) if requires_grad else t

    u, dt = seq(D), seq(D, -2.0)  # softplus(dt - 2) ~ 0.1: Mamba's dt range
    Bm, Cm, z = seq(N), seq(N), seq(D)
    A = -torch.arange(1, N + 1, dtype=torch.float32).repeat(D, 1)  # S4D-real init
    Dp = torch.ones(D)
    if requires_grad:
        A.requires_grad_()
        Dp.requires_grad_()
    return [u, dt, A, Bm, Cm, Dp, z]


def _time(fn, repeat):
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--B", type=int, default=2)
    p.add_argument("--D", type=int, default=768)
    p.add_argument("--L", type=int, default=4096)
    p.add_argument("--N", type=int, default=16)
    p.add_argument("--chunks", type=int, nargs="+", default=[DEFAULT_CHUNK])
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    p.add_argument("--skip-ref", action="store_true")
    p.add_argument("--layout", choices=("bld", "bdl"), default="bld",
                   help="memory layout of the [B, D, L] inputs: token-major views (bld) or contiguous (bdl)")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    print(f"B={a.B} D={a.D} L={a.L} N={a.N} layout={a.layout} threads={torch.get_num_threads()} "
          f"torch={torch.__version__}")
    x = _inputs(a.B, a.D, a.L, a.N, False, a.layout)
    xg = _inputs(a.B, a.D, a.L, a.N, True, a.layout)

    def fwd(f, **kw):
        with torch.no_grad():
            f(*x, **kw)

    def fwd_bwd(f, **kw):
        for t in xg:
            t.grad = None
        f(*xg, **kw).sum().backward()

    paths = [] if a.skip_ref else [("reference", selective_scan_ref, {})]
    paths += [(f"chunked T={c}", selective_scan, dict(chunk=c)) for c in a.chunks]
    best = {name: [float("inf"), float("inf")] for name, _, _ in paths}
    for _ in range(a.repeat):  # round-robin, best of a.repeat: robust to a busy machine
        for name, f, kw in paths:
            best[name][0] = min(best[name][0], _time(lambda: fwd(f, **kw), 1))
            best[name][1] = min(best[name][1], _time(lambda: fwd_bwd(f, **kw), 1))
    rows = [(name, *best[name]) for name, _, _ in paths]
    ref = rows[0] if not a.skip_ref else None
    print(f"{'path':<16} {'fwd s':>8} {'fwd+bwd s':>10} {'fwd x':>7} {'f+b x':>7}")
    for name, f, fb in rows:
        sp = f"{ref[1] / f:7.1f} {ref[2] / fb:7.1f}" if ref else ""
        print(f"{name:<16} {f:8.3f} {fb:10.3f} {sp}")


if __name__ == "__main__":
    main()

"""Neighbourhood attention vs window attention: forward + backward time, side by side.

The issue's target: NA2D at 56x56, kernel 7, dim 96, 3 heads, forward+backward <= 2x the time of
WindowAttention (window 7) at the same size. Runs both alternately in one process on the same
input and reports the ratio of the best (minimum) times and the median of per-round ratios.

    python tools/bench_neighborhood.py [--batch 8] [--threads 2] [--rounds 15] [--tile 7 7] [--cpu-time]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from glocal.core import Tokens
from glocal.core.attention import WindowAttention
from glocal.core.neighborhood import NeighborhoodAttention


def step(module, x, tokens, clock=time.perf_counter) -> float:
    t0 = clock()
    module(x, tokens).sum().backward()
    return clock() - t0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--side", type=int, default=56)
    p.add_argument("--dim", type=int, default=96)
    p.add_argument("--heads", type=int, default=3)
    p.add_argument("--kernel", type=int, default=7)
    p.add_argument("--dilation", type=int, default=1)
    p.add_argument("--tile", type=int, nargs="+", default=None)
    p.add_argument("--block", type=int, default=1 << 20)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--cpu-time", action="store_true",
                   help="time with the process's CPU time (robust to other processes on a shared "
                        "machine; with --threads 1 it equals the compute time)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    L = args.side * args.side
    x = torch.randn(args.batch, L, args.dim, requires_grad=True)
    tokens = Tokens(x.detach(), grid=(args.side, args.side))
    wa = WindowAttention(args.dim, args.heads, window=args.kernel)
    na = NeighborhoodAttention(args.dim, args.heads, kernel=args.kernel, dilation=args.dilation,
                               tile=tuple(args.tile) if args.tile else None, block=args.block)
    for m in (wa, na, wa, na):  # warm-up
        step(m, x, tokens)
    tw, tn = [], []
    clock = time.process_time if args.cpu_time else time.perf_counter
    for _ in range(args.rounds):
        tw.append(step(wa, x, tokens, clock))
        tn.append(step(na, x, tokens, clock))
    ratios = [n / w for n, w in zip(tn, tw)]
    print(f"grid {args.side}x{args.side} dim {args.dim} heads {args.heads} kernel {args.kernel} "
          f"dilation {args.dilation} batch {args.batch} threads {torch.get_num_threads()} "
          f"clock {'process CPU time' if args.cpu_time else 'wall'}")
    print(f"WindowAttention    fwd+bwd min {min(tw) * 1e3:8.1f} ms  median {statistics.median(tw) * 1e3:8.1f} ms")
    print(f"NeighborhoodAttn   fwd+bwd min {min(tn) * 1e3:8.1f} ms  median {statistics.median(tn) * 1e3:8.1f} ms")
    print(f"ratio NA / WA: of minima {min(tn) / min(tw):.2f}, median of rounds {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Training curves of one or more work dirs as a PNG: one subplot per key, one line per run.

    python tools/plot_logs.py WORK_DIR [WORK_DIR ...] --keys loss lr top1 [--out curves.png]
                              [--x {iter,epoch}] [--smooth N]
    python tools/plot_logs.py 'work_dirs/swin_*' --keys loss top1 --smooth 10 --out swin.png

Reads ``D/<timestamp>/vis_data/scalars.json`` of every segment (a resumed run continues its
curve; a step logged twice keeps the later value). The legend is the work dir's name.

- A key on training lines (``loss``, ``lr``, ...) is drawn per logged iteration; a key only on
  validation lines (``top1``, ...) is drawn with markers, one point per evaluation.
- ``--x iter`` (default): validation of an epoch loop (logged with the epoch as its step) is
  placed at the iteration that ends that epoch, ``epoch * iterations per epoch`` (from the log's
  ``Epoch(train) [e][i/N]`` lines). ``--x epoch``: training lines at ``iteration / iterations per
  epoch`` (fractions of an epoch), validation at its epoch; needs an epoch loop.
- ``--smooth N``: a trailing moving average over the last N logged points of each training
  curve (N=1: none); validation curves are drawn as measured.

Needs matplotlib (``pip install 'glocal[bench]'``); draws with its Agg backend, no display.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("work_dirs", nargs="+", metavar="WORK_DIR", help="work dirs, globs or folders of work dirs")
    p.add_argument("--keys", nargs="+", required=True, help="scalars to plot, e.g. loss lr top1")
    p.add_argument("--out", default="curves.png", help="PNG file (default curves.png)")
    p.add_argument("--x", choices=["iter", "epoch"], default="iter", help="x axis (default iter)")
    p.add_argument("--smooth", type=int, default=1, metavar="N",
                   help="moving average over N points of training curves (default 1: none)")
    return p.parse_args(argv)


def moving_average(ys: list[float], n: int) -> list[float]:
    """Trailing mean over the last ``n`` values (fewer at the start); same length as ``ys``."""
    if n <= 1:
        return list(ys)
    out, total = [], 0.0
    for i, y in enumerate(ys):
        total += y
        if i >= n:
            total -= ys[i - n]
        out.append(total / min(i + 1, n))
    return out


def collect(args) -> list[tuple[str, dict[str, tuple[list, list, bool]]]]:
    """``[(run name, {key: (xs, ys, from_validation)})]``; :class:`InputError` naming a run that
    lacks a key, with the keys it has."""
    from glocal.core.errors import InputError
    from glocal.tasks.logs import COUNTERS, find_work_dirs, series

    if args.smooth < 1:
        raise InputError(f"--smooth must be at least 1; got {args.smooth}")
    curves = []
    for run in find_work_dirs(args.work_dirs):
        records = run.records()
        if not records:
            raise InputError(f"{run.path}: no vis_data/scalars.json lines in any segment")
        per_key = {key: series(run, key, args.x, records) for key in args.keys}
        missing = [key for key, (xs, _, _) in per_key.items() if not xs]
        if missing:
            have = sorted({k for r in records for k in r} - COUNTERS)
            raise InputError(f"run {run.name} ({run.path}) has no key {', '.join(missing)}; "
                             f"its keys: {', '.join(have)}")
        curves.append((run.name, per_key))
    return curves


def main(argv=None) -> int:
    args = parse_args(argv)
    from glocal.core.errors import GlocalError

    curves = collect(args)
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise GlocalError("tools/plot_logs.py needs matplotlib: pip install 'glocal[bench]'") from None

    cols = min(3, len(args.keys))
    rows = math.ceil(len(args.keys) / cols)
    fig = Figure(figsize=(5 * cols, 3.6 * rows), layout="constrained")
    FigureCanvasAgg(fig)
    for i, key in enumerate(args.keys):
        ax = fig.add_subplot(rows, cols, i + 1)
        for name, per_key in curves:
            xs, ys, from_val = per_key[key]
            if from_val:
                ax.plot(xs, ys, marker="o", markersize=3, label=name)
            else:
                ax.plot(xs, moving_average(ys, args.smooth), label=name)
        ax.set_title(key, fontsize=10)
        ax.set_xlabel("iteration" if args.x == "iter" else "epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if args.smooth > 1:
        fig.suptitle(f"training curves: trailing mean over {args.smooth} logged points", fontsize=10)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}: {len(args.keys)} key(s), {len(curves)} run(s)")
    return 0


if __name__ == "__main__":
    from glocal.tasks.engine import run_tool
    run_tool(main)

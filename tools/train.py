#!/usr/bin/env python
"""Train a model from a config.

    python tools/train.py CONFIG [--work-dir D] [--resume [PATH]] [--amp] [--seed N]
                          [--cfg-options KEY=VALUE ...] [--launcher {none,pytorch}] [--procs N]
                          [--progress {auto,bar,lines,off}] [--verbose]

Distributed (CPU: gloo; CUDA: nccl):

    python -m torch.distributed.run --nproc_per_node=2 tools/train.py CONFIG --launcher pytorch

On a CPU-only machine, ``--procs N`` (or ``cpu_procs = N`` in the config) starts those N processes
itself, each with cores / N threads; the config's batch size is per process.

Checkpoints, the resolved config, text logs, ``vis_data/scalars.json`` and TensorBoard events
go to the work dir (default ``work_dirs/<config stem>``). The console shows a short banner, a
progress display (a live bar on a terminal, plain periodic lines otherwise: ``--progress`` or
``GLOCAL_PROGRESS``) and warnings; the environment, config and hook-order dump and mmengine's
periodic log lines go to ``<work dir>/<timestamp>/<timestamp>.log`` (``--verbose`` or
``GLOCAL_VERBOSE=1``: to the console too).
"""
from __future__ import annotations

import argparse
import sys

from mmengine.config import DictAction


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Train a glocal model")
    parser.add_argument("config", help="config file")
    parser.add_argument("--work-dir", help="where checkpoints and logs go (default work_dirs/<config stem>)")
    parser.add_argument("--resume", nargs="?", const="auto", default=None, metavar="PATH",
                        help="resume from PATH, or without a path from the latest checkpoint in the work dir")
    parser.add_argument("--amp", action="store_true",
                        help="mixed precision (mmengine's AmpOptimWrapper; bfloat16 autocast on CPU)")
    parser.add_argument("--seed", type=int, help="random seed (overrides randomness.seed)")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, metavar="KEY=VALUE",
                        help="override config keys, e.g. train_cfg.max_epochs=3 model.head.drop=0.1; "
                             "a key must exist in the config (or be an argument of the component there)")
    parser.add_argument("--launcher", choices=["none", "pytorch"], default="none", help="job launcher")
    parser.add_argument("--procs", type=int, metavar="N",
                        help="data-parallel processes on a CPU-only machine (default: the config's cpu_procs, "
                             "else 1); the config's batch size is per process")
    parser.add_argument("--progress", choices=["auto", "bar", "lines", "off"],
                        help="progress display: a live bar, plain periodic lines (CI, redirected output) or none "
                             "(default: $GLOCAL_PROGRESS, else auto: a bar on a terminal, lines otherwise)")
    parser.add_argument("--verbose", action="store_true", default=None,
                        help="also print the environment, config, hook order and every log line "
                             "(always in the work dir's log file; default: $GLOCAL_VERBOSE)")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=0, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    import torch
    from mmengine.logging import print_log

    from glocal.core.errors import ConfigError
    from glocal.tasks.engine import build_runner, launch_cpu_procs, prepare_config

    cfg = prepare_config(args.config, args.cfg_options, args.work_dir, args.launcher)
    procs = args.procs if args.procs is not None else cfg.get("cpu_procs", 1)
    if not isinstance(procs, int) or isinstance(procs, bool) or procs < 1:
        raise ConfigError(f"cpu_procs / --procs: expected an integer >= 1; got {procs!r}")
    if procs > 1 and args.launcher == "none" and not torch.cuda.is_available():
        print(f"tools/train.py: {procs} data-parallel CPU processes (cpu_procs={procs}; --procs 1 for one)",
              flush=True)
        return launch_cpu_procs(__file__, argv, procs)
    if args.amp:
        if cfg.optim_wrapper.get("type") == "AmpOptimWrapper":
            print_log("AMP is already enabled in the config", logger="current")
        else:
            cfg.optim_wrapper.type = "AmpOptimWrapper"
            cfg.optim_wrapper.setdefault("loss_scale", "dynamic")
    if args.resume == "auto":
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    if args.seed is not None:
        cfg.randomness = {**(cfg.get("randomness") or {}), "seed": args.seed}
    runner = build_runner(cfg, progress=args.progress, verbose=args.verbose)
    runner.train()
    return 0


if __name__ == "__main__":
    from glocal.tasks.engine import run_tool
    run_tool(main)

#!/usr/bin/env python
"""Evaluate a checkpoint on the config's test set.

    python tools/test.py CONFIG CHECKPOINT [--out metrics.json] [--dump predictions.json] [--work-dir D]
                         [--cfg-options KEY=VALUE ...] [--launcher {none,pytorch}]
                         [--progress {auto,bar,lines,off}] [--verbose]

CHECKPOINT is an mmengine ``.pth`` checkpoint (read with ``weights_only=True``) or a
``.safetensors`` file written by ``tools/export.py``. The metrics are printed as JSON. The console
shows a banner and the progress of testing, as ``tools/train.py`` (``--progress``, ``--verbose``);
the full log goes to ``<work dir>/<timestamp>/<timestamp>.log``.

``--dump predictions.json`` (as mmdet's and mmpretrain's ``--dump``) also writes what the model
predicted for every test sample: a JSON list of one record per sample, in dataset order, with its
``index``, its ``path`` when the dataset reads files, and the post-processed prediction
(``pred_label``, ``pred_scores`` and ``gt_label`` for classification; see
:class:`glocal.tasks.metrics.DumpPredictions`). It is one more metric of the runner's test
evaluator, which returns no value.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from mmengine.config import DictAction


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Test a glocal model")
    parser.add_argument("config", help="config file")
    parser.add_argument("checkpoint", help=".pth checkpoint or .safetensors weights")
    parser.add_argument("--out", help="write the metrics to this JSON file")
    parser.add_argument("--dump", metavar="FILE.json",
                        help="also write every test sample's prediction to this JSON file, in dataset order")
    parser.add_argument("--work-dir", help="where the test logs go (default work_dirs/<config stem>)")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, metavar="KEY=VALUE",
                        help="override config keys, e.g. test_dataloader.batch_size=256")
    parser.add_argument("--launcher", choices=["none", "pytorch"], default="none", help="job launcher")
    parser.add_argument("--progress", choices=["auto", "bar", "lines", "off"],
                        help="progress display (default: $GLOCAL_PROGRESS, else a bar on a terminal, lines otherwise)")
    parser.add_argument("--verbose", action="store_true", default=None,
                        help="also print the environment, config and every log line (default: $GLOCAL_VERBOSE)")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=0, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from mmengine.dist import is_main_process

    from glocal.tasks.engine import build_runner, prepare_config
    from glocal.tasks.metrics import DumpPredictions

    cfg = prepare_config(args.config, args.cfg_options, args.work_dir, args.launcher)
    runner = build_runner(cfg, for_test=True, progress=args.progress, verbose=args.verbose)
    runner.load_weights(args.checkpoint)
    if args.dump:  # mmpretrain's way: one more metric on the built test evaluator (the config stays as written)
        runner.test_evaluator.metrics.append(DumpPredictions.for_loader(args.dump, runner.test_dataloader))
    metrics = {k: float(v) if hasattr(v, "__float__") else v for k, v in runner.test().items()}
    if is_main_process():
        print(json.dumps(metrics, indent=2))
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(metrics, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    from glocal.tasks.engine import run_tool
    run_tool(main)

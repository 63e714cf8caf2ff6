#!/usr/bin/env python
"""Print a config as the engine resolves it (base merged, ``--cfg-options`` applied and checked,
run-time defaults filled in).

    python tools/print_config.py CONFIG [--cfg-options KEY=VALUE ...]
"""
from __future__ import annotations

import argparse

from mmengine.config import DictAction


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Print the resolved config")
    parser.add_argument("config", help="config file")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, metavar="KEY=VALUE",
                        help="override config keys")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from glocal.tasks.engine import prepare_config, resolve_config, validate_config

    cfg = prepare_config(args.config, args.cfg_options)
    validate_config(cfg)
    resolve_config(cfg)
    print(cfg.pretty_text)
    return 0


if __name__ == "__main__":
    from glocal.tasks.engine import run_tool
    run_tool(main)

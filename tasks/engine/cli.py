"""What the command-line tools (``tools/train.py``, ``test.py``, ``export.py``, ``print_config.py``)
share: preparing the config from the command line, and running ``main()`` with glocal's errors
printed as one line."""
from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path

import torch.distributed as dist
from mmengine.config import Config

from glocal.core.errors import GlocalError

from .config import apply_cfg_options, load_config

__all__ = ["prepare_config", "run_tool"]


def prepare_config(config, cfg_options: Mapping | None = None, work_dir: str | None = None,
                   launcher: str = "none") -> Config:
    """What every tool does first: load, apply ``--cfg-options`` (checked), set the launcher and
    the work dir (``--work-dir``, else the config's, else ``work_dirs/<config stem>``)."""
    cfg = apply_cfg_options(load_config(config), cfg_options)
    cfg.launcher = launcher
    if work_dir:
        cfg.work_dir = str(work_dir)
    elif not cfg.get("work_dir"):
        cfg.work_dir = str(Path("work_dirs") / Path(str(config)).stem)
    return cfg


def run_tool(main) -> None:
    """Run a tool's ``main()``; glocal's own errors print as ``error: <message>`` (exit code 2)
    instead of a traceback. A distributed run destroys its process group and then leaves without
    the interpreter's teardown: C++ threads of gloo and DDP that outlive the group aborted about a
    third of finished two-process runs ("terminate called without an active exception") while
    Python destroyed the objects holding them. Logs and output are flushed first."""
    distributed = False
    code = 1
    try:
        code = main()
    except GlocalError as e:
        print(f"error: {e}", file=sys.stderr)
        code = 2
    finally:
        if dist.is_available() and dist.is_initialized():
            distributed = True
            dist.destroy_process_group()
    if distributed:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code or 0)
    sys.exit(code or 0)

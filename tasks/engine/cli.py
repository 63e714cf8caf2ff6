"""What the command-line tools (``tools/train.py``, ``test.py``, ``export.py``, ``print_config.py``)
share: preparing the config from the command line, and running ``main()`` with glocal's errors
printed as one line."""
from __future__ import annotations

import logging
import os
import sys
import traceback
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
    instead of a traceback.

    A distributed run destroys its process group and then leaves with ``os._exit``, skipping the
    interpreter's finalization, on success and on failure alike. Why (a core dump of an aborted
    rank, "terminate called without an active exception"): gloo's worker threads
    (``ProcessGroupGloo::runLoop``) release each finished collective (e.g. the
    ``AsyncAllgatherWork`` of an ``all_gather_object``) some time after the caller has its result;
    that release drops tensors with Python objects and so takes the GIL. When the main thread is
    already in ``Py_FinalizeEx`` by then, taking the GIL makes the worker thread exit through
    ``pthread_exit``, whose forced unwind meets the work's ``noexcept`` destructor:
    ``std::terminate``, SIGABRT, and torchrun reports a finished run as failed. The process group
    keeps those threads alive after ``destroy_process_group`` while anything (the DDP reducer)
    still holds it. Without finalization there is no GIL hand-over to fail. Logs and output are
    flushed first."""
    distributed = False
    code = 1
    try:
        code = main()
    except GlocalError as e:
        print(f"error: {e}", file=sys.stderr)
        code = 2
    except BaseException:
        if not (dist.is_available() and dist.is_initialized()):
            raise
        traceback.print_exc()  # a failing rank must not abort in finalization either
        code = 1
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

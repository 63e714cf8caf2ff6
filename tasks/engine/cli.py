"""What the command-line tools (``tools/train.py``, ``test.py``, ``export.py``, ``print_config.py``)
share: preparing the config from the command line, and running ``main()`` with glocal's errors
printed as one line."""
from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Mapping
from pathlib import Path

import torch.distributed as dist
from mmengine.config import Config

from glocal.core.errors import GlocalError

from .config import apply_cfg_options, load_config
from .console import quiet_third_party

__all__ = ["prepare_config", "run_tool", "launch_cpu_procs", "free_port", "int_tuple"]


def int_tuple(text: str) -> tuple[int, ...]:
    """An argparse ``type`` for shapes: ``"1,3,224,224"`` or ``"1x3x224x224"`` -> ``(1, 3, 224, 224)``."""
    import argparse

    try:
        return tuple(int(v) for v in text.replace("x", ",").split(",") if v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


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
    flushed first.

    Third-party warnings a user cannot act on are filtered before ``main()`` imports anything
    (:func:`~.console.quiet_third_party`)."""
    quiet_third_party()
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


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for a process group's rendezvous)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_cpu_procs(script: str | os.PathLike, argv: list[str], procs: int, poll_s: float = 0.2) -> int:
    """Run ``script argv --launcher pytorch`` as ``procs`` data-parallel processes on this CPU (gloo),
    each with ``cores // procs`` threads, and return the first failing exit code (0 when all pass).

    On a few cores one thread per process beats intra-op threads on small layers (measured on the
    2-core machine with the Fashion-MNIST demo: 2 x 1 thread trains ~1.3x faster than 1 x 2 threads).
    The environment is torchrun's (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR/PORT``),
    so mmengine's ``init_dist('pytorch')`` takes it; when one process fails, the others are stopped
    instead of waiting in a collective for the timeout."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = str(max(1, cores // procs))
    port = str(free_port())
    children = []
    for rank in range(procs):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(procs),
               "LOCAL_WORLD_SIZE": str(procs), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port,
               "OMP_NUM_THREADS": threads, "CUDA_VISIBLE_DEVICES": ""}
        children.append(subprocess.Popen([sys.executable, str(script), *argv, "--launcher", "pytorch"], env=env))
    try:
        while True:
            codes = [c.poll() for c in children]
            failed = [code for code in codes if code not in (None, 0)]
            if failed or all(code == 0 for code in codes):
                break
            time.sleep(poll_s)
    except KeyboardInterrupt:
        failed = [130]
    for c in children:
        if c.poll() is None:
            c.send_signal(signal.SIGTERM if failed else signal.SIGINT)
    for c in children:
        try:
            c.wait(timeout=30)
        except subprocess.TimeoutExpired:
            c.kill()
            c.wait()
    return failed[0] if failed else 0

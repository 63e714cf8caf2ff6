#!/usr/bin/env python
"""Run the two-process CPU training of the test suite N times in a row and count how they end.

    python tools/dist_loop.py [--runs 200] [--nproc 2] [--config tests/tasks/configs/tiny_fashion_mnist.py]
                              [--out work_dirs/dist_loop] [--stop-on-failure]

Each run is ``python -m torch.distributed.run --nproc_per_node=N tools/train.py CONFIG --launcher
pytorch`` (gloo, one thread per process, 64 images, 2 epochs) in a fresh work dir. A run passes
when torchrun exits 0 and rank 0 logged identical parameter digests on every rank. The output of
every failed run is kept under ``--out``; a summary line per run and a final count are printed.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from glocal.tasks.engine.cli import free_port

ROOT = Path(__file__).resolve().parents[1]


def one_run(config: Path, nproc: int, work_dir: Path, timeout: float) -> tuple[int, str]:
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "--master_addr=127.0.0.1",
           f"--master_port={free_port()}", str(ROOT / "tools" / "train.py"), str(config), "--launcher", "pytorch",
           "--work-dir", str(work_dir), "--cfg-options", "train_dataloader.dataset.limit=64"]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    except subprocess.TimeoutExpired as e:
        return 124, f"timed out after {timeout} s\n{e.stdout or ''}{e.stderr or ''}"
    return proc.returncode, proc.stdout + proc.stderr


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="N consecutive two-process CPU training runs")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--config", default=str(ROOT / "tests" / "tasks" / "configs" / "tiny_fashion_mnist.py"))
    parser.add_argument("--out", default=str(ROOT / "work_dirs" / "dist_loop"))
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--stop-on-failure", action="store_true")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    passed, failed, start = 0, [], time.time()
    for i in range(1, args.runs + 1):
        work_dir = out / "run"
        shutil.rmtree(work_dir, ignore_errors=True)
        t0 = time.time()
        code, output = one_run(Path(args.config), args.nproc, work_dir, args.timeout)
        digest = re.search(r"parameter digest \(sha256\) per rank: [0-9a-f ]+ \(identical across (\d+) rank", output)
        ok = code == 0 and digest is not None and int(digest.group(1)) == args.nproc
        if ok:
            passed += 1
        else:
            failed.append(i)
            (out / f"failed_run_{i}.log").write_text(output)
        print(f"run {i}/{args.runs}: exit {code} {'ok' if ok else 'FAILED'} ({time.time() - t0:.1f} s)", flush=True)
        if failed and args.stop_on_failure:
            break
    total = passed + len(failed)
    print(f"{passed}/{total} runs passed in {time.time() - start:.0f} s" +
          (f"; failed: {failed} (logs in {out})" if failed else ""), flush=True)
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())

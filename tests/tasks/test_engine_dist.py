"""Distributed training on CPU: torchrun, two processes, gloo, DDP without device_ids."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from glocal.tasks.checkpoint import parameter_digest
from glocal.tasks.engine import build_model, free_port, load_config

ROOT = Path(__file__).resolve().parents[2]
CONFIG = Path(__file__).parent / "configs" / "tiny_fashion_mnist.py"


def _log(work_dir: Path) -> str:
    """Rank 0's log file of the newest run in ``work_dir`` (the console has the banner and progress)."""
    return sorted(work_dir.glob("*/*.log"))[-1].read_text()


@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                    reason="needs torch.distributed with gloo")
def test_two_process_cpu_training(tmp_path):
    # 64 images, batch 16 per rank, 2 ranks: 2 iterations per epoch, 2 epochs, validation after each
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={free_port()}", str(ROOT / "tools" / "train.py"), str(CONFIG),
           "--launcher", "pytorch", "--work-dir", str(tmp_path),
           "--cfg-options", "train_dataloader.dataset.limit=64", "experiment_name=dist"]
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT", "GLOCAL_PROGRESS", "GLOCAL_VERBOSE")}
    env.update(OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    # the console: rank 0's banner and progress (lines: the output is a pipe), once
    assert proc.stdout.count("glocal train:") == 1 and "2 processes (DDP, gloo)" in proc.stdout, proc.stdout
    assert re.search(r"^train epoch 2/2  2/2 100%", proc.stdout, re.M), proc.stdout
    output = _log(tmp_path)  # the environment dump and mmengine's log lines are in rank 0's log file
    assert "Distributed training: True" in output
    # the log line: 2 iterations per epoch on each rank, with ETA and loss
    assert re.search(r"Epoch\(train\) \[2\]\[2/2\] .*eta: \d+:\d\d:\d\d .*loss: \d\.\d+", output), output[-3000:]

    # every rank hashed its parameters after training; rank 0 logged them all
    match = re.search(r"parameter digest \(sha256\) per rank: ([0-9a-f ]+) \((\w+) across (\d) rank", output)
    assert match, output[-3000:]
    digests = match.group(1).split()
    assert match.group(3) == "2" and len(digests) == 2 and digests[0] == digests[1]

    # ... and they are the weights in the final checkpoint (saved by rank 0)
    ckpt = torch.load(tmp_path / "epoch_2.pth")
    names = {n for n, _ in build_model(load_config(CONFIG)).named_parameters()}
    saved = {k: v for k, v in ckpt["state_dict"].items() if k in names}
    assert saved.keys() == names
    assert parameter_digest(saved) == digests[0]
    dumped = load_config(tmp_path / "tiny_fashion_mnist.py")
    assert dumped.env_cfg.dist_cfg.backend == "gloo" and dumped.model_wrapper_cfg.device_ids is None


@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                    reason="needs torch.distributed with gloo")
def test_procs_flag_starts_the_processes_itself(tmp_path):
    """``tools/train.py CONFIG --procs 2`` (or ``cpu_procs = 2``) without torchrun: same DDP run."""
    cmd = [sys.executable, str(ROOT / "tools" / "train.py"), str(CONFIG), "--procs", "2", "--work-dir", str(tmp_path),
           "--cfg-options", "train_dataloader.dataset.limit=64", "train_cfg.max_epochs=1"]
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT", "GLOCAL_PROGRESS", "GLOCAL_VERBOSE")}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert "2 data-parallel CPU processes" in proc.stdout
    output = _log(tmp_path)
    assert "Distributed training: True" in output
    match = re.search(r"parameter digest \(sha256\) per rank: ([0-9a-f ]+) \((\w+) across (\d) rank", output)
    assert match and match.group(3) == "2", output[-3000:]
    digests = match.group(1).split()
    assert digests[0] == digests[1]
    assert (tmp_path / "epoch_1.pth").is_file()

    # a failing configuration fails every process and the launcher returns its error code quickly
    bad = cmd[:-2] + ["train_dataloader.dataset.limit=64", "optim_wrapper.optimizer.lr=-1"]
    proc = subprocess.run(bad, capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path)
    assert proc.returncode != 0, (proc.stdout + proc.stderr)[-3000:]

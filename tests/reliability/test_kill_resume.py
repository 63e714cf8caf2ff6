"""Crash safety: a real training process is killed with SIGKILL, at each step of a checkpoint save
and at random moments; every ``--resume`` continues from the last complete checkpoint, and the
run ends bit-identical to one that was never interrupted.

The run checkpoints every iteration and keeps one checkpoint (``max_keep_ckpts=1``): the setting
in which mmengine's own order (remove the old file, then write the new one) loses everything.
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from glocal.tasks.checkpoint import PART, latest_checkpoint, parameter_digest, read_state_dict

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "tests" / "tasks" / "configs" / "tiny_fashion_mnist.py"
DRIVER = Path(__file__).parent / "killable_train.py"
ITERS = 8  # the injected-kill tests; the random-kill test runs longer processes (SLOW_ITERS)
SLOW_ITERS = 48


def _options(iters: int) -> list[str]:
    return ["train_cfg.by_epoch=False", f"train_cfg.max_iters={iters}", "train_cfg.val_interval=1000",
            "default_hooks.checkpoint.by_epoch=False", "default_hooks.checkpoint.interval=1",
            "default_hooks.checkpoint.max_keep_ckpts=1", "param_scheduler.1.by_epoch=False"]


def _start(work_dir: Path, resume: bool, kill_at: str = "", iters: int = ITERS) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOCAL_KILL_AT": kill_at}
    cmd = [sys.executable, str(DRIVER), str(CONFIG), "--work-dir", str(work_dir), "--cfg-options", *_options(iters)]
    return subprocess.Popen(cmd + (["--resume"] if resume else []), env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _final_digest(work_dir: Path, iters: int = ITERS) -> str:
    return parameter_digest(read_state_dict(work_dir / f"iter_{iters}.pth"))


def _check_after_kill(work_dir: Path) -> None:
    """What a kill leaves: auto-resume finds a complete checkpoint (or none before the first)."""
    path = latest_checkpoint(work_dir)
    if path is not None:
        assert not path.name.endswith(PART)
        read_state_dict(path)  # complete: reads, checksum matches


def _crash_until_done(work_dir: Path, kills: list, iters: int = ITERS) -> dict:
    """Run, kill, resume, ... until a run finishes. ``kills``: 'PHASE:N' strings (injected) or
    floats (seconds after the start of that process, from outside)."""
    stats = {"killed": 0, "mid_save": 0, "runs": 0, "outputs": []}
    for attempt in range(len(kills) + 20):
        kill = kills[attempt] if attempt < len(kills) else None
        proc = _start(work_dir, resume=attempt > 0, kill_at=kill if isinstance(kill, str) else "", iters=iters)
        if isinstance(kill, float):
            try:
                proc.wait(timeout=kill)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate(timeout=600)
        stats["runs"] += 1
        stats["outputs"].append(out)
        if proc.returncode == 0:
            assert attempt >= len([k for k in kills if isinstance(k, str)]), f"{kill} never reached:\n{out[-2000:]}"
            return stats
        assert proc.returncode == -signal.SIGKILL, out[-3000:]
        stats["killed"] += 1
        stats["mid_save"] += bool(list(work_dir.glob(f"*{PART}"))) or (isinstance(kill, str))
        _check_after_kill(work_dir)
    raise AssertionError("the run never finished")


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> str:
    work_dir = tmp_path_factory.mktemp("straight")
    proc = _start(work_dir, resume=False)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]
    return _final_digest(work_dir)


def test_killed_at_every_step_of_a_save_resumes_bit_identical(tmp_path, straight):
    # each process gets through a few saves before it dies at the chosen step of the next one
    kills = ["mid_write:2", "before_rename:2", "before_sidecar:2", "before_pointer:3", "before_rotation:2"]
    stats = _crash_until_done(tmp_path, kills)
    assert stats["killed"] == len(kills)
    assert _final_digest(tmp_path) == straight
    assert not list(tmp_path.glob(f"*{PART}")) and latest_checkpoint(tmp_path).name == f"iter_{ITERS}.pth"
    print(f"\nkill/resume: {stats['killed']} kills at the 5 steps of a save; final weights identical")


def test_killed_before_the_first_checkpoint_starts_fresh_and_says_so(tmp_path, straight):
    stats = _crash_until_done(tmp_path, ["mid_write:1"])
    assert stats["killed"] == 1 and len(list(tmp_path.glob(f"*{PART}"))) == 0
    assert f"--resume: no complete checkpoint in {tmp_path}; starting a fresh run" in stats["outputs"][1]
    assert _final_digest(tmp_path) == straight


@pytest.mark.slow
def test_killed_at_random_moments_resumes_bit_identical(tmp_path):
    straight_dir = tmp_path / "straight"
    t0, first = time.monotonic(), None
    proc = _start(straight_dir, resume=False, iters=SLOW_ITERS)
    while proc.poll() is None:  # when does the first checkpoint appear, and how long is an iteration?
        if first is None and (straight_dir / "iter_1.pth").exists():
            first = time.monotonic() - t0
        time.sleep(0.02)
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0 and first is not None, out[-3000:]
    per_iter = (time.monotonic() - t0 - first) / (SLOW_ITERS - 1)
    # each process dies at a random moment between its start and about 8 iterations past its start-up,
    # so most runs make a little progress (and some none) before the next kill
    rng = random.Random(0)
    kills = [rng.uniform(0.5, first + 8 * per_iter) for _ in range(int(os.environ.get("GLOCAL_KILLS", "30")))]
    stats = _crash_until_done(tmp_path / "killed", kills, iters=SLOW_ITERS)
    assert _final_digest(tmp_path / "killed", SLOW_ITERS) == _final_digest(straight_dir, SLOW_ITERS)
    print(f"\nkill/resume: {stats['killed']} random SIGKILLs ({stats['mid_save']} left a partial save), "
          f"{stats['runs']} processes (start-up {first:.1f} s, {per_iter:.2f} s an iteration); final weights "
          f"identical")

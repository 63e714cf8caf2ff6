"""``tools/train.py`` with a SIGKILL injected at one point of a checkpoint save (crash tests).

    GLOCAL_KILL_AT=PHASE:N python tests/reliability/killable_train.py CONFIG [train.py options]

kills the process the N-th time (counted from 1 in this process) it reaches PHASE:

* ``mid_write``: half of the checkpoint's bytes are on disk (in the ``.part`` file);
* ``before_rename``: the ``.part`` file is complete and fsynced, not yet renamed;
* ``before_sidecar``: the checkpoint has its final name, its checksum file is not written;
* ``before_pointer``: checksum written, ``last_checkpoint`` still names the previous file;
* ``before_rotation``: ``last_checkpoint`` updated, the old checkpoints not yet removed.
"""
from __future__ import annotations

import collections
import importlib.util
import os
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PHASES = ("mid_write", "before_rename", "before_sidecar", "before_pointer", "before_rotation")


def _install(phase: str, nth: int) -> None:
    from mmengine.fileio.backends.local_backend import LocalBackend

    from glocal.tasks import checkpoint

    seen = collections.Counter()

    def reached(name: str) -> None:
        seen[name] += 1
        if name == phase and seen[name] == nth:
            sys.stdout.flush()
            os.kill(os.getpid(), signal.SIGKILL)

    put = LocalBackend.put

    def put_then_maybe_die(self, obj, filepath):
        if phase == "mid_write" and str(filepath).endswith(checkpoint.PART) and seen[phase] + 1 == nth:
            with open(filepath, "wb") as f:  # a write the kill interrupts halfway
                f.write(obj[: len(obj) // 2])
                f.flush()
        if str(filepath).endswith(checkpoint.PART):
            reached("mid_write")
        return put(self, obj, filepath)

    digest = checkpoint._digest

    def digest_then_maybe_die(path):
        out = digest(path)
        if str(path).endswith(checkpoint.PART):
            reached("before_rename")
        return out

    write_atomic = checkpoint.write_atomic

    def write_atomic_with_phases(path, data):
        if Path(path).name.endswith(checkpoint.SUM):
            reached("before_sidecar")
        else:
            reached("before_pointer")
        write_atomic(path, data)
        if Path(path).name == "last_checkpoint":
            reached("before_rotation")

    LocalBackend.put = put_then_maybe_die
    checkpoint._digest = digest_then_maybe_die
    checkpoint.write_atomic = write_atomic_with_phases


if __name__ == "__main__":
    spec = os.environ.get("GLOCAL_KILL_AT", "")
    if spec:
        phase, nth = spec.split(":")
        assert phase in PHASES, phase
        _install(phase, int(nth))
    tool = importlib.util.spec_from_file_location("glocal_tool_train", ROOT / "tools" / "train.py")
    train = importlib.util.module_from_spec(tool)
    tool.loader.exec_module(train)
    from glocal.tasks.engine import run_tool
    run_tool(lambda: train.main(sys.argv[1:]))

#!/usr/bin/env python
"""The share of each training step spent waiting for data, from a run's logs.

    python tools/data_wait.py WORK_DIR [WORK_DIR ...] [--skip N] [--out FILE.md]
    python tools/data_wait.py 'work_dirs/video_*'

WORK_DIR: a work dir of ``tools/train.py --work-dir``, a glob, or a folder of work dirs (as
``tools/results.py``). Per run, from the training lines of every segment's
``<timestamp>/vis_data/scalars.json`` (mmengine's ``IterTimerHook``: ``data_time`` is the wait for
the next batch, ``time`` the whole iteration, that wait included; each logged line is their mean
over the logging interval; a step a resumed segment logs again counts once, its later line):

- ``data wait``: the mean over logged lines of ``data_time / time``, the number the README quotes
  for the speech runs; ``median`` of the same ratios;
- ``data_time`` and ``time``: their means over the lines, in seconds.

``--skip N`` leaves out each run's first N logged lines (the first interval holds the data
loader's start). One Markdown table, runs sorted by path.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("work_dirs", nargs="+", metavar="WORK_DIR", help="work dirs, globs or folders of work dirs")
    p.add_argument("--skip", type=int, default=0, metavar="N", help="leave out each run's first N logged lines")
    p.add_argument("--out", help="write the Markdown here (default: print it)")
    return p.parse_args(argv)


@dataclass(frozen=True)
class DataWait:
    """One run's logged training lines, summarised."""

    name: str
    lines: int
    share: float  # mean of data_time / time
    median: float
    data_time: float  # mean seconds
    time: float


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def data_wait(run, skip: int = 0) -> DataWait:
    """``data_time / time`` of a :class:`~glocal.tasks.logs.WorkDir`'s logged training lines;
    :class:`InputError` naming the run when it has none with both (and ``time > 0``)."""
    from glocal.core.errors import InputError
    from glocal.tasks.logs import split_records

    train, _ = split_records(run.records())
    by_step: dict = {}
    for i, r in enumerate(train):  # a resumed segment's repeated steps: the later line
        if _number(r.get("data_time")) and _number(r.get("time")) and r["time"] > 0:
            by_step[r.get("step", ("line", i))] = r
    lines = list(by_step.values())[max(skip, 0):]
    if not lines:
        keys = sorted({k for r in train for k in r})
        raise InputError(f"{run.path}: no training line with data_time and time"
                         + (f" after the first {skip}" if skip and by_step else "")
                         + (f" (its training lines have: {', '.join(keys)})" if keys else
                            " (no training lines in its vis_data/scalars.json)"))
    ratios = [r["data_time"] / r["time"] for r in lines]
    return DataWait(run.name, len(lines), statistics.fmean(ratios), statistics.median(ratios),
                    statistics.fmean(r["data_time"] for r in lines), statistics.fmean(r["time"] for r in lines))


def table(rows: list[DataWait]) -> str:
    out = ["| run | logged lines | data wait (mean data_time / time) | median | data_time (s) | time (s) |",
           "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        out.append(f"| {r.name.replace('|', chr(92) + '|')} | {r.lines} | {100 * r.share:.1f}% | "
                   f"{100 * r.median:.1f}% | {r.data_time:.4f} | {r.time:.4f} |")
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    from glocal.tasks.logs import find_work_dirs

    args = parse_args(argv)
    rows = [data_wait(run, args.skip) for run in find_work_dirs(args.work_dirs)]
    text = table(rows)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
        print(f"wrote {args.out}: {len(rows)} run(s)")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    from glocal.tasks.engine import run_tool
    run_tool(main)

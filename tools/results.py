#!/usr/bin/env python
"""The final metrics of a set of work dirs as one Markdown table, runs grouped by config.

    python tools/results.py WORK_DIR [WORK_DIR ...] [--metrics top1 mIoU ...] [--group-by {config,name}]
                            [--out FILE.md] [--title T] [--digits N] [--skip-incomplete]
    python tools/results.py 'work_dirs/*_seed*' --metrics top1 --out results.md

WORK_DIR: a work dir of ``tools/train.py --work-dir``, a glob, or a folder of work dirs (its
children that are work dirs). Per group: runs, seeds, mean ± sample std (n - 1; ``-`` for one
run) of each metric, mean wall time, the parameter count where a log line states it, and where
the metrics came from (the parsing is ``glocal.tasks.logs``):

- metrics: ``D/metrics.json`` or ``D/test_metrics.json`` (``tools/test.py --out``) if present, else
  the last validation line of ``D/<timestamp>/vis_data/scalars.json`` across all the run's
  segments (a resumed run has several ``<timestamp>`` folders; read in time order);
- groups: ``--group-by config``, the dumped config's file name (default), or ``name``, the work
  dir's name without a trailing ``_seedN`` / ``-seedN`` / ``seedN`` / ``-sN``;
- seeds: ``randomness.seed`` of the config the run trained with (its newest training segment's
  ``vis_data/config.py``, else the dumped ``<config stem>.py``), else the number in the name
  (``?``: neither);
- wall time: per segment that trained, last minus first timestamped line of its text log, summed
  (not the pause of a resumed run, not a ``tools/test.py`` run into the same dir).

The same work dirs give the same bytes: groups and columns sorted, fixed decimals (``--digits``;
default 2, or 4 for a metric below 1 in every group), no dates or absolute paths.
``--skip-incomplete`` leaves out, with a warning, what would otherwise stop the tool: a path that
is not a work dir, a run without metrics or without a requested metric.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

NOTE = ("Metrics: mean ± sample std (n - 1) over a group's runs (`-` for one run; `(n=k)`: only k runs "
        "have the metric). Source `val`: the last validation line of the runs' vis_data/scalars.json; "
        "a file name: that file in the work dir (tools/test.py --out). Wall time: mean over runs of the "
        "text log's first-to-last line time, summed over the segments that trained.")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("work_dirs", nargs="+", metavar="WORK_DIR", help="work dirs, globs or folders of work dirs")
    p.add_argument("--metrics", nargs="+", metavar="NAME",
                   help="metrics to report, in this order (default: every metric found, sorted)")
    p.add_argument("--group-by", choices=["config", "name"], default="config",
                   help="group runs by dumped config file name (default) or by work dir name less its seed")
    p.add_argument("--out", help="write the Markdown here (default: print it)")
    p.add_argument("--title", help="a '# T' heading above the table")
    p.add_argument("--digits", type=int, help="decimals of the metrics (default 2; 4 for metrics below 1)")
    p.add_argument("--skip-incomplete", action="store_true",
                   help="skip non-work-dirs and runs without (the requested) metrics, with a warning")
    return p.parse_args(argv)


@dataclass(frozen=True)
class Row:
    """One run, as the table needs it."""

    group: str
    seed: int | None
    metrics: dict[str, float]
    source: str
    seconds: float | None
    params: int | None


def collect(args, warn) -> list[Row]:
    """One :class:`Row` per run; ``warn`` (or None: raise) gets what ``--skip-incomplete`` skips."""
    from glocal.core.errors import InputError
    from glocal.tasks.logs import (config_seed, final_metrics, find_work_dirs, param_count, seed_from_name,
                                   strip_seed, wall_time)

    rows = []
    for run in find_work_dirs(args.work_dirs, on_skip=warn):
        try:
            metrics, source = final_metrics(run)
            missing = [m for m in args.metrics or () if m not in metrics]
            if missing:
                where = "the last validation line" if source == "val" else source
                raise InputError(f"{run.path}: no {', '.join(missing)} in {where}; it has: "
                                 f"{', '.join(sorted(metrics))}")
            if args.group_by == "config" and run.config is None:
                raise InputError(f"{run.path}: no dumped config (<config stem>.py) to group by; "
                                 f"use --group-by name")
        except InputError as e:
            if warn is None:
                raise
            warn(str(e))
            continue
        group = run.config.stem if args.group_by == "config" else strip_seed(run.name)
        seed = config_seed(run.run_config())
        rows.append(Row(group, seed_from_name(run.name) if seed is None else seed, metrics, source,
                        wall_time(run), param_count(run)))
    if not rows:
        raise InputError(f"no run with metrics among: {' '.join(args.work_dirs)}")
    return rows


def _mean_std(values: list[float]) -> tuple[float, float | None]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def table(rows: list[Row], metric_names: list[str] | None, group_by: str, digits: int | None,
          title: str | None = None) -> str:
    """The Markdown: optional title, one line per group (sorted by name), the note."""
    groups: dict[str, list[Row]] = {}
    for row in rows:
        groups.setdefault(row.group, []).append(row)
    names = list(metric_names) if metric_names else sorted({m for r in rows for m in r.metrics})
    stats = {(g, m): [r.metrics[m] for r in runs if m in r.metrics] for g, runs in groups.items() for m in names}
    decimals = {}
    for m in names:
        means = [statistics.fmean(stats[(g, m)]) for g in groups if stats[(g, m)]]
        decimals[m] = digits if digits is not None else 2 if any(abs(x) >= 1 for x in means) else 4
    with_params = any(r.params is not None for r in rows)

    header = [group_by, "runs", "seeds", *names, "wall time"] + (["params"] if with_params else []) + ["source"]
    align = ["---", "---:", "---"] + ["---:"] * (len(names) + 1 + with_params) + ["---"]
    lines = [f"# {title}", ""] if title else []
    lines += ["| " + " | ".join(_cell(h) for h in header) + " |", "| " + " | ".join(align) + " |"]
    for g in sorted(groups):
        runs = groups[g]
        cells = [g, str(len(runs)), ", ".join(sorted((str(r.seed) for r in runs if r.seed is not None), key=int)
                                              + ["?"] * sum(r.seed is None for r in runs))]
        for m in names:
            values, d = stats[(g, m)], decimals[m]
            if not values:
                cells.append("-")
                continue
            mean, std = _mean_std(values)
            text = f"{mean:.{d}f} ± " + ("-" if std is None else f"{std:.{d}f}")
            cells.append(text if len(values) == len(runs) else f"{text} (n={len(values)})")
        seconds = [r.seconds for r in runs if r.seconds is not None]
        cells.append(_duration(statistics.fmean(seconds)) if seconds else "-")
        if with_params:
            counts = sorted({r.params for r in runs if r.params is not None})
            cells.append(" / ".join(f"{c:,}" for c in counts) or "-")
        cells.append(", ".join(sorted({r.source for r in runs})))
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    lines += ["", NOTE]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)

    def warn(message: str) -> None:
        print(f"warning: skipped {message}", file=sys.stderr)

    rows = collect(args, warn if args.skip_incomplete else None)
    text = table(rows, args.metrics, args.group_by, args.digits, args.title)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
        print(f"wrote {args.out}: {len({r.group for r in rows})} group(s), {len(rows)} run(s)")
    else:
        print(text, end="")
    return 0


if __name__ == "__main__":
    from glocal.tasks.engine import run_tool
    run_tool(main)

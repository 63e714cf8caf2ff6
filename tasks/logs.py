"""Reading what a training run leaves in its work dir; shared by ``tools/results.py`` and
``tools/plot_logs.py``. Standard library only (no torch, mmengine or matplotlib).

    from glocal.tasks.logs import find_work_dirs, final_metrics
    for run in find_work_dirs(["work_dirs/*"]):
        metrics, source = final_metrics(run)

A work dir is what ``tools/train.py CONFIG --work-dir D`` writes::

    D/<config stem>.py                       the resolved config (mmengine's dump)
    D/<timestamp>/vis_data/scalars.json      LocalVisBackend: one JSON object per line
    D/<timestamp>/<timestamp>.log            the text log
    D/epoch_N.pth | iter_N.pth, D/last_checkpoint

Each ``tools/train.py`` start (a resumed run too) adds a ``<timestamp>`` folder, a *segment*;
segments are read in the order of their names (mmengine's ``%Y%m%d_%H%M%S``, so time order).

Lines of ``scalars.json``: a *training* line carries ``lr`` and the losses, with ``step`` the
global iteration (and ``epoch``/``iter`` in an epoch loop); a *validation* line carries the
metrics, with ``step`` the epoch (mmengine's ``LoggerHook(log_metric_by_epoch=True)``, the
default) or the iteration (``log_metric_by_epoch=False``).
"""
from __future__ import annotations

import ast
import glob
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from glocal.core.errors import InputError

__all__ = ["WorkDir", "find_work_dirs", "load_work_dir", "find_segments", "read_scalars", "is_train_record",
           "split_records", "final_metrics", "config_seed", "config_value", "seed_from_name", "strip_seed",
           "log_span", "wall_time", "param_count", "iters_per_epoch", "series", "METRICS_FILES", "COUNTERS",
           "NOT_METRICS"]

# written by ``tools/test.py --out``; when present they are the run's final metrics (first found wins)
METRICS_FILES = ("metrics.json", "test_metrics.json")
# keys of a scalars line that are bookkeeping, not a measurement
COUNTERS = frozenset({"step", "epoch", "iter"})
NOT_METRICS = COUNTERS | {"time", "data_time", "memory", "eta"}
_SEED_SUFFIX = re.compile(r"(?:[_-]?seed(\d+)|-s(\d+))$", re.IGNORECASE)
_LOG_TIME = re.compile(r"^(\d{4}/\d\d/\d\d \d\d:\d\d:\d\d) - ")
_TRAIN_PROGRESS = re.compile(r"(?:Epoch|Iter)\(train\)")
_EPOCH_LEN = re.compile(r"Epoch\(train\)\s*\[\s*\d+\]\[\s*\d+/(\d+)\]")
_PARAMS = re.compile(  # "params 1,234,567", "#params: 1234567", "parameters = 1234567"
    r"(?:#\s*params|num_params|\bparams|\bparameters)\b\s*[:=]?\s*(\d{1,3}(?:,\d{3})+|\d+)(?![\w.,])", re.IGNORECASE)


@dataclass(frozen=True)
class WorkDir:
    """One run: its folder, its segments (oldest first) and its dumped config (or None)."""

    path: Path
    segments: tuple[Path, ...]
    config: Path | None

    @property
    def name(self) -> str:
        return self.path.name

    def records(self) -> list[dict]:
        """Every ``scalars.json`` line of every segment, in time order."""
        out = []
        for seg in self.segments:
            if (seg / "vis_data" / "scalars.json").is_file():
                out += read_scalars(seg / "vis_data" / "scalars.json")
        return out

    def logs(self) -> list[Path]:
        """The segments' text logs, in time order."""
        return [seg / f"{seg.name}.log" for seg in self.segments if (seg / f"{seg.name}.log").is_file()]

    def training_segments(self) -> list[Path]:
        """The segments that trained: a training line in their ``scalars.json`` or their log.
        (``tools/test.py`` run into the same work dir, its default, adds segments that did not.)"""
        out = []
        for seg in self.segments:
            log, scalars = seg / f"{seg.name}.log", seg / "vis_data" / "scalars.json"
            if (scalars.is_file() and any(map(is_train_record, read_scalars(scalars)))) or \
                    (log.is_file() and _TRAIN_PROGRESS.search(log.read_text(errors="replace"))):
                out.append(seg)
        return out

    def run_config(self) -> Path | None:
        """The config the training ran: the newest training segment's ``vis_data/config.py``
        (the top-level dump is rewritten by every later run in the dir, a test too), else the dump."""
        for seg in reversed(self.training_segments()):
            if (seg / "vis_data" / "config.py").is_file():
                return seg / "vis_data" / "config.py"
        return self.config


# ------------------------------------------------------------------------------------------------
# finding work dirs
# ------------------------------------------------------------------------------------------------
def find_segments(path: Path) -> list[Path]:
    """Sub-folders of ``path`` that a run's start wrote (``vis_data/scalars.json`` or
    ``<name>.log`` inside), sorted by name."""
    if not path.is_dir():
        return []
    return sorted((p for p in path.iterdir() if p.is_dir() and ((p / "vis_data" / "scalars.json").is_file()
                                                               or (p / f"{p.name}.log").is_file())),
                  key=lambda p: p.name)


def _dumped_config(path: Path, segments: list[Path]) -> Path | None:
    """The ``<config stem>.py`` mmengine dumped into the work dir. Several ``.py`` files (a second
    config run into the same dir): the one equal to the last segment's ``vis_data/config.py``."""
    found = sorted(p for p in path.glob("*.py") if p.is_file())
    if len(found) <= 1:
        return found[0] if found else None
    for seg in reversed(segments):
        copy = seg / "vis_data" / "config.py"
        if copy.is_file():
            text = copy.read_bytes()
            same = [p for p in found if p.read_bytes() == text]
            if same:
                return same[0]
    return found[-1]


def _not_a_work_dir(path: Path, or_parent: bool = False) -> str:
    """Why ``path`` is not a work dir (nor, with ``or_parent``, a folder of work dirs)."""
    if not path.exists():
        return f"{path}: no such file or folder"
    if not path.is_dir():
        return f"{path}: not a work dir (a file, not a folder)"
    what, where = ("not a work dir, nor a folder of work dirs", "in it or its sub-folders") if or_parent \
        else ("not a work dir", "in it")
    return (f"{path}: {what}: no <timestamp>/vis_data/scalars.json or <timestamp>/<timestamp>.log {where} "
            f"(what tools/train.py --work-dir writes)")


def load_work_dir(path: str | Path) -> WorkDir:
    """``path`` as a :class:`WorkDir`; :class:`InputError` naming the path if it is not one."""
    path = Path(path)
    segments = find_segments(path)
    if not segments:
        raise InputError(_not_a_work_dir(path))
    return WorkDir(path, tuple(segments), _dumped_config(path, segments))


def find_work_dirs(args: Iterable[str | Path], on_skip: Callable[[str], None] | None = None) -> list[WorkDir]:
    """Work dirs from command-line arguments: work dirs, globs (files they match are ignored), or
    folders whose children are work dirs (one level). Sorted by path, duplicates removed.

    An argument that is neither a work dir nor holds any raises :class:`InputError` naming it and
    what is missing, or, given ``on_skip``, is passed to it as that message and left out."""
    paths: list[Path] = []
    for arg in map(str, args):
        if glob.has_magic(arg):
            matches = [Path(m) for m in sorted(glob.glob(arg)) if Path(m).is_dir()]
            if not matches:
                raise InputError(f"{arg}: the pattern matches no folder")
        else:
            matches = [Path(arg)]
        for match in matches:
            if find_segments(match):
                paths.append(match)
                continue
            children = sorted(c for c in match.iterdir() if find_segments(c)) if match.is_dir() else []
            if children:
                paths += children
            elif on_skip is None:
                raise InputError(_not_a_work_dir(match, or_parent=True))
            else:
                on_skip(_not_a_work_dir(match, or_parent=True))
    unique = {p.resolve(): p for p in paths}
    return [load_work_dir(unique[key]) for key in sorted(unique)]


# ------------------------------------------------------------------------------------------------
# scalars.json
# ------------------------------------------------------------------------------------------------
def read_scalars(path: str | Path) -> list[dict]:
    """The JSON objects of a ``scalars.json``, one per line. A last line without its newline that
    does not parse is a line still being written (a live run) and is left out."""
    text = Path(path).read_text()
    lines = text.split("\n")
    out = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            if i == len(lines) - 1:
                break
            raise InputError(f"{path}:{i + 1}: not a JSON object ({e.msg})") from None
        if not isinstance(record, dict):
            raise InputError(f"{path}:{i + 1}: not a JSON object")
        out.append(record)
    return out


def is_train_record(record: dict) -> bool:
    """A training line: it has a learning rate (``lr``, ``<optimizer>.lr``) or a loss."""
    return any(k == "lr" or k.endswith(".lr") or k.startswith("loss") for k in record)


def split_records(records: list[dict]) -> tuple[list[dict], list[dict]]:
    """``(training lines, validation lines)``; a validation line has at least one metric."""
    train = [r for r in records if is_train_record(r)]
    val = [r for r in records if not is_train_record(r) and set(r) - NOT_METRICS]
    return train, val


def final_metrics(run: WorkDir) -> tuple[dict[str, float], str]:
    """``(metrics, source)``: a ``tools/test.py --out`` file in the work dir if there is one
    (source: its file name), else the last validation line across the segments (source ``val``)."""
    for name in METRICS_FILES:
        file = run.path / name
        if file.is_file():
            try:
                data = json.loads(file.read_text())
            except json.JSONDecodeError as e:
                raise InputError(f"{file}: not JSON ({e.msg})") from None
            metrics = {k: float(v) for k, v in data.items() if _is_number(v)} if isinstance(data, dict) else {}
            if not metrics:
                raise InputError(f"{file}: no numeric metrics in it")
            return metrics, name
    records = run.records()
    _, val = split_records(records)
    if not val:
        scalars = [str(s / "vis_data" / "scalars.json") for s in run.segments
                   if (s / "vis_data" / "scalars.json").is_file()]
        where = f"{len(records)} line(s) in {', '.join(scalars)}, none with a metric" if scalars \
            else "no vis_data/scalars.json in any segment"
        raise InputError(f"{run.path}: no validation metrics ({where}) and no {' or '.join(METRICS_FILES)}")
    last = val[-1]
    return {k: float(v) for k, v in last.items() if k not in NOT_METRICS and _is_number(v)}, "val"


# ------------------------------------------------------------------------------------------------
# the dumped config, the name, the text log
# ------------------------------------------------------------------------------------------------
def config_value(path: str | Path, dotted: str):
    """A literal value of the dumped config, e.g. ``config_value(p, "randomness.seed")``, read with
    ``ast`` (the file is not executed); None if absent or not a literal."""
    try:
        tree = ast.parse(Path(path).read_text())
    except (OSError, SyntaxError, ValueError):
        return None
    head, *rest = dotted.split(".")
    node = None
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == head for t in stmt.targets):
            node = stmt.value
    for key in rest:
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict":
            node = next((kw.value for kw in node.keywords if kw.arg == key), None)
        elif isinstance(node, ast.Dict):
            node = next((v for k, v in zip(node.keys, node.values)
                         if isinstance(k, ast.Constant) and k.value == key), None)
        else:
            return None
    try:
        return ast.literal_eval(node) if node is not None else None
    except ValueError:
        return None


def config_seed(path: str | Path | None) -> int | None:
    """``randomness.seed`` of a dumped config, or None."""
    seed = config_value(path, "randomness.seed") if path is not None else None
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else None


def strip_seed(name: str) -> str:
    """``name`` without a trailing ``_seedN`` / ``-seedN`` / ``seedN`` / ``-sN``."""
    stripped = _SEED_SUFFIX.sub("", name)
    return stripped or name


def seed_from_name(name: str) -> int | None:
    """The N of a trailing ``_seedN`` / ``-seedN`` / ``seedN`` / ``-sN``, or None."""
    m = _SEED_SUFFIX.search(name)
    return int(m.group(1) or m.group(2)) if m else None


def log_span(log: str | Path) -> tuple[datetime, datetime] | None:
    """Times of the first and last timestamped lines of an mmengine text log, or None."""
    first = last = None
    with open(log, errors="replace") as f:
        for line in f:
            m = _LOG_TIME.match(line)
            if m:
                last = m.group(1)
                first = first or last
    if first is None:
        return None
    return tuple(datetime.strptime(t, "%Y/%m/%d %H:%M:%S") for t in (first, last))


def wall_time(run: WorkDir) -> float | None:
    """Seconds of the training: per segment that trained, last minus first timestamped line of its
    text log, summed (a resumed run's pause is not counted). None without such logs."""
    logs = [seg / f"{seg.name}.log" for seg in run.training_segments() if (seg / f"{seg.name}.log").is_file()]
    spans = [s for s in map(log_span, logs) if s is not None]
    return sum((b - a).total_seconds() for a, b in spans) if spans else None


def param_count(run: WorkDir) -> int | None:
    """A parameter count the text log states (``params 1,234``, ``parameters: 1234``), the last
    one in the newest segment that has one; None if no log line says it."""
    for log in reversed(run.logs()):
        found = _PARAMS.findall(Path(log).read_text(errors="replace"))
        if found:
            return int(found[-1].replace(",", ""))
    return None


def iters_per_epoch(run: WorkDir, records: list[dict] | None = None) -> int | None:
    """Training iterations per epoch of an epoch loop: the ``N`` of the text log's
    ``Epoch(train) [e][i/N]`` lines, else from the scalars (``iter / epoch`` of the last logged
    line of a completed epoch: mmengine logs the end of every epoch). None for an iteration loop."""
    for log in reversed(run.logs()):
        found = _EPOCH_LEN.findall(Path(log).read_text(errors="replace"))
        if found:
            return int(found[-1])
    train, val = split_records(run.records() if records is None else records)
    ends: dict[int, int] = {}  # epoch -> the last iteration logged in it
    for r in train:
        if isinstance(r.get("epoch"), int) and isinstance(r.get("iter"), int) and r["epoch"] > 0:
            ends[r["epoch"]] = max(ends.get(r["epoch"], 0), r["iter"])
    validated = {v.get("step") for v in val}
    for e in sorted(ends):
        complete = e < max(ends) or e in validated
        if complete and ends[e] % e == 0:
            return ends[e] // e
    return None


# ------------------------------------------------------------------------------------------------
# curves
# ------------------------------------------------------------------------------------------------
def _dedupe(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """One point per x, the later one winning (a resumed segment repeats the steps it redoes)."""
    return sorted(dict(points).items())


def series(run: WorkDir, key: str, x: str = "iter", records: list[dict] | None = None
           ) -> tuple[list[float], list[float], bool]:
    """``(xs, ys, from_validation)`` of one key of a run, on ``x`` = ``"iter"`` or ``"epoch"``.

    A key on training lines is read from those (x: their ``step``, the iteration; as epochs,
    ``iteration / iters_per_epoch``). A key only on validation lines is read from those:
    in an epoch loop their step is the epoch, placed at the iteration that ends it
    (``epoch * iters_per_epoch``); in an iteration loop at their step if the config sets
    ``log_metric_by_epoch=False``, else (mmengine then writes the never-advancing epoch counter) at
    the training line before them. Epochs need an epoch loop. An empty series is a missing key.
    """
    if x not in ("iter", "epoch"):
        raise InputError(f"x must be 'iter' or 'epoch'; got {x!r}")
    records = run.records() if records is None else records
    train, val = split_records(records)
    train = [r for r in train if _is_number(r.get("step"))]
    epoch_loop = any("epoch" in r for r in train)
    if x == "epoch" and not epoch_loop:
        raise InputError(f"{run.path}: an iteration-based run (no epochs in its logs); plot it with --x iter")

    def epoch_length() -> int:
        ipe = iters_per_epoch(run, records)
        if ipe is None:
            raise InputError(f"{run.path}: cannot tell the iterations per epoch (no 'Epoch(train) [e][i/N]' "
                             f"log line, no completed epoch in scalars.json); use the other --x")
        return ipe

    if key not in COUNTERS and any(_is_number(r.get(key)) for r in train):
        ipe = epoch_length() if x == "epoch" else 1
        points = [(r["step"] / ipe if x == "epoch" else r["step"], float(r[key])) for r in train
                  if _is_number(r.get(key))]
        from_val = False
    elif epoch_loop:
        scale = epoch_length() if x == "iter" else 1
        points = [(r["step"] * scale, float(r[key])) for r in val
                  if _is_number(r.get(key)) and _is_number(r.get("step"))]
        from_val = True
    else:
        config = run.run_config()
        by_epoch = config_value(config, "default_hooks.logger.log_metric_by_epoch") if config else None
        points, last_iter = [], 0
        for r in records:
            if is_train_record(r):
                last_iter = r.get("step", last_iter)
            elif _is_number(r.get(key)):
                points.append((r.get("step", last_iter) if by_epoch is False else last_iter, float(r[key])))
        from_val = True
    if not points:
        return [], [], False
    xs, ys = zip(*_dedupe(points))
    return list(xs), list(ys), from_val


def _is_number(v) -> bool:  # NaN and inf count: a diverged loss is still that key's value
    return isinstance(v, (int, float)) and not isinstance(v, bool)

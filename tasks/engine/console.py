"""What a run prints: a short banner, a progress display, and the warnings that matter.

Everything else goes only to the work dir's log file, ``<work_dir>/<timestamp>/<timestamp>.log``:
mmengine's environment and config dump, the hook order, its periodic log lines (every
``LoggerHook.interval`` iterations, which ``tools/plot_logs.py`` and friends read from the log and
from ``vis_data/scalars.json``).

- **banner** (:func:`banner_lines`): config, model and parameter count, data sizes, schedule,
  device and threads, seed and resume point, work dir, log file, TensorBoard; written to the log too.
- **progress** (:class:`RunConsole`, fed by :class:`ConsoleHook`) for train, val and test:
  ``'bar'`` a live bar updated in place (rich) with iterations, rate, ETA, running loss and lr;
  ``'lines'`` plain lines every tenth of a loop or every 30 s, whichever comes first (CI,
  ``nohup ... > out``); ``'off'``. ``'auto'`` (the default) is ``'bar'`` on a terminal and
  ``'lines'`` otherwise. Set by ``--progress`` or ``GLOCAL_PROGRESS``. Each finished loop leaves
  one summary line (with the metrics of a validation or test) in every mode.
- **verbose** (``--verbose`` or ``GLOCAL_VERBOSE=1``): the log file's lines go to the console too.
- **third-party warnings** a user cannot act on are filtered here and only here
  (:data:`THIRD_PARTY_WARNINGS`, :data:`LOGGED_NOISE`); the logged ones stay in the log file.
"""
from __future__ import annotations

import importlib.util
import itertools
import logging
import math
import os
import re
import sys
import time
import warnings
from dataclasses import dataclass

import torch
from mmengine.hooks import Hook
from mmengine.logging import MMLogger
from mmengine.logging.logger import FilterDuplicateWarning, MMFormatter
from mmengine.runner.loops import EpochBasedTrainLoop as _MMEpochBasedTrainLoop

from glocal.core.errors import ConfigError

__all__ = ["RunConsole", "ConsoleHook", "ConsoleHandler", "BuildLog", "quiet_third_party", "progress_mode",
           "verbose_mode", "tensorboard_available", "banner_lines", "PROGRESS_MODES", "THIRD_PARTY_WARNINGS",
           "LOGGED_NOISE"]

PROGRESS_MODES = ("auto", "bar", "lines", "off")
BAR_WIDTH = 20  # characters; on a narrow terminal the last stats go first
ENV_PROGRESS, ENV_VERBOSE = "GLOCAL_PROGRESS", "GLOCAL_VERBOSE"

# Warnings raised inside a third-party library about its own internals: nothing in a glocal config or
# command changes them. (message regex, category, regex the warning's module must start with).
THIRD_PARTY_WARNINGS = (
    # torch_geometric 2.8 calls torch.jit.script while it is imported (torch >= 2.10 deprecates it)
    (r"`torch\.jit\.script` is deprecated", FutureWarning, r"torch\.jit"),
    # mmengine 0.10's AmpOptimWrapper builds torch.cuda.amp.GradScaler (CUDA runs with --amp)
    (r"`torch\.cuda\.amp\.GradScaler\(args\.\.\.\)` is deprecated", FutureWarning, r"mmengine\."),
    # distributed runs: mmengine announces the one thread per process it sets (the banner shows the threads)
    (r"Setting (OMP|MKL)_NUM_THREADS environment variable for each process", UserWarning, r"mmengine\."),
    # distributed runs: torch 2.14 deprecates DDP's broadcast_buffers, yet asks to keep
    # broadcast_buffers=False (glocal's CPU default) until its replacement can skip the sync at init
    (r"`broadcast_buffers` is deprecated\. Use `forward_sync_buffers`", FutureWarning, r"mmengine\."),
    # distributed runs on CPU: torch's depthwise convolution returns channels-last gradients for
    # contiguous weights, so DDP's reducer copies them (a performance note about torch's kernels)
    (r"Grad strides do not match bucket view strides", UserWarning, r"torch\."),
)
# mmengine's deprecation notices that it logs (not warns) from its own CheckpointHook at every run
# start; kept out of the console, still in the log file
LOGGED_NOISE = (
    r'^"FileClient" will be deprecated in future',
    r'^"HardDiskBackend" is the alias of "LocalBackend"',
)
_NOISE = re.compile("|".join(LOGGED_NOISE))


def quiet_third_party() -> None:
    """Ignore :data:`THIRD_PARTY_WARNINGS` from here on (idempotent: each filter goes to the front
    of ``warnings.filters`` once)."""
    for message, category, module in THIRD_PARTY_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)


def progress_mode(value: str | None = None, stream=None) -> str:
    """``'bar'``, ``'lines'`` or ``'off'``: ``value``, else ``$GLOCAL_PROGRESS``, else ``'auto'``, which
    is ``'bar'`` when ``stream`` (default stdout) is a terminal (not ``TERM=dumb``), else ``'lines'``."""
    source = "--progress" if value is not None else ENV_PROGRESS
    mode = (value if value is not None else os.environ.get(ENV_PROGRESS) or "auto").strip().lower()
    if mode not in PROGRESS_MODES:
        raise ConfigError(f"{source}={mode!r}: use one of {', '.join(PROGRESS_MODES)}")
    if mode != "auto":
        return mode
    stream = sys.stdout if stream is None else stream
    tty = bool(getattr(stream, "isatty", lambda: False)())
    return "bar" if tty and os.environ.get("TERM", "") not in ("dumb", "unknown") else "lines"


def verbose_mode(value: bool | None = None) -> bool:
    """``value``, else ``$GLOCAL_VERBOSE`` (1/true/yes/on)."""
    if value is not None:
        return bool(value)
    return os.environ.get(ENV_VERBOSE, "").strip().lower() in ("1", "true", "yes", "on")


def tensorboard_available() -> bool:
    """Whether mmengine's ``TensorboardVisBackend`` can write events (tensorboardX or tensorboard)."""
    return any(importlib.util.find_spec(name) is not None for name in ("tensorboardX", "tensorboard"))


# ------------------------------------------------------------------------------------------------
# the console
# ------------------------------------------------------------------------------------------------
@dataclass
class _Loop:
    label: str
    total: int
    done: int
    start: float
    line_t: float  # when the last periodic line was written (lines mode)
    line_done: int
    lines: int = 0  # periodic lines written (lines mode)
    task: int | None = None  # rich's task id (bar mode)


class RunConsole:
    """The console of one run: lines written through it appear above a live bar; bars and
    periodic lines for each running loop (``key``: 'train', 'val', 'test').

    ``stream``: where to write (default: ``sys.stdout`` at each write, so a redirection made later
    is followed). ``every``: a periodic line every ``ceil(total * every)`` iterations (lines mode),
    or every ``seconds`` seconds, whichever comes first.
    """

    def __init__(self, progress: str | None = None, verbose: bool | None = None, stream=None,
                 every: float = 0.1, seconds: float = 30.0, refresh: float = 0.1):
        self._stream = stream
        self.mode = progress_mode(progress, self.stream)
        self.verbose = verbose_mode(verbose)
        self.every, self.seconds, self.refresh = every, seconds, refresh
        self._loops: dict[str, _Loop] = {}
        self._progress = None  # rich.progress.Progress while a bar is live
        self._refreshed = 0.0

    @property
    def stream(self):
        return self._stream if self._stream is not None else sys.stdout

    # -- writing --------------------------------------------------------------------------------
    def print(self, text: str) -> None:
        """One or more lines, above the live bar when there is one."""
        if self._progress is not None:
            from rich.text import Text
            self._progress.console.print(Text.from_ansi(text), soft_wrap=True)
            return
        stream = self.stream
        stream.write(text + "\n")
        stream.flush()

    # -- loops ----------------------------------------------------------------------------------
    def total(self, key: str) -> int | None:
        """The length of the running loop ``key``; None when it is not running."""
        loop = self._loops.get(key)
        return None if loop is None else loop.total

    def start(self, key: str, label: str, total: int, done: int = 0) -> None:
        now = time.monotonic()
        loop = _Loop(label, max(int(total), 0), int(done), now, now, int(done))
        self._loops[key] = loop
        if self.mode == "bar":
            progress = self._live()
            loop.task = progress.add_task(label, total=loop.total or None, completed=loop.done, stats="")
            self._refresh(force=True)

    def update(self, key: str, done: int, stats: str = "") -> None:
        loop = self._loops.get(key)
        if loop is None:
            return
        loop.done = int(done)
        if self.mode == "bar" and loop.task is not None and self._progress is not None:
            self._progress.update(loop.task, completed=loop.done, stats=self._fit(stats))
            self._refresh(force=loop.done >= loop.total)
        elif self.mode == "lines" and loop.done < loop.total:
            now = time.monotonic()
            step = max(1, math.ceil(loop.total * self.every)) if loop.total else None
            if not loop.lines or (step and loop.done - loop.line_done >= step) or now - loop.line_t >= self.seconds:
                loop.line_t, loop.line_done, loop.lines = now, loop.done, loop.lines + 1
                self.print(f"{self._count(loop)}  {stats}".rstrip())

    def end(self, key: str, summary: str = "") -> float:
        """Ends the loop's bar and writes its summary line (in every mode, 'off' too); returns the
        loop's seconds."""
        loop = self._loops.pop(key, None)
        if loop is None:
            return 0.0
        if loop.task is not None and self._progress is not None:
            self._progress.remove_task(loop.task)
            self._refresh(force=True)
        seconds = time.monotonic() - loop.start
        self.print(f"{self._count(loop)}  {_clock(seconds)}  {summary}".rstrip())
        return seconds

    def close(self) -> None:
        """Stop the live bar (the lines written through it stay). Safe to call more than once."""
        self._loops.clear()
        if self._progress is not None:
            progress, self._progress = self._progress, None
            progress.stop()

    # -- helpers --------------------------------------------------------------------------------
    @staticmethod
    def _count(loop: _Loop) -> str:
        if not loop.total:
            return f"{loop.label}  {loop.done}"
        width = len(str(loop.total))
        return f"{loop.label}  {loop.done:>{width}}/{loop.total} {100 * loop.done // loop.total:3d}%"

    def _fit(self, stats: str) -> str:
        """The stats with their last parts (``"  "``-separated) dropped until the bar's line fits the
        console's width (rich would shrink the bar instead)."""
        label = max(len(loop.label) for loop in self._loops.values())
        count = max(2 * len(str(loop.total)) + 1 for loop in self._loops.values())
        room = self._progress.console.width - label - BAR_WIDTH - count - 4
        parts = stats.split("  ")
        while parts and len("  ".join(parts)) > room:
            parts.pop()
        return "  ".join(parts)

    def _live(self):
        if self._progress is None:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
            console = Console(file=self.stream, force_terminal=True, soft_wrap=True)
            self._progress = Progress(TextColumn("{task.description}"), BarColumn(bar_width=BAR_WIDTH),
                                      MofNCompleteColumn(), TextColumn("{task.fields[stats]}"), console=console,
                                      auto_refresh=False, transient=True, redirect_stdout=True,
                                      redirect_stderr=True)
            self._progress.start()
        return self._progress

    def _refresh(self, force: bool = False) -> None:
        now = time.monotonic()
        if self._progress is not None and (force or now - self._refreshed >= self.refresh):
            self._refreshed = now
            self._progress.refresh()


class ConsoleHandler(logging.Handler):
    """The console side of the run's logger (it replaces mmengine's stdout handler): warnings and
    errors, every record when verbose, nothing below errors on ranks other than 0. A record with
    ``extra={'console': False}`` stays in the log file; :data:`LOGGED_NOISE` never shows."""

    def __init__(self, console: RunConsole, rank: int = 0, logger_name: str = "mmengine"):
        level = logging.ERROR if rank != 0 else logging.INFO if console.verbose else logging.WARNING
        super().__init__(level)
        self.console = console
        tty = bool(getattr(console.stream, "isatty", lambda: False)())
        self.setFormatter(MMFormatter(color=tty, datefmt="%m/%d %H:%M:%S"))
        self.addFilter(FilterDuplicateWarning(logger_name))

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "console", True) is False:
            return False
        if not self.console.verbose and _NOISE.search(str(record.getMessage())):
            return False
        return super().filter(record)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.console.print(self.format(record))
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)

    @classmethod
    def attach(cls, logger: logging.Logger, console: RunConsole, rank: int = 0) -> None:
        """Replace the logger's console handlers (mmengine's stdout ``StreamHandler``, or a previous
        run's ``ConsoleHandler``) by one writing through ``console``; file handlers stay."""
        logger.handlers = [h for h in logger.handlers
                           if not (isinstance(h, cls) or type(h) is logging.StreamHandler)]
        logger.handlers.insert(0, cls(console, rank))


class _Keep(logging.Handler):
    def __init__(self, records: list):
        super().__init__(logging.DEBUG)
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class BuildLog:
    """What is logged while the model and data are built, before the run's log file exists (cache
    reports, padding shares, ...): a logger of its own becomes mmengine's current one, shows its
    records on the console by :class:`ConsoleHandler`'s rule, and keeps them for the run's log
    file (:meth:`replay`)."""

    _names = itertools.count()

    def __init__(self, console: RunConsole, rank: int = 0):
        self.records: list[logging.LogRecord] = []
        name = f"glocal_build_{os.getpid()}_{next(self._names)}"
        self.logger = MMLogger.get_instance(name, logger_name="mmengine")  # the latest: print_log's 'current'
        ConsoleHandler.attach(self.logger, console, rank)
        self.logger.handlers.append(_Keep(self.records))

    def replay(self, logger: logging.Logger) -> None:
        """Write the kept records to ``logger``'s log files (the console has shown them)."""
        files = [h for h in logger.handlers if isinstance(h, logging.FileHandler)]
        for record in self.records:
            for handler in files:
                if record.levelno >= handler.level:
                    handler.handle(record)
        self.records.clear()


# ------------------------------------------------------------------------------------------------
# what the hook shows
# ------------------------------------------------------------------------------------------------
def _clock(seconds: float) -> str:
    seconds = int(round(max(seconds, 0.0)))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _rate(seconds_per_iter: float) -> str:
    return f"{1 / seconds_per_iter:.2f} it/s" if seconds_per_iter < 1 else f"{seconds_per_iter:.2f} s/it"


def _scalar(runner, key: str, window: int | None = None) -> float | None:
    buf = runner.message_hub.log_scalars.get(key)
    if buf is None or not len(buf.data[0]):
        return None
    return float(buf.mean(window) if window else buf.current())


def _window(runner) -> int:
    size = getattr(getattr(runner, "log_processor", None), "window_size", 20)
    return size if isinstance(size, int) and size > 0 else 20


def _lr(runner) -> float | None:
    keys = [k for k in runner.message_hub.log_scalars if k.startswith("train/") and k.endswith("lr")]
    return _scalar(runner, keys[0]) if keys else None


def _metrics(metrics) -> str:
    parts = []
    for name, value in (metrics or {}).items():
        try:
            parts.append(f"{name} {float(value):.4g}")
        except (TypeError, ValueError):
            continue
    return "  ".join(parts)


def _loader(runner, split: str):
    """The split's DataLoader without building a loop that is not built yet."""
    loop = getattr(runner, f"_{split}_loop", None)
    if loop is not None and hasattr(loop, "dataloader"):
        return loop.dataloader
    loader = getattr(runner, f"_{split}_dataloader", None)
    return loader if hasattr(loader, "__iter__") and not isinstance(loader, dict) else None


def _size(loader) -> str:
    if loader is None:
        return ""
    try:
        n = len(loader.dataset)
    except TypeError:
        return f"{len(loader)} batches"
    return f"{n:,}"


def _threads() -> str:
    omp = os.environ.get("OMP_NUM_THREADS")
    n = torch.get_num_threads()
    return f"{n} thread{'s' if n != 1 else ''} (torch; OMP_NUM_THREADS={omp if omp else 'unset'})"


def _device(runner) -> str:
    model = getattr(runner.model, "module", runner.model)
    try:
        device = next(model.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    text = str(device)
    if device.type == "cuda":
        text += f" ({torch.cuda.get_device_name(device)})"
    else:
        text += f", {_threads()}" + (" per process" if runner.world_size > 1 else "")
    if runner.world_size > 1:
        import torch.distributed as dist
        text += f", {runner.world_size} processes (DDP, {dist.get_backend()})"
    return text


def _tensorboard(runner) -> str:
    from mmengine.visualization import TensorboardVisBackend
    backends = getattr(runner.visualizer, "_vis_backends", {}) or {}
    if any(isinstance(b, TensorboardVisBackend) for b in backends.values()):
        return f"tensorboard --logdir {runner.work_dir}"
    if not tensorboard_available():
        return "not installed, no events written (pip install tensorboard)"
    return "off (visualizer=None)"


def _model_name(cfg, model) -> str:
    """``Classifier (adapter PatchStem, backbone swin_t, head ClsHead)`` from the config's types."""
    spec = cfg.get("model") or {}
    name = spec.get("type") if isinstance(spec.get("type"), str) else type(model).__name__
    parts = [f"{key} {spec[key]['type']}" for key in ("adapter", "backbone", "head")
             if isinstance(spec.get(key), dict) and isinstance(spec[key].get("type"), str)]
    return f"{name} ({', '.join(parts)})" if parts else name


def banner_lines(runner, kind: str) -> list[str]:
    """The start banner of ``kind`` 'train' or 'test' (a handful of lines)."""
    cfg = runner.cfg
    model = getattr(runner.model, "module", runner.model)
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    lines = [f"glocal {kind}: {cfg.filename or '(config given as a dict)'}"]
    extra = f", {trainable:,} trainable" if trainable != params else ""
    lines.append(f"  model     {_model_name(cfg, model)}, params {params:,} ({params / 1e6:.2f} M{extra})")
    if kind == "train":
        train = _loader(runner, "train")
        data = [f"train {_size(train)} ({len(train)} iterations per epoch)"] if train is not None else []
        data += [f"{split} {_size(_loader(runner, split))}" for split in ("val", "test")
                 if _loader(runner, split) is not None]
        lines.append(f"  data      {', '.join(data)}")
        loop = runner.train_loop
        if isinstance(loop, _MMEpochBasedTrainLoop):
            schedule = f"{loop.max_epochs} epoch{'s' if loop.max_epochs != 1 else ''} ({loop.max_iters:,} iterations)"
        else:
            schedule = f"{getattr(loop, 'max_iters', 0):,} iterations"
        if runner._val_loop is not None and getattr(loop, "val_interval", None):
            unit = "epoch" if isinstance(loop, _MMEpochBasedTrainLoop) else "iteration"
            every = unit if loop.val_interval == 1 else f"{loop.val_interval} {unit}s"
            schedule += f", validation every {every}"
        lines.append(f"  schedule  {schedule}")
        resumed, loaded = getattr(runner, "resumed_from", None), getattr(runner, "loaded_from", None)
        if resumed:
            start = f"resumed from {resumed} (epoch {runner.epoch}, iteration {runner.iter})"
        elif loaded:
            start = f"from scratch, weights from {loaded}"
        else:
            start = "from scratch"
        lines.append(f"  start     seed {runner.seed}, {start}")
    else:
        lines.append(f"  data      test {_size(_loader(runner, 'test'))}")
        weights = getattr(runner, "weights_from", None)
        if weights:
            lines.append(f"  weights   {weights}")
    lines.append(f"  device    {_device(runner)}")
    lines.append(f"  work dir  {runner.work_dir}")
    log_file = getattr(runner.logger, "log_file", None)
    if log_file:
        more = "" if getattr(runner.console, "verbose", False) else "; --verbose shows them here"
        lines.append(f"  log       {log_file} (environment, config, hooks, every log line{more})")
    if kind == "train":
        lines.append(f"  curves    {os.path.join(runner.log_dir, 'vis_data', 'scalars.json')}; "
                     f"TensorBoard: {_tensorboard(runner)}")
    return lines


class ConsoleHook(Hook):
    """Feeds the runner's :class:`RunConsole`: the banner before training or testing, a progress
    display for every train epoch (the whole run for an iteration loop), validation and test, a
    summary line at the end of each. Rank 0 only. It runs last at each event (priority LOWEST),
    when the loss, lr and iteration times are in the message hub."""

    priority = "LOWEST"

    def __init__(self):
        self._training = False
        self._start = 0.0

    @staticmethod
    def _console(runner) -> RunConsole | None:
        console = getattr(runner, "console", None)
        return console if isinstance(console, RunConsole) and runner.rank == 0 else None

    def _banner(self, runner, kind: str) -> None:
        console = self._console(runner)
        if console is None:
            return
        lines = banner_lines(runner, kind)
        runner.logger.info("\n".join(lines), extra={"console": False})
        console.print("\n".join(lines))

    # -- training -------------------------------------------------------------------------------
    def before_train(self, runner) -> None:
        self._training, self._start = True, time.monotonic()
        self._banner(runner, "train")

    def before_train_epoch(self, runner) -> None:
        console = self._console(runner)
        if console is None:
            return
        loop = runner.train_loop
        if isinstance(loop, _MMEpochBasedTrainLoop):
            total = len(loop.dataloader)
            done = min(max(runner.iter - runner.epoch * total, 0), total)
            console.start("train", f"train epoch {runner.epoch + 1}/{loop.max_epochs}", total, done)
        else:
            console.start("train", "train", getattr(loop, "max_iters", 0), runner.iter)  # 0: a loop of unknown length

    def _train_stats(self, runner, remaining: int, summary: bool = False) -> str:
        parts = []
        t = _scalar(runner, "train/time", _window(runner))
        if t:
            parts.append(_rate(t))
            if not summary:
                parts.append(f"eta {_clock(remaining * t)}")
        loss = _scalar(runner, "train/loss", _window(runner))
        if loss is not None:
            parts.append(f"loss {loss:.4f}")
        lr = _lr(runner)
        if lr is not None:
            parts.append(f"lr {lr:.2e}")
        loop = runner.train_loop
        left = getattr(loop, "max_iters", 0) - runner.iter - 1
        if t and not summary and isinstance(loop, _MMEpochBasedTrainLoop) and left > remaining:
            parts.append(f"run eta {_clock(left * t)}")  # last: the first to go on a narrow terminal
        return "  ".join(parts)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        console = self._console(runner)
        if console is None or console.total("train") is None:
            return
        loop = runner.train_loop
        if isinstance(loop, _MMEpochBasedTrainLoop):
            done, total = batch_idx + 1, len(loop.dataloader)
        else:
            done, total = runner.iter + 1, getattr(loop, "max_iters", 0)
        console.update("train", done, self._train_stats(runner, total - done))

    def after_train_epoch(self, runner) -> None:
        console = self._console(runner)
        if console is not None:
            console.end("train", self._train_stats(runner, 0, summary=True))

    def after_train(self, runner) -> None:
        self._training = False
        console = self._console(runner)
        if console is None:
            return
        last = runner.message_hub.get_info("last_ckpt")
        console.print(f"done: {runner.iter:,} iterations in {_clock(time.monotonic() - self._start)}"
                      + (f"; last checkpoint {last}" if last else ""))
        console.close()

    # -- validation and test --------------------------------------------------------------------
    def _eval_label(self, runner, split: str) -> str:
        if split == "val" and self._training:
            by_epoch = isinstance(runner.train_loop, _MMEpochBasedTrainLoop)
            return f"val epoch {runner.epoch}" if by_epoch else f"val iter {runner.iter}"
        return split

    def _eval_start(self, runner, split: str) -> None:
        console = self._console(runner)
        if console is not None:
            loader = getattr(runner, f"{split}_loop").dataloader
            console.start(split, self._eval_label(runner, split), len(loader))

    def _eval_iter(self, runner, split: str, batch_idx: int) -> None:
        console = self._console(runner)
        total = None if console is None else console.total(split)
        if total is None:
            return
        t = _scalar(runner, f"{split}/time", _window(runner))
        stats = f"{_rate(t)}  eta {_clock((total - batch_idx - 1) * t)}" if t else ""
        console.update(split, batch_idx + 1, stats)

    def _eval_end(self, runner, split: str, metrics) -> None:
        console = self._console(runner)
        if console is not None:
            console.end(split, _metrics(metrics))

    def before_val_epoch(self, runner) -> None:
        self._eval_start(runner, "val")

    def after_val_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        self._eval_iter(runner, "val", batch_idx)

    def after_val_epoch(self, runner, metrics=None) -> None:
        self._eval_end(runner, "val", metrics)

    def after_val(self, runner) -> None:
        console = self._console(runner)
        if console is not None and not self._training:
            console.close()

    def before_test(self, runner) -> None:
        self._banner(runner, "test")

    def before_test_epoch(self, runner) -> None:
        self._eval_start(runner, "test")

    def after_test_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        self._eval_iter(runner, "test", batch_idx)

    def after_test_epoch(self, runner, metrics=None) -> None:
        self._eval_end(runner, "test", metrics)

    def after_test(self, runner) -> None:
        console = self._console(runner)
        if console is not None:
            console.close()

"""What ``tools/train.py`` and ``tools/test.py`` print, checked without a screenshot: the console of
short runs of the tiny config (in-process, captured), the work dir's log file beside it."""
from __future__ import annotations

import importlib.util
import io
import re
import warnings
from pathlib import Path

import pytest

from glocal.core.errors import ConfigError
from glocal.tasks.engine import console as console_mod
from glocal.tasks.engine.console import RunConsole, progress_mode, quiet_third_party

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "tests" / "tasks" / "configs" / "tiny_fashion_mnist.py"
# 48 training images at batch 16: 3 iterations per epoch; 32 validation images: one batch
SMALL = ["train_dataloader.dataset.limit=48", "val_dataloader.dataset.limit=32", "train_cfg.max_epochs=1"]
CLOCK = r"\d+:\d\d:\d\d"
RATE = r"[\d.]+ (?:it/s|s/it)"
BAR = r"[━╸╺]+"  # rich's bar: done, half-done, to do
DUMP = ("System environment:", "Runtime environment:", "Config:", "Hooks will be executed in the following order:",
        "Epoch(train) [1][3/3]", '"FileClient" will be deprecated')


@pytest.fixture(autouse=True)
def _quiet_env(one_thread, monkeypatch):
    """One thread; the console settings come from each test, not from the caller's environment."""
    for name in ("GLOCAL_PROGRESS", "GLOCAL_VERBOSE"):
        monkeypatch.delenv(name, raising=False)


def _tool(name):
    spec = importlib.util.spec_from_file_location(f"glocal_tool_{name}", ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _train(work_dir: Path, *options: str, name: str, cfg=()) -> None:
    argv = [str(CONFIG), "--work-dir", str(work_dir), *options,
            "--cfg-options", *SMALL, *cfg, f"experiment_name={name}"]
    assert _tool("train").main(argv) == 0


def _log(work_dir: Path) -> Path:
    """The newest segment's log file."""
    return sorted(work_dir.glob("*/*.log"))[-1]


def test_lines_mode_banner_and_the_full_dump_only_in_the_log(tmp_path, capsys):
    _train(tmp_path, "--progress", "lines", name="lines")
    out = capsys.readouterr().out
    log = _log(tmp_path)

    # the banner: a handful of lines, first on the console
    lines = out.splitlines()
    assert lines[0] == f"glocal train: {CONFIG}"
    banner = "\n".join(lines[:10])
    assert re.search(r"^  model +Classifier \(adapter PatchStem, backbone Backbone, head ClsHead\), "
                     r"params (\d{3},\d{3}) \(0\.\d\d M\)$", banner, re.M), banner
    assert "  data      train 48 (3 iterations per epoch), val 32, test 64" in banner
    assert "  schedule  1 epoch (3 iterations), validation every epoch" in banner
    assert "  start     seed 0, from scratch" in banner
    assert re.search(r"^  device +cpu, 1 thread \(torch; OMP_NUM_THREADS=\w+\)$", banner, re.M), banner
    assert f"  work dir  {tmp_path}" in banner
    assert f"  log       {log} (environment, config, hooks, every log line; --verbose shows them here)" in banner
    assert f"TensorBoard: tensorboard --logdir {tmp_path}" in banner

    # lines mode: plain lines, no carriage returns or escape codes; one summary per loop
    assert "\r" not in out and "\x1b" not in out
    assert re.search(rf"^train epoch 1/1  1/3  33%  {RATE}  eta {CLOCK}  loss \d+\.\d{{4}}  lr \d\.\d\de-\d\d$",
                     out, re.M), out
    assert re.search(rf"^train epoch 1/1  3/3 100%  {CLOCK}  {RATE}  loss \d+\.\d{{4}}  lr \d\.\d\de-\d\d$",
                     out, re.M), out
    assert re.search(rf"^val epoch 1  1/1 100%  {CLOCK}  top1 [\d.]+  top5 [\d.]+$", out, re.M), out
    assert re.search(rf"^done: 3 iterations in {CLOCK}; last checkpoint .*epoch_1\.pth$", out, re.M), out
    assert len(lines) < 20, out

    # the dump, mmengine's periodic lines and its deprecation notices: in the log file only
    text = log.read_text()
    for piece in DUMP:
        assert piece in text, piece
        assert piece not in out, piece
    assert "glocal train:" in text  # the banner is in the log too, and tools/results.py reads its count
    from glocal.tasks.logs import find_work_dirs, param_count
    params = int(re.search(r"params (\d{3},\d{3})", banner).group(1).replace(",", ""))
    assert param_count(find_work_dirs([str(tmp_path)])[0]) == params

    # TensorBoard events although the config lists only LocalVisBackend; the scalars JSON as before
    assert list(tmp_path.glob("*/vis_data/events.out.tfevents.*")), "no TensorBoard events"
    assert list(tmp_path.glob("*/vis_data/scalars.json")), "no scalars JSON"


def test_bar_mode_updates_in_place(tmp_path, capsys, monkeypatch):
    """A live bar (forced, as on a terminal): carriage-return updates; an iteration loop validated
    in the middle shows both bars, and each finished loop leaves its summary line."""
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.setenv("COLUMNS", "120")
    _train(tmp_path, "--progress", "bar", name="bar",
           cfg=["train_cfg.by_epoch=False", "train_cfg.max_iters=3", "train_cfg.val_interval=2",
                "default_hooks.checkpoint.interval=3"])
    out = capsys.readouterr().out
    assert out.startswith(f"glocal train: {CONFIG}\n")
    assert "\r\x1b[2K" in out  # rich: back to the line start, erase, redraw
    frames = [re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", f) for f in out.split("\r")]
    assert any(re.match(rf"train +{BAR} 3/3 {RATE}  eta {CLOCK}  loss \d", f) for f in frames), frames
    # validating after iteration 2: its bar under the training bar (a live display of two lines)
    assert any(re.match(rf"train +{BAR} 2/3 .*\nval iter 2 {BAR} 1/1", f) for f in frames), frames
    plain = "\n".join(frames)
    assert re.search(rf"^val iter 2  1/1 100%  {CLOCK}  top1 [\d.]+  top5 [\d.]+$", plain, re.M), plain
    assert re.search(rf"^train  3/3 100%  {CLOCK}  {RATE}  loss \d", plain, re.M), plain
    assert re.search(r"^done: 3 iterations", plain, re.M), plain
    text = _log(tmp_path).read_text()
    assert all(piece in text and piece not in out for piece in DUMP[:4])


def test_verbose_off_resume_and_the_test_tool(tmp_path, capsys):
    # --verbose: the dump on the console as well; 'off': no progress lines, summaries stay; a
    # warning (here: --resume in an empty work dir) reaches the console in every mode
    _train(tmp_path, "--progress", "off", "--verbose", "--resume", name="verbose")
    out = capsys.readouterr().out
    assert all(piece in out for piece in DUMP)
    assert "--resume: no complete checkpoint" in out and "seed 0, from scratch" in out
    assert "1/3" not in out and re.search(r"^train epoch 1/1  3/3 100%", out, re.M)
    assert out.count("glocal train:") == 1

    # resuming: the banner names the checkpoint and where training continues
    _train(tmp_path, "--progress", "lines", "--resume", name="resumed", cfg=["train_cfg.max_epochs=2"])
    out = capsys.readouterr().out
    assert f"seed 0, resumed from {tmp_path / 'epoch_1.pth'} (epoch 1, iteration 3)" in out
    assert "System environment:" not in out and re.search(r"^train epoch 2/2  1/3", out, re.M)

    # tools/test.py: its banner, the progress of testing, the metrics as JSON
    ckpt = tmp_path / "epoch_2.pth"
    argv = [str(CONFIG), str(ckpt), "--work-dir", str(tmp_path / "test"), "--progress", "lines",
            "--cfg-options", "test_dataloader.dataset.limit=32", "experiment_name=test"]
    assert _tool("test").main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"glocal test: {CONFIG}\n") and f"  weights   {ckpt}\n" in out
    assert "  data      test 32\n" in out
    assert re.search(rf"^test  1/1 100%  {CLOCK}  top1 [\d.]+  top5 [\d.]+$", out, re.M), out
    assert '"top1":' in out and "System environment:" not in out
    assert "System environment:" in _log(tmp_path / "test").read_text()


def test_lines_come_every_tenth_or_every_30_seconds(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(console_mod.time, "monotonic", lambda: now[0])
    stream = io.StringIO()
    con = RunConsole("lines", stream=stream)
    con.start("train", "train", 100)
    for i in range(1, 101):
        now[0] += 0.125 if i < 50 else 5.0  # slower after the middle: 30 s pass before ten iterations
        con.update("train", i, "x")
    con.end("train", "done")
    lines = stream.getvalue().splitlines()
    counts = [int(re.match(r"train +(\d+)/100", ln).group(1)) for ln in lines]
    # the first, then every tenth, then every 30 s (5 s per iteration); the summary at the end
    assert counts == [1, 11, 21, 31, 41, 51, 57, 63, 69, 75, 81, 87, 93, 99, 100]
    assert lines[-1].startswith("train  100/100 100%") and lines[-1].endswith("done")


def test_progress_mode_from_the_environment(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setenv("TERM", "xterm")
    assert progress_mode(None, io.StringIO()) == "lines" and progress_mode(None, Tty()) == "bar"
    monkeypatch.setenv("TERM", "dumb")
    assert progress_mode(None, Tty()) == "lines"
    monkeypatch.setenv("GLOCAL_PROGRESS", "off")
    assert progress_mode(None, Tty()) == "off" and progress_mode("bar", io.StringIO()) == "bar"
    monkeypatch.setenv("GLOCAL_PROGRESS", "fancy")
    with pytest.raises(ConfigError, match="GLOCAL_PROGRESS='fancy': use one of auto, bar, lines, off"):
        progress_mode()


def test_third_party_warnings_are_filtered_in_one_place():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_third_party()
        quiet_third_party()  # idempotent
        warnings.warn_explicit("`torch.jit.script` is deprecated. Please switch to `torch.compile`", FutureWarning,
                               "_script.py", 1, module="torch.jit._script")
        warnings.warn_explicit("something the user can fix", FutureWarning, "config.py", 1, module="glocal.x")
    assert [str(w.message) for w in caught] == ["something the user can fix"]


def test_what_building_logs_reaches_the_run_log_file(tmp_path):
    """Records logged before the run's log file exists (cache reports while datasets are built):
    warnings on the console, everything in the log file once the runner has one."""
    import logging

    from mmengine.logging import print_log

    from glocal.tasks.engine.console import BuildLog

    stream = io.StringIO()
    early = BuildLog(RunConsole("lines", stream=stream))
    print_log("dataset: cache hit", logger="current")
    print_log("dataset: 2 files skipped", logger="current", level=logging.WARNING)
    assert "cache hit" not in stream.getvalue() and "2 files skipped" in stream.getvalue()
    run = logging.Logger("run")
    run.addHandler(logging.FileHandler(tmp_path / "run.log"))
    early.replay(run)
    run.handlers[0].close()
    assert (tmp_path / "run.log").read_text() == "dataset: cache hit\ndataset: 2 files skipped\n"

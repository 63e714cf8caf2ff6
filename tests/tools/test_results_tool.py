"""tools/results.py and tools/plot_logs.py on work dirs written by hand (scalars.json lines, a
dumped config, a text log), and once on the work dir of a real tiny training run."""
from __future__ import annotations

import ast
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from glocal.core.errors import InputError
from glocal.tasks.engine import run_tool
from glocal.tasks.logs import final_metrics, find_work_dirs, load_work_dir, series

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "tests" / "tasks" / "configs" / "tiny_fashion_mnist.py"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _tool(name):
    spec = importlib.util.spec_from_file_location(f"glocal_{name}_tool", ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


results, plot_logs = _tool("results"), _tool("plot_logs")


# ------------------------------------------------------------------------------------------------
# fake work dirs: 4 iterations per epoch, a training line every 2, validation after each epoch
# ------------------------------------------------------------------------------------------------
def train_lines(epoch, loss=2.0):
    return [{"lr": 1e-3, "data_time": 0.01, "loss": loss - 0.1 * i, "time": 0.2, "epoch": epoch,
             "iter": 4 * (epoch - 1) + i, "step": 4 * (epoch - 1) + i} for i in (2, 4)]


def val_line(epoch, **metrics):
    return {**metrics, "data_time": 0.01, "time": 0.1, "step": epoch}


def write_run(path, segments, config="cls_a", seed=0):
    """A work dir at ``path``; ``segments``: ``{timestamp: (scalars lines, seconds the log spans)}``."""
    path.mkdir(parents=True)
    text = "train_cfg = dict(by_epoch=True, max_epochs=2, val_interval=1)\n"
    if seed is not None:
        text += f"randomness = dict(deterministic=False, diff_rank_seed=False, seed={seed})\n"
    if config:
        (path / f"{config}.py").write_text(text)
    for stamp, (lines, seconds) in segments.items():
        (path / stamp / "vis_data").mkdir(parents=True)
        (path / stamp / "vis_data" / "config.py").write_text(text)  # LocalVisBackend's copy
        (path / stamp / "vis_data" / "scalars.json").write_text("".join(json.dumps(r) + "\n" for r in lines))
        day = f"2024/01/{stamp[6:8]}"
        (path / stamp / f"{stamp}.log").write_text(
            f"{day} 10:00:00 - mmengine - INFO - Config:\n(config text, no timestamp)\n"
            f"{day} 10:00:{seconds // 2:02d} - mmengine - INFO - Epoch(train) [1][4/4]  lr: 1.0000e-03  loss: 1.8\n"
            f"{day} 10:{seconds // 60:02d}:{seconds % 60:02d} - mmengine - INFO - Saving checkpoint at 2 epochs\n")
    (path / "epoch_2.pth").write_bytes(b"")
    (path / "last_checkpoint").write_text(str(path / "epoch_2.pth"))
    return path


def simple_run(path, top1, top5=90.0, seconds=10, **kw):
    lines = (train_lines(1) + [val_line(1, top1=top1 - 5, top5=top5 - 5)]
             + train_lines(2) + [val_line(2, top1=top1, top5=top5)])
    return write_run(path, {"20240101_100000": (lines, seconds)}, **kw)


def table_rows(text):
    """``{first cell: cells}`` of the Markdown table's body."""
    rows = [line.strip("|").split(" | ") for line in text.splitlines() if line.startswith("| ")][2:]
    return {cells[0].strip(): [c.strip() for c in cells] for cells in rows}


def run_results(tmp_path, *argv):
    """``tools/results.py ARGV --out tmp_path/results.md``; the Markdown."""
    out = tmp_path / "results.md"
    assert results.main([*map(str, argv), "--out", str(out)]) == 0
    return out.read_text()


# ------------------------------------------------------------------------------------------------
# results.py
# ------------------------------------------------------------------------------------------------
def test_mean_and_sample_std_over_three_seeds(tmp_path):
    top1, top5, seconds = [71.3, 72.95, 70.1], [95.5, 96.0, 94.25], [10, 20, 45]
    for seed in range(3):
        simple_run(tmp_path / "runs" / f"exp_seed{seed}", top1[seed], top5[seed], seconds[seed], seed=seed)
    text = run_results(tmp_path, tmp_path / "runs")
    header, *_ = [line for line in text.splitlines() if line.startswith("| ")]
    assert header == "| config | runs | seeds | top1 | top5 | wall time | source |"
    row = table_rows(text)["cls_a"]
    assert row[1:3] == ["3", "0, 1, 2"]
    assert row[3] == f"{np.mean(top1):.2f} ± {np.std(top1, ddof=1):.2f}"
    assert row[4] == f"{np.mean(top5):.2f} ± {np.std(top5, ddof=1):.2f}"
    assert row[5] == "0:00:25"  # mean of 10, 20 and 45 s
    assert row[6] == "val"


def test_groups_by_config_or_by_name(tmp_path):
    simple_run(tmp_path / "a_seed0", 70.0, seed=0)
    simple_run(tmp_path / "a_seed1", 72.0, seed=1)
    simple_run(tmp_path / "c-s5", 60.0, seed=5)  # the same config under another name
    simple_run(tmp_path / "b-s3", 50.0, config="cls_b", seed=None)  # seed only in the name
    by_config = table_rows(run_results(tmp_path, tmp_path))
    assert list(by_config) == ["cls_a", "cls_b"]
    assert by_config["cls_a"][1:4] == ["3", "0, 1, 5", f"67.33 ± {np.std([70, 72, 60], ddof=1):.2f}"]
    assert by_config["cls_b"][1:4] == ["1", "3", "50.00 ± -"]
    by_name = table_rows(run_results(tmp_path, tmp_path, "--group-by", "name", "--metrics", "top1"))
    assert list(by_name) == ["a", "b", "c"]
    assert by_name["a"][1:4] == ["2", "0, 1", "71.00 ± 1.41"]
    assert by_name["c"][1:4] == ["1", "5", "60.00 ± -"]


def test_output_is_byte_identical_on_rerun(tmp_path):
    for i, top1 in enumerate([70.123, 70.456, 69.789]):
        simple_run(tmp_path / "runs" / f"exp_seed{i}", top1, seed=i)
    simple_run(tmp_path / "runs" / "other", 33.3333, config="cls_b")
    one, two = tmp_path / "one.md", tmp_path / "two.md"
    assert results.main([str(tmp_path / "runs"), "--out", str(one), "--title", "Runs"]) == 0
    names = [str(p) for p in sorted((tmp_path / "runs").iterdir(), reverse=True)]  # another order, a glob too
    assert results.main([*names, str(tmp_path / "runs" / "exp_*"), "--out", str(two), "--title", "Runs"]) == 0
    assert one.read_bytes() == two.read_bytes()
    text = one.read_text()
    assert text.startswith("# Runs\n\n| config |") and str(tmp_path) not in text
    assert "70.12 ± 0.33" in text and "33.33 ± -" in text


def test_resumed_run_takes_the_last_metric_of_its_segments(tmp_path):
    run = tmp_path / "resumed"
    # newest first on disk: the order comes from the timestamps in the names
    write_run(run, {"20240102_090000": (train_lines(2, loss=1.5) + [val_line(2, top1=60.0)], 20),
                    "20240101_100000": (train_lines(1) + [val_line(1, top1=50.0)], 10)})
    work_dir = load_work_dir(run)
    assert [s.name for s in work_dir.segments] == ["20240101_100000", "20240102_090000"]
    assert final_metrics(work_dir) == ({"top1": 60.0}, "val")
    row = table_rows(run_results(tmp_path, run))["cls_a"]
    assert row[3:5] == ["60.00 ± -", "0:00:30"]  # 10 s + 20 s: the pause between segments is not counted

    # the curves continue across segments; validation sits at the iteration that ends its epoch
    assert series(work_dir, "loss")[0] == [2, 4, 6, 8]
    assert series(work_dir, "top1") == ([4, 8], [50.0, 60.0], True)
    assert series(work_dir, "top1", x="epoch")[0] == [1, 2]
    assert series(work_dir, "loss", x="epoch")[0] == [0.5, 1.0, 1.5, 2.0]


def test_metrics_json_of_the_test_tool_is_preferred(tmp_path):
    simple_run(tmp_path / "r_seed0", 70.0)
    (tmp_path / "r_seed0" / "metrics.json").write_text(json.dumps({"top1": 81.25, "top5": 99.0}))
    with open(tmp_path / "r_seed0" / "20240101_100000" / "20240101_100000.log", "a") as log:
        log.write("2024/01/01 10:00:10 - mmengine - INFO - model: params 1,234,567  MACs 8,000\n")
    text = run_results(tmp_path, tmp_path / "r_seed0")
    assert "| config | runs | seeds | top1 | top5 | wall time | params | source |" in text
    assert table_rows(text)["cls_a"][3:] == ["81.25 ± -", "99.00 ± -", "0:00:10", "1,234,567", "metrics.json"]


def test_a_test_run_into_the_same_work_dir_changes_neither_seed_nor_wall_time(tmp_path):
    run = simple_run(tmp_path / "r", 70.0, seconds=10, seed=3)
    # tools/test.py CONFIG CKPT --out r/metrics.json --work-dir r: a segment that did not train,
    # and the top-level dump rewritten with the config's own seed
    seg = run / "20240105_100000"
    (seg / "vis_data").mkdir(parents=True)
    (seg / "vis_data" / "config.py").write_text("randomness = dict(seed=0)\n")
    (run / "cls_a.py").write_text("randomness = dict(seed=0)\n")
    (seg / f"{seg.name}.log").write_text("2024/01/05 10:00:00 - mmengine - INFO - start\n"
                                         "2024/01/05 10:05:00 - mmengine - INFO - Epoch(test) [1/1]  top1: 71.0\n")
    (run / "metrics.json").write_text(json.dumps({"top1": 71.0}))
    row = table_rows(run_results(tmp_path, run))["cls_a"]
    assert row[1:3] == ["1", "3"] and row[3:] == ["71.00 ± -", "0:00:10", "metrics.json"]


def test_iteration_loop_validation_sits_at_the_iteration_it_followed(tmp_path):
    # an iteration loop: no epochs; mmengine writes validation with the epoch counter (0) as its step
    lines = [{"lr": 0.1, "loss": 1.0, "iter": i, "step": i} for i in (10, 20)] + [{"top1": 50.0, "step": 0}]
    lines += [{"lr": 0.1, "loss": 0.5, "iter": i, "step": i} for i in (30, 40)] + [{"top1": 60.0, "step": 0}]
    run = load_work_dir(write_run(tmp_path / "it", {"20240101_100000": (lines, 10)}))
    assert series(run, "top1") == ([20, 40], [50.0, 60.0], True)
    assert series(run, "loss") == ([10, 20, 30, 40], [1.0, 1.0, 0.5, 0.5], False)
    with pytest.raises(InputError, match="iteration-based run.*--x iter"):
        series(run, "loss", x="epoch")


def test_not_a_work_dir_is_a_one_line_error(tmp_path, capsys):
    empty = tmp_path / "empty"
    (empty / "notes").mkdir(parents=True)
    with pytest.raises(SystemExit) as exit_:
        run_tool(lambda: results.main([str(empty)]))
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {empty}: not a work dir")
    assert "<timestamp>/vis_data/scalars.json" in err[0]
    with pytest.raises(InputError, match=r"no-such-dir: no such file or folder"):
        results.main([str(tmp_path / "no-such-dir")])


def test_work_dir_without_metrics_is_an_error_or_skipped(tmp_path, capsys):
    simple_run(tmp_path / "good", 70.0)
    bare = write_run(tmp_path / "bare", {"20240101_100000": (train_lines(1), 5)})
    with pytest.raises(InputError) as info:
        results.main([str(tmp_path)])
    message = str(info.value)
    assert message.startswith(f"{bare}: no validation metrics") and "2 line(s)" in message
    assert "metrics.json" in message

    capsys.readouterr()
    (tmp_path / "scratch").mkdir()
    text = run_results(tmp_path, tmp_path / "good", bare, tmp_path / "scratch", "--skip-incomplete")
    assert list(table_rows(text)) == ["cls_a"] and table_rows(text)["cls_a"][1] == "1"
    err = capsys.readouterr().err
    assert f"warning: skipped {bare}: no validation metrics" in err
    assert f"warning: skipped {tmp_path / 'scratch'}: not a work dir" in err

    with pytest.raises(InputError, match=r"good: no mIoU in the last validation line; it has: top1, top5"):
        results.main([str(tmp_path / "good"), "--metrics", "mIoU"])


# ------------------------------------------------------------------------------------------------
# plot_logs.py and the shared module
# ------------------------------------------------------------------------------------------------
def test_plot_logs_draws_a_png_for_two_runs(tmp_path):
    simple_run(tmp_path / "exp_seed0", 70.0)
    simple_run(tmp_path / "exp_seed1", 72.0, seed=1)
    png = tmp_path / "plots" / "curves.png"
    assert plot_logs.main([str(tmp_path / "exp_seed0"), str(tmp_path / "exp_seed1"), "--keys", "loss", "lr",
                           "top1", "--smooth", "2", "--out", str(png)]) == 0
    data = png.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 1000

    with pytest.raises(InputError, match=r"run exp_seed0 \(.*exp_seed0\) has no key mIoU; "
                                         r"its keys: data_time, loss, lr, time, top1, top5"):
        plot_logs.main([str(tmp_path / "exp_seed0"), "--keys", "loss", "mIoU", "--out", str(png)])


def test_moving_average_matches_numpy():
    ys = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0]
    n = 3
    full = np.convolve(ys, np.ones(n) / n, mode="valid")  # windows that are complete
    np.testing.assert_allclose(plot_logs.moving_average(ys, n)[n - 1:], full)
    assert plot_logs.moving_average(ys, n)[:2] == [3.0, 2.0]  # shorter windows at the start
    assert plot_logs.moving_average(ys, 1) == ys


def test_logs_module_imports_no_plotting_library_at_module_level():
    tree = ast.parse((ROOT / "tasks" / "logs.py").read_text())
    imported = [alias.name for node in tree.body if isinstance(node, ast.Import) for alias in node.names]
    imported += [node.module for node in tree.body if isinstance(node, ast.ImportFrom)]
    assert not [m for m in imported if m.split(".")[0] in ("matplotlib", "torch", "mmengine")], imported


# ------------------------------------------------------------------------------------------------
# a real work dir
# ------------------------------------------------------------------------------------------------
def test_a_real_tiny_training_run(tmp_path):
    work_dir = tmp_path / "tiny_seed0"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "train.py"), str(CONFIG), "--work-dir", str(work_dir),
         "--cfg-options", "train_cfg.max_epochs=1", "train_dataloader.dataset.limit=32",
         "val_dataloader.dataset.limit=32"],
        capture_output=True, text=True, timeout=180, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]

    [run] = find_work_dirs([tmp_path])
    metrics, source = final_metrics(run)
    assert source == "val" and set(metrics) == {"top1", "top5"} and 0.0 <= metrics["top1"] <= 100.0
    row = table_rows(run_results(tmp_path, tmp_path))["tiny_fashion_mnist"]
    assert row[1:4] == ["1", "0", f"{metrics['top1']:.2f} ± -"]
    assert row[5] != "-"  # a wall time from the text log
    assert series(run, "top1") == ([2], [metrics["top1"]], True)  # 32 images / batch 16: epoch 1 ends at iteration 2

    png = tmp_path / "curves.png"
    assert plot_logs.main([str(work_dir), "--keys", "loss", "top1", "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == PNG_MAGIC

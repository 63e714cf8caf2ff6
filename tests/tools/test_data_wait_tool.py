"""tools/data_wait.py on work dirs written by hand (scalars.json lines of a training run)."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from glocal.core.errors import InputError
from glocal.tasks.logs import load_work_dir

ROOT = Path(__file__).resolve().parents[2]


def _tool():
    spec = importlib.util.spec_from_file_location("glocal_data_wait_tool", ROOT / "tools" / "data_wait.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


data_wait = _tool()


def write_run(path: Path, segments: dict[str, list[dict]]) -> Path:
    for stamp, lines in segments.items():
        (path / stamp / "vis_data").mkdir(parents=True)
        (path / stamp / "vis_data" / "scalars.json").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return path


def train(step, data_time, time):
    return {"lr": 1e-3, "data_time": data_time, "loss": 1.0, "time": time, "epoch": 1, "iter": step, "step": step}


def test_mean_share_of_data_time_per_logged_line(tmp_path):
    lines = [train(10, 0.1, 1.0), train(20, 0.2, 1.0), train(30, 0.3, 0.5),
             {"top1": 50.0, "data_time": 0.9, "time": 1.0, "step": 1}]  # validation: not counted
    run = write_run(tmp_path / "speech_run", {"20240101_100000": lines})
    r = data_wait.data_wait(load_work_dir(run))
    assert r.lines == 3
    assert r.share == pytest.approx((0.1 + 0.2 + 0.6) / 3)
    assert r.median == pytest.approx(0.2)
    assert r.data_time == pytest.approx(0.2) and r.time == pytest.approx(2.5 / 3)
    assert data_wait.data_wait(load_work_dir(run), skip=1).share == pytest.approx(0.4)


def test_resumed_run_counts_a_repeated_step_once_and_the_table(tmp_path, capsys):
    run = write_run(tmp_path / "resumed", {"20240101_100000": [train(10, 0.5, 1.0), train(20, 0.5, 1.0)],
                                           "20240102_100000": [train(20, 0.1, 1.0), train(30, 0.1, 1.0)]})
    other = write_run(tmp_path / "other", {"20240101_100000": [train(10, 0.05, 0.5)]})
    r = data_wait.data_wait(load_work_dir(run))
    assert r.lines == 3 and r.share == pytest.approx((0.5 + 0.1 + 0.1) / 3)
    assert data_wait.main([str(tmp_path)]) == 0
    text = capsys.readouterr().out
    body = [line for line in text.splitlines() if line.startswith("| ")][2:]
    assert [line.split(" | ")[0] for line in body] == ["| other", "| resumed"]
    assert "| 1 | 10.0% | 10.0% | 0.0500 | 0.5000 |" in body[0] and "| 3 | 23.3% |" in body[1]
    out = tmp_path / "wait.md"
    assert data_wait.main([str(other), "--out", str(out)]) == 0 and "10.0%" in out.read_text()


def test_a_run_without_timings_names_itself(tmp_path):
    run = write_run(tmp_path / "no_times", {"20240101_100000": [{"lr": 1e-3, "loss": 1.0, "step": 1}]})
    with pytest.raises(InputError, match=r"no_times: no training line with data_time and time .*have: loss, lr, step"):
        data_wait.data_wait(load_work_dir(run))

"""Every bad file and config the reliability issue listed gets glocal's own one-line error and a
non-zero exit, at every entry point: tools/train.py (--resume PATH, auto-resume, load_from, the
seed probe), tools/test.py, tools/export.py and the Python API."""
from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

import pytest
import torch

from glocal.tasks.checkpoint import CheckpointError, commit_checkpoint, latest_checkpoint, load_weights
from glocal.tasks.engine import build_model, load_config, run_tool

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "tests" / "tasks" / "configs" / "tiny_fashion_mnist.py"


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """One thread (conftest's one_thread)."""


@pytest.fixture(autouse=True)
def _fresh_loggers():
    """Each tool run in-process gets new mmengine loggers (old ones hold closed capture streams)."""
    from mmengine.logging import MMLogger
    yield
    for logger in MMLogger._instance_dict.values():
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
            handler.close()
    MMLogger._instance_dict.clear()


def _tool(name):
    spec = importlib.util.spec_from_file_location(f"glocal_tool_{name}_bad", ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(capsys, name, *argv):
    tool = _tool(name)
    with pytest.raises(SystemExit) as exit_:
        run_tool(lambda: tool.main([str(a) for a in argv]))
    err = capsys.readouterr().err
    return exit_.value.code, err


class Payload:
    """Unpickling this runs a shell command: what a malicious checkpoint does."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A good checkpoint of the tiny model, and bad ones: truncated, malicious, another model's,
    garbage, a .part file."""
    d = tmp_path_factory.mktemp("ckpts")
    model = build_model(load_config(CONFIG))
    good = {"meta": {"epoch": 1, "iter": 8, "seed": 0}, "state_dict": model.state_dict()}
    torch.save(good, d / "good.pth")
    blob = (d / "good.pth").read_bytes()
    (d / "truncated.pth").write_bytes(blob[: len(blob) // 2])
    torch.save({"meta": {}, "state_dict": model.state_dict(), "evil": Payload(d / "PWNED")}, d / "malicious.pth")
    other = load_config(CONFIG)
    other.model.head.num_classes = 7
    other.model.backbone.stages[1].dim = 64
    torch.save({"meta": {"epoch": 1, "iter": 8}, "state_dict": build_model(other).state_dict()}, d / "other.pth")
    (d / "garbage.pth").write_bytes(b"this is not a checkpoint\n" * 10)
    (d / "epoch_3.pth.part").write_bytes(blob[:100])
    return d


EXPECT = {
    "missing.pth": r"checkpoint \S*missing\.pth does not exist",
    "truncated.pth": r"checkpoint \S*truncated\.pth is incomplete \(\d+ bytes; cut short while being written or "
                     r"copied\).*use an older checkpoint",
    "malicious.pth": r"refused to load \S*malicious\.pth: it asks to import posix\.system while unpickling, which "
                     r"could run code\. Nothing from it was executed",
    "other.pth": r"weights in \S*other\.pth do not fit TaskModel \(a checkpoint of another model or config\?\): "
                 r"shape mismatches: backbone\.\S+: checkpoint \(64,?.*\) vs model \(96,?.*\)",
    "garbage.pth": r"\S*garbage\.pth is not a torch checkpoint glocal can read",
    "epoch_3.pth.part": r"is a checkpoint that was still being written \(a crash during the save\)",
}


def _check(code, err, name, files):
    assert code == 2, err
    assert err.startswith("error: ") and "Traceback" not in err, err
    assert re.search(EXPECT[name], err), err
    assert not (files / "PWNED").exists(), "the malicious checkpoint ran code"


@pytest.mark.parametrize("name", sorted(EXPECT))
@pytest.mark.parametrize("entry", ["train --resume", "train load_from", "train seed probe", "test", "export"])
def test_bad_checkpoints_get_glocal_errors_at_every_entry_point(capsys, tmp_path, files, name, entry):
    path = files / name
    work = ["--work-dir", tmp_path / "work"]
    if entry == "train --resume":
        code, err = _run(capsys, "train", CONFIG, *work, "--resume", path)
    elif entry == "train load_from":
        code, err = _run(capsys, "train", CONFIG, *work, "--cfg-options", f"load_from={path}")
    elif entry == "train seed probe":  # a config without a seed resumes with the checkpoint's
        code, err = _run(capsys, "train", CONFIG, *work, "--resume", path, "--cfg-options", "randomness.seed=None")
    elif entry == "test":
        code, err = _run(capsys, "test", CONFIG, path, *work)
    else:
        code, err = _run(capsys, "export", CONFIG, path, "--out", tmp_path / "w.safetensors")
    _check(code, err, name, files)
    assert not (tmp_path / "work" / "epoch_1.pth").exists()  # nothing trained


def test_the_api_loader_refuses_the_same_files(files):
    model = build_model(load_config(CONFIG))
    for name in EXPECT:
        with pytest.raises(CheckpointError, match=EXPECT[name]):
            load_weights(model, files / name)
    assert not (files / "PWNED").exists()


def test_a_changed_checkpoint_fails_its_checksum_and_auto_resume_passes_over_it(tmp_path, files):
    blob = (files / "good.pth").read_bytes()
    for step in (1, 2):
        (tmp_path / f"epoch_{step}.pth.part").write_bytes(blob)
        commit_checkpoint(tmp_path / f"epoch_{step}.pth.part", tmp_path / f"epoch_{step}.pth")
    (tmp_path / "last_checkpoint").write_text(str(tmp_path / "epoch_2.pth"))
    assert latest_checkpoint(tmp_path) == tmp_path / "epoch_2.pth"
    damaged = bytearray(blob)
    damaged[len(damaged) // 2] ^= 0xFF
    (tmp_path / "epoch_2.pth").write_bytes(bytes(damaged))
    with pytest.raises(CheckpointError, match=r"epoch_2\.pth does not match its checksum"):
        load_weights(build_model(load_config(CONFIG)), tmp_path / "epoch_2.pth")
    assert latest_checkpoint(tmp_path) == tmp_path / "epoch_1.pth"
    (tmp_path / "epoch_1.pth").unlink()  # last_checkpoint names a deleted file, the other is damaged
    assert latest_checkpoint(tmp_path) is None


CONFIG_CASES = {
    "train_cfgs = dict(max_epochs=1)": r"top-level key 'train_cfgs' is not read by glocal; did you mean: train_cfg\?",
    "optim_wraper = dict(optimizer=dict(type='SGD', lr=0.1))":
        r"top-level key 'optim_wraper' is not read by glocal; did you mean: optim_wrapper\?",
    "default_hook = dict(logger=dict(type='LoggerHook', interval=1))":
        r"top-level key 'default_hook' is not read by glocal; did you mean: default_hooks\?",
    "train_cfg = 3": r"train_cfg: expected a dict\(\.\.\.\); got int 3",
    "model = dict(type='Classifier'": r"bad\.py, line \d+: syntax error: .*\n    model = dict\(type='Classifier'",
    "x = undefined_name + 1": r"config file \S*bad\.py failed while running: NameError: name 'undefined_name'",
}


@pytest.mark.parametrize("line", sorted(CONFIG_CASES))
def test_config_file_mistakes(capsys, tmp_path, line):
    bad = tmp_path / "bad.py"
    bad.write_text(f"_base_ = [{str(CONFIG)!r}]\n{line}\n")
    code, err = _run(capsys, "train", bad, "--work-dir", tmp_path / "work")
    assert code == 2 and "Traceback" not in err, err
    assert re.search(CONFIG_CASES[line], err), err
    assert not (tmp_path / "work").exists()  # rejected before anything was built


@pytest.mark.parametrize("option, expected", [
    ("train_dataloader.batch_size=abc", r"train_dataloader\.batch_size: expected an integer; got str 'abc'"),
    ("train_dataloader.batch_size=0", r"train_dataloader\.batch_size: must be at least 1; got 0"),
    ("train_dataloader.num_workers=1.5", r"train_dataloader\.num_workers: expected an integer; got float 1\.5"),
    ("optim_wrapper.optimizer.lr=abc", r"optim_wrapper\.optimizer\.lr: expected a number; got str 'abc'"),
    ("train_cfg.max_epochs=two", r"train_cfg\.max_epochs: expected an integer; got str 'two'"),
    ("model.head.num_classes=ten", r"model\.head\.num_classes: expected an integer; got str 'ten'"),
    ("model.backbone.drop_path_rate=high", r"model\.backbone\.drop_path_rate: expected a number; got str 'high'"),
])
def test_wrong_value_types_name_the_key(capsys, tmp_path, option, expected):
    code, err = _run(capsys, "train", CONFIG, "--work-dir", tmp_path / "work", "--cfg-options", option)
    assert code == 2 and "Traceback" not in err, err
    assert re.search(expected, err), err
    assert not (tmp_path / "work").exists()


def test_resume_with_a_changed_lr_uses_the_config_and_says_so(tmp_path, capsys):
    from glocal.tasks.engine import build_runner
    cfg = load_config(CONFIG)
    cfg.work_dir, cfg.train_cfg.max_epochs = str(tmp_path), 1
    build_runner(cfg).train()
    old_lr = torch.load(tmp_path / "epoch_1.pth", weights_only=True)["optimizer"]["param_groups"][0]["lr"]
    cfg = load_config(CONFIG)
    cfg.work_dir, cfg.train_cfg.max_epochs, cfg.resume = str(tmp_path), 2, True
    cfg.optim_wrapper.optimizer.lr = 1e-3  # half of the 2e-3 the checkpoint ran with
    runner = build_runner(cfg)
    seen = []

    from mmengine.hooks import Hook

    class Lr(Hook):
        def before_train_iter(self, runner, batch_idx, data_batch=None):
            seen.append(runner.optim_wrapper.optimizer.param_groups[0]["lr"])

    runner.register_hook(Lr(), "LOWEST")
    runner.train()
    logs = "".join(p.read_text() for p in tmp_path.glob("*/*.log"))
    assert re.search(r"resume: optimizer group 0 lr is 0\.001 in the config and 0\.002 in \S+epoch_1\.pth; using "
                     r"the config's \(current lr \S+ -> \S+\)", logs), logs[-3000:]
    assert seen[0] == pytest.approx(old_lr / 2, rel=1e-6)

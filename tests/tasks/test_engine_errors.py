"""Bad configs get glocal's clear errors, and the tools print them without a traceback."""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from glocal.core.errors import ConfigError, DatasetNotFoundError
from glocal.tasks.engine import apply_cfg_options, build_runner, load_config, run_tool, validate_config

ROOT = Path(__file__).resolve().parents[2]
CONFIG = Path(__file__).parent / "configs" / "tiny_fashion_mnist.py"


def _train_tool():
    spec = importlib.util.spec_from_file_location("glocal_tool_train_errors", ROOT / "tools" / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cli(capsys, *options):
    """tools/train.py's main under run_tool, as ``python tools/train.py`` runs it."""
    train = _train_tool()
    with pytest.raises(SystemExit) as exit_:
        run_tool(lambda: train.main([str(CONFIG), "--work-dir", "/nonexistent/never-created",
                                     "--cfg-options", *options]))
    err = capsys.readouterr().err
    return exit_.value.code, err


@pytest.mark.parametrize("option, expected", [
    ("model.type=Clasifier", r"model: unknown model type='Clasifier'; did you mean: Classifier"),
    ("model.backbone.stages.1.blocks.global_.type=FullAtention",
     r"model\.backbone\.stages\[1\]\.blocks\.global_: unknown type='FullAtention'.*did you mean: FullAttention"),
    ("train_dataloader.dataset.type=FashonMNIST", r"unknown dataset type='FashonMNIST'; did you mean: FashionMNIST"),
    ("train_dataloader.dataset.transforms.0.type=RandomCorp", r"unknown transform type='RandomCorp'.*RandomCrop"),
    ("val_evaluator.type=Acuracy", r"unknown metric type='Acuracy'; did you mean: Accuracy"),
    ("optim_wrapper.optimizer.type=AdamWW", r"unknown optimizer type='AdamWW'; did you mean: AdamW"),
    ("param_scheduler.1.type=CosineAnealingLR", r"did you mean: CosineAnnealingLR"),
    ("default_hooks.logger.type=LogerHook", r"unknown hook type='LogerHook'; did you mean: LoggerHook"),
])
def test_unknown_types_list_close_names(capsys, option, expected):
    code, err = _cli(capsys, option)
    assert code == 2
    assert err.startswith("error: ") and "Traceback" not in err
    assert re.search(expected, err), err


@pytest.mark.parametrize("option, expected", [
    ("train_cfg.max_epoch=3", r"no key 'max_epoch' under train_cfg; did you mean: max_epochs"),
    ("model.backbone.drop_path_rat=0.1", r"no key 'drop_path_rat' under model\.backbone; did you mean: drop_path_rate"),
    ("optim_wrapper.optimizer.weight_decy=0.1", r"did you mean: weight_decay"),
    ("train_dataloader.batch_sise=4", r"no key 'batch_sise' under train_dataloader; did you mean: batch_size"),
    ("model.backbone.stages.7.dim=3", r"model\.backbone\.stages is a list of 2"),
])
def test_unknown_cfg_options_keys_name_the_key_and_close_names(capsys, option, expected):
    code, err = _cli(capsys, option)
    assert code == 2
    assert re.search(expected, err), err


def test_unknown_keys_in_the_config_itself():
    cfg = load_config(CONFIG)
    cfg.model.head.dropp = 0.1  # written into the config, not via --cfg-options
    with pytest.raises(ConfigError, match=r"no argument 'dropp'; did you mean: drop"):
        build_runner(cfg)
    cfg = load_config(CONFIG)
    cfg.default_hooks.checkpoint.intervall = 2
    with pytest.raises(ConfigError, match=r"default_hooks\.checkpoint: CheckpointHook has no key 'intervall'"):
        validate_config(cfg)
    cfg = load_config(CONFIG)
    cfg.train_dataloader.sampler = dict(type="InfiniteSampler")
    with pytest.raises(ConfigError, match="SeededSampler"):
        validate_config(cfg)
    cfg = load_config(CONFIG)
    cfg.val_cfg = None
    with pytest.raises(ConfigError, match="val_dataloader, val_cfg and val_evaluator go together"):
        validate_config(cfg)


def test_a_family_argument_the_config_leaves_out_is_accepted_and_a_typo_is_not():
    cfg = load_config(CONFIG)
    cfg.model.backbone = dict(type="swin_t")
    apply_cfg_options(cfg, {"model.backbone.depths": [1, 1, 1, 1]})  # a SwinConfig field
    with pytest.raises(ConfigError, match=r"'dpeths'.*did you mean: depths"):
        apply_cfg_options(cfg, {"model.backbone.dpeths": [1, 1, 1, 1]})


def test_missing_dataset_names_the_debian_package_from_the_command_line(tmp_path):
    """A real ``python tools/train.py`` process: one line on stderr, exit code 2, no traceback."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "train.py"), str(CONFIG), "--work-dir", str(tmp_path),
         "--cfg-options", f"train_dataloader.dataset.root={tmp_path / 'no-such-folder'}"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "apt-get install dataset-fashion-mnist" in lines[0]


def test_missing_dataset_is_a_dataset_error_in_process(tmp_path):
    cfg = load_config(CONFIG)
    cfg.work_dir = str(tmp_path)
    cfg.train_dataloader.dataset.root = str(tmp_path / "nothing-here")
    with pytest.raises(DatasetNotFoundError, match="dataset-fashion-mnist"):
        build_runner(cfg)

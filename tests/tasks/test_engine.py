"""The engine's pieces: key sampler, checkpoint encoding, config resolution, AMP on CPU, and the
test / export / print_config tools (called in-process)."""
from __future__ import annotations

import collections
import importlib.util
import io
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer
from torch import nn

from glocal.core.errors import ConfigError
from glocal.tasks.checkpoint import (CheckpointError, decode_state, encode_state, load_weights, parameter_digest,
                                     save_safetensors)
from glocal.tasks.engine import (AmpOptimWrapper, SeededSampler, apply_cfg_options, build_model, build_runner,
                                 load_config, sample_seeds, validate_config)

ROOT = Path(__file__).resolve().parents[2]
CONFIG = Path(__file__).parent / "configs" / "tiny_fashion_mnist.py"


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test here runs on one thread (conftest's one_thread)."""


def _tool(name):
    spec = importlib.util.spec_from_file_location(f"glocal_tool_{name}", ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------------------------------------
# sampler
# ------------------------------------------------------------------------------------------------
class _Range(torch.utils.data.Dataset):
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n


def test_key_sampler_yields_index_seed_pairs_split_across_ranks(monkeypatch):
    ranks = []
    for rank in (0, 1):
        monkeypatch.setattr("mmengine.dataset.sampler.get_dist_info", lambda rank=rank: (rank, 2))
        sampler = SeededSampler(_Range(10), shuffle=True, seed=3)
        sampler.set_epoch(1)
        ranks.append(list(sampler))
    indices = sorted(i for keys in ranks for i, _ in keys)
    assert indices == list(range(10))  # the two ranks partition the data (DefaultSampler's split)
    seeds = {i: s for keys in ranks for i, s in keys}
    assert all(isinstance(s, int) and s >= 0 for s in seeds.values())
    assert len(set(seeds.values())) == 10
    # a seed depends on (seed, epoch, index) only: not on the rank or the order
    assert seeds[4] == int(sample_seeds(3, 1, [4])[0])
    assert sample_seeds(3, 2, [4])[0] != seeds[4] and sample_seeds(4, 1, [4])[0] != seeds[4]


def test_key_sampler_epochs_and_skip():
    sampler = SeededSampler(_Range(8), shuffle=True, seed=0)
    epoch0 = list(sampler)
    sampler.set_epoch(1)
    epoch1 = list(sampler)
    assert [i for i, _ in epoch0] != [i for i, _ in epoch1]  # reshuffled
    assert {s for _, s in epoch0}.isdisjoint({s for _, s in epoch1})  # fresh augmentation
    sampler.skip_next(5)
    assert list(sampler) == epoch1[5:]
    assert list(sampler) == epoch1  # the skip applies once


# ------------------------------------------------------------------------------------------------
# checkpoint encoding
# ------------------------------------------------------------------------------------------------
def test_encode_decode_round_trip_loads_with_weights_only():
    buf = HistoryBuffer([1.5, 2.5], [1, 1])
    state = {
        "buf": buf, "np": np.arange(6, dtype=np.uint32).reshape(2, 3), "scalar": np.float64(0.25),
        "int": np.int64(7), "counter": collections.Counter({3: 1, 6: 2}), "set": {1, 2},
        "od": collections.OrderedDict(a=torch.ones(2)), "tuple_keys": {(1, 2): "x"},
        "rng": np.random.get_state(), "nested": [{"t": torch.zeros(1)}, (1, "a", None)],
    }
    raw = io.BytesIO()
    torch.save(state, raw)
    raw.seek(0)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(raw)  # what mmengine would write: refused under weights_only=True
    safe = io.BytesIO()
    torch.save(encode_state(state), safe)
    safe.seek(0)
    back = decode_state(torch.load(safe))
    assert isinstance(back["buf"], HistoryBuffer)
    np.testing.assert_array_equal(back["buf"].data[0], buf.data[0])
    assert back["buf"].data[0].dtype == buf.data[0].dtype and back["buf"].max_length == buf.max_length
    assert back["np"].dtype == np.uint32 and (back["np"] == state["np"]).all()
    assert type(back["scalar"]) is np.float64 and back["scalar"] == 0.25 and type(back["int"]) is np.int64
    assert back["counter"] == state["counter"] and isinstance(back["counter"], collections.Counter)
    assert back["set"] == {1, 2} and back["tuple_keys"] == {(1, 2): "x"}
    assert isinstance(back["od"], collections.OrderedDict) and torch.equal(back["od"]["a"], torch.ones(2))
    np.random.set_state(back["rng"])  # a usable numpy RNG state
    assert back["nested"][1] == (1, "a", None)


def test_encode_refuses_unknown_objects_with_the_path():
    with pytest.raises(CheckpointError, match=r"checkpoint\.meta\.thing.*object"):
        encode_state({"meta": {"thing": object()}})


# ------------------------------------------------------------------------------------------------
# config resolution
# ------------------------------------------------------------------------------------------------
def test_cfg_options_accept_existing_keys_and_component_arguments():
    cfg = load_config(CONFIG)
    apply_cfg_options(cfg, {"train_cfg.max_epochs": 5, "model.backbone.out_norm": None,
                            "model.head.pre_logits": 32, "auto_scale_lr": dict(enable=False, base_batch_size=16)})
    assert cfg.train_cfg.max_epochs == 5 and cfg.model.head.pre_logits == 32
    with pytest.raises(ConfigError, match="max_epochs"):
        apply_cfg_options(cfg, {"train_cfg.max_epoch": 3})
    with pytest.raises(ConfigError, match="'nope'.*model.head"):
        apply_cfg_options(cfg, {"model.head.nope": 3})


def test_cfg_options_accept_every_data_loader_key():
    """A loader key the config leaves out (mmengine's persistent_workers, pin_memory) can be set
    from the command line, as validate_config accepts it; an unknown one is refused."""
    cfg = apply_cfg_options(load_config(CONFIG), {"train_dataloader.num_workers": 1,
                                                  "train_dataloader.persistent_workers": True})
    assert cfg.train_dataloader.persistent_workers is True
    validate_config(cfg)
    with pytest.raises(ConfigError, match="persistent_worker"):
        apply_cfg_options(cfg, {"train_dataloader.persistent_worker": True})


def test_cfg_options_switch_to_an_iteration_loop(tmp_path):
    from glocal.tasks.engine import IterBasedTrainLoop
    cfg = apply_cfg_options(load_config(CONFIG), {"train_cfg.by_epoch": False, "train_cfg.max_iters": 3,
                                                  "work_dir": str(tmp_path), "experiment_name": "switch"})
    runner = build_runner(cfg)
    runner._train_loop = runner.build_train_loop(runner._train_loop)
    assert isinstance(runner.train_loop, IterBasedTrainLoop) and runner.train_loop.max_iters == 3
    dumped = load_config(tmp_path / "tiny_fashion_mnist.py")
    assert dumped.default_hooks.checkpoint.by_epoch is False and dumped.log_processor.by_epoch is False


def test_runner_resolves_and_dumps_the_config(tmp_path):
    cfg = load_config(CONFIG)
    cfg.work_dir, cfg.experiment_name = str(tmp_path), "dump"
    cfg.train_cfg = dict(by_epoch=True, max_epochs=3)
    cfg.param_scheduler = [dict(type="CosineAnnealingLR", by_epoch=True),
                           dict(type="LinearLR", by_epoch=False, start_factor=0.5)]
    runner = build_runner(cfg)
    dumped = load_config(tmp_path / "tiny_fashion_mnist.py")
    assert [s["end"] for s in dumped.param_scheduler] == [3, 3 * 8]  # epochs; iterations (8 per epoch)
    assert dumped.default_hooks.checkpoint.by_epoch is True and dumped.log_processor.by_epoch is True
    assert dumped.env_cfg.dist_cfg.backend == ("nccl" if torch.cuda.is_available() else "gloo")
    assert dumped.randomness.seed == 0
    loader = runner.train_dataloader
    assert isinstance(loader.sampler, SeededSampler) and loader.generator is not None
    state = torch.get_rng_state()
    iter(loader)
    assert torch.equal(state, torch.get_rng_state())  # creating an iterator leaves torch's RNG alone


# ------------------------------------------------------------------------------------------------
# AMP on CPU, TensorBoard
# ------------------------------------------------------------------------------------------------
def test_amp_trains_on_cpu_in_bfloat16_and_logs_tensorboard(tmp_path, monkeypatch):
    from glocal.tasks import engine
    runners, dtypes = [], []

    def build_and_watch(cfg, **kw):  # tools/train.py --amp, with a look at the head's output dtype
        runner = real_build(cfg, **kw)
        runner.model.head.fc.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
        runners.append(runner)
        return runner

    real_build = engine.build_runner
    monkeypatch.setattr(engine, "build_runner", build_and_watch)
    argv = [str(CONFIG), "--work-dir", str(tmp_path), "--amp", "--cfg-options", "train_cfg.max_epochs=1",
            "train_dataloader.dataset.limit=32", "val_dataloader.dataset.limit=32", "experiment_name=amp",
            "visualizer.vis_backends.0.type=TensorboardVisBackend"]
    assert _tool("train").main(argv) == 0
    runner = runners[0]
    assert isinstance(runner.optim_wrapper, AmpOptimWrapper)
    assert dtypes[:2] == [torch.bfloat16, torch.bfloat16]  # two training steps under autocast
    assert dtypes[2] == torch.float32  # validation runs without it
    assert all(p.dtype == torch.float32 for p in runner.model.parameters())  # fp32 master weights
    assert np.isfinite(runner.message_hub.get_scalar("train/loss").data[0]).all()
    assert list(tmp_path.glob("*/vis_data/events.out.tfevents.*")), "no TensorBoard events written"
    assert list(tmp_path.glob("*/*.log")), "no text log written"

    # `--resume` without a path continues from the latest checkpoint in the work dir (AMP state too)
    argv[argv.index("train_cfg.max_epochs=1")] = "train_cfg.max_epochs=2"
    argv[argv.index("experiment_name=amp")] = "experiment_name=amp_resumed"
    assert _tool("train").main(argv + ["--resume", "--seed", "0"]) == 0
    resumed = runners[1]
    assert resumed.iter == 4 and len(resumed.message_hub.get_scalar("train/loss").data[0]) == 4
    assert (tmp_path / "epoch_2.pth").is_file()


# ------------------------------------------------------------------------------------------------
# export / load_weights / test tool
# ------------------------------------------------------------------------------------------------
class _Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(4, 6, bias=False)
        self.out = nn.Linear(4, 6, bias=False)
        self.out.weight = self.embed.weight  # shared tensor
        self.register_buffer("scale", torch.tensor(2.0))

    def forward(self, x):
        return self.out(x) * self.scale + self.embed(x)


def test_safetensors_round_trip_with_shared_tensors(tmp_path):
    src, dst = _Tied(), _Tied()
    save_safetensors(src, tmp_path / "tied.safetensors")
    load_weights(dst, tmp_path / "tied.safetensors")
    x = torch.randn(3, 4)
    assert torch.equal(src(x), dst(x)) and dst.out.weight is dst.embed.weight


def test_load_weights_lists_missing_and_unexpected_keys(tmp_path):
    torch.save({"state_dict": {"embed.weight": torch.zeros(6, 4), "extra.bias": torch.zeros(1)}},
               tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match=r"missing keys: .*scale.*unexpected keys: extra\.bias"):
        load_weights(_Tied(), tmp_path / "bad.pth")
    torch.save({"embed.weight": torch.zeros(5, 4), "out.weight": torch.zeros(6, 4), "scale": torch.ones(())},
               tmp_path / "shape.pth")
    with pytest.raises(CheckpointError, match=r"embed\.weight: checkpoint \(5, 4\) vs model \(6, 4\)"):
        load_weights(_Tied(), tmp_path / "shape.pth")


def test_export_and_test_tools_round_trip(tmp_path, capsys):
    cfg = load_config(CONFIG)
    cfg.work_dir, cfg.experiment_name = str(tmp_path), "export"
    cfg.train_cfg = dict(by_epoch=False, max_iters=2, val_interval=100)
    cfg.default_hooks.checkpoint.interval = 2
    trained = build_runner(cfg)
    trained.train()
    ckpt = tmp_path / "iter_2.pth"
    out = tmp_path / "export" / "model.safetensors"
    assert _tool("export").main([str(CONFIG), str(ckpt), "--out", str(out)]) == 0
    assert out.is_file() and out.with_suffix(".py").is_file()
    assert load_config(out.with_suffix(".py")).model.type == "Classifier"

    model = load_weights(build_model(load_config(out.with_suffix(".py"))), out).eval()
    reference = trained.model.eval()
    x = torch.randint(0, 255, (4, 1, 28, 28), dtype=torch.uint8)
    data = dict(inputs=x, data_samples=dict(label=torch.arange(4)))
    with torch.no_grad():
        a = reference(**reference.data_preprocessor(data), mode="predict")
        b = model(**model.data_preprocessor(data), mode="predict")
    assert all(torch.equal(p["pred_scores"], q["pred_scores"]) for p, q in zip(a, b))
    assert parameter_digest(model) == parameter_digest(reference)

    test = _tool("test")
    metrics = []
    for weights in (ckpt, out):
        capsys.readouterr()
        json_path = tmp_path / f"metrics_{weights.suffix[1:]}.json"
        argv = [str(CONFIG), str(weights), "--out", str(json_path), "--work-dir", str(tmp_path / "test"),
                "--cfg-options", f"experiment_name=test_{weights.suffix[1:]}"]
        assert test.main(argv) == 0
        assert '"top1":' in capsys.readouterr().out  # printed, and written as JSON
        metrics.append(json.loads(json_path.read_text()))
    assert metrics[0] == metrics[1] and set(metrics[0]) == {"top1", "top5"}
    assert 0.0 <= metrics[0]["top1"] <= 100.0


def test_print_config_shows_the_resolved_config(capsys):
    assert _tool("print_config").main([str(CONFIG), "--cfg-options", "train_cfg.max_epochs=7"]) == 0
    text = capsys.readouterr().out
    assert "max_epochs=7" in text and "end=7" in text and "type='Classifier'" in text
    assert "work_dir = 'work_dirs/tiny_fashion_mnist'" in text  # the default work dir

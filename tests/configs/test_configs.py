"""Every shipped config loads, validates and builds; the published models match their reference
parameter counts and run a forward pass."""
from pathlib import Path

import pytest
import torch

from glocal.core.tokens import Tokens
from glocal.tasks.engine import build_model, load_config, validate_config

CONFIGS = sorted((Path(__file__).parents[2] / "configs").rglob("*.py"))
CONFIGS = [p for p in CONFIGS if "_base_" not in p.parts]

# whole classifier (stem + backbone + 1000-way head): (reference count, relative tolerance)
PUBLISHED = {
    "swin_t_in1k": (28_288_354, 0.01),  # timm swin_tiny_patch4_window7_224
    "maxvit_t_in1k": (30_916_528, 0.01),  # timm maxvit_tiny_tf_224
    "nat_mini_in1k": (20e6, 0.05),  # NAT paper: 20 M
    "dinat_mini_in1k": (20e6, 0.05),  # DiNAT paper: 20 M
    "vim_ti_in1k": (7e6, 0.10),  # Vim paper: 7 M
    "vmamba_t_in1k": (22e6, 0.10),  # VMamba paper: 22 M
    # GraphGPS's ZINC model: 423,717 (reference config); the QM9 stand-in's RDKit atom/bond tables
    # add 6K (tests/graph/test_gps_configs.py checks the ZINC encoders' count within 0.5%)
    "gps_zinc": (423_717, 0.02),
}


def test_every_published_model_has_a_config():
    assert set(PUBLISHED) <= {p.stem for p in CONFIGS}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_builds_and_runs(path):
    cfg = load_config(path)
    validate_config(cfg)
    model = build_model(cfg).eval()
    n = sum(p.numel() for p in model.parameters())
    if path.stem in PUBLISHED:
        ref, tol = PUBLISHED[path.stem]
        assert abs(n - ref) / ref <= tol, f"{path.stem}: {n:,} parameters, reference {ref:,.0f}"
    if "graph" in path.parts:  # graph models run on graph batches: tests/graph/test_gps_configs.py
        return
    if "audio" in path.parts:  # filterbank features [B, T, 80], ragged
        batch = dict(inputs=torch.randn(2, 120, 80), lengths=torch.tensor([120, 70]),
                     data_samples=dict(label=torch.tensor([0, 1])))
        with torch.no_grad():
            out = model(**model.data_preprocessor(batch), mode="tensor")
        out = out.x[out.mask] if isinstance(out, Tokens) else out  # CTC: per-token logits of valid tokens
        assert out.shape[-1] == model.head.num_classes and torch.isfinite(out).all()
        return
    if "points" in path.parts:  # ragged clouds: per-point features, positions, mask
        in_dim = model.adapter.in_dim
        mask = torch.arange(300)[None] < torch.tensor([[300], [180]])
        batch = dict(inputs=torch.randn(2, 300, in_dim), pos=torch.rand(2, 300, 3), mask=mask,
                     data_samples=dict(label=torch.tensor([0, 1])))
        with torch.no_grad():
            out = model(**model.data_preprocessor(batch), mode="tensor")
        out = out.x[out.mask] if isinstance(out, Tokens) else out  # segmentation: logits of valid points
        assert out.shape[-1] == model.head.num_classes and torch.isfinite(out).all()
        return
    if "video" in path.parts:  # clips [B, C, T, H, W] at the config's clip length, and [B, V, ...] test views
        T = cfg.train_dataloader.dataset.sampler.clip_len
        x = torch.randn(2, 6, model.adapter.in_chans, T, 32, 32)
        with torch.no_grad():
            out = model(x[:, 0], mode="tensor")
            preds = model(x, dict(label=torch.tensor([0, 1])), mode="predict")  # MultiViewTTA: 6 views a clip
        assert out.shape == (2, model.head.num_classes) and torch.isfinite(out).all()
        scores = torch.stack([p["pred_scores"] for p in preds])
        assert scores.shape == (2, model.head.num_classes) and torch.allclose(scores.sum(-1), torch.ones(2))
        return
    in_chans = model.adapter.in_chans
    side = 224 if path.stem == "swin_t_in1k" else (28 if in_chans == 1 else 64)
    batch = dict(inputs=torch.randint(0, 256, (1, in_chans, side, side), dtype=torch.uint8),
                 data_samples=dict(label=torch.tensor([0])))
    with torch.no_grad():
        out = model(**model.data_preprocessor(batch), mode="tensor")
    if isinstance(out, Tokens):  # dense heads: per-pixel logits at the input resolution
        assert out.grid == (side, side) and out.x.shape == (1, side * side, model.head.num_classes)
        out = out.x
    else:
        assert out.shape == (1, model.head.num_classes)
    assert torch.isfinite(out).all()


SCENES = ("scenes_unet_local_global", "scenes_unet_local", "scenes_unet_global")


def test_scenes_ablations_match_in_size():
    """The local-only / global-only / local+global scenes models differ by less than 10% in size."""
    counts = {name: sum(p.numel() for p in build_model(load_config(Path(__file__).parents[2] / "configs" / "image" /
                                                                   f"{name}.py")).parameters()) for name in SCENES}
    assert max(counts.values()) / min(counts.values()) < 1.10, counts


@pytest.mark.parametrize("family", ["shapes", "scenes", "lidar_b9", "lidar_urban"])
def test_point_ablations_match_in_size(family):
    """Local-only, global-only and local+global point models of each task: within 10% in size."""
    root = Path(__file__).parents[2] / "configs" / "points"
    names = ("local", "global", "local_global") + (("mpnn_global",) if family == "shapes" else ())
    counts = {n: sum(p.numel() for p in build_model(load_config(root / f"{family}_{n}.py")).parameters())
              for n in names}
    assert max(counts.values()) / min(counts.values()) < 1.10, counts


@pytest.mark.parametrize("task", ["kws", "ctc"])
def test_speech_ablations_match_in_size(task):
    """Conformer, Squeezeformer, Mamba, local-only and global-only speech models (and for CTC the
    MossFormer-like one): within 10% in size."""
    names = ("conformer", "squeezeformer", "mamba", "local", "global") + (("mossformer",) if task == "ctc" else ())
    root = Path(__file__).parents[2] / "configs" / "audio"
    counts = {n: sum(p.numel() for p in build_model(load_config(root / f"{task}_{n}.py")).parameters()) for n in names}
    assert max(counts.values()) / min(counts.values()) < 1.10, counts


VIDEO = ("single_frame", "local", "global", "local_global", "video_swin", "uniformer")


def test_video_ablations_match_in_size():
    """The moving Fashion-MNIST models (one frame; local-only, global-only, local+global; Video Swin
    and UniFormer structures): within 10% in size."""
    root = Path(__file__).parents[2] / "configs" / "video"
    counts = {n: sum(p.numel() for p in build_model(load_config(root / f"mfm_{n}.py")).parameters()) for n in VIDEO}
    assert max(counts.values()) / min(counts.values()) < 1.10, counts
    assert {p.stem for p in root.glob("*.py")} == {f"mfm_{n}" for n in VIDEO}  # a new video config joins the check


def test_video_configs_train_validate_and_test_on_a_tiny_set(tmp_path, one_thread, capsys):
    """mfm_local_global.py end to end on 8 generated clips per split: two training steps with a val
    pass (centre crops, [B, C, T, H, W]), a checkpoint, and tools/test.py on the multi-view test
    loader (2 clips x 3 crops = 6 views a video, [B, 6, C, T, H, W], averaged by MultiViewTTA)."""
    import importlib.util
    import json

    from glocal.tasks.engine import apply_cfg_options, build_runner

    root = Path(__file__).parents[2]
    config = root / "configs" / "video" / "mfm_local_global.py"
    tiny = {f"{split}_dataloader.dataset.{key}": value for split in ("train", "val", "test")
            for key, value in (("sizes", 8), ("cache_dir", str(tmp_path / "cache")))}
    tiny.update({"train_dataloader.batch_size": 4, "val_dataloader.batch_size": 8, "test_dataloader.batch_size": 4})
    cfg = apply_cfg_options(load_config(config), {**tiny, "train_cfg.max_epochs": 1, "work_dir": str(tmp_path / "w")})
    runner = build_runner(cfg)
    runner.train()  # 2 steps, then val
    ckpt = tmp_path / "w" / "epoch_1.pth"
    assert ckpt.is_file()
    batch = next(iter(runner.test_dataloader))
    assert batch["inputs"].shape == (4, 6, 3, 8, 32, 32) and batch["data_samples"]["label"].shape == (4,)

    spec = importlib.util.spec_from_file_location("glocal_test_tool", root / "tools" / "test.py")
    test = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(test)
    out = tmp_path / "metrics.json"
    options = [f"{k}={v}" for k, v in tiny.items()]
    capsys.readouterr()
    assert test.main([str(config), str(ckpt), "--out", str(out), "--work-dir", str(tmp_path / "t"),
                      "--cfg-options", *options]) == 0
    metrics = json.loads(out.read_text())
    assert set(metrics) == {"top1", "top5"} and 0.0 <= metrics["top1"] <= metrics["top5"] <= 100.0

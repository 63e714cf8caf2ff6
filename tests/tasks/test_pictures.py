"""Pictures of test results (``glocal.tasks.engine.pictures``): each task's picture from an untrained
model's tiny test run (classification, segmentation of images and of point clouds, regression,
CTC), what the hook kept checked against the same outputs, and the switches (``test_pictures``,
no matplotlib, a task without a picture)."""
from __future__ import annotations

import logging
import sys
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from mmengine.hooks import Hook
from PIL import Image

from glocal.core.errors import ConfigError
from glocal.tasks.engine import apply_cfg_options, build_runner, load_config, validate_config
from glocal.tasks.engine.pictures import ResultPictures, colour_labels, palette

ROOT = Path(__file__).resolve().parents[2]
TINY = Path(__file__).parent / "configs" / "tiny_fashion_mnist.py"


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test here runs on one thread (conftest's one_thread)."""


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One cache folder for the generated test sets of this module."""
    return str(tmp_path_factory.mktemp("picture_data"))


class _Record(Hook):
    """Keeps every test batch's post-processed samples, to check the pictures' hook against."""

    def __init__(self):
        self.samples = []

    def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.samples.extend(outputs)


def _test(cfg, tmp_path, **pictures):
    """Run ``cfg``'s test with an untrained model; the runner, the pictures hook, the samples."""
    cfg.work_dir = str(tmp_path)
    if pictures:
        cfg.test_pictures = pictures
    runner = build_runner(cfg, for_test=True, progress="off")
    record = _Record()
    runner.register_hook(record)
    metrics = runner.test()
    hook = next(h for h in runner.hooks if isinstance(h, ResultPictures))
    return runner, hook, record.samples, metrics


def _png(path: Path) -> tuple[int, int]:
    """The size of a valid PNG (PIL checks the file's structure and checksums)."""
    assert path.is_file(), f"{path} was not written"
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


def _pictures(runner) -> Path:
    return Path(runner.log_dir) / "pictures"


def test_classification_confusion_matrix_counts_the_outputs(tmp_path):
    runner, hook, samples, metrics = _test(load_config(TINY), tmp_path)
    width, height = _png(_pictures(runner) / "confusion_matrix.png")
    assert width > 300 and height > 300
    assert [p.name for p in hook.files] == ["confusion_matrix.png"]
    expected = Counter((int(s["gt_label"]), int(s["pred_scores"].argmax())) for s in samples)
    counts = hook.collector.counts  # [10, 10], rows the true class
    assert counts.shape == (10, 10) and counts.sum() == len(samples) == 64
    assert {(i, j): int(counts[i, j]) for i, j in zip(*np.nonzero(counts))} == dict(expected)
    assert np.trace(counts) / 64 * 100 == pytest.approx(metrics["top1"])
    log = next(Path(runner.log_dir).glob("*.log")).read_text()
    assert f"test pictures in {_pictures(runner)}: confusion_matrix.png" in log


def test_image_segmentation_input_truth_prediction(tmp_path, cache):
    cfg = load_config(ROOT / "configs" / "image" / "scenes_unet_local.py")
    data = dict(cfg.test_dataloader.dataset, num_canvases=4, cache_dir=cache)
    cfg.test_dataloader = dict(cfg.test_dataloader, batch_size=2, dataset=data)
    runner, hook, samples, _ = _test(cfg, tmp_path, num_examples=3)
    _png(_pictures(runner) / "segmentation.png")
    examples = hook.collector.examples
    assert len(examples) == 3  # num_examples bounds what is kept
    for ex, s in zip(examples, samples):
        assert ex["image"].shape == ex["gt"].shape == ex["pred"].shape == (64, 64)
        assert np.array_equal(ex["pred"].ravel(), s["pred_seg"].numpy())
        assert 0.0 <= ex["image"].min() and ex["image"].max() <= 1.0


def test_point_segmentation_top_down(tmp_path, cache):
    cfg = load_config(ROOT / "configs" / "points" / "scenes_local.py")
    scenes = dict(cfg.test_dataloader.dataset, num_scenes=2, points_per_scene=600, area=3.0, objects=(1, 2),
                  clutter=(1, 2), cache_dir=cache)
    cfg.test_dataloader = dict(cfg.test_dataloader, dataset=scenes)
    runner, hook, samples, _ = _test(cfg, tmp_path, max_points=300)
    _png(_pictures(runner) / "points_top_down.png")
    examples = hook.collector.examples
    assert len(examples) == 2
    for ex, s in zip(examples, samples):
        valid = (s["gt_seg"] >= 0).sum().item()  # the cloud's points (padding is ignore_index)
        assert ex["points"] == valid and len(ex["xyz"]) == len(ex["gt"]) == len(ex["pred"]) == 300
        assert set(np.unique(ex["gt"])) <= set(range(len(cfg.classes)))


def test_regression_parity_and_its_mae(tmp_path):
    cfg = load_config(ROOT / "configs" / "graph" / "freesolv_gine.py")
    runner, hook, samples, metrics = _test(cfg, tmp_path, max_pairs=10)
    _png(_pictures(runner) / "parity.png")
    parity = hook.collector
    assert parity.kept == 10 and int(parity.count[0]) == len(samples)  # the picture keeps 10, the MAE counts all
    assert parity.abs_sum[0] / parity.count[0] == pytest.approx(metrics["MAE"], rel=1e-5)


def test_ctc_alignment_path_is_the_decoders(tmp_path, cache):
    cfg = load_config(ROOT / "configs" / "audio" / "ctc_local.py")
    speech = dict(cfg.test_dataloader.dataset, sizes=dict(train=0, val=0, test=2), synth_workers=1, cache_dir=cache)
    cfg.test_dataloader = dict(cfg.test_dataloader, batch_size=2, dataset=speech)
    runner, hook, samples, _ = _test(cfg, tmp_path)
    _png(_pictures(runner) / "ctc_alignment.png")
    examples = hook.collector.examples
    assert len(examples) == 2
    for ex, s in zip(examples, samples):
        path = ex["path"].tolist()  # the greedy path over the frames, collapsed as CTC does
        collapsed = [k for i, k in enumerate(path) if k != 0 and (i == 0 or k != path[i - 1])]
        assert collapsed == list(s["pred_ids"])
        assert ex["gt_text"] == s["gt_text"]


def test_pictures_off_and_bad_keys(tmp_path):
    cfg = load_config(TINY)
    cfg.work_dir, cfg.test_pictures = str(tmp_path), None
    runner = build_runner(cfg, for_test=True, progress="off")
    assert not any(isinstance(h, ResultPictures) for h in runner.hooks)
    apply_cfg_options(load_config(TINY), {"test_pictures": None})  # a key the config leaves out
    apply_cfg_options(load_config(TINY), {"test_pictures.num_examples": 2})
    bad = load_config(TINY)
    bad.test_pictures = dict(num_example=2)
    with pytest.raises(ConfigError, match=r"test_pictures: ResultPictures has no key 'num_example'.*num_examples"):
        validate_config(bad)
    bad.test_pictures = "yes"
    with pytest.raises(ConfigError, match="test_pictures: expected dict"):
        validate_config(bad)
    with pytest.raises(ConfigError, match="num_examples must be an integer >= 0"):
        ResultPictures(num_examples=-1)


def _fake_runner(tmp_path, records):
    logger = logging.getLogger("glocal-pictures-test")
    logger.handlers = [logging.Handler()]
    logger.handlers[0].emit = records.append
    return SimpleNamespace(logger=logger, log_dir=str(tmp_path), model=None, test_loop=None, test_evaluator=None)


def test_without_matplotlib_one_warning_and_no_pictures(tmp_path, monkeypatch):
    records = []
    runner = _fake_runner(tmp_path, records)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises ImportError
    hook = ResultPictures()
    hook.before_test(runner)
    outputs = [dict(pred_scores=np.array([0.2, 0.8]), pred_label=1, gt_label=0)]
    hook.after_test_iter(runner, 0, dict(inputs=None), outputs)
    hook.after_test_epoch(runner, {})
    assert [r.levelno for r in records] == [logging.WARNING]
    assert "matplotlib is not installed" in records[0].getMessage()
    assert hook.collector is None and not (tmp_path / "pictures").exists()


def test_a_task_without_a_picture_is_no_error(tmp_path):
    records = []
    runner = _fake_runner(tmp_path, records)
    hook = ResultPictures()
    hook.before_test(runner)
    hook.after_test_iter(runner, 0, dict(inputs=None), [dict(embedding=np.zeros(4))])
    hook.after_test_epoch(runner, {})
    assert hook.collector is None and hook.files == [] and records == []


def test_palette_is_fixed_and_ignored_labels_are_grey():
    colours = palette(11)
    assert np.array_equal(colours, palette(30)[:11])  # class k has one colour whatever the class count
    rgb = colour_labels(np.array([[0, 10], [-100, 11]]), colours)
    assert np.array_equal(rgb[0, 0], colours[0]) and np.array_equal(rgb[0, 1], colours[10])
    assert np.allclose(rgb[1], 0.6)  # ignore_index and out-of-range labels

"""tools/test.py --dump: one JSON record per test sample, in dataset order, with what the model
predicted; and the DumpPredictions metric behind it on batches that come out of order, with
skipped samples, files and per-element predictions."""
import importlib.util
import json
import pathlib

import numpy as np
import pytest
import torch

from glocal.core.errors import GlocalError
from glocal.modalities.batch import SKIPPED_KEY
from glocal.modalities.image import FashionMNIST
from glocal.tasks.engine import build_model, load_config
from glocal.tasks.metrics import DumpPredictions

ROOT = pathlib.Path(__file__).resolve().parents[2]
TINY = ROOT / "tests" / "tasks" / "configs" / "tiny_fashion_mnist.py"


def _test_tool():
    spec = importlib.util.spec_from_file_location("glocal_test_tool", ROOT / "tools" / "test.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dump_writes_every_test_sample_in_order(tmp_path, capsys):
    torch.manual_seed(0)
    ckpt = tmp_path / "tiny.pth"
    torch.save({"meta": {}, "state_dict": build_model(load_config(TINY)).state_dict()}, ckpt)
    out, metrics = tmp_path / "preds" / "dump.json", tmp_path / "metrics.json"
    argv = [str(TINY), str(ckpt), "--dump", str(out), "--out", str(metrics), "--work-dir", str(tmp_path / "w"),
            "--progress", "off", "--cfg-options", "test_dataloader.dataset.limit=20", "test_dataloader.batch_size=6"]
    assert _test_tool().main(argv) == 0
    capsys.readouterr()
    records = json.loads(out.read_text())
    assert [r["index"] for r in records] == list(range(20))  # batches of 6, 6, 6, 2
    assert all(set(r) == {"index", "pred_scores", "pred_label", "gt_label"} for r in records)
    labels = FashionMNIST(split="test", limit=20).labels
    assert [r["gt_label"] for r in records] == labels.tolist()
    for r in records:
        assert len(r["pred_scores"]) == 10 and abs(sum(r["pred_scores"]) - 1) < 1e-5
        assert r["pred_label"] == int(np.argmax(r["pred_scores"]))
    top1 = 100 * np.mean([r["pred_label"] == r["gt_label"] for r in records])
    scores = json.loads(metrics.read_text())
    assert set(scores) == {"top1", "top5"} and scores["top1"] == pytest.approx(top1)  # the dump adds no metric


def test_dump_metric_indexes_records_by_the_loader_batches(tmp_path):
    """Batches out of dataset order (as length buckets give them), a sample skipped, files named, a
    per-element prediction as a list; a repeated sample (a distributed sampler's padding) once."""
    out = tmp_path / "d.json"
    metric = DumpPredictions(str(out), batches=[[3, 1], [0, 2, 1]])
    metric.process(dict(data_samples=dict(path=["c.png", "b.png"])),
                   [dict(pred_seg=torch.tensor([[0, 1], [1, 1]]), gt_seg=None),
                    dict(pred_seg=torch.zeros(2, 2, dtype=torch.long), gt_seg=None)])
    metric.process({"data_samples": dict(path=["a.png", "b.png"]), SKIPPED_KEY: [(2, "x.png", "truncated")]},
                   [dict(pred_seg=np.ones((2, 2), dtype=np.int64), gt_seg=None),
                    dict(pred_seg=torch.zeros(2, 2, dtype=torch.long), gt_seg=None)])
    assert metric.evaluate(4) == {}
    records = json.loads(out.read_text())
    assert [(r["index"], r.get("path")) for r in records] == [(0, "a.png"), (1, "b.png"), (2, "x.png"), (3, "c.png")]
    assert records[3]["pred_seg"] == [[0, 1], [1, 1]] and records[0]["pred_seg"] == [[1, 1], [1, 1]]
    assert records[2] == dict(index=2, path="x.png", error="truncated")

    # a second pass starts again at the first batch, of two samples
    with pytest.raises(GlocalError, match=r"batch 0 of the test loader has 1 predictions, but its batch sampler "
                                          r"gave 2 samples"):
        metric.process({}, [dict(pred=torch.tensor(1.5))])

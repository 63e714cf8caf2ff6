"""Metrics as mmengine ``BaseMetric``s: they consume the per-sample dicts of the post-processing."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

__all__ = ["Accuracy", "IoUMetric", "confusion_matrix"]


class Accuracy(BaseMetric):
    """Top-k accuracy in percent (``top1``, ``top5``, ...); k larger than the class count is
    clipped to it."""

    default_prefix = ""

    def __init__(self, topk: Sequence[int] = (1, 5), collect_device: str = "cpu", prefix: str | None = None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.topk = tuple(topk)

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for s in data_samples:
            scores, label = s["pred_scores"], int(s["gt_label"])
            ranked = scores.argsort(descending=True)
            hits = {k: bool((ranked[:k] == label).any()) for k in self.topk}
            self.results.append(hits)

    def compute_metrics(self, results: list) -> dict:
        n = max(len(results), 1)
        return {f"top{k}": 100.0 * sum(r[k] for r in results) / n for k in self.topk}


def confusion_matrix(pred: torch.Tensor, gt: torch.Tensor, num_classes: int, ignore_index: int = -100) -> np.ndarray:
    """``[K, K]`` counts (rows: truth, columns: prediction) over the elements whose truth is a class
    in ``0..K-1`` (``ignore_index`` and padding excluded)."""
    pred, gt = pred.reshape(-1).long(), gt.reshape(-1).long()
    keep = (gt >= 0) & (gt < num_classes) & (gt != ignore_index)
    idx = gt[keep] * num_classes + pred[keep].clamp(0, num_classes - 1)
    return torch.bincount(idx, minlength=num_classes ** 2).reshape(num_classes, num_classes).cpu().numpy()


class IoUMetric(BaseMetric):
    """Semantic segmentation (per pixel / point / frame): ``mIoU`` (mean over the classes that occur
    in the truth or the predictions), ``aAcc`` (overall accuracy) and ``mAcc`` (mean class accuracy),
    all in percent, with an ``ignore_index``; the per-class IoU is logged as a table and returned
    as ``IoU.<class>``."""

    default_prefix = ""

    def __init__(self, num_classes: int, ignore_index: int = -100, class_names: Sequence[str] | None = None,
                 collect_device: str = "cpu", prefix: str | None = None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.num_classes, self.ignore_index = int(num_classes), ignore_index
        self.class_names = list(class_names) if class_names else [str(i) for i in range(self.num_classes)]
        if len(self.class_names) != self.num_classes:
            raise ValueError(f"IoUMetric: {len(self.class_names)} class names for {num_classes} classes")

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        conf = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)
        for s in data_samples:
            conf += confusion_matrix(s["pred_seg"], s["gt_seg"], self.num_classes, self.ignore_index)
        self.results.append(conf)

    def compute_metrics(self, results: list) -> dict:
        conf = np.sum(results, axis=0).astype(np.float64)  # [K, K]
        tp, truth, predicted = np.diag(conf), conf.sum(1), conf.sum(0)
        union = truth + predicted - tp
        present = union > 0
        iou = np.where(present, tp / np.maximum(union, 1), np.nan)
        acc = np.where(truth > 0, tp / np.maximum(truth, 1), np.nan)
        width = max(len(n) for n in self.class_names)
        rows = "\n".join(f"  {n:<{width}}  {100 * v:6.2f}" if not np.isnan(v) else f"  {n:<{width}}     -"
                         for n, v in zip(self.class_names, iou))
        print_log(f"per-class IoU (%):\n{rows}", logger="current")
        out = dict(mIoU=100.0 * float(np.nanmean(iou)) if present.any() else 0.0,
                   aAcc=100.0 * float(tp.sum() / max(conf.sum(), 1)),
                   mAcc=100.0 * float(np.nanmean(acc)) if (truth > 0).any() else 0.0)
        out.update({f"IoU.{n}": 100.0 * float(v) for n, v in zip(self.class_names, iou) if not np.isnan(v)})
        return out

"""Metrics as mmengine ``BaseMetric``s: they consume the per-sample dicts of ``mode="predict"``."""
from __future__ import annotations

from collections.abc import Sequence

from mmengine.evaluator import BaseMetric

__all__ = ["Accuracy"]


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

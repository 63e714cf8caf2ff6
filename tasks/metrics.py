"""Metrics as mmengine ``BaseMetric``s: they consume the per-sample dicts of the post-processing."""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from glocal.core.errors import ConfigError, GlocalError
from glocal.modalities.batch import PATH_KEYS, SKIPPED_KEY

__all__ = ["Accuracy", "ROCAUC", "IoUMetric", "DumpPredictions", "confusion_matrix", "roc_auc", "roc_auc_reference",
           "jsonable"]


class Accuracy(BaseMetric):
    """Top-k accuracy in percent (``top1``, ``top5``, ...); k larger than the class count is
    clipped to it. ``mean_class=True`` adds ``mAcc``: the top-1 accuracy of each class that occurs
    in the truth, averaged over those classes (the "mean class accuracy" of point-cloud shape
    classification, which a frequent class cannot dominate)."""

    default_prefix = ""

    def __init__(self, topk: Sequence[int] = (1, 5), mean_class: bool = False, collect_device: str = "cpu",
                 prefix: str | None = None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.topk, self.mean_class = tuple(topk), bool(mean_class)

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for s in data_samples:
            scores, label = s["pred_scores"], int(s["gt_label"])
            ranked = scores.argsort(descending=True)
            hits = {k: bool((ranked[:k] == label).any()) for k in self.topk}
            hits["label"], hits["hit1"] = label, bool(ranked[0] == label)
            self.results.append(hits)

    def compute_metrics(self, results: list) -> dict:
        n = max(len(results), 1)
        out = {f"top{k}": 100.0 * sum(r[k] for r in results) / n for k in self.topk}
        if self.mean_class:
            per_class: dict[int, list[bool]] = {}
            for r in results:
                per_class.setdefault(r["label"], []).append(r["hit1"])
            out["mAcc"] = 100.0 * float(np.mean([np.mean(h) for h in per_class.values()])) if per_class else 0.0
        return out


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of ``scores [N]`` for the boolean ``positive [N]``: the probability
    that a random positive scores above a random negative (ties count one half), from the ranks
    (Mann-Whitney U, average ranks for ties), O(N log N). NaN when a class is absent."""
    scores, positive = np.asarray(scores, dtype=np.float64), np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores), dtype=np.float64)
    # average rank (1-based) over each run of equal scores
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_scores)) + 1]
    ends = np.r_[starts[1:], len(scores)]
    for a, b in zip(starts, ends):
        ranks[order[a:b]] = (a + b + 1) / 2.0
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def roc_auc_reference(scores, positive) -> float:
    """The definition, over every (positive, negative) pair: O(N^2), for tests."""
    scores, positive = np.asarray(scores, dtype=np.float64), np.asarray(positive, dtype=bool)
    pos, neg = scores[positive], scores[~positive]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(wins / (len(pos) * len(neg)))


class ROCAUC(BaseMetric):
    """ROC-AUC in percent from the class scores of :class:`ClassifyPost`: for two classes the AUC of
    class 1's score; for more, ``AUC`` is the macro mean of the one-vs-rest AUCs (classes absent
    from the truth are left out) and ``AUC/<class>`` each one."""

    default_prefix = ""

    def __init__(self, class_names: Sequence[str] | None = None, collect_device: str = "cpu",
                 prefix: str | None = None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.class_names = list(class_names) if class_names else None

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for s in data_samples:
            self.results.append((torch.as_tensor(s["pred_scores"]).float().cpu().numpy(), int(s["gt_label"])))

    def compute_metrics(self, results: list) -> dict:
        scores = np.stack([r[0] for r in results])  # [N, K]
        labels = np.array([r[1] for r in results])
        K = scores.shape[1]
        if K == 2:
            return dict(AUC=100.0 * roc_auc(scores[:, 1], labels == 1))
        names = self.class_names or [str(k) for k in range(K)]
        out = {f"AUC/{names[k]}": 100.0 * roc_auc(scores[:, k], labels == k) for k in range(K)}
        present = [v for v in out.values() if not np.isnan(v)]
        return dict(AUC=float(np.mean(present)) if present else float("nan"), **out)


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


# ------------------------------------------------------------------------------------------------
# what the model predicted, per sample, to a file
# ------------------------------------------------------------------------------------------------
def jsonable(value):
    """``value`` in JSON's types: tensors and arrays as (nested) lists, or numbers when 0-d;
    mappings and sequences element by element; anything else JSON has no type for as its string."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        return (value.float() if value.dtype in (torch.float16, torch.bfloat16) else value).tolist()
    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    return str(value)


def _batch_paths(data_batch, count: int) -> list | None:
    """The file of each of the ``count`` samples of ``data_batch`` when the batch carries them (a
    list of strings under ``path`` or another of :data:`PATH_KEYS`, as ImageFolder's samples); else None."""
    if not isinstance(data_batch, Mapping):
        return None
    for where in (data_batch.get("data_samples"), data_batch):
        for key in PATH_KEYS:
            paths = where.get(key) if isinstance(where, Mapping) else None
            if isinstance(paths, (list, tuple)) and len(paths) == count and all(isinstance(p, str) for p in paths):
                return list(paths)
    return None


def _record(index: int, path: str | None, fields: Mapping) -> dict:
    """A sample's record: ``index``, ``path`` when known, then ``fields`` made JSON-able."""
    record = {"index": index, **({"path": path} if path else {})}
    record.update((k, v) for k, v in jsonable(fields).items() if k not in record)
    return record


class DumpPredictions(BaseMetric):
    """Writes what the model predicted for every test sample to ``out_file`` and returns no metric:
    ``tools/test.py --dump FILE.json`` (the ``--dump`` of mmdet and mmpretrain), to look at the
    errors, compare two runs, or check ``tools/infer.py`` against testing.

    The file is a JSON list with one record per sample, in dataset order: ``index`` (the sample's
    index in the test dataset), ``path`` when the batch carries the sample's file (ImageFolder's
    samples do), and the post-processed sample made JSON-able (tensors as lists or numbers):
    ``pred_label``, ``pred_scores``, ``gt_label`` of a classifier; ``pred_seg``, ``gt_seg`` of
    segmentation; ``pred`` of regression; ``pred_text`` of CTC. A sample the dataset skipped
    (``on_error='skip'``) is ``index``, ``path`` and ``error``.

    ``batches`` are the dataset indices of every batch the test loader yields in this process, in
    order (:meth:`for_loader` reads them from the loader): they give every record its dataset
    index whatever the sampler (sequential, length buckets) and however many processes test.
    """

    default_prefix = ""

    def __init__(self, out_file: str, batches: Iterable[Sequence[int]], collect_device: str = "cpu"):
        super().__init__(collect_device=collect_device)
        self.out_file = str(out_file)
        self.batches = [[int(i) for i in keys] for keys in batches]
        self._next = 0

    @classmethod
    def for_loader(cls, out_file: str, loader) -> DumpPredictions:
        """The metric for ``loader``, the runner's test loader: the indices of its batches from its
        batch sampler, which yields the same batches on every pass (seeded; testing does not shuffle)."""
        sampler = getattr(loader, "batch_sampler", None)
        if sampler is None:
            raise ConfigError("--dump needs a test loader that batches (batch_size set, or a batch sampler), to "
                              "know which dataset sample each prediction is")
        return cls(out_file, ([k[0] if isinstance(k, (tuple, list)) else k for k in keys] for keys in sampler))

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        """The batch's records, indexed by the loader's batch of the same rank."""
        skipped = {int(i): (path, message) for i, path, message in
                   (data_batch.get(SKIPPED_KEY, ()) if isinstance(data_batch, Mapping) else ())}
        keys = self.batches[self._next] if self._next < len(self.batches) else []
        kept = [k for k in keys if k not in skipped]
        if len(kept) != len(data_samples):
            raise GlocalError(f"DumpPredictions: batch {self._next} of the test loader has {len(data_samples)} "
                              f"predictions, but its batch sampler gave {len(kept)} samples that loaded; the dump "
                              f"cannot tell which sample each prediction is")
        self._next += 1
        paths = _batch_paths(data_batch, len(kept)) or [None] * len(kept)
        records = [_record(k, p, dict(s)) for k, p, s in zip(kept, paths, data_samples)]
        records += [_record(k, p, dict(error=m)) for k, (p, m) in skipped.items()]
        self.results.append(records)

    def compute_metrics(self, results: list) -> dict:
        """Writes the records of every process, sorted by index, each sample once (a distributed
        sampler repeats a few to give every process as many); no metric."""
        by_index = {}
        for record in (r for records in results for r in records):
            by_index.setdefault(record["index"], record)
        records = [by_index[i] for i in sorted(by_index)]
        path = Path(self.out_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("[\n" + ",\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n]\n")
        print_log(f"predictions of {len(records)} samples written to {path}", logger="current")
        return {}

    def evaluate(self, size: int) -> dict:
        """Every process's records as one result: mmengine collects the results of several
        processes by interleaving them (to the shortest) and cutting them to the dataset's length,
        which would drop records of processes with more batches or samples than the others."""
        self._next = 0  # a second pass of the loader starts again at its first batch
        self.results = [[record for batch in self.results for record in batch]]
        return super().evaluate(size)

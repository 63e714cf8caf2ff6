"""Pictures of test results, written into the run's folder by ``tools/test.py``.

:class:`ResultPictures` is an mmengine hook. While ``runner.test()`` runs it keeps a bounded
summary of the post-processed samples (whatever the metrics read), and at the end of the test
epoch draws PNGs into ``<work_dir>/<timestamp>/pictures/`` (the run's ``log_dir``) with
matplotlib's Agg canvas (files only; pyplot's global state is never touched). The task is read
from the samples' keys:

===============================  =================================  ================================
samples                          picture                            kept while testing
===============================  =================================  ================================
``pred_label``, ``gt_label``     ``confusion_matrix.png``: rows     a ``[K, K]`` count matrix
(:class:`ClassifyPost`)          normalised, counts written when
                                 K <= 20, class names on the axes
``pred_seg``, ``gt_seg`` over    ``segmentation.png``: input |      ``num_examples`` samples
images ``inputs [B, C, H, W]``   truth | prediction
(:class:`SegmentPost`)
``pred_seg``, ``gt_seg`` over    ``points_top_down.png``: the       ``num_examples`` clouds, at most
points ``pos [B, N, 3]``         (x, y) projection coloured by      ``max_points`` points each
                                 truth and by prediction
``pred``, ``gt``                 ``parity.png``: predicted vs       ``max_pairs`` pairs; the MAE
(:class:`RegressionPost`)        true, y = x, MAE per target        over every pair
``pred_ids`` (CTC decoder)       ``ctc_alignment.png``: per-frame   ``num_examples`` utterances
                                 log-probabilities, the greedy
                                 path, reference and hypothesis
===============================  =================================  ================================

Samples that match none of these (or have no ground truth) give no picture and no error. Dense
pictures share one categorical palette (class ``k`` always has the same colour); pixels and points
the metric ignores are grey in both truth and prediction. The CTC decoder's samples carry only the
decoded ids, so the alignment's per-frame probabilities come from one more forward pass of the
model over the first batch(es), until ``num_examples`` utterances are kept.

In a distributed test the confusion counts and the regression errors are summed over the ranks;
the examples and the parity points are rank 0's. Without matplotlib: one warning, no pictures.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from mmengine.dist import all_gather_object, get_world_size, is_main_process
from mmengine.hooks import Hook
from torch import Tensor

from glocal.core.errors import ConfigError
from glocal.core.tokens import Tokens

__all__ = ["ResultPictures", "palette", "colour_labels", "confusion_counts", "matplotlib_available"]

FOLDER = "pictures"
GREY = (0.6, 0.6, 0.6)  # ignored pixels / points
ANNOTATE_UP_TO = 20  # classes: counts written in the confusion matrix's cells
TICKS_UP_TO = 60  # classes: names on the axes
LEGEND_UP_TO = 20  # classes listed in a dense picture's legend


# ------------------------------------------------------------------------------------------------
# matplotlib, colours
# ------------------------------------------------------------------------------------------------
def matplotlib_available() -> bool:
    try:
        import matplotlib  # noqa: F401
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401
    except ImportError:
        return False
    return True


def _figure(width: float, height: float):
    """A matplotlib ``Figure`` on its own Agg canvas (no pyplot, no display, no global state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> Path:
    fig.savefig(path, format="png")
    return path


def palette(num_classes: int) -> np.ndarray:
    """A fixed categorical colour per class, ``[K, 3]`` in [0, 1]: matplotlib's tab20 for the first
    20, then hues spaced by the golden angle (so class ``k`` has the same colour in every picture).

    >>> palette(3).shape, bool((palette(25)[:20] == palette(20)).all())
    ((3, 3), True)
    """
    from matplotlib import colormaps
    from matplotlib.colors import hsv_to_rgb
    tab = np.asarray(colormaps["tab20"].colors)[:, :3]  # [20, 3]
    extra = max(num_classes - len(tab), 0)
    hues = (np.arange(extra) * 0.618034) % 1.0
    more = hsv_to_rgb(np.stack([hues, np.full(extra, 0.65), np.full(extra, 0.85)], 1)) if extra else np.zeros((0, 3))
    return np.concatenate([tab, more])[:num_classes]


def colour_labels(labels: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """Labels ``[...]`` -> RGB ``[..., 3]``; labels outside ``[0, K)`` (ignored, padding) are grey."""
    labels = np.asarray(labels)
    valid = (labels >= 0) & (labels < len(colours))
    out = np.empty(labels.shape + (3,), dtype=np.float64)
    out[...] = GREY
    out[valid] = colours[labels[valid]]
    return out


def _legend(fig, labels: Sequence[np.ndarray], colours: np.ndarray, names: Sequence[str] | None) -> None:
    """One legend for the figure: the classes present in ``labels`` (at most LEGEND_UP_TO), and grey."""
    from matplotlib.patches import Patch
    present = np.unique(np.concatenate([np.asarray(a).ravel() for a in labels]))
    present = [int(k) for k in present if 0 <= k < len(colours)][:LEGEND_UP_TO]
    handles = [Patch(color=colours[k], label=_name(names, k)) for k in present]
    handles.append(Patch(color=GREY, label="ignored"))
    fig.legend(handles=handles, loc="outside right upper", fontsize="small", frameon=False)


def _name(names: Sequence[str] | None, k: int) -> str:
    return str(names[k]) if names is not None and 0 <= k < len(names) else str(k)


def _numpy(value) -> np.ndarray:
    if isinstance(value, Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


# ------------------------------------------------------------------------------------------------
# what a run's samples are
# ------------------------------------------------------------------------------------------------
def _test_dataset(runner):
    loop = getattr(runner, "test_loop", None)
    return getattr(getattr(loop, "dataloader", None), "dataset", None)


def _metrics(runner) -> list:
    return list(getattr(getattr(runner, "test_evaluator", None), "metrics", None) or [])


def class_names(runner) -> list[str] | None:
    """The test dataset's ``metainfo['classes']``, else a metric's ``class_names``, else None."""
    classes = (getattr(_test_dataset(runner), "metainfo", None) or {}).get("classes")
    if classes:
        return [str(c) for c in classes]
    for metric in _metrics(runner):
        names = getattr(metric, "class_names", None)
        if names:
            return [str(c) for c in names]
    return None


def target_names(runner) -> list[str] | None:
    """Regression targets: a metric's ``names``, else the dataset's ``metainfo['targets']`` (with
    its ``units``), else None."""
    for metric in _metrics(runner):
        names = getattr(metric, "names", None)
        if names:
            return [str(n) for n in names]
    meta = getattr(_test_dataset(runner), "metainfo", None) or {}
    targets, units = meta.get("targets"), meta.get("units")
    if not targets:
        return None
    if units and len(units) == len(targets):
        return [f"{t} [{u}]" for t, u in zip(targets, units)]
    return [str(t) for t in targets]


def _is_points(data_batch: Mapping, sample: Mapping) -> bool:
    pos, mask = data_batch.get("pos"), data_batch.get("mask")
    return (isinstance(pos, Tensor) and pos.dim() == 3 and pos.shape[-1] >= 2 and isinstance(mask, Tensor)
            and _numel(sample.get("pred_seg")) == pos.shape[1])


def _is_image(data_batch: Mapping, sample: Mapping) -> bool:
    x = data_batch.get("inputs")
    return isinstance(x, Tensor) and x.dim() == 4 and _numel(sample.get("pred_seg")) == x.shape[2] * x.shape[3]


def _numel(value) -> int:
    return int(value.numel()) if isinstance(value, Tensor) else int(np.size(value)) if value is not None else -1


def choose_collector(sample: Mapping, data_batch: Mapping, hook: ResultPictures) -> Collector | None:
    """The collector for a run whose first sample is ``sample``; None when no picture fits."""
    if "pred_label" in sample and "pred_scores" in sample:
        return Confusion()
    if "pred_seg" in sample and isinstance(data_batch, Mapping):
        if _is_points(data_batch, sample):
            return PointExamples(hook.num_examples, hook.max_points)
        if _is_image(data_batch, sample):
            return ImageExamples(hook.num_examples)
        return None
    if "pred" in sample and "gt" in sample:
        return Parity(hook.max_pairs)
    if "pred_ids" in sample and isinstance(data_batch, Mapping):
        return Alignments(hook.num_examples)
    return None


# ------------------------------------------------------------------------------------------------
# collectors: bounded summaries of the samples, and their pictures
# ------------------------------------------------------------------------------------------------
class Collector:
    """Keeps what one picture needs, batch by batch (``add``), merges the ranks (``gather``, every
    rank calls it) and draws (``draw``, rank 0; returns the files written)."""

    def add(self, runner, data_batch: Mapping, outputs: Sequence[Mapping]) -> None:
        raise NotImplementedError

    def gather(self) -> None:
        """Nothing to merge by default: the pictures show rank 0's samples."""

    def draw(self, folder: Path, runner) -> list[Path]:
        raise NotImplementedError


def confusion_counts(pred: np.ndarray, true: np.ndarray, num_classes: int) -> np.ndarray:
    """``[K, K]`` int64 counts, rows the true class, columns the predicted one; pairs with a label
    outside ``[0, K)`` are left out.

    >>> confusion_counts(np.array([0, 1, 1]), np.array([0, 0, 1]), 2).tolist()
    [[1, 1], [0, 1]]
    """
    pred, true = np.asarray(pred).ravel(), np.asarray(true).ravel()
    keep = (true >= 0) & (true < num_classes) & (pred >= 0) & (pred < num_classes)
    flat = true[keep] * num_classes + pred[keep]
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


class Confusion(Collector):
    """Classification: the confusion counts ``[K, K]`` (rows true, columns predicted)."""

    def __init__(self):
        self.counts: np.ndarray | None = None

    def add(self, runner, data_batch, outputs) -> None:
        pairs = [(int(s["pred_label"]), int(s["gt_label"])) for s in outputs if s.get("gt_label") is not None]
        if self.counts is None:
            self.counts = np.zeros((len(outputs[0]["pred_scores"]),) * 2, dtype=np.int64)
        if pairs:
            pred, true = np.array(pairs).T
            self.counts += confusion_counts(pred, true, len(self.counts))

    def gather(self) -> None:
        if get_world_size() > 1:
            parts = [c for c in all_gather_object(self.counts) if c is not None]
            self.counts = sum(parts[1:], parts[0].copy()) if parts else None

    def draw(self, folder, runner) -> list[Path]:
        if self.counts is None or self.counts.sum() == 0:
            return []
        counts = self.counts  # [K, K]
        K, total = len(counts), int(counts.sum())
        names = class_names(runner)
        names = names if names is not None and len(names) == K else [str(k) for k in range(K)]
        rows = counts.sum(1, keepdims=True)
        share = np.divide(counts, rows, out=np.zeros(counts.shape), where=rows > 0)  # [K, K] rows sum to 1
        side = min(3.0 + 0.45 * K, 24.0)
        fig = _figure(side + 1.5, side)
        ax = fig.add_subplot()
        image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
        fig.colorbar(image, ax=ax, shrink=0.8, label="share of the true class")
        if K <= ANNOTATE_UP_TO:
            for i in range(K):
                for j in range(K):
                    if counts[i, j]:
                        ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize="small",
                                color="white" if share[i, j] > 0.5 else "black")
        if K <= TICKS_UP_TO:
            ax.set_xticks(range(K), names, rotation=90, fontsize="small")
            ax.set_yticks(range(K), names, fontsize="small")
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"confusion matrix, rows normalised: {total} samples, accuracy "
                     f"{100.0 * np.trace(counts) / total:.2f}%")
        return [_save(fig, folder / "confusion_matrix.png")]


class ImageExamples(Collector):
    """Dense prediction on images: the first ``n`` samples' input ``[H, W, C]``, truth and
    prediction ``[H, W]``."""

    def __init__(self, n: int):
        self.n, self.examples = n, []

    def add(self, runner, data_batch, outputs) -> None:
        x = data_batch["inputs"]  # [B, C, H, W], as the data loader gives it (before normalising)
        H, W = x.shape[2:]
        for b, s in enumerate(outputs[:self.n - len(self.examples)]):
            if s.get("gt_seg") is None:
                continue
            self.examples.append(dict(image=_display_image(x[b]), gt=_numpy(s["gt_seg"]).reshape(H, W),
                                      pred=_numpy(s["pred_seg"]).reshape(H, W)))

    def draw(self, folder, runner) -> list[Path]:
        if not self.examples:
            return []
        names, K, colours, fig, axes = _example_grid(runner, self.examples, 3, 9.5, 3.0)
        for row, ex in zip(axes, self.examples):
            ignored = (ex["gt"] < 0) | (ex["gt"] >= K)
            pred = np.where(ignored, -1, ex["pred"])
            row[0].imshow(ex["image"], cmap="gray" if ex["image"].ndim == 2 else None, interpolation="nearest")
            row[1].imshow(colour_labels(ex["gt"], colours), interpolation="nearest")
            row[2].imshow(colour_labels(pred, colours), interpolation="nearest")
            scored = ~ignored
            acc = 100.0 * (ex["pred"][scored] == ex["gt"][scored]).mean() if scored.any() else float("nan")
            for ax, title in zip(row, ("input", "truth", f"prediction ({acc:.1f}% of pixels)")):
                ax.set_title(title, fontsize="small")
                ax.set_axis_off()
        _legend(fig, [e["gt"] for e in self.examples] + [e["pred"] for e in self.examples], colours, names)
        return [_save(fig, folder / "segmentation.png")]


def _display_image(x: Tensor) -> np.ndarray:
    """One input image ``[C, H, W]`` -> ``[H, W, 3]`` or ``[H, W]`` in [0, 1]: uint8 divided by 255,
    anything else stretched from its min to its max; three channels as RGB, otherwise the first."""
    x = x.detach().cpu()
    img = x[:3] if x.shape[0] == 3 else x[:1]
    if img.dtype == torch.uint8:
        img = img.float() / 255.0
    else:
        img = img.float()
        lo, hi = img.min(), img.max()
        img = (img - lo) / (hi - lo) if hi > lo else torch.zeros_like(img)
    img = img.permute(1, 2, 0).numpy()  # [H, W, C]
    return img[..., 0] if img.shape[-1] == 1 else img


def _num_classes(names: Sequence[str] | None, examples: Sequence[Mapping]) -> int:
    """The class count for the palette: the names', or one more than the largest label seen."""
    if names:
        return len(names)
    return 1 + max(int(max(e["gt"].max(), e["pred"].max())) for e in examples)


def _example_grid(runner, examples: Sequence[Mapping], cols: int, width: float, row_height: float):
    """What the dense pictures share: the class names, their count, the palette, and a figure with
    one row of ``cols`` panels per example: ``(names, K, colours, fig, axes [rows, cols])``."""
    names = class_names(runner)
    K = _num_classes(names, examples)
    fig = _figure(width, row_height * len(examples))
    return names, K, palette(K), fig, fig.subplots(len(examples), cols, squeeze=False)


class PointExamples(Collector):
    """Dense prediction on point clouds: the first ``n`` clouds' ``(x, y, z)`` and per-point truth
    and prediction, at most ``max_points`` points each (evenly spaced in the cloud's order)."""

    def __init__(self, n: int, max_points: int):
        self.n, self.max_points, self.examples = n, max_points, []

    def add(self, runner, data_batch, outputs) -> None:
        pos, mask = data_batch["pos"], data_batch["mask"]  # [B, N, 3], [B, N]
        for b, s in enumerate(outputs[:self.n - len(self.examples)]):
            if s.get("gt_seg") is None:
                continue
            keep = _numpy(mask[b]).astype(bool)  # [N]
            xyz = _numpy(pos[b])[keep]  # [n, 3]
            gt, pred = _numpy(s["gt_seg"]).reshape(-1)[keep], _numpy(s["pred_seg"]).reshape(-1)[keep]
            pick = np.unique(np.linspace(0, len(xyz) - 1, min(len(xyz), self.max_points)).astype(np.int64))
            self.examples.append(dict(xyz=xyz[pick], gt=gt[pick], pred=pred[pick], points=len(xyz)))

    def draw(self, folder, runner) -> list[Path]:
        if not self.examples:
            return []
        names, K, colours, fig, axes = _example_grid(runner, self.examples, 2, 10.0, 4.5)
        for row, ex in zip(axes, self.examples):
            order = np.argsort(ex["xyz"][:, 2], kind="stable")  # low points first: the view from above
            xy = ex["xyz"][order, :2]
            gt, pred = ex["gt"][order], ex["pred"][order]
            ignored = (gt < 0) | (gt >= K)
            size = float(np.clip(3000.0 / max(len(xy), 1), 0.3, 8.0))
            scored = ~ignored
            acc = 100.0 * (pred[scored] == gt[scored]).mean() if scored.any() else float("nan")
            titles = (f"truth ({ex['points']} points, top-down)", f"prediction ({acc:.1f}% of points)")
            for ax, labels, title in zip(row, (gt, np.where(ignored, -1, pred)), titles):
                ax.scatter(xy[:, 0], xy[:, 1], c=colour_labels(labels, colours), s=size, linewidths=0)
                ax.set_aspect("equal")
                ax.set_title(title, fontsize="small")
                ax.set_xlabel("x")
                ax.set_ylabel("y")
        _legend(fig, [e["gt"] for e in self.examples] + [e["pred"] for e in self.examples], colours, names)
        return [_save(fig, folder / "points_top_down.png")]


class Parity(Collector):
    """Regression: up to ``max_pairs`` (true, predicted) rows ``[n, T]`` for the picture, and the
    absolute error summed per target over every labelled value (NaN truth skipped) for the MAE."""

    def __init__(self, max_pairs: int):
        self.max_pairs = max_pairs
        self.pred, self.true = [], []
        self.kept = 0
        self.abs_sum: np.ndarray | None = None  # [T]
        self.count: np.ndarray | None = None  # [T]

    def add(self, runner, data_batch, outputs) -> None:
        for s in outputs:
            if s.get("gt") is None:
                continue
            pred = _numpy(s["pred"]).astype(np.float64)
            T = pred.shape[-1] if pred.ndim else 1
            pred, true = pred.reshape(-1, T), _numpy(s["gt"]).astype(np.float64).reshape(-1, T)  # [n, T]
            labelled = np.isfinite(true)
            if self.abs_sum is None:
                self.abs_sum, self.count = np.zeros(T), np.zeros(T, dtype=np.int64)
            self.abs_sum += np.where(labelled, np.abs(pred - true), 0.0).sum(0)
            self.count += labelled.sum(0)
            room = self.max_pairs - self.kept
            if room > 0:
                self.pred.append(pred[:room])
                self.true.append(true[:room])
                self.kept += len(pred[:room])

    def gather(self) -> None:
        if get_world_size() > 1:
            parts = [p for p in all_gather_object((self.abs_sum, self.count)) if p[0] is not None]
            if parts:
                self.abs_sum = sum(p[0] for p in parts)
                self.count = sum(p[1] for p in parts)

    def draw(self, folder, runner) -> list[Path]:
        if not self.pred:
            return []
        pred, true = np.concatenate(self.pred), np.concatenate(self.true)  # [n, T]
        T = pred.shape[1]
        names = target_names(runner)
        names = names if names is not None and len(names) == T else [f"target {t}" for t in range(T)]
        cols = min(T, 4)
        rows = math.ceil(T / cols)
        fig = _figure(4.2 * cols, 4.0 * rows)
        axes = fig.subplots(rows, cols, squeeze=False).ravel()
        for t in range(T):
            _parity_panel(axes[t], pred[:, t], true[:, t], names[t], self.abs_sum[t], self.count[t])
        for ax in axes[T:]:
            ax.set_axis_off()
        return [_save(fig, folder / "parity.png")]


def _parity_panel(ax, pred: np.ndarray, true: np.ndarray, name: str, abs_sum: float, count: int) -> None:
    """One target: predicted vs true, the line y = x, the MAE over every labelled value in the title."""
    ok = np.isfinite(true) & np.isfinite(pred)
    pred, true = pred[ok], true[ok]
    ax.scatter(true, pred, s=6, alpha=0.5, linewidths=0)
    if len(true):
        lo, hi = float(min(true.min(), pred.min())), float(max(true.max(), pred.max()))
        pad = 0.02 * (hi - lo) if hi > lo else 1.0
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k--", linewidth=1)
        ax.set_xlim(lo - pad, hi + pad)
        ax.set_ylim(lo - pad, hi + pad)
    ax.set_aspect("equal")
    mae = abs_sum / count if count else float("nan")
    shown = "" if len(true) == count else f", {len(true)} shown"
    ax.set_title(f"{name}\nMAE {mae:.4g} ({count} values{shown})", fontsize="small")
    ax.set_xlabel("true")
    ax.set_ylabel("predicted")


class Alignments(Collector):
    """CTC: for the first ``n`` utterances, the per-frame log-probabilities ``[T, K]`` (one more
    forward pass of the model over their batch: the decoder's samples hold only the decoded ids),
    the greedy path ``[T]``, and the hypothesis and reference texts."""

    def __init__(self, n: int):
        self.n, self.examples = n, []

    def add(self, runner, data_batch, outputs) -> None:
        if len(self.examples) >= self.n:
            return
        log_probs = _frame_log_probs(runner, data_batch)  # [(T_b, K)] per sample, or None
        if log_probs is None:
            self.n = 0  # the model cannot give per-frame scores: no picture
            return
        for lp, s in zip(log_probs, outputs[:self.n - len(self.examples)]):
            self.examples.append(dict(log_probs=lp, path=lp.argmax(1), pred_ids=list(s["pred_ids"]),
                                      pred_text=s.get("pred_text", ""), gt_text=s.get("gt_text")))

    def draw(self, folder, runner) -> list[Path]:
        if not self.examples:
            return []
        model = getattr(runner.model, "module", runner.model)
        vocab = getattr(getattr(model, "postprocess", None), "vocab", None)
        K = self.examples[0]["log_probs"].shape[1]
        fig = _figure(12.0, (1.0 + 0.14 * K) * len(self.examples) + 0.5)
        axes = fig.subplots(len(self.examples), 1, squeeze=False)[:, 0]
        for ax, ex in zip(axes, self.examples):
            lp = ex["log_probs"]  # [T, K]
            image = ax.imshow(lp.T, aspect="auto", origin="lower", cmap="viridis", vmin=max(lp.min(), -20.0),
                              vmax=0.0, interpolation="nearest")
            ax.plot(np.arange(len(lp)), ex["path"], ".", color="white", markersize=3)
            if vocab is not None and len(vocab) == K:
                ax.set_yticks(range(K), [repr(v)[1:-1] if v.strip() else repr(v) for v in vocab], fontsize=6)
            ax.set_xlabel("frame")
            ax.set_ylabel("token")
            ref = ex["gt_text"] if ex["gt_text"] is not None else "(none)"
            ax.set_title(f"reference:  {ref}\nhypothesis: {ex['pred_text']}", fontsize="small", loc="left")
            fig.colorbar(image, ax=ax, label="log-probability", pad=0.01)
        return [_save(fig, folder / "ctc_alignment.png")]


def _frame_log_probs(runner, data_batch: Mapping) -> list[np.ndarray] | None:
    """Per-frame log-probabilities ``[(T_b, K)]`` of each sample of the batch (its valid frames, in
    order), from the model's ``predict_scores`` (test-time augmentation included, as the decoder
    saw them); None when the model has no ``predict_scores`` or its output is not per-frame."""
    model = getattr(runner.model, "module", runner.model)
    if not hasattr(model, "predict_scores") or not hasattr(model, "data_preprocessor"):
        return None
    raw = {k: v for k, v in data_batch.items() if k != "_skipped"}  # already reported by the test step
    with torch.no_grad():
        batch = model.data_preprocessor(raw, False)
        scores = model.predict_scores({k: v for k, v in batch.items() if k != "data_samples"})
    if isinstance(scores, Tensor) and scores.dim() == 3:
        scores = Tokens(scores)
    if not isinstance(scores, Tokens) or scores.x.dim() != 3:
        return None
    probs = scores.x.float().cpu()  # [B, L, K]
    mask = scores.mask.cpu() if scores.mask is not None else torch.ones(probs.shape[:2], dtype=torch.bool)
    return [probs[b][mask[b]].clamp_min(1e-30).log().numpy() for b in range(len(probs))]


# ------------------------------------------------------------------------------------------------
# the hook
# ------------------------------------------------------------------------------------------------
class ResultPictures(Hook):
    """Pictures of the test results in ``<runner.log_dir>/pictures/`` (module doc).

    Args:
        num_examples: samples drawn for dense prediction and CTC (default 4).
        max_pairs: (true, predicted) rows kept for the parity plot (the MAE uses every value).
        max_points: points drawn per point cloud.

    ``tools/test.py`` adds it (``build_runner(..., for_test=True)``); a config sets its arguments
    with ``test_pictures=dict(num_examples=2)`` and turns it off with ``test_pictures=None``.
    """

    priority = "LOW"

    def __init__(self, num_examples: int = 4, max_pairs: int = 4000, max_points: int = 20000):
        for name, value in (("num_examples", num_examples), ("max_pairs", max_pairs), ("max_points", max_points)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"test_pictures.{name} must be an integer >= 0; got {value!r}")
        self.num_examples, self.max_pairs, self.max_points = num_examples, max_pairs, max_points
        self.collector: Collector | None = None
        self.files: list[Path] = []
        self._enabled = True
        self._decided = False

    def before_test(self, runner) -> None:
        self.collector, self.files, self._decided = None, [], False
        self._enabled = matplotlib_available()
        if not self._enabled:
            runner.logger.warning("test pictures: matplotlib is not installed, so none are written "
                                  "(pip install matplotlib; test_pictures=None turns them off)")

    def after_test_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if not self._enabled or not outputs or not isinstance(outputs[0], Mapping):
            return
        if not self._decided:
            self.collector = choose_collector(outputs[0], data_batch, self)
            self._decided = True
        if self.collector is not None:
            self.collector.add(runner, data_batch, outputs)

    def after_test_epoch(self, runner, metrics=None) -> None:
        if self.collector is None:
            return
        self.collector.gather()  # every rank takes part
        if not is_main_process():
            return
        folder = Path(runner.log_dir) / FOLDER
        folder.mkdir(parents=True, exist_ok=True)
        try:
            self.files = self.collector.draw(folder, runner)
        except Exception as e:  # noqa: BLE001 - a picture that fails must not cost the test's metrics
            runner.logger.warning(f"test pictures: drawing {type(self.collector).__name__} failed: "
                                  f"{type(e).__name__}: {e}")
            return
        if self.files:
            runner.logger.info(f"test pictures in {folder}: {', '.join(p.name for p in self.files)}")

"""Regression: sample-level (graph properties, ...) or per-token targets, MAE / RMSE.

Targets often live far from zero with a large spread (QM9 energies, solubilities). The head works
in normalised units and reports in target units: its output layer is reparametrised as
``mean + std * f(x)``, with the training set's ``mean`` and ``std`` (see :func:`target_stats`) held
as buffers. The loss divides the error by ``std`` too, so its scale is about 1 whatever the units.

Pieces (DESIGN.md, "The task layer, one for all"):

- ``RegressionHead``: ``BackboneOutput -> [B, T]`` predictions (or ``Tokens`` with ``x [B, L, T]``
  for per-token regression);
- ``RegressionLoss``: ``(output, data_samples, tokens) -> loss``; NaN targets are missing labels;
- ``RegressionPost``: one ``dict(pred, gt)`` per sample;
- ``RegressionMetric``: ``MAE`` and ``RMSE``, overall and per target.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.evaluator import BaseMetric
from torch import Tensor, nn

from glocal.core.dropout import Dropout
from glocal.core.errors import ConfigError, InputError
from glocal.core.tokens import Tokens

__all__ = ["RegressionHead", "RegressionLoss", "RegressionPost", "RegressionMetric", "target_stats"]


def _per_target(value, num_targets: int, name: str) -> Tensor:
    """A scalar or one value per target -> ``[T]`` float tensor."""
    t = torch.as_tensor(value, dtype=torch.float32).reshape(-1)
    if t.numel() == 1:
        t = t.expand(num_targets).clone()
    if t.numel() != num_targets:
        raise ConfigError(f"{name} needs a scalar or {num_targets} values (one per target); got {t.numel()}")
    return t


def target_stats(values) -> tuple:
    """Mean and standard deviation of training targets, for ``target_mean`` / ``target_std``.

    ``values``: ``[N]`` or ``[N, T]`` (array, tensor or list); NaN entries (missing labels) are
    ignored. Returns floats for ``[N]`` input, lists of ``T`` floats for ``[N, T]``. A target with
    zero spread (or fewer than two labels) gets std 1.0 so nothing is divided by zero.

    >>> target_stats([40.0, 50.0, 60.0])
    (50.0, 8.16496580927726)
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim not in (1, 2):
        raise InputError(f"target_stats takes [N] or [N, T] values; got shape {v.shape}")
    flat = v.reshape(v.shape[0], -1)  # [N, T]
    present = ~np.isnan(flat)
    if not present.any(axis=0).all():
        raise InputError("target_stats: a target has no labelled (non-NaN) value")
    count = present.sum(0)
    mean = np.where(present, flat, 0.0).sum(0) / count  # [T]
    var = np.where(present, (flat - mean) ** 2, 0.0).sum(0) / count
    std = np.sqrt(var)
    std = np.where((std > 0) & (count > 1), std, 1.0)
    if v.ndim == 1:
        return float(mean[0]), float(std[0])
    return [float(m) for m in mean], [float(s) for s in std]


class RegressionHead(nn.Module):
    """Masked mean pool -> optional hidden MLP -> ``Linear`` to ``num_targets``, in target units.

    Args:
        in_dim: channels of the last stage.
        num_targets: ``T``, values predicted per sample (or per token).
        hidden: width of a hidden layer (GELU), a list of widths, or None for none.
        drop: dropout before each linear layer after the pool.
        target_mean, target_std: the training targets' mean and std (a scalar, broadcast, or one per
            target); predictions are ``target_mean + target_std * f(x)``, so ``f`` works in
            normalised units.
        pool: ``"mean"``: one prediction per sample from the mean over valid tokens, ``[B, T]``;
            ``"token"``: one per token, returned as ``Tokens`` with ``x [B, L, T]`` (padded rows
            are never read downstream).
    """

    postprocess = dict(type="RegressionPost")  # the task model's default

    def __init__(self, in_dim: int, num_targets: int = 1, hidden: int | Sequence[int] | None = None,
                 drop: float = 0.0, target_mean=0.0, target_std=1.0, pool: str = "mean"):
        super().__init__()
        if pool not in ("mean", "token"):
            raise ConfigError(f"RegressionHead pool must be 'mean' or 'token'; got {pool!r}")
        self.pool, self.num_targets = pool, num_targets
        widths = [] if hidden is None else [hidden] if isinstance(hidden, int) else list(hidden)
        layers, prev = [], in_dim
        for w in widths:
            layers += [Dropout(drop), nn.Linear(prev, w), nn.GELU()]
            prev = w
        self.mlp = nn.Sequential(*layers)
        self.drop = Dropout(drop)
        self.fc = nn.Linear(prev, num_targets)
        std = _per_target(target_std, num_targets, "target_std")
        if bool((std <= 0).any()):
            raise ConfigError(f"target_std must be positive; got {std.tolist()}")
        self.register_buffer("target_mean", _per_target(target_mean, num_targets, "target_mean"))  # [T]
        self.register_buffer("target_std", std)  # [T]

    def forward(self, feats) -> Tensor | Tokens:
        tokens = feats if isinstance(feats, Tokens) else feats.last
        x = tokens.masked_mean() if self.pool == "mean" else tokens.x  # [B, C] or [B, L, C]
        z = self.fc(self.drop(self.mlp(x)))  # normalised units: [B, T] or [B, L, T]
        pred = self.target_mean.to(z.dtype) + self.target_std.to(z.dtype) * z
        return pred if self.pool == "mean" else tokens.replace(x=pred)


def _pred_target(output: Tensor | Tokens, data_samples: Mapping | None, key: str,
                 required: bool = True) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """``(pred [..., T], target [..., T] or None, valid [...] or None)``: per sample ``[B, T]``,
    per token ``[B, L, T]`` with the tokens' validity ``[B, L]``. Targets ``[B]`` / ``[B, L]`` are
    read as one target."""
    if isinstance(output, Tokens):
        pred, valid = output.x, output.valid()  # [B, L, T], [B, L]
    else:
        pred, valid = output, None  # [B, T]
    if pred.dim() == 1:
        pred = pred.unsqueeze(-1)
    if not isinstance(data_samples, Mapping) or key not in data_samples:
        if not required:
            return pred, None, valid
        present = sorted(data_samples) if isinstance(data_samples, Mapping) else type(data_samples).__name__
        raise InputError(f"the regression targets {key!r} are missing from data_samples (keys present: "
                         f"{present}); set target= to the key the dataset uses")
    target = torch.as_tensor(data_samples[key]).to(device=pred.device, dtype=torch.float32)
    if target.dim() == pred.dim() - 1 and pred.shape[-1] == 1:
        target = target.unsqueeze(-1)  # [B] -> [B, 1] (or [B, L] -> [B, L, 1])
    if target.shape != pred.shape:
        raise InputError(f"regression targets {key!r} have shape {tuple(target.shape)} but the "
                         f"predictions have {tuple(pred.shape)}: give the head num_targets = "
                         f"{target.shape[-1] if target.dim() == pred.dim() else 1}")
    return pred, target, valid


class RegressionLoss(nn.Module):
    """L1, MSE or smooth-L1 on the error in normalised units ``(pred - target) / target_std``.

    Args:
        kind: ``"l1"``, ``"mse"`` or ``"smooth_l1"`` (beta 1, in normalised units).
        target: key of the targets in ``data_samples``: ``[B]`` or ``[B, T]`` (per token
            ``[B, L]`` / ``[B, L, T]``).
        target_std: the head's ``target_std`` (scalar or one per target).

    NaN targets are missing labels and left out of the mean (so are padded tokens); a batch with
    no label at all is an error.
    """

    KINDS = ("l1", "mse", "smooth_l1")

    def __init__(self, kind: str = "l1", target: str = "target", target_std=1.0):
        super().__init__()
        if kind not in self.KINDS:
            raise ConfigError(f"RegressionLoss kind must be one of {self.KINDS}; got {kind!r}")
        self.kind, self.target = kind, target
        self.register_buffer("target_std", torch.as_tensor(target_std, dtype=torch.float32).reshape(-1),
                             persistent=False)  # [1] or [T]; a setting, not a weight

    def forward(self, output: Tensor | Tokens, data_samples: Mapping, tokens: Tokens | None = None) -> Tensor:
        pred, target, valid = _pred_target(output, data_samples, self.target)
        labelled = ~torch.isnan(target)  # [..., T]
        if valid is not None:
            labelled &= valid.unsqueeze(-1)
        if not bool(labelled.any()):
            raise InputError(f"no sample in this batch has a label for {self.target!r} (every target is "
                             f"NaN or padding): drop unlabelled samples from the training set")
        std = self.target_std.to(pred.device)
        if std.numel() not in (1, pred.shape[-1]):
            raise ConfigError(f"RegressionLoss target_std has {std.numel()} values for "
                              f"{pred.shape[-1]} targets")
        err = (pred.float() - target.nan_to_num()) / std  # [..., T], normalised units
        err = err[labelled]  # [N] labelled entries only
        zero = torch.zeros_like(err)
        if self.kind == "l1":
            return F.l1_loss(err, zero)
        if self.kind == "mse":
            return F.mse_loss(err, zero)
        return F.smooth_l1_loss(err, zero, beta=1.0)


class RegressionPost:
    """Test-time post-processing: per sample ``dict(pred=[T], gt=[T])`` (per-token output: the
    valid tokens' ``[N_i, T]``), detached on the CPU; ``gt`` only when the targets are present."""

    @staticmethod
    def activate(output: Tensor | Tokens) -> Tensor | Tokens:
        """Predictions are averaged as they are under test-time augmentation."""
        return output

    def __init__(self, target: str = "target"):
        self.target = target

    def __call__(self, output: Tensor | Tokens, data_samples: Mapping | None = None) -> list[dict]:
        pred, target, valid = _pred_target(output, data_samples, self.target, required=False)
        pred = pred.detach().float().cpu()
        target = target.cpu() if target is not None else None
        results = []
        for b in range(pred.shape[0]):
            keep = slice(None) if valid is None else valid[b].cpu()
            r = dict(pred=pred[b][keep])
            if target is not None:
                r["gt"] = target[b][keep]
            results.append(r)
        return results


class RegressionMetric(BaseMetric):
    """Mean absolute error and root mean squared error, in target units.

    ``MAE`` and ``RMSE`` over every labelled value (NaN ground truth is skipped); with more than
    one target also ``MAE/<name>`` and ``RMSE/<name>`` per target, ``name`` from ``names`` or the
    target's index. Targets in different units have no common MAE: given ``target_std`` (one per
    target), the overall numbers are ``stdMAE`` and ``stdRMSE`` instead, the mean over targets of
    each target's error divided by its std (unitless; the "std. MAE" of QM9 papers).
    """

    default_prefix = ""

    def __init__(self, names: Sequence[str] | None = None, target_std: Sequence[float] | None = None,
                 collect_device: str = "cpu", prefix: str | None = None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.names = list(names) if names is not None else None
        self.target_std = None if target_std is None else [float(v) for v in target_std]

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for s in data_samples:
            if "gt" not in s:
                raise InputError(f"RegressionMetric needs 'gt' in each sample; got keys {sorted(s)} "
                                 f"(are the targets in the test batches?)")
            pred = torch.as_tensor(s["pred"], dtype=torch.float32).cpu()
            gt = torch.as_tensor(s["gt"], dtype=torch.float32).cpu()
            T = pred.shape[-1] if pred.dim() else 1
            self.results.append((pred.reshape(-1, T), gt.reshape(-1, T)))

    def compute_metrics(self, results: list) -> dict:
        pred = torch.cat([r[0] for r in results])  # [N, T]
        gt = torch.cat([r[1] for r in results])
        err = pred - gt
        labelled = ~torch.isnan(gt)

        def summary(e: Tensor) -> tuple[float, float]:
            if e.numel() == 0:
                return math.nan, math.nan
            return float(e.abs().mean()), float(e.pow(2).mean().sqrt())

        T = err.shape[1]
        if self.target_std is not None and len(self.target_std) != T:
            raise ConfigError(f"RegressionMetric has {len(self.target_std)} target_std values for {T} targets")
        if self.target_std is None or T == 1:
            out = dict(zip(("MAE", "RMSE"), summary(err[labelled])))
        else:
            per = [summary(err[:, i][labelled[:, i]]) for i in range(T)]
            out = dict(stdMAE=sum(m / s for (m, _), s in zip(per, self.target_std)) / T,
                       stdRMSE=sum(r / s for (_, r), s in zip(per, self.target_std)) / T)
        if T > 1:
            names = self.names or [str(i) for i in range(T)]
            if len(names) != T:
                raise ConfigError(f"RegressionMetric has {len(names)} names for {T} targets")
            for i, name in enumerate(names):
                mae, rmse = summary(err[:, i][labelled[:, i]])
                out[f"MAE/{name}"], out[f"RMSE/{name}"] = mae, rmse
        return out

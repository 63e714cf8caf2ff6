"""ROC-AUC: the rank formula against the pairwise definition, and the metric on post-processed dicts."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from glocal.tasks.metrics import ROCAUC, roc_auc, roc_auc_reference


@pytest.mark.parametrize("seed", range(5))
def test_rank_formula_matches_the_pairwise_definition_with_ties(seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 6, size=200).astype(float)  # many ties
    positive = rng.random(200) < 0.3 + 0.1 * scores / 5
    assert roc_auc(scores, positive) == pytest.approx(roc_auc_reference(scores, positive), abs=1e-12)


def test_known_values():
    assert roc_auc([0.1, 0.2, 0.8, 0.9], [False, False, True, True]) == 1.0
    assert roc_auc([0.9, 0.8, 0.2, 0.1], [False, False, True, True]) == 0.0
    assert roc_auc([0.5, 0.5], [True, False]) == 0.5
    assert math.isnan(roc_auc([0.1, 0.2], [True, True]))


def test_metric_binary_and_macro():
    metric = ROCAUC(class_names=["a", "b", "c"])
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=60)
    scores = torch.softmax(torch.as_tensor(rng.normal(size=(60, 3)) + 2.0 * np.eye(3)[labels]), -1)
    metric.process(None, [dict(pred_scores=s, gt_label=int(y)) for s, y in zip(scores, labels)])
    out = metric.compute_metrics(metric.results)
    per = [roc_auc_reference(scores[:, k].numpy(), labels == k) * 100 for k in range(3)]
    assert out["AUC/b"] == pytest.approx(per[1])
    assert out["AUC"] == pytest.approx(np.mean(per))
    binary = ROCAUC()
    binary.process(None, [dict(pred_scores=torch.tensor([1 - p, p]), gt_label=y) for p, y in [(0.9, 1), (0.2, 0), (0.4, 1)]])
    assert binary.compute_metrics(binary.results) == {"AUC": 100.0}

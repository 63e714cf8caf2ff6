import math

import pytest
import torch
from torch import nn

from glocal.core.backbone import BackboneOutput
from glocal.core.errors import ConfigError, InputError
from glocal.core.tokens import Tokens
from glocal.tasks.regression import (RegressionHead, RegressionLoss, RegressionMetric, RegressionPost,
                                     target_stats)


def _feats(x, mask=None):
    return BackboneOutput(stages=[Tokens(x, mask=mask)])


# -- the head ---------------------------------------------------------------------------------------

def test_head_reports_in_target_units_and_ignores_padding():
    head = RegressionHead(8, num_targets=2, hidden=16, target_mean=[50.0, -3.0], target_std=10.0)
    assert head.target_std.tolist() == [10.0, 10.0]  # the scalar is broadcast
    nn.init.zeros_(head.fc.weight)
    nn.init.zeros_(head.fc.bias)
    x = torch.randn(3, 5, 8)
    torch.testing.assert_close(head(_feats(x)), torch.tensor([[50.0, -3.0]]).expand(3, 2))  # f = 0: the mean

    head = RegressionHead(8, num_targets=2, hidden=[16, 4], target_mean=[50.0, -3.0], target_std=[10.0, 2.0])
    mask = torch.tensor([[True] * 5, [True, True, False, False, False], [True] * 3 + [False] * 2])
    pred = head(_feats(x, mask))  # [3, 2]
    garbage = x.masked_fill(~mask[..., None], 1e6)
    torch.testing.assert_close(head(_feats(garbage, mask)), pred)  # padding never contributes
    torch.testing.assert_close(pred[1], head(_feats(x[1:2, :2]))[0])
    # the network works in normalised units: f(x) = (pred - mean) / std
    z = head.fc(head.mlp(x.masked_fill(~mask[..., None], 0).sum(1) / mask.sum(1, keepdim=True)))
    torch.testing.assert_close(pred, torch.tensor([50.0, -3.0]) + torch.tensor([10.0, 2.0]) * z)
    assert {n for n, _ in head.named_buffers()} == {"target_mean", "target_std"}
    assert "target_mean" in head.state_dict()


def test_token_pool_keeps_tokens():
    mask = torch.tensor([[True, True, False]])
    out = RegressionHead(4, num_targets=3, pool="token", target_mean=1.0)(_feats(torch.randn(1, 3, 4), mask))
    assert isinstance(out, Tokens) and out.x.shape == (1, 3, 3) and out.mask is mask
    with pytest.raises(ConfigError, match="pool"):
        RegressionHead(4, pool="max")
    with pytest.raises(ConfigError, match="target_std"):
        RegressionHead(4, num_targets=2, target_std=[1.0, 2.0, 3.0])


# -- the loss ---------------------------------------------------------------------------------------

def test_loss_in_normalised_units_and_target_shapes():
    pred = torch.tensor([[52.0], [40.0], [50.0]])  # [B, 1]
    target = torch.tensor([50.0, 50.0, 50.0])  # [B]
    assert RegressionLoss("l1", target_std=10.0)(pred, dict(target=target)).item() == pytest.approx(0.4)
    loss = RegressionLoss("mse", target_std=10.0)(pred, dict(target=target[:, None]))  # [B, 1]
    assert loss.item() == pytest.approx((0.04 + 1.0) / 3)
    loss = RegressionLoss("smooth_l1", target_std=1.0)(pred, dict(target=target))
    assert loss.item() == pytest.approx((1.5 + 9.5 + 0.0) / 3)
    with pytest.raises(InputError, match="num_targets = 2"):
        RegressionLoss()(pred, dict(target=torch.zeros(3, 2)))
    with pytest.raises(InputError, match=r"'y' are missing.*\['target'\]"):
        RegressionLoss(target="y")(pred, dict(target=target))
    with pytest.raises(ConfigError):
        RegressionLoss("huber")


def test_loss_masks_missing_labels_and_per_target_std():
    pred = torch.tensor([[1.0, 10.0], [3.0, 20.0]], requires_grad=True)  # [B, T]
    target = torch.tensor([[0.0, float("nan")], [float("nan"), 0.0]])
    loss = RegressionLoss("l1", target_std=[1.0, 10.0])(pred, dict(target=target))
    assert loss.item() == pytest.approx((1.0 + 2.0) / 2)
    loss.backward()
    assert torch.isfinite(pred.grad).all() and pred.grad[0, 1] == 0 and pred.grad[1, 0] == 0
    with pytest.raises(InputError, match="no sample in this batch has a label"):
        RegressionLoss()(pred, dict(target=torch.full((2, 2), float("nan"))))


def test_per_token_loss_and_post_skip_padding():
    mask = torch.tensor([[True, True, False], [True, False, False]])
    out = Tokens(torch.tensor([[1.0, 2.0, 99.0], [4.0, 99.0, 99.0]])[..., None], mask=mask)  # x [B, L, 1]
    target = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])  # [B, L]
    assert RegressionLoss("l1")(out, dict(target=target)).item() == pytest.approx(7.0 / 3)
    res = RegressionPost()(out, dict(target=target))
    assert res[0]["pred"].tolist() == [[1.0], [2.0]] and res[1]["gt"].tolist() == [[0.0]]


# -- post-processing and the metric -----------------------------------------------------------------

def test_post_and_metric_known_values():
    pred = torch.tensor([[1.0, 10.0], [3.0, 20.0], [5.0, 30.0]])
    gt = torch.tensor([[2.0, 10.0], [3.0, 24.0], [1.0, float("nan")]])
    samples = RegressionPost()(pred, dict(target=gt))
    assert len(samples) == 3 and samples[0]["pred"].shape == (2,) and samples[0]["gt"].shape == (2,)
    assert RegressionPost()(pred)[1].keys() == {"pred"}  # no targets: predictions only
    metric = RegressionMetric(names=["a", "b"])
    metric.process(None, samples[:2])
    metric.process(None, samples[2:])
    res = metric.compute_metrics(metric.results)
    errors = [1.0, 0.0, 0.0, 4.0, 4.0]  # the NaN label is skipped
    assert res["MAE"] == pytest.approx(9.0 / 5)
    assert res["RMSE"] == pytest.approx(math.sqrt(sum(e * e for e in errors) / 5))
    assert res["MAE/a"] == pytest.approx(5.0 / 3) and res["MAE/b"] == pytest.approx(2.0)
    assert res["RMSE/b"] == pytest.approx(math.sqrt(8.0))

    single = RegressionMetric()
    one_target = RegressionPost()(torch.tensor([[1.0], [2.0]]), dict(target=torch.tensor([0.0, 0.0])))
    single.process(None, one_target)
    assert single.compute_metrics(single.results) == pytest.approx(dict(MAE=1.5, RMSE=math.sqrt(2.5)))
    with pytest.raises(InputError, match="'gt'"):
        single.process(None, [dict(pred=torch.zeros(1))])


def test_target_stats():
    mean, std = target_stats([40.0, 50.0, 60.0])
    assert mean == pytest.approx(50.0) and std == pytest.approx(math.sqrt(200 / 3))
    mean, std = target_stats(torch.tensor([[1.0, 5.0], [3.0, 5.0], [float("nan"), 5.0]]))
    assert mean == pytest.approx([2.0, 5.0]) and std == pytest.approx([1.0, 1.0])  # constant -> 1
    with pytest.raises(InputError, match="no labelled"):
        target_stats([[1.0, float("nan")]])


def test_docstring_examples():
    import doctest

    import glocal.tasks.regression as module
    assert doctest.testmod(module).failed == 0


# -- learning on a synthetic target -----------------------------------------------------------------

def _sets(n, gen):
    """Sets of 3-10 tokens with 4 features; the target, mean about 50 and std about 10, is a
    nonlinear function of each token summed over the valid tokens (divided by their count).
    Padding is loud garbage."""
    L = 10
    lengths = torch.randint(3, L + 1, (n,), generator=gen)
    mask = torch.arange(L) < lengths[:, None]  # [n, L]
    x = torch.randn(n, L, 4, generator=gen)
    per_token = x[..., 0] + 0.5 * x[..., 1] ** 2 - x[..., 2] * x[..., 3]  # [n, L]
    s = (per_token * mask).sum(1) / lengths  # mean over the valid tokens: mean 0.5, std about 0.64
    target = 50.0 + 10.0 * (s - 0.5) / 0.64
    return x.masked_fill(~mask[..., None], 7.0), mask, target



def test_regression_learns_synthetic_target(one_thread):
    torch.manual_seed(0)
    x, mask, y = _sets(2048, torch.Generator().manual_seed(1))
    xt, mt, yt = _sets(512, torch.Generator().manual_seed(2))  # held out
    mean, std = target_stats(y)
    assert 45 < mean < 55 and 7 < std < 13
    token_mlp = nn.Sequential(nn.Linear(4, 32), nn.GELU(), nn.Linear(32, 32), nn.GELU())
    head = RegressionHead(32, hidden=32, target_mean=mean, target_std=std)
    loss_fn = RegressionLoss("l1", target_std=std)
    params = list(token_mlp.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=3e-3)

    def predict(x, mask):
        return head(BackboneOutput(stages=[Tokens(token_mlp(x), mask=mask)]))  # [B, 1]

    for step in range(300):
        i = torch.randint(0, len(y), (64,))
        loss = loss_fn(predict(x[i], mask[i]), dict(target=y[i]))
        opt.zero_grad()
        loss.backward()
        opt.step()

    with torch.no_grad():
        samples = RegressionPost()(predict(xt, mt), dict(target=yt))
    metric = RegressionMetric()
    metric.process(None, samples)
    mae = metric.compute_metrics(metric.results)["MAE"]
    baseline = (yt - mean).abs().mean().item()  # predict the training mean
    assert mae < 0.15 * baseline, f"MAE {mae:.2f} vs predict-the-mean {baseline:.2f}"


def test_metric_standardised_overall_for_targets_in_different_units():
    metric = RegressionMetric(names=["a [D]", "b [meV]"], target_std=[2.0, 100.0])
    pred, gt = torch.tensor([[1.0, 100.0], [3.0, 300.0]]), torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    metric.process(None, [dict(pred=p, gt=g) for p, g in zip(pred, gt)])
    out = metric.compute_metrics(metric.results)
    assert "MAE" not in out  # no mean over mixed units
    assert out["MAE/a [D]"] == pytest.approx(2.0) and out["MAE/b [meV]"] == pytest.approx(200.0)
    assert out["stdMAE"] == pytest.approx((2.0 / 2.0 + 200.0 / 100.0) / 2)
    assert out["stdRMSE"] == pytest.approx((5.0 ** 0.5 / 2.0 + 50000.0 ** 0.5 / 100.0) / 2)
    with pytest.raises(ConfigError, match="target_std"):
        RegressionMetric(target_std=[1.0]).compute_metrics(metric.results)

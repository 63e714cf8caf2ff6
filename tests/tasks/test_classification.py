import pytest
import torch

from glocal.core import ConfigError
from glocal.tasks.registry import METRICS, MODELS

TINY = dict(type="Classifier",
            adapter=dict(type="ConvStem", in_chans=1, dims=(8, 16), strides=(2, 2)),
            backbone=dict(type="Backbone", stages=[
                dict(dim=16, depth=1, blocks=dict(local=dict(type="DepthwiseConv", kernel=3))),
                dict(dim=32, depth=1, blocks=dict(global_=dict(type="FullAttention", heads=2)))]),
            head=dict(type="ClsHead", num_classes=10),
            data_preprocessor=dict(type="ImageDataPreprocessor", mean=(0.3,), std=(0.35,)))


def test_modes():
    model = MODELS.build(TINY)
    data = model.data_preprocessor(dict(inputs=torch.randint(0, 255, (4, 1, 28, 28), dtype=torch.uint8),
                                        data_samples=dict(label=torch.tensor([0, 1, 2, 3]))), True)
    logits = model(**data, mode="tensor")
    assert logits.shape == (4, 10)
    loss = model(**data, mode="loss")["loss"]
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    preds = model(**data, mode="predict")
    assert len(preds) == 4 and preds[2]["gt_label"] == 2 and preds[0]["pred_scores"].shape == (10,)


def test_flip_tta_averages_probabilities_of_plain_and_flipped_inputs():
    torch.manual_seed(0)
    model = MODELS.build(dict(TINY, tta_flip_dims=(-1,))).eval()
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        expected = (model(x).softmax(-1) + model(x.flip(-1)).softmax(-1)) / 2
        preds = model(x, mode="predict")
        plain = MODELS.build(TINY)
        plain.load_state_dict(model.state_dict())
        plain_scores = torch.stack([p["pred_scores"] for p in plain.eval()(x, mode="predict")])
    scores = torch.stack([p["pred_scores"] for p in preds])
    torch.testing.assert_close(scores, expected)
    assert not torch.allclose(scores, plain_scores, atol=1e-4)  # the flip changed something
    assert torch.allclose(scores.sum(-1), torch.ones(3))


def test_backbone_gets_adapter_downsampler_by_default():
    model = MODELS.build(TINY)
    assert type(model.backbone.downsamplers[1]).__name__ == "PatchMerging"  # from the adapter
    cfg = dict(TINY, backbone=dict(TINY["backbone"], downsample=dict(type="ConvDownsample")))
    assert type(MODELS.build(cfg).backbone.downsamplers[1]).__name__ == "ConvDownsample"


def test_accuracy_metric():
    acc = METRICS.build(dict(type="Accuracy", topk=(1, 2)))
    scores = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5]])
    acc.process(None, [dict(pred_scores=s, gt_label=torch.tensor(y)) for s, y in zip(scores, [1, 1, 0])])
    res = acc.compute_metrics(acc.results)
    assert res["top1"] == pytest.approx(100 / 3) and res["top2"] == pytest.approx(200 / 3)
    assert "mAcc" not in res


def test_mean_class_accuracy_weighs_classes_equally():
    acc = METRICS.build(dict(type="Accuracy", topk=(1,), mean_class=True))
    # class 0: 3 of 4 right; class 2: 0 of 1 right -> overall 60%, mean class accuracy 37.5%
    scores = torch.tensor([[0.9, 0.1, 0.0]] * 3 + [[0.1, 0.9, 0.0], [0.8, 0.1, 0.1]])
    acc.process(None, [dict(pred_scores=s, gt_label=torch.tensor(y)) for s, y in zip(scores, [0, 0, 0, 0, 2])])
    res = acc.compute_metrics(acc.results)
    assert res["top1"] == pytest.approx(60.0) and res["mAcc"] == pytest.approx(37.5)


def test_unknown_types_and_keys():
    with pytest.raises(ConfigError, match="unknown model type='Classifer'.*Classifier"):
        MODELS.build(dict(TINY, type="Classifer"))
    with pytest.raises(ConfigError, match="unknown adapter type='PachStem'.*PatchStem"):
        MODELS.build(dict(TINY, adapter=dict(type="PachStem")))
    with pytest.raises(ConfigError, match="no argument 'dpeths'.*depths"):
        MODELS.build(dict(TINY, backbone=dict(type="swin_t", dpeths=(1, 1, 1, 1))))

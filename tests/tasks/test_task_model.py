"""The one task model: classification, dense per-element prediction and ragged batches through the
same class; test-time augmentation as a component; clear errors for wrong use."""
import pytest
import torch
from torch import nn

from glocal.core.errors import ConfigError, InputError
from glocal.core.tokens import Tokens
from glocal.core.undo import IdentityUndo
from glocal.modalities.batch import BatchPreprocessor, PadCollate, require_field
from glocal.tasks.api import build_model
from glocal.tasks.registry import MODELS

LOCAL = dict(local=dict(type="DepthwiseConv", kernel=3), ffn=dict(type="Mlp", ratio=2))
GLOBAL = dict(global_=dict(type="FullAttention", heads=2), ffn=dict(type="Mlp", ratio=2))


def _dense(**head):
    return build_model(dict(
        type="TaskModel",
        adapter=dict(type="ConvStem", in_chans=1, dims=(8, 16), strides=(1, 2)),
        backbone=dict(type="Backbone", downsample=dict(type="ConvDownsample"),
                      stages=[dict(dim=16, depth=1, blocks=LOCAL), dict(dim=32, depth=1, blocks=GLOBAL)]),
        head=dict(type="UNetHead", num_classes=5, dim=16, **head),
        loss=dict(type="CrossEntropyLoss", target="seg")))


def test_dense_head_gives_logits_at_the_input_resolution_and_trains():
    model = _dense()
    x = torch.randn(2, 1, 27, 30)  # odd sizes: the stem and downsampler pad; the undos crop
    out = model(x)
    assert isinstance(out, Tokens) and out.grid == (27, 30) and out.x.shape == (2, 27 * 30, 5)
    seg = torch.randint(0, 5, (2, 27, 30))
    seg[0, :3] = -100  # unlabelled pixels
    loss = model(x, dict(seg=seg), mode="loss")["loss"]
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    preds = model(x, dict(seg=seg), mode="predict")
    assert len(preds) == 2 and preds[0]["pred_seg"].shape == (27 * 30,)
    assert (preds[0]["gt_seg"].view(27, 30)[:3] == -100).all()


def test_dense_head_on_stem_tokens_when_not_to_input():
    out = _dense(to_input=False)(torch.randn(1, 1, 16, 16))
    assert out.grid == (8, 8) and out.x.shape == (1, 64, 5)


def test_flip_tta_maps_dense_outputs_back():
    """A per-pixel (pointwise) model is flip-equivariant: with the flip mapped back, the
    test-time-augmented prediction equals the plain one; without mapping back it would not."""
    cfg = dict(type="TaskModel", adapter=dict(type="PatchStem", in_chans=1, dim=8, patch=1, norm=None),
               backbone=dict(type="Backbone", stages=[dict(dim=8, depth=1, blocks=dict(ffn=dict(type="Mlp")))]),
               head=dict(type="UNetHead", num_classes=3, dim=8, block=None), loss=dict(type="CrossEntropyLoss"))
    torch.manual_seed(0)
    plain = build_model(cfg).eval()
    tta = build_model({**cfg, "tta": dict(type="FlipTTA", dims=(-1, -2))}).eval()
    tta.load_state_dict(plain.state_dict())
    x = torch.randn(2, 1, 6, 7)
    with torch.no_grad():
        a, b = plain.predict_scores(dict(inputs=x)), tta.predict_scores(dict(inputs=x))
    torch.testing.assert_close(a.x, b.x)
    flipped = plain.predict_scores(dict(inputs=x.flip(-1)))
    assert not torch.allclose(flipped.x, a.x)


def test_classifier_config_is_a_task_model_with_flip_tta():
    m = MODELS.build(dict(type="Classifier", adapter=dict(type="PatchStem", in_chans=1, dim=16, patch=4),
                          backbone=dict(type="Backbone", stages=[dict(dim=16, depth=1, blocks=LOCAL)]),
                          head=dict(type="ClsHead", num_classes=4), tta_flip_dims=(-1,))).eval()
    x = torch.randn(3, 1, 12, 12)
    with torch.no_grad():
        preds = m(x, dict(label=torch.tensor([0, 1, 2])), mode="predict")
        expect = (m(x).softmax(-1) + m(x.flip(-1)).softmax(-1)) / 2
    torch.testing.assert_close(torch.stack([p["pred_scores"] for p in preds]), expect)
    assert [int(p["gt_label"]) for p in preds] == [0, 1, 2]


def _video_classifier(**tta):
    return build_model(dict(
        type="TaskModel", adapter=dict(type="TubeletStem", in_chans=3, dim=16, patch=(2, 4, 4)),
        backbone=dict(type="Backbone", stages=[dict(dim=16, depth=1, blocks=dict(
            local=dict(type="DepthwiseConv", kernel=3, rank=3), ffn=dict(type="Mlp", ratio=2)))]),
        head=dict(type="ClsHead", num_classes=8), **({"tta": dict(type="MultiViewTTA", **tta)} if tta else {})))


@pytest.mark.parametrize("average", ["prob", "score"])
def test_multi_view_tta_averages_the_views_of_each_clip(average):
    """Clips [B, V, C, T, H, W] (2 clips x 3 crops) run as one batch of B * V; each clip's score is
    the mean of its views' probabilities ('prob') or the softmax of its views' mean logits ('score'),
    as computed by hand view by view; labels pass through untouched."""
    torch.manual_seed(0)
    model = _video_classifier(average=average).eval()
    x = torch.randn(2, 6, 3, 4, 8, 8)  # B=2, V=6
    labels = torch.tensor([3, 5])
    with torch.no_grad():
        preds = model(x, dict(label=labels), mode="predict")
        per_view = torch.stack([model(x[:, v]) for v in range(6)], 1)  # [B, V, K] logits, view by view
    expect = per_view.softmax(-1).mean(1) if average == "prob" else per_view.mean(1).softmax(-1)
    got = torch.stack([p["pred_scores"] for p in preds])
    torch.testing.assert_close(got, expect, rtol=1e-5, atol=1e-6)
    assert [int(p["gt_label"]) for p in preds] == [3, 5] and labels.tolist() == [3, 5]
    if average == "prob":  # the two averages differ: the option is real
        assert not torch.allclose(got, per_view.mean(1).softmax(-1))


def test_multi_view_tta_with_one_view_and_with_single_view_batches():
    """V = 1 is the plain prediction; a batch of single views [B, C, T, H, W] (the val loader's
    centre crops) passes through; per-sample structure is repeated per view; dense outputs and
    wrong ranks are clear errors."""
    from glocal.tasks.tta import MultiViewTTA

    torch.manual_seed(0)
    model = _video_classifier(average="prob").eval()
    plain = _video_classifier().eval()
    plain.load_state_dict(model.state_dict())
    x = torch.randn(3, 3, 4, 8, 8)
    with torch.no_grad():
        expect = plain.predict_scores(dict(inputs=x))
        torch.testing.assert_close(model.predict_scores(dict(inputs=x[:, None])), expect)  # V = 1
        torch.testing.assert_close(model.predict_scores(dict(inputs=x)), expect)  # no view dim
    tta = MultiViewTTA()
    (view, back), = tta.views(dict(inputs=torch.zeros(2, 3, 3, 4, 8, 8), lengths=torch.tensor([4, 3]), fps=8.0))
    assert view["inputs"].shape == (6, 3, 4, 8, 8) and view["lengths"].tolist() == [4, 4, 4, 3, 3, 3]
    assert view["fps"] == 8.0
    with pytest.raises(InputError, match="per-element output"):
        back(Tokens(torch.zeros(6, 4, 2), grid=(2, 2)))
    with pytest.raises(InputError, match=r"rank 6 .* or single views of rank 5; got \(2, 3, 8, 8\)"):
        tta.views(dict(inputs=torch.zeros(2, 3, 8, 8)))
    with pytest.raises(ConfigError, match="average must be one of 'prob', 'score'"):
        MultiViewTTA(average="mean")


# -- ragged batches through the same model ---------------------------------------------------------
class SetStem(nn.Module):
    """Elements [B, L, F] + mask -> Tokens (one token per element, IdentityUndo)."""

    def __init__(self, in_dim=3, dim=16):
        super().__init__()
        self.out_dim, self.proj = dim, nn.Linear(in_dim, dim)

    def forward(self, batch):
        tokens = Tokens(self.proj(batch["inputs"]), mask=require_field(batch, "mask", "SetStem"))
        return tokens, IdentityUndo(tokens)


@pytest.fixture()
def set_stem():
    from glocal.modalities.registry import ADAPTERS
    if "SetStem" not in ADAPTERS:
        ADAPTERS.add(SetStem)
    return SetStem


def _set_model():
    return build_model(dict(
        type="TaskModel", adapter=dict(type="SetStem"),
        backbone=dict(type="Backbone", stages=[dict(dim=16, depth=2, blocks=GLOBAL)]),
        head=dict(type="UNetHead", num_classes=4, dim=16, block=dict(ffn=dict(type="Mlp"))),
        loss=dict(type="CrossEntropyLoss", target="point_label"))).eval()


def test_ragged_batch_padding_is_inert(set_stem):
    torch.manual_seed(1)
    samples = [dict(inputs=torch.randn(n, 3), point_label=torch.randint(0, 4, (n,)), label=i)
               for i, n in enumerate((5, 9, 2))]
    collate = PadCollate(token_keys=("point_label",))
    batch = collate(samples)
    assert batch["inputs"].shape == (3, 9, 3) and batch["lengths"].tolist() == [5, 9, 2]
    assert (batch["data_samples"]["point_label"][2, 2:] == -100).all()
    model = _set_model()
    with torch.no_grad():
        together = model(**batch).x
        for b, s in enumerate(samples):  # each sample alone: the same valid outputs
            alone = model(**collate([s])).x[0]
            torch.testing.assert_close(together[b, :len(s["inputs"])], alone, atol=1e-5, rtol=1e-5)
        noisy = {**batch, "inputs": batch["inputs"].masked_fill(~batch["mask"][..., None], 1e4)}
        torch.testing.assert_close(model(**noisy).x[batch["mask"]], together[batch["mask"]])
        loss = model(**batch, mode="loss")["loss"]
        assert torch.isfinite(loss)


def test_pad_collate_offsets_edges_pads_order_and_sequences():
    samples = [dict(inputs=torch.ones(3, 2), edge_index=torch.tensor([[0, 1], [1, 2]]), order=torch.tensor([2, 0, 1]),
                    text=[1, 2, 3, 4], pos=torch.zeros(3, 3)),
               dict(inputs=torch.ones(2, 2), edge_index=torch.tensor([[1], [0]]), order=torch.tensor([1, 0]),
                    text=[5], pos=torch.ones(2, 3))]
    batch = PadCollate(seq_keys=("text",))(samples)
    assert batch["edge_index"].tolist() == [[0, 1, 3 + 1], [1, 2, 3 + 0]]  # sample 1 offset by L=3
    assert batch["order"].tolist() == [[2, 0, 1], [1, 0, 2]]  # each row a permutation of range(L)
    assert batch["pos"].shape == (2, 3, 3) and batch["batch"].tolist() == [0, 0, 0, 1, 1]
    assert batch["data_samples"]["text"].tolist() == [[1, 2, 3, 4], [5, 0, 0, 0]]
    assert batch["data_samples"]["text_lengths"].tolist() == [4, 1]
    with pytest.raises(InputError, match="edges to nodes outside"):
        PadCollate()([dict(inputs=torch.ones(2, 2), edge_index=torch.tensor([[0], [2]]))])
    with pytest.raises(InputError, match="different shapes.*PadCollate"):
        from glocal.modalities.batch import stack_collate
        stack_collate([dict(inputs=torch.ones(2), text=[1, 2]), dict(inputs=torch.ones(2), text=[1])])


def test_batch_preprocessor_moves_structure_and_tokens():
    t = Tokens(torch.randn(1, 4, 2), mask=torch.ones(1, 4, dtype=torch.bool), edge_index=torch.zeros(2, 1, dtype=torch.long))
    data = BatchPreprocessor()(dict(inputs=torch.ones(1), tokens=t, edge_index=torch.zeros(2, 3, dtype=torch.long),
                                    data_samples=dict(label=torch.tensor([1]), path=["a"])))
    assert isinstance(data["tokens"], Tokens) and data["data_samples"]["path"] == ["a"]
    t64 = t.to(torch.float64)
    assert t64.x.dtype == torch.float64 and t64.mask.dtype == torch.bool and t64.edge_index.dtype == torch.long


# -- wrong use gets the toolkit's own errors -------------------------------------------------------
def test_adapter_backbone_width_mismatch_is_a_config_error_naming_both():
    with pytest.raises(ConfigError, match=r"adapter PatchStem makes 16-wide tokens.*swin_t"):
        build_model(dict(type="Classifier", adapter=dict(type="PatchStem", dim=16),
                         backbone=dict(type="swin_t"), head=dict(type="ClsHead", num_classes=2)))


def test_adapter_returning_the_wrong_thing_or_width(set_stem):
    model = _set_model()
    batch = PadCollate()([dict(inputs=torch.randn(3, 3))])
    model.adapter.forward = lambda b: torch.zeros(1, 3, 16)
    with pytest.raises(InputError, match="must return Tokens or \\(Tokens, undo\\)"):
        model(**batch)
    model.adapter.forward = lambda b: Tokens(torch.zeros(1, 3, 8))
    with pytest.raises(InputError, match="8-wide tokens but backbone Backbone takes 16-wide"):
        model(**batch)


def test_batch_missing_a_field_the_adapter_needs(set_stem):
    with pytest.raises(InputError, match="SetStem needs the batch field 'mask'.*PadCollate"):
        _set_model()(torch.randn(1, 3, 3))


def test_dense_head_without_stem_undo_says_what_to_do():
    model = _dense()
    model.adapter.forward = lambda b, f=model.adapter.forward: f(b)[0]  # an adapter without its undo
    with pytest.raises(InputError, match="stem cannot be undone.*to_input=False"):
        model(torch.randn(1, 1, 16, 16))


def test_loss_target_errors():
    model = _dense()
    with pytest.raises(InputError, match="reads the target 'seg'.*has \\['label'\\]"):
        model(torch.randn(1, 1, 8, 8), dict(label=torch.tensor([1])), mode="loss")
    with pytest.raises(InputError, match="need 64 targets per sample"):
        model(torch.randn(1, 1, 8, 8), dict(seg=torch.zeros(1, 4, 4, dtype=torch.long)), mode="loss")


def test_config_chooses_the_collate():
    from glocal.tasks.engine import build_dataloader, load_config, validate_config
    loader = build_dataloader(dict(batch_size=2, collate_fn=dict(type="PadCollate", ignore_index=-1),
                                   dataset=dict(type="FashionMNIST", split="test", limit=4,
                                                transforms=[dict(type="PackInputs")])), seed=0, train=False)
    assert repr(loader.collate_fn).startswith("PadCollate") and loader.collate_fn.ignore_index == -1
    cfg = load_config(dict(model=dict(type="Classifier", adapter=dict(type="PatchStem"), backbone=dict(type="swin_t"),
                                      head=dict(type="ClsHead", num_classes=2)),
                           train_dataloader=dict(dataset=dict(type="FashionMNIST"), collate_fn=dict(type="PadColate"))))
    with pytest.raises(ConfigError, match="train_dataloader.collate_fn: unknown collate type='PadColate'.*PadCollate"):
        validate_config(cfg)

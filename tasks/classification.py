"""Classification: ``adapter -> backbone -> ClsHead``, as an mmengine ``BaseModel``.

The task never knows its modality: images, clips, point clouds, graphs and utterances differ only
in the adapter (and the data preprocessor) the config names.
"""
from __future__ import annotations

from collections.abc import Mapping

from mmengine.model import BaseModel
from torch import Tensor

from glocal.core.registry import ADAPTERS, BACKBONES, HEADS, LOSSES, MODELS

__all__ = ["Classifier", "build_trunk"]


def build_trunk(adapter, backbone):
    """Build adapter and backbone; the backbone gets the adapter's width (``in_dim``) and, unless
    its config says otherwise, the downsampler that suits the adapter's tokens."""
    adapter = ADAPTERS.build(adapter)
    defaults = dict(in_dim=getattr(adapter, "out_dim", None))
    if getattr(adapter, "downsample", None) is not None:
        defaults["downsample"] = adapter.downsample
    if isinstance(backbone, Mapping) and backbone.get("downsample", ...) is None:
        defaults.pop("downsample", None)
    return adapter, BACKBONES.build(backbone, **defaults)


class Classifier(BaseModel):
    """Args:
        adapter: modality stem config/module (``Tensor -> Tokens``).
        backbone: backbone config/module (``Tokens -> BackboneOutput``).
        head: head config; ``in_dim`` defaults to the backbone's output width.
        loss: loss config (default cross-entropy).
        data_preprocessor: batch preprocessor config (device move, normalisation).
        tta_flip_dims: test-time augmentation for ``predict``: input dims to flip (e.g. ``(-1,)``, a
            horizontal flip of ``[B, C, H, W]`` images); the class probabilities of the plain and
            each flipped input are averaged. Empty (default): no test-time augmentation.
            ``"tensor"`` and ``"loss"`` modes are never augmented.
    """

    def __init__(self, adapter, backbone, head, loss=dict(type="CrossEntropyLoss"), data_preprocessor=None,
                 tta_flip_dims=(), init_cfg=None):
        data_preprocessor = MODELS.build(data_preprocessor) if data_preprocessor else None
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.adapter, self.backbone = build_trunk(adapter, backbone)
        self.head = HEADS.build(head, in_dim=self.backbone.out_dim)
        self.loss_fn = LOSSES.build(loss)
        self.tta_flip_dims = tuple(int(d) for d in tta_flip_dims)

    def extract(self, inputs: Tensor):
        return self.backbone(self.adapter(inputs))

    def logits(self, inputs: Tensor) -> Tensor:
        return self.head(self.extract(inputs).last)  # [B, K]

    def forward(self, inputs: Tensor, data_samples: dict | None = None, mode: str = "tensor"):
        logits = self.logits(inputs)
        if mode == "tensor":
            return logits
        if mode == "loss":
            return dict(loss=self.loss_fn(logits, data_samples["label"]))
        if mode == "predict":
            scores = logits.float().softmax(-1).detach()
            for d in self.tta_flip_dims:  # test-time flips: average the class probabilities
                scores = scores + self.logits(inputs.flip(d)).float().softmax(-1).detach()
            scores = scores / (1 + len(self.tta_flip_dims))
            labels = data_samples["label"] if data_samples is not None else [None] * len(scores)
            return [dict(pred_scores=s, pred_label=s.argmax(), gt_label=y) for s, y in zip(scores, labels)]
        raise ValueError(f"Classifier mode must be 'tensor', 'loss' or 'predict'; got {mode!r}")

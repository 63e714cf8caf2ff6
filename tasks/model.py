"""One task model for every task: ``adapter -> backbone -> head -> loss | post-processing``.

The model never knows its modality or its task. A batch (a mapping: ``inputs``, the modality's
structure, ``data_samples``) goes to the adapter, which returns ``Tokens`` (and the undo of its
stem); the backbone returns every stage and undo; the head reads all of it; the loss reads the
head's output with the targets and the tokens; the post-processing turns outputs into one dict per
sample for the metrics. Classification, dense per-element prediction, regression and sequence
labelling differ only in the head, the loss and the post-processing named in the config; test-time
augmentation is a component (:mod:`glocal.tasks.tta`).
"""
from __future__ import annotations

from collections.abc import Mapping

from mmengine.model import BaseModel
from torch import Tensor, nn

from glocal.core.backbone import BackboneOutput
from glocal.core.errors import ConfigError, InputError
from glocal.core.registry import BACKBONES
from glocal.core.tokens import Tokens
from glocal.modalities.registry import ADAPTERS, PREPROCESSORS

from .registry import HEADS, LOSSES, POSTPROCESSORS, TTAS

__all__ = ["TaskModel", "Classifier", "build_trunk"]


def _name(obj) -> str:
    return type(obj).__name__ if isinstance(obj, nn.Module) else str(obj)


def build_trunk(adapter, backbone) -> tuple[nn.Module, nn.Module]:
    """Build adapter and backbone; the backbone gets the adapter's width (``in_dim``) and, unless
    its config says otherwise, the downsampler that suits the adapter's tokens. A width mismatch
    between the two is a ConfigError naming both."""
    adapter = ADAPTERS.build(adapter)
    width = getattr(adapter, "out_dim", None)
    defaults = dict(in_dim=width)
    if getattr(adapter, "downsample", None) is not None:
        defaults["downsample"] = adapter.downsample
    if isinstance(backbone, Mapping) and backbone.get("downsample", ...) is None:
        defaults.pop("downsample", None)
    bname = backbone.get("type") if isinstance(backbone, Mapping) else _name(backbone)
    try:
        backbone = BACKBONES.build(backbone, **defaults)
    except ConfigError as e:
        if width is not None and "in_dim" in str(e):
            raise ConfigError(f"adapter {_name(adapter)} makes {width}-wide tokens and backbone {bname} does not "
                              f"take them: {e}") from e
        raise
    taken = getattr(backbone, "in_dim", None)
    if width is not None and taken is not None and taken != width:
        raise ConfigError(f"adapter {_name(adapter)} makes {width}-wide tokens but backbone {bname} takes "
                          f"{taken}-wide ones (in_dim): set the adapter's width to {taken}, or the backbone's "
                          f"in_dim to {width} where its family allows")
    return adapter, backbone


def _mean(outputs: list):
    """Average a list of tensors or of ``Tokens`` (their features)."""
    first = outputs[0]
    if isinstance(first, Tokens):
        return first.replace(x=sum(o.x for o in outputs) / len(outputs))
    return sum(outputs) / len(outputs)


class TaskModel(BaseModel):
    """adapter + backbone + head + loss + post-processing (+ test-time augmentation).

    Args:
        adapter: modality stem config/module: ``adapter(batch) -> Tokens`` or ``(Tokens, undo)``.
        backbone: backbone config/module (``Tokens -> BackboneOutput``); gets ``in_dim`` from the
            adapter's ``out_dim``.
        head: head config/module (``BackboneOutput -> Tensor | Tokens``); gets ``in_dim`` (the last
            stage's width), ``in_dims`` (every stage's) and ``stem_dim`` (the adapter's ``fine_dim``:
            the width of the input-resolution features its undo carries, if any).
        loss: ``loss(output, data_samples, tokens) -> Tensor | dict``.
        postprocess: ``(activated output, data_samples) -> [dict per sample]``; default: what the
            head names (``head.postprocess``).
        tta: test-time augmentation for ``predict`` (e.g. ``dict(type='FlipTTA', dims=(-1,))``; multi-clip x
            multi-crop views of a video: ``dict(type='MultiViewTTA')``).
        data_preprocessor: moves the batch to the device (and normalises); default
            ``BatchPreprocessor``.

    ``forward(inputs, data_samples=None, mode='tensor', **structure)``: the collated batch's keys
    are its keyword arguments (mmengine passes ``**batch``). ``"tensor"``: the head's output;
    ``"loss"``: ``dict(loss=...)``; ``"predict"``: the post-processed samples.
    """

    def __init__(self, adapter, backbone, head, loss=dict(type="CrossEntropyLoss"), postprocess=None, tta=None,
                 data_preprocessor=None, init_cfg=None):
        data_preprocessor = PREPROCESSORS.build(data_preprocessor or dict(type="BatchPreprocessor"))
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.adapter, self.backbone = build_trunk(adapter, backbone)
        out_dim = getattr(self.backbone, "out_dim", None)
        self.head = HEADS.build(head, in_dim=out_dim, in_dims=list(getattr(self.backbone, "dims", [out_dim])),
                                stem_dim=getattr(self.adapter, "fine_dim", None))
        self.loss_fn = LOSSES.build(loss)
        post = postprocess or getattr(self.head, "postprocess", None)
        if post is None:
            raise ConfigError(f"head {_name(self.head)} names no post-processing: give the model postprocess=dict(type=...)")
        self.postprocess = POSTPROCESSORS.build(post)
        self.tta = TTAS.build(tta)

    # -- the forward pieces ----------------------------------------------------------------------------
    def extract(self, batch: Mapping | Tensor) -> BackboneOutput:
        """``batch -> BackboneOutput`` (every stage, every undo, the stem's undo)."""
        out = self.adapter(batch)
        tokens, stem = out if isinstance(out, tuple) and len(out) == 2 else (out, None)
        if not isinstance(tokens, Tokens):
            raise InputError(f"adapter {_name(self.adapter)} returned {type(out).__name__}; an adapter must return "
                             f"Tokens or (Tokens, undo)")
        width = getattr(self.backbone, "in_dim", None)
        if width is not None and tokens.dim != width:
            raise InputError(f"adapter {_name(self.adapter)} returned {tokens.dim}-wide tokens but backbone "
                             f"{_name(self.backbone)} takes {width}-wide ones (in_dim)")
        return self.backbone(tokens, stem=stem)

    def predict_scores(self, batch: Mapping):
        """Activated outputs (class probabilities), averaged over the test-time views: the activated
        outputs of each view, or with a TTA whose ``average`` is ``'score'`` the raw ones, activated
        after averaging."""
        views = self.tta.views(batch) if self.tta is not None else [(batch, None)]
        raw = getattr(self.tta, "average", "prob") == "score"
        outs = []
        for view, back in views:
            scores = self.head(self.extract(view))
            scores = scores if raw else self.postprocess.activate(scores)
            outs.append(scores if back is None else back(scores))
        return self.postprocess.activate(_mean(outs)) if raw else _mean(outs)

    def forward(self, inputs, data_samples: Mapping | None = None, mode: str = "tensor", **structure):
        batch = dict(inputs=inputs, **structure)
        if mode == "tensor":
            return self.head(self.extract(batch))
        if mode == "loss":
            feats = self.extract(batch)
            loss = self.loss_fn(self.head(feats), data_samples, feats.last)
            return dict(loss) if isinstance(loss, Mapping) else dict(loss=loss)
        if mode == "predict":
            return self.postprocess(self.predict_scores(batch), data_samples)
        raise ValueError(f"TaskModel mode must be 'tensor', 'loss' or 'predict'; got {mode!r}")


def Classifier(adapter, backbone, head, loss=dict(type="CrossEntropyLoss"), data_preprocessor=None,
               tta_flip_dims=(), init_cfg=None) -> TaskModel:
    """A :class:`TaskModel` for classification (``ClsHead``, ``ClassifyPost``), the name image
    configs use; ``tta_flip_dims`` is ``FlipTTA(dims)`` (e.g. ``(-1,)``: the image and its
    horizontal flip, class probabilities averaged)."""
    tta = dict(type="FlipTTA", dims=tuple(tta_flip_dims)) if tta_flip_dims else None
    return TaskModel(adapter, backbone, head, loss=loss, postprocess=dict(type="ClassifyPost"), tta=tta,
                     data_preprocessor=data_preprocessor, init_cfg=init_cfg)

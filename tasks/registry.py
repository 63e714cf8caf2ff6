"""The registries of the task layer, and the lookup over every layer's registries that config
checking uses. Filled by ``glocal.tasks.catalog``."""
from __future__ import annotations

from glocal.core.registry import CORE_REGISTRIES, Registry
from glocal.modalities.registry import MODALITY_REGISTRIES

__all__ = ["MODELS", "HEADS", "LOSSES", "METRICS", "POSTPROCESSORS", "TTAS", "TASK_REGISTRIES",
           "ALL_REGISTRIES", "load_catalogs"]

_CATALOG = "glocal.tasks.catalog"
MODELS = Registry("model", _CATALOG)  # task models (adapter + backbone + head + loss)
HEADS = Registry("head", _CATALOG)  # head(feats: BackboneOutput) -> Tensor or Tokens
LOSSES = Registry("loss", _CATALOG)  # loss(output, data_samples, tokens) -> Tensor
METRICS = Registry("metric", _CATALOG)  # mmengine BaseMetric over the post-processed samples
POSTPROCESSORS = Registry("postprocess", _CATALOG)  # output -> one dict per sample
TTAS = Registry("test-time augmentation", _CATALOG)
TASK_REGISTRIES = (MODELS, HEADS, LOSSES, METRICS, POSTPROCESSORS, TTAS)
ALL_REGISTRIES = CORE_REGISTRIES + MODALITY_REGISTRIES + TASK_REGISTRIES


def load_catalogs() -> None:
    """Import every layer's catalog (config checking looks names up across all registries)."""
    for registry in ALL_REGISTRIES:
        registry.names()

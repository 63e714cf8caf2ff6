"""The registries of the data layer: what turns files into batches and batches into ``Tokens``.

Filled by ``glocal.modalities.catalog``, where every modality's components are listed by name and
imported lazily: building an image adapter never imports a video, point-cloud or audio decoder.
"""
from __future__ import annotations

from glocal.core.registry import Registry

__all__ = ["ADAPTERS", "ENCODERS", "DATASETS", "TRANSFORMS", "PREPROCESSORS", "COLLATES", "CLIP_SAMPLERS",
           "MODALITY_REGISTRIES"]

_CATALOG = "glocal.modalities.catalog"
ADAPTERS = Registry("adapter", _CATALOG)  # adapter(batch) -> Tokens or (Tokens, undo)
ENCODERS = Registry("encoder", _CATALOG)  # the pieces adapters compose: node/edge features, positional encodings
DATASETS = Registry("dataset", _CATALOG)
TRANSFORMS = Registry("transform", _CATALOG)  # t(sample: dict, rng) -> dict
PREPROCESSORS = Registry("data preprocessor", _CATALOG)  # batch -> device (+ normalisation)
COLLATES = Registry("collate", _CATALOG)  # list of samples -> batch
# which frames of a video make a clip (a video dataset's sampler=dict(type=...), not the loader's)
CLIP_SAMPLERS = Registry("clip sampler", _CATALOG)
MODALITY_REGISTRIES = (ADAPTERS, ENCODERS, DATASETS, TRANSFORMS, PREPROCESSORS, COLLATES, CLIP_SAMPLERS)

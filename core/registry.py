"""Registries and config-dict building.

Registration is explicit and lives in one place per layer: ``glocal.core.catalog``,
``glocal.modalities.catalog`` and ``glocal.tasks.catalog`` each call ``REGISTRY.add(...)`` for
everything they offer. The first lookup in any registry imports those catalogs (in that order), so
a name is never "not in the registry" because some module happened not to be imported.

``build(cfg)`` takes a dict with ``type=`` (or an already-built object, passed through), checks
the remaining keys against the constructor's signature and reports unknown types and keys with
the closest known names.
"""
from __future__ import annotations

import dataclasses
import importlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from .errors import ConfigError, close_names

__all__ = ["Registry", "MIXERS", "NORMS", "BLOCKS", "DOWNSAMPLERS", "BACKBONES", "ADAPTERS", "HEADS",
           "MODELS", "DATASETS", "TRANSFORMS", "METRICS", "LOSSES", "ALL_REGISTRIES", "build",
           "load_catalogs"]

CATALOGS = ("glocal.core.catalog", "glocal.modalities.catalog", "glocal.tasks.catalog")
_loaded = False


def load_catalogs() -> None:
    """Import the three catalog modules once; they register every component explicitly."""
    global _loaded
    if not _loaded:
        _loaded = True
        for name in CATALOGS:
            importlib.import_module(name)


class Registry:
    """A named table ``type name -> class or factory``."""

    def __init__(self, name: str):
        self.name = name
        self._items: dict[str, Callable] = {}

    def add(self, obj: Callable, name: str | None = None) -> Callable:
        name = name or obj.__name__
        if name in self._items and self._items[name] is not obj:
            raise ConfigError(f"{self.name} registry: {name!r} is registered twice")
        self._items[name] = obj
        return obj

    def add_all(self, *objs: Callable) -> None:
        for obj in objs:
            self.add(obj)

    def names(self) -> list[str]:
        load_catalogs()
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        load_catalogs()
        return name in self._items

    def get(self, name: str) -> Callable:
        load_catalogs()
        if name not in self._items:
            raise ConfigError(f"unknown {self.name} type={name!r}; "
                              f"{close_names(name, self._items)}")
        return self._items[name]

    def build(self, cfg: Any, **defaults) -> Any:
        """Build from ``dict(type=..., **kwargs)``; objects that are not dicts pass through.

        ``defaults`` fill arguments the config leaves out (e.g. ``dim`` from the block), and are
        dropped when the constructor does not take them.
        """
        if cfg is None or not isinstance(cfg, Mapping):
            return cfg
        cfg = dict(cfg)
        if "type" not in cfg:
            raise ConfigError(f"a {self.name} config needs a 'type' key; got keys {sorted(cfg)}")
        kind = cfg.pop("type")
        if not isinstance(kind, str):  # a class given directly: allowed, no lookup
            factory = kind
        else:
            factory = self.get(kind)
        params = accepted_args(factory)
        if params is not None:
            unknown = [k for k in cfg if k not in params]
            if unknown:
                k = unknown[0]
                raise ConfigError(f"{self.name} {getattr(factory, '__name__', kind)} has no argument "
                                  f"{k!r}; {close_names(k, params)}")
            defaults = {k: v for k, v in defaults.items() if k in params}
        try:
            return factory(**{**defaults, **cfg})
        except TypeError as e:  # a missing required argument, reported with the type's name
            raise ConfigError(f"building {self.name} {kind!r}: {e}") from e

    def __repr__(self):
        return f"Registry({self.name!r}, {len(self._items)} entries)"


def accepted_args(factory: Callable) -> list[str] | None:
    """Keyword names ``factory`` accepts, or None when that cannot be known. A model family that
    takes ``**overrides`` of a dataclass config (``config_class``) accepts that config's fields; a
    class whose ``__init__`` takes ``**kwargs`` accepts, besides its own names, those of the next
    ``__init__`` up its MRO (where the kwargs go through ``super().__init__``)."""
    config_class = getattr(factory, "config_class", None)
    if config_class is not None:
        return [f.name for f in dataclasses.fields(config_class)]
    inits = ([k.__dict__["__init__"] for k in factory.__mro__ if "__init__" in k.__dict__ and k is not object]
             if inspect.isclass(factory) else [factory])
    names: list[str] = []
    for init in inits:
        try:
            params = inspect.signature(init).parameters.values()
        except (TypeError, ValueError):
            return None
        names += [p.name for p in params
                  if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and p.name != "self" and p.name not in names]
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            return names
    # **kwargs all the way up: for a class they end in object(), which takes none
    return names if inspect.isclass(factory) else None


MIXERS = Registry("mixer")  # local encoders, global mixers and FFNs: forward(x [B,L,C], tokens)
NORMS = Registry("norm")
BLOCKS = Registry("block")
DOWNSAMPLERS = Registry("downsampler")
BACKBONES = Registry("backbone")
ADAPTERS = Registry("adapter")
HEADS = Registry("head")
MODELS = Registry("model")
DATASETS = Registry("dataset")
TRANSFORMS = Registry("transform")
METRICS = Registry("metric")
LOSSES = Registry("loss")
ALL_REGISTRIES = (MIXERS, NORMS, BLOCKS, DOWNSAMPLERS, BACKBONES, ADAPTERS, HEADS, MODELS, DATASETS,
                  TRANSFORMS, METRICS, LOSSES)


def build(registry: Registry, cfg: Any, **defaults) -> Any:
    return registry.build(cfg, **defaults)

"""Registries and config-dict building.

Each layer owns the registries of what it defines and registers everything explicitly in ONE
catalog module: ``glocal.core.catalog`` (mixers, norms, blocks, downsamplers, backbones),
``glocal.modalities.catalog`` (adapters, datasets, transforms, batch preprocessors) and
``glocal.tasks.catalog`` (task models, heads, losses, metrics, post-processing, test-time
augmentation). A registry imports its own layer's catalog on its first lookup, so a name is never
"not in the registry" because some module happened not to be imported; ``glocal.core`` never
imports a layer above it. A catalog may register a name *lazily* (``add_lazy``: the module is
imported when the name is first built), which is how one modality's decoders stay unimported
while another modality is used.

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

__all__ = ["Registry", "MIXERS", "NORMS", "BLOCKS", "DOWNSAMPLERS", "BACKBONES", "CORE_REGISTRIES", "build",
           "accepted_args"]


class Registry:
    """A named table ``type name -> class or factory``, filled by the catalog module ``catalog``
    (imported on the first lookup)."""

    def __init__(self, name: str, catalog: str | None = None):
        self.name, self.catalog = name, catalog
        self._items: dict[str, Callable] = {}
        self._lazy: dict[str, str] = {}  # name -> "module:attribute", imported when first used
        self._loaded = catalog is None

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True
            importlib.import_module(self.catalog)

    def add(self, obj: Callable, name: str | None = None) -> Callable:
        name = name or obj.__name__
        if name in self._items and self._items[name] is not obj:
            raise ConfigError(f"{self.name} registry: {name!r} is registered twice")
        self._items[name] = obj
        return obj

    def add_all(self, *objs: Callable) -> None:
        for obj in objs:
            self.add(obj)

    def add_lazy(self, module: str, *names: str) -> None:
        """Register ``names`` as attributes of ``module``, imported only when one is first used."""
        for name in names:
            if name in self._items or self._lazy.get(name, module) != module:
                raise ConfigError(f"{self.name} registry: {name!r} is registered twice")
            self._lazy[name] = module

    def names(self) -> list[str]:
        self._load()
        return sorted({*self._items, *self._lazy})

    def __contains__(self, name: str) -> bool:
        self._load()
        return name in self._items or name in self._lazy

    def get(self, name: str) -> Callable:
        self._load()
        if name not in self._items:
            if name not in self._lazy:
                raise ConfigError(f"unknown {self.name} type={name!r}; "
                                  f"{close_names(name, self.names())}")
            module = self._lazy.pop(name)
            self._items[name] = getattr(importlib.import_module(module), name)
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


_CORE = "glocal.core.catalog"
MIXERS = Registry("mixer", _CORE)  # local encoders, global mixers and FFNs: forward(x [B,L,C], tokens)
NORMS = Registry("norm", _CORE)
BLOCKS = Registry("block", _CORE)
DOWNSAMPLERS = Registry("downsampler", _CORE)
BACKBONES = Registry("backbone", _CORE)
CORE_REGISTRIES = (MIXERS, NORMS, BLOCKS, DOWNSAMPLERS, BACKBONES)


def build(registry: Registry, cfg: Any, **defaults) -> Any:
    return registry.build(cfg, **defaults)


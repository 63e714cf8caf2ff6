"""On-disk caches of the graph modality: where they live, how a file is written and read, and the
content key of a graph.

Every cache file is a ``torch.save`` of a dict of tensors, strings, numbers and lists of those, so
it loads with ``torch.load(weights_only=True)``. A file is written to a temporary name and renamed
into place, so a reader sees the old file or the whole new one; a file that cannot be read is
recomputed (with a warning), never trusted.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

__all__ = ["cache_root", "settings_key", "save_cache", "load_cache", "graph_keys"]


def cache_root(kind: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """The folder of one kind of cache (``qm9``, ``pe``): ``<cache_dir>/<kind>`` when a root is
    given, else ``$GLOCAL_CACHE/data/<kind>``, else ``~/.cache/glocal/data/<kind>``."""
    if cache_dir is not None:
        return Path(cache_dir) / kind
    root = os.environ.get("GLOCAL_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "glocal")
    return Path(root) / "data" / kind


def settings_key(settings: dict, length: int = 16) -> str:
    """A short digest of a settings dict (JSON with sorted keys): the part of a cache file's name
    that changes whenever what the file holds would change."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def save_cache(path: Path, obj: dict) -> None:
    """``torch.save(obj)`` to ``path`` atomically (temporary file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_cache(path: Path, version: int, who: str) -> dict | None:
    """The dict saved at ``path`` when it exists, loads with ``weights_only=True`` and carries
    ``version``; else None (an unreadable file is reported as a warning and recomputed)."""
    if not path.is_file():
        return None
    try:
        obj = torch.load(path, weights_only=True, map_location="cpu")
        if not isinstance(obj, dict) or obj.get("version") != version:
            raise ValueError(f"version {obj.get('version') if isinstance(obj, dict) else None}, expected {version}")
        return obj
    except Exception as e:  # noqa: BLE001 - any unreadable cache is recomputed
        warnings.warn(f"{who}: cache file {path} is unreadable ({e!r}); recomputing it", RuntimeWarning,
                      stacklevel=3)
        return None


def graph_keys(edge_indices, num_nodes) -> np.ndarray:
    """The content key of each graph: the first 8 bytes of ``blake2b(N, edge_index as int64)`` as an
    int64. Two graphs with the same node count and the same edge list (same order) share a key;
    anything that changes the structure changes it. ``[G]`` int64."""
    keys = np.empty(len(num_nodes), dtype=np.int64)
    for g, (ei, n) in enumerate(zip(edge_indices, num_nodes)):
        h = hashlib.blake2b(int(n).to_bytes(8, "little"), digest_size=8)
        h.update(np.ascontiguousarray(ei, dtype=np.int64).tobytes())
        keys[g] = np.frombuffer(h.digest(), dtype=np.int64)[0]
    return keys

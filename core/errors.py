"""The toolkit's own errors: bad input is reported in glocal's words, naming the field or file and
what to do, before it turns into a traceback deep inside torch."""
from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["GlocalError", "InputError", "MissingStructureError", "DataError", "ConfigError", "DatasetNotFoundError",
           "close_names"]


class GlocalError(Exception):
    """Base class of every error glocal raises on purpose."""


class InputError(GlocalError, ValueError):
    """A tensor or sample has the wrong shape, dtype or channel count."""


class MissingStructureError(InputError):
    """A mixer needs a `Tokens` field (grid, edge_index, order, pos) that the adapter did not set."""


class DataError(InputError):
    """A sample cannot be read, decoded or transformed, or samples cannot be batched together; the
    message names the dataset, the index and the file where they are known."""


class ConfigError(GlocalError, KeyError):
    """An unknown ``type=``, a key that does not exist, or a value of the wrong kind in a config."""

    def __str__(self):  # KeyError quotes its message; show it plainly
        return str(self.args[0]) if self.args else ""


class DatasetNotFoundError(GlocalError, FileNotFoundError):
    """A dataset's files are missing; the message says which package or path provides them."""


def close_names(name: str, candidates: Iterable[str], n: int = 5) -> str:
    """``"did you mean: a, b?"`` from the candidates closest to ``name`` (case-insensitive)."""
    candidates = sorted(set(candidates))
    lower = {c.lower(): c for c in candidates}
    hits = difflib.get_close_matches(name.lower(), list(lower), n=n, cutoff=0.5)
    hits += [c.lower() for c in candidates if name.lower() in c.lower() and c.lower() not in hits]
    hits = [lower[h] for h in hits][:n]
    return f"did you mean: {', '.join(hits)}?" if hits else f"known: {', '.join(candidates)}"

"""Batches: how samples become one structured batch, and how a batch reaches the model's device.

A collated batch is a mapping::

    inputs        the model input, [B, ...] (pixels, padded features, ...)
    <structure>   whatever structure the modality has: mask [B, L], lengths [B],
                  edge_index [2, E] (flattened b * L + i), edge_attr [E, De], pos [B, L, P],
                  order [B, L], batch [N] (the sample of every valid element), ...
    data_samples  the targets and per-sample information: label [B], seg [B, ...],
                  text [B, S] + text_lengths [B], paths, ...

The data preprocessor moves all of it to the device; the adapter takes the whole batch
(``adapter(batch) -> Tokens``) and reads the structure it needs (:func:`require_field` names a
missing field and who provides it); heads, losses and post-processing read ``data_samples``.

Two collates cover every modality: :class:`StackCollate` for fixed-size samples (images, clips of
one size) and :class:`PadCollate` for ragged ones (graphs, point clouds, utterances).

Samples a dataset could not load: a dataset built with ``on_error='skip'`` returns a
:class:`SkippedSample` in place of each sample that failed. Both collates drop these markers and
list them in the batch under ``'_skipped'`` as ``(index, path, message)`` tuples (the key is absent
when nothing was skipped); a batch of skipped samples only is a :class:`DataError`. The
:class:`BatchPreprocessor` removes ``'_skipped'`` before the batch reaches the model, logs one
warning per sample and keeps them all in ``data_preprocessor.skipped``. A dataset's own collate
calls :func:`drop_skipped` first to do the same.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import reduce
from typing import Any

import numpy as np
import torch
from mmengine.logging import print_log
from mmengine.model import BaseDataPreprocessor
from torch import Tensor

from glocal.core.errors import ConfigError, DataError, InputError
from glocal.core.tokens import Tokens

from .registry import TRANSFORMS

__all__ = ["StackCollate", "PadCollate", "stack_collate", "BatchPreprocessor", "batch_inputs", "require_field",
           "STRUCTURE_KEYS", "SkippedSample", "drop_skipped", "SKIPPED_KEY"]

# Per-sample keys that are structure (go to the adapter), not targets.
STRUCTURE_KEYS = ("pos", "edge_index", "edge_attr", "order")
# Who provides each batch field; quoted when an adapter finds one missing.
FIELD_PROVIDERS = {
    "mask": "PadCollate (ragged samples padded to the longest)",
    "lengths": "PadCollate (ragged samples padded to the longest)",
    "edge_index": "PadCollate over samples with an 'edge_index' [2, E] (graph datasets, kNN transforms)",
    "edge_attr": "PadCollate over samples with 'edge_attr' [E, De]",
    "pos": "PadCollate/StackCollate over samples with 'pos' [L, P]",
    "order": "PadCollate over samples with an 'order' [L] (serialisation transforms)",
    "batch": "PadCollate (the sample index of every valid element)",
    "rwse": "the RWSE transform in the dataset's pipeline, padded by PadCollate(node_keys=('rwse', ...))",
    "lap_vec": "the LapPE transform in the dataset's pipeline, padded by PadCollate(node_keys=('lap_vec', ...))",
    "lap_val": "the LapPE transform in the dataset's pipeline, padded by PadCollate(node_keys=('lap_val', ...))",
}


def batch_inputs(batch: Mapping | Tensor, who: str) -> Any:
    """``batch['inputs']``; a bare tensor is taken as the inputs (``adapter(images)`` keeps working)."""
    if isinstance(batch, Tensor):
        return batch
    if not isinstance(batch, Mapping) or "inputs" not in batch:
        keys = sorted(batch) if isinstance(batch, Mapping) else type(batch).__name__
        raise InputError(f"{who} takes a batch mapping with 'inputs' (as the collates make); got {keys}")
    return batch["inputs"]


def require_field(batch: Mapping | Tensor, key: str, who: str) -> Any:
    """``batch[key]``, or an :class:`InputError` naming the field, the fields present, and what
    provides it."""
    if isinstance(batch, Mapping) and batch.get(key) is not None:
        return batch[key]
    present = sorted(batch) if isinstance(batch, Mapping) else ["inputs (a bare tensor)"]
    provider = FIELD_PROVIDERS.get(key, "the dataset's collate")
    raise InputError(f"{who} needs the batch field {key!r}, which this batch does not have (it has "
                     f"{', '.join(present)}). It is provided by {provider}: check the dataset's collate.")


# ------------------------------------------------------------------------------------------------
# samples a dataset skipped
# ------------------------------------------------------------------------------------------------
SKIPPED_KEY = "_skipped"


@dataclass(frozen=True)
class SkippedSample:
    """Stands in for a sample that a dataset built with ``on_error='skip'`` could not load or
    transform: its index, its file (None when the dataset has no file per sample) and why."""

    index: int
    path: str | None
    message: str

    def record(self) -> tuple[int, str | None, str]:
        return self.index, self.path, self.message


def drop_skipped(samples: Sequence, who: str) -> tuple[list, list[tuple[int, str | None, str]]]:
    """The samples that loaded, and ``(index, path, message)`` of each :class:`SkippedSample`; a
    :class:`DataError` when the dataset skipped every sample of the batch.

    >>> kept, skipped = drop_skipped([dict(inputs=1), SkippedSample(7, "a.png", "truncated")], "MyCollate")
    >>> kept, skipped
    ([{'inputs': 1}], [(7, 'a.png', 'truncated')])
    """
    kept = [s for s in samples if not isinstance(s, SkippedSample)]
    skipped = [s.record() for s in samples if isinstance(s, SkippedSample)]
    if skipped and not kept:
        index, path, message = skipped[0]
        where = f"sample {index}" + (f" ({path})" if path else "")
        raise DataError(f"{who}: every sample of this batch failed to load and was skipped ({len(skipped)} of "
                        f"{len(skipped)}); the first, {where}: {message}")
    return kept, skipped


# ------------------------------------------------------------------------------------------------
# stacking, with errors that name the samples
# ------------------------------------------------------------------------------------------------
PATH_KEYS = ("path", "img_path", "filename")  # where a sample may carry its file, for error messages


def _sample_name(sample: Mapping, b: int) -> str:
    """A sample's file when it carries one, else its position in the batch."""
    for key in PATH_KEYS:
        if isinstance(sample.get(key), str):
            return sample[key]
    return f"sample {b} of the batch"


def _check_samples(samples: Sequence, who: str) -> None:
    """Every sample a mapping with the fields of the first: a batch has one set of fields."""
    for b, s in enumerate(samples):
        if not isinstance(s, Mapping):
            raise DataError(f"{who}: samples must be dicts of fields; sample {b} of the batch is a "
                            f"{type(s).__name__}")
    fields, first = set(samples[0]), _sample_name(samples[0], 0)
    for b, s in enumerate(samples[1:], 1):
        if set(s) != fields:
            missing, extra = sorted(fields - set(s), key=str), sorted(set(s) - fields, key=str)
            differ = " and ".join(([f"lacks {missing}"] if missing else [])
                                  + ([f"has {extra}, which {first} has not"] if extra else []))
            raise DataError(f"{who}: the samples of a batch need the same fields, but {_sample_name(s, b)} "
                            f"{differ} (fields of {first}: {sorted(fields, key=str)})")


def _size_transforms() -> str:
    """The registered transforms that make every sample one size (resizes and crops)."""
    return ", ".join(n for n in TRANSFORMS.names() if "Resize" in n or "Crop" in n)


def _by_shape(shapes: Sequence[tuple], names: Sequence[str]) -> str:
    """``"(3, 8, 8) for a.png, b.png; (3, 10, 6) for c.png"``: the samples grouped by shape, the
    commonest first, at most three named per shape."""
    groups: dict[tuple, list[str]] = {}
    for shape, name in zip(shapes, names):
        groups.setdefault(shape, []).append(name)
    return "; ".join(f"{shape} for {', '.join(n[:3])}" + (f" and {len(n) - 3} more" if len(n) > 3 else "")
                     for shape, n in sorted(groups.items(), key=lambda g: -len(g[1])))


def _shape_error(who: str, key: str, shapes: Sequence[tuple], names: Sequence[str]) -> DataError:
    """The error for per-sample values of different shapes, with what makes them stackable."""
    if key == "inputs":
        fix = (f"Make every sample one size with a transform in the dataset's pipeline ({_size_transforms()}, "
               f"before PackInputs), or batch ragged data (sequences, graphs, point sets) with "
               f"collate_fn=dict(type='PadCollate', ...), which pads and masks")
    else:
        fix = (f"A ragged per-sample value needs PadCollate(seq_keys=({key!r},)) (padded, with {key}_lengths); "
               f"a label map needs the same resize/crop as its image ({_size_transforms()})")
    return DataError(f"{who} cannot stack {key!r}: the samples have different shapes: {_by_shape(shapes, names)}. "
                     f"{fix}.")


def _as_numeric(v) -> Tensor | None:
    """``v`` as a tensor when it is numeric (numbers, arrays, lists of numbers); else None."""
    if isinstance(v, Tensor):
        return v
    if isinstance(v, (str, bytes)) or v is None:
        return None
    try:
        a = np.asarray(v)
    except (ValueError, TypeError):  # ragged nested lists, objects numpy cannot hold
        return None
    try:
        return torch.as_tensor(a) if a.dtype.kind in "biuf" else None
    except TypeError:  # a numpy type torch has no counterpart for
        return None


def _stack(key: str, samples: Sequence[Mapping], who: str) -> Any:
    """``samples[*][key]`` stacked into one tensor when numeric and of one shape; non-numeric values
    (paths, ids) stay a list; numeric values of different shapes are a :class:`DataError` naming
    the samples."""
    values = [s[key] for s in samples]
    arrays = [_as_numeric(v) for v in values]
    if any(a is None for a in arrays):
        return values
    shapes = [tuple(a.shape) for a in arrays]
    if len(set(shapes)) > 1:
        raise _shape_error(who, key, shapes, [_sample_name(s, b) for b, s in enumerate(samples)])
    return torch.stack(arrays)


def _as_tensor(sample: Mapping, b: int, key: str, who: str, dtype: torch.dtype | None = None) -> Tensor:
    """``sample[key]`` as a tensor, or a :class:`DataError` naming the sample and the field."""
    value = sample[key]
    try:
        if isinstance(value, (str, bytes)) or value is None:
            raise TypeError(f"a {type(value).__name__}")
        return torch.as_tensor(value, dtype=dtype)
    except (TypeError, ValueError, RuntimeError) as e:
        raise DataError(f"{who}: {_sample_name(sample, b)} has a {key!r} that is not numeric "
                        f"({type(value).__name__}: {e})") from e


def _holds(dtype: torch.dtype, value) -> bool:
    """Whether a tensor of ``dtype`` stores ``value`` as it is (integers: whole and in range)."""
    if dtype.is_floating_point or dtype.is_complex:
        return True
    if dtype == torch.bool:
        return value in (0, 1)
    info = torch.iinfo(dtype)
    return float(value).is_integer() and info.min <= value <= info.max


class StackCollate:
    """Fixed-size samples: ``inputs`` (and ``pos`` if present) are stacked; every other key goes to
    ``data_samples``, stacked when numeric (``label [B]``, ``seg [B, H, W]``), a list otherwise.
    Samples of different sizes are a :class:`DataError` that names them and the fix (a resize or
    crop transform, or :class:`PadCollate`); skipped samples are dropped (see the module's doc)."""

    def __call__(self, samples: Sequence[dict]) -> dict:
        if not samples:
            raise InputError("StackCollate got an empty list of samples")
        samples, skipped = drop_skipped(samples, "StackCollate")
        _check_samples(samples, "StackCollate")
        if "inputs" not in samples[0]:
            raise DataError(f"StackCollate: the samples have no 'inputs' (fields: {sorted(samples[0], key=str)}); "
                            f"end the dataset's transforms with the modality's packing transform (PackInputs)")
        batch = dict(inputs=_stack("inputs", samples, "StackCollate"))
        if "pos" in samples[0]:
            batch["pos"] = _stack("pos", samples, "StackCollate")
        batch["data_samples"] = {k: _stack(k, samples, "StackCollate")
                                 for k in samples[0] if k not in ("inputs", "pos")}
        if skipped:
            batch[SKIPPED_KEY] = skipped
        return batch

    def __repr__(self):
        return "StackCollate()"


stack_collate = StackCollate()


class PadCollate:
    """Ragged samples padded to the longest, with the mask and lengths.

    Each sample's ``inputs`` is ``[L_i, ...]`` (elements first: nodes, points, frames). The batch:

    - ``inputs [B, L, ...]`` zero-padded (``pad_value``), ``mask [B, L]`` (True = valid),
      ``lengths [B]``, ``batch [N]`` (the sample of each valid element, PyG-style); inputs of
      different dtypes are promoted to a common one;
    - keys in ``node_keys`` (per-element model inputs beside ``inputs``, ``[L_i, ...]``: a graph's
      positional encodings ``rwse``, ``lap_vec``, ``lap_val``) padded with 0 to ``[B, L, ...]`` and
      put in the batch next to ``inputs`` (not in ``data_samples``);
    - ``pos [B, L, P]`` padded; ``order [B, L]`` padded with the padded positions appended, so each
      row stays a permutation of ``range(L)``;
    - ``edge_index [2, E]``: every sample's ``[2, E_i]`` (local node indices) offset into the
      flattened ``b * L + i`` indexing, concatenated; ``edge_attr [E, De]`` concatenated;
    - ``data_samples``: keys in ``token_keys`` (per-element targets, ``[L_i]``) padded with
      ``ignore_index`` to ``[B, L]``; keys in ``seq_keys`` (ragged per-sample sequences such as
      transcripts, ``[S_i]``) padded with ``seq_pad`` to ``[B, S]`` plus ``<key>_lengths [B]``;
      everything else stacked per sample as :class:`StackCollate` does.

    Skipped samples are dropped (see the module's doc); a field that does not fit its sample's
    ``inputs`` is a :class:`DataError` naming the sample.
    """

    def __init__(self, token_keys: Sequence[str] = (), seq_keys: Sequence[str] = (), ignore_index: int = -100,
                 pad_value: float = 0.0, seq_pad: int = 0, node_keys: Sequence[str] = ()):
        self.token_keys, self.seq_keys, self.node_keys = tuple(token_keys), tuple(seq_keys), tuple(node_keys)
        clash = sorted(set(self.node_keys) & ({"inputs", *STRUCTURE_KEYS} | set(self.token_keys) | set(self.seq_keys)))
        if clash:
            raise ConfigError(f"PadCollate: node_keys {clash} are also inputs, structure, token_keys or seq_keys; "
                              f"a key is collated one way")
        self.ignore_index, self.pad_value, self.seq_pad = ignore_index, pad_value, seq_pad

    @staticmethod
    def _pad(values: list[Tensor], length: int, fill) -> Tensor:
        out = values[0].new_full((len(values), length, *values[0].shape[1:]), fill)
        for b, v in enumerate(values):
            out[b, :len(v)] = v
        return out

    @staticmethod
    def _check_ragged(key: str, values: list[Tensor], samples: Sequence[Mapping], lengths: Sequence[int] | None):
        """Each value ``[n_i, ...]`` with one trailing shape; ``n_i`` the sample's element count
        when ``lengths`` are given."""
        names = [_sample_name(s, b) for b, s in enumerate(samples)]
        for v, name, n in zip(values, names, lengths if lengths is not None else [None] * len(values)):
            if v.dim() == 0 or (n is not None and len(v) != n):
                expected = "[L_i, ...]" if n is None else f"{n} (the sample's elements in 'inputs')"
                raise DataError(f"PadCollate: {name} has {key!r} of shape {tuple(v.shape)}; its first dimension "
                                f"must be {expected}")
        if len({v.shape[1:] for v in values}) > 1:
            raise DataError(f"PadCollate: every sample's {key!r} must be [n_i, ...] with one trailing shape; got "
                            f"{_by_shape([tuple(v.shape) for v in values], names)}")

    def __call__(self, samples: Sequence[dict]) -> dict:
        if not samples:
            raise InputError("PadCollate got an empty list of samples")
        samples, skipped = drop_skipped(samples, "PadCollate")
        _check_samples(samples, "PadCollate")
        if "inputs" not in samples[0]:
            raise DataError(f"PadCollate: the samples have no 'inputs' (fields: {sorted(samples[0], key=str)})")
        inputs = [_as_tensor(s, b, "inputs", "PadCollate") for b, s in enumerate(samples)]
        if any(x.dim() == 0 for x in inputs) or len({x.shape[1:] for x in inputs}) > 1:
            names = [_sample_name(s, b) for b, s in enumerate(samples)]
            raise DataError(f"PadCollate: every sample's 'inputs' must be [L_i, ...] with one trailing shape; got "
                            f"{_by_shape([tuple(x.shape) for x in inputs], names)}")
        dtype = reduce(torch.promote_types, [x.dtype for x in inputs])
        if not _holds(dtype, self.pad_value):
            raise DataError(f"PadCollate: pad_value={self.pad_value!r} cannot be stored in the inputs' dtype {dtype} "
                            f"(the padding would change it); use a pad_value that fits, such as 0")
        inputs = [x.to(dtype) for x in inputs]
        lengths = torch.tensor([len(x) for x in inputs], dtype=torch.long)
        B, L = len(samples), int(lengths.max())
        n = lengths.tolist()
        mask = torch.arange(L) < lengths[:, None]  # [B, L]
        batch = dict(inputs=self._pad(inputs, L, self.pad_value), mask=mask, lengths=lengths,
                     batch=torch.arange(B).repeat_interleave(lengths))
        first = samples[0]
        for key in self.node_keys:
            if key not in first:
                continue
            values = [_as_tensor(s, b, key, "PadCollate") for b, s in enumerate(samples)]
            self._check_ragged(key, values, samples, n)
            batch[key] = self._pad([v.to(reduce(torch.promote_types, [v.dtype for v in values])) for v in values],
                                   L, 0)  # [B, L, ...]
        if "pos" in first:
            pos = [_as_tensor(s, b, "pos", "PadCollate") for b, s in enumerate(samples)]
            self._check_ragged("pos", pos, samples, n)
            batch["pos"] = self._pad([p.to(reduce(torch.promote_types, [p.dtype for p in pos])) for p in pos], L, 0)
        if "order" in first:
            rows = []
            for b, (s, n_b) in enumerate(zip(samples, n)):
                order = _as_tensor(s, b, "order", "PadCollate", torch.long)
                if order.shape != (n_b,) or not torch.equal(order.sort().values, torch.arange(n_b)):
                    raise DataError(f"PadCollate: {_sample_name(s, b)} has an 'order' of shape {tuple(order.shape)} "
                                    f"that is not a permutation of its {n_b} elements")
                rows.append(torch.cat([order, torch.arange(n_b, L)]))
            batch["order"] = torch.stack(rows)
        if "edge_index" in first:
            edges = []
            for b, s in enumerate(samples):
                ei = _as_tensor(s, b, "edge_index", "PadCollate", torch.long)
                if ei.dim() != 2 or ei.shape[0] != 2:
                    raise DataError(f"PadCollate: {_sample_name(s, b)} has edge_index of shape {tuple(ei.shape)}; "
                                    f"expected [2, E] of local node indices")
                if ei.numel() and (int(ei.min()) < 0 or int(ei.max()) >= n[b]):
                    raise DataError(f"PadCollate: {_sample_name(s, b)} has edges to nodes outside 0..{n[b] - 1}")
                edges.append(ei + b * L)
            batch["edge_index"] = torch.cat(edges, 1)
            if "edge_attr" in first:
                attrs = [_as_tensor(s, b, "edge_attr", "PadCollate") for b, s in enumerate(samples)]
                self._check_ragged("edge_attr", attrs, samples, [e.shape[1] for e in edges])
                batch["edge_attr"] = torch.cat([a.to(reduce(torch.promote_types, [a.dtype for a in attrs]))
                                                for a in attrs])
        data = {}
        for key in first:
            if key == "inputs" or key in STRUCTURE_KEYS or key in self.node_keys:
                continue
            if key in self.token_keys:
                values = [_as_tensor(s, b, key, "PadCollate", torch.long) for b, s in enumerate(samples)]
                self._check_ragged(key, values, samples, n)
                data[key] = self._pad(values, L, self.ignore_index)
            elif key in self.seq_keys:
                seqs = [_as_tensor(s, b, key, "PadCollate", torch.long) for b, s in enumerate(samples)]
                self._check_ragged(key, seqs, samples, None)
                seq_len = torch.tensor([len(v) for v in seqs], dtype=torch.long)
                data[key] = self._pad(seqs, max(int(seq_len.max()), 1), self.seq_pad)
                data[key + "_lengths"] = seq_len
            else:
                data[key] = _stack(key, samples, "PadCollate")
        batch["data_samples"] = data
        if skipped:
            batch[SKIPPED_KEY] = skipped
        return batch

    def __repr__(self):
        node = f", node_keys={self.node_keys}" if self.node_keys else ""
        return (f"PadCollate(token_keys={self.token_keys}, seq_keys={self.seq_keys}, "
                f"ignore_index={self.ignore_index}{node})")


class BatchPreprocessor(BaseDataPreprocessor):
    """Moves the whole batch (inputs, structure, targets; ``Tokens`` included) to the model's
    device. Modalities derive from it to normalise their inputs on the device.

    Samples the dataset skipped (``on_error='skip'``): the batch's ``'_skipped'`` list is taken out
    first, so it never reaches the model; each skipped sample is logged as a warning and kept in
    ``self.skipped``, a list of ``(index, path, message)`` in the order met (for a report at the end
    of a run; ``max_skips`` on the dataset bounds it).
    """

    def __init__(self, non_blocking: bool = False):
        super().__init__(non_blocking)
        self.skipped: list[tuple[int, str | None, str]] = []

    def take_skipped(self, data):
        """``data`` without ``'_skipped'``; its entries logged and added to ``self.skipped``."""
        if not isinstance(data, Mapping) or SKIPPED_KEY not in data:
            return data
        for index, path, message in data[SKIPPED_KEY]:
            self.skipped.append((index, path, message))
            where = f"sample {index}" + (f" ({path})" if path else "")
            print_log(f"skipped {where}: {message}", logger="current", level=logging.WARNING)
        return {k: v for k, v in data.items() if k != SKIPPED_KEY}

    def cast_data(self, data):
        data = self.take_skipped(data)
        # mmengine's recursion over mappings and sequences, plus Tokens (which it would leave behind)
        return data.to(self.device) if isinstance(data, Tokens) else super().cast_data(data)

    def forward(self, data: dict, training: bool = False) -> dict:
        return self.cast_data(data)

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
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from mmengine.model import BaseDataPreprocessor
from torch import Tensor

from glocal.core.errors import InputError
from glocal.core.tokens import Tokens

__all__ = ["StackCollate", "PadCollate", "stack_collate", "BatchPreprocessor", "batch_inputs", "require_field",
           "STRUCTURE_KEYS"]

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


def _as_numeric(v) -> Tensor | None:
    """``v`` as a tensor when it is numeric (numbers, arrays, lists of numbers); else None."""
    if isinstance(v, Tensor):
        return v
    if isinstance(v, (str, bytes)) or v is None:
        return None
    try:
        a = np.asarray(v)
    except ValueError:  # ragged nested lists
        return None
    return torch.as_tensor(a) if a.dtype.kind in "biuf" else None


def _stack_targets(key: str, values: list) -> Any:
    """Stack per-sample values of equal shape into a tensor; non-numeric values (paths) stay a list."""
    arrays = [_as_numeric(v) for v in values]
    if any(a is None for a in arrays):
        return values
    shapes = {tuple(a.shape) for a in arrays}
    if len(shapes) > 1:
        raise InputError(f"samples have '{key}' of different shapes {sorted(shapes)[:4]}: a ragged per-sample "
                         f"value needs PadCollate(seq_keys=({key!r},)) (padded, with {key}_lengths)")
    return torch.stack(arrays)


class StackCollate:
    """Fixed-size samples: ``inputs`` (and ``pos`` if present) are stacked; every other key goes to
    ``data_samples``, stacked when numeric (``label [B]``, ``seg [B, H, W]``), a list otherwise."""

    def __call__(self, samples: Sequence[dict]) -> dict:
        if not samples:
            raise InputError("StackCollate got an empty list of samples")
        batch = dict(inputs=_stack_targets("inputs", [s["inputs"] for s in samples]))
        if "pos" in samples[0]:
            batch["pos"] = _stack_targets("pos", [s["pos"] for s in samples])
        batch["data_samples"] = {k: _stack_targets(k, [s[k] for s in samples])
                                 for k in samples[0] if k not in ("inputs", "pos")}
        return batch

    def __repr__(self):
        return "StackCollate()"


stack_collate = StackCollate()


class PadCollate:
    """Ragged samples padded to the longest, with the mask and lengths.

    Each sample's ``inputs`` is ``[L_i, ...]`` (elements first: nodes, points, frames). The batch:

    - ``inputs [B, L, ...]`` zero-padded (``pad_value``), ``mask [B, L]`` (True = valid),
      ``lengths [B]``, ``batch [N]`` (the sample of each valid element, PyG-style);
    - ``pos [B, L, P]`` padded; ``order [B, L]`` padded with the padded positions appended, so each
      row stays a permutation of ``range(L)``;
    - ``edge_index [2, E]``: every sample's ``[2, E_i]`` (local node indices) offset into the
      flattened ``b * L + i`` indexing, concatenated; ``edge_attr [E, De]`` concatenated;
    - ``data_samples``: keys in ``token_keys`` (per-element targets, ``[L_i]``) padded with
      ``ignore_index`` to ``[B, L]``; keys in ``seq_keys`` (ragged per-sample sequences such as
      transcripts, ``[S_i]``) padded with ``seq_pad`` to ``[B, S]`` plus ``<key>_lengths [B]``;
      everything else stacked per sample as :class:`StackCollate` does.
    """

    def __init__(self, token_keys: Sequence[str] = (), seq_keys: Sequence[str] = (), ignore_index: int = -100,
                 pad_value: float = 0.0, seq_pad: int = 0):
        self.token_keys, self.seq_keys = tuple(token_keys), tuple(seq_keys)
        self.ignore_index, self.pad_value, self.seq_pad = ignore_index, pad_value, seq_pad

    @staticmethod
    def _pad(values: list[Tensor], length: int, fill) -> Tensor:
        out = values[0].new_full((len(values), length, *values[0].shape[1:]), fill)
        for b, v in enumerate(values):
            out[b, :len(v)] = v
        return out

    def __call__(self, samples: Sequence[dict]) -> dict:
        if not samples:
            raise InputError("PadCollate got an empty list of samples")
        inputs = [torch.as_tensor(s["inputs"]) for s in samples]
        if any(x.dim() == 0 for x in inputs) or len({x.shape[1:] for x in inputs}) > 1:
            raise InputError(f"PadCollate: every sample's 'inputs' must be [L_i, ...] with the same trailing "
                             f"shape; got {[tuple(x.shape) for x in inputs][:4]}")
        lengths = torch.tensor([len(x) for x in inputs], dtype=torch.long)
        B, L = len(samples), int(lengths.max())
        mask = torch.arange(L) < lengths[:, None]  # [B, L]
        batch = dict(inputs=self._pad(inputs, L, self.pad_value), mask=mask, lengths=lengths,
                     batch=torch.arange(B).repeat_interleave(lengths))
        first = samples[0]
        if "pos" in first:
            batch["pos"] = self._pad([torch.as_tensor(s["pos"]) for s in samples], L, 0)
        if "order" in first:
            rows = []
            for s, n in zip(samples, lengths.tolist()):
                order = torch.as_tensor(s["order"], dtype=torch.long)
                rows.append(torch.cat([order, torch.arange(n, L)]))
            batch["order"] = torch.stack(rows)
        if "edge_index" in first:
            edges = []
            for b, s in enumerate(samples):
                ei = torch.as_tensor(s["edge_index"], dtype=torch.long)
                if ei.dim() != 2 or ei.shape[0] != 2:
                    raise InputError(f"PadCollate: sample {b} has edge_index of shape {tuple(ei.shape)}; "
                                     f"expected [2, E] of local node indices")
                if ei.numel() and (int(ei.min()) < 0 or int(ei.max()) >= int(lengths[b])):
                    raise InputError(f"PadCollate: sample {b} has edges to nodes outside 0..{int(lengths[b]) - 1}")
                edges.append(ei + b * L)
            batch["edge_index"] = torch.cat(edges, 1)
            if "edge_attr" in first:
                batch["edge_attr"] = torch.cat([torch.as_tensor(s["edge_attr"]) for s in samples])
        data = {}
        for key in first:
            if key == "inputs" or key in STRUCTURE_KEYS:
                continue
            values = [s[key] for s in samples]
            if key in self.token_keys:
                data[key] = self._pad([torch.as_tensor(v, dtype=torch.long) for v in values], L, self.ignore_index)
            elif key in self.seq_keys:
                seqs = [torch.as_tensor(v, dtype=torch.long) for v in values]
                seq_len = torch.tensor([len(v) for v in seqs], dtype=torch.long)
                data[key] = self._pad(seqs, max(int(seq_len.max()), 1), self.seq_pad)
                data[key + "_lengths"] = seq_len
            else:
                data[key] = _stack_targets(key, values)
        batch["data_samples"] = data
        return batch

    def __repr__(self):
        return (f"PadCollate(token_keys={self.token_keys}, seq_keys={self.seq_keys}, "
                f"ignore_index={self.ignore_index})")


class BatchPreprocessor(BaseDataPreprocessor):
    """Moves the whole batch (inputs, structure, targets; ``Tokens`` included) to the model's
    device. Modalities derive from it to normalise their inputs on the device."""

    def cast_data(self, data):
        # mmengine's recursion over mappings and sequences, plus Tokens (which it would leave behind)
        return data.to(self.device) if isinstance(data, Tokens) else super().cast_data(data)

    def forward(self, data: dict, training: bool = False) -> dict:
        return self.cast_data(data)

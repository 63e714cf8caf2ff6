"""Sequence labelling with CTC: a per-token head, the CTC loss, greedy decoding and CER/WER.

Connectionist Temporal Classification (Graves et al., "Connectionist Temporal Classification:
Labelling Unsegmented Sequence Data with Recurrent Neural Networks", ICML 2006): the head scores
every frame over ``K`` symbols, one of which (``blank``) means "no symbol"; a transcript is read off
a frame path by collapsing repeated symbols and dropping blanks.

The pieces follow the task layer's contract (see DESIGN.md, "The task layer, one for all"):

- ``TokenHead``: ``BackboneOutput -> Tokens`` whose ``x [B, L, K]`` are per-frame logits (the
  structure, the mask included, is kept);
- ``CTCLoss``: ``(output, data_samples, tokens) -> loss``, targets padded ``[B, S_max]`` with
  ``<target>_lengths [B]``;
- ``CTCGreedyDecoder``: the test-time post-processing, one dict per sample;
- ``ErrorRate``: the mmengine metric, character and word error rates in percent.

Frames are the valid tokens of the head's output, in token order. Padding is normally at the end
of a sample; a mask with holes is honoured too (the valid frames are moved to the front first).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.evaluator import BaseMetric
from torch import Tensor, nn

from glocal.core.dropout import Dropout
from glocal.core.errors import InputError
from glocal.core.tokens import Tokens

__all__ = ["TokenHead", "CTCLoss", "CTCGreedyDecoder", "ErrorRate", "ctc_greedy_decode",
           "edit_distance", "edit_distance_reference", "ragged_target"]


def _last_tokens(feats) -> Tokens:
    """The last stage's tokens of a ``BackboneOutput`` (a bare ``Tokens`` passes through)."""
    return feats if isinstance(feats, Tokens) else feats.last


class TokenHead(nn.Module):
    """Per-token classification: dropout and a ``Linear(in_dim, num_classes)`` on every token of
    the last stage. ``BackboneOutput -> Tokens`` with ``x [B, L, K]``; the rows of padded tokens
    are computed but never read downstream (loss and decoder use the mask)."""

    postprocess = dict(type="CTCGreedyDecoder")  # the task model's default; configs may name another

    def __init__(self, in_dim: int, num_classes: int, drop: float = 0.0):
        super().__init__()
        self.num_classes = num_classes
        self.drop = Dropout(drop)
        self.fc = nn.Linear(in_dim, num_classes)

    def forward(self, feats) -> Tokens:
        tokens = _last_tokens(feats)
        return tokens.replace(x=self.fc(self.drop(tokens.x)))  # x: [B, L, K]


# -- frames and targets ---------------------------------------------------------------------------

def _frames(output: Tokens | Tensor) -> tuple[Tensor, Tensor]:
    """Per-frame logits with each sample's valid frames first, and the frame counts.

    ``output.x [B, L, K] -> (logits [B, L, K], lengths [B] long)``. Without a mask every frame is
    valid. With a mask, a stable sort moves the valid frames to the front in their order (a no-op
    for the usual padding at the end), and the padded rows behind them are zeroed.
    """
    if isinstance(output, Tensor):  # bare logits [B, L, K]: every frame valid
        output = Tokens(output)
    x = output.x
    B, L, _ = x.shape
    if output.mask is None:
        return x, torch.full((B,), L, dtype=torch.long, device=x.device)
    mask = output.mask
    lengths = mask.sum(1)  # [B]
    # position of each valid frame among its sample's frames; padding goes behind
    order = torch.sort((~mask).to(torch.uint8), dim=1, stable=True).indices  # [B, L]
    x = x.gather(1, order.unsqueeze(-1).expand_as(x))
    # padded rows may hold anything (even NaN): zero them, so neither value nor gradient leaks
    pad = torch.arange(L, device=x.device) >= lengths.unsqueeze(1)  # [B, L]
    return x.masked_fill(pad.unsqueeze(-1), 0.0), lengths


def ragged_target(data_samples: Mapping, key: str, device=None) -> tuple[Tensor, Tensor]:
    """The padded targets ``data_samples[key] [B, S_max]`` (long) and their lengths ``[B]``.

    Lengths come from ``data_samples[key + "_lengths"]``; without it every row is taken to be full
    (fixed-length targets). A list of per-sample sequences is padded here.
    """
    if not isinstance(data_samples, Mapping) or key not in data_samples:
        present = sorted(data_samples) if isinstance(data_samples, Mapping) else type(data_samples).__name__
        raise InputError(f"the targets {key!r} are missing from data_samples (keys present: {present}); "
                         f"set the loss/decoder's target= to the key the dataset uses")
    value = data_samples[key]
    lengths = data_samples.get(key + "_lengths")
    if not isinstance(value, Tensor):  # a list of per-sample sequences, not collated
        seqs = [torch.as_tensor(v, dtype=torch.long).reshape(-1) for v in value]
        lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
        value = (torch.nn.utils.rnn.pad_sequence(seqs, batch_first=True) if seqs
                 else torch.zeros(0, 0, dtype=torch.long))
    if value.dim() == 1:  # one label per sample: sequences of length 1
        value = value.unsqueeze(1)
    if value.dim() != 2:
        raise InputError(f"targets {key!r} must be padded [B, S_max]; got shape {tuple(value.shape)}")
    B, S = value.shape
    if lengths is None:
        lengths = torch.full((B,), S, dtype=torch.long)
    lengths = torch.as_tensor(lengths).to(device=value.device, dtype=torch.long).reshape(-1)
    if lengths.shape[0] != B:
        raise InputError(f"{key}_lengths has {lengths.shape[0]} entries for {B} target rows")
    if bool(((lengths < 0) | (lengths > S)).any()):
        raise InputError(f"{key}_lengths must lie in [0, {S}] (the padded width of {key!r}); got "
                         f"{lengths.tolist()}")
    value = value.long()
    if device is not None:
        value, lengths = value.to(device), lengths.to(device)
    return value, lengths


# -- the loss -------------------------------------------------------------------------------------

class CTCLoss(nn.Module):
    """CTC loss over the head's per-frame logits (``torch.nn.functional.ctc_loss``).

    Args:
        blank: the id of the blank symbol.
        target: key of the transcripts in ``data_samples`` (``[B, S_max]`` ids with
            ``<target>_lengths [B]``).
        reduction: ``"mean"`` (each sample's loss divided by its target length, then averaged, as
            torch does), ``"sum"`` or ``"none"``.
        zero_infinity: zero infinite losses and their gradients (torch's option). Infeasible
            targets are refused before the loss is computed, so this is rarely needed.

    ``forward(output: Tokens x [B, L, K], data_samples, tokens) -> loss``. Input lengths are the
    valid frames of ``output`` (its mask; all ``L`` without one). Log-probabilities are computed in
    float32. Every sample is checked first: its ids must lie in ``[0, K)`` and differ from the blank,
    and it must fit in its frames: a path needs one frame per label plus one blank between each
    pair of equal adjacent labels.
    """

    def __init__(self, blank: int = 0, target: str = "text", reduction: str = "mean",
                 zero_infinity: bool = False):
        super().__init__()
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"CTCLoss reduction must be 'mean', 'sum' or 'none'; got {reduction!r}")
        self.blank, self.target, self.reduction, self.zero_infinity = blank, target, reduction, zero_infinity

    def forward(self, output: Tokens, data_samples: Mapping, tokens: Tokens | None = None) -> Tensor:
        logits, input_lengths = _frames(output)  # [B, L, K], [B]
        B, L, K = logits.shape
        targets, target_lengths = ragged_target(data_samples, self.target, device=logits.device)
        if targets.shape[0] != B:
            raise InputError(f"{B} outputs but {targets.shape[0]} target rows in {self.target!r}")
        valid = torch.arange(targets.shape[1], device=targets.device) < target_lengths.unsqueeze(1)  # [B, S]
        self.check(targets, target_lengths, valid, input_lengths, K)
        log_probs = logits.float().log_softmax(-1).transpose(0, 1)  # [L, B, K]
        flat_targets = targets[valid]  # [sum(target_lengths)]: the concatenated form, padding dropped
        return F.ctc_loss(log_probs, flat_targets, input_lengths, target_lengths, blank=self.blank,
                          reduction=self.reduction, zero_infinity=self.zero_infinity)

    def check(self, targets: Tensor, target_lengths: Tensor, valid: Tensor, input_lengths: Tensor,
              num_classes: int) -> None:
        """Raise :class:`InputError` for ids out of range, blanks in a target, or a target that
        needs more frames than its sample has. ``targets [B, S]``, ``valid [B, S]``."""
        key = self.target
        bad_id = valid & ((targets < 0) | (targets >= num_classes))  # [B, S]
        has_blank = valid & (targets == self.blank)  # [B, S]
        # frames a path needs: one per label, plus a blank between equal neighbours
        repeats = (targets[:, 1:] == targets[:, :-1]) & valid[:, 1:]  # [B, S - 1]
        needed = target_lengths + repeats.sum(1)  # [B]
        too_long = needed > input_lengths.to(needed.device)  # [B]
        if not bool(bad_id.any() | has_blank.any() | too_long.any()):  # one device sync when all is well
            return
        if bool(bad_id.any()):
            b, s = (int(i) for i in bad_id.nonzero()[0])
            raise InputError(f"{key!r} sample {b} has id {int(targets[b, s])} at position {s}, outside "
                             f"the head's {num_classes} classes [0, {num_classes}): give the head "
                             f"num_classes = vocabulary size (blank included)")
        if bool(has_blank.any()):
            b, s = (int(i) for i in has_blank.nonzero()[0])
            raise InputError(f"{key!r} sample {b} contains the blank id {self.blank} at position {s}: "
                             f"transcripts must not use the blank (if the targets are padded, pass "
                             f"{key}_lengths; otherwise reserve id {self.blank} for the blank)")
        if bool(too_long.any()):
            b = int(too_long.nonzero()[0])
            n_bad = int(too_long.sum())
            raise InputError(
                f"CTC target {key!r} of sample {b} has length {int(target_lengths[b])} and "
                f"{int(repeats[b].sum())} repeated adjacent labels, so it needs {int(needed[b])} frames, "
                f"but the output has only {int(input_lengths[b])} frames for it ({n_bad} sample(s) in "
                f"this batch are too long). Use less subsampling in the stem/backbone (more output "
                f"frames) or shorter target units (e.g. subwords instead of characters, or shorter "
                f"utterances).")


# -- decoding -------------------------------------------------------------------------------------

def ctc_greedy_decode(logits: Tensor, lengths: Tensor | None = None, blank: int = 0) -> list[list[int]]:
    """Best-path decoding: the argmax symbol per frame, repeats collapsed, blanks dropped.

    ``logits [B, L, K]``, ``lengths [B]`` valid frames at the front of each row (None: all ``L``)
    -> one list of ids per sample.

    >>> x = torch.tensor([[1, 1, 0, 1, 2, 2, 0, 0]])  # frame symbols: a a _ a b b _ _
    >>> ctc_greedy_decode(F.one_hot(x, 3).float(), blank=0)
    [[1, 1, 2]]
    """
    B, L, _ = logits.shape
    best = logits.argmax(-1)  # [B, L]
    prev = torch.cat([best.new_full((B, 1), -1), best[:, :-1]], dim=1)  # symbol of the previous frame
    keep = (best != blank) & (best != prev)  # [B, L]
    if lengths is not None:
        keep &= torch.arange(L, device=best.device) < lengths.to(best.device).unsqueeze(1)
    best, keep = best.cpu(), keep.cpu()
    return [row[k].tolist() for row, k in zip(best, keep)]


class CTCGreedyDecoder:
    """Test-time post-processing for CTC: greedy decoding and the texts for :class:`ErrorRate`.

    Args:
        blank: the blank id.
        vocab: symbol of each id (a string, one character per id, or a list of strings); the entry
            ``space`` separates words. None: texts are the ids joined by spaces.
        target: key of the reference transcripts in ``data_samples`` (with ``<target>_lengths``).
        space: the vocabulary's word separator (``"|"`` in wav2vec-style vocabularies); it is
            written as a space in the texts.

    ``__call__(output: Tokens, data_samples) -> list[dict]`` (``output``: logits or the
    probabilities of :meth:`activate`), per sample ``dict(pred_ids, gt_ids, pred_text, gt_text)``;
    the ``gt_*`` entries only when the targets are present. Texts have leading/trailing whitespace
    stripped.
    """

    @staticmethod
    def activate(output: Tokens | Tensor) -> Tokens | Tensor:
        """Per-frame probabilities in float32: what test-time augmentation averages."""
        if isinstance(output, Tokens):
            return output.replace(x=output.x.float().softmax(-1))
        return output.float().softmax(-1)

    def __init__(self, blank: int = 0, vocab: str | Sequence[str] | None = None, target: str = "text",
                 space: str = " "):
        self.blank, self.target, self.space = blank, target, space
        self.vocab = list(vocab) if vocab is not None else None

    def to_text(self, ids: Sequence[int]) -> str:
        if self.vocab is None:
            return " ".join(str(i) for i in ids)
        try:
            pieces = [self.vocab[i] for i in ids]
        except IndexError:
            bad = [i for i in ids if not 0 <= i < len(self.vocab)]
            raise InputError(f"ids {bad[:5]} have no entry in the decoder's vocab of {len(self.vocab)} "
                             f"symbols: give CTCGreedyDecoder the vocabulary the targets were made with")
        text = "".join(pieces)
        if self.space != " ":
            text = text.replace(self.space, " ")
        return text.strip()

    def __call__(self, output: Tokens, data_samples: Mapping | None = None) -> list[dict]:
        logits, lengths = _frames(output)
        preds = ctc_greedy_decode(logits.detach(), lengths, self.blank)
        results = [dict(pred_ids=p, pred_text=self.to_text(p)) for p in preds]
        if isinstance(data_samples, Mapping) and self.target in data_samples:
            targets, target_lengths = ragged_target(data_samples, self.target)
            for r, row, n in zip(results, targets.cpu(), target_lengths.cpu().tolist()):
                r["gt_ids"] = row[:n].tolist()
                r["gt_text"] = self.to_text(r["gt_ids"])
        return results


# -- edit distance and the metric -----------------------------------------------------------------

def edit_distance_reference(ref: Sequence, hyp: Sequence) -> int:
    """Levenshtein distance (insertions, deletions, substitutions, each cost 1), the plain
    ``O(len(ref) * len(hyp))`` dynamic programme, kept as the reference for :func:`edit_distance`."""
    prev = list(range(len(hyp) + 1))  # distances from ref[:0] to hyp[:j]
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def _as_ids(ref: Sequence, hyp: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """Both sequences as int arrays over a shared table of their (hashable) elements."""
    table: dict = {}
    a = np.fromiter((table.setdefault(e, len(table)) for e in ref), dtype=np.int64, count=len(ref))
    b = np.fromiter((table.setdefault(e, len(table)) for e in hyp), dtype=np.int64, count=len(hyp))
    return a, b


def edit_distance(ref: Sequence, hyp: Sequence) -> int:
    """Levenshtein distance between two sequences (strings, lists of ids or of words).

    Row-vectorised with numpy: for row ``i``, ``t[j] = min(prev[j] + 1, prev[j-1] + cost[j])``
    covers deletions and substitutions; insertions chain along the row,
    ``cur[j] = min_k<=j (t[k] + j - k) = j + cummin(t[k] - k)``, one ``minimum.accumulate``.
    Same result as :func:`edit_distance_reference`.

    >>> edit_distance("kitten", "sitting")
    3
    """
    if len(ref) < len(hyp):  # the distance is symmetric: loop over the shorter sequence
        ref, hyp = hyp, ref
    if len(hyp) == 0:
        return len(ref)
    a, b = _as_ids(ref, hyp)
    m = len(b)
    j = np.arange(m + 1)
    prev = j.copy()  # [m + 1]
    for i in range(1, len(a) + 1):
        t = np.empty(m + 1, dtype=np.int64)
        t[0] = i
        np.minimum(prev[1:] + 1, prev[:-1] + (b != a[i - 1]), out=t[1:])
        prev = np.minimum.accumulate(t - j) + j
    return int(prev[-1])


class ErrorRate(BaseMetric):
    """Character and word error rates in percent: total edits over total reference length,
    ``CER`` over the characters of ``pred_text`` vs ``gt_text``, ``WER`` over their words (split on
    whitespace). Consumes the dicts of :class:`CTCGreedyDecoder`."""

    default_prefix = ""

    def __init__(self, collect_device: str = "cpu", prefix: str | None = None):
        super().__init__(collect_device=collect_device, prefix=prefix)

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for s in data_samples:
            if "gt_text" not in s or "pred_text" not in s:
                raise InputError(f"ErrorRate needs 'pred_text' and 'gt_text' in each sample; got keys "
                                 f"{sorted(s)} (are the reference transcripts in the test batches?)")
            pred, gt = s["pred_text"], s["gt_text"]
            pw, gw = pred.split(), gt.split()
            self.results.append((edit_distance(gt, pred), len(gt), edit_distance(gw, pw), len(gw)))

    def compute_metrics(self, results: list) -> dict:
        ce, cn, we, wn = (sum(r[i] for r in results) for i in range(4))
        return dict(CER=100.0 * ce / max(cn, 1), WER=100.0 * we / max(wn, 1))

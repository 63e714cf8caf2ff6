import random

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from glocal.core.backbone import BackboneOutput
from glocal.core.conv import DepthwiseConv
from glocal.core.errors import InputError
from glocal.core.tokens import Tokens
from glocal.tasks.sequence import (CTCGreedyDecoder, CTCLoss, ErrorRate, TokenHead, ctc_greedy_decode,
                                   edit_distance, edit_distance_reference)


def _pad(seqs, value=0):
    """list of 1D long tensors -> ([B, S_max], lengths [B])"""
    lengths = torch.tensor([len(s) for s in seqs])
    out = torch.full((len(seqs), int(lengths.max())), value, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = s
    return out, lengths


# -- greedy decoding --------------------------------------------------------------------------------

def test_greedy_decode_collapses_repeats_and_drops_blanks():
    frames = torch.tensor([[1, 1, 0, 1, 2, 2, 0, 0],  # a a _ a b b _ _ -> a a b
                           [0, 0, 0, 0, 0, 0, 0, 0],  # all blank -> nothing
                           [3, 3, 3, 2, 2, 1, 1, 1]])  # c c c b b | a a a, 5 valid frames -> c b
    logits = F.one_hot(frames, 4).float()  # [3, 8, 4]
    assert ctc_greedy_decode(logits) == [[1, 1, 2], [], [3, 2, 1]]
    assert ctc_greedy_decode(logits, torch.tensor([8, 8, 5])) == [[1, 1, 2], [], [3, 2]]
    # another blank id
    assert ctc_greedy_decode(logits, blank=3) == [[1, 0, 1, 2, 0], [0], [2, 1]]


def test_decoder_texts_and_masked_frames():
    vocab = "_ab|c"  # id 0 blank, id 3 the word separator
    frames = torch.tensor([[1, 0, 3, 2, 2, 4], [4, 4, 1, 1, 1, 1]])
    mask = torch.tensor([[True] * 6, [True, False, True, True, False, False]])  # a hole in sample 1
    out = Tokens(F.one_hot(frames, 5).float(), mask=mask)
    targets, lengths = _pad([torch.tensor([1, 3, 2, 4]), torch.tensor([4, 1])])
    samples = dict(text=targets, text_lengths=lengths)
    res = CTCGreedyDecoder(vocab=vocab, space="|")(out, samples)
    assert res[0] == dict(pred_ids=[1, 3, 2, 4], pred_text="a bc", gt_ids=[1, 3, 2, 4], gt_text="a bc")
    assert res[1]["pred_ids"] == [4, 1] and res[1]["pred_text"] == "ca"  # frames c | c a (hole skipped)
    plain = CTCGreedyDecoder()(out)  # no vocab, no targets
    assert plain[0] == dict(pred_ids=[1, 3, 2, 4], pred_text="1 3 2 4")
    with pytest.raises(InputError, match="vocab"):
        CTCGreedyDecoder(vocab="_a")(out)


# -- edit distance and error rates ------------------------------------------------------------------

@pytest.mark.parametrize("ref, hyp, d", [
    ("kitten", "sitting", 3), ("flaw", "lawn", 2), ("", "abc", 3), ("abc", "", 3), ("", "", 0),
    ("abc", "abc", 0), ("intention", "execution", 5), ([1, 2, 3, 4], [2, 3, 4, 5], 2),
    ("the cat sat".split(), "the hat sat down".split(), 2)])
def test_edit_distance_known_values(ref, hyp, d):
    assert edit_distance_reference(ref, hyp) == d
    assert edit_distance(ref, hyp) == d


def test_edit_distance_fast_matches_reference():
    rng = random.Random(0)
    for _ in range(300):
        a = [rng.randrange(3) for _ in range(rng.randrange(16))]
        b = [rng.randrange(3) for _ in range(rng.randrange(16))]
        assert edit_distance(a, b) == edit_distance_reference(a, b) == edit_distance(b, a)


def test_error_rate_on_known_strings():
    metric = ErrorRate()
    metric.process(None, [dict(pred_text="helo world", gt_text="hello world"),  # 1 char, 1 word
                          dict(pred_text="good bye", gt_text="goodbye")])  # 1 char (space), 2 words
    res = metric.compute_metrics(metric.results)
    assert res["CER"] == pytest.approx(100 * 2 / 18)
    assert res["WER"] == pytest.approx(100 * 3 / 3)
    with pytest.raises(InputError, match="gt_text"):
        metric.process(None, [dict(pred_text="x")])


# -- the CTC loss -----------------------------------------------------------------------------------

def _ctc_case(seed=0):
    g = torch.Generator().manual_seed(seed)
    B, L, K = 3, 12, 6
    lengths = torch.tensor([12, 9, 5])
    mask = torch.arange(L) < lengths[:, None]
    logits = torch.randn(B, L, K, generator=g)
    seqs = [torch.tensor([1, 2, 2, 5, 3]), torch.tensor([4, 4, 4]), torch.tensor([2])]
    targets, tlen = _pad(seqs)
    return logits, mask, lengths, seqs, targets, tlen


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_ctc_matches_torch_per_sample_and_ignores_padding(reduction):
    logits, mask, lengths, seqs, targets, tlen = _ctc_case()
    loss_fn = CTCLoss(reduction=reduction)
    x = logits.clone().requires_grad_()
    loss = loss_fn(Tokens(x, mask=mask), dict(text=targets, text_lengths=tlen), None)
    # reference: torch's ctc_loss on each sample alone, without any padding
    ref = torch.stack([F.ctc_loss(logits[b, :lengths[b]].log_softmax(-1)[:, None], seqs[b][None],
                                  lengths[b:b + 1], tlen[b:b + 1], reduction="sum") for b in range(3)])
    ref = dict(mean=(ref / tlen).mean(), sum=ref.sum(), none=ref)[reduction]
    torch.testing.assert_close(loss, ref)

    # garbage in the padded frames (NaN included) and padded target slots changes nothing
    x2 = logits.masked_fill(~mask[..., None], float("nan"))
    x2[1, 10] = 1e4
    x2.requires_grad_()
    targets2 = targets.masked_fill(torch.arange(targets.shape[1]) >= tlen[:, None], 77)
    loss2 = loss_fn(Tokens(x2, mask=mask), dict(text=targets2, text_lengths=tlen), None)
    torch.testing.assert_close(loss2, loss)
    loss.sum().backward()
    loss2.sum().backward()
    assert torch.isfinite(x2.grad).all() and (x2.grad[~mask] == 0).all()
    torch.testing.assert_close(x2.grad, x.grad.masked_fill(~mask[..., None], 0.0))


def test_ctc_mask_with_holes_equals_compacted_frames():
    logits, mask, lengths, seqs, targets, tlen = _ctc_case(1)
    samples = dict(text=targets, text_lengths=tlen)
    holes = torch.arange(24)[None] < 2 * lengths[:, None]
    holes[:, 1::2] = False  # valid frames at the even positions of a longer row
    spread = torch.randn(3, 24, 6)
    spread[holes] = logits[mask]
    a = CTCLoss()(Tokens(logits, mask=mask), samples, None)
    b = CTCLoss()(Tokens(spread, mask=holes), samples, None)
    torch.testing.assert_close(a, b)


def test_ctc_no_mask_uses_all_frames_and_float32():
    logits = torch.randn(2, 7, 4, dtype=torch.float64)
    targets = torch.tensor([[1, 2, 3], [3, 3, 0]])
    samples = dict(text=targets, text_lengths=torch.tensor([3, 2]))
    loss = CTCLoss()(Tokens(logits), samples, None)
    assert loss.dtype == torch.float32
    ref = F.ctc_loss(logits.float().log_softmax(-1).transpose(0, 1), targets, torch.tensor([7, 7]),
                     torch.tensor([3, 2]))
    torch.testing.assert_close(loss, ref)


def test_ctc_errors_say_what_to_do():
    logits = torch.randn(2, 6, 5)
    mask = torch.tensor([[True] * 6, [True] * 3 + [False] * 3])
    out = Tokens(logits, mask=mask)
    loss = CTCLoss()
    # sample 1: 3 labels with one adjacent repeat need 4 frames, only 3 are valid
    t, n = _pad([torch.tensor([1, 2]), torch.tensor([2, 2, 3])])
    with pytest.raises(InputError, match=r"sample 1 has length 3.*needs 4 frames.*only 3.*subsampling"):
        loss(out, dict(text=t, text_lengths=n), None)
    t, n = _pad([torch.tensor([1, 2]), torch.tensor([1, 2, 3, 4])])  # 4 labels, 3 frames
    with pytest.raises(InputError, match="sample 1"):
        loss(out, dict(text=t, text_lengths=n), None)
    loss(out, dict(text=t[:, :3], text_lengths=torch.tensor([2, 3])), None)  # 3 labels fit 3 frames
    t, n = _pad([torch.tensor([1, 5]), torch.tensor([1])])  # id 5 with only 5 classes
    with pytest.raises(InputError, match="sample 0 has id 5.*num_classes"):
        loss(out, dict(text=t, text_lengths=n), None)
    t, n = _pad([torch.tensor([1, 0, 2]), torch.tensor([1])])
    with pytest.raises(InputError, match="blank"):
        loss(out, dict(text=t, text_lengths=n), None)
    with pytest.raises(InputError, match="blank.*text_lengths"):  # padded but lengths forgotten
        loss(out, dict(text=t), None)
    with pytest.raises(InputError, match=r"'text' are missing.*\['label', 'words'\]"):
        loss(out, dict(label=torch.zeros(2), words=t), None)
    with pytest.raises(InputError, match=r"text_lengths must lie in \[0, 3\]"):
        loss(out, dict(text=t, text_lengths=torch.tensor([2, 4])), None)


def test_ctc_accepts_uncollated_targets():
    logits = torch.randn(2, 6, 5)
    seqs = [[1, 2], [3, 3, 4]]
    t, n = _pad([torch.tensor(q) for q in seqs])
    a = CTCLoss()(Tokens(logits), dict(text=seqs), None)
    torch.testing.assert_close(a, CTCLoss()(Tokens(logits), dict(text=t, text_lengths=n), None))


def test_token_head_keeps_structure():
    mask = torch.tensor([[True, True, False], [True, True, True]])
    feats = BackboneOutput(stages=[Tokens(torch.randn(2, 3, 8), mask=mask, grid=(3,))])
    out = TokenHead(8, 5)(feats)
    assert isinstance(out, Tokens) and out.x.shape == (2, 3, 5)
    assert out.mask is mask and out.grid == (3,)


# -- learning on synthetic sequences ----------------------------------------------------------------

ALPHABET = 5  # symbols 1..5, 0 is the blank


def _render(n, gen):
    """Random strings of 3-6 symbols, each symbol drawn for 2-4 frames after a gap of 1-2 noise
    frames; frames are noisy one-hots ``[L_i, 5]``. Returns padded frames ``[n, L, 5]``, mask, the
    padded strings and their lengths."""
    frames, strings = [], []
    for _ in range(n):
        s = torch.randint(1, ALPHABET + 1, (int(torch.randint(3, 7, (1,), generator=gen)),), generator=gen)
        rows = []
        for sym in s.tolist():
            rows += [torch.zeros(ALPHABET)] * int(torch.randint(1, 3, (1,), generator=gen))
            rows += [F.one_hot(torch.tensor(sym - 1), ALPHABET).float()] * int(
                torch.randint(2, 5, (1,), generator=gen))
        rows += [torch.zeros(ALPHABET)] * int(torch.randint(0, 3, (1,), generator=gen))
        f = torch.stack(rows)
        frames.append(f + 0.35 * torch.randn(f.shape, generator=gen))
        strings.append(s)
    L = max(len(f) for f in frames)
    x = torch.full((n, L, ALPHABET), 9.0)  # padding: loud garbage that must stay inert
    mask = torch.zeros(n, L, dtype=torch.bool)
    for i, f in enumerate(frames):
        x[i, :len(f)], mask[i, :len(f)] = f, True
    targets, lengths = _pad(strings)
    return x, mask, targets, lengths


class TinyCTCModel(nn.Module):
    """Linear -> depthwise conv over the (T,) grid (padding zeroed by the conv) -> TokenHead."""

    def __init__(self, dim=24):
        super().__init__()
        self.inp = nn.Linear(ALPHABET, dim)
        self.conv = DepthwiseConv(dim, kernel=5, rank=1)
        self.mlp = nn.Sequential(nn.GELU(), nn.Linear(dim, dim), nn.GELU())
        self.head = TokenHead(dim, ALPHABET + 1)

    def forward(self, x, mask):
        t = Tokens(self.inp(x), mask=mask, grid=(x.shape[1],))  # [B, L, C]
        h = t.x + self.mlp(self.conv(t.x, t))
        return self.head(BackboneOutput(stages=[t.replace(x=h)]))



def test_ctc_learns_synthetic_strings(one_thread):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    model, loss_fn = TinyCTCModel(), CTCLoss()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(200):
        x, mask, t, n = _render(16, gen)
        loss = loss_fn(model(x, mask), dict(text=t, text_lengths=n), None)
        opt.zero_grad()
        loss.backward()
        opt.step()

    x, mask, t, n = _render(200, torch.Generator().manual_seed(12345))  # held-out strings
    model.eval()
    with torch.no_grad():
        samples = CTCGreedyDecoder(vocab="_abcde")(model(x, mask), dict(text=t, text_lengths=n))
    metric = ErrorRate()
    metric.process(None, samples)
    cer = metric.compute_metrics(metric.results)["CER"]
    assert cer < 10.0, f"CER {cer:.1f}% after 200 steps (final train loss {loss.item():.3f})"


def test_docstring_examples():
    import doctest

    import glocal.tasks.sequence as module
    assert doctest.testmod(module).failed == 0


def test_decoding_probabilities_equals_decoding_logits():
    out = TokenHead(8, 5)(BackboneOutput(stages=[Tokens(torch.randn(2, 9, 8))]))
    decoder = CTCGreedyDecoder()
    probs = decoder.activate(out)
    assert probs.x.dtype == torch.float32 and torch.allclose(probs.x.sum(-1), torch.ones(2, 9))
    assert decoder(probs) == decoder(out)

"""WindowAttention in 1D (sequences) and 3D (video), beside the 2D cases of test_attention.py: a
per-token loop reference written from Swin's definition (cyclic shift, wrap-around regions,
relative offsets), and masks in 3D (padding inert; window-aligned padding equals the clip alone)."""
import math

import pytest
import torch

from glocal.core import Tokens, WindowAttention


def loop_reference_1d(m: WindowAttention, x: torch.Tensor, mask=None) -> torch.Tensor:
    """Token by token: the tokens it attends to are those in its window after the cyclic shift,
    from the same side of the wrap-around; bias by the offset inside the window."""
    B, n, C = x.shape
    (W,), (s,) = m.window, m.shift
    table_centre = W - 1  # the bias table is sized for the configured window
    if n <= W:
        W, s = n, 0
    h, d = m.heads, C // m.heads
    q, k, v = m.qkv(x).view(B, n, 3, h, d).unbind(2)
    padded = math.ceil(n / W) * W

    def region(p):  # Swin's three regions of the shifted coordinates
        if s == 0:
            return 0
        return 0 if p < padded - W else (1 if p < padded - s else 2)

    out = torch.zeros(B, n, h, d, dtype=x.dtype)
    for b in range(B):
        for i in range(n):
            pi = (i - s) % padded  # position after rolling by -s
            keys = []
            for j in range(n):
                pj = (j - s) % padded
                if pj // W == pi // W and region(pi) == region(pj) and (mask is None or mask[b, j]):
                    keys.append((j, pi % W - pj % W + table_centre))
            idx = torch.tensor([j for j, _ in keys])
            bias = m.rel_pos_table[torch.tensor([r for _, r in keys])].T  # [h, K]
            scores = torch.einsum("hd,khd->hk", q[b, i], k[b, idx]) / math.sqrt(d) + bias
            out[b, i] = torch.einsum("hk,khd->hd", scores.softmax(-1), v[b, idx])
    return m.proj(out.reshape(B, n, C))


@pytest.mark.parametrize("n,window,shift", [(12, 4, 0), (12, 4, 2), (13, 4, 2), (10, 5, 2), (3, 7, 3)])
@pytest.mark.parametrize("masked", [False, True])
def test_1d_window_attention_matches_loop(n, window, shift, masked):
    m = WindowAttention(8, heads=2, window=window, shift=shift, rank=1).double()
    torch.nn.init.normal_(m.rel_pos_table, std=0.5)
    x = torch.randn(2, n, 8, dtype=torch.float64)
    mask = None
    if masked:
        mask = torch.rand(2, n) > 0.3
        mask[:, :: max(1, window)] = True  # every window keeps a valid token
    out = m(x, Tokens(x, mask=mask, grid=(n,)))
    ref = loop_reference_1d(m, x, mask)
    valid = torch.ones(2, n, dtype=torch.bool) if mask is None else mask
    assert (out - ref)[valid].abs().max() <= 1e-10


def test_3d_padding_is_inert_and_aligned_padding_equals_the_clip_alone():
    m = WindowAttention(8, heads=2, window=(2, 3, 3), shift=(1, 1, 1), rank=3).double()
    clip = torch.randn(1, 4, 6, 6, 8, dtype=torch.float64)
    alone = m(clip.reshape(1, -1, 8), Tokens(clip.reshape(1, -1, 8), grid=(4, 6, 6)))
    # the same clip in a batch padded to 6 frames (whole windows of padding, unshifted case below)
    big = torch.randn(2, 6, 6, 6, 8, dtype=torch.float64) * 100
    big[0, :4] = clip[0]
    mask = torch.zeros(2, 6, 6, 6, dtype=torch.bool)
    mask[0, :4] = True
    mask[1] = True
    x, mask = big.reshape(2, -1, 8), mask.reshape(2, -1)
    out = m(x, Tokens(x, mask=mask, grid=(6, 6, 6)))
    x2 = torch.where(mask[..., None], x, torch.randn_like(x))
    out2 = m(x2, Tokens(x2, mask=mask, grid=(6, 6, 6)))
    assert torch.isfinite(out).all() and (out - out2)[mask].abs().max() <= 1e-10
    # unshifted, window-aligned padding: the valid outputs are those of the clip alone
    m.shift = (0, 0, 0)
    alone = m(clip.reshape(1, -1, 8), Tokens(clip.reshape(1, -1, 8), grid=(4, 6, 6)))
    out = m(x, Tokens(x, mask=mask, grid=(6, 6, 6)))
    assert (out[0].view(6, 6, 6, 8)[:4].reshape(-1, 8) - alone[0]).abs().max() <= 1e-10

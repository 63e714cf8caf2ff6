import math

import pytest
import torch

from glocal.core.downsample import ConvDownsample, PatchMerging
from glocal.core.errors import InputError
from glocal.core.tokens import Tokens
from glocal.core.undo import ClusterUndo, GridUndo, IdentityUndo


@pytest.mark.parametrize("grid,factors", [((7,), (2,)), ((5, 7), (2, 2)), ((3, 5, 6), (1, 2, 2)), ((9, 4), (3, 2))])
def test_patch_merging_undo_puts_each_coarse_feature_on_its_fine_cells(grid, factors):
    """A coarse cell's feature goes back to exactly the fine cells merged into it (any rank, with
    the padding the downsampler added cropped away)."""
    L = math.prod(grid)
    fine_index = torch.arange(L, dtype=torch.float32).view(1, L, 1)
    pm = PatchMerging(1, out_dim=1, factors=factors, rank=len(grid), norm=None)
    coarse, undo = pm(Tokens(fine_index, grid=grid))
    coarse_grid = coarse.grid
    ids = torch.arange(math.prod(coarse_grid), dtype=torch.float32).view(1, -1, 1)
    up = undo.up(ids).view(*grid)  # the coarse cell of every fine cell
    for cell in torch.cartesian_prod(*[torch.arange(g) for g in grid]).view(-1, len(grid)).tolist():
        coarse_cell = [c // f for c, f in zip(cell, factors)]
        expect = 0
        for c, g in zip(coarse_cell, coarse_grid):
            expect = expect * g + c
        assert up[tuple(cell)].item() == expect


def test_linear_up_keeps_constants_and_matches_shapes():
    undo = GridUndo((11, 6), (4, 2))
    assert undo.coarse_grid == (3, 3)
    x = torch.full((2, 9, 5), 3.5)
    y = undo.up(x, "linear")
    assert y.shape == (2, 66, 5) and torch.allclose(y, torch.full_like(y, 3.5))
    with pytest.raises(InputError, match="expected 9 coarse tokens"):
        undo.up(torch.zeros(2, 8, 5))
    with pytest.raises(InputError, match="mode"):
        undo.up(x, "cubic")


def test_restore_brings_back_dropped_structure():
    B, L = 2, 16
    edge_index = torch.tensor([[0, 1, 17], [1, 0, 16]])
    order = torch.stack([torch.randperm(L) for _ in range(B)])
    mask = torch.ones(B, L, dtype=torch.bool)
    mask[1, -3:] = False
    fine = Tokens(torch.randn(B, L, 4), mask=mask, grid=(4, 4), edge_index=edge_index, order=order,
                  pos=torch.randn(B, L, 2))
    coarse, undo = ConvDownsample(4, out_dim=8, factors=2)(fine)
    assert coarse.edge_index is None and coarse.order is None  # tied to the fine tokens
    back = undo.restore(undo.up(torch.randn(B, coarse.x.shape[1], 8)))
    assert back.x.shape == (B, L, 8)
    assert back.edge_index is edge_index and back.order is order and back.mask is mask and back.grid == (4, 4)
    assert back.pos is fine.pos


def test_stem_undo_restores_input_grid_without_fine_tokens():
    undo = GridUndo((28, 27), (2, 2))
    t = undo.restore(undo.up(torch.randn(3, 14 * 14, 2)))
    assert t.grid == (28, 27) and t.x.shape == (3, 28 * 27, 2) and t.mask is None


def test_cluster_undo_gathers_and_zeroes_padding():
    mask = torch.tensor([[True, True, True, False]])
    fine = Tokens(torch.randn(1, 4, 2), mask=mask)
    undo = ClusterUndo(torch.tensor([[1, 0, 1, 7]]), fine)
    coarse = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    up = undo.up(coarse)
    assert torch.equal(up[0, :3], torch.tensor([[3.0, 4.0], [1.0, 2.0], [3.0, 4.0]]))
    assert torch.equal(up[0, 3], torch.zeros(2))
    ident = IdentityUndo(fine)
    assert ident.up(fine.x) is fine.x and ident.restore(fine.x).mask is mask

"""PointStem: one token per point, kNN edges among valid points only, the toolkit's errors."""
import pytest
import torch

from glocal.core.errors import ConfigError, InputError
from glocal.core.mpnn import knn_edges
from glocal.modalities.points import PointStem


def _batch(B=2, L=40, F=6):
    torch.manual_seed(0)
    mask = torch.arange(L)[None] < torch.tensor([[L], [L - 15]])
    return dict(inputs=torch.randn(B, L, F), pos=torch.rand(B, L, 3), mask=mask[:B])


def test_tokens_carry_points_positions_and_mask():
    batch = _batch()
    tokens, undo = PointStem(in_dim=6)(batch)
    assert torch.equal(tokens.x[batch["mask"]], batch["inputs"][batch["mask"]])
    assert (tokens.x[~batch["mask"]] == 0).all()  # padding zero
    assert torch.equal(tokens.pos, batch["pos"]) and torch.equal(tokens.mask, batch["mask"])
    assert tokens.edge_index is None and undo.up(tokens.x) is tokens.x
    embedded, _ = PointStem(in_dim=6, dim=16)(batch)
    assert embedded.x.shape == (2, 40, 16) and (embedded.x[~batch["mask"]] == 0).all()


def test_knn_edges_link_valid_points_only():
    batch = _batch()
    tokens, _ = PointStem(in_dim=6, knn=4)(batch)
    assert torch.equal(tokens.edge_index, knn_edges(batch["pos"], 4, batch["mask"]))
    valid = batch["mask"].reshape(-1)
    assert valid[tokens.edge_index].all()  # no edge touches a padded slot
    assert tokens.edge_index.shape[1] == 4 * int(valid.sum())


def test_errors_name_the_field():
    batch = _batch()
    with pytest.raises(InputError, match=r"'inputs' must be \[B, L, 3\]"):
        PointStem(in_dim=3)(batch)
    with pytest.raises(InputError, match="pos"):
        PointStem(in_dim=6)({k: v for k, v in batch.items() if k != "pos"})
    with pytest.raises(InputError, match="'pos' must be"):
        PointStem(in_dim=6)(dict(batch, pos=batch["pos"][:, :10]))
    with pytest.raises(ConfigError, match="must be >= 1"):
        PointStem(in_dim=6, knn=0)

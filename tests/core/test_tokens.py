import pytest
import torch

from glocal.core import InputError, MissingStructureError, Tokens


def test_validates_shapes():
    x = torch.randn(2, 12, 8)
    Tokens(x, mask=torch.ones(2, 12, dtype=torch.bool), grid=(3, 4), order=torch.arange(12).repeat(2, 1),
           pos=torch.randn(2, 12, 3))
    with pytest.raises(InputError, match=r"\[B, L, C\]"):
        Tokens(torch.randn(12, 8))
    with pytest.raises(InputError, match="grid"):
        Tokens(x, grid=(5, 4))
    with pytest.raises(InputError, match="mask"):
        Tokens(x, mask=torch.ones(2, 12))  # float, not bool
    with pytest.raises(InputError, match="order"):
        Tokens(x, order=torch.arange(12))
    with pytest.raises(InputError, match="edge_index"):
        Tokens(x, edge_index=torch.zeros(3, 4, dtype=torch.long))


def test_require_names_field_and_providers():
    t = Tokens(torch.randn(1, 4, 2))
    with pytest.raises(MissingStructureError, match=r"MyMixer needs Tokens.grid.*PatchStem"):
        t.require("grid", "MyMixer")


def test_masked_mean_ignores_padding():
    x = torch.randn(2, 5, 3)
    mask = torch.tensor([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    t = Tokens(x, mask=mask)
    x2 = x.clone()
    x2[0, 2:] = 1e6  # padding content must not matter
    torch.testing.assert_close(Tokens(x2, mask=mask).masked_mean(), t.masked_mean())
    torch.testing.assert_close(t.masked_mean()[0], x[0, :2].mean(0))


def test_replace_is_a_copy():
    t = Tokens(torch.randn(1, 4, 2), grid=(2, 2))
    u = t.replace(x=torch.zeros(1, 4, 2))
    assert u.grid == (2, 2) and not torch.equal(u.x, t.x)

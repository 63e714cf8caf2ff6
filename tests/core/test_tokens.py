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


def test_pack_unpack_valid_rows():
    x = torch.randn(2, 5, 3)
    mask = torch.tensor([[1, 0, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    t = Tokens(x, mask=mask)
    rows = t.pack(x)
    torch.testing.assert_close(rows, x[mask])  # valid tokens in flattened order
    back = t.unpack(rows * 2)
    torch.testing.assert_close(back[mask], 2 * x[mask])
    assert (back[~mask] == 0).all()  # padding comes back zero
    plain = Tokens(x)  # no mask: every row, a reshape
    assert plain.valid_index() is None and plain.pack(x).shape == (10, 3)
    torch.testing.assert_close(plain.unpack(plain.pack(x)), x)


def test_derived_values_are_shared_while_the_structure_is_unchanged():
    mask = torch.ones(2, 4, dtype=torch.bool)
    t = Tokens(torch.randn(2, 4, 3), mask=mask)
    calls = []
    t.derived("k", lambda: calls.append(1))
    t.replace(x=torch.randn(2, 4, 3)).derived("k", lambda: calls.append(2))  # same structure: reused
    assert calls == [1]
    t.replace(mask=mask.clone()).derived("k", lambda: calls.append(3))  # new mask: computed again
    t.replace(x=torch.randn(2, 2, 3), mask=None).derived("k", lambda: calls.append(4))
    assert calls == [1, 3, 4]

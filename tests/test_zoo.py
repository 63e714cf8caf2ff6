"""timm-style suite over every registered backbone family/variant: builds at its published size,
forward on a small input, finite outputs, every parameter receives a gradient."""
import inspect
import math

import pytest
import torch

from glocal.core import Tokens
from glocal.core.registry import BACKBONES

GENERIC = {"Backbone", "IsotropicBackbone"}  # need stage specs: covered by tests/core/test_backbone.py


def _variants():
    return [n for n in BACKBONES.names() if n not in GENERIC and n[0].islower()]


def _example(backbone):
    """Tokens for a backbone: its input width, a grid of its rank (small sides); for a backbone
    that ``needs`` point positions, a ragged batch of two clouds (200 and 150 points in a cube of side 10)."""
    if "pos" in getattr(backbone, "needs", ()):
        mask = torch.arange(200)[None] < torch.tensor([[200], [150]])
        return Tokens(torch.randn(2, 200, backbone.in_dim), mask=mask, pos=torch.rand(2, 200, 3) * 10)
    cfg = getattr(backbone, "cfg", None)
    rank = getattr(cfg, "rank", 2)
    side = {1: 64, 2: 16, 3: 8}[rank]
    grid = (side,) * rank
    if rank == 3:
        grid = (4, side, side)
    return Tokens(torch.randn(2, math.prod(grid), backbone.in_dim), grid=grid)


@pytest.mark.parametrize("name", _variants())
def test_registered_backbone_trains(name):
    backbone = BACKBONES.build(dict(type=name))
    tokens = _example(backbone)
    out = backbone(tokens)
    assert len(out.stages) == len(backbone.dims)  # dims: one width per output stage
    assert out.last.x.shape[-1] == backbone.out_dim and torch.isfinite(out.last.x).all()
    out.last.x.square().mean().backward()
    missing = [n for n, p in backbone.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"parameters without gradient: {missing[:5]}"


def test_variants_have_docstrings_and_configs():
    for name in _variants():
        fn = BACKBONES.get(name)
        assert inspect.getdoc(fn), f"{name} has no docstring naming its published configuration"
        assert hasattr(fn, "config_class"), f"{name} does not expose its dataclass config"


@pytest.mark.parametrize("name", BACKBONES.names())
def test_every_backbone_family_accepts_in_dim(name):
    """The task model hands every backbone the adapter's width as ``in_dim``; no family drops it."""
    from glocal.core.registry import accepted_args
    assert "in_dim" in accepted_args(BACKBONES.get(name)), name

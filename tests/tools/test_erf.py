"""tools/erf.py: the effective receptive field is exactly the theoretical one for convolutions
(zero outside it, at the input resolution and through a stride) and everywhere for full
attention; a graph model of k message-passing layers has no gradient beyond k hops; the command
line writes the PNG, the JSON and the .npz, alone and with --compare; and its errors."""
import importlib.util
import json
import pathlib
import sys

import numpy as np
import pytest
import torch
from torch import nn

from glocal.core.errors import ConfigError
from glocal.core.tokens import Tokens
from glocal.tasks.api import build_model
from glocal.tasks.checkpoint import CheckpointError

ROOT = pathlib.Path(__file__).resolve().parents[2]
TOOL = ROOT / "tools" / "erf.py"
TINY = ROOT / "tests" / "tasks" / "configs" / "tiny_fashion_mnist.py"


def _tool():
    spec = importlib.util.spec_from_file_location("glocal_erf_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


erf = _tool()


def image_model(blocks, patch=1, dim=8):
    return build_model(dict(
        type="TaskModel", adapter=dict(type="PatchStem", in_chans=1, dim=dim, patch=patch),
        backbone=dict(type="Backbone", stages=[dict(dim=dim, depth=1, blocks=blocks)]),
        head=dict(type="ClsHead", num_classes=3))).eval()


def images(n, size, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [dict(inputs=torch.randn(1, 1, size, size, generator=g)) for _ in range(n)]


def support(erf_map):
    """The rows and columns where the map is nonzero."""
    rows, cols = np.nonzero(erf_map)
    return sorted(set(rows.tolist())), sorted(set(cols.tolist()))


def test_a_convolution_sees_its_kernel_and_attention_sees_everything(one_thread):
    conv = dict(local=dict(type="DepthwiseConv", kernel=3))  # 1x1 patches: the 3x3 kernel is the whole field
    result = erf.measure(image_model(conv), images(2, 15), "relu", "auto", seed=0)
    st = result.stats
    assert st["kind"] == "grid" and st["tokens"][0] == [7, 7] and st["origin"] == [7, 7]
    assert support(result.arrays["map"]) == ([6, 7, 8], [6, 7, 8])  # nothing outside the 3x3 around the centre
    assert st["within"]["99%"]["side"] <= 3
    # patches of 2: the 3x3 tokens around the centre token (4, 4) of 8x8 are pixels 6..11
    strided = erf.measure(image_model(conv, patch=2), images(2, 16), "relu", "auto", seed=0)
    assert strided.stats["tokens"][0] == [4, 4] and strided.stats["centres"][0] == [9, 9]
    assert support(strided.arrays["map"]) == (list(range(6, 12)), list(range(6, 12)))
    # full attention: every pixel moves the centre token
    attention = erf.measure(image_model(dict(global_=dict(type="FullAttention", heads=2))), images(2, 15), "relu",
                            "auto", seed=0)
    assert (attention.arrays["map"] > 0).all()
    assert attention.stats["within"]["99%"]["side"] > 3
    # a random direction sees the same support; the plain channel sum sees (next to) nothing behind the
    # backbone's output LayerNorm (the channel sum of a normalised vector is its bias's sum: constant)
    other = erf.measure(image_model(conv), images(2, 15), "random", "auto", seed=0)
    assert support(other.arrays["map"]) == ([6, 7, 8], [6, 7, 8])
    flat = erf.measure(image_model(conv), images(2, 15), "sum", "auto", seed=0)
    assert flat.arrays["map"].max() < 1e-5 * result.arrays["map"].max()


def test_gradient_with_respect_to_the_tokens_is_on_the_stem_grid(one_thread):
    conv = dict(local=dict(type="DepthwiseConv", kernel=3))
    result = erf.measure(image_model(conv, patch=2), images(1, 16), "relu", "tokens", seed=0)
    assert result.stats["wrt"] == "tokens" and result.stats["shape"] == [8, 8]
    assert support(result.arrays["map"]) == ([3, 4, 5], [3, 4, 5])


def graph_model(depth, global_=None):
    blocks = dict(local=dict(type="GINE"), **({"global_": global_} if global_ else {}))
    return build_model(dict(
        type="TaskModel",
        adapter=dict(type="GraphStem", dim=16, node_encoder=dict(type="LinearEncoder", in_dim=4), edge_encoder=None),
        backbone=dict(type="IsotropicBackbone", depth=depth, blocks=blocks),
        head=dict(type="TokenHead", num_classes=2), loss=dict(type="CrossEntropyLoss", target="node_label"),
        postprocess=dict(type="SegmentPost", target="node_label"))).eval()


def graph_batch(seed=0):
    """A path 0-1-...-8 with a branch 4-9-10 (node 4 has the highest degree, 3), both directions,
    plus a padded slot 11: hops from node 4 are 0..4."""
    edges = torch.tensor([(i, i + 1) for i in range(8)] + [(4, 9), (9, 10)]).T
    mask = torch.ones(1, 12, dtype=torch.bool)
    mask[0, 11] = False
    g = torch.Generator().manual_seed(seed)
    return dict(inputs=torch.randn(1, 12, 4, generator=g), mask=mask, edge_index=torch.cat([edges, edges.flip(0)], 1))


def test_graph_hop_profile_stops_at_the_number_of_layers(one_thread):
    batches = [graph_batch(0), graph_batch(1)]
    assert erf.hop_distances(batches[0]["edge_index"].numpy(), 12, 4).tolist() == [4, 3, 2, 1, 0, 1, 2, 3, 4, 1, 2, -1]
    for depth in (1, 2):
        result = erf.measure(graph_model(depth), batches, "relu", "auto", seed=0)
        st = result.stats
        assert st["kind"] == "graph" and st["centre"] == [4, 4] and st["wrt"] == "inputs"
        mass = np.array(st["mass_per_hop"])
        assert (mass[:depth + 1] > 0).all() and (mass[depth + 1:] == 0).all()
        assert st["max_hop_with_gradient"] == depth and st["hops_90"] <= depth
        assert st["unreached_mass"] == 0 and st["nodes_per_hop"] == [1, 3, 3, 2, 2]
    gps = erf.measure(graph_model(1, dict(type="FullAttention", heads=2)), batches, "relu", "auto", seed=0)
    assert (np.array(gps.stats["mass_per_hop"]) > 0).all()  # attention reaches every node


def write_config(folder, name, blocks):
    """A tiny image classifier config (random inputs only: no dataset)."""
    path = folder / f"{name}.py"
    path.write_text(
        "input_shape = (1, 1, 16, 16)\n"
        "model = dict(type='Classifier',\n"
        "    adapter=dict(type='PatchStem', in_chans=1, dim=16, patch=2),\n"
        f"    backbone=dict(type='Backbone', stages=[dict(dim=16, depth=1, blocks={blocks!r})]),\n"
        "    head=dict(type='ClsHead', num_classes=3))\n")
    return str(path)


LOCAL = dict(local=dict(type="DepthwiseConv", kernel=3))
GLOBAL = dict(local=dict(type="DepthwiseConv", kernel=3), global_=dict(type="FullAttention", heads=2))


def checkpoint(config, folder, name="model.pth"):
    from glocal.tasks.engine import build_model as build, load_config

    path = folder / name
    torch.save({"meta": {}, "state_dict": build(load_config(config)).state_dict()}, path)
    return str(path)


def test_cli_compare_writes_png_json_and_npz(tmp_path, capsys, one_thread):
    local = write_config(tmp_path, "tiny_local", LOCAL)
    both = write_config(tmp_path, "tiny_local_global", GLOBAL)
    ckpt = checkpoint(both, tmp_path)
    out = tmp_path / "pics" / "erf.png"
    assert erf.main([local, "--compare", both, ckpt, "--random", "--samples", "2", "--out", str(out), "--log"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("tiny_local (untrained (random init)): 2D ERF on 16x16 inputs, central token (4, 4)")
    assert printed[1].startswith("tiny_local_global (trained: model.pth): 2D ERF on 16x16 inputs")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    record = json.loads(out.with_suffix(".json").read_text())
    first, second = record["models"]
    assert (first["trained"], second["trained"]) == (False, True) and second["checkpoint"] == ckpt
    assert first["inputs"] == "2 random N(0, 1) inputs of shape [1, 1, 16, 16]"
    arrays = np.load(out.with_suffix(".npz"))
    assert arrays["map_0"].shape == arrays["map_1"].shape == (16, 16)
    np.testing.assert_allclose(np.array(first["map"]), arrays["map_0"])
    # local: one 3x3 conv on 2x2 patches -> pixels 6..11 only; local + global: everywhere
    assert support(arrays["map_0"]) == (list(range(6, 12)), list(range(6, 12)))
    assert (arrays["map_1"] > 0).all()
    assert first["within"]["99%"]["side"] <= 7 < second["within"]["99%"]["side"]


def test_cli_on_the_test_dataset(tmp_path, capsys, one_thread):
    """tools/setup.sh installs Debian's dataset-fashion-mnist (the tiny config reads 64 test images)."""
    out = tmp_path / "erf.png"
    assert erf.main([str(TINY), "--samples", "2", "--out", str(out)]) == 0
    assert "tiny_fashion_mnist (untrained (random init)): 2D ERF on 28x28 inputs" in capsys.readouterr().out
    record = json.loads(out.with_suffix(".json").read_text())["models"][0]
    assert record["inputs"] == "2 samples of the test set (FashionMNIST, 64 samples)"
    assert record["samples"] == 2 and out.is_file()


def test_errors(tmp_path, one_thread):
    local = write_config(tmp_path, "tiny_local", LOCAL)
    # weights of another model
    other = write_config(tmp_path, "tiny_wide", dict(local=dict(type="DepthwiseConv", kernel=5)))
    with pytest.raises(CheckpointError, match="conv"):
        erf.main([local, checkpoint(other, tmp_path), "--random", "--samples", "1", "--out", str(tmp_path / "a.png")])
    # --random without a shape
    no_shape = tmp_path / "no_shape.py"
    no_shape.write_text(pathlib.Path(local).read_text().replace("input_shape = (1, 1, 16, 16)\n", ""))
    with pytest.raises(ConfigError, match="--input-shape"):
        erf.main([str(no_shape), "--random", "--out", str(tmp_path / "b.png")])
    # --random for an adapter that needs more than inputs (a graph)
    graph = tmp_path / "graph.py"
    graph.write_text(
        "input_shape = (1, 5, 4)\n"
        "model = dict(type='TaskModel', adapter=dict(type='GraphStem', dim=16, node_encoder=dict(type='LinearEncoder',"
        " in_dim=4), edge_encoder=None), backbone=dict(type='IsotropicBackbone', depth=1, blocks=dict(local=dict("
        "type='GINE'))), head=dict(type='TokenHead', num_classes=2), loss=dict(type='CrossEntropyLoss', "
        "target='node_label'), postprocess=dict(type='SegmentPost', target='node_label'))\n")
    with pytest.raises(ConfigError, match="drop --random"):
        erf.main([str(graph), "--random", "--samples", "1", "--out", str(tmp_path / "c.png")])
    # tokens with no structure to place the inputs by
    class Flat(nn.Module):
        out_dim = 8

        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(4, 8)

        def forward(self, batch):
            return Tokens(self.proj(batch["inputs"]))

    flat = build_model(dict(type="TaskModel", adapter=Flat(), head=dict(type="ClsHead", num_classes=2),
                            backbone=dict(type="Backbone", stages=[dict(dim=8, depth=1, blocks=dict(
                                global_=dict(type="FullAttention", heads=2)))]))).eval()
    with pytest.raises(ConfigError, match="no grid .* no graph edges .* no point positions"):
        erf.measure(flat, [dict(inputs=torch.randn(1, 6, 4))], "relu", "auto", seed=0)
    # categorical inputs have no gradient
    with pytest.raises(ConfigError, match="--wrt tokens"):
        erf.probe(image_model(LOCAL), dict(inputs=torch.zeros(1, 1, 8, 8, dtype=torch.long)), wrt="inputs")

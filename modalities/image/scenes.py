"""Fashion-MNIST scenes: a semantic-segmentation set generated from the real Fashion-MNIST images.

Each canvas (default 64x64, one channel, background 0) holds 2-4 Fashion-MNIST items pasted at
random positions, overlap allowed. Each item is rescaled by a random factor (bilinear, PIL) and
flipped horizontally with probability ``flip``. Items are pasted in order: where an item has ink
(pixel >= ``ink_threshold``) it covers what is below it, in the image and in the labels; its
faint edge pixels (below the threshold) do not cover anything, they are blended by maximum.
A pixel is labelled ``class + 1`` of the item that is on top there if that item has ink, else 0
(background). So ``seg > 0`` exactly where ``img >= ink_threshold``. There are 11 classes.

Train canvases draw their items from the Fashion-MNIST train split only, test canvases from the
test split only (unseen source images), and the two splits draw from different random streams.
``sources [N, max_items]`` records which source image each item is (-1 for an empty slot), in
paste order.

Generation is deterministic from the arguments (numpy's PCG64 stream and PIL's fixed-point
resampling, no threads) and cached by content: the arrays go to one ``.npz`` named by a hash of
the generation arguments, :data:`GENERATOR_VERSION`, the Pillow version and a digest of the source
IDX arrays, so a second construction loads it at once and a change to any of these regenerates.

Example::

    >>> ds = FashionMNISTScenes(split="test", num_canvases=8)  # doctest: +SKIP
    >>> s = ds.load(0); s["img"].shape, s["seg"].shape, s["seg"].dtype  # doctest: +SKIP
    ((64, 64, 1), (64, 64), dtype('int64'))
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
import zipfile
from functools import lru_cache
from pathlib import Path

import numpy as np
import PIL
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image

from glocal.core.errors import InputError

from ..dataset import GlocalDataset
from .fashion_mnist import FASHION_MNIST_CLASSES, _load_split, fashion_mnist_root
from .folder import IMAGE_EXTENSIONS

__all__ = ["FashionMNISTScenes", "generate_scenes", "GENERATOR_VERSION"]

GENERATOR_VERSION = 1  # bump whenever generate_scenes changes what it makes from the same arguments
_SPLITS = {"train": 0, "test": 1}  # the split's id is part of the seed: train and test streams differ
_DEFAULT_NUM = {"train": 20_000, "test": 2_000}


def _cache_root() -> Path:
    root = os.environ.get("GLOCAL_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "glocal")
    return Path(root) / "data" / "scenes"


@lru_cache(maxsize=4)
def _source_digest(root: str, split: str) -> str:
    """sha256 of the split's decoded images and labels (the content, not the file bytes or path)."""
    images, labels = _load_split(root, split)
    h = hashlib.sha256()
    for a in (images, labels):
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _rescale(item: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of a square uint8 item ``[s, s] -> [size, size]`` with PIL (the reference for
    :func:`_rescale_many`)."""
    if item.shape[0] == size:
        return item
    return np.asarray(Image.fromarray(item).resize((size, size), Image.BILINEAR))


def _rescale_many(items: np.ndarray, size: int) -> np.ndarray:
    """``items [G, s, s] -> [G, size, size]``, bit-identical to :func:`_rescale` on each item, in two
    PIL calls instead of G. PIL resamples separably, a horizontal pass then a vertical one (each
    rounded to uint8), and skips a pass whose axis keeps its length; rows never mix in the
    horizontal pass nor columns in the vertical one. So the items are resized horizontally stacked
    one above the other, then vertically laid side by side."""
    G, s, _ = items.shape
    if s == size or G == 0:
        return items
    a = Image.fromarray(np.ascontiguousarray(items.reshape(G * s, s))).resize((size, G * s), Image.BILINEAR)
    a = np.asarray(a).reshape(G, s, size).transpose(1, 0, 2).reshape(s, G * size)  # [s, G * size]
    b = np.asarray(Image.fromarray(np.ascontiguousarray(a)).resize((G * size, size), Image.BILINEAR))
    return b.reshape(size, G, size).transpose(1, 0, 2)  # [G, size, size]


def _plan(num_images: int, item_size: int, *, num_canvases: int, canvas: tuple[int, int],
          items: tuple[int, int], scale: tuple[float, float] | None, flip: float, rng: np.random.Generator):
    """Every random choice of a scene set, drawn up front as whole arrays in a fixed order, each
    ``[N, K]`` (K = ``items[1]`` slots per canvas): ``sources`` (index of the source image, -1 for an
    empty slot), ``size`` (side of the rescaled item), ``flipped``, ``y``, ``x`` (top-left corner;
    the item lies fully inside the canvas)."""
    N, (H, W), (lo, hi) = num_canvases, canvas, items
    largest = max(1, int(np.floor(item_size * scale[1] + 0.5))) if scale else item_size
    if largest > min(H, W):  # checked on the range, not the draws: a setting always works or never
        raise InputError(f"FashionMNISTScenes: items up to {largest} px (scale {scale}) do not fit on a "
                         f"{H}x{W} canvas; use a bigger canvas or a smaller scale")
    count = rng.integers(lo, hi + 1, size=N)  # [N] items per canvas
    src = rng.integers(0, num_images, size=(N, hi))  # [N, K]
    factor = rng.uniform(*(scale or (1.0, 1.0)), size=(N, hi))  # [N, K]
    flipped = rng.random((N, hi)) < flip  # [N, K]
    uy, ux = rng.random((N, hi)), rng.random((N, hi))  # [N, K] positions, as fractions of the free range
    used = np.arange(hi)[None, :] < count[:, None]  # [N, K]
    if scale:
        size = np.floor(item_size * factor + 0.5).astype(np.int64)  # [N, K]
    else:
        size = np.full((N, hi), item_size, np.int64)
    size = np.where(used, np.maximum(size, 1), 0)  # [N, K]
    y = np.where(used, (uy * (H - size + 1)).astype(np.int64), 0)  # [N, K]
    x = np.where(used, (ux * (W - size + 1)).astype(np.int64), 0)  # [N, K]
    return dict(sources=np.where(used, src, -1), size=size, flipped=flipped & used, y=y, x=x)


def _compose(images, labels, plan, canvas, ink_threshold):
    """Paste the planned items: ``img [N, H, W]`` uint8 and ``seg [N, H, W]`` uint8. Loops over
    (slot, item size) groups, each vectorised over its canvases: a canvas has at most one item per
    slot, so a group never writes a pixel twice, and slots go in paste order."""
    src, size, flipped, y, x = (plan[k] for k in ("sources", "size", "flipped", "y", "x"))
    N, K = src.shape
    img = np.zeros((N, *canvas), np.uint8)
    seg = np.zeros((N, *canvas), np.uint8)
    for k in range(K):
        for sz in np.unique(size[src[:, k] >= 0, k]):
            n = np.flatnonzero((src[:, k] >= 0) & (size[:, k] == sz))  # [G] canvases with a sz-item in slot k
            patch = _rescale_many(images[src[n, k]], int(sz))  # [G, sz, sz]
            patch = np.where(flipped[n, k][:, None, None], patch[:, :, ::-1], patch)  # [G, sz, sz]
            # every sz x sz window of every canvas, as a writeable view: [N, H - sz + 1, W - sz + 1, sz, sz]
            img_win = sliding_window_view(img, (sz, sz), axis=(1, 2), writeable=True)
            seg_win = sliding_window_view(seg, (sz, sz), axis=(1, 2), writeable=True)
            at = (n, y[n, k], x[n, k])  # one window per canvas of the group
            ink = patch >= ink_threshold  # [G, sz, sz]
            img_win[at] = np.where(ink, patch, np.maximum(img_win[at], patch))
            cls = (labels[src[n, k]] + 1).astype(np.uint8)[:, None, None]  # [G, 1, 1]
            seg_win[at] = np.where(ink, cls, seg_win[at])
    return img, seg


def _compose_reference(images, labels, plan, canvas, ink_threshold):
    """:func:`_compose` written plainly, one canvas and one item at a time (for the tests)."""
    N, K = plan["sources"].shape
    img = np.zeros((N, *canvas), np.uint8)
    seg = np.zeros((N, *canvas), np.uint8)
    for i in range(N):
        for k in range(K):
            j = plan["sources"][i, k]
            if j < 0:
                continue
            sz, y, x = (int(plan[f][i, k]) for f in ("size", "y", "x"))
            item = _rescale(images[j], sz)  # [sz, sz]
            if plan["flipped"][i, k]:
                item = item[:, ::-1]
            ink = item >= ink_threshold
            box = (i, slice(y, y + sz), slice(x, x + sz))
            img[box] = np.where(ink, item, np.maximum(img[box], item))
            seg[box][ink] = labels[j] + 1
    return img, seg


def generate_scenes(images: np.ndarray, labels: np.ndarray, *, num_canvases: int, canvas: tuple[int, int],
                    items: tuple[int, int], scale: tuple[float, float] | None, flip: float,
                    ink_threshold: int, rng: np.random.Generator):
    """Compose ``num_canvases`` scenes from ``images [M, s, s]`` (uint8) with ``labels [M]``.

    Returns ``img [N, H, W]`` uint8, ``seg [N, H, W]`` uint8 (0 background, ``class + 1``) and
    ``sources [N, max_items]`` int64 (index into ``images`` per pasted item, in paste order, -1 for
    none). The same ``rng`` state always gives the same arrays.
    """
    plan = _plan(len(images), images.shape[1], num_canvases=num_canvases, canvas=canvas, items=items,
                 scale=scale, flip=flip, rng=rng)
    img, seg = _compose(images, labels, plan, canvas, ink_threshold)
    return img, seg, plan["sources"]


class FashionMNISTScenes(GlocalDataset):
    """Semantic segmentation of Fashion-MNIST items on a canvas; 11 classes (background + 10).

    Samples are ``{'img': uint8 [H, W, 1], 'seg': int64 [H, W]}`` before the transforms (use the
    segmentation-aware transforms of ``glocal.modalities.image.transforms``).

    Args:
        split: ``"train"`` (items from Fashion-MNIST train) or ``"test"`` (items from its test split).
        num_canvases: number of scenes (default 20,000 train / 2,000 test).
        canvas: canvas size, ``int`` or ``(H, W)``.
        items: ``(min, max)`` items per canvas, inclusive, drawn uniformly.
        scale: ``(min, max)`` rescaling factor per item, drawn uniformly; None keeps 28x28.
        flip: probability of flipping an item horizontally.
        ink_threshold: a pixel of an item is ink (labelled, occluding) at or above this value.
        seed: generation seed; the test split derives its own stream from it.
        root: folder with the Fashion-MNIST IDX files (default: Debian's, or ``$GLOCAL_FASHION_MNIST``).
        transforms: list of transforms (config dicts or callables), ending in ``PackInputs``.
        cache_dir: where the generated ``.npz`` goes (default ``$GLOCAL_CACHE/data/scenes``, else
            ``~/.cache/glocal/data/scenes``).
        on_error, max_skips: what a sample that fails in the transforms does (raise, or skip it), see
            :class:`~glocal.modalities.dataset.GlocalDataset`.
    """

    metainfo = dict(classes=("background",) + FASHION_MNIST_CLASSES)
    input_extensions = IMAGE_EXTENSIONS  # the image files from_file reads

    def __init__(self, split: str = "train", num_canvases: int | None = None, canvas=64, items=(2, 4),
                 scale=(0.8, 1.3), flip: float = 0.5, ink_threshold: int = 64, seed: int = 0,
                 root: str | None = None, transforms=None, cache_dir: str | os.PathLike | None = None,
                 on_error: str = "error", max_skips: int | None = None):
        super().__init__(transforms, on_error=on_error, max_skips=max_skips)
        if split not in _SPLITS:
            raise InputError(f"FashionMNISTScenes split must be 'train' or 'test'; got {split!r}")
        canvas = (canvas, canvas) if isinstance(canvas, int) else tuple(int(c) for c in canvas)
        items = tuple(int(i) for i in items)
        num_canvases = _DEFAULT_NUM[split] if num_canvases is None else int(num_canvases)
        if len(items) != 2 or not 1 <= items[0] <= items[1]:
            raise InputError(f"FashionMNISTScenes: items must be (min, max) with 1 <= min <= max; got {items}")
        if scale is not None and not 0 < float(scale[0]) <= float(scale[1]):
            raise InputError(f"FashionMNISTScenes: scale must be (min, max) with 0 < min <= max; got {scale}")
        if num_canvases < 0 or len(canvas) != 2 or min(canvas) < 1:
            raise InputError(f"FashionMNISTScenes: bad num_canvases={num_canvases} or canvas={canvas}")
        self.root, self.split = fashion_mnist_root(root), split
        self.args = dict(split=split, num_canvases=num_canvases, canvas=list(canvas), items=list(items),
                         scale=None if scale is None else [float(scale[0]), float(scale[1])],
                         flip=float(flip), ink_threshold=int(ink_threshold), seed=int(seed))
        key = json.dumps(dict(self.args, version=GENERATOR_VERSION, pillow=PIL.__version__,
                              source=_source_digest(self.root, split)), sort_keys=True)
        name = f"fashion_mnist_scenes-{split}-{hashlib.sha256(key.encode()).hexdigest()[:20]}.npz"
        self.cache_path = Path(cache_dir if cache_dir is not None else _cache_root()) / name
        arrays = self._load_cache()
        if arrays is None:
            arrays = self._generate()
            self._save_cache(arrays)
        self.images, self.segs, self.sources = arrays  # [N, H, W] uint8, [N, H, W] uint8, [N, K] int64

    def _generate(self):
        images, labels = _load_split(self.root, self.split)
        a = self.args
        rng = np.random.default_rng([a["seed"], _SPLITS[self.split]])
        return generate_scenes(images, labels, num_canvases=a["num_canvases"], canvas=tuple(a["canvas"]),
                               items=tuple(a["items"]), scale=a["scale"], flip=a["flip"],
                               ink_threshold=a["ink_threshold"], rng=rng)

    def _load_cache(self):
        if not self.cache_path.is_file():
            return None
        N, (H, W), K = self.args["num_canvases"], self.args["canvas"], self.args["items"][1]
        try:
            with np.load(self.cache_path, allow_pickle=False) as z:
                arrays = z["img"], z["seg"], z["sources"]
            expected = ((N, H, W, np.uint8), (N, H, W, np.uint8), (N, K, np.int64))
            if any(a.shape != e[:-1] or a.dtype != e[-1] for a, e in zip(arrays, expected)):
                raise ValueError("arrays of the wrong shape or type")
            return arrays
        except Exception as e:  # noqa: BLE001 - any unreadable cache is regenerated
            warnings.warn(f"FashionMNISTScenes: cache file {self.cache_path} is unreadable ({e!r}); "
                          f"regenerating it", RuntimeWarning, stacklevel=3)
            return None

    def _save_cache(self, arrays) -> None:
        self.cache_path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.cache_path.parent, prefix=self.cache_path.stem, suffix=".tmp")
        try:
            # an .npz as np.savez_compressed writes it, at zlib level 1: half the time, ~10% bigger
            with os.fdopen(fd, "wb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
                for name, a in zip(("img", "seg", "sources"), arrays):
                    with z.open(f"{name}.npy", "w", force_zip64=True) as member:
                        np.lib.format.write_array(member, np.ascontiguousarray(a), allow_pickle=False)
            os.replace(tmp, self.cache_path)  # atomic: readers see the old file or the whole new one
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def __len__(self) -> int:
        return len(self.images)

    def load(self, index: int) -> dict:
        return dict(img=self.images[index][..., None], seg=self.segs[index].astype(np.int64))

    @classmethod
    def from_file(cls, source: str, canvas=64) -> dict:
        """One image file of the user's as a raw sample, for inference (``tools/infer.py``):
        ``img uint8 [H, W, 1]`` (greyscale, resized to the ``canvas`` with a warning when it has
        another size), ``path``, and ``ori_shape``, the file's own ``(H, W)``, to which a
        predicted label map can be resized back."""
        from .folder import read_image_file

        canvas = (canvas, canvas) if isinstance(canvas, int) else tuple(int(c) for c in canvas)
        img, own = read_image_file(source, "L", canvas, "FashionMNISTScenes")
        return dict(img=img, path=str(source), ori_shape=own)

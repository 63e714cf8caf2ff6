"""Reading and writing video files: ``open_video(path) -> reader``, ``reader.get(indices) -> uint8 [T, H, W, 3]``.

Two decoders, both over FFmpeg:

- **decord** (preferred): ``decord.VideoReader`` indexes the file on opening, fetches any set of
  frames with one batched ``get_batch`` (seeking to the keyframe before each run of frames) and
  resizes while decoding (its ``width`` / ``height`` arguments);
- **PyAV** (the fallback, used when decord is not installed or cannot open a file): the packets'
  timestamps are indexed on opening; ``get`` seeks to the keyframe before the first frame asked
  for and decodes forward, resizing with swscale as decord does.

``open_video(path, backend='auto')`` takes decord and falls back to PyAV; which reader a file got
is logged when it is not the one asked for (once per file), and :class:`VideoReader.backend` says
it. Frames come back RGB, ``uint8 [T, H, W, 3]``, in the order asked for (repeats allowed);
indices of shape ``[V, L]`` (several clips) give ``[V, L, H, W, 3]``.

Every problem with a file is reported in glocal's words, naming the file and what to do: a missing
or empty file, one no decoder can open (truncated, corrupt, not a video), one without video frames,
frames asked for beyond the video's end, and a file whose frames change size (checked on opening
from its keyframes, where H.264, HEVC and MPEG-4 change resolution, and on every decoded frame) all
raise :class:`~glocal.core.errors.DataError`; bad arguments raise
:class:`~glocal.core.errors.InputError` or :class:`~glocal.core.errors.ConfigError`.

:func:`write_video` writes ``uint8 [T, H, W, 3]`` frames with PyAV (H.264 by default, yuv420p).

Example:
    >>> import os, tempfile, torch
    >>> path = os.path.join(tempfile.mkdtemp(), "ramp.mp4")
    >>> frames = (torch.arange(8) * 30).to(torch.uint8).view(8, 1, 1, 1).expand(8, 40, 64, 3)
    >>> write_video(path, frames, fps=8)
    >>> with open_video(path) as reader:
    ...     len(reader), reader.fps, reader.shape, tuple(reader.get([0, 7, 7]).shape)
    (8, 8.0, (40, 64), (3, 40, 64, 3))
    >>> tuple(open_video(path, size=(20, 32)).get([[0, 1], [2, 3]]).shape)  # two clips, resized on decode
    (2, 2, 20, 32, 3)
    >>> open_video(path).get([8])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    glocal.core.errors.DataError: .../ramp.mp4: frame 8 asked for, but the video has 8 frames (0..7)...
"""
from __future__ import annotations

import logging
import os
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from glocal.core.errors import ConfigError, DataError, InputError

__all__ = ["VideoReader", "DecordReader", "PyAVReader", "open_video", "read_video", "write_video", "BACKENDS",
           "check_indices", "log_once"]

BACKENDS = ("auto", "decord", "pyav")
_CHECKED_SIZES: dict[tuple, tuple[int, int]] = {}  # (path, mtime_ns, bytes) -> frame size, per process
_LOGGED: set[str] = set()


# ------------------------------------------------------------------------------------------------
# small helpers
# ------------------------------------------------------------------------------------------------
def log_once(message: str, level: int = logging.INFO) -> None:
    """Log ``message`` through mmengine's current logger, the first time it is seen in this process."""
    if message in _LOGGED:
        return
    _LOGGED.add(message)
    from mmengine.logging import print_log

    print_log(message, logger="current", level=level)


def _import(name: str):
    """The module ``name`` (decord, av), or None when it is not installed."""
    try:
        return __import__(name)
    except ImportError:
        return None


def _reason(error: BaseException) -> str:
    """The first line of a decoder's error (decord's carry a C++ stack trace after it)."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")


def _check_size(size) -> tuple[int, int] | None:
    """``size`` as ``(H, W)`` positive ints, or None (frames at the file's own size)."""
    if size is None:
        return None
    try:
        h, w = (int(s) for s in size)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"video size must be None or (H, W); got {size!r}") from e
    if h < 1 or w < 1 or (h, w) != tuple(size):
        raise ConfigError(f"video size must be (H, W) of positive ints; got {size!r}")
    return h, w


def check_indices(indices, num_frames: int, path: str) -> np.ndarray:
    """``indices`` as an int64 array (``[T]`` or ``[V, L]``) of frames of a ``num_frames``-frame video;
    anything else is an :class:`InputError`, frames beyond the end a :class:`DataError` naming ``path``."""
    idx = indices.cpu().numpy() if isinstance(indices, Tensor) else np.asarray(indices)
    if idx.dtype.kind not in "iu" or idx.size == 0:
        raise InputError(f"{path}: frame indices must be a non-empty array of ints, [T] or [V, L]; got "
                         f"{idx.dtype} {idx.shape}")
    if idx.ndim not in (1, 2):
        raise InputError(f"{path}: frame indices must be [T] (one clip) or [V, L] (V clips); got shape {idx.shape}")
    idx = idx.astype(np.int64)
    if idx.min() < 0:
        raise InputError(f"{path}: frame indices count from 0 (no negative indices); got {int(idx.min())}")
    bad = np.unique(idx[idx >= num_frames])
    if bad.size:
        shown = ", ".join(map(str, bad[:5].tolist())) + (", ..." if bad.size > 5 else "")
        raise DataError(f"{path}: frame{'s' if bad.size > 1 else ''} {shown} asked for, but the video has "
                        f"{num_frames} frames (0..{num_frames - 1}): the clip is longer than the video. Sample "
                        f"short videos with a sampler that loops or repeats the last frame "
                        f"(DenseSampler(out_of_bound='loop')), or drop them")
    return idx


def _file_key(path: str) -> tuple:
    st = os.stat(path)
    return path, st.st_mtime_ns, st.st_size


def _size_change_error(path: str, first: tuple[int, int], other: tuple[int, int], where: str) -> DataError:
    return DataError(f"{path}: the video's frames change size: {first[1]}x{first[0]} (W x H) at first, "
                     f"{other[1]}x{other[0]} {where}. A clip is one [T, H, W, 3] array of one frame size; re-encode "
                     f"the file at one size (e.g. ffmpeg -i IN -vf scale={first[1]}:{first[0]} OUT)")


def _keyframe_sizes(path: str) -> tuple[int, int] | None:
    """The frame size ``(H, W)`` of the file's keyframes (decoded with PyAV, cached per file and
    process), or a :class:`DataError` when they differ; None without PyAV or when PyAV cannot read
    the file (the reader reports that)."""
    key = _file_key(path)
    if key in _CHECKED_SIZES:
        return _CHECKED_SIZES[key]
    av = _import("av")
    if av is None:
        log_once("glocal video: PyAV is not installed, so files are not checked for frames that change size")
        return None
    first = None
    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            stream.codec_context.skip_frame = "NONKEY"
            for frame in container.decode(stream):
                size = (frame.height, frame.width)
                if first is None:
                    first = size
                elif size != first:
                    seconds = float(frame.pts * stream.time_base) if frame.pts is not None else None
                    where = f"from {seconds:.2f} s on" if seconds is not None else "later on"
                    raise _size_change_error(path, first, size, where)
    except DataError:
        raise
    except Exception:  # noqa: BLE001 - a file PyAV cannot read is reported by the reader itself
        return None
    _CHECKED_SIZES[key] = first
    return first


# ------------------------------------------------------------------------------------------------
# readers
# ------------------------------------------------------------------------------------------------
class VideoReader:
    """One open video: ``len(reader)`` frames at ``reader.fps``, returned at ``reader.shape`` ``(H, W)``
    by ``reader.get(indices) -> uint8 [T, H, W, 3]`` (``[V, L, H, W, 3]`` for indices ``[V, L]``).
    Made by :func:`open_video`; closes with ``close()`` or a ``with`` block."""

    backend = ""

    def __init__(self, path: str, size: tuple[int, int] | None):
        self.path, self.size = path, size
        self.num_frames, self.fps, self._native = 0, 0.0, None

    def __len__(self) -> int:
        return self.num_frames

    @property
    def native_shape(self) -> tuple[int, int]:
        """``(H, W)`` of the file's frames."""
        if self._native is None:
            self._native = self._native_shape()
        return self._native

    def _native_shape(self) -> tuple[int, int]:
        raise NotImplementedError

    @property
    def shape(self) -> tuple[int, int]:
        """``(H, W)`` of the frames :meth:`get` returns (the resize, or the file's own size)."""
        return self.size or self.native_shape

    def get(self, indices) -> Tensor:
        """The frames at ``indices`` (``[T]`` or ``[V, L]``), uint8 RGB ``[..., H, W, 3]``."""
        idx = check_indices(indices, self.num_frames, self.path)
        unique, inverse = np.unique(idx, return_inverse=True)
        frames = self._decode(unique)  # [U, H, W, 3], in order of `unique`
        return frames[torch.from_numpy(inverse.reshape(-1))].reshape(*idx.shape, *frames.shape[1:])

    def _decode(self, unique: np.ndarray) -> Tensor:
        raise NotImplementedError

    def check_constant_size(self) -> None:
        """A :class:`DataError` when the file's keyframes are not all of one size (checked with PyAV,
        once per file and process)."""
        _keyframe_sizes(self.path)

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return (f"{type(self).__name__}({self.path!r}, frames={self.num_frames}, fps={self.fps:g}, "
                f"shape={self.shape})")


class DecordReader(VideoReader):
    """decord's ``VideoReader``: batched, seeking ``get_batch``; ``size`` resizes while decoding.

    decord 0.6 cannot copy out frames of some widths (8, 12, 16, 24, 48 and 72 pixels among them:
    ``DECORDArrayCopyFromTo: the size must exactly match``, a row-alignment bug), whether the file
    has that width or is resized to it. Such a file is then decoded with PyAV when ``fallback``
    (what ``open_video(backend='auto')`` asks; ``backend`` becomes ``'pyav'``, logged once per file),
    else at its own size and resized in torch (bilinear, antialiased) when that width works.
    """

    backend = "decord"

    def __init__(self, path: str, size: tuple[int, int] | None = None, num_threads: int = 1, fallback: bool = False):
        super().__init__(path, size)
        import decord

        self._decord, self._threads, self._allow_fallback = decord, num_threads, fallback
        self._torch_resize, self._fallback = False, None
        self._vr = self._open(size)
        self.num_frames = len(self._vr)
        self.fps = float(self._vr.get_avg_fps())
        if self.num_frames == 0:
            raise DataError(f"{path}: the video has no frames; remove it from the list")

    def _open(self, size):
        kwargs = dict(width=size[1], height=size[0]) if size is not None else {}
        return self._decord.VideoReader(self.path, num_threads=self._threads, **kwargs)

    def _native_shape(self) -> tuple[int, int]:
        av = _import("av")  # the header's size, without decoding a frame
        if av is not None:
            try:
                with av.open(self.path) as c:
                    cc = c.streams.video[0].codec_context
                    if cc.width and cc.height:
                        return int(cc.height), int(cc.width)
            except Exception:  # noqa: BLE001 - fall through to decord
                pass
        vr = self._vr if self.size is None or self._torch_resize else self._open(None)
        return tuple(int(s) for s in vr[0].shape[:2])

    def _decode(self, unique: np.ndarray) -> Tensor:
        if self._fallback is not None:
            return self._fallback._decode(unique)
        try:
            batch = self._vr.get_batch(unique.tolist()).asnumpy()  # [U, h, w, 3]
        except self._decord.DECORDError as e:
            if "DECORDArrayCopyFromTo" not in str(e):
                raise DataError(f"{self.path}: decord cannot decode frames {_span(unique)} ({_reason(e)}); the file "
                                f"is truncated or corrupt. Re-encode or remove it") from e
            return self._work_around(unique, e)
        frames = torch.from_numpy(batch)
        return resize_frames(frames, self.size) if self._torch_resize else frames

    def _work_around(self, unique: np.ndarray, error: Exception) -> Tensor:
        """Frames of a width decord cannot copy out: with PyAV, or decoded natively and resized."""
        width = self.shape[1]
        if self._allow_fallback and _import("av") is not None:
            log_once(f"decord cannot return {width}-pixel-wide frames of {self.path} (a decord 0.6 bug at some "
                     f"widths); decoding it with PyAV", logging.WARNING)
            self._fallback, self._vr = PyAVReader(self.path, self.size, self._threads), None
            self.backend = "pyav"
            return self._fallback._decode(unique)
        if self.size is not None and not self._torch_resize:
            log_once(f"decord cannot resize {self.path} to {width} pixels wide while decoding (a decord 0.6 bug "
                     f"at some widths); decoding it at its own size and resizing in torch", logging.WARNING)
            self._vr, self._torch_resize = self._open(None), True
            return self._decode(unique)
        raise DataError(f"{self.path}: decord 0.6 cannot return frames {width} pixels wide (a decord bug at some "
                        f"widths: {_reason(error)}); use backend='auto' or 'pyav', or resize to another "
                        f"width") from error

    def close(self) -> None:
        self._vr = None
        if self._fallback is not None:
            self._fallback.close()


def _span(unique: np.ndarray) -> str:
    return f"{int(unique[0])}..{int(unique[-1])}" if len(unique) > 1 else str(int(unique[0]))


def resize_frames(frames: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear (antialiased) resize of uint8 frames ``[N, H, W, C] -> [N, h, w, C]``."""
    x = frames.permute(0, 3, 1, 2).float()  # [N, C, H, W]
    x = torch.nn.functional.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
    return x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


class PyAVReader(VideoReader):
    """PyAV: the packets' timestamps indexed on opening; ``get`` seeks to the keyframe before the
    first frame asked for and decodes forward; ``size`` resizes with swscale (bilinear, as decord).
    Streams without timestamps are decoded from their start."""

    backend = "pyav"

    def __init__(self, path: str, size: tuple[int, int] | None = None, num_threads: int = 1):
        super().__init__(path, size)
        import av

        self._av = av
        try:
            self._container = av.open(path)
        except av.FFmpegError as e:
            raise DataError(f"{path}: PyAV cannot open the file ({_reason(e)}); it is truncated, corrupt or not a "
                            f"video. Re-encode or remove it") from e
        if not self._container.streams.video:
            self.close()
            raise DataError(f"{path}: no video stream in the file (0 video frames): it holds no video, or is "
                            f"truncated or corrupt; remove it from the list")
        self._stream = stream = self._container.streams.video[0]
        stream.codec_context.thread_count = num_threads
        self._index(stream)
        rate = stream.average_rate or stream.guessed_rate
        self.fps = float(rate) if rate else 0.0
        cc = stream.codec_context
        self._native = (int(cc.height), int(cc.width)) if cc.width and cc.height else self._first_shape()

    def _index(self, stream) -> None:
        """Each frame's timestamp (sorted: display order) and the keyframes, from the packets."""
        pts, keys = [], []
        try:
            for packet in self._container.demux(stream):
                if packet.size:
                    pts.append(packet.pts)
                    keys.append(packet.is_keyframe)
        except self._av.FFmpegError as e:
            self.close()
            raise DataError(f"{self.path}: cannot read the file's packets ({_reason(e)}); it is truncated or "
                            f"corrupt. Re-encode or remove it") from e
        self.num_frames = len(pts)
        if not pts:
            self.close()
            raise DataError(f"{self.path}: the video has no frames; remove it from the list")
        if stream.frames and stream.frames > len(pts):  # the container's index lists frames the file lacks
            self.close()
            raise DataError(f"{self.path}: the file's index lists {stream.frames} frames but only {len(pts)} are in "
                            f"it; the file is truncated. Re-encode or remove it")
        if any(p is None for p in pts):  # no timestamps: decode from the start, counting frames
            self._pts, self._keys = None, np.zeros(1, dtype=np.int64)
            return
        order = np.argsort(pts, kind="stable")
        self._pts = np.asarray(pts, dtype=np.int64)[order]  # [N] display order
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        self._keys = np.sort(rank[np.asarray(keys, dtype=bool)])  # display indices of keyframes
        if not len(self._keys) or self._keys[0] != 0:
            self._keys = np.concatenate([[0], self._keys])

    def _first_shape(self) -> tuple[int, int]:
        frame = next(self._frames(0), None)
        if frame is None:
            raise DataError(f"{self.path}: no frame could be decoded; the file is truncated or corrupt")
        return frame[1].height, frame[1].width

    def _rewind(self) -> None:
        """Back to the first frame: the file opened again (streams without timestamps cannot seek)."""
        threads = self._stream.codec_context.thread_count
        self._container.close()
        self._container = self._av.open(self.path)
        self._stream = self._container.streams.video[0]
        self._stream.codec_context.thread_count = threads

    def _frames(self, start_key: int):
        """``(index, frame)`` from the keyframe at display index ``start_key`` on."""
        if self._pts is None or start_key == 0:
            self._rewind()
        else:
            self._container.seek(int(self._pts[start_key]), stream=self._stream, backward=True, any_frame=False)
        count = -1
        for frame in self._container.decode(self._stream):
            count += 1
            if self._pts is None:
                yield count, frame
                continue
            i = int(np.searchsorted(self._pts, frame.pts)) if frame.pts is not None else -1
            if 0 <= i < self.num_frames and self._pts[i] == frame.pts and i >= start_key:
                yield i, frame

    def _decode(self, unique: np.ndarray) -> Tensor:
        start = int(self._keys[np.searchsorted(self._keys, unique[0], side="right") - 1])
        wanted, out = set(unique.tolist()), {}
        h, w = self.shape
        try:
            for i, frame in self._frames(start):
                if (frame.height, frame.width) != self.native_shape:
                    raise _size_change_error(self.path, self.native_shape, (frame.height, frame.width),
                                             f"from frame {i} on")
                if i in wanted:
                    out[i] = frame.to_ndarray(format="rgb24", width=w, height=h)  # [h, w, 3]
                if i >= unique[-1]:
                    break
        except self._av.FFmpegError as e:
            raise DataError(f"{self.path}: PyAV cannot decode frames {_span(unique)} ({_reason(e)}); the file is "
                            f"truncated or corrupt. Re-encode or remove it") from e
        missing = sorted(wanted - set(out))
        if missing:
            raise DataError(f"{self.path}: frames {missing[:5]} could not be decoded (the index lists "
                            f"{self.num_frames} frames); the file is truncated or corrupt. Re-encode or remove it")
        return torch.from_numpy(np.stack([out[i] for i in unique.tolist()]))

    def close(self) -> None:
        container = getattr(self, "_container", None)
        if container is not None:
            container.close()
            self._container = None


# ------------------------------------------------------------------------------------------------
# the API
# ------------------------------------------------------------------------------------------------
def open_video(path, backend: str = "auto", size=None, num_threads: int = 1, check_sizes: bool = True) -> VideoReader:
    """Open a video file for reading frames.

    Args:
        path: the file (mp4, mkv, avi, webm, ... anything FFmpeg reads).
        backend: ``'decord'``, ``'pyav'``, or ``'auto'``: decord, and PyAV when decord is not
            installed or cannot open the file (logged once per file).
        size: ``(H, W)`` to resize every frame to while decoding; None keeps the file's size.
        num_threads: decoder threads (1 suits data-loader workers).
        check_sizes: check (once per file and process) that the file's keyframes all have one size.

    Raises:
        DataError: the file is missing, empty, unreadable, has no frames, or its frames change size.
        ConfigError: an unknown backend, a bad size, or ``backend='decord'`` without decord.
    """
    path = os.fspath(path)
    if backend not in BACKENDS:
        raise ConfigError(f"open_video: backend must be one of {', '.join(map(repr, BACKENDS))}; got {backend!r}")
    size = _check_size(size)
    if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 0:
        raise ConfigError(f"open_video: num_threads must be an int >= 0 (0: the decoder's choice); got {num_threads!r}")
    if not os.path.isfile(path):
        raise DataError(f"{path}: video file not found" + (" (it is a directory)" if os.path.isdir(path) else ""))
    if os.path.getsize(path) == 0:
        raise DataError(f"{path}: the video file is empty (0 bytes); re-encode or remove it")
    reader = _open_reader(path, backend, size, num_threads)
    if check_sizes:
        try:
            reader.check_constant_size()
        except DataError:
            reader.close()
            raise
    return reader


def _open_reader(path: str, backend: str, size, num_threads: int) -> VideoReader:
    decord_error = None
    if backend in ("auto", "decord"):
        if _import("decord") is None:
            if backend == "decord":
                raise ConfigError("backend='decord' but decord is not installed: `pip install decord`, or use "
                                  "backend='auto' (PyAV when decord is missing)")
            log_once("glocal video: decord is not installed; videos are decoded with PyAV")
        else:
            try:
                return DecordReader(path, size, num_threads, fallback=backend == "auto")
            except DataError:
                raise
            except Exception as e:  # noqa: BLE001 - decord raises RuntimeError and DECORDError for bad files
                if backend == "decord" and "cannot find video stream" in str(e):
                    raise DataError(f"{path}: no video stream in the file (0 video frames): it holds no video, or "
                                    f"is truncated or corrupt; remove it from the list") from e
                if backend == "decord":
                    raise DataError(f"{path}: decord cannot open the file ({_reason(e)}); it is truncated, corrupt "
                                    f"or not a video. Re-encode or remove it, or try backend='pyav'") from e
                decord_error = e
    if _import("av") is None:
        hint = f"decord cannot open it ({_reason(decord_error)}) and " if decord_error is not None else ""
        raise DataError(f"{path}: {hint}PyAV is not installed to try instead: `pip install av`")
    try:
        reader = PyAVReader(path, size, num_threads)
    except DataError as e:
        if decord_error is None:
            raise
        raise DataError(f"{e} (decord cannot open it either: {_reason(decord_error)})") from e
    if decord_error is not None:
        log_once(f"decord cannot open {path} ({_reason(decord_error)}); decoding it with PyAV", logging.WARNING)
    return reader


def read_video(path, indices=None, **kwargs) -> Tensor:
    """The frames at ``indices`` (all frames when None) of the file, uint8 RGB ``[T, H, W, 3]``;
    ``kwargs`` as :func:`open_video`."""
    with open_video(path, **kwargs) as reader:
        return reader.get(np.arange(len(reader)) if indices is None else indices)


def _as_frames(frames) -> np.ndarray:
    """``frames`` (tensor or array) as uint8 ``[T, H, W, 3]``; grey ``[T, H, W]`` / ``[T, H, W, 1]`` repeated."""
    a = frames.detach().cpu().numpy() if isinstance(frames, Tensor) else np.asarray(frames)
    if a.dtype != np.uint8:
        raise InputError(f"write_video: frames must be uint8 [T, H, W, 3]; got {a.dtype} (convert float frames in "
                         f"[0, 1] with (x * 255).round().clamp(0, 255).to(torch.uint8))")
    if a.ndim == 3:
        a = a[..., None]
    if a.ndim != 4 or a.shape[-1] not in (1, 3) or a.shape[0] == 0:
        raise InputError(f"write_video: frames must be [T, H, W, 3] (or grey [T, H, W]) with T >= 1; got {a.shape}")
    return np.ascontiguousarray(np.repeat(a, 3, axis=-1) if a.shape[-1] == 1 else a)


def _encoder_options(codec: str, crf: int, options: dict | None) -> dict:
    if codec in ("libx264", "libx265"):  # threads=1: the same bytes from the same frames on every machine
        base = {"crf": str(int(crf)), "preset": "medium", "threads": "1"}
    elif codec == "mpeg4":
        base = {"qmin": "1", "qmax": "3"}  # near-lossless; the encoder's default rate is far lower
    else:
        base = {}
    return {**base, **{k: str(v) for k, v in (options or {}).items()}}


def write_video(path, frames, fps: float, codec: str = "libx264", crf: int = 18, options: dict | None = None) -> None:
    """Write ``frames`` (uint8 ``[T, H, W, 3]``, tensor or array; grey ``[T, H, W]`` allowed) to ``path``
    with PyAV, in yuv420p (which needs even H and W).

    The container follows the suffix (``.mp4``: the index is put at the front, ``faststart``). The
    file is written under a temporary name and renamed into place, so a reader never sees half a file.

    Args:
        fps: frames per second (a float or a Fraction, e.g. ``Fraction(30000, 1001)``).
        codec: an FFmpeg encoder: ``'libx264'`` (H.264, quality ``crf``, single-threaded so the bytes
            are reproducible), ``'mpeg4'`` (near-lossless quantisers), ``'libx265'``, ...
        options: encoder options passed to FFmpeg, over the defaults (e.g. ``{'preset': 'veryfast'}``).
    """
    a = _as_frames(frames)
    T, H, W, _ = a.shape
    if H % 2 or W % 2:
        raise InputError(f"write_video: yuv420p needs an even height and width; the frames are {W}x{H} (W x H). "
                         f"Crop or pad them to even sizes")
    try:
        rate = Fraction(fps).limit_denominator(1001)
    except (TypeError, ValueError) as e:
        raise InputError(f"write_video: fps must be a number > 0; got {fps!r}") from e
    if rate <= 0:
        raise InputError(f"write_video: fps must be > 0; got {fps!r}")
    av = _import("av")
    if av is None:
        raise ConfigError("write_video needs PyAV: `pip install av`")
    path = Path(os.fspath(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.stem + ".", suffix=path.suffix)
    os.close(fd)
    try:
        container_options = {"movflags": "faststart"} if path.suffix.lower() in (".mp4", ".mov", ".m4v") else {}
        with av.open(tmp, "w", options=container_options) as container:
            stream = container.add_stream(codec, rate=rate)
            stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
            stream.options = _encoder_options(codec, crf, options)
            for frame in a:
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

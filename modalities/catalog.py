"""Everything glocal.modalities offers to configs, registered explicitly in one place.

Entries are lazy: a modality's package (and its decoding libraries) is imported when one of its
names is first built, so a graph user never imports decord, open3d or torchaudio.
"""
from .registry import ADAPTERS, CLIP_SAMPLERS, COLLATES, DATASETS, ENCODERS, PREPROCESSORS, TRANSFORMS

# --- shared by every modality ---------------------------------------------------------------------
BATCH = "glocal.modalities.batch"
PREPROCESSORS.add_lazy(BATCH, "BatchPreprocessor")
COLLATES.add_lazy(BATCH, "StackCollate", "PadCollate")

# --- image ----------------------------------------------------------------------------------------
IMAGE = "glocal.modalities.image"
ADAPTERS.add_lazy(IMAGE, "PatchStem", "ConvStem")
PREPROCESSORS.add_lazy(IMAGE, "ImageDataPreprocessor")
DATASETS.add_lazy(IMAGE, "FashionMNIST", "FashionMNISTScenes", "ImageFolder")
TRANSFORMS.add_lazy(IMAGE, "RandomCrop", "RandomFlip", "Resize", "CenterCrop", "RandomResizedCrop",
                    "RandomErasing", "PackInputs")

# --- graph ----------------------------------------------------------------------------------------
GRAPH = "glocal.modalities.graph"
ADAPTERS.add_lazy(GRAPH, "GraphStem")
ENCODERS.add_lazy(GRAPH, "CategoricalEncoder", "AtomEncoder", "BondEncoder", "EmbeddingEncoder", "LinearEncoder",
                  "RWSEEncoder", "LapPEEncoder")
DATASETS.add_lazy(GRAPH, "GraphList", "MoleculeDataset", "QM9", "FreeSolv", "Solubility")
TRANSFORMS.add_lazy(GRAPH, "RWSE", "LapPE")
DATASETS.add_lazy(GRAPH + ".longrange", "LongRangeNodes")

# --- audio ----------------------------------------------------------------------------------------
AUDIO = "glocal.modalities.audio"
ADAPTERS.add_lazy(AUDIO, "SubsampleStem")
DATASETS.add_lazy(AUDIO, "KeywordSpotting", "SpeechSentences", "AudioManifest", "PocketsphinxTestData")
TRANSFORMS.add_lazy(AUDIO, "Fbank", "LogMel", "MFCC", "UtteranceNorm", "GlobalNorm", "SpecAugment", "AddNoise",
                    "SpeedPerturb", "Reverb", "RandomGain", "Resample", "MixDown", "EncodeText")
COLLATES.add_lazy(AUDIO, "SpeechCollate")

# --- points ---------------------------------------------------------------------------------------
POINTS = "glocal.modalities.points"
ADAPTERS.add_lazy(POINTS, "PointStem")
DATASETS.add_lazy(POINTS, "ShapeClassification", "LidarTiles", "PointScenes")
TRANSFORMS.add_lazy(POINTS, "NormalizeCoords", "CenterShift", "RandomRotate", "RandomScale", "RandomJitter",
                    "ColorJitter", "VoxelDownsample", "FarthestPointSample", "SphereCrop", "ShufflePoints")
COLLATES.add_lazy(POINTS, "PointCollate")

# --- video ----------------------------------------------------------------------------------------
VIDEO = "glocal.modalities.video"
ADAPTERS.add_lazy(VIDEO, "TubeletStem")
DATASETS.add_lazy(VIDEO, "VideoList", "VideoFolder", "MovingFashionMNIST", "SkvideoClips")
TRANSFORMS.add_lazy(VIDEO, "ResizeClip", "RandomCropClip", "CenterCropClip", "ThreeCropClip", "FlipClip",
                    "NormalizeClip", "PackClip")
COLLATES.add_lazy(VIDEO, "ClipCollate")
CLIP_SAMPLERS.add_lazy(VIDEO, "UniformSampler", "SegmentSampler", "DenseSampler")  # also sampling.SAMPLERS

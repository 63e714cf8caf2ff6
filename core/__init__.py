"""glocal.core: the modality-agnostic machine. ``Tokens`` in, ``Tokens`` out.

Adapters (glocal.modalities) turn raw samples into :class:`Tokens`; blocks of a local encoder and a
global mixer transform them; heads (glocal.tasks) read them. Nothing here imports a modality.
"""
from .attention import FullAttention, WindowAttention
from .backbone import Backbone, BackboneOutput, IsotropicBackbone
from .block import DropPath, LayerScale, LocalGlobalBlock, Mlp, Parallel, Residual, TokenNorm
from .conv import DepthwiseConv, LocalAggregator
from .downsample import ConvDownsample, PatchMerging
from .errors import ConfigError, DataError, DatasetNotFoundError, GlocalError, InputError, MissingStructureError
from .grid import GridAttention
from .grid_pool import GridPooling, GridUnpooling
from .hilo import HiLoAttention
from .linear_attention import LinearAttention
from .mbconv import MBConv
from .neighborhood import NeighborhoodAttention
from .registry import BACKBONES, BLOCKS, DOWNSAMPLERS, MIXERS, NORMS, Registry
from .serialized_attention import SerializedAttention
from .sparse_conv import XCPE, SubMConv3d
from .ssm import SS2D, Mamba, selective_scan, selective_scan_ref
from .tokens import Tokens
from .undo import ClusterUndo, GridUndo, IdentityUndo, Undo

__all__ = [
    "Tokens", "Undo", "GridUndo", "ClusterUndo", "IdentityUndo", "LocalGlobalBlock", "Residual", "Parallel", "Mlp", "DropPath", "LayerScale", "TokenNorm",
    "FullAttention", "WindowAttention", "DepthwiseConv", "LocalAggregator", "PatchMerging", "ConvDownsample", "Backbone",
    "BackboneOutput", "IsotropicBackbone", "Registry", "MIXERS", "NORMS", "BLOCKS", "DOWNSAMPLERS",
    "BACKBONES",
    "GlocalError", "InputError", "MissingStructureError", "DataError", "ConfigError", "DatasetNotFoundError",
    "NeighborhoodAttention", "GridAttention", "HiLoAttention", "MBConv",
    "Mamba", "SS2D", "LinearAttention", "selective_scan", "selective_scan_ref",
    "SerializedAttention", "SubMConv3d", "XCPE", "GridPooling", "GridUnpooling",
]

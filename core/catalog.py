"""Everything glocal.core offers to configs, registered explicitly in one place."""
from .attention import FullAttention, WindowAttention
from .backbone import Backbone, IsotropicBackbone
from .block import BatchNorm, LayerNorm, LocalGlobalBlock, Mlp, RMSNorm
from .conv import DepthwiseConv
from .downsample import ConvDownsample, PatchMerging
from .models.swin import SwinTransformer, swin_b, swin_s, swin_t
from .registry import BACKBONES, BLOCKS, DOWNSAMPLERS, MIXERS, NORMS

NORMS.add_all(LayerNorm, BatchNorm, RMSNorm)
MIXERS.add_all(FullAttention, WindowAttention, DepthwiseConv, Mlp)
BLOCKS.add_all(LocalGlobalBlock)
DOWNSAMPLERS.add_all(PatchMerging, ConvDownsample)
BACKBONES.add_all(Backbone, IsotropicBackbone, SwinTransformer, swin_t, swin_s, swin_b)

# --- windowed attention family: neighbourhood, grid, HiLo; MaxViT / NAT / DiNAT -------------------

# --- state-space scans and linear attention; Vim / VMamba ------------------------------------------

# --- message passing (torch_geometric) --------------------------------------------------------------

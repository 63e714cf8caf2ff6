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
from .grid import GridAttention  # noqa: E402
from .hilo import HiLoAttention  # noqa: E402
from .mbconv import MBConv, MBConvDownsample  # noqa: E402
from .models import maxvit as _maxvit, nat as _nat  # noqa: E402
from .neighborhood import NeighborhoodAttention  # noqa: E402

MIXERS.add_all(NeighborhoodAttention, GridAttention, HiLoAttention)
BLOCKS.add_all(MBConv)
DOWNSAMPLERS.add_all(MBConvDownsample)
BACKBONES.add_all(_maxvit.MaxViT, _maxvit.maxvit_t, _maxvit.maxvit_s, _maxvit.maxvit_b,
                  _nat.NAT, _nat.nat_mini, _nat.nat_tiny, _nat.nat_small, _nat.nat_base,
                  _nat.dinat_mini, _nat.dinat_tiny, _nat.dinat_small, _nat.dinat_base)

# --- state-space scans and linear attention; Vim / VMamba ------------------------------------------
from .linear_attention import LinearAttention  # noqa: E402
from .models.mamba_vision import VisionMamba, VMamba, vim_s, vim_ti, vmamba_s, vmamba_t  # noqa: E402
from .ssm import SS2D, Mamba  # noqa: E402

MIXERS.add_all(Mamba, SS2D, LinearAttention)
BACKBONES.add_all(VisionMamba, VMamba, vim_ti, vim_s, vmamba_t, vmamba_s)

# --- message passing (torch_geometric) --------------------------------------------------------------
from .mpnn import GINE, GatedGCN  # noqa: E402

MIXERS.add_all(GINE, GatedGCN)

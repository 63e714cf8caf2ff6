"""Everything glocal.core offers to configs, registered explicitly in one place.

A registry lookup imports this module (and the modalities/tasks catalogs) first, so a name is never
missing because some module was not imported. torch_geometric is imported only when an MPNN layer
is built.
"""
from .attention import FullAttention, WindowAttention
from .backbone import Backbone, IsotropicBackbone
from .block import BatchNorm, LayerNorm, LocalGlobalBlock, Mlp, RMSNorm
from .conv import ConvModule, DepthwiseConv, LocalAggregator
from .downsample import ConvDownsample, PatchMerging
from .grid import GridAttention
from .grid_pool import GridPooling
from .hilo import HiLoAttention
from .linear_attention import LinearAttention
from .mbconv import MBConv, MBConvDownsample
from .models import conformer, mamba_vision, maxvit, nat, swin, uniformer
from .models import mamba_asr, mossformer, ptv3, squeezeformer
from .mpnn import GINE, GatedGCN, KnnGINE
from .neighborhood import NeighborhoodAttention
from .registry import BACKBONES, BLOCKS, DOWNSAMPLERS, MIXERS, NORMS
from .serialized_attention import SerializedAttention
from .sparse_conv import XCPE, SubMConv3d
from .ssm import SS2D, Mamba

NORMS.add_all(LayerNorm, BatchNorm, RMSNorm)

# token mixers: local encoders, global mixers, FFNs
MIXERS.add_all(
    FullAttention, WindowAttention, Mlp,  # attention, FFN
    DepthwiseConv, LocalAggregator, ConvModule,  # convolution (ConvNeXt / UniFormer, Conformer)
    NeighborhoodAttention, GridAttention, HiLoAttention,  # windowed family (NAT/DiNAT, MaxViT, LITv2)
    Mamba, SS2D, LinearAttention,  # state-space scans, linear attention
    GINE, GatedGCN, KnnGINE,  # message passing (torch_geometric)
    SerializedAttention, SubMConv3d, XCPE,  # point clouds (PTv3): patches along a curve, sparse convolution
)
BLOCKS.add_all(LocalGlobalBlock, MBConv, conformer.ConformerBlock)
BLOCKS.add_all(squeezeformer.SqueezeformerBlock, squeezeformer.TemporalUNet)
BLOCKS.add(ptv3.PointBlock)
DOWNSAMPLERS.add_all(PatchMerging, ConvDownsample, MBConvDownsample)
DOWNSAMPLERS.add(squeezeformer.TimeReduction)
DOWNSAMPLERS.add(GridPooling)

BACKBONES.add_all(Backbone, IsotropicBackbone)
BACKBONES.add_all(swin.SwinTransformer, swin.swin_t, swin.swin_s, swin.swin_b)
BACKBONES.add_all(swin.video_swin_t, swin.video_swin_s, swin.video_swin_b)
BACKBONES.add_all(uniformer.UniFormer, uniformer.uniformer_s, uniformer.uniformer_b, uniformer.video_uniformer_s,
                  uniformer.video_uniformer_b)
BACKBONES.add_all(maxvit.MaxViT, maxvit.maxvit_t, maxvit.maxvit_s, maxvit.maxvit_b)
BACKBONES.add_all(nat.NAT, nat.nat_mini, nat.nat_tiny, nat.nat_small, nat.nat_base,
                  nat.dinat_mini, nat.dinat_tiny, nat.dinat_small, nat.dinat_base)
BACKBONES.add_all(mamba_vision.VisionMamba, mamba_vision.VMamba, mamba_vision.vim_ti, mamba_vision.vim_s,
                  mamba_vision.vmamba_t, mamba_vision.vmamba_s)
BACKBONES.add_all(conformer.Conformer, conformer.conformer_s, conformer.conformer_m, conformer.conformer_l)
BACKBONES.add_all(squeezeformer.Squeezeformer, squeezeformer.squeezeformer_xs, squeezeformer.squeezeformer_s,
                  squeezeformer.squeezeformer_sm, squeezeformer.squeezeformer_m)
BACKBONES.add_all(mamba_asr.MambaASR, mamba_asr.mamba_asr_s, mamba_asr.mamba_asr_m)
BACKBONES.add_all(mossformer.MossFormer, mossformer.mossformer_s, mossformer.mossformer_m)
BACKBONES.add_all(ptv3.PointTransformerV3, ptv3.ptv3_base, ptv3.ptv3_small)

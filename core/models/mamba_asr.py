"""A Mamba speech encoder in the spirit of Samba-ASR (Shakhadri et al., "Samba-ASR: State-of-the-Art
Speech Recognition Leveraging Structured State-Space Models", 2025), built from the core's parts.

Samba-ASR replaces the Transformer's self-attention by Mamba's selective state-space scan
(Gu & Dao, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces", 2023). An encoder
sees the whole utterance, so here the scan runs both ways along time (``Mamba(direction=
"bidirectional")``: a forward and a backward path with their own conv, ``x_proj``, ``dt_proj``,
``A`` and ``D``, outputs averaged, as Vision Mamba's). Each layer is one pre-norm
``LocalGlobalBlock``::

    x + ConvModule(x)  ->  x + BiMamba(x)  ->  x + FFN(x)        (LayerNorm before each step)

the Conformer convolution module as the local encoder (``local="DepthwiseConv"`` for a bare
depthwise conv), the bidirectional scan as the global mixer, a SiLU FFN; a final LayerNorm. Cost is
linear in the number of frames. Padding is inert: padded frames are zeroed before the
convolutions and are identity steps of the scans, and with trailing padding every utterance gets
the outputs it would get alone (in eval mode).

The subsampling stem is the audio adapter's (``SubsampleStem``), as for Conformer.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..backbone import Backbone
from ..errors import ConfigError

__all__ = ["MambaASRConfig", "MambaASR", "mamba_asr_s", "mamba_asr_m"]


@dataclass
class MambaASRConfig:
    dim: int = 144
    in_dim: int | None = None  # width of the adapter's tokens (default: dim; must equal it)
    depth: int = 19
    local: str | None = "ConvModule"  # or "DepthwiseConv", or None (scan and FFN only)
    kernel: int = 31  # of the local convolution
    d_state: int = 16
    d_conv: int = 4
    expand: float = 2
    direction: str = "bidirectional"
    ffn_ratio: float = 4.0
    rank: int = 1
    dropout: float = 0.1
    drop_path_rate: float = 0.0
    chunk: int | None = None  # of the selective scan


class MambaASR(Backbone):
    """``depth`` pre-norm blocks of (local conv, bidirectional Mamba, FFN) and a final LayerNorm."""

    config_class = MambaASRConfig

    def __init__(self, cfg: MambaASRConfig | None = None, **overrides):
        cfg = dataclasses.replace(cfg or MambaASRConfig(), **overrides)
        if cfg.local == "ConvModule":
            local = dict(type="ConvModule", kernel=cfg.kernel, rank=cfg.rank, drop=cfg.dropout)
        elif cfg.local == "DepthwiseConv":
            local = dict(type="DepthwiseConv", kernel=cfg.kernel, rank=cfg.rank)
        elif cfg.local is None:
            local = None
        else:
            raise ConfigError(f"MambaASR local must be 'ConvModule', 'DepthwiseConv' or None; got {cfg.local!r}")
        block = dict(local=local,
                     global_=dict(type="Mamba", d_state=cfg.d_state, d_conv=cfg.d_conv, expand=cfg.expand,
                                  direction=cfg.direction, chunk=cfg.chunk),
                     ffn=dict(type="Mlp", ratio=cfg.ffn_ratio, act="SiLU", drop=cfg.dropout),
                     norm="LayerNorm")
        super().__init__(cfg.in_dim or cfg.dim, [dict(dim=cfg.dim, depth=cfg.depth, blocks=block)],
                         drop_path_rate=cfg.drop_path_rate, out_norm="LayerNorm")
        self.cfg = cfg


def mamba_asr_s(**overrides) -> MambaASR:
    """Mamba-ASR-S: dim 144, 19 layers of (ConvModule k31, bidirectional Mamba d_state 16 expand 2,
    FFN 576): 7,628,256 parameters, within 2% of Conformer-S's encoder (7,771,392) for
    like-for-like comparisons."""
    return MambaASR(MambaASRConfig(dim=144, depth=19), **overrides)


def mamba_asr_m(**overrides) -> MambaASR:
    """Mamba-ASR-M: dim 256, 19 layers (23,094,784 parameters, near Conformer-M's 24.4 M)."""
    return MambaASR(MambaASRConfig(dim=256, depth=19), **overrides)


for _variant in (mamba_asr_s, mamba_asr_m):
    _variant.config_class = MambaASRConfig

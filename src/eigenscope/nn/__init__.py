"""Modules eigenscope puts into models: low-rank stand-ins for Linear/Conv1D and Conv2d layers,
their fused and quantized forms, SpectralFilter (a hook keeping hidden states in a spectral
subspace), and inference transforms (fused `down` factors, a column-major weight layout)."""
from .filter import SpectralFilter
from .fuse import FusedLowRankLinear, fuse_lowrank_, unfuse_lowrank_
from .layout import column_major_
from .lowrank import LowRankLinear
from .lowrank_conv import LowRankConv2d
from .quant import QuantLinear

__all__ = ["LowRankLinear", "LowRankConv2d", "FusedLowRankLinear", "QuantLinear", "SpectralFilter",
           "fuse_lowrank_", "unfuse_lowrank_", "column_major_"]

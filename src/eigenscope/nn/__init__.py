"""Modules eigenscope puts into models."""
from .fuse import FusedLowRankLinear, fuse_lowrank_, unfuse_lowrank_
from .lowrank import LowRankLinear
from .quant import QuantLinear

__all__ = ["FusedLowRankLinear", "LowRankLinear", "QuantLinear", "fuse_lowrank_", "unfuse_lowrank_"]

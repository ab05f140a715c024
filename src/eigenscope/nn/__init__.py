"""Modules eigenscope puts into models: low-rank stand-ins for Linear/Conv1D and Conv2d layers."""
from .lowrank import LowRankLinear
from .lowrank_conv import LowRankConv2d

__all__ = ["LowRankLinear", "LowRankConv2d"]

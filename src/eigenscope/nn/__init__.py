"""Modules eigenscope puts into models."""
from .filter import SpectralFilter
from .lowrank import LowRankLinear

__all__ = ["LowRankLinear", "SpectralFilter"]

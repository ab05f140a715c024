"""Modules eigenscope puts into models."""
from .lowrank import LowRankLinear

__all__ = ["LowRankLinear"]

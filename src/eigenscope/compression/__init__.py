"""Low-rank compression: calibration, methods (one file each), rank allocation, save/load.

Public: `compress`, `save`, `load`; the method configs; and, to add a method of your own,
`register`, `MethodBase`, `LayerStats`, `CallState` (see registry.py and DEVELOPERS.md).
`StatsCache` keeps one call's statistics for the next (several ratios, one calibration).
`methods.names()` lists the registered method names.
"""
from __future__ import annotations

from .api import StatsCache, compress, statistics
from .io import load, save
from .methods import ASVDConfig, FWSVDConfig, SVDConfig, WhitenConfig, describe, names
from .registry import CallState, LayerStats, MethodBase, register

__all__ = ["compress", "save", "load", "StatsCache", "statistics", "SVDConfig", "ASVDConfig", "FWSVDConfig", "WhitenConfig",
           "names", "describe", "register", "MethodBase", "LayerStats", "CallState"]

"""Compression methods, one file each; importing this package registers every one of them.

`resolve(method)` gives (config, handler) for a name or a config; `names()` lists the registered
names. A new method is a new file in this folder (see registry.py); nothing else changes.
"""
from __future__ import annotations

import importlib
import pkgutil

from ..registry import NAMES, lookup, summary_line

for _info in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_info.name}")

from .asvd import ASVDConfig  # noqa: E402  (public configs, re-exported)
from .fwsvd import FWSVDConfig  # noqa: E402
from .svd import SVDConfig  # noqa: E402
from .whiten import WhitenConfig  # noqa: E402

__all__ = ["SVDConfig", "ASVDConfig", "FWSVDConfig", "WhitenConfig", "resolve", "names",
           "describe"]


def resolve(method):
    """(config, handler) of a registered method name or a config instance."""
    return lookup(method)


def names() -> list[str]:
    """Every registered method name, sorted."""
    return sorted(NAMES)


def describe() -> dict[str, str]:
    """{name: one line} of every registered method (CLI help, docs)."""
    return {n: summary_line(n) for n in names()}

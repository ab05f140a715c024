"""eigenscope: spectral diagnosis, compression and training tools for neural-network weights.

    >>> import torch, eigenscope
    >>> df = eigenscope.analyze(torch.nn.Linear(64, 32), metrics=["norms"])
    >>> list(df["role"])
    ['other']

The public API is small; every name below is imported lazily so `import eigenscope` stays fast.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "analyze": "eigenscope.analysis.runner",
    "summary": "eigenscope.analysis.summary",
    "open_source": "eigenscope.sources",
    "compress": "eigenscope.compression.api",
    "save": "eigenscope.compression.io",
    "load": "eigenscope.compression.io",
    "evaluate": "eigenscope.evaluation",
    "compare": "eigenscope.report.compare",
    "LowRankLinear": "eigenscope.nn.lowrank",
    "quantize_": "eigenscope.compression.quantize",
    "fuse_lowrank_": "eigenscope.nn.fuse",
    "EigenscopeError": "eigenscope.errors",
}
_SUBMODULES = {"linalg", "optim", "tune", "monitor", "plot", "report", "maths", "sources", "nn"}

__all__ = sorted(_EXPORTS) + sorted(_SUBMODULES)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"eigenscope.{name}")
    raise AttributeError(f"module 'eigenscope' has no attribute {name!r}")

"""eigenscope: spectral diagnosis, compression and training tools for neural-network weights.

    >>> import torch, eigenscope
    >>> df = eigenscope.analyze(torch.nn.Linear(64, 32), metrics=["norms"])
    >>> list(df["role"])
    ['other']

The public API is what `__all__` lists: the verbs, the compression configs, the errors, and the
public subpackages; every name is imported lazily so `import eigenscope` stays fast. Anything
else (modules and names not listed) is internal and may change without notice.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it
_VERBS = {
    "analyze": "eigenscope.analysis.runner",
    "activations": "eigenscope.hidden_states.runner",
    "analyze_many": "eigenscope.engines",
    "summary": "eigenscope.analysis.summary",
    "open_source": "eigenscope.sources",
    "compress": "eigenscope.compression.api",
    "save": "eigenscope.compression.io",
    "load": "eigenscope.compression.io",
    "evaluate": "eigenscope.evaluation",
    "compare": "eigenscope.comparison",
    "quantize_": "eigenscope.compression.quantize",
    "fuse_lowrank_": "eigenscope.nn.fuse",
    "column_major_": "eigenscope.nn.layout",
}
_CONFIGS = {name: "eigenscope.compression.methods"
            for name in ("SVDConfig", "ASVDConfig", "FWSVDConfig", "WhitenConfig")}
_ERRORS = {name: "eigenscope.errors" for name in ("EigenscopeError", "SourceError", "ArgumentError")}
_CLASSES = {"LowRankLinear": "eigenscope.nn"}
_EXPORTS = {**_VERBS, **_CONFIGS, **_ERRORS, **_CLASSES}
# public subpackages (each lists its own public names in its __all__)
_SUBMODULES = ("analysis", "compression", "engines", "linalg", "maths", "monitor", "nn", "optim", "plot",
               "report", "sources", "tune")

__all__ = sorted(_EXPORTS) + sorted(_SUBMODULES)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"eigenscope.{name}")
    raise AttributeError(f"module 'eigenscope' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))

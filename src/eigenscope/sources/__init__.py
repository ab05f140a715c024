"""Model sources, read tensor by tensor: nn.Module, HF folder, .safetensors, .gguf, built-in names.

Public: `open_source(spec)` gives a `Source` (its `tensors()` list `TensorInfo`s without reading
weights; `read(name)` reads one tensor). Write a new format as a `Source` subclass (see
DEVELOPERS.md). Everything else in this package is internal.

    >>> from eigenscope.sources import open_source
    >>> import torch
    >>> [t.name for t in open_source(torch.nn.Linear(3, 2)).tensors()]
    ['weight', 'bias']
"""
from __future__ import annotations

from .base import Source, TensorInfo
from .formats import open_source

__all__ = ["open_source", "Source", "TensorInfo"]

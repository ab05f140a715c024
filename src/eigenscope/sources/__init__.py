"""Model sources, read tensor by tensor: nn.Module, HF folder, .safetensors, .gguf, built-in names.

Public: `open_source(spec)` gives a `Source` (its `tensors()` list `TensorInfo`s without reading
weights; `read(name)` reads one tensor). Write a new format as a `Source` subclass (see
DEVELOPERS.md). `checkpoint_map(model_or_config)` says which checkpoint tensors make which
module parameter (transformers 5 renames and fuses weights when it loads them), and fills a
weightless skeleton from checkpoint files. Everything else in this package is internal.

    >>> from eigenscope.sources import open_source
    >>> import torch
    >>> [t.name for t in open_source(torch.nn.Linear(3, 2)).tensors()]
    ['weight', 'bias']
"""
from __future__ import annotations

from .base import Source, TensorInfo
from .formats import open_source
from .naming import CheckpointMap, Piece, checkpoint_map

__all__ = ["open_source", "Source", "TensorInfo", "checkpoint_map", "CheckpointMap", "Piece"]

"""Model sources, read tensor by tensor: nn.Module, HF folder, .safetensors, .gguf, built-in names.

    >>> from eigenscope.sources import open_source
    >>> import torch
    >>> [t.name for t in open_source(torch.nn.Linear(3, 2)).tensors()]
    ['weight', 'bias']
"""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import SourceError
from .base import Source, TensorInfo
from .builtin import BUILTINS, resolve_builtin
from .matrices import MatrixMeta, iter_matrices, plan_matrices

__all__ = ["open_source", "resolve_builtin", "BUILTINS", "Source", "TensorInfo", "MatrixMeta",
           "iter_matrices", "plan_matrices"]


def open_source(spec) -> Source:
    """Open `spec` (a Source, nn.Module, path or built-in name) as a lazily read Source."""
    import torch

    if isinstance(spec, Source):
        return spec
    if isinstance(spec, torch.nn.Module):
        from .module import ModuleSource
        return ModuleSource(spec)
    if isinstance(spec, str) and spec in BUILTINS:
        spec = resolve_builtin(spec)
    if not isinstance(spec, (str, os.PathLike)):
        raise SourceError(f"cannot analyse a {type(spec).__name__}: give an nn.Module, a path "
                          f"or one of {', '.join(BUILTINS)}")
    return _open_path(Path(spec))


def _open_path(path: Path) -> Source:
    if not path.exists():
        hint = f" (built-in names: {', '.join(BUILTINS)})" if len(path.parts) == 1 else ""
        raise SourceError(f"{path}: no such file or folder{hint}")
    if path.is_dir():
        from .hf_folder import open_folder
        return open_folder(path)
    if path.name.endswith(".index.json") or path.name == "config.json":
        from .hf_folder import open_folder
        return open_folder(path.parent)
    kind = _kind(path)
    if kind == "safetensors":
        from .hf_folder import config_flags
        from .safetensors_file import SafetensorsSource
        return SafetensorsSource([path], **config_flags(path.parent))
    if kind == "gguf":
        from .gguf_file import GGUFSource
        return GGUFSource(path)
    if kind == "torch":
        from .hf_folder import TorchBinSource, config_flags
        return TorchBinSource([path], **config_flags(path.parent))
    raise SourceError(f"{path}: unknown model format; give a folder, .safetensors, .gguf "
                      "or a weights-only torch .bin/.pt file")


def _kind(path: Path) -> str | None:
    """Format from the suffix, else from the first bytes (GGUF magic, zip of torch.save)."""
    suffix = path.suffix.lower()
    if suffix in (".safetensors", ".gguf"):
        return suffix[1:]
    if suffix in (".bin", ".pt", ".pth"):
        return "torch"
    with open(path, "rb") as f:
        head = f.read(4)
    if head == b"GGUF":
        return "gguf"
    if head == b"PK\x03\x04":
        return "torch"
    return None

"""`open_source`: a Source for whatever a spec names (module, built-in name, folder, file)."""
from __future__ import annotations

from pathlib import Path

from .base import Source
from .formats import detect, locate


def open_source(spec) -> Source:
    """Open `spec` (a Source, nn.Module, path or built-in name) as a lazily read Source.

    >>> import torch
    >>> [t.name for t in open_source(torch.nn.Linear(3, 2)).tensors()]
    ['weight', 'bias']
    """
    import torch

    if isinstance(spec, Source):
        return spec
    if isinstance(spec, torch.nn.Module):
        from .module import ModuleSource
        return ModuleSource(spec)
    path = locate(spec)
    return _open_path(path, detect(path))


def _open_path(path: Path, kind: str) -> Source:
    if kind in ("hf", "save") and (path.is_dir() or path.name.endswith(".json")):
        from .hf_folder import open_folder
        return open_folder(path if path.is_dir() else path.parent)
    if kind in ("safetensors", "save"):
        from .hf_folder import config_flags
        from .safetensors_file import SafetensorsSource
        return SafetensorsSource([path], **config_flags(path.parent))
    if kind == "gguf":
        from .gguf_file import GGUFSource
        return GGUFSource(path)
    from .hf_folder import TorchBinSource, config_flags
    return TorchBinSource([path], **config_flags(path.parent))

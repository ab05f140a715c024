"""Model sources, read tensor by tensor: nn.Module, HF folder, .safetensors, .gguf, built-in names.

    >>> from eigenscope.sources import open_source
    >>> import torch
    >>> [t.name for t in open_source(torch.nn.Linear(3, 2)).tensors()]
    ['weight', 'bias']
"""
from __future__ import annotations

from pathlib import Path

from ..errors import SourceError
from .base import Source, TensorInfo
from .builtin import BUILTINS, resolve_builtin

__all__ = ["open_source", "resolve_builtin", "BUILTINS", "Source", "TensorInfo"]


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
    if not isinstance(spec, (str, Path)):
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
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from .hf_folder import read_config
        from .safetensors_file import SafetensorsSource
        gpt2 = read_config(path.parent).get("model_type") == "gpt2"
        return SafetensorsSource([path], gpt2=gpt2)
    if suffix == ".gguf":
        from .gguf_file import GGUFSource
        return GGUFSource(path)
    if suffix in (".bin", ".pt", ".pth"):
        from .hf_folder import TorchBinSource
        return TorchBinSource([path])
    raise SourceError(f"{path}: unknown model format {suffix or '(no suffix)'}; "
                      "use a folder, .safetensors, .gguf or .bin")

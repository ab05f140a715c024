"""An in-memory nn.Module as a source: parameters are read as they are (no copy)."""
from __future__ import annotations

import torch
from torch import nn

from ..errors import SourceError
from .base import Source, TensorInfo


def _layout(module: nn.Module, param: torch.Tensor) -> str:
    if param.ndim <= 1:
        return "vector"
    # transformers' GPT-2 Conv1D stores (in, out); matched by class name, no hard import.
    if type(module).__name__ == "Conv1D":
        return "conv1d_gpt2"
    if isinstance(module, nn.modules.conv._ConvNd):
        return "conv"
    if param.ndim == 2:
        return "linear"
    return "moe" if param.ndim == 3 else "conv"


def _storage_key(p: torch.Tensor):
    """Same memory, same view: two Parameters tied by sharing storage (not only `is`)."""
    if p.device.type == "meta":
        return id(p)
    return (p.untyped_storage().data_ptr(), p.storage_offset(), tuple(p.shape), tuple(p.stride()))


class ModuleSource(Source):
    def __init__(self, model: nn.Module):
        self.model = model
        self.description = type(model).__name__
        self._params: dict[str, torch.Tensor] = {}
        self._infos: list[TensorInfo] = []
        first: dict = {}  # storage key -> first name (tied weights are listed once)
        for mname, module in model.named_modules():
            for pname, p in module.named_parameters(recurse=False):
                full = f"{mname}.{pname}" if mname else pname
                key = _storage_key(p)
                if key in first:
                    continue
                first[key] = full
                self._params[full] = p
                self._infos.append(TensorInfo(full, tuple(p.shape),
                                              str(p.dtype).replace("torch.", ""),
                                              _layout(module, p)))

    def tensors(self) -> list[TensorInfo]:
        return list(self._infos)

    def read(self, name: str) -> torch.Tensor:
        p = self._params[name]
        if p.is_meta:
            raise SourceError(f"{self.description}: parameter {name} is on the meta device "
                              "(no weights to read; load the weights first)")
        return p.detach()

"""An in-memory nn.Module as a source: parameters are read as they are (no copy)."""
from __future__ import annotations

import torch
from torch import nn

from .base import Source, TensorInfo


def _layout(module: nn.Module, param: torch.Tensor, pname: str) -> str:
    if param.ndim <= 1:
        return "vector"
    if type(module).__name__ == "Conv1D":  # transformers' GPT-2 Conv1D stores (in, out)
        return "conv1d_gpt2"
    if isinstance(module, nn.modules.conv._ConvNd):
        return "conv"
    if param.ndim == 3:
        return "moe"
    return "linear" if param.ndim == 2 else "conv"


class ModuleSource(Source):
    def __init__(self, model: nn.Module):
        self.model = model
        self.description = type(model).__name__
        self._params: dict[str, torch.Tensor] = {}
        self._infos: list[TensorInfo] = []
        # named_parameters() yields a shared (tied) parameter once, under its first name.
        for mname, module in model.named_modules():
            for pname, p in module.named_parameters(recurse=False):
                full = f"{mname}.{pname}" if mname else pname
                if any(p is q for q in self._params.values()):
                    continue
                self._params[full] = p
                self._infos.append(TensorInfo(full, tuple(p.shape), str(p.dtype).replace("torch.", ""),
                                              _layout(module, p, pname)))

    def tensors(self) -> list[TensorInfo]:
        return list(self._infos)

    def read(self, name: str) -> torch.Tensor:
        return self._params[name].detach()

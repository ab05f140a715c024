"""An in-memory nn.Module as a source, under its checkpoint's names (see naming.py).

A transformers model lists the tensors `save_pretrained` would write, each read as a view of
its parameter (no copy): Mixtral's fused (experts, 2*inter, hidden) `gate_up_proj` is read as
its per-expert `w1`/`w3` matrices, GPT-NeoX's `lm_head` as `embed_out`. Any other module lists
its parameters as they are. Tied parameters are listed once.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import SourceError
from .base import Source, TensorInfo
from .layout import layout_from_name
from .naming import Piece, checkpoint_map


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


class ModuleSource(Source):
    def __init__(self, model: nn.Module):
        self.model = model
        self.description = type(model).__name__
        params = dict(model.named_parameters(remove_duplicate=False))
        self._pieces: dict[str, tuple[Piece, torch.Tensor]] = {}
        self._infos: list[TensorInfo] = []
        self._computed: dict | None = None
        for piece in checkpoint_map(model).pieces:
            if piece.stride is not None and piece.parameter not in params:
                continue  # buffers: not weights
            p = params.get(piece.parameter)
            self._pieces[piece.checkpoint] = (piece, p)
            dtype = str((p if p is not None else next(iter(params.values()))).dtype)
            self._infos.append(TensorInfo(piece.checkpoint, piece.shape, dtype.replace("torch.", ""),
                                          self._layout_of(piece, p)))

    def _layout_of(self, piece: Piece, p) -> str:
        if piece.whole:
            owner = self.model.get_submodule(piece.parameter.rpartition(".")[0])
            return _layout(owner, p)
        return layout_from_name(piece.checkpoint, len(piece.shape))

    def tensors(self) -> list[TensorInfo]:
        return list(self._infos)

    def read(self, name: str) -> torch.Tensor:
        piece, p = self._pieces[name]
        if p is not None and p.is_meta:
            raise SourceError(f"{self.description}: parameter {name} is on the meta device "
                              "(no weights to read; load the weights first)")
        if piece.stride is None:
            return self._computed_tensor(name)
        return piece.view(p.detach())

    def _computed_tensor(self, name: str) -> torch.Tensor:
        """A stored tensor transformers computes from several parameters (e.g. concatenates):
        its own save path run once on the real weights."""
        if self._computed is None:
            from transformers.core_model_loading import revert_weight_conversion
            sd = {k: v.detach() for k, v in self.model.state_dict().items()}
            out = revert_weight_conversion(self.model, sd)
            self._computed = {k: out[k] for k, (pc, _) in self._pieces.items()
                              if pc.stride is None and k in out}
        return self._computed[name]

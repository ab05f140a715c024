"""Module surgery: find and replace submodules by their dotted names; low-rank stand-ins."""
from __future__ import annotations

import torch
from torch import nn


def set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    """Replace the submodule `name` ("model.layers.3.mlp.up_proj") of `model` by `new`."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def lowrank_types() -> tuple[type, ...]:
    """The classes eigenscope puts in place of compressed layers."""
    from .lowrank import LowRankLinear
    from .lowrank_conv import LowRankConv2d
    return (LowRankLinear, LowRankConv2d)


def is_lowrank_host(layer: nn.Module) -> bool:
    """A layer a low-rank stand-in can replace (or already is one)."""
    return (isinstance(layer, (nn.Linear, nn.Conv2d, *lowrank_types()))
            or type(layer).__name__ == "Conv1D")


def matrix_shape(layer: nn.Module) -> tuple[int, int]:
    """(out, in) of the matrix a Linear, Conv1D, Conv2d or low-rank stand-in stands for."""
    from .lowrank_conv import LowRankConv2d
    if isinstance(layer, LowRankConv2d):
        return layer.out_channels, layer.down.weight[0].numel()
    if isinstance(layer, nn.Conv2d):
        return layer.out_channels, layer.weight[0].numel()
    if type(layer).__name__ == "Conv1D":
        return layer.weight.shape[1], layer.weight.shape[0]
    return layer.out_features, layer.in_features


def lowrank_from_factors(layer: nn.Module, B: torch.Tensor, A: torch.Tensor,
                         bias: torch.Tensor | None) -> nn.Module:
    """The low-rank stand-in for `layer` with W' = B A: a LowRankConv2d for a Conv2d, else a
    LowRankLinear (nn.Linear, and GPT-2's Conv1D: the same map x -> x W'^T + b)."""
    from .lowrank import LowRankLinear
    from .lowrank_conv import LowRankConv2d

    if isinstance(layer, nn.Conv2d):
        return LowRankConv2d.from_factors(layer, B, A, bias)
    return LowRankLinear.from_factors(B, A, bias)


def lowrank_like(layer: nn.Module, rank: int) -> nn.Module:
    """An uninitialised low-rank stand-in of `rank` for `layer` (same device and dtype): what a
    saved compressed layer is loaded into."""
    from .lowrank import LowRankLinear
    from .lowrank_conv import LowRankConv2d

    if isinstance(layer, (nn.Conv2d, LowRankConv2d)):
        conv = layer if isinstance(layer, nn.Conv2d) else _conv_of(layer)
        return LowRankConv2d.like(conv, rank)
    if isinstance(layer, LowRankLinear):
        n, m, w, bias = layer.in_features, layer.out_features, layer.up.weight, layer.up.bias
    elif type(layer).__name__ == "Conv1D":       # transformers' GPT-2 layer, weight (in, out)
        (n, m), w, bias = layer.weight.shape, layer.weight, layer.bias
    else:
        n, m, w, bias = layer.in_features, layer.out_features, layer.weight, layer.bias
    return LowRankLinear(n, m, rank, bias=bias is not None, dtype=w.dtype, device=w.device)


def _conv_of(low) -> nn.Conv2d:
    d = low.down
    return nn.Conv2d(low.in_channels, low.out_channels, d.kernel_size, stride=d.stride,
                     padding=d.padding, dilation=d.dilation, bias=low.up.bias is not None,
                     padding_mode=d.padding_mode, device="meta", dtype=d.weight.dtype)

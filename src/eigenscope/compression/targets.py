"""What `compress` targets: the repeated block stacks of a model and the layers inside them.

A target is a layer whose weight is one matrix W (m, n) = (out, in), with the orientation rules
of analysis (sources/layout.py): nn.Linear as stored; transformers' GPT-2 `Conv1D`, stored
(in, out), transposed; nn.Conv2d (groups 1) reshaped to (out, in * kh * kw), when `convs=True`.
3-D expert tensors (fused mixture-of-experts weights) are run by transformers' own code, which
reads the fused tensor, so they stay dense: they are listed with the reason, never silently.
"""
from __future__ import annotations

import re

import torch
from torch import nn

from ..errors import EigenscopeError

EXPERTS_DENSE = ("3-D expert tensor: kept dense (transformers' fused-experts code reads the "
                 "whole tensor, so a factorised form would not run)")


def is_conv1d(mod: nn.Module) -> bool:
    """transformers' GPT-2 Conv1D (weight stored (in, out)), matched by class name."""
    return type(mod).__name__ == "Conv1D" and hasattr(mod, "weight") and mod.weight.dim() == 2


def is_target(mod: nn.Module, *, convs: bool = False) -> bool:
    """A layer whose weight is one (out, in) matrix that eigenscope can factorise."""
    if isinstance(mod, nn.Linear) or is_conv1d(mod):
        return True
    return convs and isinstance(mod, nn.Conv2d) and mod.groups == 1


def target_weight(mod: nn.Module) -> torch.Tensor:
    """W (m, n) = (out, in) of a target (a view: no copy)."""
    w = mod.weight.detach()
    if is_conv1d(mod):
        return w.T
    if isinstance(mod, nn.Conv2d):
        return w.reshape(w.shape[0], -1)
    return w


def target_bias(mod: nn.Module) -> torch.Tensor | None:
    return None if getattr(mod, "bias", None) is None else mod.bias.detach()


def _holds_targets(mod: nn.Module) -> bool:
    return any(is_target(x, convs=True) for x in mod.modules())


def find_stacks(model: nn.Module) -> list[list[tuple[str, nn.Module]]]:
    """The repeated block stacks, in the order the model runs them (an encoder before its
    decoder): every ModuleList of target-holding blocks that is not inside another one and
    holds at least 5 % of the largest one's parameters."""
    lists = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.ModuleList) and len(m)
             and all(_holds_targets(c) for c in m)]
    lists = [(n, m) for n, m in lists if not any(n.startswith(o + ".") for o, _ in lists if o != n)]
    sizes = {n: sum(p.numel() for p in m.parameters()) for n, m in lists}
    top = max(sizes.values(), default=0)
    return [[(f"{n}.{i}" if n else str(i), b) for i, b in enumerate(m)]
            for n, m in lists if sizes[n] >= 0.05 * top]


def find_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every repeated block of every stack, in order."""
    return [b for stack in find_stacks(model) for b in stack]


def find_targets(model: nn.Module, layers: str | None = None, *, convs: bool | None = None
                 ) -> tuple[dict[str, nn.Module], dict[str, str]]:
    """(targets {name: layer}, kept dense {name: reason}).

    Default: every target layer inside the blocks; never embeddings or a head. Without blocks:
    every target not sharing its weight with an embedding and not `lm_head`. `layers` is a
    regular expression on full module names that further filters the choice. convs: also
    Conv2d layers; None (auto) targets them only where no Linear/Conv1D layer is found (a CNN).
    """
    if convs is None:
        try:
            return _find(model, layers, False)
        except EigenscopeError:
            return _find(model, layers, True)
    return _find(model, layers, convs)


def _find(model, layers, convs: bool):
    blocks = find_blocks(model)
    if blocks:
        found = {f"{bn}.{n}": m for bn, b in blocks for n, m in b.named_modules()
                 if is_target(m, convs=convs)}
        dense = {f"{bn}.{n}": EXPERTS_DENSE for bn, b in blocks for n, p in b.named_parameters()
                 if p.dim() == 3 and "expert" in n}
    else:
        tied = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
        found = {n: m for n, m in model.named_modules() if is_target(m, convs=convs)
                 and id(m.weight) not in tied and not n.endswith("lm_head")}
        dense = {}
    if layers:
        pat = re.compile(layers)
        found = {n: m for n, m in found.items() if pat.search(n)}
        dense = {n: r for n, r in dense.items() if pat.search(n)}
    if not found:
        kinds = "nn.Linear, Conv1D" + (" or Conv2d" if convs else " (Conv2d: pass convs=True)")
        raise EigenscopeError(f"{type(model).__name__}: no layer to compress ({kinds})"
                              + (f" matches {layers!r}" if layers else ""))
    return found, dense


def target_linears(model: nn.Module, layers: str | None = None) -> dict[str, nn.Module]:
    """The targets of `find_targets` (Linear and Conv1D layers)."""
    return find_targets(model, layers)[0]

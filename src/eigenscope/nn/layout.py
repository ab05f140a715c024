"""Weights stored column-major for fast matrix-vector products: an inference transform.

nn.Linear computes x @ W^T with W stored (out, in), row after row. At batch 1 (decoding) that is
a matrix-vector product, bandwidth bound, and the CPU BLAS in PyTorch streams a row-major W^T
slower than a contiguous one, thin factors most (benchmarks/gemv_layout.py measures both layouts
on SmolLM2's shapes; the README has its table). `column_major_(model)` re-strides every Linear weight in place
to (out, in) with strides (1, out), i.e. W^T contiguous: the same values and shapes, so outputs
agree to rounding, `state_dict` and saves are unchanged (eigenscope.save writes contiguous
copies), and what it buys is measured by benchmarks/inference_speed.py for dense and compressed
models alike. A tied embedding shares the weight and keeps working (a row lookup reads strided).

    >>> import torch
    >>> from torch import nn
    >>> lin = nn.Linear(4, 3)
    >>> column_major_(lin)
    1
    >>> lin.weight.shape, lin.weight.stride()
    (torch.Size([3, 4]), (1, 3))
"""
from __future__ import annotations

import torch
from torch import nn

from .fuse import FusedLowRankLinear


def column_major_(model: nn.Module) -> int:
    """Store each Linear weight (and each fused `down` factor) as the transpose of a contiguous
    matrix, in place; return how many weights are now in that layout (each shared one counted
    once, those already in it included)."""
    done: set[int] = set()
    for mod in model.modules():
        if type(mod) is nn.Linear:
            _restride(mod.weight, done)
        elif isinstance(mod, FusedLowRankLinear) and hasattr(mod, "fused_down"):
            _restride(mod.fused_down, done)
    return len(done)


def _restride(p: nn.Parameter, done: set[int]) -> None:
    if id(p) in done or p.dim() != 2:
        return
    done.add(id(p))
    if p.stride() != (1, p.shape[0]):
        with torch.no_grad():
            p.data = p.data.t().contiguous().t()   # (out, in) values, W^T contiguous

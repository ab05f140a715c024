"""LowRankLinear: W ~= B @ A stored as two nn.Linear children, so PEFT's LoRA can target them."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from ..errors import ArgumentError
from .weight_view import WeightView


def plain_linear(mod: nn.Module) -> bool:
    """A bare nn.Linear without hooks: calling F.linear on its weight is the same computation."""
    return type(mod) is nn.Linear and not (mod._forward_hooks or mod._forward_pre_hooks)


class LowRankLinear(nn.Module):
    """y = up(down(x)), with down: n -> r (no bias) and up: r -> m (the original bias).

    >>> lin = nn.Linear(8, 6)
    >>> lr = LowRankLinear.from_linear(lin, rank=6)
    >>> torch.allclose(lr.to_dense().weight, lin.weight, atol=1e-6)
    True
    """

    def __init__(self, in_features: int, out_features: int, rank: int, *, bias: bool = True,
                 device=None, dtype=None):
        super().__init__()
        self.in_features, self.out_features, self.rank = in_features, out_features, rank
        self.down = nn.Linear(in_features, rank, bias=False, device=device, dtype=dtype)
        self.up = nn.Linear(rank, out_features, bias=bias, device=device, dtype=dtype)

    @classmethod
    def from_factors(cls, B: torch.Tensor, A: torch.Tensor, bias: torch.Tensor | None = None):
        """Build from B (m, r) and A (r, n): W' = B @ A."""
        (m, r), (r2, n) = B.shape, A.shape
        if r != r2:
            raise ArgumentError(f"factor shapes do not chain: B {tuple(B.shape)}, A {tuple(A.shape)}")
        mod = cls(n, m, r, bias=bias is not None, device=A.device, dtype=A.dtype)
        with torch.no_grad():
            mod.down.weight.copy_(A)  # (r, n)
            mod.up.weight.copy_(B)    # (m, r)
            if bias is not None:
                mod.up.bias.copy_(bias)
        return mod

    @classmethod
    def from_linear(cls, linear: nn.Linear, rank: int | None = None):
        """Exact when rank >= min(m, n): plain truncated SVD of the weight."""
        W = linear.weight.detach()
        m, n = W.shape
        r = min(m, n) if rank is None else int(rank)
        U, S, Vh = torch.linalg.svd(W.double(), full_matrices=False)
        root = S[:r].sqrt()
        B = (U[:, :r] * root).to(W.dtype)            # (m, r)
        A = (root[:, None] * Vh[:r]).to(W.dtype)     # (r, n)
        bias = None if linear.bias is None else linear.bias.detach()
        return cls.from_factors(B, A, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        down, up = self.down, self.up
        if plain_linear(down) and plain_linear(up):
            # two F.linear calls, not two Module calls: a Module call costs a few us of Python, a
            # visible share of a small GEMV at batch 1 (adapters such as LoRA take the other branch)
            return F.linear(F.linear(x, down.weight), up.weight, up.bias)  # (.., n) -> (.., r) -> (.., m)
        return up(down(x))

    @property
    def weight(self) -> WeightView:
        """The (out, in) weight's shape, dtype and device, without its values (nn/weight_view.py):
        model code that reads `.weight.dtype` keeps working; arithmetic on it raises. Inside
        torch.compile (which cannot trace building that view) it is one NaN expanded to
        (out, in): same metadata, no memory, and NaN in anything computed from it."""
        w, shape = self.up.weight, (self.out_features, self.in_features)
        if torch.compiler.is_compiling():
            return w.new_full((), float("nan")).expand(shape)
        return WeightView(shape, dtype=w.dtype, device=w.device)

    def dense_weight(self) -> torch.Tensor:
        """The dense (out, in) weight up @ down this layer stands for."""
        return self.up.weight @ self.down.weight  # (m, r) @ (r, n)

    def to_dense(self) -> nn.Linear:
        """An nn.Linear with the dense weight and the bias (a copy)."""
        lin = nn.Linear(self.in_features, self.out_features, bias=self.up.bias is not None,
                        device=self.up.weight.device, dtype=self.up.weight.dtype)
        with torch.no_grad():
            lin.weight.copy_(self.dense_weight())
            if self.up.bias is not None:
                lin.bias.copy_(self.up.bias)
        return lin

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}"

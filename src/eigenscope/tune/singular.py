"""Singular-value fine-tuning (SVFit / SVFT family): W = U diag(s) V^T with only s trainable.

>>> import torch
>>> from torch import nn
>>> model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
>>> x = torch.randn(3, 8)
>>> y = model(x)
>>> names = singular_values_(model)
>>> names, sum(p.numel() for p in model.parameters() if p.requires_grad)
(['0', '2'], 12)
>>> torch.allclose(model(x), y, atol=1e-5)
True
>>> _ = merge_(model); type(model[0]).__name__
'Linear'
"""
from __future__ import annotations

import re

import torch
from torch import nn

from eigenscope.nn.lowrank import LowRankLinear
from ..errors import ArgumentError

# Not re-parameterised by default: input embeddings and output heads.
EXCLUDE = r"(^|\.)(lm_head|embed_out|embed_tokens|wte|wpe|output|head|classifier|score)$"


class SVLinear(nn.Module):
    """y = U (diag(s) + C) V^T x + b with U (m, r), V (n, r) frozen buffers; s (r,) trainable.

    C: optional trainable (k, k) couplings among the top-k singular directions (SVFT's
    "banded/top-k" idea), zero at start so the layer is exact right after wrapping.
    kind "linear" merges back to nn.Linear; "lowrank" to a LowRankLinear of rank r.
    """

    def __init__(self, U, s, V, bias, *, kind: str, top_k_couplings: int = 0):
        super().__init__()
        self.kind = kind
        self.in_features, self.out_features = V.shape[0], U.shape[0]
        self.register_buffer("U", U.contiguous())                  # (m, r)
        self.register_buffer("V", V.contiguous())                  # (n, r)
        self.s = nn.Parameter(s.clone())                           # (r,)
        k = min(int(top_k_couplings), s.numel())
        self.couplings = nn.Parameter(torch.zeros(k, k, dtype=s.dtype, device=s.device)) \
            if k > 0 else None
        self.bias = None if bias is None else nn.Parameter(bias.clone(), requires_grad=False)

    @property
    def rank(self) -> int:
        return self.s.numel()

    def core(self) -> torch.Tensor:
        """diag(s) + C padded: the (r, r) middle factor."""
        M = torch.diag(self.s)
        if self.couplings is not None:
            k = self.couplings.shape[0]
            M = M + nn.functional.pad(self.couplings, (0, self.rank - k, 0, self.rank - k))
        return M

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x @ self.V                                             # (.., n) -> (.., r)
        zs = z * self.s
        if self.couplings is not None:                             # top-k block of C
            k = self.couplings.shape[0]
            zs = torch.cat([zs[..., :k] + z[..., :k] @ self.couplings.T, zs[..., k:]], -1)
        y = zs @ self.U.T                                          # (.., r) -> (.., m)
        return y if self.bias is None else y + self.bias

    def dense_weight(self) -> torch.Tensor:
        """The dense weight U diag(s) V^T (+ couplings) this layer stands for."""
        return self.U @ self.core() @ self.V.T                     # (m, r)(r, r)(r, n)

    def extra_repr(self) -> str:
        k = 0 if self.couplings is None else self.couplings.shape[0]
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"rank={self.rank}, kind={self.kind}, couplings={k}")


def _svd_linear(lin: nn.Linear):
    """Full thin SVD of the weight in float64: U (m, M), s (M,), V (n, M)."""
    U, s, Vh = torch.linalg.svd(lin.weight.detach().double(), full_matrices=False)
    return U, s, Vh.mT


def _svd_lowrank(mod: LowRankLinear):
    """SVD of up @ down (m, r)(r, n) through two QRs, rank r kept: U (m, r), s (r,), V (n, r)."""
    Q1, R1 = torch.linalg.qr(mod.up.weight.detach().double())           # (m, r), (r, r)
    Q2, R2 = torch.linalg.qr(mod.down.weight.detach().double().mT)      # (n, r), (r, r)
    P, s, Qh = torch.linalg.svd(R1 @ R2.mT)                             # (r, r)
    return Q1 @ P, s, Q2 @ Qh.mT


def wrap(module: nn.Module, *, top_k_couplings: int = 0) -> SVLinear:
    """nn.Linear or LowRankLinear -> SVLinear with the same function (float64 SVD)."""
    if isinstance(module, LowRankLinear):
        (U, s, V), kind, bias = _svd_lowrank(module), "lowrank", module.up.bias
        dtype = module.up.weight.dtype
    elif isinstance(module, nn.Linear):
        (U, s, V), kind, bias = _svd_linear(module), "linear", module.bias
        dtype = module.weight.dtype
    else:
        raise ArgumentError(f"cannot wrap {type(module).__name__}: nn.Linear or LowRankLinear only")
    bias = None if bias is None else bias.detach()
    return SVLinear(U.to(dtype), s.to(dtype), V.to(dtype), bias, kind=kind,
                    top_k_couplings=top_k_couplings)


def unwrap(mod: SVLinear) -> nn.Module:
    """SVLinear -> nn.Linear (dense U M V^T) or LowRankLinear of rank r (balanced factors)."""
    with torch.no_grad():
        bias = None if mod.bias is None else mod.bias.detach()
        if mod.kind == "lowrank":
            P, S, Qh = torch.linalg.svd(mod.core().double())       # (r, r): M = P S Q^T
            root = S.sqrt()
            B = (mod.U.double() @ P) * root                        # (m, r)
            A = root[:, None] * (Qh @ mod.V.double().mT)           # (r, n)
            dt = mod.U.dtype
            return LowRankLinear.from_factors(B.to(dt), A.to(dt), bias)
        lin = nn.Linear(mod.in_features, mod.out_features, bias=bias is not None,
                        device=mod.U.device, dtype=mod.U.dtype)
        lin.weight.copy_(mod.dense_weight())
        if bias is not None:
            lin.bias.copy_(bias)
        return lin


def _targets(model: nn.Module, layers: str | None) -> list[str]:
    """Names of Linear/LowRankLinear modules to wrap (LowRankLinear's children not separately)."""
    names, inside = [], set()
    pattern = re.compile(layers) if layers is not None else None
    for name, mod in model.named_modules():
        if any(name.startswith(p + ".") for p in inside):
            continue
        if isinstance(mod, LowRankLinear):
            inside.add(name)
        elif not isinstance(mod, nn.Linear):
            continue
        chosen = pattern.search(name) if pattern else not re.search(EXCLUDE, name)
        if chosen and name:
            names.append(name)
    return names


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attr, new)


def singular_values_(model: nn.Module, *, layers: str | None = None,
                     top_k_couplings: int = 0) -> list[str]:
    """Re-parameterise Linear / LowRankLinear layers in place as SVLinear; returns their names.

    layers: regex searched in module names (default: every Linear and LowRankLinear except
    embeddings and output heads, see EXCLUDE). top_k_couplings: k > 0 also trains a k x k
    block of couplings among the top-k singular directions of each layer.
    Freezing: every parameter of the model is set requires_grad=False, then only the new s (and
    couplings) require grad; biases of wrapped layers stay frozen. `merge_` does not unfreeze
    the rest: call `model.requires_grad_(True)` to train everything again.
    """
    names = _targets(model, layers)
    model.requires_grad_(False)
    for name in names:
        _replace(model, name, wrap(model.get_submodule(name), top_k_couplings=top_k_couplings))
    return names


def merge_(model: nn.Module) -> list[str]:
    """Fold every SVLinear back into nn.Linear / LowRankLinear (same rank) in place; names.

    The merged modules' parameters require grad again (the rest stays as it was).
    """
    names = [n for n, m in model.named_modules() if isinstance(m, SVLinear)]
    for name in names:
        _replace(model, name, unwrap(model.get_submodule(name)))
    return names

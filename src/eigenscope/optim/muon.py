"""Muon (momentum + Newton-Schulz orthogonalised update) with a choice of orthogonaliser.

Conventions follow `torch.optim.Muon` (PyTorch >= 2.9) so the two are interchangeable:
momentum buffer B <- mu B + (1 - mu) g (a lerp; the (1 - mu) factor cancels in the Frobenius
normalisation, so this equals Keller Jordan's B <- mu B + g), Nesterov update g + mu (B - g)
(lerp form), orthogonalisation in bf16, decoupled weight decay p <- p (1 - lr wd) with the
unadjusted lr, and the shape-dependent lr
  "original" (default, Keller Jordan):  lr * sqrt(max(1, m / n))  for W of shape (m, n)
  "match_rms_adamw" (Moonshot):         lr * 0.2 * sqrt(max(m, n)).
`make_muon` returns `torch.optim.Muon` for the plain NS5 case where it exists.
"""
from __future__ import annotations

import math
from collections import defaultdict

import torch

from eigenscope.linalg import polar_ns
from ..errors import ArgumentError


def adjusted_lr(lr: float, shape, adjust_lr_fn: str | None = "original") -> float:
    """Learning rate for a (rows, cols) matrix under the chosen adjustment rule."""
    m, n = shape[:2]
    if adjust_lr_fn in (None, "original"):
        return lr * math.sqrt(max(1.0, m / n))
    if adjust_lr_fn == "match_rms_adamw":
        return lr * 0.2 * math.sqrt(max(m, n))
    raise ArgumentError(f"adjust_lr_fn must be 'original' or 'match_rms_adamw', not {adjust_lr_fn!r}")


class Muon(torch.optim.Optimizer):
    """Muon for 2-D parameters (hidden matrices); give embeddings, heads and 1-D parameters to
    AdamW (see `split_param_groups`).

    orthogonalizer: "ns5" (Muon's 5 quintic Newton-Schulz steps) or "aol4" (Turbo-Muon: AOL
    preconditioning, 4 steps). ns_dtype: the dtype the iteration runs in; None = bf16 on GPUs
    (as Muon and torch.optim.Muon) but float32 on CPU, where bf16 matmuls are ~20x slower
    (measured: NS5 on 4 x 128 x 512, 1.0 s bf16 vs 0.05 s float32).
    Same-shape parameters are orthogonalised together in one batched call.
    """

    def __init__(self, params, lr: float = 0.02, momentum: float = 0.95, nesterov: bool = True,
                 orthogonalizer: str = "ns5", weight_decay: float = 0.0,
                 adjust_lr_fn: str | None = "original", ns_steps: int | None = None,
                 ns_dtype: torch.dtype | None = None):
        if orthogonalizer not in ("ns5", "aol4"):
            raise ArgumentError(f"orthogonalizer must be 'ns5' or 'aol4', not {orthogonalizer!r}")
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ArgumentError("lr, momentum and weight_decay must be >= 0")
        defaults = dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay,
                        orthogonalizer=orthogonalizer, adjust_lr_fn=adjust_lr_fn,
                        ns_steps=ns_steps, ns_dtype=ns_dtype)
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                if p.ndim != 2:
                    raise ArgumentError(f"Muon takes 2-D parameters only, got shape {tuple(p.shape)}")

    def _directions(self, group) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(param, momentum direction) for every param with a gradient; updates the buffers."""
        mu, out = group["momentum"], []
        for p in group["params"]:
            if p.grad is None:
                continue
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(p.grad)
            buf = state["momentum_buffer"]
            buf.lerp_(p.grad, 1 - mu)                                # mu B + (1 - mu) g
            out.append((p, p.grad.lerp(buf, mu) if group["nesterov"] else buf))
        return out

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            by_shape = defaultdict(list)
            for p, d in self._directions(group):
                by_shape[tuple(p.shape)].append((p, d))
            for shape, items in by_shape.items():
                D = torch.stack([d for _, d in items])                         # (b, m, n)
                D = D.to(group["ns_dtype"] or (torch.float32 if D.device.type == "cpu"
                                               else torch.bfloat16))
                O = polar_ns(D, steps=group["ns_steps"], method=group["orthogonalizer"])
                lr = adjusted_lr(group["lr"], shape, group["adjust_lr_fn"])
                for (p, _), o in zip(items, O):
                    p.mul_(1 - group["lr"] * group["weight_decay"])
                    p.add_(o.to(p.dtype), alpha=-lr)
        return loss


def make_muon(params, *, lr: float = 0.02, momentum: float = 0.95, nesterov: bool = True,
              orthogonalizer: str = "ns5", weight_decay: float = 0.0,
              adjust_lr_fn: str | None = "original") -> torch.optim.Optimizer:
    """`torch.optim.Muon` for the plain NS5 case where this PyTorch has it; otherwise `Muon`.

    Both follow the same conventions (module doc), so swapping them changes results only by
    bf16 rounding (a test checks one step). torch.optim.Muon always orthogonalises in bf16,
    which is slow on CPUs: for CPU training prefer `Muon` (float32 there by default).
    """
    if orthogonalizer == "ns5" and hasattr(torch.optim, "Muon"):
        return torch.optim.Muon(params, lr=lr, momentum=momentum, nesterov=nesterov,
                                weight_decay=weight_decay, adjust_lr_fn=adjust_lr_fn)
    return Muon(params, lr=lr, momentum=momentum, nesterov=nesterov,
                orthogonalizer=orthogonalizer, weight_decay=weight_decay,
                adjust_lr_fn=adjust_lr_fn)

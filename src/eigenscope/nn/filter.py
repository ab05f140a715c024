"""SpectralFilter: a forward hook that keeps a site's hidden states in a chosen subspace.

Built from a site's covariance C (d, d), its mean mu and the number of tokens n it came from:
the kept directions U (d, k) are the top-k eigenvectors of C, with k the number of MP spikes
(keep="spikes", EigenShield's "causal subspace" / RMT-KD's outlier eigenvalues), an int count,
or a float in (0, 1): the smallest k holding that fraction of the variance. Two modes:

    mode="project"  h -> U U^T h              (the hidden state's component in the subspace)
    mode="denoise"  h -> mu + U U^T (h - mu)  (the bulk's fluctuations replaced by their mean)

    >>> import torch
    >>> C = torch.diag(torch.tensor([9.0, 1.0, 1.0, 1.0]))
    >>> f = SpectralFilter.from_covariance(C, torch.zeros(4), tokens=1000, keep=1)
    >>> f(torch.tensor([[2.0, 3.0, 4.0, 5.0]]))
    tensor([[2., 0., 0., 0.]])
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import EigenscopeError
from ..maths.activations import covariance_mp

MODES = ("project", "denoise")


class SpectralFilter(nn.Module):
    """h (..., d) -> the filtered h, in h's dtype; `attach(module)` makes it a hook."""

    def __init__(self, basis: torch.Tensor, mean: torch.Tensor, *, mode: str = "denoise"):
        super().__init__()
        if mode not in MODES:
            raise EigenscopeError(f"unknown filter mode {mode!r}; choose from: {', '.join(MODES)}")
        if basis.dim() != 2 or mean.shape != basis.shape[:1]:
            raise EigenscopeError(f"filter basis {tuple(basis.shape)} and mean {tuple(mean.shape)} "
                                  "do not match: basis (d, k), mean (d,)")
        self.mode = mode
        self.register_buffer("basis", basis.detach().float().contiguous())    # (d, k)
        self.register_buffer("mu", mean.detach().float().contiguous())        # (d,)
        self.handle = None

    @property
    def rank(self) -> int:
        return int(self.basis.shape[1])

    @classmethod
    def from_covariance(cls, cov: torch.Tensor, mean: torch.Tensor, *, tokens: int,
                        keep="spikes", mode: str = "denoise") -> "SpectralFilter":
        """The filter keeping the top-k eigenvectors of `cov` (k from `keep`, module doc)."""
        lam, vec = torch.linalg.eigh(cov.double())          # ascending
        k = kept_directions(lam.clamp_min(0.0), tokens, keep)
        basis = vec[:, -k:].flip(-1) if k else vec[:, :0]
        return cls(basis, mean.double(), mode=mode)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """h (..., d) -> the filtered h (module doc), computed in h's dtype."""
        U = self.basis.to(h.dtype)
        if self.mode == "project":
            return (h @ U) @ U.T                              # (..., d) -> (..., k) -> (..., d)
        mu = self.mu.to(h.dtype)
        return mu + ((h - mu) @ U) @ U.T

    def attach(self, module: nn.Module, *, where: str = "output") -> "SpectralFilter":
        """Filter `module`'s output (or its first input, where='input') from now on."""
        self.remove()
        if where == "output":
            self.handle = module.register_forward_hook(lambda m, a, out: _replace_first(out, self))
        elif where == "input":
            self.handle = module.register_forward_pre_hook(
                lambda m, args: _replace_first(args, self) if args else None)
        else:
            raise EigenscopeError(f"where must be 'output' or 'input', not {where!r}")
        return self

    def remove(self) -> None:
        """Detach the hook (the filter stays usable as a module)."""
        if self.handle is not None:
            self.handle.remove()
            self.handle = None


def _replace_first(x, f: SpectralFilter):
    if isinstance(x, torch.Tensor):
        return f(x)
    if isinstance(x, tuple) and x and isinstance(x[0], torch.Tensor):
        return (f(x[0]),) + x[1:]
    return None


def kept_directions(lam: torch.Tensor, tokens: int, keep) -> int:
    """k from `keep`: 'spikes' (MP spikes of a covariance of `tokens` tokens), an int count,
    or a float in (0, 1) (smallest k whose top eigenvalues hold that share of the variance)."""
    d = lam.numel()
    if keep == "spikes":
        k = covariance_mp(lam.numpy(), tokens)["mp_spikes"]
        if isinstance(k, float) and math.isnan(k):
            raise EigenscopeError("the MP fit failed (too few tokens?): give keep= as a count")
        return int(k)
    if isinstance(keep, bool) or not isinstance(keep, (int, float)):
        raise EigenscopeError(f"keep must be 'spikes', an int or a float in (0, 1), not {keep!r}")
    if isinstance(keep, int):
        if not 0 <= keep <= d:
            raise EigenscopeError(f"keep={keep} directions: must be in [0, {d}]")
        return keep
    if not 0 < keep < 1:
        raise EigenscopeError(f"keep={keep}: a float keeps a share of the variance, in (0, 1)")
    share = lam.flip(0).cumsum(0) / lam.sum()
    return int((share < keep).sum()) + 1

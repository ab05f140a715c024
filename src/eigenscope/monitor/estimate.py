"""Cheap spectral estimates for monitoring: warm-started randomised range finder (top-k)."""
from __future__ import annotations

import math

import torch

from eigenscope.maths.spectrum import eigvals

OVERSAMPLE = 8


def top_singular(W: torch.Tensor, k: int, V0: torch.Tensor | None = None, *, niter: int = 2,
                 generator: torch.Generator | None = None):
    """Top-k singular values of W (m, n) by a randomised range finder with power iterations.

    V0 (n, q): the previous call's right subspace (warm start: weights move slowly between
    measurements, so a couple of power iterations keep it converged); else Gaussian.
    Returns (s (k,) descending float64, V (n, q) to pass back next time).
    The spectral norm is s[0]: power iteration on a q = k + 8 block converges for s1 at rate
    (s_{q+1} / s_1)^(2 niter + 1) per call, far faster than single-vector power iteration.
    """
    W = W.detach().float()
    m, n = W.shape
    q = min(k + OVERSAMPLE, m, n)
    if V0 is None or V0.shape != (n, q):
        V0 = torch.randn(n, q, generator=generator, dtype=W.dtype).to(W.device)
    V = torch.linalg.qr(V0)[0]                                     # (n, q)
    for _ in range(niter):
        Q = torch.linalg.qr(W @ V)[0]                              # (m, q)
        V = torch.linalg.qr(W.mT @ Q)[0]                           # (n, q)
    Q = torch.linalg.qr(W @ V)[0]                                  # (m, q)
    B = Q.mT @ W                                                   # (q, n)
    _, s, Vh = torch.linalg.svd(B.double(), full_matrices=False)
    return s[:k], Vh.mT.to(W.dtype)                                # (k,), (n, q)


def cheap_metrics(W: torch.Tensor, s_top: torch.Tensor, wanted) -> dict:
    """spectral_norm, stable_rank = ||W||_F^2 / s1^2, top_sv from the top-k estimate."""
    s1 = float(s_top[0])
    out = {}
    if "spectral_norm" in wanted:
        out["spectral_norm"] = s1
    if "stable_rank" in wanted:
        fro2 = float(W.detach().double().pow(2).sum())
        out["stable_rank"] = fro2 / (s1 * s1) if s1 > 0 else math.nan
    if "top_sv" in wanted:
        out["top_sv"] = [float(x) for x in s_top]
    return out


def exact_metrics(W: torch.Tensor, k: int, wanted) -> dict:
    """The same metrics (and alpha) from the full ESD: eigenvalues of the Gram matrix."""
    lam = eigvals(W.detach())                                      # ascending float64 (M,)
    s = lam.flip(0).sqrt()
    out = cheap_metrics(W, s[:k], wanted)
    if "alpha" in wanted:
        out["alpha"] = alpha_of(lam)
    return out


def alpha_of(lam: torch.Tensor) -> float:
    """Power-law alpha of a spectrum's tail (eigenvalues), NaN when it cannot be fitted."""
    from eigenscope.maths.powerlaw import fit_powerlaw     # imported late: optional metric
    return float(fit_powerlaw(lam.cpu().numpy())["alpha"])

"""Spectral descriptors of hidden activations: pure functions of eigenvalues and token matrices.

Two objects are described (formulas and sources: docs/methods-activations.md):
- the covariance C = (1/n) sum_t (x_t - mu)(x_t - mu)^T of n tokens x_t in R^d; its ascending
  eigenvalues `lam` feed the MP fit, entropies, ranks, the top share and the tail's alpha;
- one sequence's token matrix R (T, d), for Matrix Entropy (Wei et al. 2024) and the Matrix
  Nuclear-Norm (Li et al. 2024): R is centred over its tokens and each token scaled to unit norm.

    >>> import numpy as np
    >>> lam = np.array([1.0, 1.0, 1.0, 1.0])
    >>> round(spectral_entropy(lam), 6), participation_ratio(lam), top_share(lam)
    (1.0, 4.0, 0.25)
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

from .mp import mp_density, mp_fit, mp_median
from .powerlaw import fit_powerlaw

# Eigenvalues at or below this fraction of the largest are rounding noise of a rank-deficient
# covariance (fewer tokens than dimensions, or a constant direction), not spectrum.
REL_FLOOR = 1e-12


def positive(lam) -> np.ndarray:
    """Ascending float64 eigenvalues above the relative rounding floor."""
    x = np.sort(np.asarray(lam, dtype=np.float64).ravel())
    x = x[np.isfinite(x)]
    if x.size == 0 or not x[-1] > 0:
        return x[:0]
    return x[x > REL_FLOOR * x[-1]]


def _entropy(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def spectral_entropy(lam) -> float:
    """H(q) / ln d with q = lam / sum(lam), d = len(lam) (0: one direction, 1: isotropic)."""
    lam = np.clip(np.asarray(lam, dtype=np.float64), 0.0, None)
    if lam.size < 2 or not lam.sum() > 0:
        return math.nan
    return _entropy(lam / lam.sum()) / math.log(lam.size)


def effective_rank(lam) -> float:
    """exp(H(p)), p_i = s_i / sum s_j with s_i = sqrt(lam_i): Roy & Vetterli's effective rank of
    the centred token matrix (its singular values are sqrt(n lam_i); the sqrt(n) cancels)."""
    s = np.sqrt(np.clip(np.asarray(lam, dtype=np.float64), 0.0, None))
    return math.exp(_entropy(s / s.sum())) if s.sum() > 0 else math.nan


def participation_ratio(lam) -> float:
    """(sum lam)^2 / sum lam^2: the number of directions that carry the variance."""
    lam = np.clip(np.asarray(lam, dtype=np.float64), 0.0, None)
    return float(lam.sum() ** 2 / (lam ** 2).sum()) if lam.sum() > 0 else math.nan


def top_share(lam) -> float:
    """lam_max / sum lam: the share of the variance in the top direction."""
    lam = np.clip(np.asarray(lam, dtype=np.float64), 0.0, None)
    return float(lam.max() / lam.sum()) if lam.size and lam.sum() > 0 else math.nan


def anisotropy(unit_sum, n: int) -> float:
    """Mean cosine over the n(n-1) ordered pairs of distinct tokens, from s = sum of unit tokens:
    sum_{i != j} u_i.u_j = |s|^2 - n."""
    if n < 2:
        return math.nan
    s = np.asarray(unit_sum, dtype=np.float64)
    return float((s @ s - n) / (n * (n - 1)))


def tail_alpha(lam) -> float:
    """Power-law exponent of the covariance spectrum's tail (maths/powerlaw.py, Clauset MLE)."""
    return float(fit_powerlaw(positive(lam))["alpha"])


def covariance_mp(lam, n: int) -> dict:
    """MP fit of a covariance of n tokens in d = len(lam) dimensions, in the covariance's scale.

    For i.i.d. coordinates of variance sigma^2 the eigenvalues follow MP with ratio c = d / n and
    upper edge sigma^2 (1 + sqrt(c))^2 (for c > 1 with n zero eigenvalues besides). maths/mp.py
    works in the (1/N) W W^T scale with M = min, N = max: for n >= d that scale is C's; for n < d
    the nonzero eigenvalues are rescaled by n / d into it and the edge and cut by d / n back.
    Returns mp_sigma, mp_edge, mp_spikes (eigenvalues above the Tracy-Widom cut), aspect (d / n).
    """
    lam = np.sort(np.clip(np.asarray(lam, dtype=np.float64), 0.0, None))
    d = lam.size
    out = {"mp_sigma": math.nan, "mp_edge": math.nan, "mp_spikes": math.nan,
           "aspect": d / n if n > 0 else math.nan}
    if n < 2 or d < 2:
        return out
    if n >= d:
        s2, edge, cut = mp_fit(lam * n, d, n)
    else:
        s2, edge, cut = mp_fit(lam[-n:] * n, n, d)          # eigenvalues of X^T X, top n
        edge, cut = edge * d / n, cut * d / n
    if math.isnan(s2):
        return out
    return out | {"mp_sigma": math.sqrt(s2), "mp_edge": edge, "mp_spikes": int((lam > cut).sum())}


def covariance_metrics(lam, n: int) -> dict:
    """Every eigenvalue-derived column of an activations row (methods-activations.md)."""
    lam = np.sort(np.clip(np.asarray(lam, dtype=np.float64), 0.0, None))
    return covariance_mp(lam, n) | {
        "spectral_entropy": spectral_entropy(lam), "effective_rank": effective_rank(lam),
        "participation_ratio": participation_ratio(lam), "top_share": top_share(lam),
        "alpha": tail_alpha(lam)}


# ---------- one sequence's token matrix: Matrix Entropy and the Matrix Nuclear-Norm ----------

def normalize_tokens(R: torch.Tensor) -> torch.Tensor:
    """(..., T, d) -> Z: centred over the T tokens, each token scaled to unit L2 norm (a token
    at the mean stays 0)."""
    R = R.double()
    Z = R - R.mean(dim=-2, keepdim=True)
    return Z / Z.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)


def matrix_entropy(R: torch.Tensor) -> torch.Tensor:
    """Matrix Entropy of (..., T, d) token matrices -> (...): with Z = normalize_tokens(R) and
    Sigma = Z^T Z / T (trace 1), -sum lam ln lam / ln d over Sigma's eigenvalues (Wei et al.).
    The eigenvalues come from the smaller of Z Z^T / T and Z^T Z / T (same nonzero spectrum)."""
    Z = normalize_tokens(R)
    T, d = Z.shape[-2:]
    G = Z @ Z.mT if T <= d else Z.mT @ Z                    # (..., min, min)
    lam = torch.linalg.eigvalsh(G / T).clamp_min(0.0)
    lam = lam / lam.sum(-1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)
    h = -(lam * torch.log(lam.clamp_min(1e-300))).sum(-1)
    return h / math.log(d)


def matrix_nuclear_norm(R: torch.Tensor) -> torch.Tensor:
    """Matrix Nuclear-Norm of (..., T, d) token matrices -> (...): the sum of the D = min(T, d)
    largest column norms of Z = normalize_tokens(R) (the L1,2 stand-in for ||Z||_*), over T
    (Li et al.). O(T d): no SVD."""
    Z = normalize_tokens(R)
    T, d = Z.shape[-2:]
    cols = Z.norm(dim=-2)                                   # (..., d) column L2 norms
    top = cols.topk(min(T, d), dim=-1).values if min(T, d) < d else cols
    return top.sum(-1) / T


def nuclear_norm_bounds(R: torch.Tensor) -> tuple[float, float]:
    """(lower, upper) bounds on ||Z||_* implied by the L1,2 sum S of all d column norms (Z as in
    matrix_nuclear_norm): ||Z||_* <= S (triangle inequality over the columns' rank-one terms)
    and S <= sqrt(d) ||Z||_F <= sqrt(d) ||Z||_*, so S / sqrt(d) <= ||Z||_* <= S."""
    Z = normalize_tokens(R)
    S = float(Z.norm(dim=-2).sum())
    return S / math.sqrt(Z.shape[-1]), S


# ---------- a window of hidden states: descriptors for the live trace ----------

@lru_cache(maxsize=256)
def _mp_cdf_grid(gamma: float, points: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """(x, F(x)) of the unit-variance MP law with ratio gamma <= 1. x = a + (b - a)(1 - cos t)/2:
    in t the integrand f(x) dx/dt stays bounded at both edges (even the 1/sqrt(x) of gamma = 1),
    so the trapezoid rule in t is accurate; normalised to end at 1."""
    a, b = (1 - math.sqrt(gamma)) ** 2, (1 + math.sqrt(gamma)) ** 2
    t = np.linspace(0.0, math.pi, points)
    x = a + (b - a) * (1 - np.cos(t)) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        g = mp_density(x, 1.0, gamma) * (b - a) * np.sin(t) / 2
    if gamma >= 1 - 1e-12:       # f(x) dx/dt -> sqrt(b (b - a)) / (2 pi) at t = 0 (x = a = 0)
        g[0] = math.sqrt(b * (b - a)) / (2 * math.pi)
    F = np.concatenate([[0.0], np.cumsum((g[1:] + g[:-1]) / 2 * np.diff(t))])
    return x, F / F[-1]


def mp_ks(lam, m: int, n: int) -> float:
    """KS distance between the ESD of an m x n matrix's Gram eigenvalues `lam` (M = min(m, n)
    positive ones, ascending or not) and the MP law with the median-fitted sigma (mp.py)."""
    M, N = min(m, n), max(m, n)
    x = np.sort(np.asarray(lam, dtype=np.float64))[-M:]
    if x.size < 2 or not np.median(x) > 0:
        return math.nan
    gamma = M / N
    s2 = float(np.median(x)) / N / mp_median(gamma)
    gx, gF = _mp_cdf_grid(round(gamma, 6))
    F = np.interp(x / N / s2, gx, gF)                       # model CDF at each eigenvalue
    k = np.arange(1, x.size + 1) / x.size
    return float(max(np.abs(k - F).max(), np.abs(k - 1 / x.size - F).max()))


def window_descriptors(H: torch.Tensor) -> dict[str, np.ndarray]:
    """Descriptors of windows of hidden states H (b, w, d) -> {name: (b,)}, each window centred
    over its w tokens: spectral entropy and top share of its w - 1 nonzero covariance
    eigenvalues, the KS distance of that ESD to its fitted MP law (`mp_ks`) and the number of
    eigenvalues above the MP cut (`mp_spikes`)."""
    X = H.double() - H.double().mean(dim=1, keepdim=True)
    b, w, d = X.shape
    lam = torch.linalg.eigvalsh(X @ X.mT).clamp_min(0.0).numpy()   # (b, w) of X X^T, ascending
    k = min(w - 1, d)                                             # centring removes one
    out = {"entropy": np.full(b, np.nan), "top_share": np.full(b, np.nan),
           "mp_ks": np.full(b, np.nan), "mp_spikes": np.full(b, np.nan)}
    if k < 2:
        return out
    for i, row in enumerate(lam[:, -k:]):
        out["entropy"][i] = spectral_entropy(row)
        out["top_share"][i] = top_share(row)
        out["mp_ks"][i] = mp_ks(row, k, d)
        s2, edge, cut = mp_fit(row, k, d)
        out["mp_spikes"][i] = float((row / max(k, d) > cut).sum()) if not math.isnan(s2) else math.nan
    return out

"""Norms and ranks from the eigenvalues of W^T W (methods.md §1)."""
from __future__ import annotations

import math

import numpy as np

EPS32 = float(np.finfo(np.float32).eps)
COLUMNS = ("spectral_norm", "frobenius_norm", "nuclear_norm", "stable_rank", "effective_rank",
           "spectral_entropy", "numerical_rank", "log_norm", "log_spectral_norm")


def entropy(p: np.ndarray) -> float:
    """Shannon entropy in nats, with 0 ln 0 = 0."""
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def norm_metrics(lam: np.ndarray, m: int, n: int) -> dict:
    """lam: eigenvalues of W^T W (any order, length M = min(m, n)); W is m x n.

    numerical_rank counts s_i > s_1 N eps(float32): the rank float32 storage can resolve. The
    eigenvalues' own error is far below that cut: `spectrum.eigvals` redoes any matrix with
    lambda_min < 1e-4 lambda_1 in float64 (error ~ M eps64 lambda_1, i.e. s ~ 1e-6 s_1).
    NaNs for an empty, all-zero or non-finite spectrum; spectral_entropy is NaN when M = 1.
    """
    lam = np.asarray(lam, dtype=np.float64)
    if lam.size == 0 or not np.isfinite(lam).all() or lam.max() <= 0:
        return dict.fromkeys(COLUMNS, math.nan)
    lam = np.sort(np.clip(lam, 0.0, None))[::-1]       # rounding can leave -0 or -1e-17
    s = np.sqrt(lam)                                    # singular values, descending
    total = float(lam.sum())
    return {
        "spectral_norm": float(s[0]),
        "frobenius_norm": math.sqrt(total),
        "nuclear_norm": float(s.sum()),
        "stable_rank": total / float(lam[0]),
        "effective_rank": math.exp(entropy(s / s.sum())),  # Roy & Vetterli 2007
        "spectral_entropy": entropy(lam / total) / math.log(lam.size) if lam.size > 1 else math.nan,
        "numerical_rank": int((s > s[0] * max(m, n) * EPS32).sum()),
        "log_norm": math.log10(total),
        "log_spectral_norm": math.log10(float(lam[0])),
    }

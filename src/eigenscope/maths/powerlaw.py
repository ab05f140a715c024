"""Power-law fit of the ESD tail (Clauset, Shalizi & Newman 2009), vectorised over every xmin.

For a candidate xmin = x_k (x sorted ascending) the tail is T = {x >= x_k}, n = |T| and the
continuous MLE is alpha_k = 1 + n / sum_{x in T} ln(x / x_k) (Clauset et al. eq. 3.1): suffix
sums of ln x give every alpha_k at once. KS distance, as in the `powerlaw` package (the test
reference, and what WeightWatcher reports): D_k = max_{x_j in T} |S(x_j) - P(x_j)| with
P(x) = 1 - (x / x_k)^(1 - alpha_k) and S(x_j) = #{x in T : x < x_j} / n, the empirical CDF just
below each distinct value. Clauset's D is the supremum over all x, which also needs the value
at the step, #{x in T : x <= x_j} / n (up to 1/n more): `sup=True` gives that. The choice of
xmin is sensitive to this 1/n (measured: alpha moves by ~0.3 on heavy-tailed ESDs), so the
default follows the package. D for every candidate is a (candidates x M) array computation,
done in row chunks to bound memory.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

COLUMNS = ("alpha", "alpha_weighted", "log_alpha_norm", "xmin", "ks_distance", "n_tail")
# Eigenvalues below this fraction of the largest (times M) are rounding noise of a
# rank-deficient matrix (eigvalsh's absolute error is ~ M * eps64 * lambda_max), not a
# spectrum: their ln would dominate every suffix sum, so they are dropped before fitting.
REL_FLOOR = 10 * np.finfo(np.float64).eps
CHUNK_ELEMS = 1 << 22          # elements per (candidates x M) block: 32 MB of float64


class Candidates(NamedTuple):
    """Every admissible xmin (unique values with a tail of >= min_tail), its alpha and KS D."""
    xmins: np.ndarray
    alphas: np.ndarray
    ks: np.ndarray


def positive_spectrum(lam) -> np.ndarray:
    """Sorted ascending float64 positive eigenvalues above the relative noise floor."""
    x = np.sort(np.asarray(lam, dtype=np.float64).ravel())
    x = x[np.isfinite(x) & (x > 0)]
    if x.size == 0:
        return x
    return x[x > REL_FLOOR * x.size * x[-1]]


def _candidate_index(x: np.ndarray, min_tail: int) -> np.ndarray:
    """Indices k of the first occurrence of each distinct value with tail size M - k >= min_tail.

    Ties: the tail {x >= x_k} of a repeated value contains all its copies, so only the first
    copy is a candidate (a later copy would describe the same tail with a wrong n).
    """
    if x.size < 2:
        return np.empty(0, dtype=np.int64)
    first = np.flatnonzero(np.r_[True, x[1:] != x[:-1]])
    keep = (x.size - first >= max(min_tail, 2)) & (first < x.size - 1)
    first = first[keep]
    return first[x[first] < x[-1]]  # a tail of one repeated value has no slope


def _alphas(logx: np.ndarray, ks_idx: np.ndarray) -> np.ndarray:
    """Clauset MLE alpha_k = 1 + n_k / (sum_{j>=k} ln x_j - n_k ln x_k) for each candidate k."""
    suffix = np.cumsum(logx[::-1])[::-1]            # suffix[k] = sum_{j >= k} ln x_j
    n = (logx.size - ks_idx).astype(np.float64)
    return 1.0 + n / (suffix[ks_idx] - n * logx[ks_idx])


def _ks(logx: np.ndarray, ks_idx: np.ndarray, alphas: np.ndarray, sup: bool) -> np.ndarray:
    """KS distance of every candidate, (C,) from (C x J) blocks; columns j < k are masked out."""
    M = logx.size
    # Ties: the empirical CDF steps once per distinct value, so every copy of a value uses the
    # first copy's index (below the step) or the last copy's index + 1 (at the step).
    pos = np.arange(M)
    new = np.r_[True, logx[1:] != logx[:-1]]
    first = np.maximum.accumulate(np.where(new, pos, 0))
    last = np.minimum.accumulate(np.where(np.r_[new[1:], True], pos, M)[::-1])[::-1]
    out = np.empty(ks_idx.size)
    rows = max(1, CHUNK_ELEMS // max(M, 1))
    for c0 in range(0, ks_idx.size, rows):
        k = ks_idx[c0:c0 + rows]
        j0 = int(k[0])                               # candidates ascend: columns < j0 unused
        a = alphas[c0:c0 + rows, None]               # (c, 1)
        n = (M - k)[:, None].astype(np.float64)      # (c, 1)
        with np.errstate(over="ignore"):  # j < k overflows to inf; masked out below
            P = -np.expm1((1.0 - a) * (logx[None, j0:] - logx[k][:, None]))  # (c, J) model CDF
        below = (first[None, j0:] - k[:, None]) / n  # S just below x_j
        d = np.abs(below - P)
        if sup:
            np.maximum(d, np.abs((last[None, j0:] + 1 - k[:, None]) / n - P), out=d)
        d[below < 0] = 0.0                           # j < k: not in this candidate's tail
        out[c0:c0 + rows] = d.max(axis=1)
    return out


def _select(x: np.ndarray, min_tail: int, max_candidates: int | None, sup: bool):
    """(candidate indices, alphas, KS) with the coarse-to-fine search when candidates are many."""
    idx = _candidate_index(x, min_tail)
    if idx.size == 0:
        return idx, np.empty(0), np.empty(0)
    # ln(x / x_max): alpha and D are scale-free, and values near 0 keep the suffix-sum
    # differences sum_{j>=k} ln x_j - n ln x_k accurate for the short top tails
    logx = np.log(x) - np.log(x[-1])
    alphas = _alphas(logx, idx)
    if max_candidates is None or idx.size <= max_candidates:
        return idx, alphas, _ks(logx, idx, alphas, sup)
    # Too many candidates (pooled FARMS spectra): D_k varies slowly with k, so evaluate a grid of
    # max_candidates, then every candidate between the best grid point's neighbours.
    grid = np.unique(np.linspace(0, idx.size - 1, max_candidates).round().astype(int))
    ks = np.full(idx.size, np.nan)
    ks[grid] = _ks(logx, idx[grid], alphas[grid], sup)
    best = int(np.argmin(ks[grid]))
    lo, hi = grid[max(best - 1, 0)], grid[min(best + 1, grid.size - 1)]
    fine = np.arange(lo, hi + 1)
    ks[fine] = _ks(logx, idx[fine], alphas[fine], sup)
    return idx, alphas, ks


def powerlaw_candidates(lam, *, min_tail: int = 10, sup: bool = False) -> Candidates:
    """All xmin candidates of `lam` (any order) with their alpha and KS distance, xmin ascending."""
    x = positive_spectrum(lam)
    idx, alphas, ks = _select(x, min_tail, None, sup)
    return Candidates(x[idx], alphas, ks)


def fit_powerlaw(lam, *, min_tail: int = 10, max_candidates: int | None = None,
                 sup: bool = False) -> dict:
    """Power-law tail fit of the eigenvalues `lam` -> dict of the `powerlaw` metric columns.

    xmin minimises the KS distance over candidates with a tail of at least `min_tail`
    eigenvalues; also returns `xmin_index`, the index of xmin in the sorted positive spectrum.
    max_candidates: None = exact search; an int = grid then local refinement (large pools).
    sup: Clauset's two-sided KS supremum instead of the `powerlaw` package's D (module doc).
    NaNs when fewer than min_tail positive eigenvalues (or a flat spectrum) leave no candidate.
    """
    nan = {c: math.nan for c in COLUMNS} | {"xmin_index": math.nan}
    x = positive_spectrum(lam)
    if x.size < max(min_tail, 2):
        return nan
    idx, alphas, ks = _select(x, min_tail, max_candidates, sup)
    ok = np.isfinite(ks) & np.isfinite(alphas)
    if not ok.any():
        return nan
    best = int(np.nanargmin(np.where(ok, ks, np.nan)))
    alpha, k = float(alphas[best]), int(idx[best])
    logx = np.log(x)
    # log10(sum lambda^alpha) through a log-sum-exp: lambda^alpha overflows for big spectra.
    t = alpha * logx
    log_alpha_norm = (t.max() + math.log(np.exp(t - t.max()).sum())) / math.log(10)
    return {
        "alpha": alpha,
        "alpha_weighted": alpha * math.log10(x[-1]),   # WeightWatcher's alpha-hat
        "log_alpha_norm": float(log_alpha_norm),
        "xmin": float(x[k]),
        "ks_distance": float(ks[best]),
        "n_tail": float(x.size - k),
        "xmin_index": k,
    }

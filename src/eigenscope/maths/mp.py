"""Marchenko-Pastur fit, spikes, and the Gavish-Donoho optimal hard-threshold rank.

Scale: eigenvalues of (1/N) W W^T (M x M), gamma = M / N <= 1. For i.i.d. entries of variance
sigma^2 they follow MP on [sigma^2 (1 - sqrt(g))^2, sigma^2 (1 + sqrt(g))^2]. sigma is fitted
robustly by matching the median eigenvalue to the median of the unit-variance MP law (Gavish &
Donoho 2014 use the same idea), so planted spikes barely move it.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from scipy.integrate import quad
from scipy.optimize import brentq

# Spike threshold = edge + sigma^2 (TW_MARGIN * tw_scale + MEDIAN_MARGIN * (1 + sqrt g)^2 * dmed).
# TW_MARGIN = 4 Tracy-Widom scale units: TW1's right tail ~ exp(-2/3 s^1.5) / (4 sqrt(pi) s^1.5)
# (Johnstone 2001) puts ~1e-4 of the mass above 4, so a pure-noise matrix almost never shows a
# spike. The second term is the error of the fitted sigma^2, which moves the edge: its relative
# sd, measured on Gaussian matrices (64x64 .. 576x1536, 20 draws each), is ~0.5-0.75 dmed with
# dmed = 1 / (M f(med) med) (one eigenvalue spacing at the median, relative; f the unit MP
# density); MEDIAN_MARGIN = 2 covers ~3 sd. At 256x256 the cut is ~0.4 above the edge of 4,
# well below the BBP spike position (1 + t^2)(1 + g / t^2) = 6.25 at t = 2 g^(1/4).
TW_MARGIN = 4.0
MEDIAN_MARGIN = 2.0
COLUMNS = ("mp_sigma", "mp_edge", "mp_spikes", "mp_softrank", "gd_rank")


def mp_density(x, sigma: float, gamma: float):
    """MP density of the eigenvalues of (1/N) W W^T: entries of variance sigma^2, gamma <= 1."""
    x = np.asarray(x, dtype=np.float64)
    s2 = sigma * sigma
    a, b = s2 * (1 - math.sqrt(gamma)) ** 2, s2 * (1 + math.sqrt(gamma)) ** 2
    inside = (x > a) & (x < b)
    with np.errstate(invalid="ignore", divide="ignore"):
        dens = np.sqrt(np.clip((b - x) * (x - a), 0, None)) / (2 * math.pi * gamma * s2 * x)
    return np.where(inside, dens, 0.0)


@lru_cache(maxsize=4096)
def _mp_median_cached(gamma: float) -> float:
    # The MP CDF has no convenient closed form: integrate the density (sqrt edges, quad copes;
    # total mass checks to 1e-13) and invert it with brentq.
    a, b = (1 - math.sqrt(gamma)) ** 2, (1 + math.sqrt(gamma)) ** 2
    cdf = lambda t: quad(lambda x: float(mp_density(x, 1.0, gamma)), a, t, limit=200)[0]
    return brentq(lambda t: cdf(t) - 0.5, a, b, xtol=1e-12)


def mp_median(gamma: float) -> float:
    """Median of the unit-variance MP law with ratio gamma (numerically inverted CDF, cached).

    gamma = 1 gives 0.6528 (Gavish & Donoho's mu_1)."""
    return _mp_median_cached(round(float(gamma), 6))


def median_spacing(M: int, gamma: float) -> float:
    """dmed = 1 / (M f(med) med): one eigenvalue spacing at the MP median, relative to it."""
    med = mp_median(gamma)
    return 1.0 / (M * float(mp_density(med, 1.0, gamma)) * med)


def tw_scale(N: int, gamma: float) -> float:
    """Tracy-Widom fluctuation scale of the top eigenvalue of (1/N) W W^T, unit variance
    (Johnstone 2001): N^(-2/3) (1 + sqrt(g)) (1 + 1/sqrt(g))^(1/3)."""
    return N ** (-2 / 3) * (1 + math.sqrt(gamma)) * (1 + 1 / math.sqrt(gamma)) ** (1 / 3)


def gd_omega(gamma: float) -> float:
    """Gavish & Donoho's omega(beta) for an unknown noise level (their cubic approximation)."""
    return 0.56 * gamma**3 - 0.95 * gamma**2 + 1.82 * gamma + 1.43


def mp_fit(lam, m: int, n: int) -> tuple[float, float, float]:
    """(sigma^2, edge, spike cut) in the (1/N) W W^T scale from eigenvalues of W^T W.

    NaNs when sigma is not identifiable: fewer than 2 eigenvalues, or a median eigenvalue at the
    rounding-noise level (a noise-free low-rank matrix; numerical_rank describes it instead).
    """
    lam = np.asarray(lam, dtype=np.float64)
    M, N = min(m, n), max(m, n)
    top = float(lam.max()) if lam.size else 0.0
    med = float(np.median(lam)) if lam.size else 0.0
    if lam.size < 2 or not top > 0 or not med > 10 * M * np.finfo(np.float64).eps * top:
        return math.nan, math.nan, math.nan
    s2 = med / N / mp_median(M / N)
    return (s2, *mp_cut(s2, M, N))


def mp_cut(s2: float, M: int, N: int, *, median_of: int | None = None) -> tuple[float, float]:
    """(edge, spike cut) in the (1/N) W W^T scale of an M x N noise matrix of variance s2.

    median_of: how many eigenvalues the median behind s2 came from (default M; fewer, e.g. a
    block of the matrix, widen the sigma-error margin accordingly).
    """
    gamma = M / N
    edge = s2 * (1 + math.sqrt(gamma)) ** 2
    margin = TW_MARGIN * tw_scale(N, gamma) + \
        MEDIAN_MARGIN * (1 + math.sqrt(gamma)) ** 2 * median_spacing(median_of or M, gamma)
    return edge, edge + s2 * margin


def gd_rank(lam, m: int, n: int) -> float:
    """Gavish-Donoho rank: #{s_i > omega(gamma) * median(s)} (unknown noise level); NaN if
    the median singular value is 0 (no noise to threshold against)."""
    s = np.sqrt(np.clip(np.asarray(lam, dtype=np.float64), 0.0, None))
    if s.size < 2 or not np.median(s) > 0:
        return math.nan
    tau = gd_omega(min(m, n) / max(m, n)) * float(np.median(s))
    return int((s > tau).sum())


def fit_mp(lam, m: int, n: int) -> dict:
    """mp_sigma, mp_edge, mp_spikes, mp_softrank from eigenvalues of W^T W (W is m x n)."""
    s2, edge, cut = mp_fit(lam, m, n)
    if math.isnan(s2):
        return dict.fromkeys(COLUMNS[:4], math.nan)
    ev = np.asarray(lam, dtype=np.float64) / max(m, n)    # eigenvalues of (1/N) W W^T
    return {"mp_sigma": math.sqrt(s2), "mp_edge": edge, "mp_spikes": int((ev > cut).sum()),
            "mp_softrank": edge / float(ev.max())}


def mp_metrics(lam, m: int, n: int) -> dict:
    """All five `mp` columns: fit_mp plus gd_rank."""
    return fit_mp(lam, m, n) | {"gd_rank": gd_rank(lam, m, n)}

"""Weibull fit of weight magnitudes by probability-plot regression (methods.md §1).

ln(-ln(1 - F)) = k ln x - k ln scale, F = (i - 0.5) / n on the sorted |w| (Hazen plotting
position); an ordinary least-squares line through the middle 80 % of the points, so the
extreme order statistics (and exact zeros, which have no logarithm) do not dominate it.
For |N(0, s^2)| this regression gives k = 1.2054 in the large-sample limit (a test derives it
from the half-normal quantile function), scale = 0.8875 s.
"""
from __future__ import annotations

import math

import numpy as np
import torch

COLUMNS = ("weibull_k", "weibull_scale", "weibull_r2")


def sample_abs(W: torch.Tensor, *, seed: int, max_samples: int) -> np.ndarray:
    """Sorted |w| in float64, at most max_samples of them.

    Large matrices are subsampled by i.i.d. draws with a seeded generator (with replacement:
    a random permutation of 28M indices costs ~1.5 s, the draws 0.04 s, and the fit targets
    the distribution of |w|, which i.i.d. draws sample without bias).
    """
    x = W.detach().reshape(-1)
    if x.numel() > max_samples:
        g = torch.Generator(device="cpu").manual_seed(seed)
        idx = torch.randint(0, x.numel(), (max_samples,), generator=g)
        x = x[idx.to(x.device)]
    return np.sort(x.double().abs().cpu().numpy())


def weibull_fit_sorted(x: np.ndarray) -> dict:
    """Probability-plot fit on sorted magnitudes x (ascending) -> weibull_k, _scale, _r2."""
    n = x.size
    F = (np.arange(1, n + 1) - 0.5) / n
    keep = (F >= 0.1) & (F <= 0.9) & (x > 0) & np.isfinite(x)
    if keep.sum() < 3 or np.ptp(x[keep]) == 0:
        return dict.fromkeys(COLUMNS, math.nan)
    lx, ly = np.log(x[keep]), np.log(-np.log1p(-F[keep]))
    k, c = np.polyfit(lx, ly, 1)                   # ly = k lx + c, c = -k ln scale
    resid = ly - (k * lx + c)
    r2 = 1.0 - resid.var() / ly.var()              # OLS with intercept: = corr(lx, ly)^2
    return {"weibull_k": float(k), "weibull_scale": float(math.exp(-c / k)),
            "weibull_r2": float(r2)}


def fit_weibull(W: torch.Tensor, *, seed: int = 0, max_samples: int = 1_000_000) -> dict:
    """Weibull(k, scale) fit of |W| entries; NaNs for all-zero, constant or non-finite input."""
    if W.numel() < 3:
        return dict.fromkeys(COLUMNS, math.nan)
    return weibull_fit_sorted(sample_abs(W, seed=seed, max_samples=max_samples))

"""Weibull probability-plot fit: theoretical k of |N(0,1)|, exact Weibull samples, subsampling."""
import math

import numpy as np
import pytest
import torch
from scipy.stats import halfnorm

from eigenscope.maths.weibull import fit_weibull, sample_abs


def _population_fit(ppf):
    """The fit's large-sample limit: least squares of ln(-ln(1-F)) on ln Q(F), F ~ U(0.1, 0.9)."""
    F = np.linspace(0.1, 0.9, 200_001)
    X, Y = np.log(ppf(F)), np.log(-np.log1p(-F))
    k = np.cov(X, Y, bias=True)[0, 1] / X.var()
    return k, math.exp(-(Y.mean() - k * X.mean()) / k)


def test_gaussian_weights_give_theoretical_k():
    # |N(0,1)| fitted this way: k = 1.2054, scale = 0.8875 (half-normal quantiles, computed
    # here); with 10^6 samples the sampling error of k is ~1e-3, tolerance 0.01
    k_theory, scale_theory = _population_fit(halfnorm.ppf)
    assert abs(k_theory - 1.2054) < 1e-3
    W = 0.02 * torch.randn(1000, 1000, generator=torch.Generator().manual_seed(0))
    d = fit_weibull(W)
    assert abs(d["weibull_k"] - k_theory) < 0.01
    assert abs(d["weibull_scale"] / (0.02 * scale_theory) - 1) < 0.01
    assert 0.99 < d["weibull_r2"] <= 1.0


@pytest.mark.parametrize("k,scale", [(0.8, 2.0), (2.5, 0.03)])
def test_exact_weibull_samples_are_recovered(k, scale):
    rng = np.random.default_rng(1)
    x = scale * rng.weibull(k, size=(500, 400))
    d = fit_weibull(torch.from_numpy(x))
    assert abs(d["weibull_k"] / k - 1) < 0.02
    assert abs(d["weibull_scale"] / scale - 1) < 0.02
    assert d["weibull_r2"] > 0.999                           # a Weibull is a straight line


def test_subsampling_is_seeded_and_bounded():
    W = torch.randn(300, 400, generator=torch.Generator().manual_seed(2))
    a = sample_abs(W, seed=3, max_samples=5000)
    assert a.size == 5000 and np.all(np.diff(a) >= 0)
    assert np.array_equal(a, sample_abs(W, seed=3, max_samples=5000))
    assert not np.array_equal(a, sample_abs(W, seed=4, max_samples=5000))
    assert fit_weibull(W, seed=3, max_samples=5000) == fit_weibull(W, seed=3, max_samples=5000)


def test_bf16_and_degenerate_input():
    W = torch.randn(200, 300, generator=torch.Generator().manual_seed(5))
    d = fit_weibull(W.to(torch.bfloat16))
    assert abs(d["weibull_k"] - fit_weibull(W)["weibull_k"]) < 0.02
    assert all(math.isnan(v) for v in fit_weibull(torch.zeros(40, 40)).values())
    assert all(math.isnan(v) for v in fit_weibull(torch.full((10, 10), 3.0)).values())

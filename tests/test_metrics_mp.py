"""Marchenko-Pastur fit, spikes and Gavish-Donoho rank against known theoretical answers."""
import math

import numpy as np
import pytest
import torch

from eigenscope.maths.mp import (MEDIAN_MARGIN, gd_omega, gd_rank, median_spacing, mp_cut,
                                 mp_density, mp_fit, mp_median, mp_metrics)
from eigenscope.maths.spectrum import eigvals


def _median_by_substitution(gamma):
    """Independent MP median: x = a + (b - a) sin^2(t) removes both square-root edges, so a
    plain trapezoid on t in [0, pi/2] converges fast; then invert the CDF by interpolation."""
    a, b = (1 - math.sqrt(gamma)) ** 2, (1 + math.sqrt(gamma)) ** 2
    t = np.linspace(0, math.pi / 2, 400_001)
    x = a + (b - a) * np.sin(t) ** 2
    # density * dx/dt = sqrt((b-x)(x-a)) / (2 pi g x) * 2 (b-a) sin t cos t
    with np.errstate(invalid="ignore"):
        f = ((b - a) * np.sin(t) * np.cos(t)) ** 2 / (math.pi * gamma * x)
    f[x == 0] = (b - a) / (math.pi * gamma)                 # a = 0 (gamma = 1): the t -> 0 limit
    cdf = np.r_[0, np.cumsum((f[1:] + f[:-1]) / 2 * np.diff(t))]
    return float(np.interp(0.5, cdf / cdf[-1], x)), cdf[-1]


@pytest.mark.parametrize("gamma", [0.05, 0.3, 0.75, 1.0])
def test_mp_median_and_density(gamma):
    med, mass = _median_by_substitution(gamma)
    assert abs(mass - 1) < 1e-6
    assert abs(mp_median(gamma) - med) < 1e-6
    # density: unit mass and mean sigma^2 (first MP moment), here sigma = 1.5
    a, b = 2.25 * (1 - math.sqrt(gamma)) ** 2, 2.25 * (1 + math.sqrt(gamma)) ** 2
    x = a + (b - a) * np.sin(np.linspace(0, math.pi / 2, 200_001)) ** 2
    dens = mp_density(x, 1.5, gamma)
    assert abs(np.trapezoid(dens, x) - 1) < 1e-3
    assert abs(np.trapezoid(x * dens, x) / 2.25 - 1) < 1e-3
    assert mp_density(np.array([a * 0.9 - 1e-9, b * 1.1]), 1.5, gamma).tolist() == [0.0, 0.0]


def test_mp_median_square_is_gavish_donoho_value():
    assert abs(mp_median(1.0) - 0.6528) < 1e-4          # mu_beta at beta = 1 (G&D 2014)
    assert abs(gd_omega(1.0) - 2.858) < 0.01            # omega(1) for unknown noise


def _gauss(m, n, sigma, seed):
    return sigma * torch.randn(m, n, generator=torch.Generator().manual_seed(seed),
                               dtype=torch.float64)


SHAPES = [(256, 256), (256, 1024), (1024, 256), (200, 600), (64, 2048)]


@pytest.mark.parametrize("shape", SHAPES)
def test_gaussian_sigma_within_2pct_and_no_spikes(shape):
    for seed in range(3):
        W = _gauss(*shape, 0.7, seed)
        d = mp_metrics(eigvals(W, precision="float64").numpy(), *shape)
        assert abs(d["mp_sigma"] / 0.7 - 1) < 0.02, d
        assert d["mp_spikes"] == 0 and d["gd_rank"] == 0, d
        g = min(shape) / max(shape)
        assert math.isclose(d["mp_edge"], d["mp_sigma"] ** 2 * (1 + math.sqrt(g)) ** 2)
        assert 0.9 < d["mp_softrank"] < 1.1                  # top eigenvalue sits at the edge


def _planted(m, n, sigma, thetas, seed):
    """sigma Z + sigma sqrt(N) sum_i theta_i u_i v_i^T with orthonormal u, v."""
    g = torch.Generator().manual_seed(seed)
    k, N = len(thetas), max(m, n)
    U = torch.linalg.qr(torch.randn(m, k, generator=g, dtype=torch.float64))[0]
    V = torch.linalg.qr(torch.randn(n, k, generator=g, dtype=torch.float64))[0]
    th = torch.tensor(thetas, dtype=torch.float64)
    return _gauss(m, n, sigma, seed + 100) + sigma * math.sqrt(N) * (U * th) @ V.T


@pytest.mark.parametrize("shape", SHAPES)
def test_mp_cut_is_mp_fit_cut_and_widens_for_a_smaller_median_sample(shape):
    M, N = min(shape), max(shape)
    s2, edge, cut = mp_fit(eigvals(_gauss(*shape, 0.3, 5), precision="float64").numpy(), *shape)
    assert mp_cut(s2, M, N) == (edge, cut) == mp_cut(s2, M, N, median_of=M)
    assert math.isclose(edge, s2 * (1 + math.sqrt(M / N)) ** 2)         # the MP edge
    # a median of M / 4 eigenvalues: only the sigma-error term grows, by dmed(M / 4) - dmed(M)
    edge_q, cut_q = mp_cut(s2, M, N, median_of=M // 4)
    grow = MEDIAN_MARGIN * (1 + math.sqrt(M / N)) ** 2 * (median_spacing(M // 4, M / N) -
                                                         median_spacing(M, M / N))
    assert edge_q == edge and math.isclose(cut_q - cut, s2 * grow, rel_tol=1e-9)


@pytest.mark.parametrize("shape", SHAPES[:4])
def test_planted_spikes_above_bbp_are_counted_exactly(shape):
    g = min(shape) / max(shape)
    thetas = [r * g**0.25 for r in (1.6, 2.0, 3.0)]         # BBP threshold: g^(1/4)
    W = _planted(*shape, 0.5, thetas, 1)
    d = mp_metrics(eigvals(W, precision="float64").numpy(), *shape)
    assert d["mp_spikes"] == 3, d
    assert abs(d["mp_sigma"] / 0.5 - 1) < 0.02              # the median ignores the spikes


@pytest.mark.parametrize("shape", [(300, 300), (200, 800), (900, 300)])
def test_gd_rank_of_low_rank_plus_noise(shape):
    k = 4
    W = _planted(*shape, 0.1, [3.0, 4.0, 5.0, 8.0], 2)
    lam = eigvals(W, precision="float64").numpy()
    assert gd_rank(lam, *shape) == k
    # the threshold separates: the k-th singular value above tau, the (k+1)-th below
    s = np.sqrt(lam[::-1])
    tau = gd_omega(min(shape) / max(shape)) * np.median(s)
    assert s[k - 1] > tau > s[k]


def test_degenerate_input_gives_nan():
    assert all(math.isnan(v) for v in mp_metrics(np.zeros(30), 30, 40).values())
    assert all(math.isnan(v) for v in mp_metrics(np.array([5.0]), 1, 40).values())
    low = _planted(50, 60, 0.0, [2.0, 3.0], 3)              # noise-free rank 2: no sigma
    d = mp_metrics(eigvals(low, precision="float64").numpy(), 50, 60)
    assert math.isnan(d["mp_sigma"]) and math.isnan(d["mp_spikes"])

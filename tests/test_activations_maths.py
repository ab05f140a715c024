"""Activation metrics against known answers: MP law of Gaussian tokens, planted BBP spikes,
Matrix Entropy / Nuclear-Norm against a direct SVD, the L1,2 bound, closed-form spectra."""
import math

import numpy as np
import pytest
import torch

from eigenscope.maths import activations as A
from eigenscope.maths.mp import mp_median


def _cov_eigs(X):
    Xc = X - X.mean(0)
    return np.linalg.eigvalsh(Xc.T @ Xc / X.shape[0])


@pytest.mark.parametrize("n,d,sigma", [(4000, 200, 1.5), (3000, 600, 0.3), (150, 400, 2.0)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gaussian_tokens_follow_mp(n, d, sigma, seed):
    # tolerance: 3 % on sigma and 6 % on the edge (the median fit's sd is ~0.5-0.75 of one
    # eigenvalue spacing, mp.py); never a spike in pure noise (the Tracy-Widom margin)
    X = np.random.default_rng(seed).normal(0, sigma, (n, d))
    fit = A.covariance_mp(_cov_eigs(X), n)
    c = d / n
    assert fit["aspect"] == pytest.approx(c)
    assert fit["mp_sigma"] == pytest.approx(sigma, rel=0.03)
    assert fit["mp_edge"] == pytest.approx(sigma ** 2 * (1 + math.sqrt(c)) ** 2, rel=0.06)
    assert fit["mp_spikes"] == 0


@pytest.mark.parametrize("seed", range(4))
def test_planted_spikes_above_bbp_counted_exactly(seed):
    # population covariance sigma^2 (I + sum theta_k u_k u_k^T); BBP threshold theta > sqrt(c)
    rng = np.random.default_rng(seed)
    n, d, sigma = 4000, 200, 1.0
    c = d / n
    thetas = [6.0, 3.0, 1.5, 0.1]                    # the last is below sqrt(c) = 0.22
    U, _ = np.linalg.qr(rng.normal(size=(d, len(thetas))))
    X = rng.normal(size=(n, d)) + (rng.normal(size=(n, len(thetas))) * np.sqrt(thetas)) @ U.T
    fit = A.covariance_mp(_cov_eigs(sigma * X), n)
    assert sum(t > math.sqrt(c) for t in thetas) == 3
    assert fit["mp_spikes"] == 3


def _normalize_np(R):
    Z = R - R.mean(0)
    return Z / np.linalg.norm(Z, axis=1, keepdims=True)


@pytest.mark.parametrize("T,d", [(64, 16), (16, 64), (40, 40)])
def test_matrix_entropy_and_nuclear_norm_against_svd(T, d):
    rng = np.random.default_rng(T * d)
    R = rng.normal(size=(T, d)) @ rng.normal(size=(d, d)) + 3.0          # correlated, offset
    Z = _normalize_np(R)
    s = np.linalg.svd(Z, compute_uv=False)
    lam = s ** 2 / T                                                      # eigenvalues of Z^T Z / T
    lam = lam[lam > 0] / lam.sum()
    me_ref = -(lam * np.log(lam)).sum() / math.log(d)
    assert float(A.matrix_entropy(torch.tensor(R))) == pytest.approx(me_ref, rel=1e-9)
    cols = np.sort(np.linalg.norm(Z, axis=0))[::-1][: min(T, d)]
    assert float(A.matrix_nuclear_norm(torch.tensor(R))) == pytest.approx(cols.sum() / T, rel=1e-9)
    # batched = one by one
    Rb = torch.tensor(np.stack([R, R[::-1].copy() * 2 + 1]))
    assert torch.allclose(A.matrix_entropy(Rb)[0], A.matrix_entropy(Rb[0]))


@pytest.mark.parametrize("kind", ["gaussian", "low_rank", "orthogonal_columns", "one_direction"])
def test_l12_bound_on_nuclear_norm(kind):
    # documented: S / sqrt(d) <= ||Z||_* <= S, S = sum of all column norms of Z
    rng = np.random.default_rng(7)
    T, d = 80, 24
    R = {"gaussian": rng.normal(size=(T, d)),
         "low_rank": rng.normal(size=(T, 3)) @ rng.normal(size=(3, d)),
         "orthogonal_columns": np.linalg.qr(rng.normal(size=(T, d)))[0] * rng.uniform(1, 5, d),
         "one_direction": rng.normal(size=(T, 1)) * rng.normal(size=(1, d))}[kind]
    lo, hi = A.nuclear_norm_bounds(torch.tensor(R))
    nuc = np.linalg.svd(_normalize_np(R), compute_uv=False).sum()
    assert lo <= nuc * (1 + 1e-12) and nuc <= hi * (1 + 1e-12)
    assert hi == pytest.approx(float(A.matrix_nuclear_norm(torch.tensor(R))) * T, rel=1e-12)
    if kind == "one_direction":         # rank one: ||Z||_* = ||Z||_F = sqrt(T) (unit rows)
        assert nuc == pytest.approx(math.sqrt(T), rel=1e-9)


def test_closed_form_spectra():
    d = 50
    iso = np.ones(d)
    assert A.spectral_entropy(iso) == pytest.approx(1.0)
    assert A.effective_rank(iso) == pytest.approx(d)
    assert A.participation_ratio(iso) == pytest.approx(d)
    assert A.top_share(iso) == pytest.approx(1 / d)
    one = np.r_[np.zeros(d - 1), 4.0]
    assert A.spectral_entropy(one) == pytest.approx(0.0)
    assert A.effective_rank(one) == pytest.approx(1.0)
    assert A.participation_ratio(one) == pytest.approx(1.0)
    assert A.top_share(one) == pytest.approx(1.0)
    two = np.r_[np.zeros(d - 2), 1.0, 3.0]                 # p ~ sqrt(lam) for the effective rank
    p = np.sqrt([1.0, 3.0]) / np.sqrt([1.0, 3.0]).sum()
    assert A.effective_rank(two) == pytest.approx(math.exp(-(p * np.log(p)).sum()))
    assert A.participation_ratio(two) == pytest.approx(16 / 10)


def test_anisotropy_is_the_mean_pairwise_cosine():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(60, 8)) + np.array([2.0] + [0.0] * 7)
    U = X / np.linalg.norm(X, axis=1, keepdims=True)
    cos = U @ U.T
    ref = (cos.sum() - np.trace(cos)) / (60 * 59)
    assert A.anisotropy(U.sum(0), 60) == pytest.approx(ref, rel=1e-12)


def test_tail_alpha_of_pareto_eigenvalues():
    lam = np.random.default_rng(0).pareto(2.0, 3000) + 1.0      # density ~ x^-3
    assert A.tail_alpha(lam) == pytest.approx(3.0, abs=0.25)


def test_mp_cdf_grid_median_and_ks():
    for g in (0.1, 0.5, 1.0):
        x, F = A._mp_cdf_grid(g)
        assert np.interp(0.5, F, x) == pytest.approx(mp_median(g), rel=2e-3)
    rng = np.random.default_rng(1)
    W = rng.normal(size=(200, 800))
    lam = np.linalg.eigvalsh(W @ W.T)
    assert A.mp_ks(lam, 200, 800) < 0.05
    # anisotropic rows (variances spread over two decades): the bulk itself is not MP
    W2 = W * np.exp(rng.normal(0, 1.0, size=(200, 1)))
    assert A.mp_ks(np.linalg.eigvalsh(W2 @ W2.T), 200, 800) > 0.2


def test_window_descriptors_match_direct_covariance():
    rng = np.random.default_rng(5)
    H = torch.tensor(rng.normal(size=(3, 12, 40)))
    out = A.window_descriptors(H)
    for i in range(3):
        Xc = H[i].numpy() - H[i].numpy().mean(0)
        lam = np.linalg.eigvalsh(Xc @ Xc.T)[-11:]                # w - 1 nonzero
        assert out["entropy"][i] == pytest.approx(A.spectral_entropy(lam), rel=1e-8)
        assert out["top_share"][i] == pytest.approx(lam.max() / lam.sum(), rel=1e-8)
        assert out["mp_ks"][i] == pytest.approx(A.mp_ks(lam, 11, 40), rel=1e-8)

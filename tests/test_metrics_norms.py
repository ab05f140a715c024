"""norm_metrics against direct formulas on torch.linalg.svdvals; Gram eigvalsh against svdvals."""
import math

import numpy as np
import pytest
import torch

from eigenscope.maths.norms import norm_metrics
from eigenscope.maths.spectrum import eigvals


def _planted(m, n, r, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(m, r, generator=g, dtype=torch.float64) @ \
        torch.randn(r, n, generator=g, dtype=torch.float64)


def _direct(W):
    """The metrics straight from the singular values, written independently of norms.py."""
    s = torch.linalg.svdvals(W.double()).numpy()            # descending
    m, n = W.shape
    p = s / s.sum()
    q = s**2 / (s**2).sum()
    q = q[q > 0]
    return {
        "spectral_norm": s[0], "frobenius_norm": np.linalg.norm(W.double().numpy()),
        "nuclear_norm": s.sum(), "stable_rank": (s**2).sum() / s[0] ** 2,
        "effective_rank": np.exp(-np.sum(p[p > 0] * np.log(p[p > 0]))),
        "spectral_entropy": -np.sum(q * np.log(q)) / np.log(len(s)),
        "numerical_rank": np.sum(s > s[0] * max(m, n) * np.finfo(np.float32).eps),
        "log_norm": np.log10((s**2).sum()), "log_spectral_norm": np.log10(s[0] ** 2),
    }


@pytest.mark.parametrize("W,tol", [
    (torch.randn(60, 90, generator=torch.Generator().manual_seed(1)), 1e-9),
    (torch.randn(130, 40, generator=torch.Generator().manual_seed(2)), 1e-9),
    # rank 5: the Gram route leaves the 75 zero singular values at ~sqrt(M eps64) s_1 ~ 1e-7 s_1
    # instead of ~1e-16 s_1; summed into p = s / sum s they move effective_rank by ~1e-6
    (_planted(100, 80, 5, 3), 2e-5)], ids=["wide", "tall", "rank5"])
def test_norms_match_direct_svd_formulas(W, tol):
    got = norm_metrics(eigvals(W, precision="float64").numpy(), *W.shape)
    want = _direct(W)
    assert set(got) == set(want)
    for k, v in want.items():
        assert math.isclose(got[k], v, rel_tol=tol, abs_tol=tol), (k, got[k], v)


def test_numerical_rank_of_rank5_matrix_is_5():
    W = _planted(200, 120, 5, 4).float()                     # stored in float32
    assert norm_metrics(eigvals(W).numpy(), 200, 120)["numerical_rank"] == 5
    assert norm_metrics(eigvals(W).numpy(), 200, 120)["stable_rank"] < 5


def test_known_answers_orthogonal_and_degenerate():
    Q = torch.linalg.qr(torch.randn(50, 50, dtype=torch.float64))[0]
    d = norm_metrics(eigvals(Q, precision="float64").numpy(), 50, 50)
    assert math.isclose(d["effective_rank"], 50, rel_tol=1e-9)   # flat spectrum: full rank
    assert math.isclose(d["spectral_entropy"], 1.0, rel_tol=1e-9)
    assert math.isclose(d["stable_rank"], 50, rel_tol=1e-9)
    assert all(math.isnan(v) for v in norm_metrics(np.zeros(7), 7, 9).values())
    one = norm_metrics(np.array([4.0]), 1, 30)               # 1 x n: one singular value 2
    assert one["spectral_norm"] == 2.0 and one["nuclear_norm"] == 2.0
    assert one["numerical_rank"] == 1 and math.isnan(one["spectral_entropy"])


@pytest.mark.parametrize("precision,eps", [("float64", np.finfo(np.float64).eps),
                                           ("float32", np.finfo(np.float32).eps)])
def test_gram_eigvalsh_agrees_with_svdvals_within_bound(precision, eps):
    """Relative error of s_i = sqrt(lambda_i) from the Gram route is <= C eps s_1^2 / s_i^2.

    lambda_i carries an absolute error ~ eps * M * lambda_1 (Gram product + eigvalsh), so
    s_i's relative error is about half of that over lambda_i; C = M is a safe constant.
    """
    g = torch.Generator().manual_seed(5)
    m, n = 120, 300
    U = torch.linalg.qr(torch.randn(m, m, generator=g, dtype=torch.float64))[0]
    V = torch.linalg.qr(torch.randn(n, m, generator=g, dtype=torch.float64))[0]
    s_true = torch.logspace(0, -3, m, dtype=torch.float64)  # condition number 1e3
    W = (U * s_true) @ V.T
    ref = torch.linalg.svdvals(W)                           # descending
    got = eigvals(W, precision=precision).flip(0).sqrt()
    rel = ((got - ref).abs() / ref).numpy()
    bound = m * eps * (ref[0] / ref).numpy() ** 2
    assert (rel <= bound).all(), float((rel / bound).max())
    # and the bound is not vacuous: the smallest s_i is still resolved in float64
    if precision == "float64":
        assert rel.max() < 1e-6

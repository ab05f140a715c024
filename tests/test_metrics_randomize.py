"""Randomization test: seeded shuffle, traps from one large entry, JS distance of log-ESDs."""
import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import jensenshannon

from eigenscope.maths.randomize import js_distance, log_esd_distance, randomization_test, shuffled
from eigenscope.maths.spectrum import eigvals


def _gauss(m, n, seed, sigma=0.05):
    return sigma * torch.randn(m, n, generator=torch.Generator().manual_seed(seed))


def _run(W, seed=0):
    return randomization_test(W, eigvals(W).numpy(), seed=seed)


def test_shuffle_is_a_seeded_permutation():
    W = _gauss(40, 70, 0)
    a, b, c = shuffled(W, seed=3), shuffled(W, seed=3), shuffled(W, seed=4)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(a.flatten().sort().values, W.flatten().sort().values)
    W2 = _gauss(200, 300, 1)
    assert _run(W2, seed=5) == _run(W2, seed=5)


@pytest.mark.parametrize("shape", [(256, 512), (512, 256), (300, 300)])
def test_gaussian_has_no_traps_and_tiny_distance(shape):
    d = _run(_gauss(*shape, 2))
    assert d["rand_traps"] == 0
    assert d["rand_distance"] < 0.1, d        # same ensemble: only histogram noise


def test_one_huge_entry_is_a_trap():
    W = _gauss(256, 512, 3)
    W[17, 211] = 100 * 0.05                   # 100 sigma: its own rank-one spike ~ 1e4 sigma^2
    assert _run(W)["rand_traps"] >= 1         # vs the MP edge (sqrt(m) + sqrt(n))^2 ~ 1.5e3 sigma^2


def test_structured_matrix_is_far_from_its_shuffle():
    g = torch.Generator().manual_seed(4)
    W = torch.randn(300, 8, generator=g) @ torch.randn(8, 500, generator=g) + \
        0.01 * torch.randn(300, 500, generator=g)
    d = _run(W)
    assert d["rand_distance"] > 0.7, d        # 8 large + 292 tiny eigenvalues vs one MP bulk


def test_js_distance_matches_scipy_and_bounds():
    rng = np.random.default_rng(6)
    p, q = rng.random(30), rng.random(30)
    q[:5] = 0
    assert math.isclose(js_distance(p, q), jensenshannon(p, q, base=2), rel_tol=1e-10)
    assert js_distance(p, p) == 0.0
    assert math.isclose(js_distance(np.array([1.0, 0]), np.array([0, 1.0])), 1.0)
    assert math.isclose(log_esd_distance(np.array([1.0, 2.0]), np.array([1e5, 2e5])), 1.0)


def test_degenerate_input_gives_nan():
    for W in (torch.zeros(30, 40), torch.randn(1, 50)):
        assert all(math.isnan(v) for v in randomization_test(W, np.zeros(1)).values())

"""Randomization test: seeded shuffle, traps from one large entry, JS distance of log-ESDs."""
import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import jensenshannon

from eigenscope.maths.randomize import (LANCZOS_MAX_K, js_distance, log_esd_distance,
                                         randomization_test, shuffled, shuffled_blocks,
                                         top_eigvals)
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


def _planted(m, n, seed, count=3, size=50):
    """Gaussian noise (sd 0.05) with `count` entries of `size` sd in seeded random places."""
    W = _gauss(m, n, seed)
    rng = np.random.default_rng(seed)
    rows, cols = rng.choice(m, count, replace=False), rng.choice(n, count, replace=False)
    W[rows, cols] = size * 0.05 * torch.from_numpy(rng.choice([-1.0, 1.0], count)).float()
    return W


def _low_rank(m, n, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(m, 8, generator=g) @ torch.randn(8, n, generator=g) + \
        0.01 * torch.randn(m, n, generator=g)


def _student_t3(m, n, seed):
    t = np.random.default_rng(seed).standard_t(3, size=(m, n))
    return torch.from_numpy(0.05 * t).float()


def _gram_eigvals(W):
    """Descending eigenvalues of the min-side Gram, float64 eigvalsh: the reference."""
    W = W.double()
    G = W.mT @ W if W.shape[0] >= W.shape[1] else W @ W.mT
    return torch.linalg.eigvalsh(G).flip(0).numpy()


@pytest.mark.parametrize("shape", [(300, 200), (200, 300)])
@pytest.mark.parametrize("count", [0, 3, 5, LANCZOS_MAX_K + 8])
def test_top_eigvals_are_the_gram_eigenvalues_above_the_threshold(shape, count):
    W = _planted(*shape, 7, count=5)
    ref = _gram_eigvals(W)                                  # (M,) descending
    above = 2 * ref[0] if count == 0 else (ref[count - 1] + ref[count]) / 2
    top = top_eigvals(W, above)
    if count > LANCZOS_MAX_K:
        assert top is None                                  # the caller takes the whole spectrum
    else:
        assert top.shape == (count,)
        np.testing.assert_allclose(top, ref[:count], rtol=1e-5)


def test_top_eigvals_leaves_a_near_tie_to_the_whole_spectrum():
    W = _planted(300, 200, 7, count=5)
    assert top_eigvals(W, float(_gram_eigvals(W)[2])) is None


@pytest.mark.parametrize("shape, side, blocks, scale", [
    ((400, 256), 64, (4, 100, 64), 4.0),
    ((256, 400), 64, (4, 64, 100), 4.0),
    ((300, 300), 64, (4, 64, 64), 300 / 64),
    ((200, 1000), 128, (1, 128, 640), 1000 / 640)])
def test_shuffled_blocks_are_disjoint_diagonal_blocks(shape, side, blocks, scale):
    S = torch.arange(shape[0] * shape[1], dtype=torch.float32).reshape(shape)
    B, f = shuffled_blocks(S, side)
    assert tuple(B.shape) == blocks and math.isclose(f, scale)
    k, mb, nb = blocks
    for i in range(k):                                       # block i: rows and columns i
        assert torch.equal(B[i], S[i * mb:(i + 1) * mb, i * nb:(i + 1) * nb])


# (kind, matrix maker, same rand_traps as the whole spectrum is claimed): module doc
KINDS = [("gaussian", _gauss, True), ("planted", _planted, True),
         ("low_rank", _low_rank, False), ("student_t3", _student_t3, False)]
# min side 384-512 and four blocks each, as a 4096-wide matrix gets with BLOCK_SIDE = 1024
BLOCK_SHAPES = [((384, 640), 96), ((640, 384), 96), ((512, 512), 128)]


@pytest.mark.parametrize("kind, make, same_traps", KINDS, ids=[k[0] for k in KINDS])
@pytest.mark.parametrize("shape, side", BLOCK_SHAPES, ids=str)
@pytest.mark.parametrize("seed", [0, 1])
def test_block_path_agrees_with_the_whole_spectrum(kind, make, same_traps, shape, side, seed):
    W = make(*shape, seed)
    lam = eigvals(W).numpy()
    full = randomization_test(W, lam, seed=seed)
    block = randomization_test(W, lam, seed=seed, full_spectrum_max=side, block_side=side)
    assert abs(block["rand_distance"] - full["rand_distance"]) <= 0.05, (full, block)
    if same_traps:
        assert block["rand_traps"] == full["rand_traps"], (full, block)
    if kind == "planted":              # one trap per entry, but two may share a row or column
        assert full["rand_traps"] >= 2, full


def test_block_path_takes_the_whole_spectrum_beyond_lanczos_max_k():
    W = _planted(384, 640, 3, count=LANCZOS_MAX_K + 8)
    lam = eigvals(W).numpy()
    full = randomization_test(W, lam)
    assert full["rand_traps"] > LANCZOS_MAX_K, full
    assert randomization_test(W, lam, full_spectrum_max=96, block_side=96) == full

"""Principal angles between top singular subspaces, against constructions with known answers."""
import math

import numpy as np
import pytest
import torch

from eigenscope.maths.subspace import compare_matrices, principal_cosines, subspace_overlap


def _orthonormal(d, k, seed):
    q, _ = torch.linalg.qr(torch.randn(d, k, generator=torch.Generator().manual_seed(seed),
                                       dtype=torch.float64))
    return q


def _matrix(U, s, V):
    return (U * s) @ V.T            # (m, r) diag(r) (r, n)


def test_same_subspace_any_basis_overlap_one():
    Q = _orthonormal(40, 6, 0)
    R = _orthonormal(6, 6, 1)       # another basis of the same span
    ov, ang = subspace_overlap(Q, Q @ R)
    assert ov == pytest.approx(1.0, abs=1e-12) and ang == pytest.approx(0.0, abs=1e-4)


@pytest.mark.parametrize("theta_deg", [10.0, 45.0, 90.0])
def test_one_direction_turned_by_a_known_angle(theta_deg):
    full = _orthonormal(50, 9, 2)
    Q, extra = full[:, :8], full[:, 8]
    t = math.radians(theta_deg)
    Q2 = Q.clone()
    Q2[:, 3] = math.cos(t) * Q[:, 3] + math.sin(t) * extra    # rotated out of span(Q)
    c = principal_cosines(Q, Q2)
    assert float(c.min()) == pytest.approx(math.cos(t), abs=1e-10)
    ov, ang = subspace_overlap(Q, Q2)
    assert ov == pytest.approx((7 + math.cos(t) ** 2) / 8, abs=1e-10)
    assert ang == pytest.approx(theta_deg, abs=1e-4)


def test_compare_matrices_scaled_copy_and_planted_change():
    m, n, k = 60, 40, 5
    U, V = _orthonormal(m, 10, 3), _orthonormal(n, 10, 4)
    s = torch.tensor([10., 9, 8, 7, 6, 1, .9, .8, .7, .6], dtype=torch.float64)
    W = _matrix(U, s, V)
    same = compare_matrices(W, 2 * W, k)
    assert same["rel_change"] == pytest.approx(1.0, rel=1e-5)
    assert same["overlap_left"] == pytest.approx(1.0, abs=1e-5)
    assert same["overlap_right"] == pytest.approx(1.0, abs=1e-5)
    # swap the 5th top direction for the 6th: both subspaces lose one direction, exactly 90 degrees
    s2 = s.clone()
    s2[4], s2[5] = 1.0, 6.0
    moved = compare_matrices(W, _matrix(U, s2, V), k)
    assert moved["overlap_left"] == pytest.approx(4 / 5, abs=1e-4)
    assert moved["overlap_right"] == pytest.approx(4 / 5, abs=1e-4)
    assert moved["max_angle_deg"] == pytest.approx(90.0, abs=0.1)
    W2 = _matrix(U, s2, V)
    ref = np.linalg.norm((W2 - W).numpy()) / np.linalg.norm(W.numpy())
    assert moved["rel_change"] == pytest.approx(ref, rel=1e-5)


def test_shape_mismatch_or_nan_gives_nan():
    assert math.isnan(compare_matrices(torch.randn(4, 5), torch.randn(5, 4))["overlap_left"])
    bad = torch.randn(4, 5)
    bad[0, 0] = float("nan")
    assert math.isnan(compare_matrices(torch.randn(4, 5), bad)["rel_change"])

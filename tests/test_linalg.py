"""eigenscope.linalg against SVD / eigh references in float64, for float32 and bf16 inputs."""
import pytest
import torch

from eigenscope.linalg import hard_clip, inv_sqrt_ns, polar_ns, soft_clip

SHAPES = [(3, 48, 96), (3, 96, 48), (2, 64, 64)]
DTYPES = [torch.float32, torch.bfloat16]


def _matrix(shape, kappa=20.0, seed=0):
    """Batch of matrices with singular values log-spaced in [1/kappa, 1] times 5."""
    g = torch.Generator().manual_seed(seed)
    *b, m, n = shape
    k = min(m, n)
    P = torch.linalg.qr(torch.randn(*b, m, k, generator=g, dtype=torch.float64))[0]
    Q = torch.linalg.qr(torch.randn(*b, n, k, generator=g, dtype=torch.float64))[0]
    s = 5.0 * torch.logspace(0, -torch.log10(torch.tensor(kappa)).item(), k, dtype=torch.float64)
    return (P * s) @ Q.mT, P, s, Q


def _offdiag(P, O, Q):
    """Relative off-diagonal mass of P^T O Q: 0 when O has singular vectors P, Q."""
    D = P.mT @ O.double() @ Q                                   # (.., k, k)
    off = D - torch.diag_embed(torch.diagonal(D, dim1=-2, dim2=-1))
    return (off.norm() / D.norm()).item()


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_polar_ns5_band_and_vectors(shape, dtype):
    G, P, s, Q = _matrix(shape)
    O = polar_ns(G.to(dtype))
    assert O.shape == G.shape and O.dtype == dtype
    sv = torch.linalg.svdvals(O.double())
    # Muon's NS5 overshoots by design: singular values land in ~[0.7, 1.2], not at 1
    # (condition number 20 here; measured band [0.68, 1.20] float32, bf16 within 0.02 of it).
    assert sv.min() > 0.6 and sv.max() < 1.25
    # Same singular vectors as the polar factor P Q^T: exact up to rounding of the dtype.
    assert _offdiag(P, O, Q) < (1e-5 if dtype == torch.float32 else 0.05)
    # The singular values are a monotone map of the input's: order preserved (float32).
    if dtype == torch.float32:
        d = torch.diagonal(P.mT @ O.double() @ Q, dim1=-2, dim2=-1)
        assert (d > 0.6).all()


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_polar_aol4(shape, dtype):
    G, P, s, Q = _matrix(shape)
    O = polar_ns(G.to(dtype), method="aol4")
    sv = torch.linalg.svdvals(O.double())
    assert sv.min() > 0.6 and sv.max() < 1.25
    # AOL is a preconditioner: O is the NS polar factor of D X (X the wide orientation), whose
    # singular vectors differ from G's by a few percent (measured 0.04-0.06 on Gaussians).
    assert _offdiag(P, O, Q) < 0.12
    X = G if shape[-2] <= shape[-1] else G.mT
    d = (X @ X.mT).abs().sum(-1).rsqrt()                        # (.., M)
    DX = X * d[..., :, None]
    U2, _, V2h = torch.linalg.svd(DX, full_matrices=False)
    Ow = O if shape[-2] <= shape[-1] else O.mT
    assert _offdiag(U2, Ow, V2h.mT) < (1e-5 if dtype == torch.float32 else 0.05)
    # AOL's guarantee: ||D X||_2 <= 1
    assert torch.linalg.matrix_norm(DX, ord=2).max() <= 1 + 1e-9


def test_polar_is_scale_invariant():
    """X0 = G / ||G||_F: the result does not depend on the scale of G."""
    G, *_ = _matrix((2, 32, 40), kappa=3.0)
    assert torch.allclose(polar_ns(G.float()), polar_ns(100 * G.float()), atol=1e-5)


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.bfloat16, 3e-2)])
def test_inv_sqrt_ns(dtype, tol):
    G, *_ = _matrix((3, 40, 80), kappa=5.0, seed=1)
    A = G @ G.mT                                                # SPD, condition number 25
    ev, V = torch.linalg.eigh(A)
    ref = (V * ev.rsqrt()[..., None, :]) @ V.mT
    Z = inv_sqrt_ns(A.to(dtype), steps=14).double()
    assert ((Z - ref).norm() / ref.norm()).item() < tol
    if dtype == torch.float32:   # Z A Z = I
        eye = torch.eye(40, dtype=torch.float64)
        assert torch.allclose(Z @ A @ Z, eye.expand_as(A), atol=1e-4)


@pytest.mark.parametrize("shape", SHAPES[:2])
@pytest.mark.parametrize("dtype, tol", [(torch.float32, 2e-5), (torch.bfloat16, 1e-2)])
@pytest.mark.parametrize("c", [0.3, 50.0])
def test_soft_clip_matches_svd(shape, dtype, tol, c):
    G, P, s, Q = _matrix(shape, kappa=100.0)
    ref = (P * (s / (1 + s ** 2 / c ** 2).sqrt())[..., None, :]) @ Q.mT
    H = soft_clip(G.to(dtype), c)
    assert H.dtype == dtype and H.shape == G.shape
    assert ((H.double() - ref).norm() / ref.norm()).item() < tol
    assert torch.linalg.svdvals(H.double()).max() < c * (1 + tol)     # never above c


@pytest.mark.parametrize("dtype", DTYPES)
def test_hard_clip(dtype):
    G, P, s, Q = _matrix((2, 30, 50))
    c = 2.0
    H = hard_clip(G.to(dtype), c).double()
    ref = (P * s.clamp_max(c)[..., None, :]) @ Q.mT
    tol = 1e-5 if dtype == torch.float32 else 1e-2
    assert ((H - ref).norm() / ref.norm()).item() < tol


def test_soft_clip_is_below_hard_clip_and_identity_for_small():
    G, P, s, Q = _matrix((1, 20, 30))
    sv_soft = torch.linalg.svdvals(soft_clip(G, 1.0))
    sv_hard = torch.linalg.svdvals(hard_clip(G, 1.0))
    assert (sv_soft <= sv_hard + 1e-6).all()
    small = 1e-3 * G
    assert torch.allclose(soft_clip(small, 10.0), small, rtol=1e-5, atol=1e-9)

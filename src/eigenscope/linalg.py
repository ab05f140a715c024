"""Batched Newton-Schulz matrix functions: polar factor (Muon), inverse square root, spectral clips.

Every function takes (..., m, n) and works over the leading dims; no SVD except `hard_clip`
(the test reference). Arithmetic runs in the input dtype (bf16 stays bf16, as Muon runs it),
so float32 input gives float32-accurate results and bf16 input about 1e-2.

>>> G = torch.randn(3, 16, 32)
>>> O = polar_ns(G)                      # (3, 16, 32), singular values in ~[0.7, 1.2]
>>> bool((torch.linalg.svdvals(O) < 1.3).all())
True
"""
from __future__ import annotations

import math

import torch
from .errors import ArgumentError

# Muon's quintic coefficients (Keller Jordan): steepest slope at 0; the iteration deliberately
# overshoots, so singular values land in roughly [0.7, 1.2] instead of converging to 1.
NS5_COEFFS = (3.4445, -4.7750, 2.0315)
EPS = 1e-7


def _wide(G: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """Transpose tall matrices so the Gram X X^T is the small (M x M) one."""
    tall = G.shape[-2] > G.shape[-1]
    return (G.mT if tall else G), tall


def _ns_iterations(X: torch.Tensor, steps: int, A: torch.Tensor | None = None) -> torch.Tensor:
    """X <- a X + b (X X^T) X + c (X X^T)^2 X, `steps` times; X (..., M, N) wide.

    A: optional precomputed X X^T for the first step (AOL computes it anyway).
    """
    a, b, c = NS5_COEFFS
    for i in range(steps):
        if i > 0 or A is None:
            A = X @ X.mT                            # (.., M, M)
        B = b * A + c * (A @ A)                     # (.., M, M)
        X = a * X + B @ X                           # (.., M, N)
    return X


def polar_ns(G: torch.Tensor, steps: int | None = None, method: str = "ns5") -> torch.Tensor:
    """Approximate polar factor U V^T of G = U S V^T by Newton-Schulz, shape (..., m, n).

    method "ns5": X0 = G / ||G||_F, 5 steps (Muon). "aol4": AOL preconditioning (Turbo-Muon,
    Boissin et al. 2025), then 4 steps. AOL here scales the rows of the wide X by
    diag(sum_j |X X^T|_ij)^(-1/2), which guarantees ||X0||_2 <= 1 (Prach & Lampert 2022) and
    reuses X X^T in the first step, as the Turbo-Muon paper does; methods.md writes the same
    rescaling on the other side (X diag(sum_j |X^T X|_ij)^(-1/2)), which needs the larger Gram.
    Because the starting singular values are larger than after Frobenius scaling, one step fewer
    reaches the same band. The preconditioned polar factor is that of D X, not exactly of X;
    the tests bound the difference.
    """
    if method not in ("ns5", "aol4"):
        raise ArgumentError(f"method must be 'ns5' or 'aol4', not {method!r}")
    steps = (5 if method == "ns5" else 4) if steps is None else int(steps)
    X, tall = _wide(G)
    A = None
    if method == "ns5":
        X = X / X.norm(dim=(-2, -1), keepdim=True).clamp_min(EPS)
    else:
        A = X @ X.mT                                               # (.., M, M)
        d = A.abs().sum(dim=-1).clamp_min(EPS).rsqrt()             # (.., M)
        X = X * d[..., :, None]                                    # D X
        A = A * d[..., :, None] * d[..., None, :]                  # D A D = (DX)(DX)^T
    X = _ns_iterations(X, steps, A)
    return X.mT if tall else X


def _sym_upper_bound(A: torch.Tensor) -> torch.Tensor:
    """An upper bound on lambda_max of symmetric A (..., M, M): min(Frobenius, inf-norm)."""
    fro = A.norm(dim=(-2, -1))
    inf = A.abs().sum(dim=-1).amax(dim=-1)
    return torch.minimum(fro, inf).clamp_min(EPS)


def inv_sqrt_ns(A: torch.Tensor, steps: int = 12, *, scale: torch.Tensor | None = None
                ) -> torch.Tensor:
    """A^(-1/2) of SPD A (..., M, M) by the coupled Newton-Schulz iteration (Higham 2008, 6.3).

    Y0 = A / s, Z0 = I;  T = (3 I - Z Y) / 2;  Y <- Y T;  Z <- T Z;  then Z -> (A / s)^(-1/2).
    s (`scale`, default an upper bound on lambda_max) puts the spectrum in (0, 1], where the
    iteration converges; an eigenvalue x needs about log(1/x) / log(2.25) + 4 steps, so give
    `steps` from the condition number (see `soft_clip`).
    """
    s = _sym_upper_bound(A) if scale is None else torch.as_tensor(scale, dtype=A.dtype)
    s = s.to(A.dtype)[..., None, None]                             # (.., 1, 1)
    eye = torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
    Y, Z = A / s, eye.expand_as(A)
    for _ in range(int(steps)):
        T = 1.5 * eye - 0.5 * (Z @ Y)                              # (.., M, M)
        Y, Z = Y @ T, T @ Z
    return Z / s.sqrt()


def _steps_for(kappa: torch.Tensor) -> int:
    """Coupled-NS steps for spectra in [1/kappa, 1]: small x grows ~2.25x per step, then ~4."""
    k = float(kappa.max()) if kappa.numel() else 1.0
    return int(math.ceil(math.log(max(k, 1.0)) / math.log(2.25))) + 5


def soft_clip(U: torch.Tensor, c: float) -> torch.Tensor:
    """H_c(U) = (I + U U^T / c^2)^(-1/2) U: each singular value s -> s / sqrt(1 + s^2 / c^2).

    Batched over (..., m, n); uses the smaller Gram (U (I + U^T U / c^2)^(-1/2) if tall, the
    same function of U). bf16/fp16 input is computed in float32 and rounded back. No SVD: the inverse square root is the coupled Newton-Schulz iteration,
    with its step count from a bound on the condition number (eigenvalues of I + UU^T/c^2 lie
    in [1, 1 + s1^2/c^2]).
    """
    dtype = U.dtype
    # bf16 cannot resolve (I + UU^T/c^2)^(-1/2) for large s/c (measured 6 % error at
    # s/c = 40): the clip runs in float32 at least and casts back.
    X, tall = _wide(U.float() if dtype in (torch.float16, torch.bfloat16) else U)
    eye = torch.eye(X.shape[-2], dtype=X.dtype, device=X.device)
    A = eye + (X @ X.mT) / (c * c)                                 # (.., M, M), eigs >= 1
    bound = _sym_upper_bound(A)                                    # >= lambda_max
    R = inv_sqrt_ns(A, steps=_steps_for(bound.float()), scale=bound)
    H = R @ X                                                      # (.., M, N)
    return (H.mT if tall else H).to(dtype)


def hard_clip(U: torch.Tensor, c: float) -> torch.Tensor:
    """Singular values min(s, c) by SVD (float32 at least); the reference for `soft_clip`."""
    work = U.float() if U.dtype in (torch.float16, torch.bfloat16) else U
    P, S, Qh = torch.linalg.svd(work, full_matrices=False)
    return ((P * S.clamp_max(c)[..., None, :]) @ Qh).to(U.dtype)

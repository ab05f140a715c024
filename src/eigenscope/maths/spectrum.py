"""Eigenvalues of W^T W (the ESD) through the M x M Gram matrix: much faster than an SVD.

By default the Gram product and the eigenvalue problem run in float32 (float64 products are
several times slower on CPUs). That perturbs each eigenvalue by up to ~1e-5 * lambda_1 (measured
on SmolLM2-135M: median 1e-6, worst 8e-6), so small eigenvalues lose relative accuracy; where the
spectrum reaches down there (lambda_min < REFINE_BELOW * lambda_1) the matrix is redone in
float64. Unrefined matrices thus have every eigenvalue above 1e-4 * lambda_1, known to ~10 %
at worst and far better for the rest; the tail (alpha) and the bulk (MP) are unaffected.
"""
from __future__ import annotations

import torch
from ..errors import ArgumentError

# lambda_min / lambda_1 below this -> recompute in float64 (about 10x the float32 error).
REFINE_BELOW = 1e-4


def gram(W: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
    """(..., m, n) -> (..., M, M) with M = min(m, n): W W^T if wide, W^T W if tall."""
    W = W.to(dtype)
    m, n = W.shape[-2:]
    return W @ W.mT if m <= n else W.mT @ W  # (.., M, N) @ (.., N, M)


def eigvals(W: torch.Tensor, *, precision: str = "auto") -> torch.Tensor:
    """Eigenvalues lambda_i = s_i^2 of W^T W, ascending, float64, shape (..., M).

    precision: "auto" (float32 Gram, float64 where small eigenvalues matter), "float64", "float32".
    Accepts a batch of same-shape matrices (b, m, n). A matrix whose eigenvalues cannot be
    computed at all (see `eigvals_checked`) gets a row of NaN.
    """
    return eigvals_checked(W, precision=precision)[0]


def eigvals_checked(W: torch.Tensor, *, precision: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """(eigenvalues (..., M) as `eigvals`, failed (...) bool): one bad matrix never takes the
    others of its batch down.

    Each matrix is first scaled by a power of two (exact) so that its largest entry is near 1:
    entries of 1e30 would overflow the float32 Gram matrix and entries of 1e-30 (or denormals)
    underflow it to zero; the scale is undone on the float64 eigenvalues. The batch is solved
    in one call; if that call fails or returns non-finite values, each affected matrix is
    solved on its own in float32, then float64, then as an SVD; what still fails is flagged.
    """
    if precision not in ("auto", "float64", "float32"):
        raise ArgumentError(f"precision must be auto, float64 or float32, not {precision!r}")
    flat = W.reshape(-1, *W.shape[-2:])                              # (b, m, n)
    if flat.numel() == 0:
        M = min(W.shape[-2:])
        return (torch.zeros(*W.shape[:-2], M, dtype=torch.float64, device=W.device),
                torch.zeros(W.shape[:-2], dtype=torch.bool, device=W.device))
    scaled, exps = _power_of_two_scaled(flat)
    try:
        lam = _solve(scaled, precision)                              # (b, M) float64
        redo = ~torch.isfinite(lam).all(-1)
    except RuntimeError:  # torch.linalg.LinAlgError: one matrix failed, the whole call with it
        lam = torch.full((flat.shape[0], min(flat.shape[-2:])), float("nan"), dtype=torch.float64,
                         device=flat.device)
        redo = torch.ones(flat.shape[0], dtype=torch.bool, device=flat.device)
    for j in redo.nonzero().flatten().tolist():
        lam[j] = _solve_one(scaled[j], precision)
    lam = lam * torch.exp2(2.0 * exps.double())[:, None]            # undo the scale: s -> s 2^e
    failed = ~torch.isfinite(lam).all(-1)
    return lam.reshape(*W.shape[:-2], lam.shape[-1]), failed.reshape(W.shape[:-2])


# Matrices whose largest entry lies within 2^-SAFE_EXP .. 2^SAFE_EXP are left unscaled (no copy).
SAFE_EXP = 20


def _power_of_two_scaled(W: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(W * 2^-e, e) per matrix with e the exponent of max |W| (max |W 2^-e| in [0.5, 1)).
    Multiplying by a power of two is exact, denormals included; two factors keep each one
    representable in float32 (|e| reaches 149)."""
    # max |w| from the largest and smallest entries: no |W| copy of the batch
    W = W.detach()
    amax = torch.maximum(W.amax(dim=(-2, -1)), -W.amin(dim=(-2, -1))).to(torch.float64)  # (b,)
    amax = torch.where(torch.isfinite(amax) & (amax > 0), amax, torch.ones_like(amax))
    exps = torch.frexp(amax)[1].to(torch.int64)                       # (b,)
    if bool((exps.abs() <= SAFE_EXP).all()):
        return W, torch.zeros_like(exps)
    dtype = torch.promote_types(W.dtype, torch.float32)   # float16's range is too narrow
    half = -(exps // 2)
    f1 = torch.exp2(half.double()).to(dtype)[:, None, None]
    f2 = torch.exp2((-exps - half).double()).to(dtype)[:, None, None]
    return W.to(dtype) * f1 * f2, exps


def _solve(W: torch.Tensor, precision: str) -> torch.Tensor:
    """Batched eigenvalues, float32 Gram then float64 where small eigenvalues matter ("auto")."""
    if precision == "float64":
        return torch.linalg.eigvalsh(gram(W, torch.float64)).clamp_min_(0.0)
    lam = torch.linalg.eigvalsh(gram(W, torch.float32)).double().clamp_min_(0.0)
    if precision == "float32":
        return lam
    redo = (lam[..., :1] < REFINE_BELOW * lam[..., -1:]).reshape(-1)
    # one matrix at a time: a float64 copy and Gram of the whole batch would double its memory
    for j in redo.nonzero().flatten().tolist():
        lam[j] = torch.linalg.eigvalsh(gram(W[j], torch.float64)).clamp_min_(0.0)
    return lam


def _solve_one(W: torch.Tensor, precision: str) -> torch.Tensor:
    """One (m, n) matrix: `_solve`, then a float64 Gram, then the float64 SVD; NaNs if all fail."""
    attempts = (lambda: _solve(W[None], precision)[0],
                lambda: torch.linalg.eigvalsh(gram(W, torch.float64)).clamp_min_(0.0),
                lambda: torch.linalg.svdvals(W.double()).flip(-1).square())
    for attempt in attempts:
        try:
            lam = attempt()
        except RuntimeError:
            continue
        if bool(torch.isfinite(lam).all()):
            return lam
    return torch.full((min(W.shape),), float("nan"), dtype=torch.float64, device=W.device)


def singular_values(W: torch.Tensor, *, precision: str = "auto") -> torch.Tensor:
    """Singular values, descending, float64 (from `eigvals`)."""
    return eigvals(W, precision=precision).flip(-1).sqrt()

"""How far two matrices' top singular subspaces are apart: principal angles (methods.md §1).

For orthonormal bases Qa, Qb (d, k) of two k-dimensional subspaces, the cosines of the principal
angles are the singular values of Qa^T Qb (k, k). Overlap = mean cos^2 = ||Qa^T Qb||_F^2 / k:
1 for the same subspace, k'/k when k' directions are shared and the rest orthogonal.
"""
from __future__ import annotations

import math

import torch


def top_subspaces(W: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(U_k (m, k), V_k (n, k)): the top-k left and right singular vectors of W (m, n)."""
    U, _, Vh = torch.linalg.svd(W, full_matrices=False)   # (m, M), (M,), (M, n)
    return U[:, :k], Vh[:k].T


def principal_cosines(Qa: torch.Tensor, Qb: torch.Tensor) -> torch.Tensor:
    """Cosines of the principal angles between span(Qa) and span(Qb), descending, in [0, 1]."""
    return torch.linalg.svdvals(Qa.T @ Qb).clamp(0.0, 1.0)   # (k, d) @ (d, k)


def subspace_overlap(Qa: torch.Tensor, Qb: torch.Tensor) -> tuple[float, float]:
    """(overlap = mean cos^2, largest principal angle in degrees).

    The angle is atan2(sin, cos): acos alone loses small angles (float32 cos = 1 - 1e-7 reads as
    0.03 degrees); the largest sine is ||(I - Qa Qa^T) Qb||_2, accurate there.
    """
    c = principal_cosines(Qa, Qb).double()
    sin = torch.linalg.matrix_norm(Qb - Qa @ (Qa.T @ Qb), ord=2).double()   # (d, k)
    return float((c ** 2).mean()), math.degrees(math.atan2(float(sin.clamp(0, 1)), float(c.min())))


def compare_matrices(Wa: torch.Tensor, Wb: torch.Tensor, k: int = 8) -> dict:
    """Relative change ||Wb - Wa||_F / ||Wa||_F and left/right top-k subspace overlaps."""
    nan = float("nan")
    if Wa.shape != Wb.shape or not (torch.isfinite(Wa).all() and torch.isfinite(Wb).all()):
        return dict(rel_change=nan, overlap_left=nan, overlap_right=nan, max_angle_deg=nan)
    Wa, Wb = Wa.float(), Wb.float()
    k = max(1, min(k, *Wa.shape))
    na = float(torch.linalg.matrix_norm(Wa))
    rel = float(torch.linalg.matrix_norm(Wb - Wa)) / na if na > 0 else nan
    (Ua, Va), (Ub, Vb) = top_subspaces(Wa, k), top_subspaces(Wb, k)
    ol, al = subspace_overlap(Ua, Ub)
    orr, ar = subspace_overlap(Va, Vb)
    return dict(rel_change=rel, overlap_left=ol, overlap_right=orr, max_angle_deg=max(al, ar))

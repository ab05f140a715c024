"""Closed forms of low-rank compression (methods.md §2). Pure functions on float64 tensors.

Shapes: W (m, n) as stored by nn.Linear (out x in); G = X X^T (n, n) over calibration tokens;
B (m, r), A (r, n) with W' = B A.
"""
from __future__ import annotations

import torch


def useful_rank(m: int, n: int) -> int:
    """Largest rank that still saves parameters: r (m + n) < m n."""
    return max((m * n - 1) // (m + n), 0)


def whitening_factor(G: torch.Tensor) -> torch.Tensor:
    """L (n, n) with L L^T = G, from eigh — never Cholesky, calibration Grams are often singular."""
    G = 0.5 * (G + G.T)  # eigh reads one triangle; symmetrise float noise first
    ev, Q = torch.linalg.eigh(G.double())
    return Q * ev.clamp_min(0).sqrt()  # (n, n) = Q diag(sqrt(max(ev, 0)))


def top_left_singular(M: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(U_r (m, r), all singular values s) of M through the eigenproblem of its smaller Gram.

    3-5x faster than an SVD on CPU. Squaring costs precision only in singular values below
    ~1e-8 s_1 (float64), whose directions carry no weight in a truncation loss.
    """
    M = M.double()
    m, n = M.shape
    if m <= n:
        ev, Q = torch.linalg.eigh(M @ M.T)                    # (m, m)
        s, U = ev.flip(0).clamp_min(0).sqrt(), Q.flip(1)
        return U[:, :rank], s
    ev, Q = torch.linalg.eigh(M.T @ M)                        # (n, n): right vectors
    s, V = ev.flip(0).clamp_min(0).sqrt(), Q.flip(1)[:, :rank]
    U = M @ V                                                 # (m, r) = U_r diag(s_r)
    U = U / U.norm(dim=0).clamp_min(torch.finfo(M.dtype).tiny)
    if rank and float(s[rank - 1]) < 1e-6 * float(s[0]):      # tiny s_i: re-orthonormalise
        U, _ = torch.linalg.qr(U)
    return U, s


def singular_values_of(M: torch.Tensor) -> torch.Tensor:
    """All singular values of M (descending, float64) from the eigenvalues of its smaller Gram:
    no vectors, several times faster than `top_left_singular` or an SVD."""
    M = M.double()
    K = M @ M.T if M.shape[0] <= M.shape[1] else M.T @ M
    return torch.linalg.eigvalsh(K).flip(0).clamp_min(0).sqrt()


def tail_energy(s: torch.Tensor) -> torch.Tensor:
    """e[r] = sum_{i >= r} s_i^2 for r = 0..len(s): the squared loss of keeping r values."""
    sq = s.double() ** 2
    return torch.cat([sq.flip(0).cumsum(0).flip(0), sq.new_zeros(1)])


def truncate_svd(W: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """min ||W - BA||_F: B = U_r diag(sqrt s), A = diag(sqrt s) Vh_r (balanced factors)."""
    W = W.double()
    U, s = top_left_singular(W, rank)                              # U (m, r)
    root = s[:rank].sqrt()
    # A = diag(sqrt s) Vh_r = diag(1/sqrt s) U_r^T W; a floor keeps null directions finite
    inv = 1.0 / root.clamp_min(max(1e-8 * float(root[0]), 1e-300) if rank else 1.0)
    return U * root, inv[:, None] * (U.T @ W)


def truncate_scaled(W: torch.Tensor, rank: int, *, left: torch.Tensor | None = None,
                    right: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """min ||diag(left) (W - BA) diag(right)||_F for positive vectors left (m,), right (n,).

    Covers ASVD (right = activation scale) and FWSVD (left = Fisher row weight).
    """
    W = W.double()
    lw = torch.ones(W.shape[0], dtype=W.dtype) if left is None else left.double()
    rw = torch.ones(W.shape[1], dtype=W.dtype) if right is None else right.double()
    B, A = truncate_svd(lw[:, None] * W * rw, rank)
    return B / lw[:, None], A / rw  # undo the scaling on each side


def _whitened_left(DW: torch.Tensor, G: torch.Tensor, rank: int, L: torch.Tensor | None):
    """(U_r, t): top left singular vectors and all singular values of D W L, L L^T = G.

    A wide (or square) D W needs no L: (D W L)(D W L)^T = D W G W^T D, an m x m eigenproblem,
    so the n x n eigendecomposition of G is skipped. A tall one goes through L (n x n)."""
    m, n = DW.shape
    if m <= n and L is None:
        K = DW @ G.double() @ DW.T                              # (m, m)
        ev, Q = torch.linalg.eigh(0.5 * (K + K.T))
        return Q.flip(1)[:, :rank], ev.flip(0).clamp_min(0).sqrt()
    return top_left_singular(DW @ (whitening_factor(G) if L is None else L), rank)


def whitened_spectrum(W: torch.Tensor, G: torch.Tensor, d_out: torch.Tensor | None = None, *,
                      L: torch.Tensor | None = None) -> torch.Tensor:
    """Singular values t of D W L: the loss of rank r is exactly sum_{i>r} t_i^2.
    L (n, n) = whitening_factor(G) may be passed in when several matrices share G."""
    DW = W.double() if d_out is None else d_out.double()[:, None] * W.double()  # (m, n)
    m, n = DW.shape
    if m <= n and L is None:   # the singular values of D W L without L (see _whitened_left)
        K = DW @ G.double() @ DW.T                                              # (m, m)
        return torch.linalg.eigvalsh(0.5 * (K + K.T)).flip(0).clamp_min(0).sqrt()
    return singular_values_of(DW @ (whitening_factor(G) if L is None else L))


def truncate_whiten(W: torch.Tensor, G: torch.Tensor, rank: int, *, d_out: torch.Tensor | None = None,
                    L: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """min over rank r of ||D (W - W') X||_F (SVD-LLM; D = diag(d_out) optional, else I).

    W' = D^-1 U_r U_r^T D W, U_r the top left singular vectors of D W L, L L^T = G.
    Returns B (m, r) = D^-1 U_r, A (r, n) = U_r^T D W, and t (singular values of D W L).
    """
    W = W.double()
    DW = W if d_out is None else d_out.double()[:, None] * W  # (m, n)
    U, t = _whitened_left(DW, G, rank, L)                      # U (m, r)
    A = U.T @ DW                                               # (r, n)
    B = U if d_out is None else U / d_out.double()[:, None]    # (m, r)
    return B, A, t


def compensated_target(W: torch.Tensor, G_oc: torch.Tensor, G_cc: torch.Tensor, *,
                       damp: float = 1e-2) -> torch.Tensor:
    """W* = W X_o X_c^T (X_c X_c^T + eps I)^-1 with eps = damp * trace(G_cc) / n.

    The damping is relative to the trace so it means the same for every layer; a tiny eps lets
    W* fit the calibration tokens exactly and overfit (302 -> 5400 ppl in the issue).
    """
    G_cc = G_cc.double()
    n = G_cc.shape[0]
    eps = damp * float(torch.trace(G_cc)) / n + 1e-12
    rhs = W.double() @ G_oc.double()  # (m, n)
    # solve (G_cc + eps I) Z^T = rhs^T, G_cc symmetric
    return torch.linalg.solve(G_cc + eps * torch.eye(n, dtype=G_cc.dtype), rhs.T).T


def pair_error(W: torch.Tensor, Wc: torch.Tensor, H_oo: torch.Tensor, H_oc: torch.Tensor,
               H_cc: torch.Tensor) -> float:
    """||W X_o - Wc X_c||_F^2 from Gram matrices only (used on a held-out slice)."""
    W, Wc = W.double(), Wc.double()
    return float(((W @ H_oo) * W).sum() - 2 * ((W @ H_oc) * Wc).sum() + ((Wc @ H_cc) * Wc).sum())

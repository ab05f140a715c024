"""Group-wise affine weight quantization and its low-rank error correction. Pure tensor functions.

Codes q are integers in [0, 2^bits - 1] stored as uint8, one group of `g` consecutive inputs
per (row, group) pair sharing a scale and a zero:  W ~= (q - zero) * scale,
q (m, n), scale and zero (m, n / g). 4-bit codes pack two per byte (low nibble first).

Error correction (QERA, Zhang et al. 2024): given the quantized W_q, the rank-r C minimising the
output error ||(W - W_q - C) X||_F is the whitened truncation of E = W - W_q, the same closed
form as SVD-LLM's: C = U_r U_r^T E, U_r the top left singular vectors of E L, L L^T = X X^T
(with an optional output weighting D as in `truncate_whiten`).

    >>> q = torch.tensor([[1, 15, 0, 7]], dtype=torch.uint8)
    >>> unpack4(pack4(q), 4).tolist()
    [[1, 15, 0, 7]]
"""
from __future__ import annotations

import torch

from .lowrank import truncate_whiten


def pack4(q: torch.Tensor) -> torch.Tensor:
    """(m, n) codes in [0, 15] -> (m, ceil(n / 2)) uint8, element 2j in the low nibble (an odd
    n gets a zero pad nibble)."""
    q = q.to(torch.uint8)
    if q.shape[1] % 2:
        q = torch.cat([q, q.new_zeros(q.shape[0], 1)], 1)
    return q[:, 0::2] | (q[:, 1::2] << 4)


def unpack4(p: torch.Tensor, n: int) -> torch.Tensor:
    """Inverse of pack4: (m, ceil(n / 2)) uint8 -> (m, n) uint8 codes."""
    out = torch.stack([p & 15, p >> 4], dim=-1)  # (m, n/2, 2)
    return out.reshape(p.shape[0], -1)[:, :n]


def dequantize(q: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, *,
               dtype=torch.float32) -> torch.Tensor:
    """W (m, n) from codes q (m, n) and scale, zero (m, n / g)."""
    m, n = q.shape
    groups = scale.shape[1]
    w = q.view(m, groups, n // groups).to(dtype)                   # (m, G, g)
    w = (w - zero.to(dtype)[..., None]) * scale.to(dtype)[..., None]
    return w.view(m, n)


def round_to_nearest(W: torch.Tensor, bits: int, group: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Min-max asymmetric quantization per group (the reference the library backends must beat
    or match): (q (m, n) uint8, scale (m, n/g), zero (m, n/g))."""
    m, n = W.shape
    Wg = W.double().view(m, n // group, group)
    lo, hi = Wg.amin(-1), Wg.amax(-1)
    top = 2 ** bits - 1
    scale = ((hi - lo) / top).clamp_min(1e-12)
    zero = -lo / scale
    q = (Wg / scale[..., None] + zero[..., None]).round().clamp(0, top)
    return q.view(m, n).to(torch.uint8), scale, zero


def qera_factors(W: torch.Tensor, W_q: torch.Tensor, G: torch.Tensor, rank: int, *,
                 d_out: torch.Tensor | None = None, L: torch.Tensor | None = None):
    """(B (m, r), A (r, n)) minimising ||D (W - W_q - B A) X||_F, G = X X^T (n, n)."""
    E = W.double() - W_q.double()                                  # (m, n) quantization error
    B, A, _ = truncate_whiten(E, G, rank, d_out=d_out, L=L)
    return B, A


def output_error(W: torch.Tensor, W_hat: torch.Tensor, G: torch.Tensor) -> float:
    """||(W - W_hat) X||_F^2 = trace(E G E^T) from the Gram matrix alone."""
    E = W.double() - W_hat.double()
    return float(((E @ G.double()) * E).sum())

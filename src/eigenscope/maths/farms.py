"""FARMS: alpha without aspect-ratio bias (methods.md §1; "Eigenspectrum analysis of neural
networks without aspect ratio bias", Hu et al. 2025).

Square windows of side M' = min(M, window) slide over W with stride M'/2 in both directions (the
last window sits flush with the edge); each window's eigenvalues are divided by M' (its own size),
all are pooled, and the power law is fitted on the pool. Every window has aspect ratio 1, so
matrices of different shapes give comparable alphas.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .powerlaw import fit_powerlaw
from .spectrum import eigvals

COLUMNS = ("farms_alpha",)

# Window cap: a seeded sample of at most 4 windows per matrix. The window eigenvalue problems
# are FARMS's whole cost (a 512-window costs ~13 ms; 1536 x 576 has 10 windows, the 49152 x 576
# embedding 382); 4 windows already pool >= 4 M' eigenvalues, and the aspect-ratio test holds
# with this cap (FARMS spread of medians < 3.5 over ratios 1-16, plain alpha's > 2x that).
MAX_WINDOWS = 4
# xmin candidates evaluated exactly on the pool before local refinement (see fit_powerlaw):
# keeps the O(candidates x pool) KS work at ~256 x 32768 instead of 32768^2 (the local
# refinement around the best grid point then searches exactly).
MAX_CANDIDATES = 256
# The tail must hold >= 10 eigenvalues per pooled window (fit_powerlaw's n >= 10 for one
# matrix). With a fixed 10 the KS search on a big pool settles on the last few eigenvalues at
# the MP edge and alpha explodes with the pool size (Gaussian 256 x 4096, 31 windows: alpha
# 37-68 over 4 seeds, against 4-7 for 256 x 256), which is the aspect-ratio drift FARMS removes.
MIN_TAIL_PER_WINDOW = 10


def window_starts(size: int, side: int) -> list[int]:
    """Offsets 0, side/2, side, ... plus the last window flush with the edge."""
    stride = max(side // 2, 1)
    starts = list(range(0, size - side + 1, stride))
    if starts[-1] != size - side:
        starts.append(size - side)
    return starts


def window_corners(m: int, n: int, side: int, *, max_windows: int = MAX_WINDOWS,
                   seed: int = 0) -> list[tuple[int, int]]:
    """Top-left corners of the windows, at most max_windows of them (a seeded sample)."""
    corners = [(r, c) for r in window_starts(m, side) for c in window_starts(n, side)]
    if len(corners) > max_windows:
        pick = np.random.default_rng(seed).choice(len(corners), max_windows, replace=False)
        corners = [corners[i] for i in sorted(pick)]
    return corners


def farms_windows(W: torch.Tensor, *, window: int = 512, max_windows: int = MAX_WINDOWS,
                  seed: int = 0) -> torch.Tensor:
    """(b, M', M') batch of square windows of W (at most max_windows, picked with `seed`)."""
    m, n = W.shape
    side = min(m, n, window)
    corners = window_corners(m, n, side, max_windows=max_windows, seed=seed)
    return torch.stack([W[r:r + side, c:c + side] for r, c in corners])


def farms_alpha(W: torch.Tensor, *, window: int = 512, max_windows: int = MAX_WINDOWS,
                seed: int = 0) -> dict:
    """{"farms_alpha": alpha of the pooled, size-normalised window ESDs} (NaN if undefined)."""
    if W.dim() != 2 or min(W.shape) < 2 or not bool(torch.isfinite(W).all()):
        return dict.fromkeys(COLUMNS, math.nan)
    wins = farms_windows(W, window=window, max_windows=max_windows, seed=seed)  # (b, M', M')
    # float32 Gram, no float64 refinement: square windows always reach down to ~0 (the MP hard
    # edge), so "auto" would redo every window in float64 (2.5-3x slower, measured), yet the
    # bottom of the pool never sets the tail; float32 is exact to ~1e-5 lambda_1 there.
    ev = eigvals(wins, precision="float32")                                   # (b, M')
    pooled = (ev / wins.shape[-1]).reshape(-1).cpu().numpy()                  # (b M',)
    fit = fit_powerlaw(pooled, min_tail=MIN_TAIL_PER_WINDOW * wins.shape[0],
                       max_candidates=MAX_CANDIDATES)
    return {"farms_alpha": fit["alpha"]}

"""Randomization test: shuffle every entry of W (fixed seed) and compare ESDs (methods.md §1).

A shuffled matrix keeps the entries and loses all correlations, so its ESD is MP-like; what sticks
out above its own MP edge comes from single large entries ("correlation traps", WeightWatcher).
The spike cut is the one of `mp.fit_mp` (edge + Tracy-Widom and sigma-error margins). A large
entry mean also survives shuffling (a rank-one spike of size ~ mean^2 m n) and counts as a trap.

Up to M = min(m, n) = FULL_SPECTRUM_MAX the whole spectrum of the shuffled matrix S is computed
(float32 Gram + eigvalsh). Above it that eigenvalue problem costs as much as W's own (measured,
one thread, 4096 x 4096 Gaussian: Gram + eigvalsh 5.1 s against 1.0 s for what replaces it:
0.45 s for four 1024-blocks, 0.56 s of Lanczos), so both columns come from less and mean
slightly different things:
- Noise level: sigma^2 is the MP median fit of the pooled spectra of the k = floor(M / M')
  disjoint diagonal blocks of S of min side M' = BLOCK_SIDE (S's aspect ratio; each a uniform
  sample of W's entries; eigenvalues times N / N' to S's scale, as the mean eigenvalue of an
  i.i.d. matrix grows with its long side N). The cut's sigma-error margin is that of a median
  of sqrt(k) M' eigenvalues (`mp.mp_cut(median_of=...)`): k independent medians averaged.
- rand_traps: S's eigenvalues above that cut, by Lanczos (ARPACK on v -> S^T (S v), the 1, 4,
  16, 32 largest until one is below the cut; more than 32: the whole spectrum after all, the
  full path's answer at ~1.5 x its cost). On Gaussian noise and on planted large entries the
  count is the whole-spectrum one (tests). On heavy tails the blocks' median is lower than S's
  (Student t, df = 3: by 7 % at 300 x 300, 3.6 % at 2048 x 2048), so the cut is lower and
  more eigenvalues just above the MP edge count: 4-12 against 3-7 on the tests' Student-t
  matrices (seeds 0-7), 23 against 16 at 2048 x 2048.
- rand_distance: S's spectrum is stood in for by its eigenvalues above the cut and M - t
  quantiles of the blocks' eigenvalues below it (`stand_in_spectrum`): M values like S's,
  with the single-entry spikes where S has them (the blocks hold few of the large entries and
  would put their spikes N / N' too high). Measured change against the whole spectrum on the
  tests' matrices (four blocks, M = 384-512, seeds 0-7; the tests run seeds 0-1 and bound it
  by 0.05): |change| <= 0.035 Gaussian, 0.039 planted entries, 0.008 low rank + noise, 0.044
  Student t (which the blocks shift up, +0.014 on average); at M = 200-400 up to 0.062; at
  2048 and 4096 square, <= 0.011. A different shuffle seed moves the whole-spectrum value by
  as much (up to 0.06 at M = 200-400); all far below the gap between noise (< 0.1) and
  structure (> 0.7).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .mp import mp_cut, mp_fit
from .powerlaw import positive_spectrum
from .spectrum import eigvals

COLUMNS = ("rand_traps", "rand_distance")

# Largest min(m, n) whose shuffled matrix gets its whole spectrum (SmolLM2's 576 does; the
# 4096-wide matrices of 7B models use blocks and Lanczos, module doc).
FULL_SPECTRUM_MAX = 1024
# Min side of the shuffled blocks: a 1024-block's Gram + eigvalsh costs ~1/64 of a 4096-wide
# matrix's, and its median alone is within ~0.2 % (dmed at gamma = 1).
BLOCK_SIDE = 1024
# ARPACK's stopping rule: |residual| <= tol * Ritz value, so each returned value lies within
# that fraction of an eigenvalue; a value within AMBIGUOUS of the largest from the cut is
# settled by the whole spectrum instead (float32 eigenvalues are themselves only good to ~1e-6
# of the largest).
LANCZOS_TOL = 1e-6
AMBIGUOUS = 1e-5
# More traps than this: the whole spectrum is cheaper than growing the Lanczos basis (measured,
# one thread, 4096 x 4096 Student t: the 32 largest in 1.7 s, the 64 largest in 9.5 s, the whole
# spectrum in 5.1 s).
LANCZOS_MAX_K = 32


def shuffled(W: torch.Tensor, *, seed: int = 0) -> torch.Tensor:
    """All entries of W permuted by a seeded CPU generator (the same permutation on any device)."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    # int32 indices and index_select: for a 49152 x 576 bf16 matrix 1.5 s + 0.5 s against
    # 2.1 s + 1.5 s for int64 and fancy indexing (measured, one thread)
    dtype = torch.int32 if W.numel() < 2**31 else torch.int64
    perm = torch.randperm(W.numel(), generator=g, dtype=dtype).to(W.device)
    return W.reshape(-1).index_select(0, perm).reshape(W.shape)


def traps(lam_shuffled, m: int, n: int) -> float:
    """Eigenvalues of the shuffled matrix above its own MP spike cut (NaN if no MP fit)."""
    _, _, cut = mp_fit(lam_shuffled, m, n)
    if math.isnan(cut):
        return math.nan
    return int((np.asarray(lam_shuffled, dtype=np.float64) / max(m, n) > cut).sum())


def js_distance(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon distance, base 2 (in [0, 1]), of two histograms (normalised here)."""
    p, q = p / p.sum(), q / q.sum()
    mix = 0.5 * (p + q)

    def kl(a):  # KL(a || mix) in bits, 0 log 0 = 0
        nz = a > 0
        return float((a[nz] * np.log2(a[nz] / mix[nz])).sum())

    return math.sqrt(max(0.5 * kl(p) + 0.5 * kl(q), 0.0))


def log_esd_distance(lam_a, lam_b, *, bins: int | None = None) -> float:
    """JS distance of the log10-ESD histograms of two spectra on common bins.

    Bins span both spectra; their number follows Rice's rule, 2 M^(1/3) (between 10 and 100):
    fine enough to see a shifted bulk, coarse enough that two draws of one ensemble look alike.
    Rounding-noise eigenvalues (below the relative floor of `positive_spectrum`) are left out.
    """
    a, b = np.log10(positive_spectrum(lam_a)), np.log10(positive_spectrum(lam_b))
    if a.size == 0 or b.size == 0:
        return math.nan
    if bins is None:
        bins = int(np.clip(round(2 * max(a.size, b.size) ** (1 / 3)), 10, 100))
    lo, hi = min(a.min(), b.min()), max(a.max(), b.max())
    edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
    return js_distance(np.histogram(a, edges)[0].astype(float),
                       np.histogram(b, edges)[0].astype(float))


def shuffled_blocks(S: torch.Tensor, side: int) -> tuple[torch.Tensor, float]:
    """(k, m', n') disjoint blocks on S's diagonal with S's aspect ratio and min side `side`
    (as many as fit), and N / N', the factor that puts their eigenvalues on S's scale."""
    m, n = S.shape
    f = side / min(m, n)
    mb, nb = max(2, round(m * f)), max(2, round(n * f))
    k = max(1, min(m // mb, n // nb))
    blocks = torch.stack([S[i * mb:(i + 1) * mb, i * nb:(i + 1) * nb] for i in range(k)])
    return blocks, max(m, n) / max(mb, nb)


def top_eigvals(S: torch.Tensor, above: float, *, seed: int = 0,
                max_k: int = LANCZOS_MAX_K) -> np.ndarray | None:
    """Eigenvalues of S's Gram (S^T S if tall, S S^T if wide) larger than `above`, descending.

    Lanczos (ARPACK, implicitly restarted, from a seeded start) on v -> Gram v without forming
    the Gram: the k = 1, 4, 16, ... (at most max_k) largest until the smallest of them is at or
    below `above`. None when more than max_k are above, when a value is within AMBIGUOUS of
    `above`, or when ARPACK fails: the caller then uses the whole spectrum.
    """
    from scipy.sparse.linalg import ArpackError, LinearOperator, eigsh

    S = S.detach().float().cpu().contiguous()                       # (m, n)
    m, n = S.shape
    M = min(m, n)

    def gram_times(v: np.ndarray) -> np.ndarray:            # (M,) -> (M,), float64 Lanczos
        x = torch.from_numpy(np.asarray(v, dtype=np.float32).reshape(-1))
        y = S.mT @ (S @ x) if m >= n else S @ (S.mT @ x)   # two passes over S, no Gram
        return y.double().numpy()

    op = LinearOperator((M, M), matvec=gram_times, dtype=np.float64)
    v0 = np.random.default_rng(seed).standard_normal(M)
    k, cap = 1, min(max_k, M - 2)                           # ARPACK needs k < M
    while k <= cap:
        try:
            vals = eigsh(op, k=k, which="LA", tol=LANCZOS_TOL, v0=v0, return_eigenvectors=False)
        except ArpackError:                                 # includes ArpackNoConvergence
            return None
        vals = np.sort(vals)[::-1]                                  # (k,) descending
        if np.any(np.abs(vals - above) <= AMBIGUOUS * max(vals[0], above)):
            return None
        if vals[-1] <= above:
            return vals[vals > above]
        if k == cap:
            return None
        k = min(4 * k, cap)
    return None


def stand_in_spectrum(bulk: np.ndarray, top: np.ndarray, M: int) -> np.ndarray:
    """(M,) stand-in for S's spectrum: S's own eigenvalues above the cut (`top`, t of them)
    and M - t evenly spaced quantiles of the blocks' eigenvalues below it (`bulk`, S's scale)."""
    if bulk.size == 0:
        return top
    q = (np.arange(M - top.size) + 0.5) / (M - top.size)
    return np.concatenate([np.quantile(bulk, q), top])


def _full_test(S: torch.Tensor, lam) -> dict:
    """rand_traps and rand_distance from the whole spectrum of the shuffle S."""
    # float32 is enough here: traps sit at the top of the spectrum, and the distance compares
    # log-histograms whose bottom bins the float64 refinement would barely move.
    lam_r = eigvals(S, precision="float32").cpu().numpy()           # (M,) ascending
    return {"rand_traps": traps(lam_r, *S.shape), "rand_distance": log_esd_distance(lam, lam_r)}


def _block_test(S: torch.Tensor, lam, *, seed: int, side: int) -> dict:
    """rand_traps and rand_distance of a large matrix from its shuffle S (module doc)."""
    m, n = S.shape
    M, N = min(m, n), max(m, n)
    blocks, scale = shuffled_blocks(S, side)                        # (k, m', n')
    k, mb, nb = blocks.shape
    lam_b = eigvals(blocks, precision="float32").cpu().numpy().ravel() * scale  # (k M',)
    s2, _, _ = mp_fit(lam_b, m, n)                                  # sigma^2 from the blocks
    if math.isnan(s2):                                              # no noise level, no cut
        return {"rand_traps": math.nan, "rand_distance": log_esd_distance(lam, lam_b)}
    # The pooled median averages k independent block medians: its error is one block's over
    # sqrt(k), as for the median of sqrt(k) M' eigenvalues of one matrix.
    _, cut = mp_cut(s2, M, N, median_of=round(min(mb, nb) * math.sqrt(k)))
    above = cut * N                                                 # on the S^T S scale
    top = top_eigvals(S, above, seed=seed)                          # (t,) descending
    if top is None:                                                 # many traps or a near-tie
        return _full_test(S, lam)
    bulk = lam_b[lam_b <= above]        # a block's own spikes are misplaced: S's replace them
    return {"rand_traps": int(top.size),
            "rand_distance": log_esd_distance(lam, stand_in_spectrum(bulk, top, M))}


def randomization_test(W: torch.Tensor, lam: np.ndarray, *, seed: int = 0,
                       full_spectrum_max: int = FULL_SPECTRUM_MAX,
                       block_side: int = BLOCK_SIDE) -> dict:
    """rand_traps and rand_distance of W (m x n) given its eigenvalues `lam` (of W^T W).

    full_spectrum_max: largest min(m, n) for which the shuffled matrix's whole spectrum is
    computed; above it, blocks of min side block_side (<= full_spectrum_max) and Lanczos
    stand in for it (module doc).
    """
    m, n = W.shape
    if min(m, n) < 2 or not bool(torch.isfinite(W).all()) or not bool(W.any()):
        return dict.fromkeys(COLUMNS, math.nan)
    S = shuffled(W, seed=seed)
    if min(m, n) > max(full_spectrum_max, block_side):
        return _block_test(S, lam, seed=seed, side=block_side)
    return _full_test(S, lam)

"""Run the selected metric groups on one matrix and its eigenvalues; one place maps groups to maths."""
from __future__ import annotations

import math

import numpy as np
import torch

from .schema import METRIC_GROUPS


def _norms(W, lam, m, n, seed):
    from ..maths.norms import norm_metrics
    return norm_metrics(lam, m, n)


def _powerlaw(W, lam, m, n, seed):
    from ..maths.powerlaw import fit_powerlaw
    return fit_powerlaw(lam)


def _mp(W, lam, m, n, seed):
    from ..maths.mp import mp_metrics
    return mp_metrics(lam, m, n)


def _randomize(W, lam, m, n, seed):
    from ..maths.randomize import randomization_test
    return randomization_test(W, lam, seed=seed)


def _farms(W, lam, m, n, seed):
    from ..maths.farms import farms_alpha
    return farms_alpha(W)


def _weibull(W, lam, m, n, seed):
    from ..maths.weibull import fit_weibull
    return fit_weibull(W, seed=seed, max_samples=WEIBULL_SAMPLES)


# Entries sampled for the Weibull fit (methods.md: at most 10^6). Sorting 10^6 float64 values
# per matrix cost ~0.1 s, more than its eigenvalues; with 2^17 draws the fitted k moves by
# ~0.003 (standard error), far below the differences the metric is read for.
WEIBULL_SAMPLES = 2**17

# metric group -> function(W, lam, m, n, seed) -> dict of that group's columns
GROUP_FUNCS = {
    "norms": _norms, "powerlaw": _powerlaw, "mp": _mp,
    "randomize": _randomize, "farms": _farms, "weibull": _weibull,
}
assert set(GROUP_FUNCS) == set(METRIC_GROUPS)

# Groups that still mean something for a 1 x n matrix (one singular value).
DEGENERATE_OK = ("norms",)


def matrix_status(W: torch.Tensor, meta=None) -> tuple[str, str]:
    """(status, warning) of a matrix before any metric: bad tensors get a status, not an error.
    A source that could not read the tensor says why in `meta.problem` (status, warning)."""
    problem = getattr(meta, "problem", None)
    if problem:
        return problem
    m, n = W.shape
    # One reduction pass in the common case: a finite, non-zero sum of |w| means finite and
    # non-zero entries (the sum can overflow for huge finite entries: then count exactly).
    # vector_norm reduces |w| without materialising it (W.abs() would copy a 250 MiB matrix).
    total = float(torch.linalg.vector_norm(W, 1, dtype=torch.float32))
    if not math.isfinite(total):
        bad = int((~torch.isfinite(W)).sum())
        if bad:
            return "nan_inf", f"{bad} of {W.numel()} entries are NaN or Inf; metrics skipped"
    elif total == 0.0:
        return "zero", "all entries are zero; metrics skipped"
    if min(m, n) < 2:
        return "degenerate", f"a {m}x{n} matrix has one singular value; only norms computed"
    return "ok", ""


def solve_spectra(mats: list, *, dev, precision: str) -> list[tuple]:
    """(eigenvalues ascending as numpy float64, None) per same-shape matrix, or (None, warning)
    for a matrix whose eigenvalue problem failed every way (status "failed"); one call."""
    from ..maths.spectrum import eigvals_checked

    if not mats:
        return []
    stack = mats[0][None] if len(mats) == 1 else torch.stack(mats)   # (b, m, n); one: no copy
    lam, failed = eigvals_checked(stack.to(dev), precision=precision)  # (b, M), (b,)
    lam, failed = lam.cpu().numpy(), failed.cpu().tolist()
    return [(None, FAILED_WARNING) if f else (lam[j], None) for j, f in enumerate(failed)]


FAILED_WARNING = "eigenvalues failed in float32, float64 and as an SVD; metrics skipped"


def compute_metrics(W: torch.Tensor, lam: np.ndarray, groups, *, status: str, seed: int) -> dict:
    """Every selected group's columns for one matrix; a failing group gives NaNs and a warning."""
    m, n = W.shape
    out, warnings = {}, []
    for g in groups:
        if status != "ok" and not (status == "degenerate" and g in DEGENERATE_OK):
            continue
        try:
            vals = GROUP_FUNCS[g](W, lam, m, n, seed)
        except Exception as e:  # a metric failure must not stop the analysis of the model
            warnings.append(f"{g} failed: {type(e).__name__}: {e}")
            continue
        missing = [k for k in METRIC_GROUPS[g] if k not in vals]
        if missing:  # a bug, not a property of this matrix: never an all-NaN column
            raise RuntimeError(f"metric group {g!r} returned no {missing}; its maths module "
                               "declares them in COLUMNS")
        out.update({k: _as_float(vals[k]) for k in METRIC_GROUPS[g]})
    return {"metrics": out, "warnings": warnings}


def _as_float(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan

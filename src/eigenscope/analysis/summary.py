"""Model-level figures from an analysis. Failed fits (NaN, bad status) never enter an average."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .schema import ALPHA_BAND, GOOD_STATUSES


def summary(df: pd.DataFrame, *, by: str | None = None) -> pd.Series | pd.DataFrame:
    """Summarise an analysis: counts, and medians/means over the matrices whose fit succeeded.

    by -- a column to group by ("role" or "block") to get one row per group.

    >>> import pandas as pd, numpy as np
    >>> df = pd.DataFrame({"status": ["ok", "ok", "nan_inf"], "alpha": [3.0, np.nan, np.nan]})
    >>> summary(df)["alpha_mean"], summary(df)["alpha_fitted"]
    (3.0, 1)
    """
    if by is not None:
        return pd.DataFrame({k: summary(g) for k, g in df.groupby(by, sort=True)}).T
    ok = df[df["status"].isin(GOOD_STATUSES)] if "status" in df else df
    out = {
        "matrices": len(df),
        "ok": int((df["status"] == "ok").sum()) if "status" in df else len(df),
        "bad": int((~df["status"].isin(GOOD_STATUSES)).sum()) if "status" in df else 0,
    }
    alpha = _finite(ok, "alpha")
    out["alpha_fitted"] = int(alpha.size)
    out["alpha_mean"] = _stat(alpha, np.mean)
    out["alpha_median"] = _stat(alpha, np.median)
    out["under_trained"] = int((alpha > ALPHA_BAND[1]).sum())
    out["over_fit"] = int((alpha < ALPHA_BAND[0]).sum())
    for col in ("alpha_weighted", "log_alpha_norm", "stable_rank", "effective_rank",
                "farms_alpha", "mp_softrank", "weibull_k"):
        out[f"{col}_mean"] = _stat(_finite(ok, col), np.mean)
    traps = _finite(ok, "rand_traps")
    out["correlation_traps"] = int((traps > 0).sum())
    return pd.Series(out, dtype=object)


def _finite(df: pd.DataFrame, col: str) -> np.ndarray:
    if col not in df:
        return np.array([])
    v = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float)
    return v[np.isfinite(v)]


def _stat(v: np.ndarray, f) -> float:
    return float(f(v)) if v.size else float("nan")

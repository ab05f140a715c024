"""`build_report`: one self-contained HTML file (no network) from an analysis and its spectra.

Flagged rows (and any picked with `plots=`) get matplotlib PNGs embedded as base64; every row
also carries a compact spectrum (<= COMPACT_POINTS singular values with their ranks) from which
the page draws the ESD and tail as SVG in the browser when the row is opened.
"""
from __future__ import annotations

import math
import re
from importlib import resources

import numpy as np
import pandas as pd

from ..analysis.schema import ALPHA_BAND, GOOD_STATUSES


COMPACT_POINTS = 128     # singular values kept per row for the in-browser plots
TOP_EXACT = 32           # the largest ones are kept exactly: they are the tail
MAX_IMAGES = 60          # rows with embedded PNGs at most (the most extreme first)
TABLE_COLUMNS = ["name", "block", "role", "shape", "status", "flag", "alpha", "stable_rank",
                 "mp_spikes", "rand_traps", "ks_distance", "effective_rank", "spectral_norm",
                 "farms_alpha", "gd_rank"]


def facts() -> dict:
    """What the page's script must agree on with the rest of eigenscope (analysis/schema.py)."""
    return {"alpha_band": list(ALPHA_BAND), "good_statuses": list(GOOD_STATUSES)}


def asset(name: str) -> str:
    """Text of a packaged report asset (template, CSS, JS)."""
    return resources.files("eigenscope.report").joinpath("assets", name).read_text(encoding="utf-8")


def compact_spectrum(sv, points: int = COMPACT_POINTS) -> dict:
    """{'s': singular values, 'i': their ranks (0 = largest), 'M': count}, 4 significant digits.

    The top TOP_EXACT values are exact; the rest are evenly spaced ranks, so the empirical CDF
    (and hence a histogram) can be rebuilt by interpolation.
    """
    s = np.sort(np.asarray(sv, dtype=np.float64))[::-1]
    M = int(s.size)
    if M <= points:
        idx = np.arange(M)
    else:
        rest = np.linspace(TOP_EXACT, M - 1, points - TOP_EXACT).round().astype(int)
        idx = np.unique(np.concatenate([np.arange(TOP_EXACT), rest]))
    vals = [float(f"{v:.4g}") if math.isfinite(v) else 0.0 for v in s[idx]]
    return {"s": vals, "i": idx.tolist(), "M": M}


def _clean(v):
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return None if not math.isfinite(v) else float(f"{float(v):.6g}")
    return v


def rows_json(df: pd.DataFrame, flag: pd.Series) -> list[dict]:
    """Rows as JSON-ready dicts (NaN dropped, numbers shortened) with their flag."""
    out = []
    for rec, f in zip(df.to_dict(orient="records"), flag):
        rec = {k: _clean(v) for k, v in rec.items() if not (isinstance(v, float) and
                                                             not math.isfinite(v))}
        rec["flag"] = f
        out.append(rec)
    return out


def pick_rows(df: pd.DataFrame, flag: pd.Series, plots, max_images: int) -> list[str]:
    """Row names that get embedded PNGs: 'all', 'flagged' (default), 'none', or names/regexes."""
    names = df["name"].astype(str)
    if plots in (None, "flagged"):
        alpha = pd.to_numeric(df["alpha"], errors="coerce")
        extreme = (np.log(alpha.clip(lower=1e-3)) - math.log(math.sqrt(12))).abs().fillna(0)
        order = extreme[flag != ""].sort_values(ascending=False).index   # worst first
        return names[order].tolist()[:max_images]
    if plots == "all":
        return names.tolist()[:max_images]
    if plots == "none":
        return []
    pats = [p for p in (plots.split(",") if isinstance(plots, str) else plots) if p]
    return [n for n in names if any(p == n or re.search(p, n) for p in pats)][:max_images]


def row_images(df: pd.DataFrame, spectra: dict, names: list[str]) -> dict[str, list[str]]:
    """{name: [ESD png data URI, tail png data URI]} for the picked rows that have spectra."""
    from ..plot._mpl import data_uri, to_png
    from ..plot.layer import esd_figure, tail_figure

    by_name = df.set_index("name")
    out = {}
    for n in names:
        if n not in spectra or n not in by_name.index:
            continue
        row = by_name.loc[n]
        row = row.iloc[0] if isinstance(row, pd.DataFrame) else row
        args = (spectra[n], int(row["rows"]), int(row["cols"]), row.to_dict())
        out[n] = [data_uri(to_png(esd_figure(*args, title=f"ESD  {n}"), dpi=72)),
                  data_uri(to_png(tail_figure(*args, title=f"tail  {n}"), dpi=72))]
    return out


def model_figures(df: pd.DataFrame, spectra: dict) -> list[tuple[str, str]]:
    """[(caption, PNG data URI)] of the model-level figures."""
    from ..plot._mpl import data_uri, to_png
    from ..plot.model import metrics_by_block, sv_curves

    lo, hi = ALPHA_BAND
    figs = [(f"alpha, stable rank and MP spikes by block (green band: {lo:g} ≤ α ≤ {hi:g})",
             metrics_by_block(df))]
    if spectra:
        figs.append(("singular values s_i / s_1 by role (colour: block)", sv_curves(df, spectra)))
    return [(cap, data_uri(to_png(fig, dpi=90))) for cap, fig in figs]

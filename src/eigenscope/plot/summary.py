"""A summary of an analysis that renders in Jupyter (`_repr_html_`) and as plain text."""
from __future__ import annotations

import html

import numpy as np
import pandas as pd

from ..analysis.schema import ALPHA_BAND, GOOD_STATUSES as GOOD


def _num(df, col):
    if col not in df:
        return pd.Series(np.nan, index=df.index)
    return pd.to_numeric(df[col], errors="coerce")


def flags(df: pd.DataFrame) -> pd.Series:
    """Per row, a short text naming what stands out ('' when nothing): the report's 'flagged'."""
    alpha, traps = _num(df, "alpha"), _num(df, "rand_traps")
    status = df["status"].astype(str) if "status" in df else pd.Series("ok", index=df.index)
    parts = [
        (alpha > ALPHA_BAND[1], "under-trained"), (alpha < ALPHA_BAND[0], "over-fit"),
        (traps > 0, "traps"), (~status.isin(GOOD), "bad status"),
    ]
    out = pd.Series("", index=df.index, dtype=object)
    for mask, text in parts:
        m = mask.fillna(False).to_numpy(dtype=bool)
        out[m] = [f"{o}, {text}" if o else text for o in out[m]]
    return out


def counts(df: pd.DataFrame) -> dict:
    """Headline numbers of an analysis (alpha over finite fits of usable rows only)."""
    status = df["status"].astype(str) if "status" in df else pd.Series("ok", index=df.index)
    good = status.isin(GOOD)
    alpha = _num(df, "alpha")[good]
    alpha = alpha[np.isfinite(alpha)]
    q = alpha.quantile([0.1, 0.5, 0.9]).tolist() if len(alpha) else [np.nan] * 3
    return {
        "matrices": int(len(df)),
        "alpha_fitted": int(len(alpha)),
        "alpha_p10": q[0], "alpha_median": q[1], "alpha_p90": q[2],
        "under_trained": int((alpha > ALPHA_BAND[1]).sum()),
        "over_fit": int((alpha < ALPHA_BAND[0]).sum()),
        "correlation_traps": int((_num(df, "rand_traps")[good] > 0).sum()),
        "bad_status": int((~good).sum()),
    }


def _fmt(v) -> str:
    if isinstance(v, float):
        return "–" if not np.isfinite(v) else f"{v:.3g}"
    return str(v)


class Summary:
    """`Summary(df, spectra=None)`: counts, the alpha-by-block figure and the flagged rows."""

    def __init__(self, df: pd.DataFrame, spectra: dict | None = None, *, title: str = ""):
        self.df, self.spectra, self.title = df, spectra or {}, title
        self.counts = counts(df)
        self.flags = flags(df)

    def flagged(self) -> pd.DataFrame:
        """The rows that stand out, with their flag text."""
        cols = [c for c in ("name", "block", "role", "alpha", "stable_rank", "mp_spikes",
                            "rand_traps", "status") if c in self.df]
        out = self.df.loc[self.flags != "", cols].copy()
        out["flag"] = self.flags[self.flags != ""]
        return out

    def figure(self):
        """Metrics by block (alpha, stable rank, MP spikes) as a Figure."""
        from .model import metrics_by_block
        return metrics_by_block(self.df)

    def __repr__(self) -> str:
        head = f"eigenscope summary{': ' + self.title if self.title else ''}"
        return head + "\n" + "\n".join(f"  {k}: {_fmt(v)}" for k, v in self.counts.items())

    def _repr_html_(self) -> str:
        from ._mpl import to_svg
        cells = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
                        f"<td>{_fmt(v)}</td></tr>" for k, v in self.counts.items())
        flagged = self.flagged()
        table = flagged.head(20).to_html(index=False, float_format=lambda v: f"{v:.3g}",
                                         border=0) if len(flagged) else "<p>nothing flagged</p>"
        more = f"<p>… {len(flagged) - 20} more flagged</p>" if len(flagged) > 20 else ""
        return (f"<div><h4>{html.escape(self.title or 'eigenscope summary')}</h4>"
                f"<div style='display:flex;gap:1em;align-items:flex-start'>"
                f"<table>{cells}</table><div style='max-width:720px'>{to_svg(self.figure())}"
                f"</div></div><h5>flagged</h5>{table}{more}</div>")
